"""The `glimpser` command, run as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib
import requests
from rq import Queue

from glimpser import db
from glimpser.models import User
from tests.conftest import ROOT, make_env, stop_process
from tests.helpers import free_port, wait_for_http


def run_cli(args: list[str], env: dict[str, str], stdin: str | None = None):
    return subprocess.run(
        [sys.executable, "-m", "glimpser.cli", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_user_reads_the_password_from_stdin(tmp_path, redis_url, database_url):
    env = make_env(tmp_path, redis_url, database_url)
    result = run_cli(["create-user", "carol", "--role", "admin"], env, stdin="a long password\n")
    assert result.returncode == 0, result.stderr
    assert "created admin 'carol'" in result.stdout
    assert "a long password" not in result.stdout + result.stderr
    database = db.init_database(database_url)
    with database.connection_context():
        user = User.get(User.username == "carol")
        assert user.role == "admin" and user.password_hash.startswith("$argon2id$")


def test_create_user_has_no_password_argument(tmp_path, redis_url):
    result = run_cli(["create-user", "--help"], make_env(tmp_path, redis_url))
    assert "--password" not in result.stdout


def test_create_user_refuses_a_weak_password_and_a_taken_name(tmp_path, redis_url):
    env = make_env(tmp_path, redis_url)
    weak = run_cli(["create-user", "dave"], env, stdin="short\n")
    assert weak.returncode == 2 and "at least 12 characters" in weak.stderr
    assert run_cli(["create-user", "dave"], env, stdin="long enough pw\n").returncode == 0
    taken = run_cli(["create-user", "DAVE"], env, stdin="long enough pw\n")
    assert taken.returncode == 2 and "taken" in taken.stderr


def test_create_user_closes_first_run_setup(tmp_path, redis_url, app_factory):
    env = make_env(tmp_path / "data", redis_url)
    assert (
        run_cli(
            ["create-user", "erin", "--role", "admin"], env, stdin="long enough pw\n"
        ).returncode
        == 0
    )
    app = app_factory()
    assert app.test_client().get("/setup").status_code == 404


@pytest.mark.slow
def test_scheduler_enqueues_cron_jobs_and_a_worker_runs_them(tmp_path, redis_url, redis_client):
    from glimpser.jobs import CRON_JOBS

    env = {**os.environ, **make_env(tmp_path, redis_url, GLIMPSER_LOG_LEVEL="INFO")}
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "glimpser.cli", "scheduler"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    expected = {f"{func.__module__}.{func.__name__}" for func, _queue, _every in CRON_JOBS}
    queues = {queue for _func, queue, _every in CRON_JOBS}
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            jobs = [job for q in queues for job in Queue(q, connection=redis_client).jobs]
            if {job.func_name for job in jobs} >= expected:
                break
            time.sleep(0.1)
        assert {job.func_name for job in jobs} >= expected, "the scheduler missed a cron job"
    finally:
        stop_process(scheduler)
    assert run_cli(["migrate"], make_env(tmp_path, redis_url)).returncode == 0
    worker = run_cli(
        ["worker", "--burst", "--queues", ",".join(sorted(queues))],
        make_env(tmp_path, redis_url, GLIMPSER_LOG_LEVEL="INFO"),
    )
    assert worker.returncode == 0, worker.stderr
    for job in jobs:
        job.refresh()
        assert job.get_status() == "finished", (job.func_name, job.exc_info)
        assert f'"job": "{job.func_name.rsplit(".", 1)[1]}"' in worker.stderr


def test_worker_refuses_unknown_queues(tmp_path, redis_url):
    result = run_cli(["worker", "--queues", "nope"], make_env(tmp_path, redis_url))
    assert result.returncode == 2 and "unknown queue" in result.stderr


def test_worker_explains_when_the_private_redis_is_not_running(tmp_path):
    env = {"GLIMPSER_DATA_DIR": str(tmp_path)}
    result = run_cli(["worker"], env)
    assert result.returncode == 2
    assert "glimpser serve" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_serve_runs_everything_with_a_private_redis_and_stops_it(tmp_path):
    data_dir = Path(tempfile_short_dir())
    port = free_port()
    env = {
        **os.environ,
        "GLIMPSER_DATA_DIR": str(data_dir),
        "GLIMPSER_PORT": str(port),
        "GLIMPSER_LOG_LEVEL": "INFO",
        "GLIMPSER_WORKERS": "1",
    }
    env.pop("GLIMPSER_REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "glimpser.cli", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=proc)
        sock = data_dir / "redis.sock"
        assert sock.exists()
        ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        setup = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert setup.url.endswith("/setup?next=/") and "Welcome to Glimpser" in setup.text
        client = redis_lib.Redis(unix_socket_path=str(sock))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not client.smembers("rq:workers"):
            time.sleep(0.2)
        assert client.smembers("rq:workers"), "no RQ worker registered with the private Redis"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=40)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, output
    assert '"private redis stopped"' in output
    with pytest.raises(redis_lib.ConnectionError):
        redis_lib.Redis(unix_socket_path=str(data_dir / "redis.sock"), socket_timeout=1).ping()
    assert (data_dir / "glimpser.db").exists()


def tempfile_short_dir() -> str:
    # The private Redis listens on a unix socket, whose path must stay short.
    import tempfile

    return tempfile.mkdtemp(prefix="g-serve-", dir="/tmp")


def test_serve_refuses_a_busy_port(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            ["serve"], {"GLIMPSER_DATA_DIR": str(tmp_path), "GLIMPSER_PORT": str(port)}
        )
    assert result.returncode == 2 and "cannot listen" in result.stderr
