"""Fault injection: an RTSP camera that hangs mid-stream (it stops sending, the connection stays
open). The real `glimpser readers` process keeps a persistent reader on it; the reader must
notice that no frame comes any more and start over. Figures: docs/reliability.md."""

from __future__ import annotations

import time

import pytest

from glimpser import times
from glimpser.capture import readers
from glimpser.db import database
from glimpser.models import Stream
from tests.faults_support import FreezingProxy, sqlite_env, start_glimpser, stop, wait_until

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("trickle", [True, False], ids=["trickling", "silent"])
def test_a_camera_that_hangs_mid_stream_gets_its_reader_restarted(
    tmp_path, redis_url, redis_client, rtsp, trickle
):
    proxy = FreezingProxy(("127.0.0.1", rtsp.port))
    env = sqlite_env(tmp_path, redis_url)
    with database.connection_context():
        stream = Stream.create(
            name="Hanging camera",
            kind="rtsp",
            interval=2,
            config={
                "kind": "rtsp",
                "url": f"rtsp://127.0.0.1:{proxy.port}/test",
                "transport": "tcp",
                "timeout": 5,
                "username": "",
                "password": "",
            },
            next_due_at=times.utcnow(),
        )

    def frame_at() -> float | None:
        at = redis_client.hget(readers.frame_key(stream.id), "at")
        return float(at) if at else None

    procs = [start_glimpser(["readers"], env, tmp_path / "logs")]
    try:
        wait_until(frame_at, 60, "a first frame from the reader")
        connections = proxy.connections
        proxy.freeze(trickle)
        frozen_at = time.time()
        # The reader notices the silence and reconnects (a new connection to the camera),
        # and frames flow again. 60 s: a hang guard, not a performance threshold.
        wait_until(lambda: (frame_at() or 0) > frozen_at + 1, 60, "frames after the hang")
        resumed = frame_at() - frozen_at
        assert proxy.connections > connections
        assert procs[0].poll() is None  # the readers process itself kept running
    finally:
        stop(procs)
        proxy.stop()
    how = "trickling" if trickle else "silent"
    print(f"\nFIGURE camera hangs mid-stream ({how}): frames again {resumed:.1f} s after")
