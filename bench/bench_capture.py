"""Capture benchmarks (issue 3), written to docs/benchmarks.md.

1. CPU per snapshot for each source kind, beside the floor measured in the same run:
   one raw `ffmpeg -frames:v 1` grab (ffmpeg kinds) or one plain HTTP GET (HTTP kinds).
2. A persistent ffmpeg reader vs a process per frame, as CPU per snapshot at intervals of
   1, 2, 5, 10 and 30 s; the crossover interval follows from the two.
3. 100 http_image + 20 rtsp streams at a 10 s interval on this machine: CPU of every
   Glimpser process and the lag between due time and capture (p50, p95), with
   GLIMPSER_CAPTURE_THREADS capture threads per worker process.

CPU is read from /proc for this process and all its descendants (including the ffmpeg
processes they spawned and waited for), so it counts what a capture really costs.
Peers (camera HTTP server, RTSP server) run in their own processes and are not counted.

Run: `make bench` (or `.venv/bin/python bench/bench_capture.py [--quick] [--only kinds|readers|load]
[--workers N]`); `--only` rewrites only that subsection of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import RESULTS, markers, write_section  # noqa: E402

from tests.helpers import free_port, wait_for_http  # noqa: E402
from tests.media_servers import RtspServer, make_media  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
# after the load window, how long captures due in it may still take to be done
GRACE_SECONDS = 15
MARK_BEGIN, MARK_END = markers("capture")


# --- CPU accounting -------------------------------------------------------------------------


def _stat(pid: int) -> tuple[float, list[int]] | None:
    """(cpu seconds incl. waited-for children, child pids) of one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / TICK, [int(c) for c in children]


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and all its (live and reaped) descendants."""
    total, stack = 0.0, [pid]
    while stack:
        found = _stat(stack.pop())
        if found:
            total += found[0]
            stack.extend(found[1])
    return total


def stop_processes(procs: list[subprocess.Popen], timeout: float) -> None:
    """SIGTERM to all first (they shut down side by side, as on a host going down), then wait
    for each; one still running after `timeout` is killed. Used after a measurement window,
    so the shutdown never counts."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# The peers' processes (camera and file servers, RTSP servers): children of this process, but
# their CPU is the camera's, not Glimpser's, and must not be counted for either side.
PEERS: set[int] = set()


def own_cpu() -> float:
    """This process and its reaped children (µs resolution), plus live descendants such as
    Chromium (clock-tick resolution, from /proc), the peers (PEERS) left out."""
    self_usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = _stat(os.getpid())
    children_now = [c for c in (live[1] if live else []) if c not in PEERS]
    descendants = sum(tree_cpu(child) for child in children_now)
    return (
        self_usage.ru_utime
        + self_usage.ru_stime
        + children.ru_utime
        + children.ru_stime
        + descendants
    )


def per_capture_cpu(capture, n: int) -> float:  # noqa: ANN001
    capture()  # warm-up: imports, connections, the browser, the yt-dlp cache
    before = own_cpu()
    for _ in range(n):
        capture()
    return (own_cpu() - before) / n


def paired_cpu(ours, floor, n: int, rounds: int) -> tuple[float, float]:  # noqa: ANN001
    """CPU per capture of ours and of its floor, measured in alternating batches, so that a
    change in the machine's load during the run weighs on both alike (a shared machine)."""
    ours()
    floor()
    batch = max(1, n // rounds)
    spent = [0.0, 0.0]
    for _ in range(rounds):
        for i, capture in enumerate((ours, floor)):
            before = own_cpu()
            for _ in range(batch):
                capture()
            spent[i] += own_cpu() - before
    return spent[0] / (batch * rounds), spent[1] / (batch * rounds)


# --- peers ----------------------------------------------------------------------------------


def start_camera_process() -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.media_servers import CameraHandler, CameraState, ThreadingHTTPServer\n"
        "state = CameraState(); handler = type('H', (CameraHandler,), {'state': state})\n"
        f"ThreadingHTTPServer(('127.0.0.1', {port}), handler).serve_forever()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    PEERS.add(proc.pid)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/snapshot.jpg", timeout=20)
    return proc, url


def start_file_process(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/test.mp4", timeout=20)
    PEERS.add(proc.pid)
    return proc, url


# --- 1. per-kind CPU ------------------------------------------------------------------------


def bench_kinds(
    n: int, camera: str, files: str, rtsp: str, media: Path, only: list[str] | None = None
) -> list[dict]:
    """CPU per snapshot of each kind beside its floor; `only`: these kinds (table names)."""
    from playwright.sync_api import sync_playwright

    from glimpser.sources import capture
    from glimpser.sources.base import CaptureContext
    from glimpser.sources.schemas import parse_config

    ctx = CaptureContext(
        max_jpeg_bytes=2_000_000,
        allow_loopback=True,
        deny_cidrs=(),
        media_dir=media,
        chromium="/usr/bin/chromium",
    )

    def glimpser(**config):  # noqa: ANN202
        parsed = parse_config(config)
        return lambda: capture(parsed, ctx)

    def raw_ffmpeg(*args: str):  # noqa: ANN202
        cmd = [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            *args,
            "-frames:v",
            "1",
            "-f",
            "image2",
            "-c:v",
            "mjpeg",
            "pipe:",
        ]
        return lambda: subprocess.run(cmd, capture_output=True, check=True, timeout=30)

    def plain_get(url: str):  # noqa: ANN202
        return lambda: urllib.request.urlopen(url, timeout=10).read()  # noqa: S310

    def first_mjpeg_part(url: str):  # noqa: ANN202
        def read() -> bytes:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
                data = b""
                while b"\xff\xd9" not in data[2:]:
                    data += response.read(16384)
                return data

        return read

    from glimpser.sources.youtube import CACHE, pick_media

    rows = []
    cases = [
        (
            "rtsp",
            glimpser(kind="rtsp", url=f"{rtsp}/test"),
            raw_ffmpeg("-rtsp_transport", "tcp", "-i", f"{rtsp}/test"),
            "raw ffmpeg grab",
        ),
        (
            "http_image",
            glimpser(kind="http_image", url=f"{camera}/snapshot.jpg"),
            plain_get(f"{camera}/snapshot.jpg"),
            "plain HTTP GET",
        ),
        (
            "mjpeg",
            glimpser(kind="mjpeg", url=f"{camera}/stream.mjpg"),
            first_mjpeg_part(f"{camera}/stream.mjpg"),
            "plain HTTP GET of one part",
        ),
        (
            "video (HLS)",
            glimpser(kind="video", url=f"{files}/hls/index.m3u8"),
            raw_ffmpeg("-i", f"{files}/hls/index.m3u8"),
            "raw ffmpeg grab",
        ),
        (
            "video (MP4)",
            glimpser(kind="video", url=f"{files}/test.mp4"),
            raw_ffmpeg("-i", f"{files}/test.mp4"),
            "raw ffmpeg grab",
        ),
    ]
    for name, ours, floor, floor_name in cases:
        if only and name not in only:
            continue
        cheap = name in ("http_image", "mjpeg")
        samples = n * 10 if cheap else n  # cheap: more samples
        ours_cpu, floor_cpu = paired_cpu(ours, floor, samples, 10 if cheap else 4)
        rows.append({"kind": name, "ours": ours_cpu, "floor": floor_cpu, "floor_name": floor_name})
    if only and not {"youtube (cached URL)", "website"} & set(only):
        return rows

    # youtube: after the first capture the media URL comes from the cache; the floor grabs
    # the same resolved URL with raw ffmpeg.
    yt = glimpser(kind="youtube", url=f"{files}/page.html")
    yt()
    import yt_dlp

    with yt_dlp.YoutubeDL({"quiet": True, "skip_download": True}) as ydl:
        media_url = pick_media(ydl.extract_info(f"{files}/page.html", download=False)).url
    rows.append(
        {
            "kind": "youtube (cached URL)",
            "ours": per_capture_cpu(yt, n),
            "floor": per_capture_cpu(raw_ffmpeg("-i", media_url), n),
            "floor_name": "raw ffmpeg grab of the resolved URL",
        }
    )
    CACHE.clear()

    # website: the floor is a bare Playwright screenshot in a browser kept open, as ours is.
    site = glimpser(
        kind="website", url=f"{camera}/page.html", viewport_width=800, viewport_height=600
    )
    ours_cpu = per_capture_cpu(site, max(5, n // 2))
    from glimpser.sources import website

    website.close_browser()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )

        def bare() -> bytes:
            context = browser.new_context(viewport={"width": 800, "height": 600})
            page = context.new_page()
            page.goto(f"{camera}/page.html")
            data = page.screenshot(type="jpeg", quality=85)
            context.close()
            return data

        floor_cpu = per_capture_cpu(bare, max(5, n // 2))
        browser.close()
    rows.append(
        {
            "kind": "website",
            "ours": ours_cpu,
            "floor": floor_cpu,
            "floor_name": "bare Playwright screenshot, same browser",
        }
    )
    return rows


# --- 2. persistent reader vs process per frame ----------------------------------------------


def reader_rate(rtsp_url: str, seconds: float, keyframes_only: bool) -> float:
    """CPU seconds per second of a long-running ffmpeg that keeps the stream open."""
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-rtsp_transport", "tcp"]
    if keyframes_only:
        args += ["-skip_frame", "nokey"]
    args += ["-i", rtsp_url, "-vf", "fps=1", "-f", "image2pipe", "-c:v", "mjpeg", "pipe:"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    time.sleep(3)  # past the start-up
    start = tree_cpu(proc.pid)
    time.sleep(seconds)
    rate = (tree_cpu(proc.pid) - start) / seconds
    proc.terminate()
    proc.wait()
    return rate


def spawn_cpu(rtsp_url: str, n: int) -> float:
    cmd = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-rtsp_transport",
        "tcp",
        "-i",
        rtsp_url,
        "-frames:v",
        "1",
        "-f",
        "image2",
        "-c:v",
        "mjpeg",
        "pipe:",
    ]
    return per_capture_cpu(
        lambda: subprocess.run(cmd, capture_output=True, check=True, timeout=30), n
    )


def bench_reader(source: str, rtsp_url: str, n: int, seconds: float) -> dict:
    return {
        "source": source,
        "spawn": spawn_cpu(rtsp_url, n),
        "reader_rate": reader_rate(rtsp_url, seconds, keyframes_only=False),
        "key_rate": reader_rate(rtsp_url, seconds, keyframes_only=True),
        "intervals": [1, 2, 5, 10, 30],
    }


def make_hd_video(root: Path) -> Path:
    """40 s of 1280×720 at 25 fps, a keyframe every 2 s: closer to a real camera."""
    path = root / "hd.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=25",
            "-t",
            "40",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    return path


# --- 3. load: 100 http_image + 20 rtsp at 10 s ----------------------------------------------


def _captures_logged(log: Path) -> int:
    return log.read_bytes().count(b'"msg": "capture"') if log.exists() else 0


def bench_load(camera: str, rtsp: str, seconds: int, workers: int) -> dict:
    data = Path(tempfile.mkdtemp(prefix="g-bench-", dir="/tmp"))
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        "GLIMPSER_DATA_DIR": str(data),
        "GLIMPSER_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "GLIMPSER_ALLOW_LOOPBACK_SOURCES": "1",
        "GLIMPSER_LOG_LEVEL": "INFO",
        "GLIMPSER_STORE_IDENTICAL_FRAMES": "1",
    }
    time.sleep(0.3)
    subprocess.run(
        [sys.executable, "-m", "glimpser.cli", "migrate"], env=env, check=True, capture_output=True
    )
    # streams straight into the database, spread over the interval as a scheduler would
    code = (
        "from glimpser.config import load_settings; from glimpser import db, times\n"
        "from glimpser.models import Stream\nfrom datetime import timedelta\n"
        "db.init_database(load_settings().database_url)\n"
        "now = times.utcnow()\n"
        "with db.database.atomic():\n"
        f"    for i in range(100):\n"
        f"        Stream.create(name=f'cam{{i}}', kind='http_image', interval=10,"
        f" config={{'kind': 'http_image', 'url': '{camera}/snapshot.jpg', 'auth': 'none',"
        f" 'timeout': 5}}, next_due_at=now + timedelta(seconds=5 + i % 10))\n"
        f"    for i in range(20):\n"
        f"        Stream.create(name=f'rtsp{{i}}', kind='rtsp', interval=10,"
        f" config={{'kind': 'rtsp', 'url': '{rtsp}/test', 'timeout': 10}},"
        f" next_due_at=now + timedelta(seconds=5 + i % 10))\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)
    from glimpser.config import load_settings

    threads = load_settings(env).capture_threads
    logs = data / "worker.log"
    with logs.open("wb") as log_file:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "glimpser.cli", "worker"], env=env, stderr=log_file, cwd=ROOT
            )
            for _ in range(workers)
        ]
        for role in ("scheduler", "readers"):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "glimpser.cli", role],
                    env=env,
                    stderr=subprocess.DEVNULL,
                    cwd=ROOT,
                )
            )
        # Warm up until every stream was captured once (process start-up, imports and first
        # connections take long on a loaded machine), then a little more; bounded.
        warm_until = time.monotonic() + 180
        while time.monotonic() < warm_until and _captures_logged(logs) < 120:
            time.sleep(1)
        time.sleep(5)
        started_at = time.time()
        before = sum(tree_cpu(p.pid) for p in procs)
        time.sleep(seconds)
        cpu = sum(tree_cpu(p.pid) for p in procs) - before
        # captures due in the window may still be running or queued: give them their time
        time.sleep(GRACE_SECONDS)
        stop_processes(procs, timeout=20)
    redis.terminate()
    lags, failures, captures, job_ms = [], 0, 0, []
    for line in logs.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "job" and entry.get("job") == "capture_stream":
            job_ms.append(entry["ms"])
        if entry.get("msg") != "capture" or entry.get("manual") or not entry.get("due_at"):
            continue
        # counted by due time: each stream promises one capture per interval, so a window
        # of whole intervals holds exactly 6 due captures per stream unless some were skipped
        due = datetime.fromisoformat(entry["due_at"]).timestamp()
        if not started_at <= due < started_at + seconds:
            continue
        captures += 1
        failures += 0 if entry["ok"] else 1
        if entry.get("lag_ms") is not None:
            lags.append(entry["lag_ms"] / 1000)
    shutil.rmtree(data, ignore_errors=True)
    lags.sort()
    job_ms.sort()
    cores = os.cpu_count() or 1
    return {
        "seconds": seconds,
        "workers": workers,
        "threads": threads,
        "captures": captures,
        "expected": 120 * seconds / 10,
        "failures": failures,
        "cpu_share": cpu / (seconds * cores),
        "lag_p50": statistics.median(lags) if lags else float("nan"),
        "lag_p95": lags[int(len(lags) * 0.95) - 1] if lags else float("nan"),
        "job_p50": statistics.median(job_ms) if job_ms else float("nan"),
        "job_p95": job_ms[int(len(job_ms) * 0.95) - 1] if job_ms else float("nan"),
    }


# --- report ---------------------------------------------------------------------------------


def _sub(name: str, lines: list[str]) -> list[str]:
    """A subsection between markers of its own, so that `--only` can rewrite it alone."""
    begin, end = markers(f"capture-{name}")
    return [begin, *lines, end]


def _merged(kinds: list[dict]) -> list[str]:
    """The table rows of docs/benchmarks.md, with the kinds measured now replaced."""
    begin, end = markers("capture-kinds")
    text = RESULTS.read_text() if RESULTS.exists() else ""
    old = text.split(begin, 1)[1].split(end, 1)[0] if begin in text else ""
    rows = [line for line in old.splitlines() if line.startswith("| ") and "---" not in line]
    rows = rows[1:]  # without the header
    fresh = {row["kind"]: _kind_row(row) for row in kinds}
    merged = [fresh.pop(r.split(" | ")[0][2:], r) for r in rows]
    return merged + list(fresh.values())


def _kind_row(row: dict) -> str:
    ratio = row["ours"] / row["floor"] if row["floor"] else float("nan")
    return (
        f"| {row['kind']} | {row['ours'] * 1000:.1f} | {row['floor'] * 1000:.1f} | "
        f"{row['floor_name']} | {ratio:.2f}× | {'yes' if ratio <= 1.5 else 'no'} |"
    )


def report_kinds(kinds: list[dict], partial: bool = False) -> list[str]:
    lines = [
        "### CPU per snapshot, by kind",
        "",
        f"Measured {time.strftime('%Y-%m-%d')}"
        + (
            f" ({', '.join(row['kind'] for row in kinds)}; the other rows earlier)"
            if partial
            else ""
        )
        + ". Ours and the floor are measured in alternating batches.",
        "",
        "| kind | Glimpser (ms CPU) | floor (ms CPU) | floor | ratio | goal ≤ 1.5× |",
        "|---|---:|---:|---|---:|---|",
    ]
    lines += _merged(kinds) if partial else [_kind_row(row) for row in kinds]
    return _sub("kinds", lines)


def report_readers(readers: list[dict]) -> list[str]:
    lines = [
        "### Persistent reader vs a process per frame (RTSP)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')}. "
        "A process per frame costs the same at any interval; a reader that keeps the "
        "stream open costs its CPU rate × the interval per snapshot "
        "(ms of CPU per snapshot).",
        "",
    ]
    for reader in readers:
        cross = reader["spawn"] / reader["reader_rate"] if reader["reader_rate"] else 0
        cross_key = reader["spawn"] / reader["key_rate"] if reader["key_rate"] else 0
        lines += [
            f"**{reader['source']}**",
            "",
            "| interval | process per frame | reader, all frames decoded "
            "| reader, keyframes only |",
            "|---:|---:|---:|---:|",
        ]
        for interval in reader["intervals"]:
            lines.append(
                f"| {interval} s | {reader['spawn'] * 1000:.0f} | "
                f"{reader['reader_rate'] * interval * 1000:.0f} | "
                f"{reader['key_rate'] * interval * 1000:.0f} |"
            )
        lines += [
            "",
            f"Crossover: the reader is cheaper below **{cross:.1f} s** (all frames "
            f"decoded) or {cross_key:.1f} s (keyframes only).",
            "",
        ]
    lines += [
        "Chosen from these numbers: Glimpser keeps a reader for RTSP streams whose interval is "
        "at most `GLIMPSER_READER_MAX_INTERVAL` (default 5 s, under the 720p keyframes-only "
        "crossover); it decodes every frame up to a 2 s interval (under the 720p full-decode "
        "crossover) and only keyframes above it. Longer intervals start ffmpeg per snapshot.",
    ]
    return _sub("readers", lines)


def report_load(load: dict) -> list[str]:
    lines = [
        "### 100 http_image + 20 rtsp streams every 10 s",
        "",
        f"Measured {time.strftime('%Y-%m-%d')}. "
        f"{load['workers']} worker processes with {load['threads']} capture threads each "
        "(`GLIMPSER_CAPTURE_THREADS`), the scheduler and the readers process (at a 10 s interval "
        "RTSP streams start ffmpeg per snapshot, per the crossover above), measured for "
        f"{load['seconds']} s after a warm-up (every stream captured once, then 5 s). "
        "Captures are counted by due time (those due in the window, done by "
        f"{GRACE_SECONDS} s after it); lag is start minus due time. "
        "CPU counts every Glimpser process and the ffmpeg processes they run.",
        "",
        "| captures | expected | failures | CPU (share of machine) | lag p50 | lag p95 "
        "| job wall time p50 / p95 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {load['captures']} | {load['expected']:.0f} | {load['failures']} | "
        f"{load['cpu_share'] * 100:.1f} % | {load['lag_p50']:.2f} s | "
        f"{load['lag_p95']:.2f} s | {load['job_p50']:.0f} / {load['job_p95']:.0f} ms |",
        "",
        f"Goals: CPU under 50 % ({'met' if load['cpu_share'] < 0.5 else 'missed'}), "
        f"p95 lag under 2 s ({'met' if load['lag_p95'] < 2 else 'missed'}).",
    ]
    return _sub("load", lines)


def report(kinds: list[dict], readers: list[dict], load: dict) -> str:
    lines = [
        MARK_BEGIN,
        "## Capture (issue 3)",
        "",
        f"Measured on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        "by `bench/bench_capture.py`. Peers (camera HTTP server, GStreamer RTSP server) run "
        "in their own processes and are not counted.",
        "",
        *report_kinds(kinds),
        "",
        *report_readers(readers),
        "",
        *report_load(load),
        MARK_END,
    ]
    return "\n".join(lines)


SECTIONS = ("kinds", "readers", "load")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter load")
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        action="append",
        help="run only this section (repeatable); rewrites only its part of docs/benchmarks.md",
    )
    parser.add_argument("--workers", type=int, default=4, help="worker processes of the load")
    parser.add_argument(
        "--kinds", default="", help="with --only kinds: these kinds only (comma-separated)"
    )
    args = parser.parse_args()
    only = args.only or list(SECTIONS)
    n, load_seconds, reader_seconds = (5, 30, 5) if args.quick else (20, 60, 10)
    media = Path(tempfile.mkdtemp(prefix="g-bench-media-"))
    make_media(media)
    camera_proc, camera = start_camera_process()
    files_proc, files = start_file_process(media)
    rtsp = RtspServer(media / "test.mp4")
    hd_rtsp = RtspServer(make_hd_video(media)) if "readers" in only else None
    PEERS.update(server.proc.pid for server in (rtsp, hd_rtsp) if server is not None)
    parts: dict[str, list[str]] = {}
    results: dict[str, object] = {}
    try:
        if "kinds" in only:
            chosen = [k.strip() for k in args.kinds.split(",") if k.strip()]
            results["kinds"] = bench_kinds(n, camera, files, rtsp.url, media, chosen)
            parts["kinds"] = report_kinds(results["kinds"], partial=bool(chosen))
        if "readers" in only:
            assert hd_rtsp is not None
            results["readers"] = [
                bench_reader(
                    "320×240 at 10 fps (the test camera)", f"{rtsp.url}/test", n, reader_seconds
                ),
                bench_reader(
                    "1280×720 at 25 fps, keyframe every 2 s",
                    f"{hd_rtsp.url}/file",
                    n,
                    reader_seconds,
                ),
            ]
            parts["readers"] = report_readers(results["readers"])
        if "load" in only:
            results["load"] = bench_load(camera, rtsp.url, load_seconds, workers=args.workers)
            parts["load"] = report_load(results["load"])
    finally:
        rtsp.stop()
        if hd_rtsp is not None:
            hd_rtsp.stop()
        camera_proc.terminate()
        files_proc.terminate()
        shutil.rmtree(media, ignore_errors=True)
    if len(parts) == len(SECTIONS):
        section = report(results["kinds"], results["readers"], results["load"])
        write_section("capture", section)
    else:
        section = "\n\n".join("\n".join(lines) for lines in parts.values())
        for name, lines in parts.items():
            write_section(f"capture-{name}", "\n".join(lines))
    print(section)


if __name__ == "__main__":
    main()
