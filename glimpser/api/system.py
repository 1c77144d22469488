"""`/api/v1/system`: what Admin → System shows, as data (the admin scope, an admin's key).

Read from the real parts by glimpser.system_status, as the page is: the database, Redis, the
queues, RQ workers, cron schedulers and their last runs, the readers processes, failed jobs
(tracebacks with secrets redacted), storage and versions. A part that does not answer is
reported with its error, never invented: with Redis down, `redis_error` says so and the parts
read from Redis are empty, `storage` is null and `storage_error` says why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis
from flask import Blueprint, current_app
from pydantic import BaseModel, ConfigDict, Field

from glimpser import system_status
from glimpser.api.auth import needs_scope
from glimpser.api.spec import operation
from glimpser.web.app_settings import current_settings

bp = Blueprint("system", __name__, url_prefix="/system")
TAGS = ("system",)


class _From(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class QueueOut(_From):
    name: str
    queued: int
    started: int
    failed: int
    scheduled: int
    oldest_age: float | None = Field(description="Seconds the first job in line has waited")


class TargetOut(_From):
    label: str = Field(description='What the job works on, e.g. "stream Garden"')


class WorkerOut(_From):
    name: str
    host: str
    pid: int | None
    state: str
    queues: str
    job: str | None = Field(description="The current job, described")
    target: TargetOut | None
    job_age: float | None = Field(description="Seconds the current job has run")
    heartbeat_age: float | None = Field(description="Seconds since the last heartbeat")


class SchedulerOut(_From):
    name: str
    host: str
    pid: int | None
    heartbeat_age: float | None
    alive: bool


class CronRunOut(_From):
    name: str
    queue: str
    interval: int = Field(description="Seconds between runs (0: not scheduled now)")
    last_at: datetime | None
    outcome: str | None = Field(description="ok or failed; null before the first run")
    ms: float | None


class ReadersOut(_From):
    host: str
    pid: int
    age: float = Field(description="Seconds since the process's last heartbeat")
    streams: list[dict[str, Any]]


class FailedJobOut(_From):
    id: str
    queue: str
    failed_at: datetime | None
    what: str
    error: str = Field(description="The exception's last line, secrets redacted")
    traceback: str = Field(description="Secrets redacted")
    target: TargetOut | None


class FailedQueueOut(_From):
    name: str
    total: int
    jobs: list[FailedJobOut] = Field(description="The newest, up to 50")


class StreamUsageOut(_From):
    id: int
    name: str
    count: int
    bytes: int


class StorageOut(_From):
    backend: str
    where: str
    streams: list[StreamUsageOut]
    total_count: int
    total_bytes: int
    disk_free: int | None
    disk_total: int | None
    disk_error: str | None
    bucket: dict[str, Any] | None = Field(
        description="Bucket usage from the last orphan sweep: objects, bytes, at"
    )
    retention: dict[str, Any] = Field(description="What retention removes next, counted")
    redis_memory: int | None
    redis_max_memory: int | None
    database_bytes: int | None
    database_error: str | None


class SystemOut(_From):
    """The state of every part now."""

    database_kind: str
    database_error: str | None
    redis_error: str | None
    redis_version: str | None
    redis_memory: str | None
    queues: list[QueueOut]
    workers: list[WorkerOut]
    schedulers: list[SchedulerOut]
    cron: list[CronRunOut]
    readers: list[ReadersOut]
    problems: list[str] = Field(description="What needs attention; empty when all runs")
    failed_jobs: list[FailedQueueOut]
    storage: StorageOut | None
    storage_error: str | None
    versions: dict[str, str] = Field(description="Glimpser and the programs it runs")


@bp.get("")
@needs_scope("admin")
@operation(tags=TAGS, ok=SystemOut)
def get_system():
    """Queues, workers, scheduler, readers, failed jobs, storage and versions."""
    settings = current_settings()
    connection: redis.Redis = current_app.extensions["glimpser.redis"]
    status = system_status.collect(connection)
    failed: list[Any] = []
    storage = None
    storage_error = None
    if not status.redis_error:
        try:
            failed = system_status.failed_jobs(connection, system_status.secrets_of(settings))
            storage = system_status.storage(settings, connection)
        except redis.RedisError as exc:
            storage_error = f"Redis is not reachable: {exc}"
    else:
        storage_error = f"Redis is not reachable: {status.redis_error}"
    out = SystemOut.model_validate(
        {
            **{n: getattr(status, n) for n in SystemOut.model_fields if hasattr(status, n)},
            "failed_jobs": failed,
            "storage": storage,
            "storage_error": storage_error,
            "versions": system_status.versions(settings.chromium),
        }
    )
    return out
