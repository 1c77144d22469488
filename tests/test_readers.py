"""Persistent readers against the real RTSP server: frames into Redis, the hub's bookkeeping,
and the capture job taking a reader's frame (or falling back with the real error)."""

from __future__ import annotations

import io
import subprocess
import time

import pytest
from PIL import Image

from glimpser import times
from glimpser.capture import readers, scheduling
from glimpser.capture.readers import ReaderHub
from glimpser.db import database
from glimpser.models import Stream
from tests.conftest import run_queued_jobs

pytestmark = pytest.mark.slow


def rtsp_stream(url: str, name: str = "cam", interval: int = 2, **extra) -> Stream:
    with database.connection_context():
        return Stream.create(
            name=name,
            kind="rtsp",
            interval=interval,
            config={
                "kind": "rtsp",
                "url": url,
                "transport": "tcp",
                "timeout": 10,
                "username": "",
                "password": "",
            },
            next_due_at=times.utcnow(),
            **extra,
        )


def wait_for_frame(redis, stream_id: int, timeout: float = 15) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = readers.latest_frame(redis, stream_id, max_age=5)
        if frame:
            return frame
        time.sleep(0.1)
    raise AssertionError("no frame from the reader")


def reader_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "image2pipe"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


@pytest.fixture
def hub(capture_app):
    settings = capture_app.extensions["glimpser.settings"]
    hub = ReaderHub(settings, capture_app.extensions["glimpser.redis"])
    yield hub
    hub.close()


def test_the_hub_runs_readers_for_short_interval_rtsp_streams_only(hub, capture_app, rtsp):
    redis = capture_app.extensions["glimpser.redis"]
    short = rtsp_stream(f"{rtsp.url}/test", "short", interval=2)
    rtsp_stream(f"{rtsp.url}/test", "long", interval=600)
    rtsp_stream(f"{rtsp.url}/test", "paused", interval=2, enabled=False)
    with database.connection_context():
        hub.reconcile()
    assert set(hub.readers) == {short.id}
    frame = wait_for_frame(redis, short.id)
    assert Image.open(io.BytesIO(frame)).size == (320, 240)
    pid = hub.readers[short.id].proc.pid
    # Paused: the reader stops and its ffmpeg is gone.
    with database.connection_context():
        Stream.update(enabled=False).where(Stream.id == short.id).execute()
        hub.reconcile()
    assert hub.readers == {}
    assert pid not in reader_pids()


def test_an_edited_stream_gets_a_new_reader(hub, capture_app, rtsp):
    stream = rtsp_stream(f"{rtsp.url}/test")
    with database.connection_context():
        hub.reconcile()
        first = hub.readers[stream.id]
        config = dict(stream.config, url=f"{rtsp.url}/still")
        Stream.update(config=config).where(Stream.id == stream.id).execute()
        hub.reconcile()
    assert hub.readers[stream.id] is not first and not first.alive()


def test_a_failing_reader_backs_off_and_the_capture_reports_the_real_error(hub, capture_app, rtsp):
    redis = capture_app.extensions["glimpser.redis"]
    stream = rtsp_stream(f"{rtsp.url}/nope")
    with database.connection_context():
        hub.reconcile()
        reader = hub.readers[stream.id]
        reader.proc.wait(timeout=15)
        hub.reconcile()  # notices the exit, backs off instead of restarting at once
    assert stream.id not in hub.readers and hub._failures[stream.id] == 1
    with database.connection_context():
        scheduling.enqueue_capture(redis, stream)
    run_queued_jobs(capture_app)
    with database.connection_context():
        fresh = Stream.get_by_id(stream.id)
    assert fresh.state == "failing" and "404" in fresh.last_error


def test_the_capture_job_takes_the_readers_frame(hub, capture_app, rtsp):
    redis = capture_app.extensions["glimpser.redis"]
    stream = rtsp_stream(f"{rtsp.url}/test")
    with database.connection_context():
        hub.reconcile()
    wait_for_frame(redis, stream.id)
    from glimpser.capture.run import run_capture

    settings = capture_app.extensions["glimpser.settings"]
    with database.connection_context():
        outcome = run_capture(stream.id, settings, connection=redis)
    # The frame came from Redis: no ffmpeg start-up, no RTSP handshake.
    assert outcome.ok and outcome.via == "reader" and outcome.stored


def test_without_a_fresh_frame_the_capture_grabs_directly(capture_app, rtsp):
    redis = capture_app.extensions["glimpser.redis"]
    stream = rtsp_stream(f"{rtsp.url}/test")
    from glimpser.capture.run import run_capture

    with database.connection_context():
        outcome = run_capture(
            stream.id, capture_app.extensions["glimpser.settings"], connection=redis
        )
    assert outcome.ok and outcome.via == "direct"
