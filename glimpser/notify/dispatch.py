"""Dispatch: events → Delivery rows → one send per row, on the `notify` queue.

- route(): for each new event, the channels its rule names that are enabled, whose minimum
  severity the event reaches, and that are not cooling down (globally per stream, and per
  channel and stream) get exactly one Delivery row (unique per event × channel × purpose) and a
  job. Skipped pairs are recorded too, with the reason, so the delivery log explains silence.
- deliver(): claims the row with one conditional UPDATE (queued/retrying → sending). A job that
  runs twice, or a duplicate job, finds nothing to claim and sends nothing: a notification is
  never sent twice. Network errors, 5xx and 429 are retried with exponential backoff (Retry-After
  honoured) up to GLIMPSER_NOTIFY_MAX_ATTEMPTS; other 4xx fail at once. A channel whose circuit
  is open (breaker.py) holds its deliveries without using up their attempts.
- A worker that dies while sending leaves a row in "sending"; sweep_stuck() marks it failed with
  "outcome unknown" rather than risk sending it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import peewee
import redis

from glimpser import metrics, times
from glimpser.config import Settings
from glimpser.db import write_transaction
from glimpser.models import SEVERITIES, Delivery, Event, NotificationChannel, Rule
from glimpser.notify import registry
from glimpser.notify.breaker import CircuitBreaker

log = logging.getLogger(__name__)

SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
BACKOFF_CAP_SECONDS = 3600.0
RETRY_AFTER_CAP_SECONDS = 6 * 3600.0
STUCK_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class SendResult:
    """What a receiver answered to one successful send; `skipped`: the sender found nothing to
    send for this delivery any more (detail says why), and nothing was sent."""

    status_code: int | None = None
    detail: str = ""
    skipped: bool = False


class SendError(Exception):
    """One send failed. `retryable`: network error, timeout, 5xx or 429."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after


# What every kind's module offers as `deliver` (glimpser.notify.registry): one attempt for one
# delivery (delivery.purpose says "alert", "update-<n>" or "cancel"; its id lets a sender with
# many recipients remember who already got it; Redis is where such senders keep that).
Sender = Callable[[NotificationChannel, Event, Delivery, Settings, redis.Redis], SendResult]


def backoff_seconds(attempt: int, base: float, retry_after: float | None = None) -> float:
    """Delay before attempt `attempt + 1`: base, 2×base, 4×base … capped at an hour;
    a later Retry-After wins (itself capped at six hours)."""
    delay = min(base * 2 ** max(attempt - 1, 0), BACKOFF_CAP_SECONDS)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP_SECONDS))
    return delay


def breaker_for(
    connection: redis.Redis, channel: NotificationChannel | int, settings: Settings
) -> CircuitBreaker:
    channel_id = channel if isinstance(channel, int) else channel.id
    return CircuitBreaker(
        connection, channel_id, settings.breaker_threshold, settings.breaker_cooldown_seconds
    )


def _cooling_down(connection: redis.Redis, key: str, seconds: int) -> bool:
    """True while a cooldown runs; otherwise starts one (atomically, for every worker)."""
    if seconds <= 0:
        return False
    return not connection.set(key, "1", nx=True, ex=seconds)


def _record(
    event: Event, channel: NotificationChannel, purpose: str, status: str, error: str = ""
) -> Delivery | None:
    """Insert the one Delivery row for this pair; None when it already exists."""
    now = times.utcnow()
    try:
        with write_transaction():
            return Delivery.create(
                event=event.id,
                channel=channel.id,
                purpose=purpose,
                status=status,
                error=error,
                created_at=now,
                updated_at=now,
            )
    except peewee.IntegrityError:
        return None


def route(
    events: list[Event],
    connection: redis.Redis,
    settings: Settings,
    enqueue: Callable[[int, float], None],
) -> list[int]:
    """Create the deliveries for new events; enqueue(delivery_id, delay) queues each send."""
    queued: list[int] = []
    for event in events:
        if event.rule_id is None:
            continue
        rule = Rule.get_or_none(Rule.id == event.rule_id)
        if rule is None or not rule.channels:
            continue
        channels = list(
            NotificationChannel.select()
            .where(NotificationChannel.id.in_(rule.channels))
            .order_by(NotificationChannel.id)
        )
        stream_key = event.stream_id or 0
        global_key = f"glimpser:notify:cooldown:stream:{stream_key}"
        # The global cooldown starts only when something is actually sent (below), so an
        # event that no channel takes does not silence a more severe one after it.
        global_quiet = settings.notify_cooldown_seconds > 0 and bool(connection.exists(global_key))
        sent_any = False
        for channel in channels:
            reason = ""
            if not channel.enabled:
                reason = "channel disabled"
            elif SEVERITY_RANK.get(event.severity, 0) < SEVERITY_RANK.get(channel.min_severity, 0):
                reason = f"below the channel's minimum severity ({channel.min_severity})"
            elif global_quiet:
                reason = "global notification cooldown for this stream"
            elif _cooling_down(
                connection,
                f"glimpser:notify:cooldown:{channel.id}:{stream_key}",
                channel.cooldown_seconds,
            ):
                reason = "channel cooldown for this stream"
            delivery = _record(event, channel, "alert", "skipped" if reason else "queued", reason)
            if delivery is not None and reason:
                metrics.record_delivery(connection, channel.kind, "skipped")
            if delivery is not None and not reason:
                enqueue(delivery.id, 0.0)
                queued.append(delivery.id)
                sent_any = True
        if sent_any and settings.notify_cooldown_seconds > 0:
            connection.set(global_key, "1", ex=settings.notify_cooldown_seconds)
    return queued


def _cap_channels_alerted(event: Event) -> list[NotificationChannel]:
    """CAP channels that received this event's alert."""
    return [
        d.channel
        for d in Delivery.select(Delivery, NotificationChannel)
        .join(NotificationChannel)
        .where(
            (Delivery.event == event.id)
            & (Delivery.purpose == "alert")
            & (Delivery.status == "sent")
            & (NotificationChannel.kind == "cap")
        )
    ]


def route_updates(events: list[Event], enqueue: Callable[[int, float], None]) -> list[int]:
    """An open event that matched again (rules.py counts the repeats) is re-issued to the CAP
    endpoints that got its alert, as an Update. Throttled: at the 1st, 2nd, 4th, 8th … repeat,
    so a busy scene makes a handful of Updates, not one per snapshot. Other channels stay
    quiet: that is what the rule's cooldown is for."""
    queued: list[int] = []
    for event in events:
        repeats = int((event.data or {}).get("repeats") or 0)
        if repeats < 1 or repeats & (repeats - 1):
            continue  # not a power of two
        for channel in _cap_channels_alerted(event):
            delivery = _record(event, channel, f"update-{repeats}", "queued")
            if delivery is not None:
                enqueue(delivery.id, 0.0)
                queued.append(delivery.id)
    return queued


def route_cancellations(events: list[Event], enqueue: Callable[[int, float], None]) -> list[int]:
    """Acknowledged events are withdrawn where that means something: CAP endpoints that got
    the alert receive a Cancel referencing it (one "cancel" delivery per event × channel)."""
    queued: list[int] = []
    for event in events:
        for channel in _cap_channels_alerted(event):
            delivery = _record(event, channel, "cancel", "queued")
            if delivery is not None:
                enqueue(delivery.id, 0.0)
                queued.append(delivery.id)
    return queued


def deliver(
    delivery_id: int,
    connection: redis.Redis,
    settings: Settings,
    enqueue: Callable[[int, float], None],
) -> str:
    """Send one delivery at most once, through its channel kind's module (one lookup in
    glimpser.notify.registry); returns the delivery's status afterwards."""
    now = times.utcnow()
    with write_transaction():
        claimed = (
            Delivery.update(
                status="sending", attempts=Delivery.attempts + 1, updated_at=now, error=""
            )
            .where((Delivery.id == delivery_id) & (Delivery.status.in_(("queued", "retrying"))))
            .execute()
        )
    if not claimed:
        row = Delivery.get_or_none(Delivery.id == delivery_id)
        return row.status if row else "gone"
    delivery = Delivery.get_by_id(delivery_id)
    channel = NotificationChannel.get_or_none(NotificationChannel.id == delivery.channel_id)
    event = Event.get_or_none(Event.id == delivery.event_id)
    status = _attempt(delivery, channel, event, connection, settings, enqueue)
    metrics.record_delivery(connection, channel.kind if channel else "", status)
    return status


def _attempt(
    delivery: Delivery,
    channel: NotificationChannel | None,
    event: Event | None,
    connection: redis.Redis,
    settings: Settings,
    enqueue: Callable[[int, float], None],
) -> str:
    """One try of a claimed delivery; its status afterwards."""
    if channel is None or event is None:
        return _finish(delivery, "failed", error="the channel or event was deleted")
    if not channel.enabled and event.kind != "test":
        # Disabled while this delivery waited: nothing more goes out (a test still may).
        return _finish(
            delivery, "skipped", attempts=delivery.attempts - 1, error="channel disabled"
        )

    breaker = breaker_for(connection, channel, settings)
    if not breaker.allow():
        # Open: wait out the cool-down; half-open: another worker's trial is in flight.
        wait = max(breaker.state().retry_in, breaker.trial_seconds_left(), 1.0)
        # Held back, not tried: the attempt is given back.
        _finish(
            delivery,
            "retrying",
            attempts=delivery.attempts - 1,
            error="circuit open: the channel failed repeatedly; waiting before trying again",
            next_in=wait,
        )
        enqueue(delivery.id, wait)
        return "retrying"

    module = registry.module_for(channel.kind)
    if module is None:
        return _finish(delivery, "failed", error=f"no sender for channel kind {channel.kind!r}")
    try:
        result = module.deliver(channel, event, delivery, settings, connection)
    except SendError as exc:
        if exc.retryable:
            breaker.record_failure()
        error = str(exc)[:2000]
        if exc.retryable and delivery.attempts < settings.notify_max_attempts:
            wait = backoff_seconds(
                delivery.attempts, settings.notify_backoff_seconds, exc.retry_after
            )
            _finish(delivery, "retrying", code=exc.status_code, error=error, next_in=wait)
            enqueue(delivery.id, wait)
            log.info(
                "delivery will be retried",
                extra={"delivery_id": delivery.id, "channel_id": channel.id, "in_s": wait},
            )
            return "retrying"
        log.warning(
            "delivery failed",
            extra={"delivery_id": delivery.id, "channel_id": channel.id, "error": error},
        )
        return _finish(delivery, "failed", code=exc.status_code, error=error)
    except Exception as exc:  # a bug in a sender: a clean failure, never a resend loop
        log.exception("sender crashed", extra={"delivery_id": delivery.id})
        return _finish(delivery, "failed", error=f"unexpected error: {type(exc).__name__}")
    if result.skipped:
        return _finish(delivery, "skipped", error=result.detail)
    breaker.record_success()
    log.info(
        "delivered",
        extra={"delivery_id": delivery.id, "channel_id": channel.id, "code": result.status_code},
    )
    status = _finish(delivery, "sent", code=result.status_code, error=result.detail, sent=True)
    if delivery.purpose != "cancel":
        # Acknowledged while this delivery was on its way: the event's cancellations were routed
        # to the channels that had it then, not to this one. Now that it has it, route again
        # (one "cancel" delivery per event and channel, so nobody gets a second).
        fresh = Event.get_or_none(Event.id == event.id)
        if fresh is not None and fresh.acknowledged:
            route_cancellations([fresh], enqueue)
    return status


def _finish(
    delivery: Delivery,
    status: str,
    *,
    code: int | None = None,
    error: str = "",
    next_in: float | None = None,
    attempts: int | None = None,
    sent: bool = False,
) -> str:
    now = times.utcnow()
    values: dict = {
        "status": status,
        "updated_at": now,
        "error": error,
        "next_attempt_at": now + timedelta(seconds=next_in) if next_in is not None else None,
    }
    if code is not None:
        values["response_code"] = code
    if attempts is not None:
        values["attempts"] = attempts
    if sent:
        values["sent_at"] = now
    with write_transaction():
        Delivery.update(**values).where(Delivery.id == delivery.id).execute()
    return status


def retry_by_hand(
    delivery: Delivery,
    enqueue: Callable[[int, float], None],
    record: Callable[[], None] | None = None,
) -> bool:
    """An admin's "retry": a failed (or skipped) delivery is queued once more. `record` (the
    audit entry) runs in the transaction that marks it queued, before it is enqueued."""
    with write_transaction():
        updated = (
            Delivery.update(
                status="queued",
                error="",
                attempts=0,  # a fresh set of attempts
                next_attempt_at=None,
                updated_at=times.utcnow(),
            )
            .where((Delivery.id == delivery.id) & (Delivery.status.in_(("failed", "skipped"))))
            .execute()
        )
        if updated and record is not None:
            record()
    if updated:
        enqueue(delivery.id, 0.0)
    return bool(updated)


def sweep_stuck() -> int:
    """Deliveries left in "sending" by a worker that died: failed, never re-sent blindly."""
    cutoff = times.utcnow() - STUCK_AFTER
    with write_transaction():
        return (
            Delivery.update(
                status="failed",
                error="outcome unknown: the worker stopped while sending (not resent, "
                "to avoid a duplicate; retry it by hand if it did not arrive)",
                updated_at=times.utcnow(),
            )
            .where((Delivery.status == "sending") & (Delivery.updated_at < cutoff))
            .execute()
        )


LOST_AFTER = timedelta(minutes=5)


def requeue_lost(enqueue: Callable[[int, float], None]) -> int:
    """Deliveries still waiting long after their time (a lost or never-queued job) are queued
    again. Harmless when the first job is alive after all: only one can claim the row."""
    cutoff = times.utcnow() - LOST_AFTER
    due = Delivery.select(Delivery.id).where(
        Delivery.status.in_(("queued", "retrying"))
        & (
            (Delivery.next_attempt_at.is_null() & (Delivery.updated_at < cutoff))
            | (Delivery.next_attempt_at < cutoff)
        )
    )
    ids = [d.id for d in due]
    for delivery_id in ids:
        enqueue(delivery_id, 0.0)
    return len(ids)
