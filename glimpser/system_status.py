"""Health of the moving parts (database, Redis, queues, workers, scheduler), as data."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis
from rq import Worker
from rq.cron_scheduler_registry import get_registry_key

from glimpser.db import database
from glimpser.queues import QUEUE_NAMES, get_queue
from glimpser.web.health import check_database

# A cron scheduler that has not sent a heartbeat for this long is considered gone.
SCHEDULER_STALE_SECONDS = 120


@dataclass
class QueueStatus:
    name: str
    queued: int
    started: int
    failed: int
    scheduled: int


@dataclass
class SystemStatus:
    database_kind: str
    database_error: str | None
    redis_error: str | None
    redis_version: str | None = None
    redis_memory: str | None = None
    queues: list[QueueStatus] = field(default_factory=list)
    workers: list[dict] = field(default_factory=list)
    schedulers: list[dict] = field(default_factory=list)


def collect(redis_client: redis.Redis) -> SystemStatus:
    status = SystemStatus(
        database_kind=type(database.obj).__name__.replace("Database", ""),
        database_error=check_database(),
        redis_error=None,
    )
    try:
        info = redis_client.info()
    except (redis.RedisError, OSError) as exc:
        status.redis_error = f"{type(exc).__name__}: {exc}"
        return status
    status.redis_version = info.get("redis_version")
    status.redis_memory = info.get("used_memory_human")
    for name in QUEUE_NAMES:
        queue = get_queue(name, redis_client)
        status.queues.append(
            QueueStatus(
                name=name,
                queued=queue.count,
                started=queue.started_job_registry.count,
                failed=queue.failed_job_registry.count,
                scheduled=queue.scheduled_job_registry.count,
            )
        )
    for worker in Worker.all(connection=redis_client):
        status.workers.append(
            {
                "name": worker.name,
                "state": worker.get_state(),
                "queues": ", ".join(worker.queue_names()),
                "last_heartbeat": worker.last_heartbeat,
            }
        )
    now = time.time()
    for name, beat in redis_client.zrange(get_registry_key(), 0, -1, withscores=True):
        status.schedulers.append(
            {
                "name": name.decode() if isinstance(name, bytes) else name,
                "seconds_since_heartbeat": round(now - beat),
                "alive": now - beat < SCHEDULER_STALE_SECONDS,
            }
        )
    return status
