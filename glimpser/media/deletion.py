"""Deleting a stream: hidden at once in the web request, removed by a job in batches.

A big stream holds many thousands of snapshot files (minutes of work on S3), so the request
only marks the stream (`deleting_since`, which every query of streams leaves out: see
models.Stream.select), frees its name, pauses it and queues the `delete_stream` job on the
maintenance queue. The job then removes, batch by batch, the snapshots (rows, then files, via
media.snapshots), the timelapses, the events, and last the stream row itself (the rest goes
with it by cascade). It reports its progress in the RQ job's meta.

Every step is idempotent, so the job can simply run again: when a worker dies mid-way, the
maintenance cron (`resume_deletions`) queues it again for every stream still marked.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import peewee
import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from glimpser import queues, times
from glimpser.db import write_transaction
from glimpser.media.snapshots import DELETE_BATCH, delete_snapshots_counted
from glimpser.media.storage import Storage
from glimpser.media.timelapse import delete_stream_timelapses
from glimpser.models import Event, Snapshot, Stream

log = logging.getLogger(__name__)

EVENT_DELETE_BATCH = 1000
# A deletion whose job is neither queued nor running is queued again by the cron after this
# long (the job's own start can take a moment after the request marked the stream).
RESUME_AFTER = timedelta(minutes=2)


class DeletionError(Exception):
    """The stream cannot be marked for deletion (e.g. it is already being deleted)."""


@dataclass
class DeletionProgress:
    stream_id: int
    name: str
    snapshots_total: int = 0
    snapshots_deleted: int = 0
    bytes_freed: int = 0
    timelapses_deleted: int = 0
    events_deleted: int = 0
    done: bool = False


def job_id(stream_id: int) -> str:
    """One deletion job per stream: queueing it again while it is queued or running is a no-op."""
    return f"delete-stream-{stream_id}"


def deleting_name(stream: Stream) -> str:
    """The name a stream holds while it is deleted, so that its own name is free at once."""
    return f"[deleting #{stream.id}] {stream.name}"[:200]


def mark_for_deletion(stream: Stream) -> None:
    """Hide the stream from every query now, pause it and free its name (in the request)."""
    with write_transaction():
        marked = (
            Stream.update(
                deleting_since=times.utcnow(),
                enabled=False,
                name=deleting_name(stream),
                updated_at=times.utcnow(),
            )
            .where((Stream.id == stream.id) & Stream.deleting_since.is_null())
            .execute()
        )
    if not marked:
        raise DeletionError("the stream is already being deleted")


def request_deletion(stream: Stream, connection: redis.Redis) -> None:
    """Mark the stream and queue its deletion. If Redis is down, the cron queues it later."""
    mark_for_deletion(stream)
    try:
        queue_deletion(connection, stream.id, stream.name)
    except redis.RedisError:
        log.warning("stream deletion not queued yet", extra={"stream_id": stream.id})


def queue_deletion(connection: redis.Redis, stream_id: int, name: str) -> bool:
    """Queue the deletion job unless it is already queued or running; True when queued."""
    try:
        existing = Job.fetch(job_id(stream_id), connection=connection)
    except NoSuchJobError:
        existing = None
    if existing is not None:
        status = existing.get_status(refresh=True)
        if status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED):
            return False
        existing.delete()
    queues.enqueue_stream_deletion(connection, stream_id, job_id(stream_id), name)
    return True


def delete_stream(
    stream_id: int,
    storage: Storage,
    report: Callable[[DeletionProgress], None] | None = None,
) -> DeletionProgress:
    """Remove a marked stream's snapshots (files and rows), timelapses, events and row.

    Runs in batches and may be run again after an interruption; `report` is called after each
    batch. A stream that is not marked (or no longer exists) is left alone.
    """
    stream = (
        Stream.select_including_deleting()
        .where((Stream.id == stream_id) & Stream.deleting_since.is_null(False))
        .first()
    )
    if stream is None:
        return DeletionProgress(stream_id=stream_id, name="", done=True)
    progress = DeletionProgress(
        stream_id=stream_id,
        name=stream.name,
        snapshots_total=Snapshot.select().where(Snapshot.stream == stream_id).count(),
    )
    notify = report or (lambda _p: None)
    notify(progress)
    while True:
        batch = [
            row[0]
            for row in Snapshot.select(Snapshot.id)
            .where(Snapshot.stream == stream_id)
            .order_by(Snapshot.id)
            .limit(DELETE_BATCH)
            .tuples()
        ]
        if not batch:
            break
        count, freed = delete_snapshots_counted(batch, storage)
        progress.snapshots_deleted += count
        progress.bytes_freed += freed
        notify(progress)
    progress.timelapses_deleted = delete_stream_timelapses(stream_id, storage)
    while True:
        ids = Event.select(Event.id).where(Event.stream == stream_id).limit(EVENT_DELETE_BATCH)
        with write_transaction():
            deleted = Event.delete().where(Event.id.in_(ids)).execute()
        progress.events_deleted += deleted
        if deleted < EVENT_DELETE_BATCH:
            break
    with write_transaction():
        # A capture that was already running may have stored one more snapshot meanwhile:
        # its file goes too (the row goes with the stream by cascade).
        late = list(Snapshot.select(Snapshot.id).where(Snapshot.stream == stream_id))
        if not late:
            Stream.delete().where(Stream.id == stream_id).execute()
    if late:
        return delete_stream(stream_id, storage, report)
    progress.done = True
    notify(progress)
    log.info("stream deleted", extra=asdict(progress))
    return progress


def resume_deletions(
    connection: redis.Redis, now: datetime | None = None, *, older_than: timedelta = RESUME_AFTER
) -> int:
    """Queue again the deletions whose job was lost (a worker died, or Redis was down)."""
    cutoff = (now or times.utcnow()) - older_than
    marked = (
        Stream.select_including_deleting(Stream.id, Stream.name)
        .where(Stream.deleting_since.is_null(False) & (Stream.deleting_since <= cutoff))
        .order_by(Stream.id)
    )
    queued = 0
    for stream in marked:
        try:
            queued += queue_deletion(connection, stream.id, stream.name)
        except (redis.RedisError, peewee.PeeweeException):
            log.exception("could not queue a stream deletion", extra={"stream_id": stream.id})
    return queued


def deletions_in_progress(connection: redis.Redis) -> list[dict]:
    """The streams being deleted, with the progress their job reported (for the admin)."""
    rows = Stream.select_including_deleting(Stream.id, Stream.name, Stream.deleting_since).where(
        Stream.deleting_since.is_null(False)
    )
    out = []
    for stream in rows.order_by(Stream.deleting_since):
        meta: dict = {}
        with contextlib.suppress(NoSuchJobError, redis.RedisError):
            meta = Job.fetch(job_id(stream.id), connection=connection).get_meta(refresh=True)
        out.append(
            {
                "stream_id": stream.id,
                "name": stream.name,
                "since": stream.deleting_since,
                "progress": meta.get("progress") or {},
            }
        )
    return out
