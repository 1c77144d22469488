"""Timelapses from real snapshots: built by a real RQ worker with ffmpeg, checked with ffprobe,
extended incrementally, served with Range support, guarded per stream, pruned by retention."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from glimpser import jobs, times
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.media.snapshots import save_snapshot
from glimpser.media.storage import get_storage
from glimpser.media.timelapse import Frame as TimelapseFrame
from glimpser.media.timelapse import (
    TimelapseError,
    delete_stream_timelapses,
    encode_frames,
    prune_timelapses,
)
from glimpser.models import AuditLog, Snapshot, Stream, StreamAccess, Timelapse
from glimpser.sources.base import Frame
from tests.conftest import run_queued_jobs
from tests.helpers import csrf_from, login, setup_admin

# S3 on moto's real HTTP server, as the storage tests run it (ask: move these to conftest.py).
from tests.test_storage import aws_env, moto_endpoint, s3_bucket  # noqa: F401

PASSWORD = "correct horse battery"
HTMX = {"HX-Request": "true"}
# Far apart, so that a decoded frame's colour says which snapshot it came from.
COLOURS = [
    (220, 30, 30),
    (30, 200, 30),
    (30, 30, 220),
    (220, 220, 30),
    (30, 220, 220),
    (220, 30, 220),
    (240, 240, 240),
    (20, 20, 20),
    (240, 140, 20),
    (120, 60, 200),
]


@pytest.fixture
def tl_app(app_factory):
    app = app_factory()
    jobs.configure(app.extensions["glimpser.settings"])
    yield app
    jobs.configure(None)


@pytest.fixture
def db_tl_app(app_factory, database_url):
    """The same, on SQLite and on PostgreSQL."""
    app = app_factory(database_url)
    jobs.configure(app.extensions["glimpser.settings"])
    yield app
    jobs.configure(None)


def signed_in_admin(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def make_stream(name: str) -> Stream:
    with database.connection_context():
        return Stream.create(
            name=name,
            kind="http_image",
            config={"kind": "http_image", "url": "http://192.168.1.50/snapshot.jpg"},
            enabled=False,
            state="paused",
        )


def picture(i: int, size: tuple[int, int] = (321, 241)) -> bytes:
    """A distinct JPEG per index: a solid colour (odd size, to exercise the even scaling)."""
    image = Image.new("RGB", size, COLOURS[i % len(COLOURS)])
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def add_snapshots(app, stream: Stream, first: int, count: int, start) -> list:
    """Save snapshots first..first+count-1, ten seconds apart from start + 10 s * first."""
    storage = get_storage(app.extensions["glimpser.settings"])
    times_saved = []
    with database.connection_context():
        for i in range(first, first + count):
            at = start + timedelta(seconds=10 * i)
            frame = Frame(jpeg=picture(i), width=321, height=241)
            assert save_snapshot(stream, frame, at, storage, store_identical=True) is not None
            times_saved.append(at)
    return times_saved


def local(at) -> str:
    """A UTC time as a datetime-local field sends it."""
    return at.strftime("%Y-%m-%dT%H:%M:%S")


def post_build(client, stream_id: int, htmx: bool = True, **fields):
    token = csrf_from(client.get(f"/streams/{stream_id}/timelapses").get_data(as_text=True))
    headers = {"X-CSRFToken": token, **(HTMX if htmx else {})}
    data = {"preset": "custom", "fps": "10", **fields}
    return client.post(f"/streams/{stream_id}/timelapses", data=data, headers=headers)


def build_now(app, client, stream_id: int, **fields) -> Timelapse:
    response = post_build(client, stream_id, **fields)
    assert response.status_code == 200, response.get_data(as_text=True)
    timelapse_id = int(re.search(r'id="timelapse-(\d+)"', response.get_data(as_text=True))[1])
    run_queued_jobs(app, ("maintenance",))
    with database.connection_context():
        return Timelapse.get_by_id(timelapse_id)


def video_path(app, timelapse: Timelapse) -> Path:
    return Path(app.extensions["glimpser.settings"].snapshot_dir, timelapse.storage_key)


def probe(path: Path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,pix_fmt,width,height,nb_read_frames:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    info = json.loads(out)
    stream = info["streams"][0]
    return {
        "codec": stream["codec_name"],
        "pix_fmt": stream["pix_fmt"],
        "size": (stream["width"], stream["height"]),
        "frames": int(stream["nb_read_frames"]),
        "duration": float(info["format"]["duration"]),
    }


def frame_colour(path: Path, index: int) -> tuple[int, int, int]:
    """The average colour of one decoded frame of the video."""
    png = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(path),
            "-vf",
            f"select=eq(n\\,{index})",
            "-frames:v",
            "1",
            "-f",
            "image2pipe",
            "-c:v",
            "png",
            "pipe:1",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    image = Image.open(io.BytesIO(png)).convert("RGB").resize((1, 1), Image.Resampling.BOX)
    return image.getpixel((0, 0))


def close(colour: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 40 for a, b in zip(colour, expected, strict=True))


def test_build_makes_an_h264_mp4_of_the_range(db_tl_app):
    admin = signed_in_admin(db_tl_app)
    stream = make_stream("Yard")
    start = times.utcnow().replace(microsecond=0) - timedelta(minutes=30)
    saved = add_snapshots(db_tl_app, stream, 0, 10, start)
    add_snapshots(db_tl_app, stream, 10, 3, start + timedelta(minutes=5))  # after the range

    response = post_build(admin, stream.id, start=local(saved[0]), end=local(saved[-1]))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in html and "Waiting for a worker" in html
    poll = re.search(r'hx-get="([^"]+)"', html)[1]
    assert "Waiting for a worker" in admin.get(poll, headers=HTMX).get_data(as_text=True)

    run_queued_jobs(db_tl_app, ("maintenance",))
    done = admin.get(poll, headers=HTMX).get_data(as_text=True)
    assert "<video" in done and 'hx-trigger="every 1s"' not in done
    assert "Download MP4" in done and "10 frames" in done, done
    with database.connection_context():
        timelapse = Timelapse.get()
    assert (timelapse.status, timelapse.progress, timelapse.frames) == ("done", 100, 10)
    assert timelapse.storage_key == f"timelapses/{stream.id}/{timelapse.id}.mp4"
    assert timelapse.reused_frames == 0 and timelapse.reused_from is None
    path = video_path(db_tl_app, timelapse)
    info = probe(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["frames"] == 10 and info["size"] == (320, 240)
    assert info["duration"] == pytest.approx(10 / 10, abs=0.05)
    assert timelapse.bytes == path.stat().st_size
    for i in (0, 4, 9):
        assert close(frame_colour(path, i), COLOURS[i]), i

    # The MP4 itself: whole, a byte range (browsers seek with these), and as a download.
    url = f"/streams/{stream.id}/timelapses/{timelapse.id}.mp4"
    whole = admin.get(url)
    assert whole.status_code == 200 and whole.mimetype == "video/mp4"
    assert whole.data == path.read_bytes()
    part = admin.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == path.read_bytes()[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{timelapse.bytes}"
    download = admin.get(url + "?download=1")
    assert download.headers["Content-Disposition"].startswith("attachment")
    listing = admin.get(f"/streams/{stream.id}/timelapses").get_data(as_text=True)
    assert "<video" in listing and url in listing


def test_a_longer_range_extends_the_earlier_timelapse(db_tl_app):
    admin = signed_in_admin(db_tl_app)
    stream = make_stream("Harbour")
    start = times.utcnow().replace(microsecond=0) - timedelta(hours=1)
    saved = add_snapshots(db_tl_app, stream, 0, 6, start)
    first = build_now(db_tl_app, admin, stream.id, start=local(start), end=local(saved[-1]))
    assert (first.status, first.frames, first.reused_frames) == ("done", 6, 0)

    saved += add_snapshots(db_tl_app, stream, 6, 4, start)
    longer = build_now(db_tl_app, admin, stream.id, start=local(start), end=local(saved[-1]))
    assert longer.status == "done", longer.error
    assert longer.reused_from_id == first.id and longer.reused_frames == 6
    assert longer.frames == 10 and longer.progress == 100
    path = video_path(db_tl_app, longer)
    info = probe(path)
    assert info["codec"] == "h264" and info["frames"] == 10
    assert info["duration"] == pytest.approx(10 / 10, abs=0.05)
    for i in range(10):  # every frame in order: the reused ones, then the new ones
        assert close(frame_colour(path, i), COLOURS[i]), i
    assert "6 frames reused" in admin.get(f"/streams/{stream.id}/timelapses").get_data(as_text=True)

    # Another fps cannot reuse it: encoded from scratch.
    other = build_now(
        db_tl_app, admin, stream.id, start=local(start), end=local(saved[-1]), fps="5"
    )
    assert (other.status, other.frames, other.reused_frames) == ("done", 10, 0)
    assert probe(video_path(db_tl_app, other))["duration"] == pytest.approx(2.0, abs=0.05)


def test_a_range_that_does_not_start_with_the_earlier_frames_is_built_afresh(tl_app):
    admin = signed_in_admin(tl_app)
    stream = make_stream("Street")
    start = times.utcnow().replace(microsecond=0) - timedelta(hours=1)
    saved = add_snapshots(tl_app, stream, 0, 8, start)
    build_now(tl_app, admin, stream.id, start=local(saved[2]), end=local(saved[5]))
    wider = build_now(tl_app, admin, stream.id, start=local(start), end=local(saved[-1]))
    assert (wider.status, wider.frames, wider.reused_frames) == ("done", 8, 0)
    assert probe(video_path(tl_app, wider))["frames"] == 8


def test_an_empty_range_fails_with_a_clear_message(tl_app):
    admin = signed_in_admin(tl_app)
    stream = make_stream("Empty")
    start = times.utcnow().replace(microsecond=0) - timedelta(days=3)
    timelapse = build_now(
        tl_app, admin, stream.id, start=local(start), end=local(start + timedelta(hours=1))
    )
    assert timelapse.status == "failed" and timelapse.storage_key is None
    assert "no snapshots of this stream between" in timelapse.error
    fragment = admin.get(f"/streams/{stream.id}/timelapses/{timelapse.id}", headers=HTMX).get_data(
        as_text=True
    )
    assert 'role="alert"' in fragment and "no snapshots of this stream" in fragment
    assert admin.get(f"/streams/{stream.id}/timelapses/{timelapse.id}.mp4").status_code == 404


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start": "2026-01-02T10:00", "end": "2026-01-01T10:00"}, "end must be after the start"),
        ({"start": "yesterday", "end": "2026-01-01T10:00"}, "Enter the start"),
        ({"start": "0001-01-01T00:00+01:00", "end": "2026-01-01T10:00"}, "Enter the start"),
        ({"preset": "forever"}, "Choose a time range"),
        ({"preset": "hour", "fps": "7"}, "Choose one of 5, 10, 24, 30 fps"),
        ({"preset": "hour", "fps": "abc"}, "Choose one of"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_writes_nothing(tl_app, fields, message):
    admin = signed_in_admin(tl_app)
    stream = make_stream("Cam")
    for htmx in (True, False):
        response = post_build(admin, stream.id, htmx=htmx, **fields)
        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert message in html and 'aria-invalid="true"' in html
        if htmx:
            assert response.headers["HX-Retarget"] == "#timelapse-form"
    with database.connection_context():
        assert Timelapse.select().count() == 0


def test_presets_cover_the_last_hour(tl_app):
    admin = signed_in_admin(tl_app)
    stream = make_stream("Preset")
    add_snapshots(tl_app, stream, 0, 3, times.utcnow() - timedelta(minutes=20))
    add_snapshots(tl_app, stream, 0, 2, times.utcnow() - timedelta(hours=3))
    timelapse = build_now(tl_app, admin, stream.id, preset="hour")
    assert (timelapse.status, timelapse.frames) == ("done", 3)
    assert timelapse.range_end - timelapse.range_start == timedelta(hours=1)


def test_viewers_only_reach_timelapses_of_granted_streams(tl_app):
    admin = signed_in_admin(tl_app)
    granted, hidden = make_stream("Granted"), make_stream("Hidden")
    start = times.utcnow().replace(microsecond=0) - timedelta(minutes=30)
    for stream in (granted, hidden):
        add_snapshots(tl_app, stream, 0, 3, start)
    end = local(start + timedelta(minutes=1))
    shown = build_now(tl_app, admin, granted.id, start=local(start), end=end)
    secret = build_now(tl_app, admin, hidden.id, start=local(start), end=end)
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=granted.id)
    viewer = tl_app.test_client()
    login(viewer, "bob", PASSWORD)
    token = csrf_from(viewer.get("/").get_data(as_text=True))

    for url in (
        f"/streams/{hidden.id}/timelapses",
        f"/streams/{hidden.id}/timelapses/{secret.id}",
        f"/streams/{hidden.id}/timelapses/{secret.id}.mp4",
        f"/streams/{granted.id}/timelapses/{secret.id}.mp4",  # another stream's timelapse
        f"/streams/{granted.id}/timelapses/{secret.id}",
    ):
        assert viewer.get(url, headers=HTMX).status_code == 404, url
    refused = viewer.post(
        f"/streams/{hidden.id}/timelapses",
        data={"preset": "hour", "fps": "10"},
        headers={"X-CSRFToken": token, **HTMX},
    )
    assert refused.status_code == 404

    panel = viewer.get(f"/streams/{granted.id}/timelapses", headers=HTMX).get_data(as_text=True)
    assert "<video" in panel and "Build timelapse" in panel and "Delete" not in panel
    assert viewer.get(f"/streams/{granted.id}/timelapses/{shown.id}.mp4").status_code == 200
    built = viewer.post(
        f"/streams/{granted.id}/timelapses",
        data={"preset": "hour", "fps": "10"},
        headers={"X-CSRFToken": token, **HTMX},
    )
    assert built.status_code == 200 and "Waiting for a worker" in built.get_data(as_text=True)
    deleting = viewer.post(
        f"/streams/{granted.id}/timelapses/{shown.id}/delete", headers={"X-CSRFToken": token}
    )
    assert deleting.status_code == 403
    with database.connection_context():
        assert Timelapse.select().where(Timelapse.stream == hidden.id).count() == 1
        assert Timelapse.get_by_id(shown.id).status == "done"


def test_pending_builds_per_user_are_capped(tl_app):
    admin = signed_in_admin(tl_app)
    stream = make_stream("Busy")
    for _ in range(3):
        assert post_build(admin, stream.id, preset="hour").status_code == 200
    refused = post_build(admin, stream.id, preset="hour")
    assert refused.status_code == 429 and "wait for one to finish" in refused.get_data(as_text=True)


def test_admin_deletes_a_timelapse_file_and_row(tl_app):
    admin = signed_in_admin(tl_app)
    stream = make_stream("Delete me")
    start = times.utcnow().replace(microsecond=0) - timedelta(minutes=30)
    add_snapshots(tl_app, stream, 0, 3, start)
    timelapse = build_now(
        tl_app, admin, stream.id, start=local(start), end=local(start + timedelta(minutes=1))
    )
    path = video_path(tl_app, timelapse)
    assert path.is_file()
    token = csrf_from(admin.get(f"/streams/{stream.id}/timelapses").get_data(as_text=True))
    response = admin.post(
        f"/streams/{stream.id}/timelapses/{timelapse.id}/delete",
        headers={"X-CSRFToken": token, **HTMX},
    )
    assert response.status_code == 200 and response.get_data(as_text=True) == ""
    assert not path.exists()
    with database.connection_context():
        assert not Timelapse.select().exists()
        assert AuditLog.get(AuditLog.action == "timelapse.delete").target == f"stream:{stream.id}"
        assert Snapshot.select().count() == 3  # the snapshots stay


def test_retention_prunes_old_timelapses_with_their_files(tl_app):
    admin = signed_in_admin(tl_app)
    stream = make_stream("Old")
    start = times.utcnow().replace(microsecond=0) - timedelta(minutes=30)
    add_snapshots(tl_app, stream, 0, 3, start)
    end = local(start + timedelta(minutes=1))
    old = build_now(tl_app, admin, stream.id, start=local(start), end=end)
    new = build_now(tl_app, admin, stream.id, start=local(start), end=end)
    settings = tl_app.extensions["glimpser.settings"]
    assert settings.timelapse_retention_days == 30
    with database.connection_context():
        Timelapse.update(created_at=times.utcnow() - timedelta(days=31)).where(
            Timelapse.id == old.id
        ).execute()
    storage = get_storage(settings)
    with database.connection_context():
        keep = dataclasses.replace(settings, timelapse_retention_days=0)
        assert prune_timelapses(keep, storage)["deleted"] == 0
    assert video_path(tl_app, old).is_file()

    assert jobs.prune_timelapses()["deleted"] == 1  # the daily job, with the app's settings
    assert not video_path(tl_app, old).exists() and video_path(tl_app, new).is_file()
    with database.connection_context():
        assert [t.id for t in Timelapse.select()] == [new.id]


def test_a_build_left_running_by_a_vanished_worker_is_marked_failed(tl_app):
    stream = make_stream("Stale")
    with database.connection_context():
        stale = Timelapse.create(
            stream=stream.id,
            range_start=times.utcnow() - timedelta(hours=2),
            range_end=times.utcnow() - timedelta(hours=1),
            status="running",
            created_at=times.utcnow() - timedelta(hours=3),
        )
    assert jobs.prune_timelapses()["interrupted"] == 1
    with database.connection_context():
        row = Timelapse.get_by_id(stale.id)
    assert row.status == "failed" and "interrupted" in row.error


def test_deleting_a_stream_removes_its_timelapse_files(tl_app):
    admin = signed_in_admin(tl_app)
    stream = make_stream("Gone")
    start = times.utcnow().replace(microsecond=0) - timedelta(minutes=30)
    add_snapshots(tl_app, stream, 0, 3, start)
    timelapse = build_now(
        tl_app, admin, stream.id, start=local(start), end=local(start + timedelta(minutes=1))
    )
    path = video_path(tl_app, timelapse)
    storage = get_storage(tl_app.extensions["glimpser.settings"])
    with database.connection_context():
        assert delete_stream_timelapses(stream, storage) == 1
        assert not Timelapse.select().exists()
    assert not path.exists()


def test_a_timelapse_deleted_during_its_build_leaves_no_file(tl_app):
    admin = signed_in_admin(tl_app)
    stream = make_stream("Race")
    start = times.utcnow().replace(microsecond=0) - timedelta(minutes=30)
    add_snapshots(tl_app, stream, 0, 3, start)
    response = post_build(
        admin, stream.id, start=local(start), end=local(start + timedelta(minutes=1))
    )
    timelapse_id = int(re.search(r'id="timelapse-(\d+)"', response.get_data(as_text=True))[1])
    token = csrf_from(admin.get(f"/streams/{stream.id}/timelapses").get_data(as_text=True))
    admin.post(
        f"/streams/{stream.id}/timelapses/{timelapse_id}/delete", headers={"X-CSRFToken": token}
    )
    run_queued_jobs(tl_app, ("maintenance",))
    root = Path(tl_app.extensions["glimpser.settings"].snapshot_dir, "timelapses")
    assert not root.exists() or not any(root.rglob("*.mp4"))


def test_frames_whose_files_are_gone_are_skipped_and_none_left_fails(tl_app):
    admin = signed_in_admin(tl_app)
    stream = make_stream("Vanishing")
    start = times.utcnow().replace(microsecond=0) - timedelta(minutes=30)
    saved = add_snapshots(tl_app, stream, 0, 4, start)
    storage = get_storage(tl_app.extensions["glimpser.settings"])
    with database.connection_context():
        keys = [s.storage_key for s in Snapshot.select().order_by(Snapshot.captured_at)]
    storage.delete(keys[1])  # as if retention removed it while the build ran
    partial = build_now(tl_app, admin, stream.id, start=local(start), end=local(saved[-1]))
    assert (partial.status, partial.frames) == ("done", 3)
    assert probe(video_path(tl_app, partial))["frames"] == 3
    for key in keys:
        storage.delete(key)
    none = build_now(tl_app, admin, stream.id, start=local(start), end=local(saved[-1]))
    assert none.status == "failed" and "could be read" in none.error


def test_ffmpeg_is_killed_at_the_deadline(tl_app, tmp_path):
    stream = make_stream("Slow")
    start = times.utcnow().replace(microsecond=0) - timedelta(minutes=30)
    add_snapshots(tl_app, stream, 0, 10, start)
    storage = get_storage(tl_app.extensions["glimpser.settings"])
    with database.connection_context():
        frames = [
            TimelapseFrame(s.id, s.captured_at, s.storage_key, s.width, s.height)
            for s in Snapshot.select().order_by(Snapshot.captured_at)
        ]
    with pytest.raises(TimelapseError, match="took longer than"):
        # A deadline already past: the watchdog kills ffmpeg before it can finish.
        encode_frames(frames * 20, tmp_path / "out.mp4", (320, 240), 10, storage, 0.0)
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    names = [Path(f"/proc/{pid}/comm").read_text().strip() for pid in children]
    assert "ffmpeg" not in names


def test_the_panel_labels_every_control_and_has_no_inline_code(tl_app):
    admin = signed_in_admin(tl_app)
    stream = make_stream("Labels")
    post_build(admin, stream.id, preset="hour")  # a queued item with its progress bar
    for headers in ({}, HTMX):
        html = admin.get(f"/streams/{stream.id}/timelapses", headers=headers).get_data(as_text=True)
        labels = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', html))
        for attrs in re.findall(r"<(?:input|select|textarea|progress)\b([^>]*)>", html):
            if 'type="hidden"' not in attrs:
                assert re.search(r'\bid="([^"]+)"', attrs)[1] in labels, attrs
        assert "Start (UTC)" in html and "End (UTC)" in html
        assert not re.search(r"\sstyle=|\son[a-z]+=|<script(?![^>]*\bsrc=)", html)
    fragment = admin.get(f"/streams/{stream.id}/timelapses", headers=HTMX).get_data(as_text=True)
    assert "<html" not in fragment and 'id="timelapses"' in fragment


def test_on_s3_storage_the_build_extends_and_serves_ranges(
    app_factory,
    moto_endpoint,  # noqa: F811
    s3_bucket,  # noqa: F811
):
    app = app_factory(
        GLIMPSER_STORAGE="s3",
        GLIMPSER_S3_BUCKET=s3_bucket,
        GLIMPSER_S3_ENDPOINT_URL=moto_endpoint,
        GLIMPSER_S3_REGION="us-east-1",
    )
    jobs.configure(app.extensions["glimpser.settings"])
    try:
        admin = signed_in_admin(app)
        stream = make_stream("Bucket")
        start = times.utcnow().replace(microsecond=0) - timedelta(minutes=30)
        saved = add_snapshots(app, stream, 0, 4, start)
        first = build_now(app, admin, stream.id, start=local(start), end=local(saved[-1]))
        saved += add_snapshots(app, stream, 4, 3, start)
        longer = build_now(app, admin, stream.id, start=local(start), end=local(saved[-1]))
    finally:
        jobs.configure(None)
    assert first.status == "done" and longer.status == "done", longer.error
    assert (longer.frames, longer.reused_from_id, longer.reused_frames) == (7, first.id, 4)
    storage = get_storage(app.extensions["glimpser.settings"])
    data = storage.get(longer.storage_key)
    url = f"/streams/{stream.id}/timelapses/{longer.id}.mp4"
    whole = admin.get(url)
    assert whole.status_code == 200 and whole.data == data and whole.mimetype == "video/mp4"
    part = admin.get(url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.data == data[:100]
    assert admin.get(url + "?download=1").headers["Content-Disposition"].startswith("attachment")
    with database.connection_context():
        assert delete_stream_timelapses(stream, storage) == 2
    assert not storage.exists(longer.storage_key) and not storage.exists(first.storage_key)
