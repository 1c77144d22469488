"""Web benchmarks (issue 4), written to docs/benchmarks.md between the web markers.

1. Dashboard grid fragment, server time p50/p95 (from Glimpser's own request log) with 100
   and 500 streams — real rows and snapshot files — through gunicorn as `glimpser web` runs
   it: the fragment rendered in full (something changed) and the unchanged poll (204).
2. Latest-snapshot serving throughput with wrk: gunicorn (session check, per-stream access,
   sendfile) against a private nginx serving the same file in the same run, and nginx in
   front of gunicorn with X-Accel-Redirect (the setup the README describes).

Run: `make bench` (or `.venv/bin/python bench/bench_web.py [--quick]`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import requests
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import markers, write_section  # noqa: E402

from tests.helpers import csrf_from, free_port, start_nginx, wait_for_http  # noqa: E402

MARK_BEGIN, MARK_END = markers("web")
PASSWORD = "correct horse battery"


# --- fixtures: Redis, data, servers --------------------------------------------------------


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def camera_picture(seed: int, size: tuple[int, int] = (1280, 720)) -> bytes:
    """A photo-like 720p JPEG (gradients, shapes, blur and grain), about what a camera sends."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        w, h = rng.randrange(20, 400), rng.randrange(20, 300)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle((x, y, x + w, y + h), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(3))
    grain = Image.effect_noise(size, 24).convert("RGB")
    image = Image.blend(image, grain, 0.15)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def env_for(data_dir: Path, redis_url: str, port: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "GLIMPSER_DATA_DIR": str(data_dir),
        "GLIMPSER_REDIS_URL": redis_url,
        "GLIMPSER_SECRET_KEY": "bench-secret-key-0123456789abcdef",
        "GLIMPSER_SECURE_COOKIES": "0",
        "GLIMPSER_PORT": str(port),
        "GLIMPSER_LOG_LEVEL": "INFO",  # as shipped: one request log line per request
        **extra,
    }


def seed(env: dict[str, str], first: int, count: int, snaps_per_stream: int) -> None:
    """Streams with real snapshot files and rows, written by Glimpser's own code."""
    from glimpser import db, times
    from glimpser.auth.users import create_user
    from glimpser.config import load_settings
    from glimpser.media.snapshots import save_snapshot
    from glimpser.media.storage import get_storage
    from glimpser.models import Stream, User
    from glimpser.sources.base import Frame

    settings = load_settings(env)
    db.init_database(settings.database_url)
    db.migrate()
    storage = get_storage(settings)
    pictures = [camera_picture(i) for i in range(8)]
    now = times.utcnow()
    with db.database.connection_context():
        if not User.select().exists():
            create_user("admin", PASSWORD, "admin", first_run=True)
        for i in range(first, first + count):
            failing = i % 10 == 0
            stream = Stream.create(
                name=f"Camera {i:04d}",
                kind="http_image",
                config={"kind": "http_image", "url": f"http://192.0.2.{i % 250 + 1}/snap.jpg"},
                groups=["outdoor" if i % 2 else "indoor", f"site-{i % 7}"],
                state="failing" if failing else "ok",
                last_error="HTTP 503 from the camera" if failing else "",
                last_capture_at=now - timedelta(seconds=i % 60),
            )
            for k in range(snaps_per_stream):
                jpeg = pictures[(i + k) % len(pictures)]
                at = now - timedelta(seconds=60 * (snaps_per_stream - k) + i % 60)
                frame = Frame(jpeg=jpeg, width=1280, height=720)
                save_snapshot(stream, frame, at, storage, store_identical=True)
    db.database.close()


class Gunicorn:
    """`glimpser web` (gunicorn, gthread) with its request log captured for server times."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{env['GLIMPSER_PORT']}"
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", "web"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        wait_for_http(self.url + "/healthz", timeout=30, proc=self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()

    def server_ms(self, path: str, status: int, since: int) -> list[float]:
        """Server-side times of requests to `path` answered with `status`, from byte `since`."""
        out = []
        with self.log_path.open("rb") as handle:
            handle.seek(since)
            for line in handle:
                if b'"request"' not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("path") == path and entry.get("status") == status:
                    out.append(float(entry["ms"]))
        return out

    def log_size(self) -> int:
        self.log.flush()
        return self.log_path.stat().st_size


def signed_in(url: str) -> requests.Session:
    session = requests.Session()
    token = csrf_from(session.get(url + "/login").text)
    response = session.post(
        url + "/login",
        data={"csrf_token": token, "username": "admin", "password": PASSWORD},
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:300]
    return session


# The nginx tuning both web benches (this one and bench_pictures.py) measure with: no access
# log, sendfile, long keep-alive for wrk's connections, and Glimpser's gunicorn as upstream,
# proxied the way docs/deploy.md's "nginx in front" does. Written once so the two benches'
# nginx rows stay comparable.
NGINX_SERVING = """
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    upstream glimpser {{ server 127.0.0.1:{gunicorn_port}; keepalive 32; }}
"""
NGINX_PROXY_TO_APP = """
        location / {
            proxy_pass http://glimpser;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
"""


def start_bench_nginx(
    tmp: Path, gunicorn_port: int, servers: str, probe_url: str
) -> subprocess.Popen:
    """nginx (2 workers) with NGINX_SERVING and the bench's own `servers`."""
    return start_nginx(
        tmp,
        NGINX_SERVING.format(gunicorn_port=gunicorn_port) + servers,
        probe_url,
        worker_processes=2,
        worker_connections=1024,
    )


NGINX_SERVERS = """
    # The same snapshot file, served by nginx alone.
    server {{
        listen 127.0.0.1:{static_port};
        location /files/ {{ alias {snapshots}/; }}
    }}
    # nginx in front of Glimpser, pictures handed over with X-Accel-Redirect (see README).
    server {{
        listen 127.0.0.1:{proxy_port};
{proxy_to_app}
        location /_snapshots/ {{
            internal;
            alias {snapshots}/;
            add_header X-Content-Type-Options nosniff;
        }}
    }}
"""


def start_web_nginx(
    tmp: Path, snapshots: Path, gunicorn_port: int
) -> tuple[subprocess.Popen, int, int]:
    static_port, proxy_port = free_port(), free_port()
    servers = NGINX_SERVERS.format(
        static_port=static_port,
        proxy_port=proxy_port,
        snapshots=snapshots,
        proxy_to_app=NGINX_PROXY_TO_APP,
    )
    proc = start_bench_nginx(tmp, gunicorn_port, servers, f"http://127.0.0.1:{static_port}/")
    return proc, static_port, proxy_port


# --- measurements --------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def bench_dashboard(server: Gunicorn, session: requests.Session, n: int) -> dict:
    htmx = {"HX-Request": "true"}
    for _ in range(10):  # warm-up: imports, templates, connections
        session.get(server.url + "/", headers=htmx)
    start = server.log_size()
    fragment = session.get(server.url + "/", headers=htmx)
    assert fragment.status_code == 200
    version = re.search(r'data-version="([0-9a-f]+)"', fragment.text).group(1)
    for _ in range(n):
        assert session.get(server.url + "/", headers=htmx).status_code == 200
    for _ in range(n):
        response = session.get(server.url + "/", params={"v": version}, headers=htmx)
        assert response.status_code == 204, response.status_code
    time.sleep(0.5)
    full = server.server_ms("/", 200, start)[1:]
    unchanged = server.server_ms("/", 204, start)
    cards = fragment.text.count('class="card"')
    return {
        "cards": cards,
        "bytes": len(fragment.content),
        "full_p50": statistics.median(full),
        "full_p95": pct(full, 95),
        "poll_p50": statistics.median(unchanged),
        "poll_p95": pct(unchanged, 95),
    }


def wrk(url: str, seconds: int, cookie: str | None, *headers: str) -> dict:
    cmd = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    if cookie:
        cmd += ["-H", f"Cookie: {cookie}"]
    for header in headers:
        cmd += ["-H", header]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)

    def ms(match: re.Match | None) -> float:
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rate": rate,
        "errors": int(non2xx.group(1)) if non2xx else 0,
        "p50": ms(p50),
        "p99": ms(p99),
    }


# --- report --------------------------------------------------------------------------------


def report(
    dashboards: list[dict], serving: dict, picture_bytes: int, seconds: int, load: tuple
) -> str:
    nginx = serving["nginx"]["rate"]
    lines = [
        MARK_BEGIN,
        "## Web (issue 4)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        "by `bench/bench_web.py`: gunicorn as `glimpser web` runs it (2 workers × 8 threads, "
        "SQLite, request log on), with real stream rows and snapshot files.",
        "",
        "### Dashboard grid fragment (server time, from Glimpser's request log)",
        "",
        "| streams | fragment size | rendered (200) p50 / p95 | unchanged poll (204) p50 / p95 |",
        "|---:|---:|---:|---:|",
    ]
    for d in dashboards:
        lines.append(
            f"| {d['cards']} | {d['bytes'] / 1024:.0f} KiB | {d['full_p50']:.1f} / "
            f"{d['full_p95']:.1f} ms | {d['poll_p50']:.1f} / {d['poll_p95']:.1f} ms |"
        )
    lines += [
        "",
        "Each open dashboard polls every 5 s; while nothing changed the answer is an empty 204 "
        "and the pictures are never fetched again (per-snapshot thumbnail URLs are immutable).",
        "",
        "### Latest snapshot (`/streams/<id>/snapshot.jpg`), wrk, 16 connections, "
        f"{seconds} s each",
        "",
        f"The picture is a {picture_bytes / 1024:.0f} KiB 1280×720 JPEG. "
        "wrk, nginx and gunicorn share the same 2 cores.",
        "",
        "| served by | requests/s | latency p50 | p99 | non-2xx | share of nginx |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "nginx": "nginx alone (static file, the floor)",
        "gunicorn": "Glimpser under gunicorn (login, access check, sendfile)",
        "accel": "nginx → Glimpser, X-Accel-Redirect",
        "revalidated": "Glimpser under gunicorn, browser has it (304)",
        "healthz": "gunicorn + Flask floor: `/healthz` (no session, no query, no file)",
    }
    for key in ("nginx", "gunicorn", "accel", "revalidated", "healthz"):
        r = serving[key]
        lines.append(
            f"| {labels[key]} | {r['rate']:.0f} | {r['p50']:.2f} ms | {r['p99']:.2f} ms | "
            f"{r['errors']} | {r['rate'] / nginx * 100:.0f} % |"
        )
    share = serving["gunicorn"]["rate"] / nginx
    floor = serving["healthz"]["rate"]
    python_rates = [serving[k]["rate"] for k in ("gunicorn", "accel", "revalidated")]
    lines += [
        "",
        f"Goal: gunicorn at least 50 % of nginx's rate — **{'met' if share >= 0.5 else 'missed'}** "
        f"({share * 100:.0f} %). Sending the file is not the cost: with sendfile, with nginx "
        "sending it (X-Accel-Redirect) and with nothing sent (304) Glimpser manages "
        f"{min(python_rates):.0f}–{max(python_rates):.0f} requests/s. The cost is Python per "
        f"request: `/healthz` alone reaches {floor / nginx * 100:.0f} % of nginx, and a picture "
        "adds the session (Redis), the user and the access-checked snapshot query. In use, "
        "browsers rarely ask: history and dashboard pictures are immutable per-snapshot URLs, "
        "and the latest-picture URL is revalidated (304).",
        "",
        f"Load average when the run started: {load[0]:.2f} (other work on the machine makes "
        "these numbers noisier).",
        MARK_END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter wrk runs")
    args = parser.parse_args()
    requests_per_case, wrk_seconds = (50, 5) if args.quick else (300, 15)
    load = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="g-bench-web-"))
    redis_proc, redis_url = start_redis(tmp)
    data_dir = tmp / "data"
    port, accel_port = free_port(), free_port()
    env = env_for(data_dir, redis_url, port)
    servers: list[Gunicorn] = []
    nginx = None
    try:
        seed(env, 1, 100, 3)
        server = Gunicorn(env, tmp / "gunicorn.log")
        servers.append(server)
        session = signed_in(server.url)
        dashboards = [bench_dashboard(server, session, requests_per_case)]
        seed(env, 101, 400, 3)
        dashboards.append(bench_dashboard(server, session, requests_per_case))

        accel_env = env_for(
            data_dir, redis_url, accel_port, GLIMPSER_ACCEL_REDIRECT_PREFIX="/_snapshots/"
        )
        accel = Gunicorn(accel_env, tmp / "gunicorn-accel.log")
        servers.append(accel)
        snapshots = data_dir / "snapshots"
        nginx, static_port, proxy_port = start_web_nginx(tmp, snapshots, accel_port)

        latest = session.get(server.url + "/streams/1/snapshot.jpg")
        assert latest.status_code == 200
        sha = latest.headers["ETag"].strip('"')
        key = next((snapshots / "1").rglob(f"*-{sha[:12]}.jpg")).relative_to(snapshots)
        static = requests.get(f"http://127.0.0.1:{static_port}/files/{key}")
        assert static.content == latest.content, "nginx and Glimpser must send the same file"
        proxied = session.get(f"http://127.0.0.1:{proxy_port}/streams/1/snapshot.jpg")
        assert proxied.content == latest.content, proxied.status_code
        assert proxied.headers.get("Cache-Control") == "private, no-cache", proxied.headers
        assert proxied.headers.get("Content-Type") == "image/jpeg", proxied.headers
        cookie = f"glimpser_session={session.cookies['glimpser_session']}"
        serving = {
            "nginx": wrk(f"http://127.0.0.1:{static_port}/files/{key}", wrk_seconds, None),
            "gunicorn": wrk(f"{server.url}/streams/1/snapshot.jpg", wrk_seconds, cookie),
            "accel": wrk(
                f"http://127.0.0.1:{proxy_port}/streams/1/snapshot.jpg", wrk_seconds, cookie
            ),
            "revalidated": wrk(
                f"{server.url}/streams/1/snapshot.jpg",
                wrk_seconds,
                cookie,
                f"If-None-Match: {latest.headers['ETag']}",
            ),
            "healthz": wrk(f"{server.url}/healthz", wrk_seconds, None),
        }
        picture_bytes = len(latest.content)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
        for server in servers:
            server.stop()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    section = report(dashboards, serving, picture_bytes, wrk_seconds, load)
    write_section("web", section)
    print(section)


if __name__ == "__main__":
    main()
