"""The audit log entry of an action taken in the web UI: by the signed-in user, from the
request's client address.

Call `audit()` inside the same `write_transaction()` as the change it describes, so that a
change never lacks its entry and a failed change leaves none. A change to an object records
what changed, field by field, with `field_changes()`: `{"changes": {field: [before, after]}}`,
secret fields masked (and the password part of any URL in a value, as `redact_url` does).
`stream_state()`, `rule_state()` and `channel_state()` give the values to compare (nested
settings as dotted fields, e.g. "config.url") and the names of their secret fields.

Action names are "<object>.<verb>" (e.g. "stream.update", "rule.delete",
"events.acknowledge", "auth.login_failed"); the target is "<object>:<id>" (e.g. "stream:3").
Admin → Audit (glimpser.web.admin_audit) reads and exports the log; `describe()` turns an
entry's detail into what that page shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import g, request
from flask_login import current_user

from glimpser.models import AuditLog, NotificationChannel, Rule, Stream
from glimpser.sources.redaction import redact_urls

SECRET_MASK = "••••"  # noqa: S105 - what the log shows instead of a secret
# A longer value is cut in the log (a description, a list of mask polygons).
MAX_VALUE_CHARS = 500
# An acknowledgement lists at most this many event ids (and always how many there were).
MAX_LISTED_IDS = 500


def audit(action: str, target: str, detail: dict[str, Any]) -> None:
    """Record `action` on `target` (e.g. "rule:3") by the signed-in user, with `detail`;
    a change made through the JSON API also names the key (`"api_key": prefix`)."""
    key = g.get("api_key")
    if key is not None:
        detail = {**detail, "api_key": key.prefix}
    AuditLog.create(
        user=current_user.id,
        action=action,
        target=target,
        detail=detail,
        ip=request.remote_addr or "",
    )


def _shown(value: Any) -> Any:
    """A value as the log keeps it: URLs without their passwords, long values cut."""
    if isinstance(value, str):
        text = redact_urls(value)
        return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"
    if isinstance(value, list | dict):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        if len(text) > MAX_VALUE_CHARS:
            return f"({len(text)} characters of settings)"
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [_shown(v) for v in value]
        return json.loads(redact_urls(text)) if "://" in text else value
    return value


def field_changes(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    secret_fields: Iterable[str] = (),
) -> dict[str, list[Any]]:
    """`{field: [before, after]}` for each field whose value differs between the two mappings
    (a field missing on one side is None there). A secret field shows only that it changed,
    as SECRET_MASK (or None when it was or became empty). Other values have the password of
    any URL in them masked, and are cut after MAX_VALUE_CHARS."""
    secret = set(secret_fields)
    changes: dict[str, list[Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name in secret:
            old, new = (SECRET_MASK if old else None), (SECRET_MASK if new else None)
        else:
            old, new = _shown(old), _shown(new)
        changes[name] = [old, new]
    return changes


# --- the values of an object, to compare before and after a change ---------------------------


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted names ({"config": {"url": …}} → {"config.url": …}), so that
    a change is shown down to the field that changed."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


@dataclass
class State:
    """An object's fields (dotted) and which of them are secrets."""

    values: dict[str, Any]
    secrets: frozenset[str] = field(default_factory=frozenset)


def changes_between(before: State | None, after: State | None) -> dict[str, list[Any]]:
    """The field changes from one state to the other. A created object's entry lists the
    fields it was created with, leaving out the empty ones."""
    secrets = (before.secrets if before else frozenset()) | (after.secrets if after else set())
    after_values = after.values if after else {}
    if before is None:
        after_values = {k: v for k, v in after_values.items() if v not in (None, "", [], {})}
    return field_changes(before.values if before else {}, after_values, secrets)


def _secret_names(prefix: str, kinds: Mapping[str, Any], kind: str) -> frozenset[str]:
    config_class = kinds.get(kind)
    names = getattr(config_class, "SECRET_FIELDS", frozenset()) if config_class else frozenset()
    return frozenset(f"{prefix}{name}" for name in names)


def stream_state(stream: Stream) -> State:
    """A stream's definition (not its status), its source's secret fields marked."""
    from glimpser.sources.schemas import CONFIG_BY_KIND, STREAM_FIELDS

    values = {name: getattr(stream, name) for name in STREAM_FIELDS}
    values["kind"] = stream.kind
    values.update(flatten(stream.config or {}, "config."))
    values.pop("config.kind", None)
    values.update(flatten(stream.analysis or {}, "analysis."))
    return State(values, _secret_names("config.", CONFIG_BY_KIND, stream.kind))


def rule_state(rule: Rule) -> State:
    """A rule's definition (rules hold no secrets)."""
    values: dict[str, Any] = {
        name: getattr(rule, name)
        for name in (
            "name",
            "description",
            "enabled",
            "applies_to",
            "groups",
            "stream_ids",
            "severity",
            "cooldown_seconds",
            "channels",
        )
    }
    values.update(flatten(rule.conditions or {}, "conditions."))
    values.update(flatten(rule.schedule or {}, "schedule."))
    return State(values)


def channel_state(channel: NotificationChannel) -> State:
    """A notification channel's settings, its kind's secret fields marked."""
    from glimpser.notify.schemas import CHANNEL_FIELDS, CONFIG_BY_KIND

    values = {name: getattr(channel, name) for name in CHANNEL_FIELDS}
    values["kind"] = channel.kind
    values.update(flatten(channel.config or {}, "config."))
    values.pop("config.kind", None)
    return State(values, _secret_names("config.", CONFIG_BY_KIND, channel.kind))


def listed_ids(ids: list[int]) -> dict[str, Any]:
    """Event ids for an entry's detail: how many, and (up to MAX_LISTED_IDS of) which."""
    return {"count": len(ids), "ids": ids[:MAX_LISTED_IDS]}


# --- reading an entry -------------------------------------------------------------------------


@dataclass
class Description:
    """An entry's detail as Admin → Audit shows it."""

    changes: list[tuple[str, str, str]]  # field, before, after (as text)
    facts: list[tuple[str, str]]  # the other keys of the detail, as text


def as_text(value: Any) -> str:
    """A detail value as one line of text ("—" for nothing)."""
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def describe(detail: Any) -> Description:
    """The field changes and the other facts of an entry's detail, as text."""
    if not isinstance(detail, dict):
        return Description([], [] if detail in (None, "") else [("detail", as_text(detail))])
    changes = []
    raw_changes = detail.get("changes")
    if isinstance(raw_changes, dict):
        for name, pair in raw_changes.items():
            if isinstance(pair, list) and len(pair) == 2:
                changes.append((str(name), as_text(pair[0]), as_text(pair[1])))
    facts = [
        (str(key).replace("_", " "), as_text(value))
        for key, value in detail.items()
        if key != "changes" or not isinstance(raw_changes, dict)
    ]
    return Description(changes, facts)
