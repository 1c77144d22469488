"""Saving and deleting snapshots: the stored file and its database row always go together.

The only code in Glimpser that writes or deletes snapshot files. The order of operations keeps
the invariant "never a row without a file":

- save: put the file, then insert the row; if the insert fails, delete the file again;
- delete: delete the rows (in a transaction), then the files. A crash in between can only leave
  an unreferenced file behind, never a row whose picture is missing.

Call these outside any open transaction: a row committed only by an outer transaction that later
rolls back would leave its file behind.

What a crash can still leave behind, `sweep_orphans` (run by the maintenance cron) removes:
snapshot files (and thumbnails) without a row, older than a grace period so that a file being
written right now is never touched, and rows whose file is gone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import peewee

from glimpser import times
from glimpser.db import database, write_transaction
from glimpser.media import imaging
from glimpser.media.storage import Storage, StoredObject, snapshot_key
from glimpser.media.thumbnails import THUMB_SUFFIX, thumbnail_key
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
                text=frame.text,
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


# --- orphans ----------------------------------------------------------------------------------

# A file younger than this is never removed as an orphan: its row may not be committed yet.
ORPHAN_GRACE = timedelta(hours=1)
# Snapshot keys (see storage.snapshot_key) and their thumbnails; anything else is not ours.
_SNAPSHOT_FILE = re.compile(
    r"(?P<stream>[1-9][0-9]*)/[0-9]{4}/[0-9]{2}/[0-9]{2}/[0-9]{6}\.[0-9]{6}-[0-9a-f]{12}"
    r"(?P<thumb>" + re.escape(THUMB_SUFFIX[: -len(".jpg")]) + r")?\.jpg"
)
SWEEP_BATCH = 1000


@dataclass
class SweepReport:
    files_seen: int = 0
    # What the listed files hold (the bucket's usage on S3): a measure, not an outcome.
    bytes_seen: int = field(default=0, compare=False)
    orphan_files_deleted: int = 0
    orphan_rows_deleted: int = 0


def snapshot_key_of(key: str) -> str | None:
    """The snapshot key a stored file belongs to (itself, or its thumbnail's), or None."""
    match = _SNAPSHOT_FILE.fullmatch(key)
    if match is None:
        return None
    return key[: match.start("thumb")] + ".jpg" if match.group("thumb") else key


def sweep_orphans(
    storage: Storage, now: datetime | None = None, *, grace: timedelta = ORPHAN_GRACE
) -> SweepReport:
    """Remove snapshot files without a row (older than `grace`) and rows without a file.

    Rows are read before the files are listed: save_snapshot writes the file before the row,
    so any row read has its file listed unless the file really is gone. A StorageError while
    listing stops the sweep before anything is deleted on its strength.
    """
    now = times.to_utc(now) if now is not None else times.utcnow()
    report = SweepReport()
    _sweep_files(storage, now - grace, report)
    stream_ids = [row[0] for row in Snapshot.select(Snapshot.stream).distinct().tuples()]
    for stream_id in sorted(stream_ids):
        report.orphan_rows_deleted += _sweep_rows(storage, stream_id)
    log.info(
        "orphan sweep",
        extra={
            "files_seen": report.files_seen,
            "orphan_files_deleted": report.orphan_files_deleted,
            "orphan_rows_deleted": report.orphan_rows_deleted,
        },
    )
    return report


def _sweep_files(storage: Storage, cutoff: datetime, report: SweepReport) -> None:
    batch: list[StoredObject] = []
    for item in storage.list_objects():
        report.files_seen += 1
        report.bytes_seen += item.size
        if item.modified_at < cutoff and snapshot_key_of(item.key) is not None:
            batch.append(item)
        if len(batch) >= SWEEP_BATCH:
            report.orphan_files_deleted += _delete_unowned(batch, storage)
            batch = []
    report.orphan_files_deleted += _delete_unowned(batch, storage)


def _delete_unowned(batch: list[StoredObject], storage: Storage) -> int:
    if not batch:
        return 0
    owners = {item.key: snapshot_key_of(item.key) for item in batch}
    owned = {
        row[0]
        for row in Snapshot.select(Snapshot.storage_key)
        .where(Snapshot.storage_key.in_(sorted(set(owners.values()))))
        .tuples()
    }
    orphans = [key for key, owner in owners.items() if owner not in owned]
    if not orphans:
        return 0
    failed = set(storage.delete_many(orphans))
    log.warning(
        "orphan snapshot files deleted",
        extra={"files": len(orphans) - len(failed), "storage": storage.name},
    )
    return len(orphans) - len(failed)


def _stored_keys(storage: Storage, stream_id: int) -> Iterator[str]:
    for item in storage.list_objects(f"{stream_id}/"):
        yield item.key


def _sweep_rows(storage: Storage, stream_id: int) -> int:
    """Delete the rows of one stream whose file is not stored (e.g. lost by hand or a restore)."""
    rows = list(
        Snapshot.select(Snapshot.id, Snapshot.storage_key)
        .where(Snapshot.stream == stream_id)
        .tuples()
    )
    if not rows:
        return 0
    prefix = f"{stream_id}/"
    stored = set(_stored_keys(storage, stream_id))
    missing = [
        snapshot_id
        for snapshot_id, key in rows
        if (key not in stored if key.startswith(prefix) else not storage.exists(key))
    ]
    if not missing:
        return 0
    deleted = delete_snapshots(missing, storage)
    log.warning(
        "snapshot rows without a file deleted",
        extra={"rows": deleted, "stream_id": stream_id, "storage": storage.name},
    )
    return deleted
