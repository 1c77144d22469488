"""`glimpser serve` says its URL when the web app answers, and Ctrl-C stops it cleanly.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group; the test does the
same to a `glimpser serve` started in a process group of its own, with a private Redis.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import ROOT, free_port

pytestmark = pytest.mark.slow  # the whole set of processes

RUNNING = re.compile(r'"msg": "glimpser is running[^"]*", "url": "(http://[^"]+/)"')


def _wait_for_url(output: Path, proc: subprocess.Popen[bytes], limit: float = 180) -> str:
    """The URL from the "running" line (the bound only ends a hung start; it is no assertion
    on speed)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = RUNNING.search(output.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            pytest.fail(f"glimpser serve exited with {proc.returncode}:\n{output.read_text()}")
        time.sleep(0.05)
    pytest.fail(f"glimpser serve never said it was running:\n{output.read_text()}")


def test_serve_announces_a_url_that_answers_and_stops_cleanly_on_ctrl_c(tmp_path: Path):
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSER_")}
    env.update(
        GLIMPSER_DATA_DIR=str(data_dir),
        GLIMPSER_PORT=str(free_port()),
        GLIMPSER_WORKERS="1",
        GLIMPSER_WEB_WORKERS="1",
        GLIMPSER_SECRET_KEY="test-secret-key-0123456789abcdef",
        GLIMPSER_LOG_LEVEL="INFO",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    output = tmp_path / "serve.log"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", "serve"],
            cwd=tmp_path,  # no .env of the developer's
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a terminal's job
        )
    try:
        url = _wait_for_url(output, proc)
        # Said only once it is true: the very first request is answered.
        assert requests.get(f"{url}healthz", timeout=10).status_code == 200
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if (data_dir / "redis.sock").exists():  # a failed run leaves no redis-server behind
            subprocess.run(
                ["redis-cli", "-s", str(data_dir / "redis.sock"), "shutdown", "nosave"],
                capture_output=True,
                timeout=30,
            )
        exists_after = (data_dir / "redis.sock").exists()
    log = output.read_text(errors="replace")
    assert code == 0, log
    assert "Traceback" not in log, log
    assert "private redis stopped" in log.splitlines()[-1], log
    assert not exists_after  # Redis shut down, after everything else
