"""What the stream pages and the JSON API do to a stream: one function per action, called by
both (glimpser.web.streams, glimpser.api.streams), so that the two never drift.

Each change is written in one `write_transaction()` together with its audit entry (by the
signed-in user, or the API key's user with the key's prefix); work for the workers (a capture,
a deletion) is queued after the commit, so a job always finds the change made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import peewee
import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from glimpser import queues, times
from glimpser.capture import scheduling
from glimpser.db import write_transaction
from glimpser.media import deletion
from glimpser.models import Snapshot, Stream
from glimpser.sources import sealed
from glimpser.sources.schemas import KIND_QUEUE, SourceConfig, StreamSpec, dump_config
from glimpser.transfer.stream_store import create_stream, name_taken, update_stream
from glimpser.web import audit as audit_log

log = logging.getLogger(__name__)


class NameTaken(Exception):
    """Another stream has the name (checked first, or refused by the unique index)."""


def audit_stream(action: str, stream: Stream, **detail: object) -> None:
    """The audit entry of a change to `stream` ("stream.update", …), inside its transaction."""
    audit_log.audit(action, f"stream:{stream.id}", {"name": stream.name, **detail})


def save_stream(
    stream: Stream | None, spec: StreamSpec, kept_secrets: dict[str, str] | None = None
) -> Stream:
    """Create (`stream` None) or replace a stream with its audit entry ("stream.create" or
    "stream.update", with what changed). Raises NameTaken when the name is another stream's.
    The caller queues the first capture (`capture_if_enabled`) after this returns."""
    if name_taken(spec.name, stream):
        raise NameTaken(spec.name)
    try:
        with write_transaction():
            before = None if stream is None else audit_log.stream_state(stream)
            saved = (
                create_stream(spec, kept_secrets)
                if stream is None
                else update_stream(stream, spec, kept_secrets)
            )
            changes = audit_log.changes_between(before, audit_log.stream_state(saved))
            audit_stream(
                "stream.create" if stream is None else "stream.update", saved, changes=changes
            )
    except peewee.IntegrityError:  # the same name saved concurrently
        if not name_taken(spec.name, stream):
            raise  # another constraint refused it (errors.py: a 409, nothing saved)
        raise NameTaken(spec.name) from None
    return saved


def capture_if_enabled(connection: redis.Redis, stream: Stream) -> None:
    """A saved stream's first capture, right away (when it is enabled)."""
    if stream.enabled:
        scheduling.capture_now(connection, stream)


def pause_stream(stream: Stream) -> Stream:
    """Stop capturing ("stream.pause"); the stream keeps its snapshots."""
    with write_transaction():
        Stream.update(enabled=False, state="paused", updated_at=times.utcnow()).where(
            Stream.id == stream.id
        ).execute()
        audit_stream(
            "stream.pause",
            stream,
            changes=audit_log.field_changes({"enabled": stream.enabled}, {"enabled": False}),
        )
    return Stream.get_by_id(stream.id)


def resume_stream(connection: redis.Redis, stream: Stream) -> Stream:
    """Capture again ("stream.resume"), starting with one capture right away."""
    with write_transaction():
        Stream.update(
            enabled=True, state="pending", next_due_at=times.utcnow(), updated_at=times.utcnow()
        ).where(Stream.id == stream.id).execute()
        audit_stream(
            "stream.resume",
            stream,
            changes=audit_log.field_changes({"enabled": stream.enabled}, {"enabled": True}),
        )
    resumed = Stream.get_by_id(stream.id)
    scheduling.capture_now(connection, resumed)
    return resumed


def delete_stream(connection: redis.Redis, stream: Stream) -> int:
    """Hide the stream at once ("stream.delete") and queue the job that removes its files and
    rows (media.deletion; the cron queues it when Redis refuses now). Returns how many
    snapshots go; raises deletion.DeletionError when it is already being deleted."""
    snapshots = Snapshot.select().where(Snapshot.stream == stream).count()
    with write_transaction():
        audit_stream("stream.delete", stream, snapshots=snapshots)
        deletion.mark_for_deletion(stream)
    try:  # after the commit: the job must find the stream marked
        deletion.queue_deletion(connection, stream.id, stream.name)
    except redis.RedisError:  # the cron queues it later
        log.warning("stream deletion not queued yet", extra={"stream_id": stream.id})
    scheduling.release(connection, stream.id)
    return snapshots


def request_capture(connection: redis.Redis, stream: Stream) -> str | None:
    """Queue a capture now ("Capture now"); its job id, or None when one already runs."""
    if not scheduling.capture_now(connection, stream):
        return None
    job_id = connection.get(scheduling.claim_key(stream.id))
    return job_id.decode() if job_id else None


def queue_test_capture(
    connection: redis.Redis,
    config: SourceConfig,
    stream: Stream | None,
    secret_key: str,
) -> Job:
    """Capture once from an unsaved config on a worker (the form's "Test capture").

    No secret goes into the job's arguments (Redis, redis.rdb, the worker's log): the saved
    `stream`'s secrets are read by the worker while the address is unchanged, and secrets
    typed in travel sealed (glimpser.sources.sealed)."""
    existing = stream.config if stream is not None else None
    names = type(config).SECRET_FIELDS
    typed = sealed.typed_secrets(dump_config(config, include_secrets=True), existing, names)
    return queues.enqueue_test_capture(
        connection,
        KIND_QUEUE[config.kind],
        dump_config(config, include_secrets=False),
        scheduling.job_timeout(KIND_QUEUE[config.kind], config.timeout),
        stream_id=stream.id if stream is not None else None,
        sealed_secrets=sealed.seal(typed, secret_key),
    )


@dataclass
class JobOutcome:
    """Where a queued capture (or test capture) job is: `pending` (`queued`: still waiting for
    a worker), `done` with the job's `result`, `failed` (the worker could not finish it), or
    `expired` (its result is gone, or it never existed)."""

    state: Literal["pending", "done", "failed", "expired"]
    result: dict[str, Any] = field(default_factory=dict)
    queued: bool = False


def job_outcome(connection: redis.Redis, job_id: str) -> JobOutcome:
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return JobOutcome("expired")
    status = job.get_status()
    if status == "finished":
        return JobOutcome("done", dict(job.return_value() or {}))
    if status in ("failed", "stopped", "canceled"):
        return JobOutcome("failed")
    return JobOutcome("pending", queued=status == "queued")
