"""Saving a validated ChannelSpec: the one place the form and the import write channels.

Secrets are write-only: the form never shows them and an export leaves them out unless asked,
so a submitted secret that is empty means "keep what is stored" — unless the caller names it in
`remove_secrets` (the form's "remove the stored value" box). Stored secrets are kept only while
the channel keeps its kind: a webhook's signing secret means nothing to an email channel.
The merged configuration is validated once more before it is written, so a kept secret can
never produce a stored configuration that the senders would refuse.

Admin → Channels and the JSON API (`/api/v1/channels`) share the rest too: `check_channel`
(ChannelSpec plus the checks a form makes: secrets to re-enter, required secrets, targets the
SSRF guard refuses), `save_channel`, `set_enabled`, `delete_channel` and `send_test`, each
written in one transaction with its audit entry (these need a request: the audit names the
signed-in user and the API key).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import peewee
import redis
from pydantic import ValidationError

from glimpser import queues, times
from glimpser.db import write_transaction
from glimpser.models import Delivery, Event, NotificationChannel, Rule
from glimpser.notify.schemas import (
    CHANNEL_FIELDS,
    CONFIG_BY_KIND,
    ChannelSpec,
    dump_config,
    error_messages,
    parse_config,
)
from glimpser.schema_helpers import REENTER_MESSAGE, may_keep_secrets, secrets_to_reenter
from glimpser.sources.redaction import unmask

if TYPE_CHECKING:
    from glimpser.config import Settings

log = logging.getLogger(__name__)

NAME_TAKEN = "Another channel already has this name."
TEST_TITLE = "Test notification from Glimpser"


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


# --- checks a form (or an API request) makes before saving ----------------------------------


class ChannelNameTaken(Exception):
    """Another channel got the same name while this one was being saved (nothing written)."""


def name_taken(name: str, channel: NotificationChannel | None) -> bool:
    clash = NotificationChannel.select().where(
        peewee.fn.LOWER(NotificationChannel.name) == name.lower()
    )
    if channel is not None:
        clash = clash.where(NotificationChannel.id != channel.id)
    return clash.exists()


def error_key(key: str) -> str:
    """A validation error's path as a field of the form: `config.<field>`, or the channel field."""
    parts = key.split(".")
    if parts[0] == "config":
        return ".".join(parts[:2])  # e.g. config.headers.X-Foo → config.headers
    return parts[0] or "config"


def _literal_address_problem(host: str, guard: Any) -> str:
    """Why the SSRF guard refuses a host given as an IP address ("" when it does not, or when
    the host is a name: names are resolved when sending, never in the web process)."""
    from glimpser.sources.network_guard import address_problem

    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return ""
    problem = address_problem(address, guard)
    return f"{address} cannot be used: {problem}" if problem else ""


def target_problems(config: Any, settings: Settings) -> dict[str, str]:
    """Targets the SSRF guard would refuse at send time, caught on the form where it can tell
    without a DNS lookup: hosts written as IP addresses (e.g. 169.254.169.254)."""
    from glimpser.sources.base import CaptureContext

    guard = CaptureContext.from_settings(settings)
    urls: dict[str, list[str]] = {}
    if config.kind == "webhook":
        urls["url"] = [config.url]
    elif config.kind == "cap":
        urls["endpoints"] = list(config.endpoints)
    problems: dict[str, str] = {}
    for name, values in urls.items():
        for value in values:
            problem = _literal_address_problem(urlsplit(value).hostname or "", guard)
            if problem:
                problems.setdefault(f"config.{name}", problem)
    if config.kind == "email":
        problem = _literal_address_problem(config.host, guard)
        if problem:
            problems["config.host"] = problem
    return problems


def check_channel(
    values: dict[str, Any],
    submitted: dict[str, Any],
    channel: NotificationChannel | None,
    remove: Iterable[str],
    settings: Settings,
) -> tuple[ChannelSpec | None, dict[str, str]]:
    """Validate a submitted channel (its fields `values` and its config `submitted`, with
    `kind`, secrets as typed) through ChannelSpec, as the form does: (spec, {}) or (None,
    errors by field).

    Empty secrets take the stored value (same kind, same destination) unless named in
    `remove`; a stored secret that may not follow a changed destination must be typed again;
    a kind's required secrets must be there; targets written as IP addresses go through the
    SSRF guard; the name must be free.
    """
    remove = frozenset(remove)
    config = keep_secrets(submitted, channel, remove)
    errors: dict[str, str] = {
        f"config.{name}": REENTER_MESSAGE
        for name in secrets_to_type_again(submitted, channel, remove)
    }
    spec = None
    try:
        spec = ChannelSpec.model_validate({**values, "config": config})
    except ValidationError as exc:
        for key, message in error_messages(exc).items():
            errors.setdefault(error_key(key), message)
    if spec is not None:
        model = CONFIG_BY_KIND[spec.config.kind]
        errors.update(target_problems(spec.config, settings))
        titles = {info.title or n: n for n, info in model.model_fields.items()}
        for title in spec.config.missing_secrets():
            name = titles.get(title, "")
            errors[f"config.{name}" if name else "config"] = f"{title} is required."
        if not errors and name_taken(spec.name, channel):
            errors["name"] = NAME_TAKEN
    if errors:
        return None, errors
    return spec, {}


# --- audited changes --------------------------------------------------------------------------


def audit_channel(action: str, channel: NotificationChannel, **detail: object) -> None:
    """Record an action on a channel in the audit log (inside the change's transaction)."""
    from glimpser.web.audit import audit

    audit(action, f"channel:{channel.id}", {"name": channel.name, "kind": channel.kind, **detail})


def save_channel(
    spec: ChannelSpec, channel: NotificationChannel | None, remove: Iterable[str] = ()
) -> NotificationChannel:
    """Create (channel None) or replace a channel checked by `check_channel`, audited
    ("channel.create" / "channel.update"). Raises ChannelNameTaken when the name was taken
    concurrently, pydantic.ValidationError when keeping a stored secret made it invalid."""
    from glimpser.web import audit as audit_log

    remove = frozenset(remove)
    try:
        with write_transaction():
            before = None if channel is None else audit_log.channel_state(channel)
            if channel is None:
                saved = create_channel(spec)
            else:
                saved = update_channel(channel, spec, remove)
            detail: dict[str, Any] = {
                "changes": audit_log.changes_between(before, audit_log.channel_state(saved))
            }
            if remove:
                detail["removed_secrets"] = sorted(remove)
            audit_channel(
                "channel.create" if channel is None else "channel.update", saved, **detail
            )
    except peewee.IntegrityError:  # the same name saved concurrently
        if not name_taken(spec.name, channel):
            raise  # another constraint refused it (errors.py: a 409, nothing saved)
        raise ChannelNameTaken(NAME_TAKEN) from None
    return saved


def set_enabled(channel: NotificationChannel, enabled: bool) -> NotificationChannel:
    """Enable or disable (disabled channels get "skipped" deliveries), audited."""
    from glimpser.web import audit as audit_log

    with write_transaction():
        NotificationChannel.update(enabled=enabled, updated_at=times.utcnow()).where(
            NotificationChannel.id == channel.id
        ).execute()
        channel = NotificationChannel.get_by_id(channel.id)
        changes = audit_log.field_changes({"enabled": not enabled}, {"enabled": enabled})
        audit_channel("channel.enable" if enabled else "channel.disable", channel, changes=changes)
    return channel


def rules_using(channel_ids: list[int]) -> dict[int, list[Rule]]:
    """Rules that name each channel (rules keep channel ids in a JSON list)."""
    out: dict[int, list[Rule]] = {}
    wanted = set(channel_ids)
    for rule in Rule.select(Rule.id, Rule.name, Rule.channels, Rule.enabled).order_by(Rule.name):
        for cid in rule.channels or []:
            if cid in wanted:
                out.setdefault(cid, []).append(rule)
    return out


def delete_channel(
    channel: NotificationChannel, redis_client: redis.Redis, settings: Settings
) -> None:
    """Delete the channel and its delivery log, audited; rules stop naming it; its circuit
    breaker is reset (a later channel may get the same id: it starts closed)."""
    from glimpser.notify.dispatch import breaker_for

    channel_id = channel.id
    with write_transaction():
        rules = rules_using([channel.id]).get(channel.id, [])
        deliveries = Delivery.select().where(Delivery.channel == channel.id).count()
        audit_channel(
            "channel.delete",
            channel,
            rules=[r.name for r in rules][:100],
            deliveries_deleted=deliveries,
        )
        for rule in rules:
            remaining = [c for c in (rule.channels or []) if c != channel.id]
            Rule.update(channels=remaining, updated_at=times.utcnow()).where(
                Rule.id == rule.id
            ).execute()
        Delivery.delete().where(Delivery.channel == channel.id).execute()
        channel.delete_instance()
    try:
        breaker_for(redis_client, channel_id, settings).reset()
    except redis.RedisError:
        log.warning("breaker state of a deleted channel not removed", extra={"id": channel_id})


def send_test(
    channel: NotificationChannel, redis_client: redis.Redis, sent_by: str, where: str
) -> tuple[Event, Delivery]:
    """Create a real test event and one delivery for this channel, queued on the notify queue
    (the web process never sends); audited as "channel.test".

    The event is system-wide (no stream), severity info, with data {"test": true}. The channel
    is tried even when disabled or above info: an admin asked for exactly this send. An open
    circuit still holds it back (the delivery says so). When Redis cannot take the job the
    delivery is marked failed at once, saying so.
    """
    now = times.utcnow()
    with write_transaction():
        event = Event.create(
            stream=None,
            snapshot=None,
            rule=None,
            kind="test",
            severity="info",
            title=TEST_TITLE,
            description=f"A test of the channel “{channel.name}”, sent by {sent_by} {where}.",
            data={"test": True},
            created_at=now,
        )
        delivery = Delivery.create(
            event=event.id,
            channel=channel.id,
            purpose="alert",
            status="queued",
            created_at=now,
            updated_at=now,
        )
        audit_channel("channel.test", channel, event_id=event.id, delivery_id=delivery.id)
    try:
        queues.enqueue_delivery(redis_client, delivery.id, 0.0)
    except redis.RedisError:
        with write_transaction():
            Delivery.update(
                status="failed",
                error="not queued: Redis is not reachable (retry it from the delivery log)",
                updated_at=times.utcnow(),
            ).where(Delivery.id == delivery.id).execute()
    return event, Delivery.get_by_id(delivery.id)
