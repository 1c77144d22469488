"""Small helpers the tests share: ports, waiting, Redis, CSRF-aware form posts, signed-in
clients, and rows (streams, snapshots) made through the real models and storage."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import requests

PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parent.parent

_CSRF_FIELD = re.compile(
    r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"'
)
_CSRF_HEADER = re.compile(r'"X-CSRFToken": "([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 20, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s: {last}")


def start_nginx(
    prefix: Path,
    http: str,
    probe_url: str,
    worker_processes: int = 1,
    worker_connections: int = 1024,
    timeout: float = 60,
) -> subprocess.Popen:
    """A private nginx (foreground, every file under `prefix`) with `http` inside its `http {}`
    block; returns once `probe_url` gets any HTTP answer.

    The scaffolding is the same for the tests and the benches so each only writes what it
    measures or checks: its servers and tuning. As root, nginx's workers would drop to nobody
    and could not read files under a root-owned temp dir, hence `user root`. The config is
    checked with `nginx -t` first so a bad one fails with nginx's own words; the timeout only
    ends a hung start."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes {worker_processes};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ image/jpeg jpg; }}
{http}
}}
"""
    )
    command = ["nginx", "-p", str(prefix), "-c", str(conf)]
    tested = subprocess.run([*command[:1], "-t", *command[1:]], capture_output=True, text=True)
    if tested.returncode != 0:
        raise RuntimeError(f"nginx -t refused {conf}: {tested.stderr}")
    proc = subprocess.Popen(command)
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(probe_url, timeout=2)
            return proc
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                log = prefix / "error.log"
                raise RuntimeError(
                    f"nginx did not answer {probe_url}: {log.read_text() if log.exists() else ''}"
                ) from None
            time.sleep(0.05)


def pictures_nginx_block(include: Path, snapshots: Path) -> str:
    """docs/deploy.md's `location /pictures/` block ("Pictures served by nginx") pointed at
    this run's include file and snapshot directory: read from the document itself, so what
    the test checks and the bench measures is what operators are told to paste."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"<!-- pictures-nginx:begin -->\n```nginx\n(.*?)```", doc, re.S)
    if block is None:
        raise LookupError("docs/deploy.md lost its 'Pictures served by nginx' block")
    return (
        block.group(1)
        .replace("/etc/nginx/glimpser-pictures.conf", str(include))
        .replace("/var/lib/glimpser/snapshots/", f"{snapshots}/")
    )


def start_redis(workdir: Path, timeout: float = 10) -> tuple[subprocess.Popen, str]:
    """A real redis-server (no persistence) on a free loopback port; returns (process, URL)."""
    import redis as redis_lib

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
        stderr=subprocess.DEVNULL,
    )
    client = redis_lib.Redis(port=port)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            break
        except redis_lib.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


def run_cli(args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 60):
    """`python -m glimpser.cli ARGS` from the repo root with env on top of os.environ (the
    timeout only ends a hung run)."""
    return subprocess.run(
        [sys.executable, "-m", "glimpser.cli", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shoot_widths(page, out_dir: Path, name: str, keep_in: Path | None = None) -> None:  # noqa: ANN001
    """Full-page screenshots at 1920, 1280 and 390 px, light and dark, into out_dir; also
    copied into `keep_in` (docs/screenshots/) when GLIMPSER_SCREENSHOTS=1."""
    import shutil

    for width, scheme in ((w, s) for w in (1920, 1280, 390) for s in ("light", "dark")):
        page.emulate_media(color_scheme=scheme)
        page.set_viewport_size({"width": width, "height": 1000 if width > 400 else 844})
        shot = out_dir / f"{name}-{width}-{scheme}.png"
        page.screenshot(path=str(shot), full_page=True)
        if keep_in is not None and os.environ.get("GLIMPSER_SCREENSHOTS") == "1":
            shutil.copy(shot, keep_in / shot.name)


def csrf_from(html: str) -> str:
    """The CSRF token from a rendered form (or the page's htmx header)."""
    match = _CSRF_FIELD.search(html)
    if match:
        return match.group(1) or match.group(2)
    match = _CSRF_HEADER.search(html)
    assert match, "page carries no CSRF token"
    return match.group(1)


def form_post(
    client, page_url: str, post_url: str | None = None, data: dict | None = None, **kwargs
):
    """GET a page for its CSRF token, then POST the form as a browser would (test client)."""
    page = client.get(page_url)
    token = csrf_from(page.get_data(as_text=True))
    return client.post(post_url or page_url, data={"csrf_token": token, **(data or {})}, **kwargs)


def setup_admin(client, username: str = "admin", password: str = PASSWORD):
    """Complete first-run setup; the client is signed in as that admin afterwards."""
    response = form_post(
        client, "/setup", data={"username": username, "password": password, "confirm": password}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


@contextmanager
def jobs_configured(app) -> Iterator:
    """Point glimpser.jobs (what RQ jobs run with) at app's settings, and back afterwards."""
    from glimpser import jobs

    jobs.configure(app.extensions["glimpser.settings"])
    try:
        yield app
    finally:
        jobs.configure(None)


def signed_in_admin(app, username: str = "alice", password: str = PASSWORD):
    """A test client of app, signed in as the first-run admin (the usual `admin` fixture)."""
    client = app.test_client()
    setup_admin(client, username, password)
    return client


def login(client, username: str, password: str):
    return form_post(client, "/login", data={"username": username, "password": password})


def logout(client):
    return form_post(client, "/", "/logout")


def first_run_in_browser(
    page,
    url: str,
    username: str = "alice",  # noqa: ANN001
    password: str = PASSWORD,
) -> None:
    """Create the first admin through /setup in a real browser; it is signed in afterwards."""
    from playwright.sync_api import expect

    page.goto(url + "/setup")
    page.get_by_label("Admin username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Repeat password").fill(password)
    page.get_by_role("button", name="Create administrator").click()
    expect(page).to_have_url(url + "/")


def labelled(html: str) -> None:
    """Every visible input, select and textarea of a rendered form has a <label for=...>."""
    labels = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', html))
    for attrs in re.findall(r"<(?:input|select|textarea)\b([^>]*)>", html):
        if 'type="hidden"' in attrs:
            continue
        ident = re.search(r'\bid="([^"]+)"', attrs)
        assert ident and ident.group(1) in labels, attrs


def add_stream(name: str, **fields: object):
    """An http_image stream row (its camera address is never reached)."""
    from glimpser.db import database
    from glimpser.models import Stream

    with database.connection_context():
        return Stream.create(
            name=name,
            kind="http_image",
            config={"kind": "http_image", "url": "http://192.0.2.1/x.jpg"},
            **fields,
        )


def paused_stream(name: str = "Garden"):
    """A disabled, paused http_image stream (nothing captures it); call in a connection."""
    from glimpser.models import Stream

    return Stream.create(
        name=name,
        kind="http_image",
        config={"kind": "http_image", "url": "http://192.168.1.50/snapshot.jpg"},
        enabled=False,
        state="paused",
    )


def add_snapshot(app, stream, picture: bytes, seconds_ago: float = 0):
    """Store a picture through the real storage backend and snapshot code."""
    from PIL import Image

    from glimpser import times
    from glimpser.db import database
    from glimpser.media.snapshots import save_snapshot
    from glimpser.media.storage import get_storage
    from glimpser.sources.base import Frame

    image = Image.open(io.BytesIO(picture))
    frame = Frame(jpeg=picture, width=image.width, height=image.height)
    at = times.utcnow() - timedelta(seconds=seconds_ago)
    storage = get_storage(app.extensions["glimpser.settings"])
    with database.connection_context():
        snap = save_snapshot(stream, frame, at, storage, store_identical=True)
    assert snap is not None
    return snap


def s3_presigned_settings(endpoint: str, bucket: str) -> dict[str, str]:
    """Settings for signed pictures stored in an S3 bucket (moto's server in the tests), each
    signed URL redirecting to a presigned bucket URL: the set-up of every presigned test."""
    return {
        "GLIMPSER_SIGNED_PICTURES": "1",
        "GLIMPSER_S3_PRESIGNED_PICTURES": "1",
        "GLIMPSER_STORAGE": "s3",
        "GLIMPSER_S3_BUCKET": bucket,
        "GLIMPSER_S3_ENDPOINT_URL": endpoint,
        "GLIMPSER_S3_REGION": "us-east-1",
    }
