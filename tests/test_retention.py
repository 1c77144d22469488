"""The retention pass on SQLite and PostgreSQL, with real files: age, count, size per stream
and globally, event-referenced snapshots, the newest snapshot of each stream, overrides."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import peewee
import pytest

from glimpser import times
from glimpser.config import Settings, load_settings
from glimpser.db import database, init_database, migrate
from glimpser.media.retention import apply_retention, effective_limits
from glimpser.media.snapshots import save_snapshot
from glimpser.media.storage import LocalStorage
from glimpser.models import Event, Snapshot, Stream
from tests.test_storage import files_under, make_frame, make_stream

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
_seed = iter(range(10_000, 10**9))


@pytest.fixture
def db(database_url: str) -> Iterator[peewee.Database]:
    """A migrated database (SQLite, then PostgreSQL) with an open connection."""
    handle = init_database(database_url)
    migrate(handle)
    with database.connection_context():
        yield handle


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "snapshots")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Everything unlimited; each test sets the limits it exercises."""
    base = load_settings({"GLIMPSER_DATA_DIR": str(tmp_path / "data")})
    return replace(
        base,
        retention_max_age_days=0,
        retention_max_count=0,
        retention_max_bytes=0,
        event_retention_days=0,
    )


def snap(stream: Stream, age: timedelta, storage: LocalStorage) -> Snapshot:
    """A snapshot with a real, distinct JPEG captured `age` before NOW."""
    saved = save_snapshot(stream, make_frame(next(_seed)), NOW - age, storage, store_identical=True)
    assert saved is not None
    return saved


def days(n: float) -> timedelta:
    return timedelta(days=n)


def surviving(stream: Stream | None = None) -> set[int]:
    query = Snapshot.select(Snapshot.id)
    if stream is not None:
        query = query.where(Snapshot.stream == stream)
    return {s.id for s in query}


def assert_files_match_rows(storage: LocalStorage) -> None:
    """Never a file without a row, never a row without a file."""
    on_disk = {p.relative_to(storage.root).as_posix() for p in files_under(storage.root)}
    assert on_disk == {s.storage_key for s in Snapshot.select(Snapshot.storage_key)}


# --- age, count, newest ---------------------------------------------------------------------


def test_max_age(db, local, settings):
    stream = make_stream()
    old = [snap(stream, days(10), local), snap(stream, days(8), local)]
    young = [snap(stream, days(6), local), snap(stream, days(1), local)]
    report = apply_retention(replace(settings, retention_max_age_days=7), local, now=NOW)
    assert surviving() == {s.id for s in young}
    assert report.by_age == 2 and report.snapshots_deleted == 2
    assert report.bytes_freed == sum(s.bytes for s in old)
    assert report.streams == 1 and report.over_limit == []
    assert_files_match_rows(local)
    # A second pass has nothing left to do.
    assert apply_retention(replace(settings, retention_max_age_days=7), local, now=NOW) == (
        type(report)(streams=1)
    )


def test_newest_snapshot_of_each_stream_always_survives(db, local, settings):
    quiet, busy = make_stream("quiet"), make_stream("busy")
    quiet_snaps = [snap(quiet, days(d), local) for d in (90, 60, 30)]
    busy_snaps = [snap(busy, days(d), local) for d in (40, 20)]
    settings = replace(
        settings, retention_max_age_days=7, retention_max_count=1, retention_max_bytes=1
    )
    report = apply_retention(settings, local, now=NOW)
    # Everything is too old, too many and too big, yet each stream keeps its latest picture.
    assert surviving(quiet) == {quiet_snaps[-1].id}
    assert surviving(busy) == {busy_snaps[-1].id}
    assert report.snapshots_deleted == 3
    assert report.over_limit and "global" in report.over_limit[0]
    assert_files_match_rows(local)


def test_newest_is_by_capture_time_not_insertion_order(db, local, settings):
    stream = make_stream()
    late_arrival = snap(stream, days(1), local)
    snap(stream, days(20), local)  # inserted afterwards, but captured earlier
    apply_retention(replace(settings, retention_max_age_days=7), local, now=NOW)
    assert surviving() == {late_arrival.id}


def test_max_count_keeps_the_newest_n(db, local, settings):
    stream, other = make_stream(), make_stream("other")
    snaps = [snap(stream, timedelta(minutes=m), local) for m in (60, 50, 40, 30, 20, 10)]
    others = [snap(other, timedelta(minutes=m), local) for m in (5, 3)]
    report = apply_retention(replace(settings, retention_max_count=3), local, now=NOW)
    assert surviving(stream) == {s.id for s in snaps[-3:]}
    assert surviving(other) == {s.id for s in others}
    assert report.by_count == 3
    assert report.bytes_freed == sum(s.bytes for s in snaps[:3])
    assert_files_match_rows(local)


def test_max_count_with_equal_capture_times(db, local, settings):
    stream = make_stream()
    same_time = [snap(stream, days(1), local) for _ in range(4)]  # ties broken by id
    apply_retention(replace(settings, retention_max_count=2), local, now=NOW)
    assert surviving() == {s.id for s in same_time[-2:]}


# --- overrides ------------------------------------------------------------------------------


def test_per_stream_override_beats_global(db, local, settings):
    default = make_stream("default")  # NULL overrides: the global 7 days
    longer = make_stream("longer", retention_max_age_days=30)
    forever = make_stream("forever", retention_max_age_days=0)  # 0 = unlimited, not "global"
    shorter = make_stream("shorter", retention_max_age_days=1, retention_max_count=2)
    by_stream = {
        s.name: [snap(s, days(d), local) for d in (40, 10, 3, 0.5, 0.1)]
        for s in (default, longer, forever, shorter)
    }
    settings = replace(settings, retention_max_age_days=7, retention_max_count=100)
    assert effective_limits(default, settings).max_age_days == 7
    assert effective_limits(longer, settings).max_age_days == 30
    assert effective_limits(forever, settings).max_age_days == 0
    assert effective_limits(shorter, settings).max_count == 2
    apply_retention(settings, local, now=NOW)

    def ages_left(name: str) -> list[int]:
        return [i for i, s in enumerate(by_stream[name]) if Snapshot.get_or_none(id=s.id)]

    assert ages_left("default") == [2, 3, 4]
    assert ages_left("longer") == [1, 2, 3, 4]
    assert ages_left("forever") == [0, 1, 2, 3, 4]
    assert ages_left("shorter") == [3, 4]
    assert_files_match_rows(local)


def test_stream_override_of_zero_count_means_unlimited(db, local, settings):
    stream = make_stream(retention_max_count=0)
    snaps = [snap(stream, timedelta(minutes=m), local) for m in (3, 2, 1)]
    apply_retention(replace(settings, retention_max_count=1), local, now=NOW)
    assert surviving() == {s.id for s in snaps}


# --- size limits ----------------------------------------------------------------------------


def test_per_stream_max_bytes(db, local, settings):
    capped, free = make_stream("capped"), make_stream("free")
    snaps = [snap(capped, timedelta(hours=h), local) for h in (5, 4, 3, 2, 1)]
    untouched = [snap(free, timedelta(hours=h), local) for h in (9, 8)]
    limit = snaps[3].bytes + snaps[4].bytes  # room for the two newest exactly
    Stream.update(retention_max_bytes=limit).where(Stream.id == capped.id).execute()
    report = apply_retention(settings, local, now=NOW)
    assert surviving(capped) == {snaps[3].id, snaps[4].id}
    assert surviving(free) == {s.id for s in untouched}
    assert report.by_stream_bytes == 3
    assert report.bytes_freed == sum(s.bytes for s in snaps[:3])
    assert report.over_limit == []
    # One byte less: the older of the two goes too.
    Stream.update(retention_max_bytes=limit - 1).where(Stream.id == capped.id).execute()
    apply_retention(settings, local, now=NOW)
    assert surviving(capped) == {snaps[4].id}
    assert_files_match_rows(local)


def test_global_bytes_deletes_the_oldest_anywhere(db, local, settings):
    a, b = make_stream("a"), make_stream("b")
    # Interleaved in time across the two streams.
    order = [(a, 6), (b, 5), (a, 4), (b, 3), (a, 2), (b, 1)]
    snaps = [snap(s, timedelta(hours=h), local) for s, h in order]
    total = sum(s.bytes for s in snaps)
    # Room for everything but the three oldest.
    limit = total - sum(s.bytes for s in snaps[:3])
    report = apply_retention(replace(settings, retention_max_bytes=limit), local, now=NOW)
    assert surviving() == {s.id for s in snaps[3:]}
    assert report.by_global_bytes == 3
    assert report.bytes_freed == total - limit
    assert report.over_limit == []
    # Under the limit by one byte less than the oldest remaining: it goes as well.
    apply_retention(replace(settings, retention_max_bytes=limit - 1), local, now=NOW)
    assert surviving() == {s.id for s in snaps[4:]}
    assert_files_match_rows(local)


def test_global_bytes_never_takes_protected_snapshots(db, local, settings):
    a, b = make_stream("a"), make_stream("b")
    a_old, a_new = snap(a, days(3), local), snap(a, days(2), local)
    b_old, b_new = snap(b, days(5), local), snap(b, days(1), local)
    Event.create(
        stream=b,
        snapshot=b_old,
        kind="motion",
        title="someone at the gate",
        created_at=NOW - days(1),
    )
    report = apply_retention(replace(settings, retention_max_bytes=1), local, now=NOW)
    # b_old is the oldest but an event shows it; the newest of each stream stay.
    assert surviving() == {a_new.id, b_old.id, b_new.id}
    assert report.by_global_bytes == 1
    assert report.over_limit
    assert a_old.id not in surviving()


# --- events ---------------------------------------------------------------------------------


def test_event_snapshots_live_as_long_as_their_events(db, local, settings):
    stream = make_stream()
    evidence = snap(stream, days(20), local)
    ordinary = snap(stream, days(19), local)
    latest = snap(stream, days(0), local)
    event = Event.create(
        stream=stream, snapshot=evidence, kind="motion", title="motion", created_at=NOW - days(20)
    )
    settings = replace(
        settings, retention_max_age_days=7, retention_max_count=1, event_retention_days=30
    )

    report = apply_retention(settings, local, now=NOW)
    assert surviving() == {evidence.id, latest.id}
    assert report.events_deleted == 0 and report.snapshots_deleted == 1
    assert not local.exists(ordinary.storage_key)

    # Eleven days later the event is past its 30 days: it goes first, then its snapshot.
    report = apply_retention(settings, local, now=NOW + days(11))
    assert report.events_deleted == 1
    assert Event.get_or_none(id=event.id) is None
    assert surviving() == {latest.id}
    assert report.by_age == 1
    assert_files_match_rows(local)


def test_event_retention_zero_keeps_events_forever(db, local, settings):
    stream = make_stream()
    s = snap(stream, days(400), local)
    snap(stream, days(0), local)
    Event.create(
        stream=stream, snapshot=s, kind="motion", title="ancient", created_at=NOW - days(400)
    )
    Event.create(stream=None, kind="system", title="no snapshot", created_at=NOW - days(400))
    report = apply_retention(replace(settings, retention_max_age_days=1), local, now=NOW)
    assert report.events_deleted == 0
    assert Event.select().count() == 2
    assert s.id in surviving()


def test_old_events_are_deleted_in_batches(db, local, settings, monkeypatch):
    monkeypatch.setattr("glimpser.media.retention.EVENT_DELETE_BATCH", 3)
    stream = make_stream()
    Event.insert_many(
        [
            {
                "stream": stream.id,
                "kind": "motion",
                "title": f"e{i}",
                "data": "{}",
                "created_at": NOW - days(40 if i < 7 else 5),
            }
            for i in range(10)
        ]
    ).execute()
    report = apply_retention(replace(settings, event_retention_days=30), local, now=NOW)
    assert report.events_deleted == 7
    assert sorted(e.title for e in Event.select()) == ["e7", "e8", "e9"]


# --- scale ----------------------------------------------------------------------------------


def test_many_rows_in_batches(db, local, settings, monkeypatch):
    """Thousands of rows through every rule with small batches (rows here have no files:
    a missing file is not an error, and the counts are what is checked)."""
    monkeypatch.setattr("glimpser.media.retention.DELETE_BATCH", 97)
    monkeypatch.setattr("glimpser.media.snapshots.DELETE_BATCH", 97)
    streams = [make_stream(f"s{i}") for i in range(3)]
    rows = []
    for n, stream in enumerate(streams):
        for i in range(1500):
            at = NOW - timedelta(hours=i)  # i = 0 is the newest
            rows.append(
                {
                    "stream": stream.id,
                    "captured_at": at,
                    "storage_key": f"{stream.id}/bulk/{i:05d}.jpg",
                    "content_type": "image/jpeg",
                    "width": 1,
                    "height": 1,
                    "bytes": 100 + n,
                    "sha256": "0" * 64,
                    "phash": "0" * 16,
                }
            )
    for start in range(0, len(rows), 500):
        Snapshot.insert_many(rows[start : start + 500]).execute()
    # s0: 30 days = 720 h
    Stream.update(retention_max_age_days=30).where(Stream.id == streams[0].id).execute()
    # s1: newest 1000
    Stream.update(retention_max_count=1000).where(Stream.id == streams[1].id).execute()
    # s2: 50 000 bytes at 102 bytes each -> 490 rows
    Stream.update(retention_max_bytes=50_000).where(Stream.id == streams[2].id).execute()
    # and all together under 150 000 bytes.
    settings = replace(settings, retention_max_bytes=150_000)
    started = times.utcnow()
    report = apply_retention(settings, local, now=NOW)
    elapsed = (times.utcnow() - started).total_seconds()

    left = [Snapshot.select().where(Snapshot.stream == s).count() for s in streams]
    assert report.by_age == 1500 - 721  # hour 720 sits exactly on the cut-off and stays
    assert report.by_count == 500
    assert report.by_stream_bytes == 1500 - 490
    total = sum(100 + n for n, s in enumerate(streams) for _ in range(left[n]))
    assert total <= 150_000
    # The global cap took the oldest anywhere: what is left is the newest of each stream.
    for n, stream in enumerate(streams):
        oldest_left = (
            Snapshot.select()
            .where(Snapshot.stream == stream)
            .order_by(Snapshot.captured_at)
            .first()
        )
        assert oldest_left.storage_key == f"{stream.id}/bulk/{left[n] - 1:05d}.jpg"
    assert report.snapshots_deleted == 4500 - sum(left)
    assert elapsed < 60
