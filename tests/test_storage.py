"""Snapshot storage: the local directory and S3 (moto's real HTTP server on loopback), and
saving/deleting snapshots with file and row together, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import peewee
import pytest
from PIL import Image

from glimpser.config import load_settings
from glimpser.db import database, init_database, migrate
from glimpser.media import imaging
from glimpser.media.snapshots import delete_snapshots, latest_snapshot, save_snapshot
from glimpser.media.storage import (
    LocalStorage,
    ObjectNotFound,
    S3Storage,
    Storage,
    StorageError,
    get_storage,
    snapshot_key,
    validate_key,
)
from glimpser.models import Event, Snapshot, Stream
from glimpser.sources.base import Frame
from tests.helpers import free_port

T0 = datetime(2026, 11, 24, 10, 15, 0, 123456, tzinfo=UTC)


# --- helpers shared with test_retention -----------------------------------------------------


def make_frame(seed: int, size: tuple[int, int] = (32, 24)) -> Frame:
    """A real, small JPEG whose pixels (and so hashes) depend on the seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", size)
    image.putdata(
        [
            (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            for _ in range(size[0] * size[1])
        ]
    )
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return Frame(jpeg=out.getvalue(), width=size[0], height=size[1])


def make_stream(name: str = "gate", **retention: int | None) -> Stream:
    return Stream.create(
        name=name, kind="http_image", config={"url": "http://192.0.2.1/snapshot.jpg"}, **retention
    )


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


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


# --- S3 on moto's HTTP server ---------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    # No ~/.aws of the machine running the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


@pytest.fixture
def s3_bucket(moto_endpoint: str, aws_env: None, request: pytest.FixtureRequest) -> str:
    name = f"glimpser-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket=name
    )
    return name


@pytest.fixture
def s3(moto_endpoint: str, s3_bucket: str) -> S3Storage:
    return S3Storage(
        s3_bucket, prefix="glimpser/snaps", endpoint_url=moto_endpoint, region="us-east-1"
    )


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> Storage:
    return request.getfixturevalue(request.param)


# --- keys -----------------------------------------------------------------------------------


def test_snapshot_key_format():
    sha = imaging.sha256(b"picture")
    assert snapshot_key(12, T0, sha) == f"12/2026/11/24/101500.123456-{sha[:12]}.jpg"
    # Times are keyed in UTC whatever the offset given.
    from datetime import timezone

    later = T0.astimezone(timezone(timedelta(hours=-5)))
    assert snapshot_key(12, later, sha) == snapshot_key(12, T0, sha)
    validate_key(snapshot_key(12, T0, sha))
    with pytest.raises(ValueError):
        snapshot_key(12, T0.replace(tzinfo=None), sha)
    with pytest.raises(ValueError):
        snapshot_key(0, T0, sha)
    with pytest.raises(ValueError):
        snapshot_key(1, T0, "../etc")


BAD_KEYS = [
    "",
    "../outside.jpg",
    "a/../../outside.jpg",
    "a/../b.jpg",
    "./a.jpg",
    "/etc/passwd",
    "a\\b.jpg",
    "..\\..\\x.jpg",
    "a//b.jpg",
    "a/b/",
    ".hidden",
    "a/.tmp-x",
    "a/b\x00.jpg",
    "x" * 501,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_refused_by_every_backend(storage: Storage, key: str):
    for call in (
        lambda: storage.put(key, b"data", "image/jpeg"),
        lambda: storage.get(key),
        lambda: storage.delete(key),
        lambda: storage.exists(key),
        lambda: storage.local_path(key) if isinstance(storage, LocalStorage) else validate_key(key),
    ):
        with pytest.raises(StorageError):
            call()


# --- both backends --------------------------------------------------------------------------


def test_put_get_exists_delete(storage: Storage):
    key = "7/2026/11/24/101500.000001-abcdef012345.jpg"
    assert not storage.exists(key)
    with pytest.raises(ObjectNotFound):
        storage.get(key)
    storage.put(key, b"first", "image/jpeg")
    assert storage.exists(key)
    assert storage.get(key) == b"first"
    storage.put(key, b"second version", "image/jpeg")  # replaces
    assert storage.get(key) == b"second version"
    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)  # missing is fine
    with pytest.raises(ObjectNotFound):
        storage.get(key)


def test_delete_many(storage: Storage):
    keys = [f"3/2026/01/0{i}/000000.000000-aaaaaaaaaaaa.jpg" for i in range(1, 6)]
    for key in keys:
        storage.put(key, key.encode(), "image/jpeg")
    assert storage.delete_many([*keys[:3], "3/never/stored.jpg"]) == []
    assert [storage.exists(k) for k in keys] == [False, False, False, True, True]
    assert storage.delete_many(["../escape.jpg"]) == ["../escape.jpg"]


def test_check_passes_on_a_usable_backend(storage: Storage):
    assert isinstance(storage, Storage)
    storage.check()


# --- local directory ------------------------------------------------------------------------


def test_local_files_layout_modes_and_pruning(local: LocalStorage):
    key = "5/2026/11/24/101500.123456-0123456789ab.jpg"
    local.put(key, b"jpeg bytes", "image/jpeg")
    path = local.root / key
    assert path.read_bytes() == b"jpeg bytes"
    assert path.stat().st_mode & 0o777 == 0o644
    assert local.local_path(key) == path
    other = "5/2026/11/23/090000.000000-0123456789ab.jpg"
    local.put(other, b"older", "image/jpeg")
    local.delete(key)
    # The emptied day directory is gone; the month that still holds a file stays.
    assert not (local.root / "5/2026/11/24").exists()
    assert (local.root / "5/2026/11/23").is_dir()
    local.delete(other)
    assert not (local.root / "5").exists()
    assert local.root.is_dir()


def test_local_write_is_atomic(local: LocalStorage, monkeypatch: pytest.MonkeyPatch):
    key = "1/2026/11/24/101500.000000-aaaaaaaaaaaa.jpg"
    local.put(key, b"complete old picture", "image/jpeg")

    def crash(src, dst):
        # At the moment of the rename the new bytes sit complete in a temp file beside the
        # target, and the target still holds the old picture.
        assert Path(src).parent == Path(dst).parent
        assert Path(src).read_bytes() == b"new picture"
        assert Path(dst).read_bytes() == b"complete old picture"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StorageError, match="No space left on device"):
        local.put(key, b"new picture", "image/jpeg")
    monkeypatch.undo()
    assert local.get(key) == b"complete old picture"
    assert [p.name for p in files_under(local.root)] == [Path(key).name]  # no temp file left


def test_local_refuses_symlinks_out_of_the_root(local: LocalStorage, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    local.root.mkdir(parents=True)
    (local.root / "9").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StorageError, match="outside"):
        local.put("9/escape.jpg", b"x", "image/jpeg")
    with pytest.raises(StorageError, match="outside"):
        local.get("9/escape.jpg")
    assert list(outside.iterdir()) == []


def test_local_write_failure_is_one_line(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    storage = LocalStorage(blocker)
    with pytest.raises(StorageError) as info:
        storage.put("1/a.jpg", b"x", "image/jpeg")
    assert "\n" not in str(info.value) and "1/a.jpg" in str(info.value)
    with pytest.raises(StorageError):
        storage.check()


# --- S3 -------------------------------------------------------------------------------------


def test_s3_stores_under_the_prefix_with_content_type(s3: S3Storage, moto_endpoint: str):
    key = "4/2026/11/24/101500.000000-bbbbbbbbbbbb.jpg"
    s3.put(key, b"\xff\xd8jpeg", "image/jpeg")
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    head = client.head_object(Bucket=s3.bucket, Key=f"glimpser/snaps/{key}")
    assert head["ContentType"] == "image/jpeg"
    assert head["ContentLength"] == 6
    assert s3.local_path(key) is None


def test_s3_missing_bucket_is_a_clear_one_line_error(moto_endpoint: str, aws_env: None):
    storage = S3Storage("no-such-bucket-here", endpoint_url=moto_endpoint, region="us-east-1")
    with pytest.raises(StorageError) as info:
        storage.put("1/a.jpg", b"x", "image/jpeg")
    message = str(info.value)
    assert message.startswith("S3 put s3://no-such-bucket-here/1/a.jpg failed: NoSuchBucket")
    assert "\n" not in message
    with pytest.raises(StorageError, match="head bucket"):
        storage.check()


def test_s3_unreachable_endpoint_is_a_clear_error(aws_env: None):
    storage = S3Storage("bucket", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageError) as info:
        storage.get("1/a.jpg")
    assert "Could not connect" in str(info.value)
    assert "\n" not in str(info.value)


def test_s3_without_credentials_says_so(moto_endpoint: str, aws_env: None, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage = S3Storage("bucket", endpoint_url=moto_endpoint)
    with pytest.raises(StorageError, match="credentials"):
        storage.put("1/a.jpg", b"x", "image/jpeg")


# --- get_storage ----------------------------------------------------------------------------


def test_get_storage_builds_one_backend_per_configuration(tmp_path: Path, moto_endpoint, aws_env):
    settings = load_settings({"GLIMPSER_DATA_DIR": str(tmp_path / "data")})
    first = get_storage(settings)
    assert isinstance(first, LocalStorage)
    assert first.root == tmp_path / "data" / "snapshots"
    assert get_storage(settings) is first
    assert get_storage(replace(settings, log_level="DEBUG")) is first
    other = get_storage(replace(settings, snapshot_dir=tmp_path / "elsewhere"))
    assert other is not first and other.root == tmp_path / "elsewhere"

    s3_settings = load_settings(
        {
            "GLIMPSER_DATA_DIR": str(tmp_path / "data"),
            "GLIMPSER_STORAGE": "s3",
            "GLIMPSER_S3_BUCKET": "snaps",
            "GLIMPSER_S3_PREFIX": "/glimpser/",
            "GLIMPSER_S3_ENDPOINT_URL": moto_endpoint,
        }
    )
    s3 = get_storage(s3_settings)
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix) == ("snaps", "glimpser")
    assert get_storage(s3_settings) is s3


# --- save_snapshot / delete_snapshots (SQLite and PostgreSQL) -------------------------------


def test_save_snapshot_writes_file_and_row(db, local: LocalStorage):
    stream = make_stream()
    frame = make_frame(1)
    snapshot = save_snapshot(stream, frame, T0, local, store_identical=False)
    assert snapshot is not None
    row = Snapshot.get_by_id(snapshot.id)
    digest = imaging.sha256(frame.jpeg)
    assert row.storage_key == f"{stream.id}/2026/11/24/101500.123456-{digest[:12]}.jpg"
    assert row.captured_at == T0
    assert (row.width, row.height, row.bytes) == (32, 24, len(frame.jpeg))
    assert row.sha256 == digest
    assert row.phash == imaging.perceptual_hash(frame.jpeg) and len(row.phash) == 16
    assert row.content_type == "image/jpeg"
    assert local.get(row.storage_key) == frame.jpeg
    assert files_under(local.root) == [local.root / row.storage_key]
    assert latest_snapshot(stream).id == row.id


def test_identical_frame_is_stored_once_unless_asked(db, local: LocalStorage):
    stream = make_stream()
    same, different = make_frame(1), make_frame(2)
    assert save_snapshot(stream, same, T0, local, store_identical=False) is not None
    assert (
        save_snapshot(stream, same, T0 + timedelta(seconds=60), local, store_identical=False)
        is None
    )
    assert Snapshot.select().count() == 1 and len(files_under(local.root)) == 1

    # Another stream seeing the same picture is not "identical" to this one.
    other = make_stream("other")
    assert save_snapshot(other, same, T0, local, store_identical=False) is not None

    changed = save_snapshot(
        stream, different, T0 + timedelta(seconds=120), local, store_identical=False
    )
    assert changed is not None
    # Compared with the latest only: the first picture coming back is stored again.
    back = save_snapshot(stream, same, T0 + timedelta(seconds=180), local, store_identical=False)
    assert back is not None

    again = save_snapshot(stream, same, T0 + timedelta(seconds=240), local, store_identical=True)
    assert again is not None
    assert Snapshot.select().where(Snapshot.stream == stream).count() == 4
    assert len(files_under(local.root)) == 5


def test_failed_row_insert_leaves_no_file(db, local: LocalStorage):
    stream = make_stream()
    Stream.delete().where(Stream.id == stream.id).execute()  # deleted while capturing
    with pytest.raises(peewee.IntegrityError):
        save_snapshot(stream, make_frame(1), T0, local, store_identical=True)
    assert Snapshot.select().count() == 0
    assert files_under(local.root) == []


def test_duplicate_key_failure_keeps_the_file_of_the_existing_row(db, local: LocalStorage):
    # A retried job saving the same frame at the same time again: the insert fails on the
    # unique storage_key, and the file, which belongs to the first row, must stay.
    stream = make_stream()
    frame = make_frame(1)
    first = save_snapshot(stream, frame, T0, local, store_identical=True)
    with pytest.raises(peewee.IntegrityError):
        save_snapshot(stream, frame, T0, local, store_identical=True)
    assert [s.id for s in Snapshot.select()] == [first.id]
    assert local.get(first.storage_key) == frame.jpeg


def test_any_failed_insert_removes_the_file(db, local: LocalStorage):
    if isinstance(database.obj, peewee.SqliteDatabase):
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    # PostgreSQL refuses an over-long content type: a different error, the same clean-up.
    stream = make_stream()
    frame = make_frame(3)
    key = snapshot_key(stream.id, T0, imaging.sha256(frame.jpeg))
    bad = Frame(jpeg=frame.jpeg, width=32, height=24, content_type="image/" + "x" * 100)
    with pytest.raises(peewee.DataError):
        save_snapshot(stream, bad, T0, local, store_identical=True)
    assert not local.exists(key)
    assert Snapshot.select().count() == 0


def test_storage_failure_records_nothing(db, tmp_path: Path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    stream = make_stream()
    with pytest.raises(StorageError):
        save_snapshot(stream, make_frame(1), T0, LocalStorage(blocker), store_identical=False)
    assert Snapshot.select().count() == 0


def test_delete_snapshots_removes_rows_and_files(db, local: LocalStorage):
    stream, other = make_stream(), make_stream("other")
    snaps = [
        save_snapshot(
            stream, make_frame(i), T0 + timedelta(minutes=i), local, store_identical=False
        )
        for i in range(6)
    ]
    kept = save_snapshot(other, make_frame(99), T0, local, store_identical=False)
    event = Event.create(stream=stream, snapshot=snaps[1], kind="motion", title="motion")

    # A query: its filter, order and limit decide which ones go.
    oldest_two = (
        Snapshot.select().where(Snapshot.stream == stream).order_by(Snapshot.captured_at).limit(2)
    )
    assert delete_snapshots(oldest_two, local) == 2
    assert not local.exists(snaps[0].storage_key) and not local.exists(snaps[1].storage_key)
    assert Event.get_by_id(event.id).snapshot_id is None  # the event stays, without picture

    # A list of instances and ids; a file already gone is not an error.
    local.delete(snaps[3].storage_key)
    assert delete_snapshots([snaps[2], snaps[3].id, snaps[3].id], local) == 2
    assert delete_snapshots([snaps[2]], local) == 0  # already gone
    remaining = {s.id for s in Snapshot.select()}
    assert remaining == {snaps[4].id, snaps[5].id, kept.id}
    assert {p.relative_to(local.root).as_posix() for p in files_under(local.root)} == {
        snaps[4].storage_key,
        snaps[5].storage_key,
        kept.storage_key,
    }
    assert delete_snapshots([], local) == 0


def test_delete_snapshots_in_several_batches(db, local: LocalStorage, monkeypatch):
    monkeypatch.setattr("glimpser.media.snapshots.DELETE_BATCH", 4)
    stream = make_stream()
    for i in range(11):
        save_snapshot(
            stream, make_frame(i), T0 + timedelta(seconds=i), local, store_identical=False
        )
    assert delete_snapshots(Snapshot.select(), local) == 11
    assert Snapshot.select().count() == 0 and files_under(local.root) == []


def test_file_deletion_failure_is_not_fatal(db, local: LocalStorage, caplog):
    stream = make_stream()
    snap = save_snapshot(stream, make_frame(1), T0, local, store_identical=False)
    other = save_snapshot(
        stream, make_frame(2), T0 + timedelta(seconds=1), local, store_identical=False
    )
    # Something that cannot be unlinked (even by root) where the file should be.
    path = local.root / snap.storage_key
    path.unlink()
    path.mkdir()
    (path / "keep").write_bytes(b"x")
    assert delete_snapshots([snap, other], local) == 2
    assert Snapshot.select().count() == 0
    assert not local.exists(other.storage_key)  # the other file went all the same
    assert "snapshot file not deleted" in caplog.text


def test_save_and_delete_on_s3(db, s3: S3Storage):
    stream = make_stream()
    frame = make_frame(5)
    snap = save_snapshot(stream, frame, T0, s3, store_identical=False)
    assert s3.get(snap.storage_key) == frame.jpeg
    assert (
        save_snapshot(stream, frame, T0 + timedelta(seconds=5), s3, store_identical=False) is None
    )
    assert delete_snapshots(Snapshot.select(), s3) == 1
    assert not s3.exists(snap.storage_key)


def test_failed_row_insert_leaves_no_object_on_s3(db, s3: S3Storage, moto_endpoint: str):
    stream = make_stream()
    Stream.delete().where(Stream.id == stream.id).execute()
    with pytest.raises(peewee.IntegrityError):
        save_snapshot(stream, make_frame(1), T0, s3, store_identical=False)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    assert client.list_objects_v2(Bucket=s3.bucket).get("KeyCount") == 0
