"""Saving and deleting rules: the one place Admin → Rules and the JSON API (`/api/v1/rules`)
check a validated RuleSpec against this installation and write it, with its audit entry.

RuleSpec checks a rule on its own; what needs the database is checked here: the name is free
(case-insensitively), chosen streams and channels exist. A write runs in one
`write_transaction()` together with its audit entry ("rule.create", "rule.update",
"rule.delete"); these need a request (the audit names the signed-in user and the API key).
"""

from __future__ import annotations

import peewee

from glimpser import times
from glimpser.analysis.rules import rule_columns
from glimpser.analysis.schemas import RuleSpec
from glimpser.db import write_transaction
from glimpser.models import Event, NotificationChannel, Rule, Stream

NAME_TAKEN = "Another rule already has this name."
STREAM_GONE = "A chosen stream no longer exists; reload the page."
CHANNEL_GONE = "A chosen channel no longer exists; reload the page."


class RuleNameTaken(Exception):
    """Another rule got the same name while this one was being saved (nothing was written)."""


def name_taken(name: str, rule: Rule | None) -> bool:
    clash = Rule.select().where(peewee.fn.LOWER(Rule.name) == name.lower())
    if rule is not None:
        clash = clash.where(Rule.id != rule.id)
    return clash.exists()


def rule_problems(spec: RuleSpec, rule: Rule | None) -> dict[str, str]:
    """What stops this spec from being saved here, by field ({} when nothing does)."""
    errors: dict[str, str] = {}
    if name_taken(spec.name, rule):
        errors["name"] = NAME_TAKEN
    # All ids compared in Python: the tables are small, and a huge id never reaches SQL.
    if spec.applies_to == "chosen":
        known = {s.id for s in Stream.select(Stream.id)}
        if set(spec.stream_ids) - known:
            errors["stream_ids"] = STREAM_GONE
    channel_ids = {c.id for c in NotificationChannel.select(NotificationChannel.id)}
    if set(spec.channels) - channel_ids:
        errors["channels"] = CHANNEL_GONE
    return errors


def _audit(action: str, rule: Rule, **detail: object) -> None:
    from glimpser.web.audit import audit

    audit(action, f"rule:{rule.id}", {"name": rule.name, **detail})


def save_rule(spec: RuleSpec, rule: Rule | None) -> Rule:
    """Create (rule None) or replace a rule, audited; the spec must have passed
    `rule_problems`. Raises RuleNameTaken when the name was taken concurrently."""
    from glimpser.web import audit as audit_log

    try:
        with write_transaction():
            if rule is None:
                saved = Rule.create(**rule_columns(spec))
                changes = audit_log.changes_between(None, audit_log.rule_state(saved))
                _audit("rule.create", saved, changes=changes)
            else:
                before = audit_log.rule_state(rule)
                Rule.update(**rule_columns(spec), updated_at=times.utcnow()).where(
                    Rule.id == rule.id
                ).execute()
                saved = Rule.get_by_id(rule.id)
                changes = audit_log.changes_between(before, audit_log.rule_state(saved))
                _audit("rule.update", saved, changes=changes)
    except peewee.IntegrityError:  # the same name saved concurrently
        if not name_taken(spec.name, rule):
            raise  # another constraint refused it (errors.py: a 409, nothing saved)
        raise RuleNameTaken(NAME_TAKEN) from None
    return saved


def set_enabled(rule: Rule, enabled: bool) -> Rule:
    """Enable or disable a rule, audited ("rule.enable" / "rule.disable")."""
    from glimpser.web import audit as audit_log

    with write_transaction():
        Rule.update(enabled=enabled, updated_at=times.utcnow()).where(Rule.id == rule.id).execute()
        rule = Rule.get_by_id(rule.id)
        changes = audit_log.field_changes({"enabled": not enabled}, {"enabled": enabled})
        _audit("rule.enable" if enabled else "rule.disable", rule, changes=changes)
    return rule


def delete_rule(rule: Rule) -> int:
    """Delete a rule, audited; its events stay on the timeline without it. Returns how many
    events were kept."""
    with write_transaction():
        kept = Event.update(rule=None).where(Event.rule == rule.id).execute()
        _audit("rule.delete", rule, events_kept=kept)
        rule.delete_instance()
    return kept
