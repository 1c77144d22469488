"""The Redis connection, the named RQ queues, and the one place that enqueues jobs.

Every job is put on its queue by a function here, which names the job's entry point by its
dotted path ("glimpser.jobs.capture_stream"); RQ imports it in the worker. So no domain or web
module imports glimpser.jobs (which imports them all): jobs.py holds only the entry points, and
the import graph has no cycle through it. tests/test_house_imports.py keeps it so.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import redis
from redis.exceptions import LockError
from rq import Callback, Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.utils import utcparse

from glimpser.config import Settings
from glimpser.models import Event
from glimpser.notify.dispatch import route, route_cancellations, route_updates

# schedule: the short sweep that schedules captures; capture: ffmpeg/HTTP grabs; browser:
# Chromium captures (one browser per worker); alerts: the analysis of snapshots of streams
# whose rules notify someone; analysis: the analysis of the others, and summaries; notify:
# deliveries to channels; maintenance: retention, pruning, stream deletion, the orphan sweep.
QUEUE_NAMES: tuple[str, ...] = (
    "schedule",
    "capture",
    "browser",
    "alerts",
    "analysis",
    "notify",
    "maintenance",
)
# The order a worker that serves every queue takes them in (first = most urgent).
WORKER_QUEUE_ORDER: tuple[str, ...] = (
    "schedule",
    "notify",
    "alerts",
    "capture",
    "analysis",
    "browser",
    "maintenance",
)


# A job scheduled (enqueue_at/enqueue_in) this long ago and still waiting has no live RQ
# scheduler to queue it: see enqueue_overdue().
OVERDUE_SECONDS = 10
# RQ's scheduler beats every second; one silent this long is gone (free_dead_scheduler_locks).
SCHEDULER_SILENT_SECONDS = 15


def connect_redis(url: str) -> redis.Redis:
    """A client for the configured Redis (redis://, rediss:// or unix://)."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def get_queue(name: str, connection: redis.Redis) -> Queue:
    """The RQ queue of this name (one of QUEUE_NAMES)."""
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=connection)


def enqueue_overdue(connection: redis.Redis, grace: float = OVERDUE_SECONDS) -> int:
    """Queue the scheduled jobs that are more than `grace` seconds late; returns how many.

    RQ's scheduler runs inside one worker, behind a lock that lives 61 s, and the other
    workers try to take the lock over only every few minutes. A worker killed with -9 thus
    leaves every scheduled job (the next captures, notification retries) waiting for minutes.
    The live scheduler moves a job within a second of its time, so a job this late means it
    is gone; whoever removes the job from the registry first is the one that queues it.
    """
    moved = 0
    cutoff = int(time.time() - grace)
    for name in QUEUE_NAMES:
        queue = get_queue(name, connection)
        registry = queue.scheduled_job_registry
        for job_id in registry.get_jobs_to_schedule(cutoff):
            if not connection.zrem(registry.key, job_id):
                continue  # the RQ scheduler (or another sweep) took it meanwhile
            try:
                job = Job.fetch(job_id, connection=connection)
            except NoSuchJobError:
                continue  # expired or deleted while it waited
            queue.enqueue_job(job)
            moved += 1
    return moved


def free_dead_scheduler_locks(
    connection: redis.Redis, silent: float = SCHEDULER_SILENT_SECONDS
) -> list[str]:
    """Remove the RQ scheduler locks whose holder stopped beating; returns their queues.

    RQ's scheduler (a process forked by one worker) writes its heartbeat and renews its locks
    every second. Killed with its host, it leaves its locks for 61 s, during which no other
    worker can become the scheduler of those queues and every scheduled job waits for
    enqueue_overdue(). A holder silent for `silent` seconds is dead: its lock is removed (only
    if still its own), and the next worker to run RQ's maintenance (MAINTENANCE_SECONDS) takes
    the queue over. A holder whose heartbeat is missing is left alone: it is starting (the
    lock is taken just before the scheduler process writes its first heartbeat), or its lock
    expires with it.
    """
    freed = []
    now = time.time()
    for name in QUEUE_NAMES:
        key = RQScheduler.get_locking_key(name)
        holder = connection.get(key)
        if holder is None:
            continue
        beat = connection.hget(SCHEDULER_KEY_TEMPLATE % holder.decode(), "last_heartbeat")
        if beat is None:
            continue
        try:
            silent_for = now - utcparse(beat.decode()).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
        if silent_for < silent:
            continue
        lock = connection.lock(key, thread_local=False)
        lock.local.token = holder
        with contextlib.suppress(LockError):  # it beat again and moved on, or it expired
            lock.release()
            freed.append(name)
    return freed


def limiter_storage_uri(redis_url: str) -> str:
    """Flask-Limiter (the `limits` package) spells a unix-socket Redis URL differently."""
    parsed = urlparse(redis_url)
    if parsed.scheme == "unix":
        return f"redis+unix://{parsed.path}"
    return redis_url


# --- enqueueing ---------------------------------------------------------------------------------

JOBS = "glimpser.jobs"


def _job(name: str) -> str:
    """The dotted path RQ imports the job's function from."""
    return f"{JOBS}.{name}"


# A capture, on the capture or the browser queue (the workers shorten its claim as they take it).
CAPTURE_JOB = _job("capture_stream")


def enqueue_capture(
    connection: redis.Redis,
    queue_name: str,
    stream_id: int,
    *,
    job_id: str,
    job_timeout: int,
    due_at: str,
    manual: bool,
    at: datetime | None = None,
) -> Job:
    """Queue one capture of a stream now, or schedule it for `at` (see capture.scheduling)."""
    queue = get_queue(queue_name, connection)
    options: dict[str, Any] = {
        "job_id": job_id,
        "job_timeout": job_timeout,
        "result_ttl": 60,
        "failure_ttl": 24 * 3600,
        "description": f"capture stream {stream_id}",
        # A capture that fails before its own cleanup (killed, timed out) frees its claim.
        "on_failure": Callback("glimpser.capture.scheduling.release_after_failure"),
    }
    kwargs = {"due_at": due_at, "manual": manual}
    if at is not None:
        return queue.enqueue_at(at, CAPTURE_JOB, args=(stream_id,), kwargs=kwargs, **options)
    return queue.enqueue(CAPTURE_JOB, args=(stream_id,), kwargs=kwargs, **options)


def enqueue_test_capture(
    connection: redis.Redis,
    queue_name: str,
    stream_config: dict,
    job_timeout: int,
    *,
    stream_id: int | None,
    sealed_secrets: str,
) -> Job:
    """Queue a one-off capture of an unsaved configuration (the stream form's preview). The
    configuration carries no secret: they come from the saved stream or the sealed ones."""
    return get_queue(queue_name, connection).enqueue(
        _job("test_capture"),
        stream_config,
        stream_id,
        sealed_secrets,
        job_timeout=job_timeout,
        result_ttl=300,
        ttl=120,
        failure_ttl=300,
    )


def worker_queues(names: Sequence[str]) -> list[str]:
    """The queues a worker asked for `names` serves: "analysis" stands for both analysis
    queues, the alerts queue first (see enqueue_analysis)."""
    out = list(names)
    if "analysis" in out and "alerts" not in out:
        out.insert(out.index("analysis"), "alerts")
    return out


def enqueue_analysis(
    connection: redis.Redis, snapshot_id: int, settings: Settings, *, alerting: bool = False
) -> Job:
    """Queue the analysis of a stored snapshot (motion, AI description, rules).

    A snapshot of a stream with a rule that notifies someone (`alerting`, rules.alerting)
    goes on the alerts queue, which workers take before the analysis queue: when analyses
    fall behind (more snapshots a second than the workers can analyse), an event that sends a
    notification does not wait behind the analysis of every other stream. A stream's
    snapshots stay on one queue, in order, while its rules do not change."""
    # Up to two AI calls (description, a rule's question), each with its retries.
    s = settings
    ai_seconds = s.ai_timeout * (s.ai_max_retries + 1) * 2 if s.ai_configured else 0
    return get_queue("alerts" if alerting else "analysis", connection).enqueue(
        _job("analyse_snapshot"),
        args=(snapshot_id,),
        job_id=f"analyse-{snapshot_id}",
        job_timeout=120 + ai_seconds,
        result_ttl=60,
        failure_ttl=24 * 3600,
        description=f"analyse snapshot {snapshot_id}",
    )


def enqueue_delivery(connection: redis.Redis, delivery_id: int, delay: float = 0.0) -> None:
    """Queue one notification delivery on the notify queue, now or after `delay` seconds."""
    queue = get_queue("notify", connection)
    options: dict[str, Any] = {
        "job_timeout": 180,
        "result_ttl": 300,
        "failure_ttl": 7 * 24 * 3600,
        "description": f"deliver notification {delivery_id}",
    }
    if delay > 0.5:
        queue.enqueue_in(
            timedelta(seconds=delay), _job("deliver_notification"), delivery_id, **options
        )
    else:
        queue.enqueue(_job("deliver_notification"), delivery_id, **options)


def _events(event_ids: Sequence[int]) -> list[Event]:
    """The events with these ids, oldest first."""
    return list(Event.select().where(Event.id.in_(list(event_ids))).order_by(Event.id))


def enqueue_notifications(
    connection: redis.Redis, settings: Settings, event_ids: Sequence[int]
) -> list[int]:
    """Create the deliveries of new events (their rules' channels) and queue them."""
    if not event_ids:
        return []
    return route(
        _events(event_ids),
        connection,
        settings,
        lambda i, d: enqueue_delivery(connection, i, d),
    )


def enqueue_updates(connection: redis.Redis, event_ids: Sequence[int]) -> list[int]:
    """Open events that matched again: CAP endpoints get an Update (throttled)."""
    if not event_ids:
        return []
    return route_updates(_events(event_ids), lambda i, d: enqueue_delivery(connection, i, d))


def enqueue_cancellations(connection: redis.Redis, event_ids: Sequence[int]) -> list[int]:
    """Withdraw acknowledged events where channels support it (CAP Cancel messages)."""
    if not event_ids:
        return []
    return route_cancellations(_events(event_ids), lambda i, d: enqueue_delivery(connection, i, d))


def enqueue_timelapse_build(connection: redis.Redis, timelapse_id: int, job_timeout: int) -> Job:
    """Queue the build of a timelapse on the maintenance queue."""
    return get_queue("maintenance", connection).enqueue(
        _job("build_timelapse"),
        timelapse_id,
        job_timeout=job_timeout,
        result_ttl=3600,
        failure_ttl=24 * 3600,
    )


def enqueue_summary_build(connection: redis.Redis, summary_id: int, job_timeout: int) -> Job:
    """Queue the build of an AI summary on the analysis queue."""
    return get_queue("analysis", connection).enqueue(
        _job("build_summary"),
        summary_id,
        job_timeout=job_timeout,
        result_ttl=3600,
        failure_ttl=24 * 3600,
    )


def enqueue_stream_deletion(connection: redis.Redis, stream_id: int, job_id: str, name: str) -> Job:
    """Queue the removal of a stream marked for deletion (see media.deletion)."""
    return get_queue("maintenance", connection).enqueue(
        _job("delete_stream"),
        stream_id,
        job_id=job_id,
        job_timeout=6 * 3600,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
        description=f"delete stream {stream_id} ({name[:100]})",
    )


# One "Back up now" job at a time: its id is fixed, so a second click while it waits or runs
# finds it instead of queueing another.
BACKUP_JOB_ID = "backup-now"


def enqueue_backup(connection: redis.Redis, with_snapshots: bool) -> Job:
    """Queue a backup (Admin → Backups' "Back up now") on the maintenance queue."""
    return get_queue("maintenance", connection).enqueue(
        _job("take_backup"),
        kwargs={"with_snapshots": with_snapshots},
        job_id=BACKUP_JOB_ID,
        job_timeout=6 * 3600,
        result_ttl=7 * 24 * 3600,
        failure_ttl=7 * 24 * 3600,
        description="back up now" + (" (with snapshots)" if with_snapshots else ""),
    )


SCHEDULED_BACKUP_JOB_ID = "backup-scheduled"


def enqueue_scheduled_backup(connection: redis.Redis, with_snapshots: bool, keep: int) -> str:
    """Queue a scheduled backup (then pruning to the newest `keep`) on the maintenance queue;
    "" when the previous one still waits or runs."""
    try:
        previous = Job.fetch(SCHEDULED_BACKUP_JOB_ID, connection=connection)
    except NoSuchJobError:
        previous = None
    if previous is not None:
        if previous.get_status() in ("queued", "started", "scheduled", "deferred"):
            return ""
        previous.delete()  # done or failed (Admin → Backups showed it): a new run replaces it
    get_queue("maintenance", connection).enqueue(
        _job("take_backup"),
        kwargs={"with_snapshots": with_snapshots, "keep": keep},
        job_id=SCHEDULED_BACKUP_JOB_ID,
        job_timeout=6 * 3600,
        result_ttl=7 * 24 * 3600,
        failure_ttl=7 * 24 * 3600,
        description="scheduled backup",
    )
    return SCHEDULED_BACKUP_JOB_ID


# One "Check now" (Admin → Updates) at a time, like "Back up now".
UPDATE_CHECK_JOB_ID = "update-check-now"


def enqueue_update_check(connection: redis.Redis) -> Job:
    """Queue an update check (Admin → Updates' "Check now") on the maintenance queue."""
    return get_queue("maintenance", connection).enqueue(
        _job("check_for_updates"),
        job_id=UPDATE_CHECK_JOB_ID,
        job_timeout=10 * 60,
        result_ttl=7 * 24 * 3600,
        failure_ttl=7 * 24 * 3600,
        description="check for updates",
    )


def enqueue_update_apply(connection: redis.Redis, attempt_id: str) -> Job:
    """Queue an update (Admin → Updates' "Apply") on the maintenance queue."""
    return get_queue("maintenance", connection).enqueue(
        _job("apply_update"),
        args=(attempt_id,),
        job_id=f"update-apply-{attempt_id}",
        job_timeout=2 * 3600,
        result_ttl=7 * 24 * 3600,
        failure_ttl=7 * 24 * 3600,
        description=f"apply update ({attempt_id})",
    )


def requeue_failed(connection: redis.Redis, queue_name: str, job: Job) -> Job:
    """Put a failed job back on its queue (Admin → System's "Retry"), at the end of the line.

    Raises rq.exceptions.InvalidJobOperation when the job is no longer in the failed registry
    (retried or deleted meanwhile)."""
    return get_queue(queue_name, connection).failed_job_registry.requeue(job)
