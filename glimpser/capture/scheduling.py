"""When captures run: a claim per stream in Redis, RQ's enqueue_at for the exact time.

- A stream has at most one capture scheduled, queued or running: `claim()` is a Redis
  SET NX with a TTL; the capture job releases it when it ends, and the TTL frees it if a
  worker dies mid-job.
- After each capture the job schedules the next one itself (`enqueue_at`, executed by the
  RQ scheduler inside the workers, which polls every second).
- `sweep_due_streams()`, run every few seconds by RQ's cron scheduler, catches everything
  else: new or resumed streams, long intervals, and anything lost in a restart. The
  database's `next_due_at` is the truth, so streams resume by themselves.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from glimpser import queues, times
from glimpser.models import Stream
from glimpser.sources.schemas import KIND_QUEUE

SWEEP_SECONDS = 5
# The sweep schedules everything due before its next run, plus a margin.
LOOKAHEAD = timedelta(seconds=SWEEP_SECONDS * 2)
# How long after its planned start a capture job may still hold the claim.
CLAIM_GRACE_SECONDS = 60


def claim_key(stream_id: int) -> str:
    return f"glimpser:capture:claim:{stream_id}"


def claim(connection: redis.Redis, stream_id: int, job_id: str, seconds: float) -> bool:
    """Take the stream's claim; False when a capture is already scheduled, queued or running."""
    return bool(connection.set(claim_key(stream_id), job_id, nx=True, ex=max(1, int(seconds))))


def release(connection: redis.Redis, stream_id: int) -> None:
    connection.delete(claim_key(stream_id))


def is_claimed(connection: redis.Redis, stream_id: int) -> bool:
    return bool(connection.exists(claim_key(stream_id)))


def jitter(interval: int) -> timedelta:
    """Up to 10 % of the interval (at most 1 s), so streams with one interval spread out."""
    return timedelta(seconds=random.uniform(0, min(1.0, interval * 0.1)))


def _timeout(stream: Stream) -> int:
    return int((stream.config or {}).get("timeout", 30))


def enqueue_capture(
    connection: redis.Redis, stream: Stream, at: datetime | None = None, *, manual: bool = False
) -> bool:
    """Schedule (or, with no time or a past time, queue) one capture of a stream.

    Returns False, and does nothing, when the stream already has one in flight.
    """
    now = times.utcnow()
    at = at or now
    lead = max((at - now).total_seconds(), 0.0)
    job_timeout = _timeout(stream) + 30
    job_id = f"capture-{stream.id}-{uuid.uuid4().hex[:12]}"
    if not claim(connection, stream.id, job_id, lead + job_timeout + CLAIM_GRACE_SECONDS):
        return False
    try:
        queues.enqueue_capture(
            connection,
            KIND_QUEUE.get(stream.kind, "capture"),
            stream.id,
            job_id=job_id,
            job_timeout=job_timeout,
            due_at=times.isoformat_precise(at),
            manual=manual,
            at=at if lead > 0.5 else None,
        )
    except Exception:
        release(connection, stream.id)
        raise
    return True


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


def sweep_due_streams(connection: redis.Redis, now: datetime | None = None) -> int:
    """Schedule every enabled stream that is due before the next sweep; returns how many."""
    now = now or times.utcnow()
    horizon = now + LOOKAHEAD
    due = Stream.select().where(
        Stream.enabled & (Stream.next_due_at.is_null() | (Stream.next_due_at <= horizon))
    )
    scheduled = 0
    for stream in due:
        at = max(stream.next_due_at or now, now) + jitter(stream.interval)
        scheduled += enqueue_capture(connection, stream, at)
    return scheduled
