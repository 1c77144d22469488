"""Job entry points: the only code RQ workers import and the scheduler registers.

Each job opens its own database connection and logs one line when it ends. Jobs are put on
their queues by glimpser.queues (by dotted path), never by importing this module: only the
worker and the scheduler (glimpser.cli) import it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any, TypeVar

import redis
from rq import get_current_job

from glimpser import metrics, queues, system_status, times
from glimpser.analysis import rules, summaries
from glimpser.analysis.ai import AIClient
from glimpser.analysis.pipeline import analyse_snapshot as run_analysis
from glimpser.backups import archive as backup_archive
from glimpser.capture import scheduling
from glimpser.capture.run import grab, run_capture
from glimpser.config import Settings, load_settings
from glimpser.db import database
from glimpser.media import deletion, retention, snapshots, timelapse
from glimpser.media.storage import get_storage
from glimpser.models import Stream
from glimpser.notify.dispatch import deliver, requeue_lost, sweep_stuck
from glimpser.runtime_settings import SettingsSource
from glimpser.sources import sealed
from glimpser.sources.base import CaptureError
from glimpser.sources.schemas import CONFIG_BY_KIND
from glimpser.updates import attempts, install, installed, last_check

log = logging.getLogger("glimpser.job")

F = TypeVar("F", bound=Callable[..., Any])

# The worker's settings: the start-up ones with Admin → Settings' changes, kept current.
_source: SettingsSource | None = None
# The worker's AI client with the settings and Redis connection it was made for (see _ai_client).
_ai: tuple[Settings, Any, Any] | None = None


def configure(settings: Settings | None) -> None:
    """Called once by the worker process with the settings it started with."""
    global _source
    _source = (
        None
        if settings is None
        else SettingsSource(settings, queues.connect_redis(settings.redis_url))
    )
    _drop_ai_client()


def settings() -> Settings:
    """The settings in effect now: a change saved in Admin → Settings shows within seconds
    (each call may ask Redis whether they changed; at most one GET a second)."""
    if _source is None:
        configure(load_settings())
    assert _source is not None
    return _source.get()


def _connection():  # noqa: ANN202 - the Redis connection of the running job
    job = get_current_job()
    if job is None:
        return queues.connect_redis(settings().redis_url)
    return job.connection


def _ai_client(connection: Any) -> Any:
    """The AI client (None when AI is not configured), kept between jobs.

    The worker runs every job in one long-lived process (SimpleWorker, no fork), so each
    analysis or summary reuses the HTTP connections of the last instead of opening new ones.
    Made anew when the settings or the Redis connection change."""
    global _ai
    current = settings()
    if _ai is not None and _ai[0] is current and _ai[1] is connection:
        return _ai[2]
    _drop_ai_client()
    client = AIClient.from_settings(current, connection)
    _ai = (current, connection, client)
    return client


def _drop_ai_client() -> None:
    global _ai
    if _ai is not None and _ai[2] is not None:
        _ai[2].close()
    _ai = None


def job(func: F) -> F:
    """Run with a database connection; one structured log line per run (and, for the cron
    jobs, the run's time and outcome in Redis for Admin → System)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "failed"
        try:
            with database.connection_context():
                if _source is not None:
                    _source.check_now()  # a change saved before this job was enqueued applies
                result = func(*args, **kwargs)
            outcome = "ok"
            return result
        finally:
            ms = round((time.perf_counter() - started) * 1000, 1)
            log.info("job", extra={"job": func.__name__, "outcome": outcome, "ms": ms})
            _record_job(func.__name__, outcome)
            if func.__name__ in _CRON_NAMES:
                _record_cron_run(func.__name__, outcome, ms)

    return wrapper  # type: ignore[return-value]


def _record_cron_run(name: str, outcome: str, ms: float) -> None:
    try:
        system_status.record_cron_run(_connection(), name, outcome, ms)
    except (redis.RedisError, OSError) as exc:  # the page shows it as not run; the job is done
        log.warning("cron run not recorded", extra={"job": name, "error": str(exc)})


def _record_job(name: str, outcome: str) -> None:
    try:
        metrics.record_job(_connection(), name, outcome)
    except Exception as exc:  # noqa: BLE001 - no Redis for the metric: the job is done anyway
        log.warning("job metric not recorded", extra={"job": name, "error": str(exc)[:200]})


def _forget_retention_preview() -> None:
    try:
        system_status.forget_retention_preview(_connection())
    except (redis.RedisError, OSError) as exc:  # the page's counts are a minute late, no more
        log.warning("retention preview not reset", extra={"error": str(exc)})


@job
def prune_history() -> dict:
    """Delete summaries, AI call records and audit entries past their retention settings."""
    report = asdict(retention.prune_history(settings()))
    _forget_retention_preview()
    return report


@job
def prune_audit_log() -> int:
    """Delete audit entries older than audit_retention_days (0: never); returns how many."""
    return retention.prune_audit(settings())


@job
def capture_stream(stream_id: int, due_at: str | None = None, manual: bool = False) -> dict:
    """Capture one stream, record the outcome, and schedule its next capture."""
    connection = _connection()
    due = times.parse(due_at)
    lag_ms = round((times.utcnow() - due).total_seconds() * 1000) if due else None
    current = get_current_job()
    lease = (
        scheduling.hold_claim(connection, stream_id, current.id)
        if current is not None
        else contextlib.nullcontext()
    )
    try:
        with lease:  # renewed from the job's first query on (the worker shortened it already)
            stream = Stream.get_or_none(Stream.id == stream_id)
            if stream is None or (not stream.enabled and not manual):
                return {"ok": False, "skipped": True}
            started = time.perf_counter()
            outcome = run_capture(stream_id, settings(), due, connection)
    finally:
        scheduling.release(connection, stream_id)
    result = ("stored" if outcome.stored else "unchanged") if outcome.ok else "failed"
    metrics.record_capture(connection, stream.kind, result, time.perf_counter() - started)
    log.info(
        "capture",
        extra={
            "stream_id": stream_id,
            "ok": outcome.ok,
            "lag_ms": lag_ms,
            "due_at": due_at,
            "manual": manual,
            "via": outcome.via,
        },
    )
    if outcome.stored and outcome.snapshot_id is not None:
        alerting = rules.alerting(stream)
        queues.enqueue_analysis(connection, outcome.snapshot_id, settings(), alerting=alerting)
    queues.enqueue_notifications(connection, settings(), list(outcome.events))
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
def analyse_snapshot(snapshot_id: int) -> dict:
    """Detect motion/change on one snapshot, describe it with AI if asked, apply the rules."""
    connection = _connection()
    ai = _ai_client(connection)
    outcome = run_analysis(snapshot_id, settings(), connection, get_storage(settings()), ai)
    queues.enqueue_notifications(connection, settings(), outcome.events)
    queues.enqueue_updates(connection, outcome.repeated)
    return asdict(outcome)


@job
def deliver_notification(delivery_id: int) -> str:
    """Send one delivery at most once (see glimpser.notify.dispatch); returns its status."""
    connection = _connection()
    return deliver(
        delivery_id,
        connection,
        settings(),
        lambda i, d: queues.enqueue_delivery(connection, i, d),
    )


@job
def sweep_stuck_deliveries() -> dict:
    """Deliveries left "sending" by a worker that died are marked failed (never resent);
    queued ones whose job was lost are queued again."""
    connection = _connection()
    failed = sweep_stuck()
    requeued = requeue_lost(lambda i, d: queues.enqueue_delivery(connection, i, d))
    return {"failed": failed, "requeued": requeued}


@job
def sweep_due_streams() -> int:
    """Schedule the captures that are due soon (see glimpser.capture.scheduling), queue
    scheduled jobs left waiting by a dead worker's RQ scheduler (queues.enqueue_overdue), and
    free that scheduler's locks for a live worker to take over (free_dead_scheduler_locks)."""
    connection = _connection()
    overdue = queues.enqueue_overdue(connection)
    if overdue:
        log.warning("scheduled jobs were overdue: queued them", extra={"jobs": overdue})
    freed = queues.free_dead_scheduler_locks(connection)
    if freed:
        log.warning("an RQ scheduler stopped: freed its queues", extra={"queues": freed})
    return scheduling.sweep_due_streams(connection)


def test_capture(config: dict, stream_id: int | None = None, secrets: str = "") -> dict:
    """Capture once from an unsaved configuration, for the stream form's preview. `config` has
    no secrets: they come from the saved stream `stream_id` or `secrets` (sources.sealed)."""
    try:
        stream = Stream.get_or_none(Stream.id == stream_id) if stream_id is not None else None
        names = CONFIG_BY_KIND[config["kind"]].SECRET_FIELDS
        stored = stream.config if stream is not None else None
        config = sealed.with_secrets(config, stored, secrets, names, settings().secret_key)
        frame = grab(config, settings(), elements=True)
    except CaptureError as exc:
        return {"ok": False, "error": str(exc)}
    return {
        "elements": frame.elements,
        "text": frame.text,
        "ok": True,
        "width": frame.width,
        "height": frame.height,
        "bytes": len(frame.jpeg),
        "jpeg_b64": base64.b64encode(frame.jpeg).decode(),
    }


@job
def apply_retention() -> dict:
    """Delete snapshots (files with rows) and events past their retention."""
    report = retention.apply_retention(settings(), get_storage(settings()))
    _forget_retention_preview()
    return {**asdict(report), "snapshots_deleted": report.snapshots_deleted}


@job
def build_timelapse(timelapse_id: int) -> dict:
    """Build one timelapse MP4 (media.timelapse); the row records progress and outcome."""
    return timelapse.build(timelapse_id, get_storage(settings()))


@job
def prune_timelapses() -> dict:
    """Delete timelapses past GLIMPSER_TIMELAPSE_RETENTION_DAYS, files with rows."""
    return timelapse.prune_timelapses(settings(), get_storage(settings()))


@job
def build_summary(summary_id: int) -> dict:
    """Build one AI summary (see glimpser.analysis.summaries); the row records the outcome."""
    connection = _connection()
    return summaries.build(summary_id, _ai_client(connection), connection)


@job
def schedule_summaries() -> dict:
    """Create and enqueue the hourly/daily summaries of the windows that just ended."""
    if not settings().ai_configured:
        return {"created": 0, "skipped": "AI not configured"}
    created = summaries.schedule_due(times.utcnow(), _connection(), settings().summary_periods)
    return {"created": len(created)}


@job
def delete_stream(stream_id: int) -> dict:
    """Remove a stream marked for deletion, in batches; progress goes to the job's meta."""
    current = get_current_job()

    def report(progress: deletion.DeletionProgress) -> None:
        if current is not None:
            current.meta["progress"] = asdict(progress)
            current.save_meta()

    return asdict(deletion.delete_stream(stream_id, get_storage(settings()), report))


@job
def sweep_orphans() -> dict:
    """Remove snapshot files without a row (past a grace period) and rows without a file."""
    report = snapshots.sweep_orphans(get_storage(settings()))
    if settings().storage == "s3":  # it listed the whole bucket: that is the bucket's usage
        try:
            system_status.record_bucket_usage(_connection(), report.files_seen, report.bytes_seen)
        except (redis.RedisError, OSError) as exc:  # the sweep itself is done
            log.warning("bucket usage not recorded", extra={"error": str(exc)})
    return asdict(report)


@job
def resume_stream_deletions() -> int:
    """Queue again the stream deletions whose job was lost (a worker died mid-way)."""
    return deletion.resume_deletions(_connection())


@job
def take_backup(with_snapshots: bool = False, keep: int = 0) -> dict:
    """Write one backup archive into the backups folder ("Back up now", or a scheduled one);
    with `keep`, then delete Glimpser-named archives beyond the newest `keep`."""
    path = backup_archive.create_backup(settings(), with_snapshots=with_snapshots)
    deleted = backup_archive.prune(settings(), keep) if keep else []
    return {"archive": path.name, "bytes": path.stat().st_size, "deleted": deleted}


# How often the scheduler asks whether a scheduled backup is due.
BACKUP_CHECK_SECONDS = 15 * 60


@job
def scheduled_backup() -> dict:
    """Queue a backup when the newest Glimpser-named archive is GLIMPSER_BACKUP_EVERY_HOURS
    old (or there is none); it keeps only the newest GLIMPSER_BACKUP_KEEP. The backup is a job
    of its own (glimpser.queues.enqueue_scheduled_backup), with a timeout fit for a backup."""
    current = settings()
    if current.backup_every_hours == 0:
        return {"skipped": "scheduled backups are off (GLIMPSER_BACKUP_EVERY_HOURS=0)"}
    newest = backup_archive.newest_auto_backup(current)
    # Half a check early rather than a whole check late.
    due = timedelta(hours=current.backup_every_hours, seconds=-BACKUP_CHECK_SECONDS / 2)
    if newest is not None and times.utcnow() - newest < due:
        return {"skipped": "not due"}
    job_id = queues.enqueue_scheduled_backup(
        _connection(), current.backup_snapshots, current.backup_keep
    )
    return {"queued": job_id} if job_id else {"skipped": "a scheduled backup is still queued"}


def _check_summary(result: last_check.LastCheck) -> dict:
    return {
        "error": result.error,
        "newest": result.newest.version if result.newest else None,
        "update_available": result.update_available,
    }


@job
def check_for_updates() -> dict:
    """Refresh the release repository's metadata through TUF and keep the result (Admin →
    Updates' "Check now"); a failed check is kept with its error, not raised."""
    return _check_summary(last_check.check_and_store(settings()))


@job
def apply_update(attempt_id: str) -> dict:
    """Admin → Updates' "Apply": download, back up, install and check the release, then hand
    it to `glimpser serve`, which switches over (glimpser.updates.install and .switch)."""
    current = settings()
    attempt = attempts.load(current, attempt_id)
    if attempt is None or attempt.state != attempts.RUNNING:
        return {"skipped": f"attempt {attempt_id} is not waiting to run"}
    supervisor = installed.supervisor_pid(current)
    if supervisor is None:
        attempts.Recorder(current, attempt).finish(
            attempts.FAILED,
            "This worker was not started by glimpser serve, so it cannot switch the processes "
            "over; nothing was changed.",
        )
        return {"state": attempts.FAILED}
    handed_over = install.prepare(current, attempt, supervisor=supervisor)
    return {"state": attempts.SWITCHING if handed_over else attempt.state}


# How often the scheduler asks whether an update check is due (every CHECK_EVERY).
UPDATE_CHECK_POLL_SECONDS = 15 * 60


@job
def scheduled_update_check() -> dict:
    """Check for updates when updates are configured and the last check is CHECK_EVERY old."""
    current = settings()
    if last_check.missing_settings(current):
        return {"skipped": "updates are not configured"}
    if not last_check.due(current):
        return {"skipped": "not due"}
    return _check_summary(last_check.check_and_store(current))


# (function, queue, interval in seconds) registered with RQ's cron scheduler.
CRON_JOBS: list[tuple[Callable[..., Any], str, int]] = [
    (sweep_due_streams, "schedule", 5),
    (apply_retention, "maintenance", 15 * 60),
    (prune_history, "maintenance", 3600),
    (prune_timelapses, "maintenance", 24 * 3600),
    (schedule_summaries, "maintenance", 5 * 60),
    (sweep_stuck_deliveries, "maintenance", 5 * 60),
    (resume_stream_deletions, "maintenance", 5 * 60),
    (sweep_orphans, "maintenance", 3600),
    (scheduled_backup, "maintenance", BACKUP_CHECK_SECONDS),
    (scheduled_update_check, "maintenance", UPDATE_CHECK_POLL_SECONDS),
]

_CRON_NAMES = frozenset(func.__name__ for func, _queue, _interval in CRON_JOBS)
