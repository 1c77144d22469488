"""Saving and deleting snapshots: the stored file and its database row always go together.

The only code in Glimpser that writes or deletes snapshot files. The order of operations keeps
the invariant "never a row without a file":

- save: put the file, then insert the row; if the insert fails, delete the file again;
- delete: delete the rows (in a transaction), then the files. A crash in between can only leave
  an unreferenced file behind, never a row whose picture is missing.

Call these outside any open transaction: a row committed only by an outer transaction that later
rolls back would leave its file behind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

import peewee

from glimpser import times
from glimpser.db import database, write_transaction
from glimpser.media import imaging
from glimpser.media.storage import Storage, snapshot_key
from glimpser.media.thumbnails import thumbnail_key
from glimpser.models import Snapshot, Stream
from glimpser.sources.base import Frame

log = logging.getLogger(__name__)

# Rows deleted per transaction (also below SQLite's 999 bound-parameter limit of old versions).
DELETE_BATCH = 500


def latest_snapshot(stream: Stream | int) -> Snapshot | None:
    """The newest snapshot of a stream (by capture time), or None."""
    return (
        Snapshot.select()
        .where(Snapshot.stream == stream)
        .order_by(Snapshot.captured_at.desc(), Snapshot.id.desc())
        .first()
    )


def save_snapshot(
    stream: Stream,
    frame: Frame,
    captured_at: datetime,
    storage: Storage,
    *,
    store_identical: bool,
) -> Snapshot | None:
    """Store a captured frame and its Snapshot row; None when it was skipped as identical.

    With store_identical False, a frame byte-for-byte equal (same sha256) to the stream's latest
    snapshot is not stored again. Raises StorageError when the file cannot be written (nothing is
    recorded then) and the database error when the row cannot be inserted (the file is removed).
    """
    captured_at = times.to_utc(captured_at)
    digest = imaging.sha256(frame.jpeg)
    if not store_identical:
        latest = (
            Snapshot.select(Snapshot.sha256)
            .where(Snapshot.stream == stream)
            .order_by(Snapshot.captured_at.desc(), Snapshot.id.desc())
            .first()
        )
        if latest is not None and latest.sha256 == digest:
            return None
    phash = imaging.perceptual_hash(frame.jpeg)
    key = snapshot_key(stream.id, captured_at, digest)

    storage.put(key, frame.jpeg, frame.content_type)
    try:
        with write_transaction():
            return Snapshot.create(
                stream=stream.id,
                captured_at=captured_at,
                storage_key=key,
                content_type=frame.content_type,
                width=frame.width,
                height=frame.height,
                bytes=len(frame.jpeg),
                sha256=digest,
                phash=phash,
            )
    except BaseException:
        _discard_unreferenced(key, storage)
        raise


def _discard_unreferenced(key: str, storage: Storage) -> None:
    """Remove a file whose row was not inserted, unless an existing row already owns the key.

    The key embeds stream, capture time to the microsecond and content hash, so an existing row
    with the same key (e.g. a retried job saving the same frame again) owns identical bytes.
    """
    try:
        owned = Snapshot.select(Snapshot.id).where(Snapshot.storage_key == key).exists()
    except peewee.PeeweeException:
        owned = False  # the database is unreachable, so no row of ours can be there
    if owned:
        return
    try:
        storage.delete(key)
    except Exception as exc:  # keep the original error; report this one
        log.error(
            "snapshot file left without a row",
            extra={"key": key, "error": str(exc)},
        )


def delete_snapshots(
    query_or_list: peewee.Select | Iterable[Snapshot | int], storage: Storage
) -> int:
    """Delete snapshots, rows and files together; returns how many rows were deleted.

    Accepts a Snapshot query (any columns, filters, order or limit) or an iterable of Snapshot
    instances or ids. Events that referenced a deleted snapshot keep existing without it.
    """
    return delete_snapshots_counted(query_or_list, storage)[0]


def delete_snapshots_counted(
    query_or_list: peewee.Select | Iterable[Snapshot | int],
    storage: Storage,
    *,
    where: peewee.Expression | None = None,
) -> tuple[int, int]:
    """As delete_snapshots, returning (rows deleted, bytes freed).

    `where`, when given, is re-checked inside the DELETE itself, so that a row which stopped
    qualifying since it was selected (e.g. an event now references it) is left alone.
    """
    ids = _ids(query_or_list)
    deleted = freed = 0
    for start in range(0, len(ids), DELETE_BATCH):
        count, size = _delete_batch(ids[start : start + DELETE_BATCH], storage, where)
        deleted += count
        freed += size
    return deleted, freed


def _ids(query_or_list: peewee.Select | Iterable[Snapshot | int]) -> list[int]:
    if isinstance(query_or_list, peewee.SelectBase):
        # Only the ids, whatever the query selected; its filters, order and limit stay.
        return [row[0] for row in query_or_list.select(Snapshot.id).tuples()]
    ids = []
    for item in query_or_list:
        if isinstance(item, Snapshot):
            ids.append(item.id)
        elif isinstance(item, int) and not isinstance(item, bool):
            ids.append(item)
        else:
            raise TypeError(f"expected Snapshot or id, got {type(item).__name__}")
    return list(dict.fromkeys(ids))


def _delete_batch(
    ids: list[int], storage: Storage, where: peewee.Expression | None
) -> tuple[int, int]:
    if not ids:
        return 0, 0
    condition = Snapshot.id.in_(ids)
    if where is not None:
        condition &= where
    with write_transaction():
        # RETURNING tells exactly which rows this statement removed (PostgreSQL; SQLite 3.35+),
        # so a row deleted concurrently elsewhere is neither counted twice nor mis-attributed.
        if _has_returning():
            rows = list(
                Snapshot.delete()
                .where(condition)
                .returning(Snapshot.storage_key, Snapshot.bytes)
                .tuples()
                .execute()
            )
        else:  # pragma: no cover - SQLite older than 3.35
            rows = list(
                Snapshot.select(Snapshot.storage_key, Snapshot.bytes).where(condition).tuples()
            )
            Snapshot.delete().where(condition).execute()
    keys = [key for key, _ in rows]
    # Thumbnails live beside their snapshot under a derived key; a missing one is no error.
    files = [*keys, *(thumbnail_key(key) for key in keys)]
    failed = set(storage.delete_many(files)) if keys else set()
    if failed:
        log.warning(
            "snapshot rows deleted but some files remain",
            extra={"files": len(failed), "storage": storage.name},
        )
    return len(rows), sum(size for _, size in rows)


def _has_returning() -> bool:
    db = database.obj
    if isinstance(db, peewee.SqliteDatabase):
        import sqlite3

        return sqlite3.sqlite_version_info >= (3, 35, 0)
    return isinstance(db, peewee.PostgresqlDatabase)
