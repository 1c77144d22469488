"""Live view benchmark (issue 4), written to docs/benchmarks.md.

1. CPU of the web process (gunicorn, as `glimpser web` runs it), the readers process and the
   ffmpeg it runs, with 1 and with 50 concurrent viewers of one RTSP stream, ~20 s each. The
   viewers are raw sockets in one separate process (not counted). Goal: 50 viewers cost
   under 2× one (one upstream reader, one Redis subscription per web process).
2. Ordinary page latency while 50 live views are open: with Glimpser's thread layout
   (GLIMPSER_WEB_THREADS for pages + a separate pool of 8× that for live views, 503 beyond)
   and, for comparison, plain gthread with GLIMPSER_WEB_THREADS threads only.
3. MJPEG cameras: re-publishing the camera's own parts (what Glimpser does) vs ffmpeg
   decoding and re-encoding them, CPU per second at GLIMPSER_LIVE_FPS.

CPU is read from /proc for each process and its descendants (bench_capture.tree_cpu).

Run: `make bench` (or `.venv/bin/python bench/bench_live.py [--quick]`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_capture import stop_processes, tree_cpu  # noqa: E402
from results import markers, write_section  # noqa: E402

from tests.helpers import csrf_from, free_port, wait_for_http  # noqa: E402
from tests.media_servers import RtspServer, make_media  # noqa: E402

MARK_BEGIN, MARK_END = markers("live")
TICK = os.sysconf("SC_CLK_TCK")
PASSWORD = "correct horse battery"
LIVE_FPS = 5

# The viewers: N sockets in this one process, each reading as fast as the server sends.
VIEWERS = r"""
import json, selectors, socket, sys, time
host, port, path, cookie, n, seconds = sys.argv[1:7]
n, seconds = int(n), float(seconds)
sel = selectors.DefaultSelector()
counts = {}
for i in range(n):
    s = socket.create_connection((host, int(port)))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n".encode())
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, i)
    counts[i] = 0
print("open", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    for key, _ in sel.select(timeout=0.5):
        try:
            data = key.fileobj.recv(262144)
        except BlockingIOError:
            continue
        counts[key.data] += data.count(b"Content-Type: image/jpeg")
print(json.dumps(sorted(counts.values())), flush=True)
"""


class Stack:
    """Redis, database, an admin, one RTSP stream; web (gunicorn) and readers processes."""

    def __init__(self, rtsp_url: str) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="g-bench-live-", dir="/tmp"))
        self.redis_port = free_port()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        self.port = free_port()
        self.env = {
            **os.environ,
            "GLIMPSER_DATA_DIR": str(self.data),
            "GLIMPSER_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "GLIMPSER_ALLOW_LOOPBACK_SOURCES": "1",
            "GLIMPSER_SECURE_COOKIES": "0",
            "GLIMPSER_LOG_LEVEL": "WARNING",
            "GLIMPSER_PORT": str(self.port),
            "GLIMPSER_LIVE_FPS": str(LIVE_FPS),
        }
        time.sleep(0.3)
        code = (
            "from glimpser.config import load_settings; from glimpser import db, times\n"
            "from glimpser.models import Stream; from glimpser.auth.users import create_user\n"
            "db.init_database(load_settings().database_url); db.migrate()\n"
            f"create_user('alice', {PASSWORD!r}, 'admin', first_run=True)\n"
            "s = Stream.create(name='yard', kind='rtsp', interval=600, next_due_at=times.utcnow(),"
            f" config={{'kind': 'rtsp', 'url': '{rtsp_url}', 'transport': 'tcp', 'timeout': 10}})\n"
            "print(s.id)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=self.env, check=True, cwd=ROOT, capture_output=True
        )
        self.stream_id = int(out.stdout.split()[-1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.web: subprocess.Popen | None = None
        self.readers = subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", "readers"], env=self.env, cwd=ROOT
        )

    def start_web(self, extra_args: tuple[str, ...] = ()) -> None:
        cmd = [sys.executable, "-m", "gunicorn", "--config", "python:glimpser.gunicorn_conf"]
        self.web = subprocess.Popen(
            [*cmd, *extra_args, "glimpser.wsgi:app"], env=self.env, cwd=ROOT
        )
        wait_for_http(f"{self.url}/healthz", timeout=30, proc=self.web)
        self.session = requests.Session()
        token = csrf_from(self.session.get(f"{self.url}/login").text)
        self.session.post(
            f"{self.url}/login",
            data={"csrf_token": token, "username": "alice", "password": PASSWORD},
        ).raise_for_status()
        self.cookie = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)

    def stop_web(self) -> None:
        if self.web is not None:
            stop_processes([self.web], timeout=20)
            self.web = None

    def viewers(self, n: int, seconds: float) -> subprocess.Popen:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                VIEWERS,
                "127.0.0.1",
                str(self.port),
                f"/streams/{self.stream_id}/live.mjpg",
                self.cookie,
                str(n),
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        return proc

    def page_latency(self, samples: int, timeout: float = 5) -> tuple[float, float, int]:
        """p50 / p95 ms of the stream page, and how many requests timed out."""
        times_ms, timeouts = [], 0
        for _ in range(samples):
            started = time.perf_counter()
            try:
                self.session.get(
                    f"{self.url}/streams/{self.stream_id}", timeout=timeout
                ).raise_for_status()
                times_ms.append((time.perf_counter() - started) * 1000)
            except requests.RequestException:
                timeouts += 1
                if timeouts >= 3:  # starved: no point waiting out every sample
                    break
        times_ms.sort()
        if not times_ms:
            return float("nan"), float("nan"), timeouts
        p95 = times_ms[max(0, int(len(times_ms) * 0.95) - 1)]
        return statistics.median(times_ms), p95, timeouts

    def close(self) -> None:
        self.stop_web()
        stop_processes([self.readers], timeout=20)
        self.redis.terminate()
        self.redis.wait()
        shutil.rmtree(self.data, ignore_errors=True)


def user_sys(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and its descendants, from /proc."""
    user = system = 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        user += (int(fields[11]) + int(fields[13])) / TICK
        system += (int(fields[12]) + int(fields[14])) / TICK
        stack.extend(int(c) for c in children)
    return user, system


def measure_viewers(stack: Stack, n: int, seconds: float) -> dict:
    viewers = stack.viewers(n, seconds + 8)
    time.sleep(6)  # the reader starts, every viewer is receiving
    assert stack.web is not None
    web0, readers0 = user_sys(stack.web.pid), tree_cpu(stack.readers.pid)
    time.sleep(seconds)
    web1, readers = user_sys(stack.web.pid), tree_cpu(stack.readers.pid) - readers0
    web_sys = web1[1] - web0[1]
    web = web1[0] - web0[0] + web_sys
    cpu = web + readers
    ffmpegs = len(
        subprocess.run(
            ["pgrep", "-P", str(stack.readers.pid), "-x", "ffmpeg"],
            capture_output=True,
            text=True,
        ).stdout.split()
    )
    out, _ = viewers.communicate(timeout=60)
    parts = json.loads(out.strip().splitlines()[-1])
    return {
        "viewers": n,
        "cpu_share": cpu / seconds,
        "web_share": web / seconds,
        "web_sys_share": web_sys / seconds,
        "readers_share": readers / seconds,
        "ffmpeg": ffmpegs,
        "parts_min": min(parts),
        "parts_max": max(parts),
        "seconds": seconds + 8,
    }


def bench_threads(stack: Stack, samples: int, layouts: list[tuple[str, tuple[str, ...]]]) -> list:
    rows = []
    for name, args in layouts:
        stack.start_web(args)
        idle = stack.page_latency(samples)
        viewers = stack.viewers(50, 25)
        time.sleep(4)
        busy = stack.page_latency(samples)
        try:
            answers = stack.session.get(
                f"{stack.url}/streams/{stack.stream_id}/live.mjpg", stream=True, timeout=5
            )
            extra = f"HTTP {answers.status_code}"
            answers.close()
        except requests.RequestException:
            extra = "no answer in 5 s"
        viewers.kill()
        viewers.wait()
        stack.stop_web()
        rows.append({"layout": name, "idle": idle, "busy": busy, "extra_viewer": extra})
    return rows


MJPEG_CAMERA = r"""
import io, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from PIL import Image
image = Image.effect_noise((1280, 720), 60).convert("RGB")
out = io.BytesIO(); image.save(out, "JPEG", quality=80); frame = out.getvalue()

class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace;boundary=frame")
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(frame)).encode() + b"\r\n\r\n" + frame + b"\r\n")
                time.sleep(0.1)
        except OSError:
            pass

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
"""


def bench_mjpeg(seconds: float) -> dict:
    """CPU per second: re-publishing an MJPEG camera's parts vs ffmpeg re-encoding them."""
    port = free_port()
    camera = subprocess.Popen(
        [sys.executable, "-c", MJPEG_CAMERA, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert camera.stdout is not None and camera.stdout.readline().strip() == "ready"
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    republish = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "import time, requests\nfrom glimpser.media.imaging import split_jpegs\n"
        "print('ready', flush=True)\n"
        f"r = requests.get('{url}', stream=True)\n"
        "last = 0\nn = 0\n"
        "for jpeg in split_jpegs(iter(lambda: r.raw.read1(65536), b'')):\n"
        f"    if time.monotonic() - last >= {0.9 / LIVE_FPS}:\n"
        "        last = time.monotonic(); n += 1\n"
    )
    ffmpeg = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-i",
        url,
        "-vf",
        f"fps={LIVE_FPS}",
        "-f",
        "image2pipe",
        "-c:v",
        "mjpeg",
        "-q:v",
        "3",
        "pipe:",
    ]
    results = {}
    try:
        for name in ("republish", "ffmpeg"):
            if name == "republish":
                proc = subprocess.Popen(
                    [sys.executable, "-c", republish], stdout=subprocess.PIPE, text=True
                )
                assert proc.stdout is not None
                proc.stdout.readline()  # imports done: count from here
            else:
                proc = subprocess.Popen(ffmpeg, stdout=subprocess.DEVNULL)
            time.sleep(2)
            start = tree_cpu(proc.pid)
            time.sleep(seconds)
            results[name] = (tree_cpu(proc.pid) - start) / seconds
            proc.kill()
            proc.wait()
    finally:
        camera.kill()
        camera.wait()
    return results


def _ms(value: float) -> str:
    return "—" if value != value else f"{value:.0f}"  # NaN: no request answered


def report(
    runs: list[dict], threads: list[dict], mjpeg: dict, web_threads: int, load: float
) -> str:
    one, many = runs[0], runs[-1]
    ratio = many["cpu_share"] / one["cpu_share"] if one["cpu_share"] else float("nan")
    lines = [
        MARK_BEGIN,
        "## Live view (issue 4)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        "by `bench/bench_live.py`. One RTSP stream (the 320×240 test camera) watched at "
        f"`GLIMPSER_LIVE_FPS={LIVE_FPS}`; the viewers are raw sockets in one separate process "
        "and, like the RTSP server, are not counted.",
        "",
        "### CPU: 1 vs 50 viewers",
        "",
        "CPU of gunicorn (2 workers) + `glimpser readers` + its ffmpeg, as a share of one core.",
        "",
        "| viewers | CPU (share of one core) | web | readers + ffmpeg | ffmpeg readers "
        "| parts per viewer (min–max) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run['viewers']} | {run['cpu_share'] * 100:.1f} % | "
            f"{run['web_share'] * 100:.1f} % | {run['readers_share'] * 100:.1f} % | "
            f"{run['ffmpeg']} | "
            f"{run['parts_min']}–{run['parts_max']} in {run['seconds']:.0f} s |"
        )
    lines += [
        "",
        f"50 viewers cost **{ratio:.2f}×** one (goal under 2×: "
        f"{'met' if ratio < 2 else 'missed'}); each further viewer adds "
        f"{(many['cpu_share'] - one['cpu_share']) / 49 * 100:.3f} % of a core, the web "
        f"process writing {LIVE_FPS} parts a second to its socket, against "
        f"{one['readers_share'] * 100:.1f} % for this small camera's reader (a 720p camera's "
        "costs several times more, see the capture section). Of the web process's "
        f"{many['web_share'] * 100:.1f} % with 50 viewers, {many['web_sys_share'] * 100:.1f} % "
        "is kernel time (socket sends, thread wake-ups); the rest is Python: one thread per "
        "viewer resuming its generator and gunicorn writing the part. One reader per "
        "stream; each web process "
        "holds one Redis subscription and fetches each frame once, however many viewers it "
        "serves; a viewer's thread only writes the newest frame to its socket.",
        "",
        "### Pages while 50 live views are open",
        "",
        "Latency of the stream page (sequential requests, ms; a request that got no answer "
        "within 5 s counts as timed out), and what a further live viewer gets.",
        "",
        "| threads per worker | idle p50 / p95 | 50 live views: p50 / p95 | timed out "
        "| one more viewer |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in threads:
        idle, busy = row["idle"], row["busy"]
        lines.append(
            f"| {row['layout']} | {_ms(idle[0])} / {_ms(idle[1])} | {_ms(busy[0])} / "
            f"{_ms(busy[1])} | {busy[2]} | {row['extra_viewer']} |"
        )
    lines += [
        "",
        f"Chosen from these numbers: each gunicorn worker runs `GLIMPSER_WEB_THREADS` "
        f"(default {web_threads}) threads for ordinary requests **plus** a pool of "
        f"8 × `GLIMPSER_WEB_THREADS` for live views (`glimpser/gunicorn_conf.py`), and the app "
        "answers `503 Too many live views` (with `Retry-After`) beyond that pool "
        "(`glimpser/web/live.py`), so open live views can never take the threads pages "
        "need. A live view waits on a lock of its own between frames: a parked thread "
        "costs memory, not CPU, so gevent was not needed.",
        "",
        "### MJPEG cameras: re-publish the parts, or ffmpeg",
        "",
        f"CPU while following an MJPEG camera (1280×720, 10 fps, a loopback server in its own "
        f"process) at {LIVE_FPS} fps, share of one core.",
        "",
        "| method | CPU |",
        "|---|---:|",
        f"| re-publish the camera's JPEG parts (Glimpser) | {mjpeg['republish'] * 100:.1f} % |",
        f"| ffmpeg decode + re-encode | {mjpeg['ffmpeg'] * 100:.1f} % |",
        "",
        "Chosen: the MJPEG live reader re-publishes the camera's own parts (no process, "
        "nothing decoded or re-encoded).",
        "",
        f"Load average when the run started: {load:.2f} (other work on the machine makes "
        "these numbers noisier; the 1-vs-50 ratio moves by a few tenths between runs).",
        MARK_END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    seconds, samples = (8, 20) if args.quick else (20, 40)
    load = os.getloadavg()[0]
    media = Path(tempfile.mkdtemp(prefix="g-bench-media-"))
    make_media(media)
    rtsp = RtspServer(media / "test.mp4")
    stack = Stack(f"{rtsp.url}/test")
    try:
        stack.start_web()
        runs = [measure_viewers(stack, n, seconds) for n in (1, 50)]
        stack.stop_web()
        from glimpser.config import load_settings

        web_threads = load_settings(stack.env).web_threads
        threads = bench_threads(
            stack,
            samples,
            [
                (
                    f"{web_threads} + {8 * web_threads} for live views (Glimpser)",
                    (),
                ),
                (f"{web_threads}, shared (plain gthread)", ("--threads", str(web_threads))),
            ],
        )
        mjpeg = bench_mjpeg(seconds)
    finally:
        stack.close()
        rtsp.stop()
        shutil.rmtree(media, ignore_errors=True)
    section = report(runs, threads, mjpeg, web_threads, load)
    write_section("live", section)
    print(section)


if __name__ == "__main__":
    main()
