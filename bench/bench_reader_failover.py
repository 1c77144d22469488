"""Readers failover benchmark (issue 15), written to docs/benchmarks.md.

Two `glimpser readers` processes share one Redis and one database with one RTSP stream
(interval 1 s, the 320×240 test camera). One holds the stream's lease and reads it; the other
stands by. The holder is then stopped, and we time how long the stream goes without a frame:

- `kill -9` (the process group, ffmpeg included: a host dying): nothing is released, so
  the stand-by waits for the lease to expire (LEASE_TTL_SECONDS), takes it on its next pass,
  starts ffmpeg and stores the first frame;
- SIGTERM (a clean stop, the floor measured in the same run): the holder stops its reader and
  releases its lease, so only the stand-by's next pass and ffmpeg's start remain.

Each repetition swaps the roles: the survivor holds, a fresh process stands by, and the
signal comes at a random moment of the processes' 2 s loops.
Timestamps are the frame's own `at` (time.time() in the reader) against the time just before
the signal; the lease holder is polled every 20 ms.

Run: `make bench` (or `.venv/bin/python bench/bench_reader_failover.py [--repeat N]`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results import markers, write_section  # noqa: E402

from glimpser import system_status  # noqa: E402
from glimpser.capture import leases, readers  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from tests.media_servers import RtspServer, make_media  # noqa: E402

MARK_BEGIN, MARK_END = markers("failover")
HANG_GUARD = 120.0  # seconds: ends a hung run, not a threshold


def wait_for(check, what: str, every: float = 0.02):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + HANG_GUARD
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_reader_failover: {what} did not happen")
        time.sleep(every)


class Cluster:
    """Redis, a database with one RTSP stream, and `glimpser readers` processes."""

    def __init__(self, rtsp_url: str) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="g-bench-failover-", dir="/tmp"))
        port = free_port()
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        self.redis = redis.Redis(port=port)
        wait_for(lambda: _pings(self.redis), "Redis start")
        self.env = {
            **os.environ,
            "GLIMPSER_DATA_DIR": str(self.data),
            "GLIMPSER_REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "GLIMPSER_ALLOW_LOOPBACK_SOURCES": "1",
            "GLIMPSER_LOG_LEVEL": "WARNING",
        }
        code = (
            "from glimpser.config import load_settings; from glimpser import db, times\n"
            "from glimpser.models import Stream\n"
            "db.init_database(load_settings().database_url); db.migrate()\n"
            "s = Stream.create(name='yard', kind='rtsp', interval=1, next_due_at=times.utcnow(),"
            f" config={{'kind': 'rtsp', 'url': '{rtsp_url}', 'transport': 'tcp', 'timeout': 10}})\n"
            "print(s.id)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=self.env, check=True, cwd=ROOT, capture_output=True
        )
        self.stream_id = int(out.stdout.split()[-1])
        self.procs: list[subprocess.Popen] = []

    def start_readers(self) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", "readers"],
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # kill -9 reaches its ffmpeg too
        )
        self.procs.append(proc)
        return proc

    def owner_of(self, proc: subprocess.Popen) -> str | None:
        """The lease owner id in proc's heartbeat, once it sent one."""
        for key in self.redis.scan_iter(match=f"{system_status.READERS_KEY_PREFIX}*"):
            raw = self.redis.get(key)
            if raw:
                data = json.loads(raw)
                if data["pid"] == proc.pid:
                    return data.get("owner") or None
        return None

    def holder(self) -> str | None:
        return leases.holder(self.redis, self.stream_id)

    def frame_at(self) -> float:
        at = self.redis.hget(readers.frame_key(self.stream_id), "at")
        return float(at) if at else 0.0

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.redis_proc.terminate()
        self.redis_proc.wait()
        shutil.rmtree(self.data, ignore_errors=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def handover(cluster: Cluster, holder: subprocess.Popen, how: str) -> dict:
    """Stop the holder (kill -9 or SIGTERM); seconds until the stand-by holds the lease and
    until its first frame. Returns the stand-by (the new holder) too."""
    standby = next(p for p in cluster.procs if p is not holder and p.poll() is None)
    standby_owner = wait_for(lambda: cluster.owner_of(standby), "the stand-by's heartbeat")
    holder_owner = wait_for(lambda: cluster.owner_of(holder), "the holder's heartbeat")
    wait_for(lambda: cluster.holder() == holder_owner, "the holder holding the lease")
    wait_for(lambda: cluster.frame_at() > time.time() - 2, "frames from the holder")
    # A random phase: otherwise the signal always comes right after the new stand-by's first
    # pass (the line above returns then) and every run measures the same point of the range.
    time.sleep(random.uniform(0, 2 * readers.RECONCILE_SECONDS))
    start = time.time()
    if how == "kill -9":
        os.killpg(holder.pid, signal.SIGKILL)
    else:
        holder.send_signal(signal.SIGTERM)
    wait_for(lambda: cluster.holder() == standby_owner, "the stand-by taking the lease")
    leased = time.time() - start
    # A clean stop stores frames until it releases the lease; the stand-by's come after it
    # took the lease (ffmpeg needs far longer than one 20 ms poll to start).
    after = start if how == "kill -9" else start + leased
    wait_for(lambda: cluster.frame_at() > after, "a frame from the stand-by")
    framed = cluster.frame_at() - start
    holder.wait(timeout=30)
    cluster.procs.remove(holder)
    return {"how": how, "lease": leased, "frame": framed, "new_holder": standby}


def run(repeat: int) -> list[dict]:
    media = Path(tempfile.mkdtemp(prefix="g-bench-failover-media-", dir="/tmp"))
    make_media(media)
    rtsp = RtspServer(media / "test.mp4")
    cluster = Cluster(f"{rtsp.url}/test")
    results = []
    try:
        holder = cluster.start_readers()
        wait_for(lambda: cluster.owner_of(holder), "the first readers process")
        wait_for(lambda: cluster.holder() is not None, "the first lease")
        cluster.start_readers()
        for n in range(repeat * 2):
            how = "kill -9" if n % 2 == 0 else "SIGTERM"
            result = handover(cluster, holder, how)
            print(
                f"{how}: lease after {result['lease']:.2f} s, frame after {result['frame']:.2f} s",
                flush=True,
            )
            results.append(result)
            holder = result["new_holder"]
            cluster.start_readers()  # the next stand-by
    finally:
        cluster.close()
        rtsp.stop()
        shutil.rmtree(media, ignore_errors=True)
    return results


def report(results: list[dict], load: float) -> str:
    def row(how: str) -> str:
        runs = [r for r in results if r["how"] == how]
        frames = sorted(r["frame"] for r in runs)
        lease = statistics.median(r["lease"] for r in runs)
        return (
            f"| {how} | {len(runs)} | {lease:.1f} s | {statistics.median(frames):.1f} s "
            f"| {frames[0]:.1f}–{frames[-1]:.1f} s |"
        )

    return "\n".join(
        [
            MARK_BEGIN,
            "## Readers failover (issue 15)",
            "",
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores "
            f"({platform.processor() or platform.machine()}), Python "
            f"{platform.python_version()}, by `bench/bench_reader_failover.py`. Two "
            "`glimpser readers` processes on one Redis and one SQLite database, one RTSP stream "
            "(the 320×240 test camera, interval 1 s): the process holding the stream's lease "
            "is stopped and the other takes over; each repetition swaps the roles. Seconds "
            "from the signal until the other process holds the lease, and until the stream's "
            "next frame (stored by the other process).",
            "",
            "| holder stopped by | runs | lease taken (median) | next frame (median) "
            "| next frame (min–max) |",
            "|---|---:|---:|---:|---:|",
            row("kill -9"),
            row("SIGTERM"),
            "",
            "After `kill -9` nothing is released: the lease expires "
            f"{leases.LEASE_TTL_SECONDS - leases.LEASE_RENEW_SECONDS:g}–"
            f"{leases.LEASE_TTL_SECONDS:g} s after the kill (TTL "
            f"{leases.LEASE_TTL_SECONDS:g} s, renewed every {leases.LEASE_RENEW_SECONDS:g} s), "
            "and the stand-by takes it on its next pass (every "
            f"{readers.RECONCILE_SECONDS:g} s): "
            f"{leases.LEASE_TTL_SECONDS - leases.LEASE_RENEW_SECONDS:g}–"
            f"{leases.LEASE_TTL_SECONDS + readers.RECONCILE_SECONDS:g} s; then ffmpeg starts "
            "and decodes to the first whole picture. On SIGTERM the holder notices the signal "
            f"when its wait for the next pass ends (up to {readers.RECONCILE_SECONDS:g} s), "
            "stops its reader and releases the lease, and the stand-by takes it on its next "
            "pass: that is the floor, without the TTL. Each signal comes at a random moment "
            "of the 2 s loops, so the runs sample these ranges. A shorter TTL would shorten "
            "the wait after a crash; it is also how long a stalled readers process (a loaded "
            "host, a slow Redis) keeps its streams before another takes them.",
            "",
            f"Load average when the run started: {load:.2f}.",
            MARK_END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="handovers of each kind")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results = run(args.repeat)
    write_section("failover", report(results, load))
    print(f"written to {Path('docs/benchmarks.md')}")


if __name__ == "__main__":
    main()
