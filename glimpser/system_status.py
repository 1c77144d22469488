"""Health of the moving parts, as data for Admin → System and the admin home.

- `collect()`: database, Redis, queues (depth, age of the first job in line), RQ workers (host,
  pid, current job and its age, last heartbeat), the cron scheduler and the last run of each
  cron job (recorded by glimpser.jobs, see `record_cron_run`), and the readers processes
  (each publishes a heartbeat with a TTL, see `publish_readers`).
- `failed_jobs()`: RQ's failed-job registries, with the traceback's secrets redacted and the
  job's target (stream, delivery, timelapse, summary…) named; `retry_failed`/`delete_failed`.
- `storage()`: bytes and snapshots per stream, free disk or bucket usage, what retention will
  remove next, Redis memory and database size; `versions()`: the programs Glimpser runs.

Everything read here is real: a part that does not run is reported absent, never invented.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import peewee
import redis
from rq import Worker
from rq.cron import CronScheduler
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.results import Result

from glimpser import heartbeats, node, queues
from glimpser.config import Settings
from glimpser.db import database
from glimpser.models import Delivery, NotificationChannel, Snapshot, Stream, Summary, Timelapse
from glimpser.queues import QUEUE_NAMES, get_queue
from glimpser.sources.redaction import MASK, redact_urls
from glimpser.web.health import check_database

# A cron scheduler that has not sent a heartbeat for this long is considered gone.
SCHEDULER_STALE_SECONDS = 120
# Redis keys: the last run of each cron job (a hash), the readers' heartbeats (one per process).
CRON_RUNS_KEY = "glimpser:cron:last-run"
READERS_KEY_PREFIX = "glimpser:readers-heartbeat:"
READERS_TTL_SECONDS = 15
# Bucket usage, measured by the hourly orphan sweep (it lists every object anyway).
BUCKET_USAGE_KEY = "glimpser:storage:bucket-usage"
# What retention would remove is counted at most this often (Redis-cached).
RETENTION_PREVIEW_KEY = "glimpser:storage:retention-preview"
RETENTION_PREVIEW_SECONDS = 60
# Job descriptions are cut to this many characters.
DESCRIPTION_MAX = 120
# Failed jobs listed per queue (the page says how many more there are).
FAILED_SHOWN = 50
# A job id as RQ and Glimpser make them (uuid hex, "analyse-12", "delete-stream-3"...).
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
# Secrets shorter than this are not searched for in tracebacks (they would mask common words).
MIN_SECRET = 4


_KINDS = {"SqliteDatabase": "SQLite", "PostgresqlDatabase": "PostgreSQL"}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _age(at: datetime | None, now: float | None = None) -> float | None:
    """Seconds since `at` (naive datetimes from RQ are UTC), or None."""
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, (now or time.time()) - at.timestamp())


# --- queues, workers, scheduler, readers ---------------------------------------------------------


@dataclass
class QueueStatus:
    name: str
    queued: int
    started: int
    failed: int
    scheduled: int
    oldest_age: float | None = None  # seconds the first job in line has waited


@dataclass
class JobTarget:
    """What a job works on, for people: "stream Garden", with a link when there is a page."""

    label: str
    url_endpoint: str | None = None
    url_values: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkerStatus:
    name: str
    host: str
    pid: int | None
    state: str
    queues: str
    job: str | None = None  # the current job's description
    target: JobTarget | None = None
    job_age: float | None = None
    heartbeat_age: float | None = None
    done: int = 0  # jobs finished successfully since the worker started
    failed: int = 0
    beating: bool = True  # its process heartbeat (glimpser.heartbeats) is fresh


@dataclass
class CronRun:
    name: str
    queue: str
    interval: int
    last_at: datetime | None = None
    outcome: str | None = None  # ok, failed
    ms: float | None = None


@dataclass
class SchedulerStatus:
    name: str
    host: str
    pid: int | None
    heartbeat_age: float | None
    alive: bool


@dataclass
class ReadersStatus:
    host: str
    pid: int
    age: float
    streams: list[dict[str, Any]]
    owner: str = ""  # the lease owner id (glimpser.capture.leases): hostname:pid:random


@dataclass
class HostStatus:
    """One machine (node name) and the Glimpser processes heard from on it."""

    name: str
    alive: bool
    last_heard: float | None  # seconds since any of its processes beat (None: never recorded)
    web: list[heartbeats.ProcessBeat] = field(default_factory=list)
    workers: list[WorkerStatus] = field(default_factory=list)
    schedulers: list[SchedulerStatus] = field(default_factory=list)
    readers: list[ReadersStatus] = field(default_factory=list)
    browsers: list[str] = field(default_factory=list)  # Chromium slot holders (browser_pool)

    @property
    def reader_streams(self) -> int:
        return sum(len(r.streams) for r in self.readers)


@dataclass
class SystemStatus:
    database_kind: str
    database_error: str | None
    redis_error: str | None
    redis_version: str | None = None
    redis_memory: str | None = None
    queues: list[QueueStatus] = field(default_factory=list)
    workers: list[WorkerStatus] = field(default_factory=list)
    schedulers: list[SchedulerStatus] = field(default_factory=list)
    cron: list[CronRun] = field(default_factory=list)
    readers: list[ReadersStatus] = field(default_factory=list)
    hosts: list[HostStatus] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(q.failed for q in self.queues)

    @property
    def problems(self) -> list[str]:
        """What needs attention, in a few words each (empty: everything runs)."""
        found = []
        if self.database_error:
            found.append("the database is not reachable")
        if self.redis_error:
            return [*found, "Redis is not reachable"]
        if not any(w.beating for w in self.workers):
            found.append("no worker is running")
        if not any(s.alive for s in self.schedulers):
            found.append("no scheduler is running")
        if self.failed:
            found.append(f"{self.failed} failed job{'s' if self.failed != 1 else ''}")
        gone = [h.name for h in self.hosts if not h.alive]
        if gone:
            found.append(f"host{'s' if len(gone) != 1 else ''} not heard from: {', '.join(gone)}")
        return found


def collect(redis_client: redis.Redis) -> SystemStatus:
    """The state of every part now."""
    status = SystemStatus(
        database_kind=_KINDS.get(type(database.obj).__name__, type(database.obj).__name__),
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
    now = time.time()
    for name in QUEUE_NAMES:
        queue = get_queue(name, redis_client)
        first = queue.get_job_ids(0, 1)
        oldest = None
        if first:
            with contextlib.suppress(NoSuchJobError):
                oldest = _age(Job.fetch(first[0], connection=redis_client).enqueued_at, now)
        status.queues.append(
            QueueStatus(
                name=name,
                queued=queue.count,
                started=queue.started_job_registry.count,
                failed=queue.failed_job_registry.count,
                scheduled=queue.scheduled_job_registry.count,
                oldest_age=oldest,
            )
        )
    beats = heartbeats.processes(redis_client)
    beating = {(b.node, b.kind, b.pid) for b in beats}
    for worker in Worker.all(connection=redis_client):
        row = WorkerStatus(
            name=worker.name,
            host=worker.hostname or "",
            pid=worker.pid,
            state=worker.get_state(),
            queues=", ".join(worker.queue_names()),
            heartbeat_age=_age(worker.last_heartbeat, now),
            done=worker.successful_job_count or 0,
            failed=worker.failed_job_count or 0,
            beating=(worker.hostname or "", "worker", worker.pid) in beating,
        )
        current = worker.get_current_job()
        if current is not None:
            row.job = describe(current)
            row.target = job_target(current)
            row.job_age = _age(current.started_at, now)
        status.workers.append(row)
    status.workers.sort(key=lambda w: (w.host, w.name))
    cron_jobs: dict[str, tuple[str, int]] = {}
    for scheduler in CronScheduler.all(redis_client, cleanup=False):
        for cron_job in scheduler.get_jobs():
            short = cron_job.func_name.rsplit(".", 1)[-1]
            cron_jobs.setdefault(short, (cron_job.queue_name, cron_job.interval or 0))
        beat = scheduler.last_heartbeat
        age = _age(beat, now)
        status.schedulers.append(
            SchedulerStatus(
                name=scheduler.name,
                host=scheduler.hostname,
                pid=scheduler.pid,
                heartbeat_age=age,
                alive=age is not None and age < SCHEDULER_STALE_SECONDS,
            )
        )
    runs = {_text(k): _text(v) for k, v in redis_client.hgetall(CRON_RUNS_KEY).items()}
    for short in sorted(set(cron_jobs) | set(runs)):
        queue_name, interval = cron_jobs.get(short, ("", 0))
        run = CronRun(short, queue_name, interval)
        if short in runs:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                data = json.loads(runs[short])
                run.last_at = datetime.fromtimestamp(float(data["at"]), UTC)
                run.outcome = str(data["outcome"])
                run.ms = float(data["ms"])
        status.cron.append(run)
    status.readers = readers(redis_client)
    status.hosts = hosts(redis_client, status, beats)
    return status


def hosts(
    connection: redis.Redis, status: SystemStatus, beats: list[heartbeats.ProcessBeat]
) -> list[HostStatus]:
    """The processes of `status` grouped by host, with every host heard from in the last day.

    A host is alive while any of its processes beats: a web, worker or scheduler process
    heartbeat (glimpser.heartbeats, BEAT_TTL) or a readers heartbeat. (RQ's own entries are
    rewritten only every few minutes, and stay minutes after a kill -9.) A host
    whose processes all went silent stays listed as gone, with when it was last heard."""
    from glimpser.sources import browser_pool

    last = heartbeats.nodes(connection)
    names = (
        set(last)
        | {b.node for b in beats}
        | {w.host for w in status.workers}
        | {s.host for s in status.schedulers}
        | {r.host for r in status.readers}
    )
    found = []
    for name in sorted(names):
        host = HostStatus(name=name, alive=False, last_heard=last.get(name))
        host.web = [b for b in beats if b.node == name and b.kind == "web"]
        host.workers = [w for w in status.workers if w.host == name]
        host.schedulers = [s for s in status.schedulers if s.host == name]
        host.readers = [r for r in status.readers if r.host == name]
        host.browsers = browser_pool.holders(connection, name)
        host.alive = any(b.node == name for b in beats) or bool(host.readers)
        found.append(host)
    return found


def record_cron_run(connection: redis.Redis, name: str, outcome: str, ms: float) -> None:
    """Remember the last run of a cron job (RQ keeps its result only for minutes)."""
    value = json.dumps({"at": time.time(), "outcome": outcome, "ms": ms})
    connection.hset(CRON_RUNS_KEY, name, value)


# --- readers ----------------------------------------------------------------------------------


def readers_key(host: str, pid: int) -> str:
    return f"{READERS_KEY_PREFIX}{host}:{pid}"


def publish_readers(
    connection: redis.Redis, streams: list[dict[str, Any]], owner: str = ""
) -> None:
    """The readers process's heartbeat: which streams it holds and how they are doing.

    Lives READERS_TTL_SECONDS: a readers process that stops (or dies) disappears from the page.
    Other readers processes count the fresh heartbeats to share the streams
    (live_readers_processes).
    """
    host, pid = node.name(), os.getpid()
    value = json.dumps(
        {"host": host, "pid": pid, "owner": owner, "at": time.time(), "streams": streams}
    )
    pipe = connection.pipeline(transaction=False)
    pipe.set(readers_key(host, pid), value, ex=READERS_TTL_SECONDS)
    heartbeats.stamp_node(pipe)
    pipe.execute()


def withdraw_readers(connection: redis.Redis) -> None:
    """A readers process that stops removes its heartbeat."""
    connection.delete(readers_key(node.name(), os.getpid()))


def live_readers_processes(connection: redis.Redis, within: float) -> set[str]:
    """The heartbeat keys of readers processes heard from in the last `within` seconds.

    Shorter than READERS_TTL_SECONDS on purpose: a killed process stays on Admin → System for
    that long, but must stop counting (for sharing streams) about when its leases expire.
    """
    now = time.time()
    found = set()
    for key, data in heartbeats.json_values(connection, READERS_KEY_PREFIX):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            if now - float(data["at"]) <= within:
                found.add(key)
    return found


def own_readers_key() -> str:
    return readers_key(node.name(), os.getpid())


def readers(connection: redis.Redis) -> list[ReadersStatus]:
    """Every readers process that sent a heartbeat within READERS_TTL_SECONDS."""
    found = []
    now = time.time()
    for _key, data in heartbeats.json_values(connection, READERS_KEY_PREFIX):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            found.append(
                ReadersStatus(
                    host=str(data["host"]),
                    pid=int(data["pid"]),
                    age=max(0.0, now - float(data["at"])),
                    streams=list(data["streams"]),
                    owner=str(data.get("owner", "")),
                )
            )
    names = _stream_names({int(s["id"]) for r in found for s in r.streams if "id" in s})
    for r in found:
        for s in r.streams:
            s["name"] = names.get(int(s.get("id", 0)), f"stream {s.get('id')}")
    return sorted(found, key=lambda r: (r.host, r.pid))


def _stream_names(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    query = Stream.select_including_deleting().where(Stream.id.in_(sorted(ids)))
    return {s.id: s.name for s in query}


# --- failed jobs ------------------------------------------------------------------------------


@dataclass
class FailedJob:
    id: str
    queue: str
    failed_at: datetime | None
    what: str
    error: str  # the exception's last line, redacted
    traceback: str  # redacted
    target: JobTarget | None


@dataclass
class FailedQueue:
    name: str
    total: int
    jobs: list[FailedJob]


def _arg(job: Job, index: int = 0) -> int | None:
    try:
        value = job.args[index]
    except (IndexError, TypeError, ValueError, AttributeError, DeserializationError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def describe(job: Job) -> str:
    """The job's description ("capture stream 3"), cut short: RQ's default one is the whole
    call with its arguments (a test capture's configuration), URLs in it redacted."""
    try:
        text = redact_urls(job.description or job.func_name or "")
    except DeserializationError:  # the job's data cannot be read (written by another version)
        text = "(unreadable job)"
    return text if len(text) <= DESCRIPTION_MAX else text[: DESCRIPTION_MAX - 1] + "…"


def job_target(job: Job) -> JobTarget | None:
    """What the job works on, from its function and first argument (None: nothing in particular).

    A target that no longer exists is named by its id."""
    try:
        func = (job.func_name or "").rsplit(".", 1)[-1]
    except (AttributeError, ValueError, TypeError):  # an unreadable job: nothing to name
        return None
    ident = _arg(job)
    if ident is None:
        return None
    if func in ("capture_stream", "delete_stream"):
        stream = Stream.select_including_deleting().where(Stream.id == ident).first()
        if stream is None:
            return JobTarget(f"stream {ident} (deleted)")
        if stream.deleting_since is not None:
            return JobTarget(f"stream {stream.name} (being deleted)")
        return JobTarget(f"stream {stream.name}", "streams.detail", {"stream_id": stream.id})
    if func == "analyse_snapshot":
        snapshot = Snapshot.get_or_none(Snapshot.id == ident)
        stream = Stream.get_or_none(Stream.id == snapshot.stream_id) if snapshot else None
        if stream is None:
            return JobTarget(f"snapshot {ident} (deleted)")
        return JobTarget(
            f"snapshot {ident} of {stream.name}", "streams.detail", {"stream_id": stream.id}
        )
    if func == "deliver_notification":
        delivery = Delivery.get_or_none(Delivery.id == ident)
        if delivery is None:
            return JobTarget(f"delivery {ident} (deleted)")
        channel = NotificationChannel.get_or_none(NotificationChannel.id == delivery.channel_id)
        label = f"delivery {ident} to {channel.name if channel else 'a deleted channel'}"
        return JobTarget(label, "admin_deliveries.index", {})
    if func == "build_timelapse":
        timelapse = Timelapse.get_or_none(Timelapse.id == ident)
        if timelapse is None:
            return JobTarget(f"timelapse {ident} (deleted)")
        return JobTarget(
            f"timelapse {ident}",
            "timelapse.item",
            {"stream_id": timelapse.stream_id, "timelapse_id": ident},
        )
    if func == "build_summary":
        if not Summary.select().where(Summary.id == ident).exists():
            return JobTarget(f"summary {ident} (deleted)")
        return JobTarget(f"summary {ident}", "summaries.item", {"summary_id": ident})
    return None


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value that may appear in a job's traceback: the settings' own (keys, the
    passwords in the database and Redis URLs) and those in stream and channel configurations."""
    from urllib.parse import urlsplit

    from glimpser.notify.channel_store import secret_fields
    from glimpser.sources.schemas import CONFIG_BY_KIND

    found: set[str] = {settings.secret_key, settings.ai_api_key}
    for url in (settings.database_url, settings.redis_url, settings.ai_base_url):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            found.add(urlsplit(url).password or "")
    for kind, config in Stream.select_including_deleting(Stream.kind, Stream.config).tuples():
        model = CONFIG_BY_KIND.get(kind)
        for name in getattr(model, "SECRET_FIELDS", ()):
            found |= _values((config or {}).get(name))
    for kind, config in NotificationChannel.select(
        NotificationChannel.kind, NotificationChannel.config
    ).tuples():
        for name in secret_fields(kind):
            found |= _values((config or {}).get(name))
    return sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True)


def _values(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple):
        return {v for v in value if isinstance(v, str)}
    return set()


def redact(text: str, secrets: list[str]) -> str:
    """The text with URL passwords and tokens masked, and every known secret too."""
    text = redact_urls(text or "")
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def failed_jobs(
    connection: redis.Redis, secrets: list[str], limit: int = FAILED_SHOWN
) -> list[FailedQueue]:
    """The failed jobs of every queue, newest first (at most `limit` per queue)."""
    out = []
    for name in QUEUE_NAMES:
        registry = get_queue(name, connection).failed_job_registry
        total = registry.count
        if not total:
            continue
        ids = registry.get_job_ids(0, limit - 1, desc=True)
        jobs = []
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=connection), strict=True):
            jobs.append(_failed(job_id, name, job, secrets))
        out.append(FailedQueue(name, total, jobs))
    return out


def _failed(job_id: str, queue: str, job: Job | None, secrets: list[str]) -> FailedJob:
    if job is None:  # expired between listing and reading
        return FailedJob(job_id, queue, None, "(the job's data has expired)", "", "", None)
    result = job.latest_result()  # RQ keeps the traceback with the failed run's result
    failed = result is not None and result.type == Result.Type.FAILED
    trace = (result.exc_string if failed else "") or ""
    trace = redact(trace, secrets)
    lines = [line for line in trace.strip().splitlines() if line.strip()]
    return FailedJob(
        id=job_id,
        queue=queue,
        failed_at=(result.created_at if failed else None) or job.ended_at,
        what=redact(describe(job), secrets),
        error=lines[-1] if lines else "no error recorded",
        traceback=trace,
        target=job_target(job),
    )


def find_failed(connection: redis.Redis, job_id: str) -> tuple[str, Job] | None:
    """(queue name, job) of a failed job, or None when no failed registry holds it."""
    if not JOB_ID.fullmatch(job_id):
        return None
    for name in QUEUE_NAMES:
        registry = get_queue(name, connection).failed_job_registry
        if job_id in registry:
            try:
                return name, Job.fetch(job_id, connection=connection)
            except NoSuchJobError:
                registry.remove(job_id)  # its data expired: only the registry entry was left
                return None
    return None


def retry_failed(connection: redis.Redis, job_id: str) -> str | None:
    """Queue a failed job again (through glimpser.queues); its queue, or None if not found."""
    found = find_failed(connection, job_id)
    if found is None:
        return None
    try:
        queues.requeue_failed(connection, found[0], found[1])
    except InvalidJobOperation:  # retried (or deleted) by someone else meanwhile
        return None
    return found[0]


def delete_failed(connection: redis.Redis, job_id: str) -> str | None:
    """Remove a failed job and its data; its queue, or None if not found."""
    found = find_failed(connection, job_id)
    if found is None:
        return None
    get_queue(found[0], connection).failed_job_registry.remove(found[1], delete_job=True)
    return found[0]


def all_failed_ids(connection: redis.Redis) -> list[str]:
    return [
        job_id
        for name in QUEUE_NAMES
        for job_id in get_queue(name, connection).failed_job_registry.get_job_ids()
    ]


# --- storage ------------------------------------------------------------------------------------


@dataclass
class StreamUsage:
    id: int
    name: str
    count: int
    bytes: int


@dataclass
class StorageStatus:
    backend: str
    where: str
    streams: list[StreamUsage]
    total_count: int
    total_bytes: int
    disk_free: int | None = None
    disk_total: int | None = None
    disk_error: str | None = None
    bucket: dict[str, Any] | None = None  # {"objects", "bytes", "at"} from the last sweep
    retention: dict[str, Any] = field(default_factory=dict)
    redis_memory: int | None = None
    redis_max_memory: int | None = None
    database_bytes: int | None = None
    database_error: str | None = None


def storage(settings: Settings, connection: redis.Redis) -> StorageStatus:
    """Where the bytes are, and what retention removes next (see media.retention.preview)."""
    rows = list(
        Snapshot.select(
            Snapshot.stream,
            peewee.fn.COUNT(Snapshot.id).alias("n"),
            peewee.fn.COALESCE(peewee.fn.SUM(Snapshot.bytes), 0).alias("size"),
        )
        .group_by(Snapshot.stream)
        .tuples()
    )
    names = _stream_names({row[0] for row in rows})
    streams = sorted(
        (StreamUsage(i, names.get(i, f"stream {i}"), int(n), int(size)) for i, n, size in rows),
        key=lambda u: (-u.bytes, u.name),
    )
    status = StorageStatus(
        backend=settings.storage,
        where=(
            str(settings.snapshot_dir)
            if settings.storage == "local"
            else f"s3://{settings.s3_bucket}/{settings.s3_prefix}".rstrip("/")
        ),
        streams=streams,
        total_count=sum(u.count for u in streams),
        total_bytes=sum(u.bytes for u in streams),
    )
    if settings.storage == "local":
        try:
            usage = shutil.disk_usage(settings.snapshot_dir)
            status.disk_free, status.disk_total = usage.free, usage.total
        except OSError as exc:
            status.disk_error = f"{type(exc).__name__}: {exc.strerror or exc}"
    else:
        raw = connection.get(BUCKET_USAGE_KEY)
        if raw is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                status.bucket = json.loads(raw)
                status.bucket["at"] = datetime.fromtimestamp(float(status.bucket["at"]), UTC)
    status.retention = _retention_preview(settings, connection)
    try:
        info = connection.info("memory")
        status.redis_memory = int(info.get("used_memory", 0))
        status.redis_max_memory = int(info.get("maxmemory", 0)) or None
    except (redis.RedisError, OSError):
        pass
    status.database_bytes, status.database_error = database_size(settings)
    return status


def _retention_preview(settings: Settings, connection: redis.Redis) -> dict[str, Any]:
    """retention.preview(), kept in Redis for a minute: its counts walk the snapshot table,
    and every admin with the page open asks for them."""
    from glimpser.media import retention

    cached = connection.get(RETENTION_PREVIEW_KEY)
    if cached is not None:
        with contextlib.suppress(ValueError):
            return json.loads(cached)
    preview = asdict(retention.preview(settings))
    connection.set(RETENTION_PREVIEW_KEY, json.dumps(preview), ex=RETENTION_PREVIEW_SECONDS)
    return preview


def forget_retention_preview(connection: redis.Redis) -> None:
    """After a retention pass the cached counts are stale: count again on the next view."""
    connection.delete(RETENTION_PREVIEW_KEY)


def record_bucket_usage(connection: redis.Redis, objects: int, size: int) -> None:
    """What the orphan sweep counted in the bucket (objects, bytes), for the System page."""
    connection.set(
        BUCKET_USAGE_KEY, json.dumps({"objects": objects, "bytes": size, "at": time.time()})
    )


def database_size(settings: Settings) -> tuple[int | None, str | None]:
    """(bytes, None), or (None, why not): the SQLite files' size, or pg_database_size."""
    if settings.is_sqlite:
        path = Path(database.obj.database)
        try:
            total = path.stat().st_size
        except OSError as exc:
            return None, f"{type(exc).__name__}: {exc.strerror or exc}"
        for suffix in ("-wal", "-shm"):
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                total += extra.stat().st_size
        return total, None
    try:
        value = database.execute_sql("SELECT pg_database_size(current_database())").fetchone()[0]
    except peewee.PeeweeException as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return int(value), None


# --- versions -------------------------------------------------------------------------------------


def _first_line(command: list[str]) -> str:
    """The first line a program prints for its version, or "not found"."""
    binary = shutil.which(command[0]) or (command[0] if Path(command[0]).is_file() else None)
    if binary is None:
        return "not found"
    try:
        done = subprocess.run(
            [binary, *command[1:]], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"not found ({type(exc).__name__})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "not found"


def _package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not found"


@functools.cache
def versions(chromium: str) -> dict[str, str]:
    """Versions of Glimpser and what it runs, asked once per process (programs are not
    upgraded under a running process; a restart shows the new ones)."""
    import glimpser

    ffmpeg = _first_line(["ffmpeg", "-version"])
    return {
        "Glimpser": glimpser.__version__,
        "Python": platform.python_version(),
        "ffmpeg": re.sub(r"\s+Copyright.*$", "", ffmpeg),
        "Chromium": _first_line([chromium, "--version"]),
        "yt-dlp": _package("yt-dlp"),
        "RQ": _package("rq"),
        "Redis client": _package("redis"),
    }
