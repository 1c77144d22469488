"""The private Redis that `glimpser serve` starts when GLIMPSER_REDIS_URL is unset."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path

import redis

from glimpser.private_files import private_dir, private_file

log = logging.getLogger(__name__)


class PrivateRedis:
    """A redis-server on a unix socket in the data directory, owned by this process."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.socket = data_dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _ping(self) -> bool:
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    def start(self, timeout: float = 10.0) -> None:
        if self._ping():
            log.info(
                "private redis already running; reusing it", extra={"socket": str(self.socket)}
            )
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (run `make setup`)")
        self.socket.unlink(missing_ok=True)
        private_dir(self.data_dir)
        for name in ("redis.rdb", "redis.log"):  # made 0644 by earlier versions
            if (self.data_dir / name).exists():
                private_file(self.data_dir / name)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.data_dir),
                "--dbfilename",
                "redis.rdb",
                "--save",
                "300 1",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            umask=0o077,  # redis.rdb (queued jobs, sessions) and redis.log: 0600
            # Its own session: Ctrl-C in the terminal reaches `glimpser serve` and the processes
            # that use Redis, not Redis itself; the supervisor stops it last (stop()).
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with code {self.process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if self._ping():
                log.info("private redis started", extra={"socket": str(self.socket)})
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # redis saves its snapshot on SIGTERM
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        log.info("private redis stopped")
