"""`glimpser serve`: every process of a single-machine install, started and stopped together.

It also switches them to an update: a worker that has installed a release side by side
(glimpser.updates.install) leaves a request and sends SIGUSR1; the supervisor then stops the
processes, migrates, switches and starts them on the new release, and rolls back if they do
not come up (glimpser.updates.switch). Its processes run with the interpreter of the release
<data dir>/releases/current names, or the installation it was started from.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType

from glimpser import db
from glimpser.config import Settings
from glimpser.redis_server import PrivateRedis
from glimpser.updates import installed, switch

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
        self._switch_requested = False
        self.release: Path | None = None  # the release running (None: this installation)

    def _spawn(self, name: str, *args: str) -> None:
        env = installed.child_environment(self.settings, self.release)
        self.children[name] = subprocess.Popen(
            installed.glimpser_command(self.release, *args),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        log.info("process started", extra={"child": name, "pid": self.children[name].pid})

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def _on_switch(self, signum: int, _frame: FrameType | None) -> None:
        self._switch_requested = True

    # --- what glimpser.updates.switch needs ----------------------------------------------

    def start_all(self, release_dir: Path | None) -> None:
        self.release = release_dir
        self._spawn("web", "web")
        for i in range(self.settings.workers):
            self._spawn(f"worker-{i + 1}", "worker")
        self._spawn("scheduler", "scheduler")
        self._spawn("readers", "readers")

    def stop_all(self) -> None:
        self._stop_children()

    def exited(self) -> str:
        for name, child in self.children.items():
            if child.poll() is not None:
                return f"the {name} process exited with code {child.returncode}"
        return ""

    def web_ready(self) -> bool:
        return self._web_answers("/readyz")

    def _migrate(self) -> None:
        """Bring the schema up to the running release's (its own code, in its interpreter)."""
        if self.release is None:
            db.migrate()
            return
        env = installed.child_environment(self.settings, self.release)
        subprocess.run(
            installed.glimpser_command(self.release, "migrate"),
            env=env,
            stdin=subprocess.DEVNULL,
            check=True,
        )

    def _switch(self) -> None:
        self._switch_requested = False
        try:
            attempt = switch.take_request(self.settings)
        except OSError as exc:
            log.error("cannot read the update's switch request: %s", exc)
            return
        if attempt is not None:
            switch.run(self.settings, attempt, self)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGUSR1, self._on_switch)
        pid_file = installed.pid_file(self.settings)
        try:
            pid_file.write_text(f"{os.getpid()}\n")
            if self.redis:
                self.redis.start()
            db.init_database(self.settings.database_url)
            self.release = installed.active_release(self.settings)
            switch.interrupted(self.settings)
            try:
                self._migrate()
            except subprocess.CalledProcessError as exc:
                log.error(
                    "the release's migrations failed; nothing started",
                    extra={"release": str(self.release), "code": exc.returncode},
                )
                return 1
            self.start_all(self.release)
            url = f"http://{self.settings.host}:{self.settings.port}/"
            announced = False
            exit_code = 0
            while not self._stopping:
                if self._switch_requested:
                    self._switch()
                    continue
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
            pid_file.unlink(missing_ok=True)

    def _web_answers(self, path: str = "/healthz") -> bool:
        """Whether the web process answers `path` with 200 yet (gunicorn takes seconds)."""
        host = self.settings.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        connection = http.client.HTTPConnection(host, self.settings.port, timeout=2)
        try:
            connection.request("GET", path)
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
