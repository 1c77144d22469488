"""Saving a validated ChannelSpec: the one place the form and the import write channels.

Secrets are write-only: the form never shows them and an export leaves them out unless asked,
so a submitted secret that is empty means "keep what is stored" — unless the caller names it in
`remove_secrets` (the form's "remove the stored value" box). Stored secrets are kept only while
the channel keeps its kind: a webhook's signing secret means nothing to an email channel.
The merged configuration is validated once more before it is written, so a kept secret can
never produce a stored configuration that the senders would refuse.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from glimpser import times
from glimpser.models import NotificationChannel
from glimpser.notify.schemas import (
    CHANNEL_FIELDS,
    CONFIG_BY_KIND,
    ChannelSpec,
    dump_config,
    parse_config,
)
from glimpser.schema_helpers import may_keep_secrets, secrets_to_reenter
from glimpser.sources.redaction import unmask


def secret_fields(kind: str) -> frozenset[str]:
    """The write-only fields of a channel kind (empty for an unknown kind)."""
    model = CONFIG_BY_KIND.get(kind)
    return model.SECRET_FIELDS if model is not None else frozenset()


def stored_secrets(channel: NotificationChannel | None, kind: str) -> frozenset[str]:
    """Names of the secrets this channel has stored for `kind` (to say "stored" on the form)."""
    if channel is None or channel.kind != kind:
        return frozenset()
    config = channel.config or {}
    return frozenset(name for name in secret_fields(kind) if config.get(name))


def keep_secrets(
    config: dict[str, Any],
    channel: NotificationChannel | None,
    remove_secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """A copy of a submitted config dict (with `kind`) whose empty secrets take the stored value.

    Secrets named in `remove_secrets` and left empty become empty; a secret that was typed in
    replaces the stored one either way.
    """
    kind = str(config.get("kind", ""))
    remove = set(remove_secrets)
    out = dict(config)
    stored = (channel.config or {}) if channel is not None and channel.kind == kind else {}
    for name in ("url", "endpoints"):  # URLs an export without secrets masked
        if name in out and name in stored:
            out[name] = unmask(out[name], stored[name])
    if not may_keep_secrets({**stored, "kind": kind}, out):  # the destination changed
        stored = {}
    for name in secret_fields(kind):
        value = out.get(name)
        if value is None or (hasattr(value, "get_secret_value") and not value.get_secret_value()):
            value = ""
        if value == "":
            out[name] = "" if name in remove else stored.get(name, "")
    return out


def secrets_to_type_again(
    config: dict[str, Any], channel: NotificationChannel | None, remove_secrets: Iterable[str]
) -> list[str]:
    """Stored secrets left blank that are not kept because the channel's target changed."""
    kind = str(config.get("kind", ""))
    if channel is None or channel.kind != kind:
        return []
    names = set(secret_fields(kind)) - set(remove_secrets)
    return secrets_to_reenter({**(channel.config or {}), "kind": kind}, config, names)


def _columns(
    spec: ChannelSpec, channel: NotificationChannel | None, remove_secrets: Iterable[str]
) -> dict[str, Any]:
    submitted = dump_config(spec.config, include_secrets=True)
    merged = keep_secrets(submitted, channel, remove_secrets)
    # Validate the merged result: raises pydantic.ValidationError if keeping made it invalid.
    config = dump_config(parse_config(merged), include_secrets=True)
    return {
        **{name: getattr(spec, name) for name in CHANNEL_FIELDS},
        "kind": spec.config.kind,
        "config": config,
        "updated_at": times.utcnow(),
    }


def create_channel(spec: ChannelSpec) -> NotificationChannel:
    """Insert a channel (the name must be free: the unique index raises IntegrityError)."""
    return NotificationChannel.create(**_columns(spec, None, ()))


def update_channel(
    channel: NotificationChannel,
    spec: ChannelSpec,
    remove_secrets: Iterable[str] = (),
) -> NotificationChannel:
    """Replace a channel's definition in place (same id, so rules and deliveries still point
    at it); empty secrets keep the stored ones unless named in `remove_secrets`."""
    values = _columns(spec, channel, remove_secrets)
    NotificationChannel.update(**values).where(NotificationChannel.id == channel.id).execute()
    return NotificationChannel.get_by_id(channel.id)
