"""Job entry points: the only code RQ workers import and the scheduler registers.

Each job opens its own database connection and logs one line when it ends.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from rq import get_current_job

from glimpser import times
from glimpser.config import Settings, load_settings
from glimpser.db import database

log = logging.getLogger("glimpser.job")

F = TypeVar("F", bound=Callable[..., Any])

AUDIT_RETENTION = timedelta(days=365)

_settings: Settings | None = None


def configure(settings: Settings | None) -> None:
    """Called once by the worker process with the settings it started with."""
    global _settings
    _settings = settings


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def _connection():  # noqa: ANN202 - the Redis connection of the running job
    job = get_current_job()
    if job is None:
        from glimpser.queues import connect_redis

        return connect_redis(settings().redis_url)
    return job.connection


def job(func: F) -> F:
    """Run with a database connection; one structured log line per run."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "failed"
        try:
            with database.connection_context():
                result = func(*args, **kwargs)
            outcome = "ok"
            return result
        finally:
            log.info(
                "job",
                extra={
                    "job": func.__name__,
                    "outcome": outcome,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )

    return wrapper  # type: ignore[return-value]


@job
def prune_audit_log() -> int:
    """Drop audit entries older than a year; returns how many went."""
    from glimpser.models import AuditLog

    cutoff = times.utcnow() - AUDIT_RETENTION
    return AuditLog.delete().where(AuditLog.at < cutoff).execute()


@job
def capture_stream(stream_id: int, due_at: str | None = None, manual: bool = False) -> dict:
    """Capture one stream, record the outcome, and schedule its next capture."""
    from glimpser import scheduling
    from glimpser.capture import run_capture
    from glimpser.models import Stream

    connection = _connection()
    due = times.parse(due_at)
    lag_ms = round((times.utcnow() - due).total_seconds() * 1000) if due else None
    try:
        stream = Stream.get_or_none(Stream.id == stream_id)
        if stream is None or (not stream.enabled and not manual):
            return {"ok": False, "skipped": True}
        outcome = run_capture(stream_id, settings(), due, connection)
        log.info(
            "capture",
            extra={
                "stream_id": stream_id,
                "ok": outcome.ok,
                "lag_ms": lag_ms,
                "manual": manual,
                "via": outcome.via,
            },
        )
    finally:
        scheduling.release(connection, stream_id)
    # Chain the next capture when it falls before the next sweep would see it.
    stream = Stream.get_or_none(Stream.id == stream_id)
    if (
        stream is not None
        and stream.enabled
        and outcome.next_due_at is not None
        and outcome.next_due_at - times.utcnow() <= scheduling.LOOKAHEAD
    ):
        scheduling.enqueue_capture(connection, stream, outcome.next_due_at)
    return {
        "ok": outcome.ok,
        "snapshot_id": outcome.snapshot_id,
        "stored": outcome.stored,
        "error": outcome.error,
        "via": outcome.via,
    }


@job
def sweep_due_streams() -> int:
    """Schedule the captures that are due soon (see glimpser.scheduling)."""
    from glimpser import scheduling

    return scheduling.sweep_due_streams(_connection())


def test_capture(config: dict) -> dict:
    """Capture once from an unsaved configuration, for the stream form's preview."""
    import base64

    from glimpser.capture import grab
    from glimpser.sources.base import CaptureError

    try:
        frame = grab(config, settings())
    except CaptureError as exc:
        return {"ok": False, "error": str(exc)}
    return {
        "ok": True,
        "width": frame.width,
        "height": frame.height,
        "bytes": len(frame.jpeg),
        "jpeg_b64": base64.b64encode(frame.jpeg).decode(),
    }


@job
def apply_retention() -> dict:
    """Delete snapshots (files with rows) and events past their retention."""
    from dataclasses import asdict

    from glimpser.retention import apply_retention as run
    from glimpser.storage import get_storage

    report = run(settings(), get_storage(settings()))
    return {**asdict(report), "snapshots_deleted": report.snapshots_deleted}


@job
def build_timelapse(timelapse_id: int) -> dict:
    """Build one timelapse MP4 (see glimpser.timelapse); the row records progress and outcome."""
    from glimpser.storage import get_storage
    from glimpser.timelapse import build

    return build(timelapse_id, get_storage(settings()))


@job
def prune_timelapses() -> dict:
    """Delete timelapses past GLIMPSER_TIMELAPSE_RETENTION_DAYS, files with rows."""
    from glimpser.storage import get_storage
    from glimpser.timelapse import prune_timelapses as run

    return run(settings(), get_storage(settings()))


# (function, queue, interval in seconds) registered with RQ's cron scheduler.
CRON_JOBS: list[tuple[Callable[..., Any], str, int]] = [
    (sweep_due_streams, "schedule", 5),
    (apply_retention, "maintenance", 15 * 60),
    (prune_audit_log, "maintenance", 24 * 3600),
    (prune_timelapses, "maintenance", 24 * 3600),
]
