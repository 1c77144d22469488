"""The Redis connection and the named RQ queues every process agrees on."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

# schedule: the short sweep that schedules captures; capture: ffmpeg/HTTP grabs; browser:
# Chromium captures (one browser per worker); analysis: motion and AI; notify: deliveries
# to channels; maintenance: retention, pruning.
QUEUE_NAMES: tuple[str, ...] = (
    "schedule",
    "capture",
    "browser",
    "analysis",
    "notify",
    "maintenance",
)
# The order a worker that serves every queue takes them in (first = most urgent).
WORKER_QUEUE_ORDER: tuple[str, ...] = (
    "schedule",
    "notify",
    "capture",
    "analysis",
    "browser",
    "maintenance",
)


def connect_redis(url: str) -> redis.Redis:
    """A client for the configured Redis (redis://, rediss:// or unix://)."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def get_queue(name: str, connection: redis.Redis) -> Queue:
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=connection)


# A job scheduled (enqueue_at/enqueue_in) this long ago and still waiting has no live RQ
# scheduler to queue it: see enqueue_overdue().
OVERDUE_SECONDS = 10


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


def limiter_storage_uri(redis_url: str) -> str:
    """Flask-Limiter (the `limits` package) spells a unix-socket Redis URL differently."""
    parsed = urlparse(redis_url)
    if parsed.scheme == "unix":
        return f"redis+unix://{parsed.path}"
    return redis_url
