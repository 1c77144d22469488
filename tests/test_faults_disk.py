"""Fault injection: the snapshot disk fills up. The snapshot directory is a small tmpfs of its
own (mounted by the test, which runs as root in CI; skipped where mounting is not allowed),
filled to the last byte while the real worker and scheduler capture a stream. Captures must
fail cleanly (a clear status, no row without its file, no half-written file) and resume by
themselves when space returns. Figures: docs/reliability.md."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from glimpser import times
from glimpser.db import database
from glimpser.models import Event, Snapshot, Stream
from tests.faults_support import (
    SlowCamera,
    check_snapshot_files,
    sqlite_env,
    start_glimpser,
    still_camera_stream,
    stop,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs, unmounted again whatever happens."""
    mount_point = tmp_path / "snapshots"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has no byte left (unbuffered: nothing held back)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 1):  # big blocks, then the last bytes one by one
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_fails_captures_cleanly_and_they_resume_when_space_returns(
    tmp_path, redis_url, redis_client, small_disk
):
    camera = SlowCamera(delay=0)  # a different picture every time
    # The database is on another disk (tmp_path); only the snapshots are on the small one.
    env = sqlite_env(
        tmp_path,
        redis_url,
        GLIMPSER_SNAPSHOT_DIR=str(small_disk),
        GLIMPSER_BACKOFF_MAX_SECONDS="4",
    )
    with database.connection_context():
        stream = still_camera_stream(camera.url, "Yard")

    def status() -> Stream:
        with database.connection_context():
            return Stream.get_by_id(stream.id)

    def rows() -> list[Snapshot]:
        with database.connection_context():
            return list(Snapshot.select().where(Snapshot.stream == stream.id))

    procs = [start_glimpser([name], env, tmp_path / "logs") for name in ("scheduler", "worker")]
    try:
        wait_until(rows, 60, "a first snapshot")
        filler = fill(small_disk)
        full_at = times.utcnow()
        requests_before = len(camera.arrived)
        failing = wait_until(
            lambda: (s := status()).consecutive_failures >= 3 and s, 60, "failures on a full disk"
        )
        stored_while_full = [r for r in rows() if r.captured_at > full_at]
        requests_while_full = len(camera.arrived) - requests_before
        filler.unlink()
        freed_at = times.utcnow()
        resumed = wait_until(
            lambda: [r for r in rows() if r.captured_at > freed_at], 60, "a snapshot after"
        )
        time.sleep(0.5)
        after = status()
    finally:
        stop(procs)
        camera.stop()
    assert failing.state == "failing"
    assert "the disk is full" in failing.last_error, failing.last_error
    # At most a capture that was already past its write when the disk filled is stored.
    assert len(stored_while_full) <= 1
    check_snapshot_files(small_disk, rows())
    assert after.state == "ok" and after.last_error == "" and after.consecutive_failures == 0
    with database.connection_context():
        kinds = [e.kind for e in Event.select().where(Event.stream == stream.id).order_by(Event.id)]
    assert kinds == ["capture_failed", "capture_recovered"]
    seconds = (resumed[0].captured_at - freed_at).total_seconds()
    print(
        f"\nFIGURE disk full: {failing.consecutive_failures}+ failed captures "
        f"({requests_while_full} camera requests), last_error {failing.last_error!r}; "
        f"first snapshot {seconds:.1f} s after space returned"
    )
