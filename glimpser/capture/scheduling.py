"""When captures run: a claim per stream in Redis, RQ's enqueue_at for the exact time.

- A stream has at most one capture scheduled, queued or running: `claim()` is a Redis
  SET NX with a TTL; the capture job releases it when it ends. While the job runs, the claim
  is a short lease the job keeps renewing (`hold_claim()`), so when a worker dies mid-job
  (kill -9, out of memory) the claim lapses within LEASE_SECONDS, not after the job's timeout.
- After each capture the job schedules the next one itself (`enqueue_at`, executed by the
  RQ scheduler inside the workers, which polls every second).
- `sweep_due_streams()`, run every few seconds by RQ's cron scheduler, catches everything
  else: new or resumed streams, long intervals, and anything lost in a restart. The
  database's `next_due_at` is the truth, so streams resume by themselves.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import redis
from peewee import chunked
from redis.exceptions import LockError
from redis.lock import Lock
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from glimpser import queues, times
from glimpser.models import Stream
from glimpser.sources.browser_pool import SLOT_WAIT_SECONDS
from glimpser.sources.schemas import KIND_QUEUE

log = logging.getLogger(__name__)

SWEEP_SECONDS = 5
# The sweep schedules everything due before its next run, plus a margin.
LOOKAHEAD = timedelta(seconds=SWEEP_SECONDS * 2)
# How long after its planned start a capture job may still hold the claim.
CLAIM_GRACE_SECONDS = 60
# While a capture runs, its claim lives this long unless the job renews it (every third of it).
LEASE_SECONDS = 10
# Streams found past due together start at most this many per second (sweep_due_streams).
CATCH_UP_RATE = 10.0
# The sweep claims this many streams per Redis round trip and database query.
SWEEP_BATCH = 500


def claim_key(stream_id: int) -> str:
    return f"glimpser:capture:claim:{stream_id}"


def claim(connection: redis.Redis, stream_id: int, job_id: str, seconds: float) -> bool:
    """Take the stream's claim; False when a capture is already scheduled, queued or running."""
    return bool(connection.set(claim_key(stream_id), job_id, nx=True, ex=max(1, int(seconds))))


def release(connection: redis.Redis, stream_id: int) -> None:
    connection.delete(claim_key(stream_id))


def _lease(connection: redis.Redis, stream_id: int, job_id: str) -> Lock:
    """The stream's claim as a redis-py lock owned by the job: reacquire() sets its lifetime to
    LEASE_SECONDS only while the claim still holds this job's id."""
    lease = connection.lock(claim_key(stream_id), timeout=LEASE_SECONDS, thread_local=False)
    lease.local.token = job_id.encode()
    return lease


def start_lease(connection: redis.Redis, job: Job) -> None:
    """Called by the worker as it takes a capture job, before RQ marks the job started: the
    claim, which lived until the job's planned start plus its timeout, becomes a lease of
    LEASE_SECONDS. A worker killed from then on (even before the job's first line runs) frees
    the stream for the sweep within LEASE_SECONDS; the job itself renews it (hold_claim)."""
    stream_id = job.args[0] if job.args else None
    if not isinstance(stream_id, int):
        return
    with contextlib.suppress(LockError):  # lapsed or taken by another job: nothing to shorten
        _lease(connection, stream_id, job.id).reacquire()


@contextlib.contextmanager
def hold_claim(connection: redis.Redis, stream_id: int, job_id: str) -> Iterator[None]:
    """Keep the job's claim a lease of LEASE_SECONDS, renewed in the background while the
    body runs. A worker killed mid-capture stops renewing it, so the stream is free for the
    next sweep soon after; a job that lost its claim (it lapsed) just stops renewing."""
    lease = _lease(connection, stream_id, job_id)
    stop = threading.Event()

    def renew() -> None:
        while True:
            try:
                lease.reacquire()  # only while the value is still this job's id
            except LockError:
                return
            except redis.RedisError as exc:  # Redis away for a moment: try again next time
                log.warning("cannot renew the capture claim", extra={"error": str(exc)})
            if stop.wait(LEASE_SECONDS / 3):
                return

    renewer = threading.Thread(target=renew, name=f"claim-{stream_id}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(timeout=5)


def release_after_failure(job: Job, connection: redis.Redis, *exc_info: object) -> None:
    """RQ's on_failure callback of a capture job: free the stream's claim when the job failed
    before its own cleanup could (e.g. it could not even open the database connection),
    so the next sweep schedules the stream again instead of waiting out the claim's TTL.
    Only a claim that is still this job's is released."""
    stream_id = job.args[0] if job.args else None
    if not isinstance(stream_id, int):
        return
    with contextlib.suppress(LockError):
        _lease(connection, stream_id, job.id).release()


def is_claimed(connection: redis.Redis, stream_id: int) -> bool:
    return bool(connection.exists(claim_key(stream_id)))


def jitter(interval: int) -> timedelta:
    """Up to 10 % of the interval (at most 1 s), so streams with one interval spread out."""
    return timedelta(seconds=random.uniform(0, min(1.0, interval * 0.1)))


def job_timeout(queue_name: str, capture_timeout: int) -> int:
    """How long a capture job may run: the capture's own timeout, 30 s for the rest of the job,
    and on the browser queue the wait for a Chromium slot first (browser_pool)."""
    extra = int(SLOT_WAIT_SECONDS) if queue_name == "browser" else 0
    return capture_timeout + 30 + extra


def enqueue_capture(
    connection: redis.Redis, stream: Stream, at: datetime | None = None, *, manual: bool = False
) -> bool:
    """Schedule (or, with no time or a past time, queue) one capture of a stream.

    Returns False, and does nothing, when the stream already has one in flight.
    """
    job_id = _new_job_id(stream.id)
    if not claim(connection, stream.id, job_id, _claim_seconds(stream, at)):
        return False
    _enqueue_claimed(connection, stream, job_id, at, manual=manual)
    return True


def _new_job_id(stream_id: int) -> str:
    return f"capture-{stream_id}-{uuid.uuid4().hex[:12]}"


def _claim_seconds(stream: Stream, at: datetime | None) -> float:
    """How long a claim lives unless its job renews or releases it: until the job's planned
    start, its timeout and a grace."""
    lead = max(((at - times.utcnow()).total_seconds() if at else 0.0), 0.0)
    queue_name = KIND_QUEUE.get(stream.kind, "capture")
    return lead + job_timeout(queue_name, _capture_timeout(stream)) + CLAIM_GRACE_SECONDS


def _capture_timeout(stream: Stream) -> int:
    return int((stream.config or {}).get("timeout", 30))


def _enqueue_claimed(
    connection: redis.Redis,
    stream: Stream,
    job_id: str,
    at: datetime | None,
    *,
    manual: bool = False,
) -> None:
    """Enqueue the capture whose claim `job_id` holds (released again if that fails)."""
    now = times.utcnow()
    at = at or now
    lead = max((at - now).total_seconds(), 0.0)
    queue_name = KIND_QUEUE.get(stream.kind, "capture")
    try:
        queues.enqueue_capture(
            connection,
            queue_name,
            stream.id,
            job_id=job_id,
            job_timeout=job_timeout(queue_name, _capture_timeout(stream)),
            due_at=times.isoformat_precise(at),
            manual=manual,
            at=at if lead > 0.5 else None,
        )
    except Exception:
        release(connection, stream.id)
        raise


def capture_now(connection: redis.Redis, stream: Stream) -> bool:
    """Capture as soon as a worker is free. A capture merely scheduled for later is pulled
    forward; False when one is already queued or running."""
    job_id = connection.get(claim_key(stream.id))
    if job_id:
        try:
            job = Job.fetch(job_id.decode(), connection=connection)
        except NoSuchJobError:
            job = None
        if job is not None and job.get_status(refresh=True) != JobStatus.SCHEDULED:
            return False
        if job is not None:
            job.cancel()
            job.delete()
        release(connection, stream.id)
    return enqueue_capture(connection, stream, manual=True)


def catch_up(overdue: int, interval: int) -> timedelta:
    """A random delay for one of `overdue` streams found past due at once (after a restart or
    an outage), so that at most CATCH_UP_RATE of them start per second, and none later than
    one interval. Captures keep their cadence afterwards (each schedules the next at its due
    time + interval), so a herd that started together would capture together for good, each
    burst delaying the rest."""
    return timedelta(seconds=random.uniform(0, min(float(interval), overdue / CATCH_UP_RATE)))


def sweep_due_streams(connection: redis.Redis, now: datetime | None = None) -> int:
    """Schedule every enabled stream that is due before the next sweep; returns how many.
    Streams already past due are spread out (jitter, catch_up); the others keep their exact
    time, so a stream whose capture chained no next one yet does not drift.

    The claims are taken in one round trip per SWEEP_BATCH streams (the sweep runs on a
    worker's main thread, beside the analysis and notify jobs). A stream is read again once
    its claim is taken: a capture that ended after the first read has moved next_due_at on
    (a job records its outcome before it gives up the claim), and scheduling from the stale
    time would capture the stream twice in a row."""
    now = now or times.utcnow()
    horizon = now + LOOKAHEAD
    due = list(
        Stream.select(Stream.id, Stream.next_due_at).where(
            Stream.enabled & (Stream.next_due_at.is_null() | (Stream.next_due_at <= horizon))
        )
    )
    overdue = sum(1 for stream in due if (stream.next_due_at or now) <= now)
    scheduled = 0
    for batch in chunked(due, SWEEP_BATCH):
        job_ids = {candidate.id: _new_job_id(candidate.id) for candidate in batch}
        with connection.pipeline(transaction=False) as pipe:  # one round trip for the claims
            for stream_id, job_id in job_ids.items():
                pipe.set(claim_key(stream_id), job_id, nx=True, ex=CLAIM_GRACE_SECONDS)
            taken = [stream_id for stream_id, ok in zip(job_ids, pipe.execute(), strict=True) if ok]
        if not taken:
            continue  # all scheduled, queued or running already
        fresh = {stream.id: stream for stream in Stream.select().where(Stream.id.in_(taken))}
        for stream_id in taken:
            stream = fresh.get(stream_id)
            if stream is None or not stream.enabled or (stream.next_due_at or now) > horizon:
                release(connection, stream_id)
                continue
            at = stream.next_due_at or now
            if at <= now:
                at = now + max(jitter(stream.interval), catch_up(overdue, stream.interval))
            connection.expire(claim_key(stream_id), max(1, int(_claim_seconds(stream, at))))
            _enqueue_claimed(connection, stream, job_ids[stream_id], at)
            scheduled += 1
    return scheduled
