"""Export: the whole set-up (streams, rules, notification channels) as a Glimpser document.

Channel secrets are exported only on explicit request (`include_secrets`)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from glimpser import times
from glimpser.analysis.rules import rule_values
from glimpser.analysis.schemas import RuleSpec
from glimpser.models import AuditLog, NotificationChannel, Rule, Stream, User
from glimpser.notify import schemas as channel_schemas
from glimpser.sources.redaction import redact_url
from glimpser.sources.schemas import (
    CONFIG_BY_KIND,
    STREAM_FIELDS,
    dump_config,
    parse_config,
)

FORMAT = "glimpser"
VERSION = 1
# A rule entry: RuleSpec's fields, but chosen streams by name ("streams") instead of ids, and
# channels by name ("channels") instead of ids.
RULE_ENTRY_KEYS = tuple(k for k in RuleSpec.model_fields if k not in ("stream_ids", "channels"))


def stream_entry(stream: Stream, *, include_secrets: bool) -> dict[str, Any]:
    """One stream as an export entry; secrets only when asked for."""
    entry: dict[str, Any] = {name: getattr(stream, name) for name in STREAM_FIELDS}
    entry["groups"] = list(stream.groups or [])
    try:
        config = dump_config(parse_config(stream.config), include_secrets=include_secrets)
    except ValidationError:
        # A stored config the current schema rejects still travels, but never its secrets
        # unless asked: the import will then report what needs fixing.
        config = dict(stream.config or {})
        if not include_secrets:
            schema = CONFIG_BY_KIND.get(stream.kind)
            secret_fields = schema.SECRET_FIELDS if schema else frozenset({"password"})
            for name in secret_fields:
                config.pop(name, None)
    if not include_secrets:  # a token in the URL's query is a secret too
        config = {k: _redacted_urls(v) if k == "url" else v for k, v in config.items()}
    entry["config"] = config
    entry["analysis"] = dict(stream.analysis or {})
    return entry


def rule_entry(
    rule: Rule, names: dict[int, str], channel_names: dict[int, str] | None = None
) -> dict[str, Any]:
    """One rule as an export entry: chosen streams and channels by name (ids are this
    installation's); ids of deleted streams or channels are left out."""
    values = rule_values(rule)
    entry = {name: values[name] for name in RULE_ENTRY_KEYS}
    entry["streams"] = [names[i] for i in values["stream_ids"] if i in names]
    channel_names = channel_names or {}
    entry["channels"] = sorted(
        (channel_names[i] for i in values["channels"] if i in channel_names), key=str.lower
    )
    return entry


def channel_entry(channel: NotificationChannel, *, include_secrets: bool) -> dict[str, Any]:
    """One notification channel as an export entry (ChannelSpec's fields); secrets only when
    asked for."""
    entry: dict[str, Any] = {
        name: getattr(channel, name) for name in channel_schemas.CHANNEL_FIELDS
    }
    stored = dict(channel.config or {})
    stored.setdefault("kind", channel.kind)
    try:
        config = channel_schemas.dump_config(
            channel_schemas.parse_config(stored), include_secrets=include_secrets
        )
    except ValidationError:
        # A stored config the current schema rejects still travels (the import reports what
        # needs fixing), but never with its secrets unless asked.
        config = stored
        if not include_secrets:
            schema = channel_schemas.CONFIG_BY_KIND.get(channel.kind)
            if schema is None:  # no idea which fields are secret: keep none of them
                config = {"kind": channel.kind}
            for name in schema.SECRET_FIELDS if schema else ():
                config.pop(name, None)
    if not include_secrets:  # tokens in webhook and CAP URLs' queries too
        config = {
            k: _redacted_urls(v) if k in ("url", "endpoints") else v for k, v in config.items()
        }
    entry["config"] = config
    return entry


def _redacted_urls(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, list):
        return [redact_url(v) if isinstance(v, str) else v for v in value]
    return value


def export_streams(
    *,
    include_secrets: bool = False,
    actor: User | None = None,
    ip: str = "",
    via: str = "cli",
) -> dict[str, Any]:
    """The whole set-up — streams, rules and notification channels — as a Glimpser export
    document; every export is audited (what it held, and whether secrets were included)."""
    streams = list(Stream.select().order_by(Stream.name))
    names = {s.id: s.name for s in streams}
    channels = list(NotificationChannel.select().order_by(NotificationChannel.name))
    channel_names = {c.id: c.name for c in channels}
    document = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": times.isoformat(times.utcnow()),
        "streams": [stream_entry(s, include_secrets=include_secrets) for s in streams],
        "rules": [rule_entry(r, names, channel_names) for r in Rule.select().order_by(Rule.name)],
        "channels": [channel_entry(c, include_secrets=include_secrets) for c in channels],
    }
    AuditLog.create(
        user=actor,
        action="stream.export",
        target="streams",
        detail={
            "include_secrets": include_secrets,
            "count": len(streams),
            "rules": len(document["rules"]),
            "channels": len(channels),
            "via": via,
        },
        ip=ip,
    )
    return document


def dumps_document(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
