"""Snapshot images and thumbnails over HTTP: revalidated latest, immutable per-snapshot URLs,
304s, thumbnails made once and deleted with their snapshot, X-Accel-Redirect, access."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from glimpser import times
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.media.snapshots import delete_snapshots, save_snapshot
from glimpser.media.storage import get_storage
from glimpser.media.thumbnails import THUMB_WIDTH, thumbnail_key
from glimpser.models import Snapshot, Stream, StreamAccess
from glimpser.sources.base import Frame
from tests.helpers import login, setup_admin
from tests.media_servers import jpeg

PASSWORD = "correct horse battery"
IMMUTABLE = "private, max-age=31536000, immutable"


def add_stream(name: str, **fields: object) -> Stream:
    with database.connection_context():
        return Stream.create(
            name=name,
            kind="http_image",
            config={"kind": "http_image", "url": "http://192.0.2.1/x.jpg"},
            **fields,
        )


def add_snapshot(app, stream: Stream, picture: bytes, seconds_ago: float = 0) -> Snapshot:
    """Store a picture through the real storage backend and snapshot code."""
    image = Image.open(io.BytesIO(picture))
    frame = Frame(jpeg=picture, width=image.width, height=image.height)
    at = times.utcnow() - timedelta(seconds=seconds_ago)
    storage = get_storage(app.extensions["glimpser.settings"])
    with database.connection_context():
        snap = save_snapshot(stream, frame, at, storage, store_identical=True)
    assert snap is not None
    return snap


def stored_path(app, key: str) -> Path:
    return Path(app.extensions["glimpser.settings"].snapshot_dir, key)


@pytest.fixture
def app(db_app):
    """Every test here runs on SQLite and on PostgreSQL (the queries differ)."""
    return db_app


@pytest.fixture
def admin(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def test_latest_image_is_revalidated_and_answers_304(app, admin):
    stream = add_stream("Porch")
    first = add_snapshot(app, stream, jpeg((10, 20, 30), label="one"), seconds_ago=5)
    response = admin.get(f"/streams/{stream.id}/snapshot.jpg")
    assert response.status_code == 200
    assert response.data == stored_path(app, first.storage_key).read_bytes()
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert response.headers["ETag"] == f'"{first.sha256}"'
    assert response.headers["Last-Modified"]
    by_etag = admin.get(
        f"/streams/{stream.id}/snapshot.jpg", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert by_etag.status_code == 304 and by_etag.data == b""
    by_date = admin.get(
        f"/streams/{stream.id}/snapshot.jpg",
        headers={"If-Modified-Since": response.headers["Last-Modified"]},
    )
    assert by_date.status_code == 304
    # A new picture: the old validator no longer matches.
    second = add_snapshot(app, stream, jpeg((200, 20, 30), label="two"))
    changed = admin.get(
        f"/streams/{stream.id}/snapshot.jpg", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert changed.status_code == 200 and changed.headers["ETag"] == f'"{second.sha256}"'


def test_per_snapshot_urls_are_immutable_and_answer_304(app, admin):
    stream = add_stream("Porch")
    snap = add_snapshot(app, stream, jpeg((10, 20, 30)))
    url = f"/streams/{stream.id}/snapshots/{snap.id}.jpg"
    response = admin.get(url)
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.headers["Cache-Control"] == IMMUTABLE
    assert response.data == stored_path(app, snap.storage_key).read_bytes()
    again = admin.get(url, headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers["Cache-Control"] == IMMUTABLE
    assert admin.get(f"/streams/{stream.id}/snapshots/{snap.id + 999}.jpg").status_code == 404


def test_thumbnails_are_made_once_stored_beside_the_snapshot_and_immutable(app, admin):
    stream = add_stream("Porch")
    snap = add_snapshot(app, stream, jpeg((10, 120, 30), size=(1280, 720)))
    url = f"/streams/{stream.id}/snapshots/{snap.id}/thumb.jpg"
    thumb_file = stored_path(app, thumbnail_key(snap.storage_key))
    assert not thumb_file.exists()
    first = admin.get(url)
    assert first.status_code == 200 and first.mimetype == "image/jpeg"
    assert first.headers["Cache-Control"] == IMMUTABLE
    picture = Image.open(io.BytesIO(first.data))
    assert picture.size == (THUMB_WIDTH, 180)
    assert thumb_file.parent == stored_path(app, snap.storage_key).parent
    made = thumb_file.stat().st_mtime_ns
    # A second, unconditional request serves the stored thumbnail without making it again.
    second = admin.get(url)
    assert second.status_code == 200 and second.data == first.data
    assert thumb_file.stat().st_mtime_ns == made
    assert admin.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    assert first.headers["ETag"] != admin.get(f"/streams/{stream.id}/snapshot.jpg").headers["ETag"]


def test_small_pictures_are_their_own_thumbnail(app, admin):
    stream = add_stream("Small")
    snap = add_snapshot(app, stream, jpeg((10, 20, 30), size=(THUMB_WIDTH, 240)))
    response = admin.get(f"/streams/{stream.id}/snapshots/{snap.id}/thumb.jpg")
    assert response.status_code == 200
    assert response.data == stored_path(app, snap.storage_key).read_bytes()
    assert not stored_path(app, thumbnail_key(snap.storage_key)).exists()


def test_thumbnails_are_deleted_with_their_snapshot(app, admin):
    stream = add_stream("Porch")
    snap = add_snapshot(app, stream, jpeg((10, 20, 30), size=(800, 600)))
    assert admin.get(f"/streams/{stream.id}/snapshots/{snap.id}/thumb.jpg").status_code == 200
    thumb_file = stored_path(app, thumbnail_key(snap.storage_key))
    assert thumb_file.exists()
    with database.connection_context():
        assert delete_snapshots([snap.id], get_storage(app.extensions["glimpser.settings"])) == 1
    assert not thumb_file.exists()
    assert not thumb_file.parent.exists()  # the day's directory is pruned, nothing left behind


def test_a_missing_file_is_a_404_not_a_500(app, admin):
    stream = add_stream("Porch")
    snap = add_snapshot(app, stream, jpeg((10, 20, 30), size=(800, 600)))
    stored_path(app, snap.storage_key).unlink()
    assert admin.get(f"/streams/{stream.id}/snapshots/{snap.id}.jpg").status_code == 404
    assert admin.get(f"/streams/{stream.id}/snapshots/{snap.id}/thumb.jpg").status_code == 404
    assert admin.get(f"/streams/{stream.id}/snapshot.jpg").status_code == 404


def test_x_accel_redirect_hands_the_file_to_nginx(app_factory):
    app = app_factory(GLIMPSER_ACCEL_REDIRECT_PREFIX="/_snapshots/")
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    stream = add_stream("Porch")
    snap = add_snapshot(app, stream, jpeg((10, 20, 30), size=(640, 480)))
    latest = client.get(f"/streams/{stream.id}/snapshot.jpg")
    assert latest.status_code == 200 and latest.data == b""
    assert latest.headers["X-Accel-Redirect"] == f"/_snapshots/{snap.storage_key}"
    assert latest.mimetype == "image/jpeg"
    assert latest.headers["Cache-Control"] == "private, no-cache"
    thumb = client.get(f"/streams/{stream.id}/snapshots/{snap.id}/thumb.jpg")
    key = thumbnail_key(snap.storage_key)
    assert thumb.headers["X-Accel-Redirect"] == f"/_snapshots/{key}" and thumb.data == b""
    assert stored_path(app, key).exists()  # made before nginx is asked to send it
    assert thumb.headers["Cache-Control"] == IMMUTABLE
    # The app still answers 304 itself when the browser has the picture.
    again = client.get(
        f"/streams/{stream.id}/snapshot.jpg", headers={"If-None-Match": latest.headers["ETag"]}
    )
    assert again.status_code == 304 and "X-Accel-Redirect" not in again.headers


def test_viewers_get_404_for_every_picture_of_other_streams(app, admin):
    granted, hidden = add_stream("Granted"), add_stream("Hidden")
    mine = add_snapshot(app, granted, jpeg((1, 2, 3), size=(640, 480)))
    theirs = add_snapshot(app, hidden, jpeg((3, 2, 1), size=(640, 480)))
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=granted)
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    for url in (
        f"/streams/{granted.id}/snapshot.jpg",
        f"/streams/{granted.id}/snapshots/{mine.id}.jpg",
        f"/streams/{granted.id}/snapshots/{mine.id}/thumb.jpg",
    ):
        assert viewer.get(url).status_code == 200, url
    for url in (
        f"/streams/{hidden.id}/snapshot.jpg",
        f"/streams/{hidden.id}/snapshots/{theirs.id}.jpg",
        f"/streams/{hidden.id}/snapshots/{theirs.id}/thumb.jpg",
        f"/streams/{granted.id}/snapshots/{theirs.id}.jpg",
        f"/streams/{granted.id}/snapshots/{theirs.id}/thumb.jpg",
        f"/streams/{hidden.id}/history?before=20261124T000000.000000Z_1",
        f"/streams/{hidden.id}/status",
    ):
        assert viewer.get(url).status_code == 404, url
    assert not stored_path(app, thumbnail_key(theirs.storage_key)).exists()
