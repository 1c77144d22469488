"""Admin → Channels: list, create, edit, enable/disable, delete and "send test" for the
notification channels (issue 6).

The form is built from the kind schemas in glimpser.notify.schemas (labels and help are the
fields' titles and descriptions, limits and widgets come from the schema) and validated by the
same ChannelSpec the import uses; glimpser.notify.channel_store writes the result.
Form names: channel fields as they are (`name`, `enabled`, `min_severity`, `cooldown_seconds`),
the kind as `kind`, kind fields as `config.<field>`, and `remove_secret` (repeated) naming the
stored secrets to delete. Secrets are write-only: never rendered, not even back into a form that
failed validation; an empty secret keeps the stored one.

"Send test" creates a real event and one delivery for this channel only and queues it on the
notify queue: the web process never sends. The page then polls the delivery until a receiver
answered (or the send failed), so "sent" is only ever shown for a real success.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import peewee
import redis
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
from flask_login import current_user
from pydantic import ValidationError
from werkzeug.datastructures import MultiDict

from glimpser import times
from glimpser.config import Settings
from glimpser.db import write_transaction
from glimpser.models import (
    DELIVERY_STATES,
    Delivery,
    NotificationChannel,
    PushSubscription,
    Rule,
    User,
)
from glimpser.notify import channel_store
from glimpser.notify.breaker import BreakerState
from glimpser.notify.dispatch import breaker_for
from glimpser.notify.schemas import (
    CHANNEL_FIELDS,
    CONFIG_BY_KIND,
    KIND_LABELS,
    KINDS,
    ChannelSpec,
    error_messages,
    parse_config,
)
from glimpser.web.app_settings import current_settings
from glimpser.web.htmx import is_fragment_request as _is_htmx
from glimpser.web.params import parse_id
from glimpser.web.stream_form import FieldView, _default, _form_value, _view

log = logging.getLogger(__name__)

bp = Blueprint("admin_channels", __name__, url_prefix="/admin/channels")

DEFAULT_KIND = "webhook"
REMOVE_FIELD = "remove_secret"
FINAL_STATES = frozenset({"sent", "failed", "skipped"})


def _settings() -> Settings:
    return current_settings()


def _redis() -> redis.Redis:
    return current_app.extensions["glimpser.redis"]


# --- form -------------------------------------------------------------------------------------


@dataclass
class ChannelField:
    """A FieldView plus what write-only secrets need: whether a value is stored, and the name
    of the "remove the stored value" checkbox."""

    view: FieldView
    secret: bool = False
    stored: bool = False
    remove_checked: bool = False

    @property
    def remove_id(self) -> str:
        return self.view.id + "-remove"

    @property
    def secret_name(self) -> str:
        return self.view.name.removeprefix("config.")


def _header_lines(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(f"{k}: {v}" for k, v in value.items())
    return "" if value is None else str(value)


def kind_fields(
    kind: str,
    values: dict[str, Any],
    errors: dict[str, str],
    stored: frozenset[str] = frozenset(),
    removing: frozenset[str] = frozenset(),
) -> list[ChannelField]:
    """The fields of one kind, from its schema. Secret values are never put in a view."""
    model = CONFIG_BY_KIND[kind]
    out = []
    for name, info in model.model_fields.items():
        if name == "kind":
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        widget = extra.get("widget")
        secret = name in model.SECRET_FIELDS
        value = None if secret else values.get(name, _default(info))
        view = _view(f"config.{name}", info, value, errors.get(f"config.{name}", ""))
        if secret:
            view.value = ""
            view.widget = "secret-lines" if widget == "secret-lines" else "password"
            view.required = name in model.REQUIRED_SECRETS and name not in stored
        elif widget == "headers":
            view.widget = "textarea"
            view.value = _header_lines(value)
        out.append(
            ChannelField(
                view=view,
                secret=secret,
                stored=name in stored,
                remove_checked=name in removing,
            )
        )
    return out


def common_fields(values: dict[str, Any], errors: dict[str, str]) -> list[FieldView]:
    fields = ChannelSpec.model_fields
    return [
        _view(n, fields[n], values.get(n, _default(fields[n])), errors.get(n, ""))
        for n in CHANNEL_FIELDS
    ]


@dataclass
class ParsedForm:
    kind: str
    spec: ChannelSpec | None
    values: dict[str, Any]  # the channel fields as submitted
    config: dict[str, Any]  # the kind fields as submitted (secrets blanked before rendering)
    remove: frozenset[str]
    errors: dict[str, str]
    typed_secrets: bool  # a secret was typed in (it is not rendered back on errors)


def parse_channel_form(
    form: MultiDict, channel: NotificationChannel | None, settings: Settings
) -> ParsedForm:
    """Validate a submitted channel form through ChannelSpec.

    Empty secrets take the stored value (same kind only) unless their "remove" box is ticked;
    a kind's required secrets must then be there, since the form, unlike an import, is where
    they are entered. Targets written as IP addresses go through the SSRF guard here already.
    The checks are glimpser.notify.channel_store.check_channel's (the API makes the same).
    """
    kind = form.get("kind", "")
    values: dict[str, Any] = {
        n: _form_value(form, n, ChannelSpec.model_fields[n]) for n in CHANNEL_FIELDS
    }
    if kind not in CONFIG_BY_KIND:
        return ParsedForm(
            channel.kind if channel is not None else DEFAULT_KIND,
            None,
            values,
            {},
            frozenset(),
            {"kind": "Choose what kind of channel this is."},
            False,
        )
    model = CONFIG_BY_KIND[kind]
    submitted: dict[str, Any] = {"kind": kind}
    for name, info in model.model_fields.items():
        if name != "kind":
            submitted[name] = _form_value(form, f"config.{name}", info)
    typed = any(submitted.get(n) for n in model.SECRET_FIELDS)
    remove = frozenset(form.getlist(REMOVE_FIELD)) & model.SECRET_FIELDS
    spec, errors = channel_store.check_channel(values, submitted, channel, remove, settings)
    return ParsedForm(kind, spec, values, submitted, remove, errors, typed)


# --- what the list shows ----------------------------------------------------------------------


@dataclass
class ChannelRow:
    channel: NotificationChannel
    kind_label: str
    breaker: BreakerState | None
    counts: dict[str, int]
    rules: list[Rule]
    subscriptions: int | None = None
    invalid: str = ""

    @property
    def breaker_retry_in(self) -> int:
        return round(self.breaker.retry_in) if self.breaker else 0


def _breaker_state(channel: NotificationChannel) -> BreakerState | None:
    try:
        return breaker_for(_redis(), channel, _settings()).state()
    except redis.RedisError as exc:
        log.warning("breaker state not readable", extra={"error": str(exc)})
        return None


def _recent_counts(channel_ids: list[int]) -> dict[int, dict[str, int]]:
    """Deliveries of the last 24 hours per channel and status, in one grouped query."""
    if not channel_ids:
        return {}
    since = times.utcnow() - timedelta(hours=24)
    query = (
        Delivery.select(Delivery.channel, Delivery.status, peewee.fn.COUNT(Delivery.id).alias("n"))
        .where(Delivery.channel.in_(channel_ids) & (Delivery.created_at >= since))
        .group_by(Delivery.channel, Delivery.status)
        .dicts()
    )
    out: dict[int, dict[str, int]] = {}
    for row in query:
        out.setdefault(row["channel"], {})[row["status"]] = row["n"]
    # In the order of DELIVERY_STATES, for a stable display.
    return {
        cid: {s: counts[s] for s in DELIVERY_STATES if s in counts} for cid, counts in out.items()
    }


def _subscription_count(channel: NotificationChannel) -> int:
    """Browsers a Web Push channel reaches: every subscription, or the listed users' ones."""
    query = PushSubscription.select().join(User).where(User.active == True)  # noqa: E712
    users = (channel.config or {}).get("users") or []
    if users:
        query = query.where(User.username.in_(users))
    return query.count()


def _rows(channels: list[NotificationChannel]) -> list[ChannelRow]:
    ids = [c.id for c in channels]
    counts = _recent_counts(ids)
    rules = channel_store.rules_using(ids)
    rows = []
    for channel in channels:
        row = ChannelRow(
            channel=channel,
            kind_label=KIND_LABELS.get(channel.kind, channel.kind),
            breaker=_breaker_state(channel),
            counts=counts.get(channel.id, {}),
            rules=rules.get(channel.id, []),
        )
        if channel.kind == "webpush":
            row.subscriptions = _subscription_count(channel)
        try:
            parse_config({**(channel.config or {}), "kind": channel.kind})
        except ValidationError as exc:
            row.invalid = "; ".join(
                f"{k.removeprefix('config.') or 'settings'}: {v}"
                for k, v in error_messages(exc).items()
            )
        rows.append(row)
    return rows


def _cap_feed_url() -> str:
    public_url = _settings().public_url
    if public_url:
        return public_url.rstrip("/") + url_for("cap.feed")
    return url_for("cap.feed", _external=True)


def _page_context() -> dict[str, Any]:
    settings = _settings()
    return {
        "public_url_missing": not settings.public_url,
        "cap_feed_url": _cap_feed_url(),
        "cap_feed_public": settings.cap_feed_public,
        "profile_url": url_for("profile.index"),
    }


# --- helpers ----------------------------------------------------------------------------------


def _get_channel(channel_id: int) -> NotificationChannel:
    channel = NotificationChannel.get_or_none(NotificationChannel.id == channel_id)
    if channel is None:
        abort(404)
    return channel


def _render_form(
    channel: NotificationChannel | None,
    kind: str,
    values: dict[str, Any],
    config: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    *,
    removing: frozenset[str] = frozenset(),
    typed_secrets: bool = False,
):
    stored = channel_store.stored_secrets(channel, kind)
    fields = kind_fields(kind, config, errors, stored, removing)
    # An error at no rendered field (a nested path) is shown at the top of the kind's fields.
    shown = {"kind", "config", *CHANNEL_FIELDS, *(cf.view.name for cf in fields)}
    stray = [message for key, message in errors.items() if key not in shown]
    if stray:
        errors = {**errors, "config": " ".join([errors.get("config", ""), *stray]).strip()}
    return render_template(
        "admin/channels/form.html",
        channel=channel,
        kind=kind,
        kinds=[(k, KIND_LABELS[k]) for k in KINDS],
        common=common_fields(values, errors),
        fields=fields,
        errors=errors,
        typed_secrets=typed_secrets and bool(errors),
        subscriptions=_subscription_count(channel) if channel and kind == "webpush" else None,
        total_subscriptions=PushSubscription.select().count(),
        **_page_context(),
    ), status


# --- views ------------------------------------------------------------------------------------


@bp.get("/")
def index():
    channels = list(NotificationChannel.select().order_by(NotificationChannel.name))
    return render_template(
        "admin/channels/list.html", rows=_rows(channels), kind_labels=KIND_LABELS, **_page_context()
    )


@bp.get("/new")
def new():
    kind = request.args.get("kind", DEFAULT_KIND)
    if kind not in CONFIG_BY_KIND:
        kind = DEFAULT_KIND
    return _render_form(None, kind, {}, {}, {})


@bp.get("/kind-fields")
def kind_fields_fragment():
    """The fields of one kind, swapped into the form by htmx when the kind changes."""
    kind = request.args.get("kind", "")
    if kind not in CONFIG_BY_KIND:
        abort(400, "unknown kind")
    channel = None
    if (channel_id := parse_id(request.args.get("channel_id"))) is not None:
        channel = NotificationChannel.get_or_none(NotificationChannel.id == channel_id)
    values = channel.config if channel is not None and channel.kind == kind else {}
    return render_template(
        "admin/channels/_kind_fields.html",
        kind=kind,
        fields=kind_fields(kind, values or {}, {}, channel_store.stored_secrets(channel, kind)),
        errors={},
        subscriptions=_subscription_count(channel) if channel and kind == "webpush" else None,
        total_subscriptions=PushSubscription.select().count(),
        **_page_context(),
    )


@bp.get("/<int:channel_id>/edit")
def edit(channel_id: int):
    channel = _get_channel(channel_id)
    values = {name: getattr(channel, name) for name in CHANNEL_FIELDS}
    return _render_form(channel, channel.kind, values, channel.config or {}, {})


def _save(channel: NotificationChannel | None):  # noqa: ANN202
    parsed = parse_channel_form(request.form, channel, _settings())
    spec = parsed.spec
    if spec is None or parsed.errors:
        return _render_form(
            channel,
            parsed.kind,
            parsed.values,
            parsed.config,
            parsed.errors,
            422,
            removing=parsed.remove,
            typed_secrets=parsed.typed_secrets,
        )
    created = channel is None
    try:
        channel = channel_store.save_channel(spec, channel, parsed.remove)
    except channel_store.ChannelNameTaken as exc:
        return _render_form(
            channel,
            parsed.kind,
            parsed.values,
            parsed.config,
            {"name": str(exc)},
            422,
            removing=parsed.remove,
            typed_secrets=parsed.typed_secrets,
        )
    except ValidationError as exc:  # keeping a stored secret made the settings invalid
        errors = {channel_store.error_key(k): v for k, v in error_messages(exc).items()}
        return _render_form(
            channel, parsed.kind, parsed.values, parsed.config, errors, 422, removing=parsed.remove
        )
    flash(f"Channel “{channel.name}” {'created' if created else 'saved'}.", "success")
    return redirect(url_for("admin_channels.index"))


@bp.post("/new")
def create():
    return _save(None)


@bp.post("/<int:channel_id>/edit")
def update(channel_id: int):
    return _save(_get_channel(channel_id))


def _row_response(channel: NotificationChannel, message: str, category: str = "info"):
    """htmx gets the table row again; a plain form post gets the list (with a message)."""
    if _is_htmx():
        return render_template(
            "admin/channels/_row.html", row=_rows([channel])[0], **_page_context()
        )
    flash(message, category)
    return redirect(url_for("admin_channels.index"))


@bp.post("/<int:channel_id>/toggle")
def toggle(channel_id: int):
    """Enable or disable the channel (disabled channels get "skipped" deliveries)."""
    channel = _get_channel(channel_id)
    channel = channel_store.set_enabled(channel, not channel.enabled)
    enabled = channel.enabled
    return _row_response(
        channel, f"Channel “{channel.name}” {'enabled' if enabled else 'disabled'}."
    )


@bp.post("/<int:channel_id>/breaker/reset")
def reset_breaker(channel_id: int):
    """Close the channel's circuit now (after the receiver was fixed), for every worker."""
    channel = _get_channel(channel_id)
    try:
        breaker_for(_redis(), channel, _settings()).reset()
    except redis.RedisError:
        abort(503, "Redis is not reachable; the circuit breaker was not reset.")
    with write_transaction():
        channel_store.audit_channel("channel.breaker_reset", channel)
    return _row_response(channel, f"Circuit of “{channel.name}” closed.")


@bp.get("/<int:channel_id>/delete")
def confirm_delete(channel_id: int):
    channel = _get_channel(channel_id)
    count = Delivery.select().where(Delivery.channel == channel.id).count()
    rules = channel_store.rules_using([channel.id]).get(channel.id, [])
    return render_template(
        "admin/channels/confirm_delete.html", channel=channel, delivery_count=count, rules=rules
    )


@bp.post("/<int:channel_id>/delete")
def delete(channel_id: int):
    """Delete the channel and its delivery log; rules stop naming it."""
    channel = _get_channel(channel_id)
    channel_store.delete_channel(channel, _redis(), _settings())
    flash(f"Channel “{channel.name}” deleted.", "info")
    return redirect(url_for("admin_channels.index"))


@bp.post("/<int:channel_id>/test")
def send_test(channel_id: int):
    """Create a real test event and one delivery for this channel, queued on the notify queue
    (glimpser.notify.channel_store.send_test)."""
    channel = _get_channel(channel_id)
    event, delivery = channel_store.send_test(
        channel, _redis(), current_user.username, "from the admin page"
    )
    if _is_htmx():
        return render_template(
            "admin/deliveries/_card.html", d=delivery, channel=channel, event=event
        )
    flash(f"Test notification to “{channel.name}” queued.", "info")
    return redirect(url_for("admin_deliveries.index", channel=channel.id))
