"""`/api/v1/rules`: the rules that raise events (admin users only, as Admin → Rules).

Bodies are RuleSpec (glimpser.analysis.schemas), the schema the rule form, the import and the
analysis worker use; glimpser.analysis.rule_store checks and writes them for both the form and
these views (same checks, same audit actions "rule.create", "rule.update", "rule.delete").
Reading needs the `read` scope and writing `write`, and either needs an admin user: the rules
page is an admin page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, request
from flask_login import current_user
from pydantic import BaseModel, Field, ValidationError

from glimpser.analysis import rule_store
from glimpser.analysis.rules import rule_values
from glimpser.analysis.schemas import RuleSpec
from glimpser.api import problems
from glimpser.api.spec import operation
from glimpser.models import Rule
from glimpser.sources.schemas import error_messages

bp = Blueprint("rules", __name__, url_prefix="/rules")
TAGS = ("rules",)


@bp.before_request
def _admins_only() -> None:
    """Admin → Rules is for admins: a viewer's key, whatever its scopes, gets 403."""
    if not current_user.is_admin:
        problems.problem(403, "Forbidden", "Rules are for admins; this key's user is a viewer.")


def require_admin_user() -> None:
    """For the other admin-page resources (channels): 403 unless the key's user is an admin."""
    _admins_only()


class RuleOut(RuleSpec):
    """A rule as stored: RuleSpec's fields (defaults filled in), its id and times."""

    id: int
    created_at: datetime
    updated_at: datetime
    invalid: str | None = Field(
        None,
        description="Set when the stored rule no longer passes RuleSpec (the analysis skips "
        "it): what is wrong. The other fields are then as stored.",
    )


class RuleList(BaseModel):
    items: list[RuleOut]


def rule_out(rule: Rule) -> RuleOut:
    values: dict[str, Any] = rule_values(rule)
    extra = {"id": rule.id, "created_at": rule.created_at, "updated_at": rule.updated_at}
    try:
        return RuleOut.model_validate({**values, **extra})
    except ValidationError as exc:
        # A hand-edited or older row: shown as it is, saying what is wrong (never invented).
        invalid = "; ".join(f"{k or 'rule'}: {v}" for k, v in error_messages(exc).items())
        return RuleOut.model_construct(**values, **extra, invalid=invalid)


def _get_rule(rule_id: int) -> Rule:
    rule = Rule.get_or_none(Rule.id == rule_id)
    if rule is None:
        problems.problem(404, "Not found", "No rule has this id.")
    return rule


def _save(rule: Rule | None) -> Rule:
    spec: RuleSpec = request.context.json  # type: ignore[attr-defined]
    errors = rule_store.rule_problems(spec, rule)
    if errors:
        problems.invalid(errors)
    try:
        return rule_store.save_rule(spec, rule)
    except rule_store.RuleNameTaken as exc:
        problems.invalid({"name": str(exc)})


@bp.get("")
@operation(tags=TAGS, ok=RuleList)
def list_rules():
    """Every rule, by name."""
    return RuleList(items=[rule_out(r) for r in Rule.select().order_by(Rule.name, Rule.id)])


@bp.get("/<int:rule_id>")
@operation(tags=TAGS, ok=RuleOut, errors=(404,))
def get_rule(rule_id: int):
    """One rule."""
    return rule_out(_get_rule(rule_id))


@bp.post("")
@operation(tags=TAGS, json=RuleSpec, ok=RuleOut, status=201)
def create_rule():
    """Create a rule (the name must be free; chosen streams and channels must exist)."""
    return rule_out(_save(None)), 201


@bp.put("/<int:rule_id>")
@operation(tags=TAGS, json=RuleSpec, ok=RuleOut, errors=(404,))
def update_rule(rule_id: int):
    """Replace a rule's definition (same id: its events stay linked)."""
    return rule_out(_save(_get_rule(rule_id)))


@bp.delete("/<int:rule_id>")
@operation(tags=TAGS, ok=None, status=204, errors=(404,))
def delete_rule(rule_id: int):
    """Delete a rule; its events stay on the timeline, without the rule."""
    rule_store.delete_rule(_get_rule(rule_id))
    return "", 204
