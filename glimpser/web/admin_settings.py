"""Admin → Settings: the run-time settings, rendered from their one schema.

The form is built from glimpser.runtime_settings.RuntimeSettings (titles, help, bounds, groups),
validated as a whole by it, stored in the Setting table with an audit entry in the same
transaction, then announced to every process (a version bump in Redis). A setting given by its
GLIMPSER_* environment variable is shown read-only and never overridden. The AI API key is
write-only: never rendered, kept when left blank, removed only by its "Remove" checkbox.

Form names are the Settings attribute names (`ai_model`, `capture_max_jpeg_bytes`, …), plus
`ai_api_key.clear` (remove the stored key).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.datastructures import MultiDict

from glimpser import runtime_settings as rs
from glimpser.analysis.ai import AIClient, AIError
from glimpser.config import Settings
from glimpser.db import write_transaction
from glimpser.schema_helpers import error_messages, url_origin
from glimpser.web.app_settings import current_settings
from glimpser.web.audit import audit, field_changes
from glimpser.web.htmx import is_fragment_request, render_block
from glimpser.web.params import parse_int
from glimpser.web.stream_form import FieldView, _view

bp = Blueprint("admin_settings", __name__, url_prefix="/admin/settings")

CLEAR_SUFFIX = ".clear"
TEST_TIMEOUT = 20  # seconds: the test waits for one answer, without retries
REENTER_KEY = "The server URL changed: type the API key again (a stored key is not sent elsewhere)."


@dataclass
class Group:
    """One fieldset of the form."""

    key: str
    title: str
    help: str
    fields: list[FieldView] = field(default_factory=list)


def _base() -> Settings:
    return current_app.extensions["glimpser.settings"]


def _redis() -> redis.Redis:
    return current_app.extensions["glimpser.redis"]


def _groups(
    base: Settings, values: dict[str, Any], errors: dict[str, str], stored_key: bool
) -> list[Group]:
    groups = {key: Group(key, title, help) for key, title, help in rs.GROUPS}
    for name, info in rs.FIELDS.items():
        view = _view(name, info, values.get(name), errors.get(name, ""))
        view.required = False
        if rs.field_extra(name).get("widget") == "lines":
            view.widget = "lines"
            value = values.get(name) or []
            view.value = "\n".join(value) if isinstance(value, list | tuple) else str(value)
        if rs.env_set(base, name):
            view.disabled = True
            view.placeholder = rs.field_env(name)  # the template says "set by …"
        if name in rs.SECRET_FIELDS:
            view.value = ""
            view.has_stored_secret = stored_key
        if name == "vapid_subject" and not view.value and not view.disabled:
            derived = current_settings().vapid_subject
            view.placeholder = f"now: {derived}" if derived else "none can be derived: give one"
        groups[rs.field_group(name)].fields.append(view)
    return list(groups.values())


def _render(
    values: dict[str, Any], errors: dict[str, str], status: int = 200, **extra: Any
) -> tuple[str, int]:
    base = _base()
    current = current_settings()
    return render_template(
        "admin/settings/index.html",
        groups=_groups(base, values, errors, bool(current.ai_api_key)),
        errors=errors,
        env_count=sum(1 for n in rs.FIELDS if rs.env_set(base, n)),
        ai_configured=current.ai_configured,
        test=extra.get("test"),
        # A key typed into a form that comes back with errors is not sent back: say so.
        typed_key=bool(errors and request.form.get("ai_api_key", "").strip()),
    ), status


def parse_form(
    form: MultiDict, base: Settings, before: dict[str, Any]
) -> tuple[rs.RuntimeSettings | None, dict[str, Any], dict[str, str]]:
    """Validate a submitted form as a whole: (model or None, values to show, errors).

    `before` holds the values in effect (values_of): settings set by the environment and a
    blank API key keep those.
    """
    values = dict(before)
    errors: dict[str, str] = {}
    for name, info in rs.FIELDS.items():
        if rs.env_set(base, name):
            continue  # read-only: the environment wins, whatever was posted
        if info.annotation is bool:
            values[name] = name in form
            continue
        if name in rs.SECRET_FIELDS:
            typed = form.get(name, "")
            if form.get(name + CLEAR_SUFFIX):
                values[name] = ""
            elif typed.strip():
                values[name] = typed
            continue  # blank: the stored key stays
        if name not in form:
            errors[name] = "This field is missing from the form; reload the page."
            continue
        raw = form.get(name, "")
        values[name] = raw
        if info.annotation is int:
            number = parse_int(raw)
            if number is None:
                errors[name] = "Enter a whole number (digits 0-9)."
            else:
                values[name] = number
    # A stored key is sent only where it was meant to go (like channel secrets).
    key_kept = not (form.get("ai_api_key", "").strip() or form.get("ai_api_key" + CLEAR_SUFFIX))
    if (
        before["ai_api_key"]
        and "ai_base_url" not in errors
        and _origin(values["ai_base_url"]) != _origin(before["ai_base_url"])
    ):
        if rs.env_set(base, "ai_api_key"):
            errors["ai_base_url"] = (
                "The API key is set by GLIMPSER_AI_API_KEY for the current server: "
                "change GLIMPSER_AI_BASE_URL in the environment instead."
            )
        elif key_kept:
            errors["ai_api_key"] = REENTER_KEY
    if errors:
        return None, values, errors
    try:
        model = rs.validate(base, values)
    except ValidationError as exc:
        return None, values, {k or "form": v for k, v in error_messages(exc, ()).items()}
    return model, values, {}


def _origin(url: str) -> tuple[str, str, int | None]:
    return url_origin(url.strip() or "https://api.openai.com/v1")


@bp.get("/")
def index():
    return _render(rs.values_of(current_settings(), rs.load_stored()), {})


@bp.post("/")
def save():
    base = _base()
    with write_transaction():
        stored = rs.load_stored()
        before = rs.values_of(rs.overlay(base, stored), stored)
        model, values, errors = parse_form(request.form, base, before)
        if model is None:
            changes = None
        else:
            after = rs.values_of(rs.effective(base, model), model.model_dump())
            changes = field_changes(before, after, rs.SECRET_FIELDS)
            if changes:
                rs.save(base, model)
                audit("settings.update", "settings", {"changes": changes})
    if model is None:
        return _render(values, errors, 422)
    if not changes:
        flash("Nothing changed.", "info")
    elif rs.publish(_redis()):
        flash("Settings saved; every process uses them within a few seconds.", "success")
    else:
        flash(
            "Settings saved, but Redis could not announce them: other processes pick them "
            "up within a minute.",
            "error",
        )
    return redirect(url_for("admin_settings.index"))


@bp.post("/test-ai")
def test_ai():
    """One real request to the AI server in the form (typed key, or the stored one when blank),
    before saving: the model's answer or the exact error, the key never shown."""
    base = _base()
    stored = rs.load_stored()
    current = rs.overlay(base, stored)
    before = rs.values_of(current, stored)
    model, values, errors = parse_form(request.form, base, before)
    ai_errors = {k: v for k, v in errors.items() if k.startswith("ai_")}
    test: dict[str, Any]
    if model is None and ai_errors:
        test = {"ok": False, "text": "; ".join(f"{_label(k)}: {v}" for k, v in ai_errors.items())}
    else:
        candidate = current
        if model is not None:
            candidate = rs.effective(base, model)
        else:  # another group has an error: test the AI fields as typed anyway
            ai_values = {k: v for k, v in values.items() if k.startswith("ai_")}
            try:
                partial = rs.validate(base, {**before, **ai_values})
                candidate = rs.effective(base, partial)
            except ValidationError as exc:
                msgs = error_messages(exc, ())
                test = {"ok": False, "text": "; ".join(msgs.values())}
                return _test_response(test, values, errors)
        test = _try(candidate)
    return _test_response(test, values, errors)


def _label(name: str) -> str:
    info = rs.FIELDS.get(name)
    return (info.title if info is not None else None) or name


def _try(settings: Settings) -> dict[str, Any]:
    if not settings.ai_configured:
        return {"ok": False, "text": "AI is not configured: give a server URL and a model."}
    quick = dataclasses.replace(
        settings, ai_max_retries=0, ai_timeout=min(settings.ai_timeout, TEST_TIMEOUT)
    )
    client = AIClient(quick, _redis())
    try:
        answer = client.test_connection()
    except AIError as exc:
        return {"ok": False, "text": str(exc), "model": settings.ai_model}
    finally:
        client.close()
    return {"ok": True, "text": answer, "model": settings.ai_model}


def _test_response(test: dict[str, Any], values: dict[str, Any], errors: dict[str, str]):  # noqa: ANN202
    if is_fragment_request():
        return render_block("admin/settings/index.html", "test_result", test=test)
    return _render(values, errors, 200, test=test)
