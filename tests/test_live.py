"""The live view against real components: the GStreamer RTSP camera, the reader hub (in a
thread, or `glimpser readers` as a process), Redis pub/sub, and the web app (Flask test
client, or gunicorn for the tests that need real sockets)."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from glimpser import jobs, times
from glimpser.auth.users import create_user
from glimpser.capture import live, scheduling
from glimpser.capture.readers import ReaderHub
from glimpser.db import database
from glimpser.media.imaging import split_jpegs
from glimpser.models import Stream, StreamAccess
from tests.conftest import ROOT, run_queued_jobs, start_live_server, stop_process
from tests.helpers import csrf_from, login, setup_admin
from tests.media_servers import jpeg

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
PART = re.compile(
    rb"--"
    + live.BOUNDARY.encode()
    + rb"\r\nContent-Type: image/jpeg\r\nContent-Length: (\d+)\r\n\r\n"
)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def live_app(app_factory, media_root: Path):
    app = app_factory(
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_MEDIA_DIR=str(media_root),
        GLIMPSER_LIVE_IDLE_SECONDS="1",
        GLIMPSER_LIVE_FPS="5",
    )
    jobs.configure(app.extensions["glimpser.settings"])
    yield app
    jobs.configure(None)


@pytest.fixture
def hub(live_app):
    """The readers process's loop, in a thread of this process."""
    hub = ReaderHub(live_app.extensions["glimpser.settings"], live_app.extensions["glimpser.redis"])
    thread = threading.Thread(target=hub.run, daemon=True)
    thread.start()
    yield hub
    hub.stopping = True
    thread.join(timeout=20)


@pytest.fixture
def admin(live_app):
    client = live_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def make_stream(name: str, kind: str, config: dict, interval: int = 600) -> Stream:
    with database.connection_context():
        return Stream.create(
            name=name,
            kind=kind,
            interval=interval,
            config={"kind": kind, **config},
            next_due_at=times.utcnow(),
        )


def rtsp_stream(url: str, name: str = "cam", interval: int = 600) -> Stream:
    return make_stream(name, "rtsp", {"url": url, "transport": "tcp", "timeout": 10}, interval)


def read_parts(chunks, count: int) -> list[bytes]:
    """`count` multipart parts, each checked for its Content-Type and Content-Length."""
    buffer, parts = b"", []
    for chunk in chunks:
        buffer += chunk
        if not parts:
            buffer = buffer.lstrip(b"\r\n")  # the preamble sent before the first frame
        while True:
            match = PART.match(buffer)
            if not match:
                assert len(buffer) < 200 or buffer.startswith(b"--"), buffer[:200]
                break
            length = int(match.group(1))
            end = match.end() + length
            if len(buffer) < end + 2:
                break
            parts.append(buffer[match.end() : end])
            assert buffer[end : end + 2] == b"\r\n"
            buffer = buffer[end + 2 :]
            if len(parts) == count:
                return parts
    raise AssertionError(f"the feed ended after {len(parts)} parts")


def open_feed(client, stream_id: int):
    response = client.get(f"/streams/{stream_id}/live.mjpg", buffered=False)
    assert response.status_code == 200
    return response


def ffmpeg_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-x", "ffmpeg"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def wait_until(predicate, timeout: float = 30, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(step)


# --- the feed -------------------------------------------------------------------------------


def test_the_feed_sends_distinct_jpeg_parts_from_the_rtsp_camera(admin, hub, rtsp):
    stream = rtsp_stream(f"{rtsp.url}/test")
    response = open_feed(admin, stream.id)
    try:
        assert response.mimetype == "multipart/x-mixed-replace"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Accel-Buffering"] == "no"
        # 10 parts: under load the feed may resend the newest frame (keep-alive) in between
        parts = read_parts(response.response, 10)
    finally:
        response.close()
    for data in parts:
        assert Image.open(io.BytesIO(data)).size == (320, 240)
    assert len(set(parts)) >= 4  # the ball moves: new frames, not one frame repeated


def test_two_viewers_share_one_reader_which_stops_after_the_last_leaves(admin, hub, live_app, rtsp):
    redis = live_app.extensions["glimpser.redis"]
    stream = rtsp_stream(f"{rtsp.url}/test")
    first, second = open_feed(admin, stream.id), open_feed(admin, stream.id)
    try:
        read_parts(first.response, 2)
        read_parts(second.response, 2)
        assert live.viewer_count(redis, stream.id) == 2
        assert list(hub.readers) == [stream.id]
        assert len(ffmpeg_children(os.getpid())) == 1
        pid = hub.readers[stream.id].proc.pid
        first.close()
        read_parts(second.response, 3)  # the other viewer keeps watching
        assert live.viewer_count(redis, stream.id) == 1
    finally:
        first.close()
        second.close()
    assert live.viewer_count(redis, stream.id) == 0
    wait_until(lambda: stream.id not in hub.readers)  # GLIMPSER_LIVE_IDLE_SECONDS=1
    wait_until(lambda: pid not in ffmpeg_children(os.getpid()))


def test_a_snapshot_reader_is_sped_up_while_watched_never_doubled(admin, hub, live_app, rtsp):
    stream = rtsp_stream(f"{rtsp.url}/test", interval=2)  # has a snapshot reader
    wait_until(lambda: stream.id in hub.readers and hub.readers[stream.id].frames > 0)
    snapshot_reader = hub.readers[stream.id]
    response = open_feed(admin, stream.id)
    try:
        read_parts(response.response, 5)
        live_reader = hub.readers[stream.id]
        assert live_reader is not snapshot_reader and not snapshot_reader.alive()
        assert len(ffmpeg_children(os.getpid())) == 1
    finally:
        response.close()
    # Back to one slow snapshot reader once nobody watches.
    wait_until(lambda: hub.readers.get(stream.id) not in (None, live_reader))
    assert len(ffmpeg_children(os.getpid())) == 1


def test_the_live_page_shows_the_real_error_of_an_unreadable_stream(admin, hub, rtsp):
    stream = rtsp_stream(f"{rtsp.url}/nope", name="Broken")
    page = admin.get(f"/streams/{stream.id}/live").get_data(as_text=True)
    assert 'alt="Live view of Broken"' in page
    assert f'href="/streams/{stream.id}"' in page
    response = open_feed(admin, stream.id)  # someone watches: the hub tries to read it
    try:
        texts: list[str] = []

        def shows_error() -> bool:
            texts.append(admin.get(f"/streams/{stream.id}/live/status").get_data(as_text=True))
            return "cannot be read" in texts[-1]

        wait_until(shows_error, timeout=30, step=0.5)
        assert "404" in texts[-1]
    finally:
        response.close()


def test_viewers_watch_granted_streams_only(live_app, admin, hub, rtsp):
    granted = rtsp_stream(f"{rtsp.url}/test", name="Granted")
    hidden = rtsp_stream(f"{rtsp.url}/test", name="Hidden")
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=granted.id)
    viewer = live_app.test_client()
    login(viewer, "bob", PASSWORD)
    for url in (
        f"/streams/{hidden.id}/live",
        f"/streams/{hidden.id}/live.mjpg",
        f"/streams/{hidden.id}/live/status",
        "/streams/999999/live",
        "/streams/999999/live.mjpg",
    ):
        assert viewer.get(url).status_code == 404, url
    assert viewer.get(f"/streams/{granted.id}/live").status_code == 200
    response = open_feed(viewer, granted.id)
    try:
        assert len(read_parts(response.response, 2)) == 2
    finally:
        response.close()
    anonymous = live_app.test_client()
    assert anonymous.get(f"/streams/{granted.id}/live.mjpg").status_code == 302  # to sign-in


def test_snapshot_kinds_show_the_latest_snapshot_refreshing_itself(admin, live_app, camera):
    redis = live_app.extensions["glimpser.redis"]
    stream = make_stream(
        "Door", "http_image", {"url": f"{camera.url}/snapshot.jpg", "auth": "none"}
    )
    camera.state.picture = jpeg((200, 30, 30), label="first")
    with database.connection_context():
        scheduling.capture_now(redis, Stream.get_by_id(stream.id))
    run_queued_jobs(live_app)
    page = admin.get(f"/streams/{stream.id}/live").get_data(as_text=True)
    assert "live.mjpg" not in page
    assert re.search(
        rf'hx-get="/streams/{stream.id}/live/status"[^>]*hx-trigger="every \d+s"', page
    )
    first = re.search(r'src="(/streams/\d+/snapshots/\d+\.jpg)"', page).group(1)

    camera.state.picture = jpeg((30, 200, 30), label="second")
    with database.connection_context():
        scheduling.capture_now(redis, Stream.get_by_id(stream.id))
    run_queued_jobs(live_app)
    fragment = admin.get(
        f"/streams/{stream.id}/live/status", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert "<html" not in fragment and 'id="live-snapshot"' in fragment
    second = re.search(r'src="(/streams/\d+/snapshots/\d+\.jpg)"', fragment).group(1)
    assert second != first
    assert admin.get(second).data != admin.get(first).data
    assert admin.get(f"/streams/{stream.id}/live.mjpg").status_code == 404


# --- real sockets: gunicorn and `glimpser readers` as processes -----------------------------


class LiveStack:
    def __init__(self, tmp_path: Path, redis_url: str) -> None:
        self.server = start_live_server(
            tmp_path / "live-stack",
            redis_url,
            GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
            GLIMPSER_LIVE_IDLE_SECONDS="2",
            GLIMPSER_SECURE_COOKIES="0",  # plain http on loopback: requests sends the cookie
        )
        self.url = self.server.url
        self.readers = subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", "readers"],
            env=self.server.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        stop_process(self.readers)
        stop_process(self.server.proc)


@pytest.fixture
def live_stack_readers(tmp_path: Path, redis_url: str, redis_client):
    stack = LiveStack(tmp_path, redis_url)
    yield stack
    stack.stop()


def sign_up_and_add_rtsp(
    url: str, rtsp_url: str, name: str = "Yard"
) -> tuple[requests.Session, str]:
    """First-run setup and a new RTSP stream through the forms; returns the stream's page."""
    session = requests.Session()
    token = csrf_from(session.get(f"{url}/setup").text)
    session.post(
        f"{url}/setup",
        data={"csrf_token": token, "username": "alice", "password": PASSWORD, "confirm": PASSWORD},
    ).raise_for_status()
    token = csrf_from(session.get(f"{url}/streams/new").text)
    created = session.post(
        f"{url}/streams/new",
        data={
            "csrf_token": token,
            "kind": "rtsp",
            "name": name,
            "interval": "600",
            "enabled": "1",
            "config.url": rtsp_url,
            "config.transport": "tcp",
            "config.timeout": "10",
        },
    )
    assert re.search(r"/streams/\d+$", created.url), created.text[:500]
    return session, created.url


def test_a_stalled_viewer_does_not_hold_back_another(live_stack_readers, rtsp, redis_client):
    session, stream_url = sign_up_and_add_rtsp(live_stack_readers.url, f"{rtsp.url}/test")
    stream_id = int(stream_url.rsplit("/", 1)[1])
    host, port = live_stack_readers.url.removeprefix("http://").split(":")
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    # Viewer A: asks for the feed with a tiny receive buffer and never reads it.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((host, int(port)))
    stalled.sendall(
        f"GET /streams/{stream_id}/live.mjpg HTTP/1.1\r\nHost: {host}\r\n"
        f"Cookie: {cookie}\r\n\r\n".encode()
    )
    try:
        # Viewer B keeps getting fresh frames while A sits there.
        with session.get(f"{stream_url}/live.mjpg", stream=True, timeout=30) as feed:
            assert feed.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            chunks = iter(lambda: feed.raw.read1(65536), b"")
            frames = []
            for frame in split_jpegs(chunks):
                frames.append(frame)
                if len(frames) == 30:  # several seconds at GLIMPSER_LIVE_FPS=5
                    break
            assert len(set(frames)) >= 20
            assert live.viewer_count(redis_client, stream_id) == 2
            assert len(ffmpeg_children(live_stack_readers.readers.pid)) == 1
    finally:
        stalled.close()
    wait_until(lambda: live.viewer_count(redis_client, stream_id) == 0, timeout=30)
    wait_until(lambda: not ffmpeg_children(live_stack_readers.readers.pid), timeout=30)
