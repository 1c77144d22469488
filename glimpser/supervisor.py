"""`glimpser serve`: every process of a single-machine install, started and stopped together."""

from __future__ import annotations

import http.client
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from glimpser import db
from glimpser.config import Settings
from glimpser.redis_server import PrivateRedis

log = logging.getLogger(__name__)


class Supervisor:
    """Starts web, workers and scheduler as child processes; any exit or signal stops all.

    The private Redis starts first and stops last, so no process loses it while stopping.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.redis = PrivateRedis(settings.data_dir) if settings.private_redis else None
        self._stopping = False

    def _spawn(self, name: str, *args: str) -> None:
        env = dict(os.environ)
        env["GLIMPSER_DATA_DIR"] = str(self.settings.data_dir)
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", *args], env=env, stdin=subprocess.DEVNULL
        )
        log.info("process started", extra={"child": name, "pid": self.children[name].pid})

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            if self.redis:
                self.redis.start()
            db.init_database(self.settings.database_url)
            db.migrate()
            self._spawn("web", "web")
            for i in range(self.settings.workers):
                self._spawn(f"worker-{i + 1}", "worker")
            self._spawn("scheduler", "scheduler")
            self._spawn("readers", "readers")
            url = f"http://{self.settings.host}:{self.settings.port}/"
            announced = False
            exit_code = 0
            while not self._stopping:
                if not announced and self._web_answers():
                    log.info(f"glimpser is running on {url}", extra={"url": url})
                    announced = True
                for name, child in self.children.items():
                    if child.poll() is not None:
                        log.error(
                            "process exited; stopping everything",
                            extra={"child": name, "code": child.returncode},
                        )
                        exit_code = child.returncode or 1
                        self._stopping = True
                        break
                time.sleep(0.2)
            return exit_code
        finally:
            self._stop_children()
            if self.redis:
                self.redis.stop()

    def _web_answers(self) -> bool:
        """Whether the web process answers /healthz yet (gunicorn takes seconds to start)."""
        host = self.settings.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        connection = http.client.HTTPConnection(host, self.settings.port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def _stop_children(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, child in self.children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("process did not stop in time; killing it", extra={"child": name})
                child.kill()
                child.wait()
        self.children.clear()
