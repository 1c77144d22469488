"""Shared fixtures: real Redis, a throwaway PostgreSQL cluster, apps, live servers, Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import redis as redis_lib
import requests

from glimpser.sources import website
from tests.helpers import ROOT, free_port, jobs_configured, start_redis, wait_for_http

PG_BIN = Path(os.environ.get("GLIMPSER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
CHROMIUM = os.environ.get("GLIMPSER_CHROMIUM", "/usr/bin/chromium")


# --- Redis ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free loopback port for the whole session."""
    workdir = Path(tempfile.mkdtemp(prefix="glimpser-redis-"))
    proc, url = start_redis(workdir)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def redis_client(redis_url: str) -> redis_lib.Redis:
    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    return client


# --- PostgreSQL -----------------------------------------------------------------------------


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb refuses to run as root; the cluster belongs to the `postgres` user then.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster on a free port; yields a DSN for the admin database."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL binaries not found in {PG_BIN} (run `make setup`)")
    base = Path(tempfile.mkdtemp(prefix="glimpser-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, log = base / "data", base / "log"
    port = free_port()
    subprocess.run(
        _as_postgres(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-o",
                f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off",
            ]
        )
        + ["start"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    yield f"postgresql://postgres@127.0.0.1:{port}"
    subprocess.run(
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
        stdout=subprocess.DEVNULL,
        check=False,
    )
    shutil.rmtree(base, ignore_errors=True)


def _new_postgres_database(dsn: str) -> str:
    name = f"glimpser_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(f"{dsn}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"{dsn}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'glimpser.db'}"
    return _new_postgres_database(request.getfixturevalue("postgres_dsn"))


# --- apps -----------------------------------------------------------------------------------


def make_env(
    data_dir: Path, redis_url: str, database_url: str | None = None, **extra: str
) -> dict[str, str]:
    env = {
        "GLIMPSER_DATA_DIR": str(data_dir),
        "GLIMPSER_REDIS_URL": redis_url,
        "GLIMPSER_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "GLIMPSER_LOG_LEVEL": "WARNING",
    }
    if database_url:
        env["GLIMPSER_DATABASE_URL"] = database_url
    env.update(extra)
    return env


@pytest.fixture
def app_factory(tmp_path: Path, redis_client: redis_lib.Redis, redis_url: str):
    """Build an app on SQLite (or a given database URL) with extra GLIMPSER_* settings."""
    from glimpser import create_app
    from glimpser.config import load_settings

    def build(database_url: str | None = None, **extra: str):
        env = make_env(tmp_path / "data", redis_url, database_url, **extra)
        app = create_app(load_settings(env))
        app.config["TESTING"] = True
        return app

    return build


@pytest.fixture
def app(app_factory):
    return app_factory()


@pytest.fixture
def db_app(app_factory, database_url: str):
    """The app on SQLite and on PostgreSQL."""
    return app_factory(database_url)


@pytest.fixture
def client(app):
    return app.test_client()


# --- live server (gunicorn, exactly as `glimpser web` runs it) ------------------------------


class LiveServer:
    def __init__(self, url: str, env: dict[str, str], proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.env = env
        self.proc = proc


def start_live_server(data_dir: Path, redis_url: str, **extra: str) -> LiveServer:
    port = free_port()
    env = {
        **os.environ,
        **make_env(data_dir, redis_url, GLIMPSER_PORT=str(port), GLIMPSER_WEB_WORKERS="2", **extra),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "glimpser.cli", "web"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/healthz", timeout=120, proc=proc)  # generous: a loaded machine
    except Exception:
        proc.kill()
        raise
    return LiveServer(url, env, proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def live_server(tmp_path: Path, redis_url: str, redis_client) -> Iterator[LiveServer]:
    server = start_live_server(tmp_path / "live-data", redis_url)
    yield server
    stop_process(server.proc)


# --- Playwright with Debian Chromium ---------------------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    # Never `playwright install`: the system Chromium is the browser.
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": website.CHROMIUM_ARGS}


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


# --- capture peers (see tests/media_servers.py) ---------------------------------------------


@pytest.fixture(scope="session")
def camera():
    """A loopback HTTP camera: still image, auth, MJPEG, and failure endpoints."""
    from tests.media_servers import start_camera_server

    server, state = start_camera_server()
    server.state = state
    yield server
    server.stop()


@pytest.fixture(scope="session")
def media_root(tmp_path_factory) -> Path:
    from tests.media_servers import make_media

    root = tmp_path_factory.mktemp("media")
    make_media(root)
    return root


@pytest.fixture(scope="session")
def media_server(media_root: Path):
    from tests.media_servers import start_file_server

    server = start_file_server(media_root)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rtsp(media_root: Path):
    """The GStreamer RTSP camera from ../shared/fixtures (mounts /test, /still, /file)."""
    from tests.media_servers import RtspServer

    server = RtspServer(media_root / "test.mp4")
    yield server
    server.stop()


@pytest.fixture
def capture_app(app_factory, media_root: Path):
    """An app whose sources may reach loopback (the test peers), media dir = test media."""
    app = app_factory(GLIMPSER_ALLOW_LOOPBACK_SOURCES="1", GLIMPSER_MEDIA_DIR=str(media_root))
    with jobs_configured(app):
        yield app


def run_queued_jobs(
    app, queues: tuple[str, ...] = ("schedule", "capture", "browser"), wait_for_scheduled: float = 0
) -> None:
    """Run every queued job in this process with a real RQ SimpleWorker (burst mode).

    With wait_for_scheduled, first wait that long and let RQ's scheduler enqueue the jobs
    scheduled (enqueue_at) until then, as the scheduler thread of a real worker would.
    """
    from rq import SimpleWorker
    from rq.scheduler import RQScheduler

    from glimpser.queues import get_queue, worker_queues

    connection = app.extensions["glimpser.redis"]
    queues = tuple(worker_queues(queues))  # "analysis" is both analysis queues, as in a worker
    if wait_for_scheduled:
        time.sleep(wait_for_scheduled)
        scheduler = RQScheduler(list(queues), connection=connection)
        scheduler.acquire_locks()
        scheduler.enqueue_scheduled_jobs()
        scheduler.release_locks()
    worker = SimpleWorker([get_queue(q, connection) for q in queues], connection=connection)
    worker.work(burst=True, with_scheduler=False, logging_level="WARNING")


class LiveStack(LiveServer):
    """gunicorn + an RQ worker + the cron scheduler, as `glimpser serve` runs them."""

    def __init__(self, server: LiveServer, others: list[subprocess.Popen[bytes]]) -> None:
        super().__init__(server.url, server.env, server.proc)
        self.others = others


def start_live_stack(data_dir: Path, redis_url: str, media_root: Path, **extra: str) -> LiveStack:
    """gunicorn, one worker and the scheduler on `data_dir`, with `extra` GLIMPSER_* settings."""
    server = start_live_server(
        data_dir,
        redis_url,
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_MEDIA_DIR=str(media_root),
        **extra,
    )
    others = [
        subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", *args],
            env=server.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        for args in (["worker"], ["scheduler"])
    ]
    return LiveStack(server, others)


def stop_live_stack(stack: LiveStack) -> None:
    for proc in [*stack.others, stack.proc]:
        stop_process(proc)


@pytest.fixture
def live_stack(tmp_path: Path, redis_url: str, redis_client, media_root: Path):
    stack = start_live_stack(tmp_path / "stack-data", redis_url, media_root)
    yield stack
    stop_live_stack(stack)


@pytest.fixture
def openai_server():
    """A loopback OpenAI-compatible server (tests/openai_server.py); script its replies."""
    from tests.openai_server import FakeOpenAI

    server = FakeOpenAI().start()
    yield server
    server.stop()
