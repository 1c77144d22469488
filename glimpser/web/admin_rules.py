"""Admin → Rules: list, create, edit, enable/disable and delete the rules that raise events.

The form is rendered from RuleSpec / RuleConditions / RuleSchedule (labels and help are the
fields' titles and descriptions) and validated by the same schema the worker and the import use.
Form names: rule fields as they are (`name`, `severity`, …), `stream_ids` and `channels`
(checkboxes of ids), `conditions.<field>`, `schedule.timezone` and
`schedule.<active|quiet>.<row>.<days|start|end>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import peewee
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from pydantic import ValidationError
from werkzeug.datastructures import MultiDict

from glimpser import times
from glimpser.analysis import rule_store
from glimpser.analysis.rules import (
    describe_conditions,
    describe_schedule,
    rule_values,
)
from glimpser.analysis.schemas import (
    DAY_NAMES,
    RuleConditions,
    RuleSchedule,
    RuleSpec,
    TimeWindow,
)
from glimpser.models import Event, NotificationChannel, Rule, Stream
from glimpser.notify.schemas import KIND_LABELS
from glimpser.sources.schemas import error_messages
from glimpser.web.app_settings import current_settings
from glimpser.web.params import parse_id, parse_int
from glimpser.web.stream_form import FieldView, _view

bp = Blueprint("admin_rules", __name__, url_prefix="/admin/rules")

WINDOW_ROWS = 3  # empty rows offered for active windows and quiet hours
MAX_WINDOW_ROWS = 16  # RuleSchedule allows 16 of each
APPLIES_TO_LABELS = {
    "all": "All streams",
    "groups": "Streams in any of these groups",
    "chosen": "Only the chosen streams",
}
THREAT_OPTIONS = [("", "—"), ("1", "1 — unusual"), ("2", "2 — threat")]
# Conditions that only the vision AI can answer (the note about AI goes next to these).
AI_CONDITIONS = ("objects_any", "threat_at_least", "keywords", "question", "min_confidence")


# --- form -------------------------------------------------------------------------------------


@dataclass
class WindowRow:
    """One row of the active-windows or quiet-hours table."""

    prefix: str  # e.g. "schedule.quiet.1"
    days: set[int] = field(default_factory=set)
    start: str = ""
    end: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return "f-" + self.prefix.replace(".", "-")


def _default_values() -> dict[str, Any]:
    return {
        "name": "",
        "description": "",
        "enabled": True,
        "applies_to": "all",
        "groups": "",
        "stream_ids": [],
        "severity": "info",
        "cooldown_seconds": RuleSpec.model_fields["cooldown_seconds"].default,
        "conditions": {"changed": True},
        # A new rule's schedule starts in the default time zone of Admin → Settings.
        "schedule": {"timezone": current_settings().default_timezone, "active": [], "quiet": []},
        "channels": [],
    }


def _values_from_rule(rule: Rule) -> dict[str, Any]:
    values = rule_values(rule)
    values["groups"] = ", ".join(values["groups"])
    values["schedule"] = {"timezone": "UTC", "active": [], "quiet": [], **values["schedule"]}
    return values


def _blank_to_none(raw: str | None) -> str | None:
    return None if raw is None or raw.strip() == "" else raw.strip()


def _windows(form: MultiDict, which: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The filled rows of one window table and their row numbers.

    A row counts when a day is ticked or a time is given; blank times mean the whole day.
    """
    windows, rows_used = [], []
    for i in range(MAX_WINDOW_ROWS):
        prefix = f"schedule.{which}.{i}"
        days_raw = form.getlist(f"{prefix}.days")
        start = form.get(f"{prefix}.start", "").strip()
        end = form.get(f"{prefix}.end", "").strip()
        if not days_raw and not start and not end:
            continue
        days = [d for d in map(parse_int, days_raw) if d is not None]
        windows.append({"days": days, "start": start or "00:00", "end": end or "24:00"})
        rows_used.append(i)
    return windows, rows_used


def parse_rule_form(
    form: MultiDict,
) -> tuple[RuleSpec | None, dict[str, Any], dict[str, str]]:
    """Validate a submitted rule form through RuleSpec: (spec or None, values, errors)."""
    conditions: dict[str, Any] = {}
    for name, info in RuleConditions.model_fields.items():
        key = f"conditions.{name}"
        if info.annotation is bool:
            conditions[name] = key in form
        elif name in ("motion_above", "changed_area_above", "threat_at_least"):
            conditions[name] = _blank_to_none(form.get(key))
        elif name == "min_confidence":
            conditions[name] = _blank_to_none(form.get(key)) or info.default
        else:
            conditions[name] = form.get(key, "")
    active, active_rows = _windows(form, "active")
    quiet, quiet_rows = _windows(form, "quiet")
    channel_raw = [v.strip() for v in form.getlist("channels")]
    values: dict[str, Any] = {
        "name": form.get("name", ""),
        "description": form.get("description", ""),
        "enabled": "enabled" in form,
        "applies_to": form.get("applies_to", "all"),
        "groups": form.get("groups", ""),
        "stream_ids": [i for i in map(parse_id, form.getlist("stream_ids")) if i is not None],
        "severity": form.get("severity", "info"),
        "cooldown_seconds": _blank_to_none(form.get("cooldown_seconds"))
        or RuleSpec.model_fields["cooldown_seconds"].default,
        "conditions": conditions,
        "schedule": {
            "timezone": form.get("schedule.timezone", "").strip() or "UTC",
            "active": active,
            "quiet": quiet,
        },
        "channels": [i for i in map(parse_id, channel_raw) if i is not None],
    }
    errors: dict[str, str] = {}
    if any(parse_id(v) is None for v in channel_raw):
        # Only a hand-made request sends this; say so rather than drop it silently.
        errors["channels"] = "A chosen channel does not exist; reload the page."
    try:
        spec = RuleSpec.model_validate(values)
    except ValidationError as exc:
        raw = error_messages(exc)
        rows = {"active": active_rows, "quiet": quiet_rows}
        for key, message in raw.items():
            parts = key.split(".")
            if key == "":
                key = "applies_to"  # the only rule-wide check: which streams
            elif parts[0] == "schedule" and len(parts) >= 3 and parts[1] in rows:
                parts[2] = str(rows[parts[1]][int(parts[2])])  # the row as typed
                key = ".".join(parts[:4])
            elif parts[0] in ("conditions", "schedule"):
                key = ".".join(parts[:2])
            else:
                key = parts[0]  # e.g. "groups.0" → "groups"
            errors.setdefault(key, message)
        spec = None
    if spec is None or errors:
        # Keep the submitted rows where they were typed when re-rendering.
        values["schedule"]["active_rows"] = active_rows
        values["schedule"]["quiet_rows"] = quiet_rows
        return None, values, errors
    return spec, values, {}


def _window_rows(values: dict[str, Any], which: str, errors: dict[str, str]) -> list[WindowRow]:
    schedule = values.get("schedule") or {}
    windows = schedule.get(which) or []
    numbers = schedule.get(f"{which}_rows") or list(range(len(windows)))
    count = min(MAX_WINDOW_ROWS, max(WINDOW_ROWS, (max(numbers) + 2) if numbers else 0))
    rows = [WindowRow(prefix=f"schedule.{which}.{i}") for i in range(count)]
    for number, window in zip(numbers, windows, strict=False):
        row = rows[number]
        days = (parse_int(str(day)) for day in window.get("days", []))
        row.days = {day for day in days if day is not None}
        row.start, row.end = window.get("start", ""), window.get("end", "")
    for row in rows:
        for part in ("days", "start", "end"):
            message = errors.get(f"{row.prefix}.{part}")
            if message:
                row.errors[part] = message
        if errors.get(row.prefix):
            row.errors["row"] = errors[row.prefix]
    return rows


def _field(
    model: Any, name: str, value: Any, errors: dict[str, str], prefix: str = ""
) -> FieldView:
    form_name = f"{prefix}{name}"
    view = _view(form_name, model.model_fields[name], value, errors.get(form_name, ""))
    if isinstance(value, list):
        view.value = ", ".join(str(v) for v in value)
    return view


def _render_form(rule: Rule | None, values: dict[str, Any], errors: dict[str, str], status: int):
    conditions = {**values.get("conditions", {})}
    condition_fields = []
    for name in RuleConditions.model_fields:
        view = _field(RuleConditions, name, conditions.get(name), errors, "conditions.")
        if name == "threat_at_least":
            view.widget, view.options = "select", THREAT_OPTIONS
            view.value = "" if conditions.get(name) in (None, "") else str(conditions[name])
        if name == "min_confidence" and conditions.get(name) in (None, ""):
            view.value = RuleConditions.model_fields[name].default
        if name == "question":
            view.widget = "textarea"
        condition_fields.append((name in AI_CONDITIONS, view))
    schedule = values.get("schedule") or {}
    settings = current_settings()
    return render_template(
        "admin/rules/form.html",
        rule=rule,
        values=values,
        errors=errors,
        name_field=_field(RuleSpec, "name", values.get("name"), errors),
        description_field=_textarea(
            _field(RuleSpec, "description", values.get("description"), errors)
        ),
        enabled_field=_field(RuleSpec, "enabled", values.get("enabled"), errors),
        groups_field=_field(RuleSpec, "groups", values.get("groups"), errors),
        severity_field=_field(RuleSpec, "severity", values.get("severity"), errors),
        cooldown_field=_field(RuleSpec, "cooldown_seconds", values.get("cooldown_seconds"), errors),
        timezone_field=_field(
            RuleSchedule, "timezone", schedule.get("timezone", "UTC"), errors, "schedule."
        ),
        applies_to_labels=APPLIES_TO_LABELS,
        streams=list(Stream.select(Stream.id, Stream.name).order_by(Stream.name)),
        chosen=set(values.get("stream_ids") or []),
        channels=_channel_choices(),
        chosen_channels=set(values.get("channels") or []),
        channels_url=_channels_url(),
        condition_fields=condition_fields,
        active_rows=_window_rows(values, "active", errors),
        quiet_rows=_window_rows(values, "quiet", errors),
        day_names=list(enumerate(DAY_NAMES)),
        ai_configured=settings.ai_configured,
        specs={
            "applies_to": RuleSpec.model_fields["applies_to"],
            "stream_ids": RuleSpec.model_fields["stream_ids"],
            "active": RuleSchedule.model_fields["active"],
            "quiet": RuleSchedule.model_fields["quiet"],
            "channels": RuleSpec.model_fields["channels"],
            "conditions": RuleSpec.model_fields["conditions"],
            "start": TimeWindow.model_fields["start"],
            "end": TimeWindow.model_fields["end"],
        },
    ), status


@dataclass
class ChannelChoice:
    """One checkbox of the rule form's Notify fieldset."""

    id: int
    name: str
    kind_label: str
    enabled: bool


def _channel_choices() -> list[ChannelChoice]:
    query = NotificationChannel.select(
        NotificationChannel.id,
        NotificationChannel.name,
        NotificationChannel.kind,
        NotificationChannel.enabled,
    ).order_by(NotificationChannel.name)
    return [ChannelChoice(c.id, c.name, KIND_LABELS.get(c.kind, c.kind), c.enabled) for c in query]


def _channels_url() -> str:
    """Admin → Channels, when that page is registered (it comes with the channel UI)."""
    if "admin_channels.index" in current_app.view_functions:
        return url_for("admin_channels.index")
    return ""


def _textarea(view: FieldView) -> FieldView:
    view.widget = "textarea"
    return view


# --- helpers ----------------------------------------------------------------------------------


def _get_rule(rule_id: int) -> Rule:
    rule = Rule.get_or_none(Rule.id == rule_id)
    if rule is None:
        abort(404)
    return rule


@dataclass
class RuleRow:
    rule: Rule
    streams: str
    conditions: str
    schedule: str
    events: int = 0
    last_event_at: Any = None
    invalid: str = ""
    channels: str = ""


def _targets_in_words(rule: Rule, names: dict[int, str]) -> str:
    if rule.applies_to == "groups":
        return "Groups: " + ", ".join(rule.groups or [])
    if rule.applies_to == "chosen":
        chosen = [names.get(i, f"#{i} (deleted)") for i in rule.stream_ids or []]
        return ", ".join(chosen) or "no stream"
    return "All streams"


def _channels_in_words(rule: Rule, names: dict[int, str]) -> str:
    return ", ".join(names.get(i, f"#{i} (deleted)") for i in rule.channels or [])


def _event_stats(rule_ids: list[int]) -> dict[int, tuple[int, Any]]:
    """Events per rule and the time of the newest, in one grouped query."""
    if not rule_ids:
        return {}
    query = (
        Event.select(
            Event.rule,
            peewee.fn.COUNT(Event.id).alias("n"),
            peewee.fn.MAX(Event.created_at).alias("last"),
        )
        .where(Event.rule.in_(rule_ids))
        .group_by(Event.rule)
        .dicts()
    )
    return {row["rule"]: (row["n"], _as_time(row["last"])) for row in query}


def _as_time(value: Any) -> Any:
    """MAX() of a time column: a datetime on PostgreSQL, the stored text on SQLite."""
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return times.to_utc(value)
    return times.parse(str(value))


def _rows(rules: list[Rule]) -> list[RuleRow]:
    names = {s.id: s.name for s in Stream.select(Stream.id, Stream.name)}
    channel_names = {
        c.id: c.name
        for c in NotificationChannel.select(NotificationChannel.id, NotificationChannel.name)
    }
    stats = _event_stats([r.id for r in rules])
    rows = []
    for rule in rules:
        try:
            conditions = describe_conditions(RuleConditions.model_validate(rule.conditions or {}))
            schedule = describe_schedule(RuleSchedule.model_validate(rule.schedule or {}))
            invalid = ""
        except ValidationError as exc:
            conditions, schedule = "", ""
            invalid = "; ".join(f"{k or 'rule'}: {v}" for k, v in error_messages(exc).items())
        row = RuleRow(rule, _targets_in_words(rule, names), conditions, schedule, invalid=invalid)
        row.events, row.last_event_at = stats.get(rule.id, (0, None))
        row.channels = _channels_in_words(rule, channel_names)
        rows.append(row)
    return rows


# --- views ------------------------------------------------------------------------------------


@bp.get("/")
def index():
    rows = _rows(list(Rule.select().order_by(Rule.name)))
    settings = current_settings()
    return render_template("admin/rules/list.html", rows=rows, ai_configured=settings.ai_configured)


@bp.get("/new")
def new():
    return _render_form(None, _default_values(), {}, 200)


@bp.get("/<int:rule_id>/edit")
def edit(rule_id: int):
    rule = _get_rule(rule_id)
    return _render_form(rule, _values_from_rule(rule), {}, 200)


def _save(rule: Rule | None):  # noqa: ANN202
    spec, values, errors = parse_rule_form(request.form)
    if spec is not None:
        errors.update(rule_store.rule_problems(spec, rule))
    if spec is None or errors:
        return _render_form(rule, values, errors, 422)
    try:
        saved = rule_store.save_rule(spec, rule)
    except rule_store.RuleNameTaken as exc:
        return _render_form(rule, values, {"name": str(exc)}, 422)
    verb = "created" if rule is None else "saved"
    flash(f"Rule “{saved.name}” {verb}.", "success")
    return redirect(url_for("admin_rules.index"))


@bp.post("/new")
def create():
    return _save(None)


@bp.post("/<int:rule_id>/edit")
def update(rule_id: int):
    return _save(_get_rule(rule_id))


@bp.post("/<int:rule_id>/toggle")
def toggle(rule_id: int):
    """Enable or disable; htmx swaps the table row, a plain form post gets the list again."""
    rule = _get_rule(rule_id)
    rule = rule_store.set_enabled(rule, not rule.enabled)
    enabled = rule.enabled
    if request.headers.get("HX-Request"):
        return render_template("admin/rules/_row.html", row=_rows([rule])[0])
    flash(f"Rule “{rule.name}” {'enabled' if enabled else 'disabled'}.", "info")
    return redirect(url_for("admin_rules.index"))


@bp.get("/<int:rule_id>/delete")
def confirm_delete(rule_id: int):
    rule = _get_rule(rule_id)
    count = Event.select().where(Event.rule == rule.id).count()
    return render_template("admin/rules/confirm_delete.html", rule=rule, event_count=count)


@bp.post("/<int:rule_id>/delete")
def delete(rule_id: int):
    rule = _get_rule(rule_id)
    rule_store.delete_rule(rule)
    flash(f"Rule “{rule.name}” deleted.", "info")
    return redirect(url_for("admin_rules.index"))
