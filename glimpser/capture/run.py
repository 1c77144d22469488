"""The capture job: source → JPEG → storage + Snapshot row → stream status (and events).

Status columns are written with targeted UPDATEs, never `stream.save()`, so that a capture
finishing while an admin edits the stream cannot overwrite the edit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import peewee
import redis
from pydantic import ValidationError

from glimpser import metrics, sources, times
from glimpser.analysis.rules import evaluate_capture_failure
from glimpser.capture import readers
from glimpser.config import Settings
from glimpser.db import write_transaction
from glimpser.media.imaging import to_jpeg
from glimpser.media.snapshots import save_snapshot
from glimpser.media.storage import StorageError, get_storage
from glimpser.models import Event, Snapshot, Stream
from glimpser.sources.base import CaptureContext, CaptureError, Frame
from glimpser.sources.redaction import redact_urls
from glimpser.sources.schemas import parse_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureOutcome:
    ok: bool
    snapshot_id: int | None = None
    stored: bool = False
    error: str = ""
    next_due_at: datetime | None = None
    via: str = "direct"  # or "reader": the frame came from a persistent reader
    events: tuple[int, ...] = ()  # events raised by this capture (for the notifications)


def backoff_delay(interval: int, failures: int, cap: int) -> float:
    """Seconds until the next try after `failures` consecutive failures: doubling, capped.

    Never sooner than the normal interval, never later than max(cap, interval).
    """
    base = max(interval, 1)
    delay = base * 2 ** min(max(failures - 1, 0), 20)
    return float(min(delay, max(cap, interval)))


def next_due(due_at: datetime | None, interval: int, now: datetime) -> datetime:
    """Keep the stream's cadence (due time + interval), but never schedule in the past."""
    if due_at is None:
        return now + timedelta(seconds=interval)
    following = due_at + timedelta(seconds=interval)
    return following if following > now else now + timedelta(seconds=min(interval, 1))


def grab(config_data: dict, settings: Settings, *, elements: bool = False) -> Frame:
    """Capture once from a config dict (validated by the kind's schema); `elements`: a
    website's visible elements too (the stream form's test capture)."""
    try:
        config = parse_config(config_data)
    except ValidationError as exc:
        raise CaptureError(f"invalid stream configuration: {exc.errors()[0]['msg']}") from None
    return sources.capture(config, CaptureContext.from_settings(settings), elements=elements)


def from_reader(stream: Stream, settings: Settings, connection: redis.Redis | None) -> Frame | None:
    """A fresh frame from the stream's persistent reader (capture.readers), if it has one."""
    if connection is None or not readers.wants_reader(stream, settings.reader_max_interval):
        return None
    data = readers.latest_frame(connection, stream.id, max_age=max(2.0, stream.interval * 1.5))
    if data is None:
        return None
    try:
        return to_jpeg(data, settings.capture_max_jpeg_bytes)
    except CaptureError:
        return None


def run_capture(
    stream_id: int,
    settings: Settings,
    due_at: datetime | None = None,
    connection: redis.Redis | None = None,
) -> CaptureOutcome:
    """Capture one stream now and record the result."""
    stream = Stream.get_or_none(Stream.id == stream_id)
    if stream is None:
        return CaptureOutcome(ok=False, error="stream no longer exists")
    started = times.utcnow()
    frame = from_reader(stream, settings, connection)
    via = "reader" if frame is not None else "direct"
    try:
        frame = frame or grab(stream.config, settings)
    except CaptureError as exc:
        return _record_failure(stream, str(exc), started, due_at, settings, connection)
    except Exception as exc:  # a bug or an unexpected library error: still a clean failure
        log.exception("capture crashed", extra={"stream_id": stream_id})
        return _record_failure(
            stream, f"unexpected error: {type(exc).__name__}", started, due_at, settings, connection
        )
    try:
        snapshot = save_snapshot(
            stream,
            frame,
            started,
            get_storage(settings),
            store_identical=settings.store_identical_frames,
        )
    except StorageError as exc:
        return _record_failure(
            stream, f"cannot store the snapshot: {exc}", started, due_at, settings, connection
        )
    except peewee.IntegrityError:
        if not Stream.select().where(Stream.id == stream_id).exists():
            return CaptureOutcome(ok=False, error="the stream was deleted during the capture")
        raise
    return _record_success(stream, snapshot, started, due_at, settings, via, connection)


def _record_success(
    stream: Stream,
    snapshot: Snapshot | None,
    at: datetime,
    due_at: datetime | None,
    settings: Settings,
    via: str,
    connection: redis.Redis | None = None,
) -> CaptureOutcome:
    now = times.utcnow()
    due = next_due(due_at, stream.interval, now)
    with write_transaction():
        fresh = Stream.get_or_none(Stream.id == stream.id)
        if fresh is None:
            return CaptureOutcome(ok=True, error="the stream was deleted during the capture")
        failures = fresh.consecutive_failures
        Stream.update(
            state="ok" if fresh.enabled else "paused",
            last_capture_at=at,
            last_success_at=at,
            last_error="",
            consecutive_failures=0,
            next_due_at=due,
        ).where(Stream.id == stream.id).execute()
        # A recovery event only answers a failure event that was raised; it goes wherever
        # that failure went (the same rule, hence the same channels).
        recovered: list[Event] = []
        if failures >= settings.failure_event_after:
            failure = (
                Event.select()
                .where((Event.stream == stream.id) & (Event.kind == "capture_failed"))
                .order_by(Event.created_at.desc(), Event.id.desc())
                .first()
            )
            recovered.append(
                Event.create(
                    stream=stream.id,
                    snapshot=snapshot.id if snapshot else None,
                    rule=failure.rule_id if failure else None,
                    kind="capture_recovered",
                    severity=failure.severity if failure and failure.rule_id else "info",
                    title=f"{stream.name} is capturing again",
                    description=f"Recovered after {failures} failed captures.",
                    data={"failures": failures, "failure_event": failure.id if failure else None},
                )
            )
    metrics.record_events(connection, recovered)
    return CaptureOutcome(
        ok=True,
        snapshot_id=snapshot.id if snapshot else None,
        stored=snapshot is not None,
        next_due_at=due,
        via=via,
        events=tuple(e.id for e in recovered),
    )


def _record_failure(
    stream: Stream,
    error: str,
    at: datetime,
    due_at: datetime | None,
    settings: Settings,
    connection: redis.Redis | None = None,
) -> CaptureOutcome:
    # Viewers see the last error: no password or query token of the source URL in it.
    error = redact_urls(error.strip())[:1000] or "capture failed"
    now = times.utcnow()
    with write_transaction():
        fresh = Stream.get_or_none(Stream.id == stream.id)
        if fresh is None:
            return CaptureOutcome(ok=False, error="the stream was deleted during the capture")
        failures = fresh.consecutive_failures + 1
        due = now + timedelta(
            seconds=backoff_delay(fresh.interval, failures, settings.backoff_max_seconds)
        )
        Stream.update(
            state="failing" if fresh.enabled else "paused",
            last_capture_at=at,
            last_error=error,
            consecutive_failures=failures,
            next_due_at=due,
        ).where(Stream.id == stream.id).execute()
    events: list[Event] = []
    if failures == settings.failure_event_after:
        events = _failure_events(fresh, error, failures, connection)
    log.info("capture failed", extra={"stream_id": stream.id, "error": error, "failures": failures})
    return CaptureOutcome(
        ok=False, error=error, next_due_at=due, events=tuple(e.id for e in events)
    )


def _failure_events(
    stream: Stream, error: str, failures: int, connection: redis.Redis | None
) -> list[Event]:
    """Rules with the condition "capture failing" raise their events; when none does, a plain
    system event (rule NULL) is stored, so a failure is always on record and a recovery event
    can answer it. Returns the events stored (for the notifications)."""
    try:
        events = evaluate_capture_failure(stream, error, failures, connection)
    except Exception:  # the rules must never lose the record that the stream is failing
        log.exception("capture-failure rules failed", extra={"stream_id": stream.id})
        events = []
    if events:
        return events
    try:
        with write_transaction():
            event = Event.create(
                stream=stream.id,
                kind="capture_failed",
                severity="medium",
                title=f"{stream.name} is not capturing",
                description=error,
                data={"failures": failures},
            )
    except peewee.IntegrityError:  # the stream was deleted meanwhile: nothing to report on
        return []
    metrics.record_events(connection, [event])
    return [event]
