"""Capacity (issue 15): how Glimpser's cost grows with the number of streams, on PostgreSQL.

Why: the capture bench (bench_capture.py) prices one snapshot and one fixed load of 120
streams. An operator sizing a host needs the curve: how many streams one host carries, what
a camera costs, and where and why it stops keeping up. This script measures, in one run:

1. Capacity. 100, 300 and 1000 streams at a 10 s interval (90 % http_image still cameras,
   10 % RTSP cameras), each with 1, 2 and 4 `glimpser worker` processes, beside the
   scheduler and the readers process, on PostgreSQL and Redis. Per point: captures done vs
   due, CPU per capture of every Glimpser process and its children (ffmpeg), the lag between
   due time and capture (p50, p95), Redis load (commands/s from INFO, its CPU) and
   PostgreSQL load (transactions/s from pg_stat_database, CPU of all postgres processes).
2. End-to-end latency from a capture to a webhook delivered (no AI), on the same points and
   with the system idle: three extra still cameras whose picture changes at every request
   (a box that moves), a rule "Motion or change detected" with cooldown 0 for those streams
   and a webhook channel to a loopback receiver that notes the arrival time. Latency =
   arrival − the snapshot's `captured_at` (when the capture started). Every capture of those
   streams after the motion background settled is an event, with nothing added to the
   product for the bench.

CPU is read from /proc: a process and all its live and reaped descendants. Peers run in
their own processes and are not counted as Glimpser: nginx serves the still-camera picture,
a small Python server the moving picture, two GStreamer RTSP servers the shared live `/test`
mount, a private PostgreSQL 15 (default settings: fsync on) and a private Redis are counted
separately. The web process is not started: it captures nothing.

The machine has few cores and is shared with other work, so the text prefers ratios (done /
due, CPU per capture, share of the machine) measured in the same run over absolute rates.

Run: `make bench` (or `.venv/bin/python bench/bench_capacity.py [--quick]`); `--quick` runs
smaller points for a few seconds each, to check the script, and writes nothing. Each point's
raw numbers are printed as one JSON line; `--report-from FILE` writes the section again from
such a run's output (same numbers, e.g. after the text changed). `--event-workers N` adds N
worker processes for the notify and analysis queues alone at every point. `--points 300x4`
runs only the points named (streams x workers) and prints their JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_capture import stop_processes, tree_cpu  # noqa: E402
from results import markers, write_section  # noqa: E402

from tests.helpers import free_port, start_nginx, start_redis, wait_for_http  # noqa: E402
from tests.media_servers import RtspServer, jpeg, make_media  # noqa: E402

MARK_BEGIN, MARK_END = markers("capacity")
PG_BIN = Path(os.environ.get("GLIMPSER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
INTERVAL = 10  # seconds, every capacity stream
RTSP_SHARE = 0.10  # of the capacity streams
LATENCY_STREAMS = 3  # moving-picture cameras with the webhook rule
LATENCY_INTERVAL = 3  # seconds
SETTLE = 4  # pictures of a new stream that only settle its motion background (docs/motion.md)
GRACE = 10  # seconds after the measurement for deliveries of its last captures
EVENT_QUEUES = "notify,analysis"  # what a worker of events (--event-workers) listens to
# motionEye users' figures (motioneye-project/motioneye issue 1879), % of a core per camera
MOTIONEYE_STILL, MOTIONEYE_RTSP = 5.0, 15.0


# --- the machine ----------------------------------------------------------------------------


def machine() -> dict:
    """What the numbers were taken on (they only compare within one run)."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    pg_v = subprocess.run([str(PG_BIN / "postgres"), "-V"], capture_output=True, text=True)
    return {
        "cores": os.cpu_count() or 1,
        "cpu": model or platform.machine(),
        "ram_gb": mem_kb / 1024 / 1024,
        "python": platform.python_version(),
        "redis": next((w[2:] for w in redis_v.stdout.split() if w.startswith("v=")), "?"),
        "postgres": (pg_v.stdout.split() + ["?"] * 3)[2],
    }


# --- peers ----------------------------------------------------------------------------------


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Postgres:
    """A private PostgreSQL 15 cluster with default settings (fsync on), like a real host."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="g-cap-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self.data = self.base / "data"
        self.port = free_port()
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
                + ["-E", "UTF8"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log")]
                + ["-w", "-o", f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"]
                + ["start"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}"
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def query(self, sql: str, database: str = "postgres", params: tuple = ()) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(f"{self.dsn}/{database}")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params or None)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"]),
            stdout=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(self.base, ignore_errors=True)


def start_still_camera(tmp: Path) -> tuple[subprocess.Popen, str]:
    """nginx serving one JPEG: a still camera that costs as little as a peer can."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "snapshot.jpg").write_bytes(jpeg((30, 90, 160), label="still"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/snapshot.jpg"
    http = f"""
    access_log off;
    sendfile on;
    server {{ listen 127.0.0.1:{port}; root {tmp}; }}
"""
    proc = start_nginx(tmp, http, url, worker_processes=1, worker_connections=4096)
    return proc, url


MOVING_CAMERA = """
import io, sys, itertools, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from PIL import Image, ImageDraw

def frame(i):
    img = Image.new("RGB", (320, 240), (90, 110, 130))
    d = ImageDraw.Draw(img)
    for x in range(0, 320, 40):
        d.line((x, 0, x, 240), fill=(60, 70, 80))
    x, y = 20 + (i * 97) % 240, 20 + (i * 53) % 160
    d.rectangle((x, y, x + 50, y + 50), fill=(240, 230, 40))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()

FRAMES = [frame(i) for i in range(8)]
COUNT = itertools.count()
LOCK = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_GET(self):
        with LOCK:
            body = FRAMES[next(COUNT) % len(FRAMES)]
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.daemon_threads = True
server.serve_forever()
"""


def start_moving_camera() -> tuple[subprocess.Popen, str]:
    """A still camera whose picture moves at every request: each capture is motion."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", MOVING_CAMERA, str(port)])
    url = f"http://127.0.0.1:{port}/snapshot.jpg"
    wait_for_http(url, timeout=20, proc=proc)
    return proc, url


class Receiver:
    """A loopback webhook receiver that notes when each event arrived (wall clock, UTC)."""

    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    event_id = int(json.loads(body)["event_id"])
                except (ValueError, KeyError, TypeError):
                    event_id = -1
                receiver.arrivals.setdefault(event_id, at)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Peers:
    still: str
    moving: str
    rtsp: list[str]
    receiver: Receiver
    pg: Postgres
    procs: list[subprocess.Popen] = field(default_factory=list)
    rtsp_servers: list[RtspServer] = field(default_factory=list)

    def cpu(self) -> float:
        """CPU seconds of the camera peers (nginx, moving camera, RTSP servers) so far."""
        pids = [p.pid for p in self.procs] + [s.proc.pid for s in self.rtsp_servers]
        return sum(tree_cpu(pid) for pid in pids)


# --- one point ------------------------------------------------------------------------------


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _redis_stats(client) -> tuple[int, float, dict[str, int]]:  # noqa: ANN001
    """(commands processed, Redis CPU seconds, calls per command) from INFO."""
    info = client.info()
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}
    return (
        int(info["total_commands_processed"]),
        float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
        calls,
    )


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat: everything that ran,
    other people's work included."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _pg_xacts(pg: Postgres, database: str) -> int:
    rows = pg.query(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
        params=(database,),
    )
    return int(rows[0][0]) if rows else 0


def _create_streams(
    database_url: str, peers: Peers, streams: int, latency: bool
) -> tuple[list[int], dict[int, str]]:
    """Streams straight into the database, due only tomorrow (`_release` makes them due once
    the workers run); with `latency`, the moving cameras, their rule and the webhook channel.
    Returns the ids of the moving cameras, and "still" or "rtsp" by id for the others."""
    from glimpser import db, times
    from glimpser.analysis.rules import rule_columns
    from glimpser.analysis.schemas import RuleConditions, RuleSpec
    from glimpser.models import NotificationChannel, Rule, Stream

    db.init_database(database_url)
    later = times.utcnow() + timedelta(days=1)
    rtsp = round(streams * RTSP_SHARE)
    moving: list[int] = []
    kinds: dict[int, str] = {}
    with db.database.connection_context(), db.database.atomic():
        for i in range(streams - rtsp):
            kinds[
                Stream.create(
                    name=f"still{i}",
                    kind="http_image",
                    interval=INTERVAL,
                    config={"kind": "http_image", "url": peers.still, "auth": "none", "timeout": 5},
                    next_due_at=later,
                ).id
            ] = "still"
        for i in range(rtsp):
            url = f"{peers.rtsp[i % len(peers.rtsp)]}/test"
            kinds[
                Stream.create(
                    name=f"rtsp{i}",
                    kind="rtsp",
                    interval=INTERVAL,
                    config={"kind": "rtsp", "url": url, "timeout": 10},
                    next_due_at=later,
                ).id
            ] = "rtsp"
        if latency:
            for i in range(LATENCY_STREAMS):
                moving.append(
                    Stream.create(
                        name=f"moving{i}",
                        kind="http_image",
                        interval=LATENCY_INTERVAL,
                        config={
                            "kind": "http_image",
                            "url": peers.moving,
                            "auth": "none",
                            "timeout": 5,
                        },
                        next_due_at=later,
                    ).id
                )
            channel = NotificationChannel.create(
                name="Bench hook",
                kind="webhook",
                config={"kind": "webhook", "url": peers.receiver.url},
            )
            spec = RuleSpec(
                name="Bench: every movement",
                applies_to="chosen",
                stream_ids=moving,
                conditions=RuleConditions(changed=True),
                cooldown_seconds=0,
            )
            Rule.create(**rule_columns(spec, channels=[channel.id]))
    db.database.close()
    return moving, kinds


def _release(pg: Postgres, database: str) -> None:
    """Make every stream due within the next interval, spread evenly as a scheduler that has
    run for a while leaves them. Done once the workers run, so that the start-up (slow on a
    busy machine) leaves no backlog to be caught up inside the measured window."""
    pg.query(
        "UPDATE stream SET next_due_at = now() + interval '1 second' "
        "+ ((id * 7919) %% 1000) * %s * interval '1 second'",
        database,
        (INTERVAL / 1000,),
    )


COMPLETED = re.compile(r"completed capture stream (\d+) job in (\d+):(\d+):([\d.]+)s")


def _read_logs(path: Path, start: float, end: float, kinds: dict[int, str]) -> dict:
    """From the workers' log, for the scheduled captures in [start, end]: lags, failures,
    each kind's job wall time, and the seconds the workers spent in jobs of any kind."""
    lags, failures, busy = [], 0, 0.0
    by_job: dict[str, float] = {}
    wall: dict[str, list[float]] = {"still": [], "rtsp": []}
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            ts = datetime.fromisoformat(entry["ts"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        if not start <= ts <= end:
            continue
        msg = entry.get("msg", "")
        if msg == "job":
            busy += entry.get("ms", 0) / 1000
            name = str(entry.get("job", "?"))
            by_job[name] = by_job.get(name, 0.0) + entry.get("ms", 0) / 1000
        elif msg == "capture" and not entry.get("manual"):
            failures += 0 if entry.get("ok") else 1
            if entry.get("lag_ms") is not None:
                lags.append(entry["lag_ms"] / 1000)
        elif found := COMPLETED.search(msg):
            stream_id, h, m, sec = found.groups()
            kind = kinds.get(int(stream_id), "")
            wall.setdefault(kind, []).append(int(h) * 3600 + int(m) * 60 + float(sec))
    return {
        "lag_p50": _pct(lags, 50),
        "lag_p95": _pct(lags, 95),
        "failures": failures,
        "busy": busy,
        "busy_by_job": by_job,
        "wall_still": _pct(wall["still"], 50),
        "wall_rtsp": _pct(wall["rtsp"], 50),
    }


def run_point(
    peers: Peers,
    streams: int,
    workers: int,
    warmup: int,
    seconds: int,
    latency: bool = True,
    event_workers: int = 0,
) -> dict:
    """Start a fresh database, Redis and Glimpser for `streams` streams and `workers` workers
    (plus `event_workers` processes for the notify and analysis queues alone), let it warm
    up, then measure for `seconds`."""
    import redis as redis_lib

    data = Path(tempfile.mkdtemp(prefix="g-cap-", dir="/tmp"))
    redis_proc, redis_url = start_redis(data)
    database = f"bench_{uuid.uuid4().hex[:10]}"
    peers.pg.query(f'CREATE DATABASE "{database}"')
    database_url = f"{peers.pg.dsn}/{database}"
    env = {
        **os.environ,
        "GLIMPSER_DATA_DIR": str(data),
        "GLIMPSER_DATABASE_URL": database_url,
        "GLIMPSER_REDIS_URL": redis_url,
        "GLIMPSER_ALLOW_LOOPBACK_SOURCES": "1",
        "GLIMPSER_LOG_LEVEL": "INFO",
        # Every capture stored, as a changing camera's would be (the still camera's picture
        # never changes; without this most captures would store nothing).
        "GLIMPSER_STORE_IDENTICAL_FRAMES": "1",
    }
    subprocess.run(
        [sys.executable, "-m", "glimpser.cli", "migrate"],
        env=env,
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    moving, kinds = _create_streams(database_url, peers, streams, latency)
    from glimpser.config import load_settings

    capture_threads = getattr(load_settings(env), "capture_threads", 0)
    client = redis_lib.Redis.from_url(redis_url)
    peers.receiver.arrivals.clear()  # event ids start again in each new database
    log_path = data / "glimpser.log"
    procs: list[subprocess.Popen] = []
    with log_path.open("wb") as log_file:
        roles = [["worker"]] * workers + [["worker", "--queues", EVENT_QUEUES]] * event_workers
        for role in roles + [["scheduler"], ["readers"]]:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "glimpser.cli", *role],
                    env=env,
                    stderr=log_file,
                    stdout=subprocess.DEVNULL,
                    cwd=ROOT,
                )
            )
        # Start-up (imports) takes seconds, more on a busy machine: the warm-up counts from
        # when every worker has registered with RQ, bounded only to end a hung run.
        deadline = time.monotonic() + 300
        while client.scard("rq:workers") < workers + event_workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"workers did not start; see {log_path}")
            time.sleep(0.5)
        _release(peers.pg, database)
        time.sleep(warmup)
        start = time.time()
        cpu0 = sum(tree_cpu(p.pid) for p in procs)
        peers0, busy0 = peers.cpu(), machine_busy()
        pg0, xact0 = tree_cpu(peers.pg.pid), _pg_xacts(peers.pg, database)
        redis_cmds0, redis_cpu0, calls0 = _redis_stats(client)
        time.sleep(seconds)
        end = time.time()
        cpu = sum(tree_cpu(p.pid) for p in procs) - cpu0
        peers_cpu, busy1 = peers.cpu() - peers0, machine_busy()
        pg_cpu, xacts = tree_cpu(peers.pg.pid) - pg0, _pg_xacts(peers.pg, database) - xact0
        redis_cmds, redis_cpu, calls = _redis_stats(client)
        time.sleep(GRACE)  # deliveries of the last captures in the window
        stop_processes(procs, timeout=30)
    top = sorted(((calls.get(k, 0) - calls0.get(k, 0), k) for k in calls), reverse=True)[:4]
    result = {
        "streams": streams,
        "workers": workers,
        "event_workers": event_workers,
        "capture_threads": capture_threads,
        "seconds": seconds,
        "cpu": cpu,
        "peers_cpu": peers_cpu,
        "machine_busy": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        "pg_cpu": pg_cpu,
        "pg_xacts": xacts,
        "redis_cpu": redis_cpu - redis_cpu0,
        "redis_cmds": redis_cmds - redis_cmds0,
        "redis_top": [(name, n) for n, name in top],
    }
    result.update(_outcomes(database_url, streams, moving, start, end, peers.receiver))
    result.update(_read_logs(log_path, start, end, kinds))
    client.close()
    redis_proc.terminate()
    redis_proc.wait(timeout=10)
    peers.pg.query(f'DROP DATABASE "{database}" WITH (FORCE)')
    if not result["done"] + result["moving_done"]:  # keep the evidence of a broken point
        shutil.copy(log_path, Path(tempfile.gettempdir()) / f"g-cap-{streams}x{workers}.log")
    shutil.rmtree(data, ignore_errors=True)
    return result


def _outcomes(
    database_url: str, streams: int, moving: list[int], start: float, end: float, rx: Receiver
) -> dict:
    """Captures done vs due (stored snapshots, each capture stores one) and the latency from
    each moving camera's capture to its webhook's arrival."""
    from glimpser import db
    from glimpser.models import Event, Rule, Snapshot

    t0, t1 = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    db.init_database(database_url)
    with db.database.connection_context():
        in_window = (Snapshot.captured_at >= t0) & (Snapshot.captured_at < t1)
        done = Snapshot.select().where(in_window & Snapshot.stream.not_in(moving or [0])).count()
        moving_done = Snapshot.select().where(in_window & Snapshot.stream.in_(moving or [0]))
        moving_done = moving_done.count()
        # After the motion background settled (the first SETTLE pictures of a stream), every
        # capture of a moving camera is an event: those in the window are the expected ones.
        expected: list[tuple[int, datetime]] = []
        for stream_id in moving:
            shots = list(
                Snapshot.select(Snapshot.id, Snapshot.captured_at)
                .where(Snapshot.stream == stream_id)
                .order_by(Snapshot.captured_at, Snapshot.id)
                .tuples()
            )
            expected += [(i, at) for i, at in shots[SETTLE:] if t0 <= at < t1]
        events = dict(
            Event.select(Event.snapshot, Event.id)
            .join_from(Event, Rule)
            .where(
                (Rule.name == "Bench: every movement")
                & Event.snapshot.in_([i for i, _ in expected] or [0])
            )
            .tuples()
        )
    db.database.close()
    latencies, undelivered = [], 0
    for snapshot_id, captured_at in expected:
        arrived = rx.arrivals.get(events.get(snapshot_id, -2))
        if arrived is None:
            undelivered += 1
        else:
            latencies.append(arrived - captured_at.timestamp())
    seconds = end - start
    # An event not delivered by the end of the grace period counts as slower than any other.
    ranked = latencies + [float("inf")] * undelivered
    return {
        "done": done,
        "due": streams * seconds / INTERVAL,
        "moving_done": moving_done,
        "moving_due": len(moving) * seconds / LATENCY_INTERVAL,
        "events": len(expected),
        "undelivered": undelivered,
        "lat_p50": _pct(ranked, 50),
        "lat_p95": _pct(ranked, 95),
    }


# --- report ---------------------------------------------------------------------------------


def _s(value: float) -> str:
    if value != value:  # nan
        return "–"
    if value == float("inf"):
        return f"> {GRACE} s"
    return f"{value:.2f} s"


def _workers(p: dict) -> str:
    return f"{p['workers']} worker" + ("s" if p["workers"] > 1 else "")


def _slots(p: dict) -> int:
    """Jobs a point's workers can run at once: one per process, or with capture threads
    (GLIMPSER_CAPTURE_THREADS, where the code has them) those plus the main thread."""
    threads = p.get("capture_threads", 0)
    return p["workers"] * (1 + threads if threads else 1)


def _derived(p: dict, cores: int) -> dict:
    """The ratios the text uses, from one point's raw numbers."""
    seconds = p["seconds"]
    captures = p["done"] + p["moving_done"]
    ours = (p["cpu"] + p["pg_cpu"] + p["redis_cpu"]) / seconds / cores
    return {
        "done_ratio": p["done"] / p["due"] if p["due"] else float("nan"),
        "share": p["cpu"] / seconds / cores,
        "stack_share": ours,
        "per_capture_ms": p["cpu"] / captures * 1000 if captures else float("nan"),
        "per_capture_all_ms": (p["cpu"] + p["pg_cpu"] + p["redis_cpu"]) / captures * 1000
        if captures
        else float("nan"),
        # A camera's cost when it is captured as often as asked: CPU per capture at one
        # capture per interval (the same as CPU / streams where every capture was done, and
        # still meaningful where captures fell behind).
        "per_camera": p["cpu"] / captures / INTERVAL * 100 if captures else float("nan"),
        "occupancy": p["busy"] / (seconds * _slots(p)),
        "others": max(0.0, p["machine_busy"] - ours - p["peers_cpu"] / seconds / cores),
    }


def report(info: dict, idle: dict, points: list[dict], code: str) -> str:
    cores = info["cores"]
    lines = [
        MARK_BEGIN,
        "## Capacity: cost against the number of streams (issue 15)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `bench/bench_capacity.py` on {code}, on a "
        f"**shared machine** (other engineers' tests ran at the same time): {cores} cores "
        f"({info['cpu']}), {info['ram_gb']:.0f} GB RAM, Python {info['python']}, Redis "
        f"{info['redis']}, PostgreSQL {info['postgres']} (default settings, fsync on). "
        f"Streams at a {INTERVAL} s interval, {100 - RTSP_SHARE * 100:.0f} % http_image still "
        f"cameras (nginx), {RTSP_SHARE * 100:.0f} % RTSP cameras (two GStreamer RTSP servers, "
        "shared live mount, ffmpeg per snapshot at this interval), plus "
        f"{LATENCY_STREAMS} moving-picture cameras every {LATENCY_INTERVAL} s for the latency. "
        + (
            f"Each worker process runs {points[0]['capture_threads']} capture threads "
            "(GLIMPSER_CAPTURE_THREADS, the default). "
            if points[0].get("capture_threads")
            else "Each worker process runs one job at a time. "
        )
        + f"Each point: fresh database and Redis, the streams made due once the workers run, "
        f"{points[0]['warmup']} s warm-up, {points[0]['seconds']} s measured. Glimpser CPU is "
        "every worker, the scheduler and the readers process with their children (ffmpeg); "
        "PostgreSQL and Redis are counted apart. Prefer the ratios: absolute rates depend on "
        "what else the machine ran.",
        "",
        "### Throughput",
        "",
        "| streams | workers | captures done / due | lag p50 / p95 | job slots busy "
        "| capture job wall time p50, still / RTSP | webhook latency p50 / p95 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        d = _derived(p, cores)
        lines.append(
            f"| {p['streams']} | {p['workers']} | {p['done']} / {p['due']:.0f} "
            f"({d['done_ratio'] * 100:.0f} %) | {_s(p['lag_p50'])} / {_s(p['lag_p95'])} "
            f"| {d['occupancy'] * 100:.0f} % | {_s(p['wall_still'])} / {_s(p['wall_rtsp'])} "
            f"| {_s(p['lat_p50'])} / {_s(p['lat_p95'])} |"
        )
    lines += [
        "",
        "Captures done: snapshots stored in the window (every capture stores one); it can pass "
        "100 % when a point catches up captures that fell due before the window. Job slots "
        "busy: the time the workers spent in jobs of any kind (capture, analysis, notify, "
        "schedule) / (window × slots), where a worker process has one slot, or with capture "
        "threads (GLIMPSER_CAPTURE_THREADS) one per thread plus its main thread.",
        "",
        "### Cost",
        "",
        "| streams | workers | Glimpser CPU (share of machine) | CPU per capture, Glimpser "
        "/ with PostgreSQL and Redis | per camera (% of a core) | Redis cmds/s, CPU "
        "| PostgreSQL tx/s, CPU | camera peers CPU | machine busy (everyone) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        d, seconds = _derived(p, cores), p["seconds"]
        lines.append(
            f"| {p['streams']} | {p['workers']} | {d['share'] * 100:.0f} % "
            f"| {d['per_capture_ms']:.1f} / {d['per_capture_all_ms']:.1f} ms "
            f"| {d['per_camera']:.2f} % "
            f"| {p['redis_cmds'] / seconds:.0f}, {p['redis_cpu'] / seconds * 100:.1f} % "
            f"| {p['pg_xacts'] / seconds:.0f}, {p['pg_cpu'] / seconds * 100:.1f} % "
            f"| {p['peers_cpu'] / seconds * 100:.1f} % | {p['machine_busy'] * 100:.0f} % |"
        )
    lines += [
        "",
        "Share of machine: CPU seconds / (window × cores). Per camera: Glimpser CPU per capture "
        f"× one capture per {INTERVAL} s, as % of one core (what a camera costs when it is "
        "captured as often as asked). Redis, PostgreSQL and the camera peers (nginx, the "
        "moving camera, the RTSP servers): % of one core. Machine busy: /proc/stat over the "
        "window, every process on the machine, other people's included.",
        "",
        "Redis's busiest commands (calls in the window): "
        + "; ".join(
            f"{p['streams']}×{p['workers']}: "
            + ", ".join(f"{name} {n}" for name, n in p["redis_top"])
            for p in points
        )
        + ".",
        "",
        "Where the workers' time went (share of their busy time, by job): "
        + "; ".join(
            f"{p['streams']}×{p['workers']}: "
            + ", ".join(
                f"{name} {sec / p['busy'] * 100:.0f} %"
                for name, sec in sorted(
                    p.get("busy_by_job", {}).items(), key=lambda kv: kv[1], reverse=True
                )[:4]
            )
            for p in points
            if p["busy"]
        )
        + ".",
        "",
    ]
    lines += _latency_lines(idle, points)
    lines += _reading(info, idle, points)
    lines.append(MARK_END)
    return "\n".join(lines)


def _latency_lines(idle: dict, points: list[dict]) -> list[str]:
    at300 = [p for p in points if p["streams"] == 300]
    rows = [("idle (only the latency cameras)", idle)] + [
        (f"300 streams, {_workers(p)}", p) for p in at300
    ]
    lines = [
        "### Capture → webhook latency (no AI)",
        "",
        'A rule "Motion or change detected", cooldown 0, for the moving cameras, sends each '
        "event to a webhook channel; a loopback receiver notes the arrival. Every capture of a "
        f"moving camera in the window after its first {SETTLE} (which only settle the motion "
        "background, docs/motion.md) is an expected event. Latency = arrival "
        f"− the snapshot's `captured_at`. An event not delivered {GRACE} s after the window "
        f"counts as slower than {GRACE} s. Goal: p95 under 2 s.",
        "",
        "| load | moving cameras: captures done / due | expected events "
        "| not delivered in time | p50 | p95 | goal p95 < 2 s | machine busy (everyone) |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, p in rows:
        met = "met" if p["lat_p95"] < 2 else ("missed" if p["events"] else "not measured")
        lines.append(
            f"| {name} | {p['moving_done']} / {p['moving_due']:.0f} | {p['events']} "
            f"| {p['undelivered']} | {_s(p['lat_p50'])} "
            f"| {_s(p['lat_p95'])} | {met} | {p['machine_busy'] * 100:.0f} % |"
        )
    return lines + [""]


def _range(values: list[float], spec: str) -> str:
    low, high = format(min(values), spec), format(max(values), spec)
    return low if low == high else f"{low}–{high}"


def _reading(info: dict, idle: dict, points: list[dict]) -> list[str]:
    """The text, computed from this run's numbers so that it never contradicts the tables."""
    cores = info["cores"]
    expected_me = MOTIONEYE_STILL * (1 - RTSP_SHARE) + MOTIONEYE_RTSP * RTSP_SHARE
    best: dict[int, dict] = {}
    for p in points:
        if p["streams"] not in best or p["done"] > best[p["streams"]]["done"]:
            best[p["streams"]] = p
    lines = ["### Reading the capacity numbers", ""]
    for streams, p in sorted(best.items()):
        d = _derived(p, cores)
        if d["done_ratio"] >= 0.95 and p["lag_p95"] < INTERVAL:
            verdict = "keeps up"
        elif p.get("capture_threads") and p["cpu"] / p["seconds"] / p["workers"] > 0.7:
            verdict = (
                "falls behind with each worker process (with its ffmpeg children) using "
                f"{p['cpu'] / p['seconds'] / p['workers'] * 100:.0f} % of a core: its capture "
                "threads share one Python interpreter, which runs one thread at a time (the "
                "GIL), so more threads would not help; more worker processes do, as long as "
                "the machine has cores left"
            )
        elif d["occupancy"] > 0.8 and d["stack_share"] < 0.5:
            verdict = (
                f"falls behind because its job slots are busy {d['occupancy'] * 100:.0f} % of "
                "the time while Glimpser, PostgreSQL and Redis use only "
                f"{d['stack_share'] * 100:.0f} % of the machine: the limit is how many "
                f"captures run at once ({_slots(p)} slot{'s' if _slots(p) > 1 else ''}), not "
                "Glimpser's CPU; an RTSP "
                f"grab holds a worker for {_s(p['wall_rtsp'])} (ffmpeg start, RTSP handshake, "
                "waiting for a keyframe) while using a fraction of that in CPU"
                + (
                    f", and the other work on this shared machine (≈ {d['others'] * 100:.0f} % "
                    "of it) stretched every job's wall time"
                    if p["machine_busy"] > 0.9 and d["others"] > d["stack_share"]
                    else ""
                )
            )
        elif p["machine_busy"] > 0.9:
            verdict = (
                "falls behind with the CPU saturated"
                + (
                    f" — mostly by other work on this shared machine (≈ {d['others'] * 100:.0f} "
                    "% of it)"
                    if d["others"] > d["stack_share"]
                    else ""
                )
                + ": captures wait for a core, the lag grows and done / due falls; more "
                "workers only share the same cores"
            )
        else:
            verdict = "falls behind"
        lines.append(
            f"- **{streams} streams** (best of the worker counts: {p['workers']}): "
            f"{d['done_ratio'] * 100:.0f} % of the due captures done, lag p95 "
            f"{_s(p['lag_p95'])}, Glimpser at {d['share'] * 100:.0f} % of the machine "
            f"({d['stack_share'] * 100:.0f} % with PostgreSQL and Redis), the machine "
            f"{p['machine_busy'] * 100:.0f} % busy: it {verdict}."
        )
    by_streams: dict[int, list[dict]] = {}
    for p in points:
        by_streams.setdefault(p["streams"], []).append(p)
    worker_lines = []
    for streams, group in sorted(by_streams.items()):
        group.sort(key=lambda p: p["workers"])
        worker_lines.append(
            f"{streams} streams: "
            + ", ".join(
                f"{p['workers']} → {_derived(p, cores)['done_ratio'] * 100:.0f} % "
                f"(p95 lag {_s(p['lag_p95'])}, "
                f"{p['cpu'] / p['seconds'] / p['workers'] * 100:.0f} % of a core per worker "
                "process)"
                for p in group
            )
        )
    lines.append(
        "- **Workers** (done / due by worker processes): "
        + "; ".join(worker_lines)
        + ". More workers help while the workers, not the cores, are the bottleneck (a "
        "worker process near a whole core is one: Python runs one thread at a time per "
        "process); once the machine's cores are saturated they only add processes competing "
        "for them."
    )
    kept = [p for p in points if _derived(p, cores)["done_ratio"] >= 0.5] or points
    per_camera = [_derived(p, cores)["per_camera"] for p in kept]
    per_capture = [_derived(p, cores)["per_capture_all_ms"] for p in kept]
    lines.append(
        "- **Per camera.** At the points that did at least half of the due captures (where "
        "the fixed costs — the sweep, the readers process, idle polling — do not dominate), a "
        "camera captured every interval costs "
        f"{_range(per_camera, '.2f')} % of a core of Glimpser CPU (ffmpeg "
        f"included) at a {INTERVAL} s interval, and a capture "
        f"{_range(per_capture, '.0f')} ms of CPU with PostgreSQL and Redis. "
        f"motionEye users report ≈ {MOTIONEYE_STILL:.0f} % of a core per still-image camera "
        f"and ≈ {MOTIONEYE_RTSP:.0f} % per RTSP camera (motioneye issue 1879), ≈ "
        f"{expected_me:.1f} % for this mix: a Glimpser camera costs at most "
        f"{max(per_camera) / expected_me * 100:.0f} % of that. Not like for like: motionEye "
        "(motion) decodes the video continuously, Glimpser takes one snapshot per interval; "
        "at intervals of 5 s or less RTSP streams get a persistent reader (see the Capture "
        "section) and cost more."
    )
    at300 = [p for p in points if p["streams"] == 300]

    def at_load(p: dict) -> str:
        if p["events"]:
            return (
                f"{_s(p['lat_p95'])} with {_workers(p)} "
                f"({'met' if p['lat_p95'] < 2 else 'missed'}, {p['undelivered']} of "
                f"{p['events']} not delivered in time)"
            )
        return (
            f"not measurable with {_workers(p)} (the moving cameras got "
            f"{p['moving_done']} of {p['moving_due']:.0f} due captures in the window, too few "
            "to get past the motion background's settling: no event was due)"
        )

    load_text = "; at 300 streams p95 " + "; ".join(at_load(p) for p in at300) if at300 else ""
    lines.append(
        f"- **Latency.** Idle, capture → webhook p95 was {_s(idle['lat_p95'])} "
        f"({'met' if idle['lat_p95'] < 2 else 'missed'} the 2 s goal, with the machine "
        f"{idle['machine_busy'] * 100:.0f} % busy, all processes counted){load_text}. The event "
        "goes capture → analysis job → notify job. "
        + (
            "With capture threads, analysis and notify run on each worker's main thread, "
            "which shares its process's interpreter (one thread at a time: the GIL) with the "
            "capture threads and the cores with everything else: under load those jobs wait, "
            "and an event's webhook with them. Where exactly that time goes at 300 streams was "
            "not broken down in this run."
            if points and points[0].get("capture_threads")
            else "Notify is served before capture and analysis after it in the same workers' "
            "queues, so under load the event waits behind the captures and its latency "
            "follows the lag."
        )
    )
    return lines + [""]


# --- main -----------------------------------------------------------------------------------


def start_peers() -> Peers:
    tmp = Path(tempfile.mkdtemp(prefix="g-cap-peers-"))
    nginx, still = start_still_camera(tmp / "nginx")
    moving_proc, moving = start_moving_camera()
    media = tmp / "media"
    make_media(media)
    servers = [RtspServer(media / "test.mp4") for _ in range(2)]
    peers = Peers(
        still=still,
        moving=moving,
        rtsp=[s.url for s in servers],
        receiver=Receiver(),
        pg=Postgres(),
        procs=[nginx, moving_proc],
        rtsp_servers=servers,
    )
    peers.tmp = tmp  # type: ignore[attr-defined]
    return peers


def stop_peers(peers: Peers) -> None:
    for server in peers.rtsp_servers:
        server.stop()
    for proc in peers.procs:
        proc.terminate()
        proc.wait(timeout=10)
    peers.receiver.stop()
    peers.pg.stop()
    shutil.rmtree(peers.tmp, ignore_errors=True)  # type: ignore[attr-defined]


def code_version() -> str:
    """Which code ran: the commit, and whether capture-pool was merged in."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h"], capture_output=True, text=True
    ).stdout.strip()
    merged = subprocess.run(
        ["git", "-C", str(ROOT), "log", "--format=%s", "-30"], capture_output=True, text=True
    ).stdout
    pool = "capture-pool" in merged
    return f"commit {head}" + (" (with branch capture-pool merged)" if pool else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small points, a few seconds each")
    parser.add_argument(
        "--report-from",
        type=Path,
        help="write the report from the JSON lines an earlier run printed (its stdout)",
    )
    parser.add_argument(
        "--event-workers",
        type=int,
        default=0,
        help=f"at every point, this many more worker processes for {EVENT_QUEUES} alone",
    )
    parser.add_argument(
        "--points",
        help="only these points, e.g. 300x4,200x4 (streams x workers): their JSON lines, "
        "nothing written (to compare two commits on one machine, one after the other)",
    )
    args = parser.parse_args()
    if args.points:
        peers = start_peers()
        try:
            for spec in args.points.split(","):
                streams, workers = (int(n) for n in spec.split("x"))
                point = run_point(peers, streams, workers, 20, 40, event_workers=args.event_workers)
                print(json.dumps(point), flush=True)
        finally:
            stop_peers(peers)
        return
    if args.report_from:
        info, idle, *points = [
            json.loads(line)
            for line in args.report_from.read_text().splitlines()
            if line.startswith("{")
        ]
        section = report(info, idle, points, info["code"])
        print(section)
        write_section("capacity", section)
        return
    if args.quick:
        sizes, worker_counts, warmup, seconds = [20, 60], [1, 2], 15, 15
    else:
        sizes, worker_counts, warmup, seconds = [100, 300, 1000], [1, 2, 4], 20, 40
    info = {**machine(), "code": code_version()}
    print(json.dumps(info), flush=True)
    peers = start_peers()
    points = []
    try:
        idle = run_point(peers, 0, 1, warmup, seconds)
        idle["warmup"] = warmup
        print(json.dumps(idle), flush=True)
        for streams in sizes:
            for workers in worker_counts:
                point = run_point(
                    peers, streams, workers, warmup, seconds, event_workers=args.event_workers
                )
                point["warmup"] = warmup
                print(json.dumps(point), flush=True)
                points.append(point)
    finally:
        stop_peers(peers)
    section = report(info, idle, points, info["code"])
    print(section)
    if not args.quick:
        write_section("capacity", section)


if __name__ == "__main__":
    main()
