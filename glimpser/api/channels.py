"""`/api/v1/channels`: notification channels, secrets write-only (admin users only, as
Admin → Channels).

Bodies are ChannelSpec (glimpser.notify.schemas), the schema of the channel form, the import and
the senders, plus `remove_secrets`; glimpser.notify.channel_store checks and writes them for
both the form and these views. Secrets are never answered: a channel shows its config without
them (URL tokens masked, as an export without secrets) and `secrets_set` names those stored.
On a write, a secret left out or empty keeps the stored value (same kind, same destination),
unless named in `remove_secrets`; when the destination changed, stored secrets must be sent
again (422), as on the form.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import redis
from flask import Blueprint, current_app, request
from flask_login import current_user
from pydantic import BaseModel, Field, ValidationError

from glimpser.api import problems
from glimpser.api.rules import require_admin_user
from glimpser.api.spec import operation
from glimpser.models import NotificationChannel
from glimpser.notify import channel_store
from glimpser.notify.schemas import CHANNEL_FIELDS, ChannelSpec, dump_config, error_messages
from glimpser.transfer.export import channel_entry
from glimpser.web.app_settings import current_settings

bp = Blueprint("channels", __name__, url_prefix="/channels")
TAGS = ("channels",)
MAX_SECRET_NAMES = 16


@bp.before_request
def _admins_only() -> None:
    require_admin_user()


class ChannelIn(ChannelSpec):
    """A channel as the form submits it: ChannelSpec, plus the stored secrets to delete."""

    remove_secrets: list[str] = Field(
        default_factory=list,
        max_length=MAX_SECRET_NAMES,
        description="Secret fields whose stored value is deleted (when not sent again).",
    )


class ChannelOut(BaseModel):
    """A channel without its secrets: `secrets_set` names the secret fields that hold a value."""

    id: int
    name: str
    enabled: bool
    min_severity: str
    cooldown_seconds: int
    kind: str
    config: dict[str, Any] = Field(description="The kind's settings, without secrets")
    secrets_set: list[str]
    created_at: datetime
    updated_at: datetime


class ChannelList(BaseModel):
    items: list[ChannelOut]


class TestSent(BaseModel):
    """The test notification: a real event and one delivery, queued for the notify worker."""

    event_id: int
    delivery_id: int
    status: Literal["queued", "sending", "retrying", "sent", "failed", "skipped"] = Field(
        description="`queued` until a worker sends it; `failed` when it could not be queued"
    )
    error: str


def channel_out(channel: NotificationChannel) -> ChannelOut:
    entry = channel_entry(channel, include_secrets=False)
    stored = channel_store.stored_secrets(channel, channel.kind)
    return ChannelOut(
        id=channel.id,
        **{name: entry[name] for name in CHANNEL_FIELDS},
        kind=channel.kind,
        config=entry["config"],
        secrets_set=sorted(stored),
        created_at=channel.created_at,
        updated_at=channel.updated_at,
    )


def _get_channel(channel_id: int) -> NotificationChannel:
    channel = NotificationChannel.get_or_none(NotificationChannel.id == channel_id)
    if channel is None:
        problems.problem(404, "Not found", "No channel has this id.")
    return channel


def _redis() -> redis.Redis:
    return current_app.extensions["glimpser.redis"]


def _save(channel: NotificationChannel | None) -> NotificationChannel:
    body: ChannelIn = request.context.json  # type: ignore[attr-defined]
    model_secrets = channel_store.secret_fields(body.config.kind)
    unknown = sorted(set(body.remove_secrets) - model_secrets)
    if unknown:
        problems.invalid({"remove_secrets": f"not a secret field of {body.config.kind}"})
    values = {name: getattr(body, name) for name in CHANNEL_FIELDS}
    submitted = dump_config(body.config, include_secrets=True)
    spec, errors = channel_store.check_channel(
        values, submitted, channel, body.remove_secrets, current_settings()
    )
    if spec is None:
        problems.invalid(errors)
    try:
        return channel_store.save_channel(spec, channel, body.remove_secrets)
    except channel_store.ChannelNameTaken as exc:
        problems.invalid({"name": str(exc)})
    except ValidationError as exc:  # keeping a stored secret made the settings invalid
        problems.invalid({channel_store.error_key(k): v for k, v in error_messages(exc).items()})


@bp.get("")
@operation(tags=TAGS, ok=ChannelList)
def list_channels():
    """Every channel, by name (without secrets)."""
    query = NotificationChannel.select().order_by(NotificationChannel.name, NotificationChannel.id)
    return ChannelList(items=[channel_out(c) for c in query])


@bp.get("/<int:channel_id>")
@operation(tags=TAGS, ok=ChannelOut, errors=(404,))
def get_channel(channel_id: int):
    """One channel (without secrets)."""
    return channel_out(_get_channel(channel_id))


@bp.post("")
@operation(tags=TAGS, json=ChannelIn, ok=ChannelOut, status=201)
def create_channel():
    """Create a channel; the kind's required secrets must be sent."""
    return channel_out(_save(None)), 201


@bp.put("/<int:channel_id>")
@operation(tags=TAGS, json=ChannelIn, ok=ChannelOut, errors=(404,))
def update_channel(channel_id: int):
    """Replace a channel's definition (same id); empty secrets keep the stored ones."""
    return channel_out(_save(_get_channel(channel_id)))


@bp.delete("/<int:channel_id>")
@operation(tags=TAGS, ok=None, status=204, errors=(404,))
def delete_channel(channel_id: int):
    """Delete a channel and its delivery log; rules stop naming it."""
    channel_store.delete_channel(_get_channel(channel_id), _redis(), current_settings())
    return "", 204


@bp.post("/<int:channel_id>/test")
@operation(tags=TAGS, ok=TestSent, status=202, errors=(404,))
def test_channel(channel_id: int):
    """Send a test notification, as Admin → Channels' "Send test": a real event and one
    delivery queued for the notify worker (also for a disabled channel). The answer says
    whether it was queued; the delivery log (Admin → Deliveries) shows what the receiver
    said."""
    channel = _get_channel(channel_id)
    event, delivery = channel_store.send_test(
        channel, _redis(), current_user.username, "through the API"
    )
    answer = TestSent(
        event_id=event.id, delivery_id=delivery.id, status=delivery.status, error=delivery.error
    )
    return answer, 202
