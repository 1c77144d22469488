"""Web Push: the VAPID key pair, subscriptions, and sending with pywebpush (aes128gcm).

The key pair is generated once and kept in the database (Setting "webpush.vapid"), so every web
process and worker, on any machine, signs with the same key that browsers subscribed with.
A notification goes to the subscriptions of active users who may see the event's stream
(optionally only the users a channel names). Push services answer 404/410 for subscriptions that
no longer exist: those are deleted. Browsers already reached for a delivery are remembered in
Redis, so a retry after a partial failure does not notify anyone twice.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import peewee
import redis
import requests
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush

from glimpser import times
from glimpser.config import Settings, vapid_subject_problem
from glimpser.db import write_transaction
from glimpser.models import (
    Delivery,
    Event,
    NotificationChannel,
    PushSubscription,
    Setting,
    StreamAccess,
    User,
)
from glimpser.notify.dispatch import SendError, SendResult
from glimpser.notify.schemas import WebPushConfig
from glimpser.sources.base import CaptureContext, CaptureError
from glimpser.sources.network_guard import GuardError, guarded_session, public_problem, resolve

log = logging.getLogger(__name__)

SETTING_KEY = "webpush.vapid"
Config = WebPushConfig


@dataclass(frozen=True)
class VapidKeys:
    private_pem: str
    public_key: str  # base64url, uncompressed P-256 point: the browser's applicationServerKey


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def vapid_keys() -> VapidKeys:
    """The install's VAPID key pair, generated on first use (safe when processes race)."""
    row = Setting.get_or_none(Setting.key == SETTING_KEY)
    if row is None:
        vapid = Vapid02()
        vapid.generate_keys()
        public = vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        value = {"private_pem": vapid.private_pem().decode(), "public_key": _b64url(public)}
        try:
            with write_transaction():
                Setting.create(key=SETTING_KEY, value=value)
        except peewee.IntegrityError:
            pass  # another process generated it first: use theirs
        row = Setting.get(Setting.key == SETTING_KEY)
    return VapidKeys(row.value["private_pem"], row.value["public_key"])


def subject_problem(settings: Settings) -> str:
    """Why Web Push cannot be used on this install ("" when it can): no usable VAPID subject.

    Push services want a contact (RFC 8292 "sub": mailto: or https:) and refuse a local one;
    settings.vapid_subject is GLIMPSER_VAPID_SUBJECT, or one derived from the public URL or the
    CAP sender (glimpser.config), and "" when only local ones were available.
    """
    if settings.vapid_subject:
        return ""
    url = settings.public_url
    if not url:
        public = "GLIMPSER_PUBLIC_URL is unset"
    elif not url.lower().startswith("https://"):
        public = "GLIMPSER_PUBLIC_URL is not an https:// URL"
    else:
        public = f"GLIMPSER_PUBLIC_URL {vapid_subject_problem(url)}"
    sender = vapid_subject_problem(f"mailto:{settings.cap_sender}")
    return (
        "Web Push is off: push services need a public contact (the VAPID subject) and only a "
        f"local one could be derived ({public}; GLIMPSER_CAP_SENDER {sender}). Set "
        "GLIMPSER_VAPID_SUBJECT to mailto:<your address> or an https:// URL of yours, or "
        "GLIMPSER_PUBLIC_URL to the https:// address people use."
    )


def endpoint_problem(endpoint: str, guard: CaptureContext) -> str | None:
    """Why Glimpser will not POST to this push endpoint, or None.

    Endpoints come from browsers, i.e. from any signed-in user, so they must point at the public
    internet (push services do): no private, loopback, link-local or reserved addresses, and none
    in GLIMPSER_SOURCE_DENY_CIDRS (`network_guard.public_problem`, the rule the guarded session
    applies to every hop). Loopback over plain HTTP only with GLIMPSER_ALLOW_LOOPBACK_SOURCES=1
    (the tests' push service).
    """
    parts = urlsplit(endpoint)
    host = parts.hostname
    if not host:
        return "the endpoint has no host"
    try:
        addresses = resolve(host, parts.port)
    except CaptureError as exc:
        return str(exc)
    for addr in addresses:
        problem = public_problem(addr, guard)
        if problem:
            return f"the endpoint's address {addr} is refused: {problem}"
    loopback_only = all(a.is_loopback for a in addresses)
    if parts.scheme != "https" and not (
        parts.scheme == "http" and loopback_only and guard.allow_loopback
    ):
        return "the endpoint must use https"
    return None


class SubscriptionTaken(ValueError):
    """The endpoint is another user's subscription: it is never handed over."""


def save_subscription(
    user: User, data: dict, user_agent: str, guard: CaptureContext
) -> PushSubscription:
    """Store a browser's PushSubscription JSON for this user (the same endpoint again updates
    its keys). ValueError when invalid; SubscriptionTaken when another user has the endpoint
    (an endpoint is all it takes to post one, so it must not move a subscription)."""
    endpoint = data.get("endpoint")
    keys = data.get("keys") or {}
    if not isinstance(keys, dict):
        raise ValueError("the subscription keys must be an object with p256dh and auth")
    if not isinstance(endpoint, str) or len(endpoint) > 2000:
        raise ValueError("the subscription has no endpoint (or a far too long one)")
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    for name, value, limit in (("p256dh", p256dh, 200), ("auth", auth, 100)):
        if not isinstance(value, str) or not value or len(value) > limit:
            raise ValueError(f"the subscription key {name} is missing or invalid")
        try:
            base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except ValueError:
            raise ValueError(f"the subscription key {name} is not base64url") from None
    # Last: it resolves the host name.
    problem = endpoint_problem(endpoint, guard)
    if problem:
        raise ValueError(problem)
    values = {"p256dh": p256dh, "auth": auth, "user_agent": user_agent[:300]}
    for _attempt in range(2):
        try:
            with write_transaction():
                existing = PushSubscription.get_or_none(PushSubscription.endpoint == endpoint)
                if existing is None:
                    return PushSubscription.create(user=user.id, endpoint=endpoint, **values)
                if existing.user_id != user.id:
                    raise SubscriptionTaken(
                        "this browser's notifications belong to another user: they must turn "
                        "them off first (on their profile page)"
                    )
                PushSubscription.update(**values).where(
                    PushSubscription.id == existing.id
                ).execute()
                return PushSubscription.get_by_id(existing.id)
        except peewee.IntegrityError:
            # Another request stored this endpoint between our read and our insert: read again
            # (theirs → SubscriptionTaken, ours → updated).
            continue
    raise SubscriptionTaken("this browser's subscription is being changed; try again")


def recipients(event: Event, channel: NotificationChannel) -> list[PushSubscription]:
    """Subscriptions of active users who may see the event's stream (and whom the channel names)."""
    query = (
        PushSubscription.select(PushSubscription, User)
        .join(User)
        .where(User.active == True)  # noqa: E712 - peewee expression
        .order_by(PushSubscription.id)
    )
    users = (channel.config or {}).get("users") or []
    if users:
        query = query.where(User.username.in_([str(u) for u in users]))
    if event.stream_id is not None:
        allowed = StreamAccess.select(StreamAccess.user).where(
            StreamAccess.stream == event.stream_id
        )
        query = query.where((User.role == "admin") | User.id.in_(allowed))
    else:
        query = query.where(User.role == "admin")
    return list(query)


def payload(event: Event, purpose: str) -> dict:
    """What the service worker (static/sw.js) shows: title, body, where a click goes, tag."""
    title = event.title if purpose == "alert" else f"Resolved: {event.title}"
    stream = f"/streams/{event.stream_id}" if event.stream_id is not None else ""
    data = {
        "title": f"{title}"[:200],
        "body": (event.description or f"{event.severity} · {event.kind}")[:500],
        "url": f"/events/{event.id}",
        "tag": f"glimpser-event-{event.id}",
        "severity": event.severity,
    }
    if event.snapshot_id is not None and stream:
        # Same origin: the browser fetches it with the user's session cookie.
        data["image"] = f"{stream}/snapshots/{event.snapshot_id}/thumb.jpg"
    return data


def deliver(
    channel: NotificationChannel,
    event: Event,
    delivery: Delivery,
    settings: Settings,
    connection: redis.Redis,
) -> SendResult:
    """Push one event to every recipient browser not yet reached by this delivery."""
    problem = subject_problem(settings)
    if problem:
        raise SendError(problem, retryable=False)
    subscriptions = recipients(event, channel)
    if not subscriptions:
        raise SendError(
            "no browser has subscribed (users subscribe on their profile page)", retryable=False
        )
    keys = vapid_keys()
    vapid = Vapid02.from_pem(keys.private_pem.encode())
    body = json.dumps(payload(event, delivery.purpose))
    ttl = int((channel.config or {}).get("ttl", 24 * 3600))
    done_key = f"glimpser:webpush:done:{delivery.id}"
    reached, gone, retryable, errors, last_code = 0, 0, False, [], None
    guard = CaptureContext.from_settings(settings)
    session = guarded_session(guard, public_only=True)
    for sub in subscriptions:
        if connection.sismember(done_key, sub.id):
            reached += 1
            continue
        problem = endpoint_problem(sub.endpoint, guard)
        if problem:
            errors.append(f"subscription {sub.id} skipped: {problem}")
            continue
        try:
            response = webpush(
                {"endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}},
                data=body,
                vapid_private_key=vapid,
                vapid_claims={"sub": settings.vapid_subject},
                content_encoding="aes128gcm",
                ttl=ttl,
                timeout=10,
                requests_session=session,
            )
            last_code = getattr(response, "status_code", None)
        except WebPushException as exc:
            code = exc.response.status_code if exc.response is not None else None
            last_code = code
            if code in (404, 410):
                with write_transaction():
                    PushSubscription.delete().where(PushSubscription.id == sub.id).execute()
                gone += 1
                continue
            retryable = retryable or code is None or code == 429 or code >= 500
            errors.append(f"push service answered {code}" if code else "push failed")
            continue
        except GuardError as exc:  # a redirect to a refused address: final, with the reason
            errors.append(f"subscription {sub.id}: {exc}")
            continue
        except requests.RequestException as exc:
            retryable = True
            errors.append(f"push service unreachable: {type(exc).__name__}")
            continue
        connection.sadd(done_key, sub.id)
        connection.expire(done_key, 7 * 24 * 3600)
        PushSubscription.update(last_used_at=times.utcnow()).where(
            PushSubscription.id == sub.id
        ).execute()
        reached += 1
    total = len(subscriptions)
    detail = f"delivered to {reached} of {total} browsers"
    if gone:
        detail += f"; {gone} expired subscriptions removed"
    if errors and (retryable or reached == 0):
        message = f"{detail}; " + "; ".join(sorted(set(errors)))
        if reached == 0 and not retryable:
            raise SendError(message, retryable=False, status_code=last_code)
        if retryable:
            raise SendError(message, retryable=True, status_code=last_code)
    if reached == 0:
        raise SendError(detail, retryable=False, status_code=last_code)
    return SendResult(status_code=last_code, detail=detail)
