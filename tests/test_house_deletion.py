"""Deleting a stream: hidden at once in the request, files and rows removed by a job in batches,
restartable; and the sweep of orphan files and rows. Real local storage and S3 (moto's server),
SQLite and PostgreSQL, real Redis and RQ."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from rq.job import Job

from glimpser import times
from glimpser.analysis.summaries import scope_label
from glimpser.capture import scheduling
from glimpser.db import database, init_database, migrate
from glimpser.media import deletion, snapshots
from glimpser.media.snapshots import save_snapshot, sweep_orphans
from glimpser.media.storage import LocalStorage, S3Storage, Storage, get_storage, snapshot_key
from glimpser.media.thumbnails import thumbnail_key
from glimpser.models import Event, Snapshot, Stream, Summary
from tests.conftest import run_queued_jobs
from tests.helpers import form_post, jobs_configured, signed_in_admin
from tests.test_storage import (  # noqa: F401 - aws_env, moto_endpoint, s3_bucket: fixtures
    T0,
    aws_env,
    make_frame,
    make_stream,
    moto_endpoint,
    s3_bucket,
)


@pytest.fixture
def house_db(database_url: str):
    """A migrated database (SQLite, then PostgreSQL) with an open connection."""
    handle = init_database(database_url)
    migrate(handle)
    with database.connection_context():
        yield handle


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "snapshots")


@pytest.fixture
def s3_store(request: pytest.FixtureRequest) -> S3Storage:
    """A bucket on moto's real S3 server (the fixtures of tests/test_storage.py)."""
    return S3Storage(
        request.getfixturevalue("s3_bucket"),
        prefix="glimpser/snaps",
        endpoint_url=request.getfixturevalue("moto_endpoint"),
        region="us-east-1",
    )


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest) -> Storage:
    return request.getfixturevalue(f"{request.param}_store")


def fill(stream: Stream, storage: Storage, count: int, first: int = 0) -> list[Snapshot]:
    return [
        save_snapshot(
            stream,
            make_frame(first + i),
            T0 + timedelta(seconds=first + i),
            storage,
            store_identical=True,
        )
        for i in range(count)
    ]


def keys(storage: Storage) -> set[str]:
    return {item.key for item in storage.list_objects()}


# --- deletion as a job ------------------------------------------------------------------------


def test_a_marked_stream_is_gone_from_every_query_and_the_scheduler(
    house_db, local_store, redis_client
):
    stream = make_stream("doomed")
    other = make_stream("kept")
    fill(stream, local_store, 2)
    deletion.mark_for_deletion(stream)

    assert [s.name for s in Stream.select()] == ["kept"]
    assert Stream.get_or_none(Stream.id == stream.id) is None
    assert not Stream.select().where(Stream.id == stream.id).exists()
    assert Stream.select().count() == 1
    # Its name is free at once; the files stay until the job runs.
    assert Stream.create(name="doomed", kind="http_image", config={}).id != stream.id
    assert len(keys(local_store)) == 2
    # The scheduler never captures it again.
    Stream.update(next_due_at=None).execute()
    assert scheduling.sweep_due_streams(redis_client) == 2
    assert not scheduling.is_claimed(redis_client, stream.id)
    assert scheduling.is_claimed(redis_client, other.id)
    with pytest.raises(deletion.DeletionError):
        deletion.mark_for_deletion(stream)


def test_pages_of_rows_that_belong_to_a_stream_being_deleted_still_render(house_db):
    """A summary of the stream names it without loading the (hidden) stream row."""
    stream = make_stream("doomed")
    summary = Summary.create(
        stream=stream.id, stream_ids=[stream.id], period="hour", window_start=T0, window_end=T0
    )
    assert scope_label(summary) == "doomed"
    deletion.mark_for_deletion(stream)
    assert scope_label(Summary.get_by_id(summary.id)) == "A deleted stream"


def test_the_job_removes_files_and_rows_in_batches(house_db, any_store, monkeypatch):
    monkeypatch.setattr(deletion, "DELETE_BATCH", 3)
    stream = make_stream("big")
    other = make_stream("other")
    saved = fill(stream, any_store, 8)
    fill(other, any_store, 2, first=100)
    Event.create(stream=stream.id, snapshot=saved[0].id, kind="motion", title="seen")
    any_store.put(thumbnail_key(saved[1].storage_key), make_frame(50).jpeg)
    deletion.mark_for_deletion(stream)

    seen: list[int] = []
    progress = deletion.delete_stream(
        stream.id, any_store, lambda p: seen.append(p.snapshots_deleted)
    )

    assert progress.done and progress.snapshots_total == 8 and progress.snapshots_deleted == 8
    assert seen == [0, 3, 6, 8, 8]  # reported before, after each batch, and when done
    assert progress.events_deleted == 1
    assert not Stream.select_including_deleting().where(Stream.id == stream.id).exists()
    assert not Snapshot.select().where(Snapshot.stream == stream.id).exists()
    assert all(key.startswith(f"{other.id}/") for key in keys(any_store))
    assert len(keys(any_store)) == 2 and Snapshot.select().count() == 2


def test_an_interrupted_deletion_resumes_where_it_stopped(house_db, any_store, monkeypatch):
    monkeypatch.setattr(deletion, "DELETE_BATCH", 2)
    stream = make_stream("interrupted")
    fill(stream, any_store, 5)
    deletion.mark_for_deletion(stream)

    class WorkerDied(Exception):
        pass

    def die_after_first_batch(progress: deletion.DeletionProgress) -> None:
        if progress.snapshots_deleted >= 2:
            raise WorkerDied

    with pytest.raises(WorkerDied):
        deletion.delete_stream(stream.id, any_store, die_after_first_batch)
    assert Snapshot.select().where(Snapshot.stream == stream.id).count() == 3
    assert len(keys(any_store)) == 3
    assert Stream.get_or_none(Stream.id == stream.id) is None  # still hidden meanwhile

    again = deletion.delete_stream(stream.id, any_store)
    assert again.done and again.snapshots_deleted == 3
    assert keys(any_store) == set()
    assert not Stream.select_including_deleting().where(Stream.id == stream.id).exists()


def test_delete_in_the_web_request_only_hides_and_queues(app, redis_client):
    admin = signed_in_admin(app)
    storage = get_storage(app.extensions["glimpser.settings"])
    with database.connection_context():
        stream = Stream.create(name="Yard", kind="http_image", config={"url": "http://x/y.jpg"})
        fill(stream, storage, 3)
        event_id = Event.create(stream=stream.id, kind="motion", title="Someone in the yard").id
    assert "Someone in the yard" in admin.get("/events").get_data(as_text=True)
    assert "Yard" in admin.get(f"/streams/{stream.id}/delete").get_data(as_text=True)
    response = form_post(admin, f"/streams/{stream.id}/delete", data={"confirm": "Yard"})
    assert response.status_code == 302
    # Gone for everyone at once: its pages 404, the list does not show it.
    assert admin.get(f"/streams/{stream.id}").status_code == 404
    assert admin.get(f"/streams/{stream.id}/delete").status_code == 404
    assert "Yard" not in admin.get("/streams/").get_data(as_text=True)
    assert "Someone in the yard" not in admin.get("/events").get_data(as_text=True)
    assert admin.get(f"/events/{event_id}").status_code == 404
    again = form_post(admin, f"/streams/{stream.id}/delete", data={"confirm": "Yard"})
    assert again.status_code == 404
    # Nothing was removed inside the request: that is the job's work.
    assert len(keys(storage)) == 3
    job = Job.fetch(deletion.job_id(stream.id), connection=redis_client)
    assert job.origin == "maintenance"
    status = admin.get("/admin/").get_data(as_text=True)
    assert "Streams being deleted" in status and "Yard" in status

    with jobs_configured(app):
        run_queued_jobs(app, ("maintenance",))
    job = Job.fetch(deletion.job_id(stream.id), connection=redis_client)
    assert job.get_status() == "finished"
    assert job.meta["progress"]["done"] and job.meta["progress"]["snapshots_deleted"] == 3
    assert keys(storage) == set()
    with database.connection_context():
        assert not Stream.select_including_deleting().where(Stream.id == stream.id).exists()
        assert not Snapshot.select().exists()
    assert "Streams being deleted" not in admin.get("/admin/").get_data(as_text=True)


def test_a_lost_deletion_job_is_queued_again_by_the_cron(app, redis_client):
    storage = get_storage(app.extensions["glimpser.settings"])
    with database.connection_context():
        stream = Stream.create(name="Lost", kind="http_image", config={"url": "http://x/y.jpg"})
        fill(stream, storage, 2)
        # Marked, but its job never ran: Redis was down, or the worker died with it.
        deletion.mark_for_deletion(stream)
        now = times.utcnow()
        assert deletion.resume_deletions(redis_client, now) == 0  # too fresh to call lost
        later = now + deletion.RESUME_AFTER + timedelta(seconds=1)
        assert deletion.resume_deletions(redis_client, later) == 1
        assert deletion.resume_deletions(redis_client, later) == 0  # already queued: once
    with jobs_configured(app):
        run_queued_jobs(app, ("maintenance",))
    assert keys(storage) == set()
    with database.connection_context():
        assert not Stream.select_including_deleting().exists()
        assert deletion.resume_deletions(redis_client, later) == 0


# --- orphans ----------------------------------------------------------------------------------


def age(storage: Storage, key: str, seconds: float) -> None:
    """Make a stored file look `seconds` old (local files only; S3 uses the grace instead)."""
    path = storage.local_path(key)
    assert path is not None
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_orphan_files_and_rows_are_swept_on_local_storage(house_db, local_store):
    stream = make_stream("cam")
    kept = fill(stream, local_store, 3)
    # A crash between the file and the row: a file (and its thumbnail) with no row.
    orphan = snapshot_key(stream.id, T0 + timedelta(hours=1), "a" * 64)
    local_store.put(orphan, make_frame(9).jpeg)
    local_store.put(thumbnail_key(orphan), make_frame(10).jpeg)
    # One being written right now: no row yet, and young.
    fresh = snapshot_key(stream.id, T0 + timedelta(hours=2), "b" * 64)
    local_store.put(fresh, make_frame(11).jpeg)
    # A row whose file is gone.
    local_store.delete(kept[0].storage_key)
    # Files that are not snapshots are never ours to sweep.
    local_store.put("timelapses/1/1.mp4", b"video")
    for key in keys(local_store) - {fresh}:
        age(local_store, key, 7200)

    report = sweep_orphans(local_store)

    assert report.orphan_files_deleted == 2 and report.orphan_rows_deleted == 1
    assert keys(local_store) == {
        kept[1].storage_key,
        kept[2].storage_key,
        fresh,
        "timelapses/1/1.mp4",
    }
    assert [s.id for s in Snapshot.select().order_by(Snapshot.id)] == [kept[1].id, kept[2].id]
    assert sweep_orphans(local_store) == snapshots.SweepReport(files_seen=4)


def test_orphan_files_and_rows_are_swept_on_s3(house_db, s3_store):
    stream = make_stream("cam")
    kept = fill(stream, s3_store, 2)
    orphan = snapshot_key(stream.id, T0 + timedelta(hours=1), "c" * 64)
    s3_store.put(orphan, make_frame(9).jpeg)
    s3_store.delete(kept[0].storage_key)

    # Everything is younger than the grace period: no file is touched, whatever its row.
    young = sweep_orphans(s3_store)
    assert young.orphan_files_deleted == 0 and orphan in keys(s3_store)
    assert young.orphan_rows_deleted == 1  # a row without a file needs no grace

    later = sweep_orphans(s3_store, times.utcnow() + snapshots.ORPHAN_GRACE + timedelta(minutes=1))
    assert later.orphan_files_deleted == 1
    assert keys(s3_store) == {kept[1].storage_key}
    assert [s.id for s in Snapshot.select()] == [kept[1].id]


def test_the_sweep_never_removes_a_file_whose_row_commits_late(house_db, local_store):
    """The save path writes the file, then the row: a file seen without a row but younger
    than the grace is left alone, and once its row exists it is owned."""
    stream = make_stream("cam")
    for n in range(20):
        key = snapshot_key(stream.id, T0 + timedelta(minutes=n), f"{n:064x}")
        local_store.put(key, make_frame(n).jpeg)
        assert sweep_orphans(local_store).orphan_files_deleted == 0
        Snapshot.create(
            stream=stream.id,
            captured_at=T0 + timedelta(minutes=n),
            storage_key=key,
            width=32,
            height=24,
            bytes=1,
            sha256=f"{n:064x}",
            phash="0" * 16,
        )
        age(local_store, key, 7200)
        assert sweep_orphans(local_store).orphan_files_deleted == 0
    assert len(keys(local_store)) == 20 and Snapshot.select().count() == 20


def test_local_listing_skips_files_being_written(tmp_path: Path):
    storage = LocalStorage(tmp_path)
    storage.put("1/2026/11/24/101500.123456-abcdefabcdef.jpg", b"x")
    (tmp_path / "1" / "2026" / "11" / "24" / ".tmp-half-written").write_bytes(b"half")
    assert keys(storage) == {"1/2026/11/24/101500.123456-abcdefabcdef.jpg"}
