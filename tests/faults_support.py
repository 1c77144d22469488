"""What the fault-injection tests (tests/test_faults_*.py) share: the real Glimpser processes
started as `python -m glimpser.cli ...`, a loopback camera whose requests can be held open, a
loopback receiver that counts what it got, and checks on stored snapshots."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from glimpser import db, times
from glimpser.models import NotificationChannel, Rule, Stream
from tests.helpers import ROOT
from tests.media_servers import jpeg


def start_glimpser(args: list[str], env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    """`python -m glimpser.cli ARGS` with env (on top of os.environ), output to a log file.

    In a process group of its own, so that kill9() and stop() reach its children too (an RQ
    worker forks its scheduler; ffmpeg runs under the readers)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_dir / f"{args[0]}-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", *args],
            env={**os.environ, **env},
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        out.close()


def _killpg(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def kill9(proc: subprocess.Popen) -> None:
    """SIGKILL to the process and its children (e.g. the RQ scheduler a worker forked): no
    handler runs, nothing is cleaned up, no lock is released."""
    _killpg(proc)
    proc.wait(timeout=10)


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM (a warm shutdown), then SIGKILL to whatever of the group is left."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        _killpg(proc)
        proc.wait()


def wait_until(
    check: Callable[[], object], timeout: float, what: str, every: float = 0.2
) -> object:
    """Poll check() until it returns something truthy; a hang guard, not a measurement."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


class _Held(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        pass  # a client killed mid-request is what these tests do


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (the test output is the tests') and answers a
    whole body in one call."""

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LoopbackServer:
    """An HTTP server on a free loopback port, serving in a daemon thread; `url` is `path`
    on it. The fake cameras, pages and receivers of the tests are these."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], path: str) -> None:
        self.httpd = _Held(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def sqlite_env(tmp_path: Path, redis_url: str, **extra: str) -> dict[str, str]:
    """A fresh SQLite database under tmp_path, migrated and bound in this process (so the test
    reads what the processes write), and the environment of a Glimpser process using it and
    redis_url, with loopback sources allowed (the fake cameras are on 127.0.0.1)."""
    from tests.conftest import make_env

    url = f"sqlite:///{tmp_path / 'glimpser.db'}"
    db.init_database(url)
    db.migrate()
    return make_env(
        tmp_path / "data",
        redis_url,
        url,
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_LOG_LEVEL="INFO",
        **extra,
    )


def still_camera_stream(url: str, name: str, interval: int = 2) -> Stream:
    """An enabled http_image stream of the camera at url, due now (10 s capture timeout).
    Call inside a database connection context."""
    return Stream.create(
        name=name,
        kind="http_image",
        interval=interval,
        config={"kind": "http_image", "url": url, "timeout": 10},
        next_due_at=times.utcnow(),
    )


def webhook_rule(url: str) -> tuple[Stream, Rule]:
    """A disabled stream and a rule notifying a webhook channel at url: what the delivery
    tests attach their events to. Call inside a database connection context."""
    stream = Stream.create(
        name="Door",
        kind="http_image",
        config={"kind": "http_image", "url": "http://192.0.2.1/x.jpg"},
        enabled=False,
    )
    channel = NotificationChannel.create(
        name="Hook", kind="webhook", config={"kind": "webhook", "url": url}
    )
    return stream, Rule.create(name="Any", channels=[channel.id])


def warm_shutdown_requested(logs: Path) -> bool:
    """RQ logged that a worker writing its log under `logs` got SIGTERM and will stop after
    the job in hand: the signal has landed, whatever the load on the machine."""
    return any("warm shut down requested" in f.read_text() for f in logs.glob("worker-*.log"))


def reader_heartbeats(r) -> dict[int, dict]:  # noqa: ANN001
    """readers PID → its heartbeat in Redis (owner id, stream ids as `ids`): which readers
    process is alive and what it reads, as Admin → System sees it."""
    import json

    from glimpser import system_status

    found = {}
    for key in r.scan_iter(match=f"{system_status.READERS_KEY_PREFIX}*"):
        raw = r.get(key)
        if raw:
            data = json.loads(raw)
            data["ids"] = {int(s["id"]) for s in data["streams"]}
            found[int(data["pid"])] = data
    return found


def _children() -> dict[int, list[int]]:
    """PID → its children's PIDs, for every process in /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _program(pid: int) -> tuple[bytes, bytes]:
    """(program name, whole command line) of a process; (b"", b"") when it is gone."""
    try:
        line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b"", b""
    # Chromium rewrites its helpers' command lines into one string: split on spaces too.
    return os.path.basename(line.split(b"\0")[0].split(b" ")[0]), line


CHROMIUM = (b"chromium", b"chrome", b"headless_shell")


def chromium_pids_under(pid: int, nested: bool = False) -> list[int]:
    """The Chromium browsers running under pid (through the Playwright driver): Chromium
    processes that are not helpers (those carry --type=). A helper just forked, not yet
    exec'd, still looks like its parent; it is left out unless `nested` (a check that they
    are all gone wants every one)."""
    tree = _children()
    found, todo = [], [(child, False) for child in tree.get(pid, [])]
    while todo:
        child, under_chromium = todo.pop()
        program, line = _program(child)
        is_chromium = program in CHROMIUM
        if is_chromium and (nested or not under_chromium) and b"--type=" not in line:
            found.append(child)
        todo.extend((grandchild, is_chromium) for grandchild in tree.get(child, []))
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def picture(n: int) -> bytes:
    """The n-th picture of a fake camera: each one differs from the one before."""
    return jpeg(((n * 37) % 256, (n * 91) % 256, 120), label=str(n))


class SlowCamera(LoopbackServer):
    """A still-image camera on loopback: every answer is a different picture, sent `delay`
    seconds after the request arrived (so a test can act while a capture is in flight)."""

    def __init__(self, delay: float = 1.0) -> None:
        self.delay = delay
        self.arrived: list[float] = []  # time.time() of each request
        self.in_flight = threading.Event()
        camera = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                camera.arrived.append(time.time())
                n = len(camera.arrived)
                camera.in_flight.set()
                time.sleep(camera.delay)
                self.reply(picture(n), "image/jpeg")

        super().__init__(Handler, "/snapshot.jpg")


class Receiver(LoopbackServer):
    """A loopback webhook receiver that keeps every body it got and counts deliveries by their
    X-Glimpser-Delivery header, answering `delay` s late (and, with a `gate`, only once the
    gate is set). `holding` is the deliveries whose request it holds right now: a test can
    act while one is in flight. `delay` may be changed while it runs."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None) -> None:
        self.delay = delay
        self.gate = gate
        self.bodies: list[bytes] = []
        self.received: list[int] = []  # X-Glimpser-Delivery ids, in arrival order
        self.holding: set[int] = set()
        self.lock = threading.Lock()
        self.in_flight = threading.Event()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                delivery = int(self.headers.get("X-Glimpser-Delivery") or 0)
                with receiver.lock:
                    receiver.bodies.append(body)
                    receiver.received.append(delivery)
                    receiver.holding.add(delivery)
                receiver.in_flight.set()
                if receiver.gate is not None:
                    receiver.gate.wait(120)
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.holding.discard(delivery)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler, "/hook")

    def counts(self) -> Counter[int]:
        """Delivery id → how many times it arrived."""
        with self.lock:
            return Counter(self.received)

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        super().stop()


def check_snapshot_files(snapshot_dir: Path, rows: list) -> None:
    """Every row has its whole file (size and sha256 as recorded, decodable), and no file
    under the snapshot directory is a half-written temporary one."""
    for row in rows:
        data = (snapshot_dir / row.storage_key).read_bytes()
        assert len(data) == row.bytes and hashlib.sha256(data).hexdigest() == row.sha256
        Image.open(io.BytesIO(data)).load()
    temporary = [p for p in snapshot_dir.rglob(".tmp-*")] if snapshot_dir.exists() else []
    assert temporary == [], temporary


class FreezingProxy:
    """A TCP proxy to `target` (host, port). freeze() makes every open connection hang without
    closing, like a camera that hangs mid-stream: silent both ways, or with trickle=True
    dripping what it holds one byte a second (so a reader's socket timeout never fires, but no
    picture ever completes). New connections are forwarded as usual (the camera answers again
    after a reconnect)."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket

        self.target = target
        self.connections = 0
        self._frozen: list[threading.Event] = []
        self.trickle = False
        self._sockets: list = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            gate = threading.Event()  # set: frozen
            with self._lock:
                self.connections += 1
                self._frozen.append(gate)
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, gate), daemon=True).start()

    def _pump(self, src, dst, gate: threading.Event) -> None:  # noqa: ANN001
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if gate.is_set():  # frozen: never read again, never close
                    for i in range(len(data) if self.trickle else 0):
                        time.sleep(1)
                        dst.sendall(data[i : i + 1])
                    while True:
                        time.sleep(3600)
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(2)

    def freeze(self, trickle: bool = False) -> None:
        self.trickle = trickle
        with self._lock:
            for gate in self._frozen:
                gate.set()

    def stop(self) -> None:
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()


class RestartableRedis:
    """A redis-server on a fixed loopback port that can be restarted with its data dir; with
    persist=True it saves an RDB snapshot on shutdown and loads it on start (as the private
    Redis of `glimpser serve` does)."""

    def __init__(self, workdir: Path, persist: bool = True) -> None:
        from tests.helpers import free_port

        self.workdir = workdir
        self.persist = persist
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.start()

    def start(self, timeout: float = 15) -> None:
        import redis as redis_lib

        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--dbfilename",
                "redis.rdb",
                "--save",
                "300 1" if self.persist else "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis_lib.Redis(port=self.port)
        try:
            wait_until(lambda: _pings(client), timeout, "redis-server up", every=0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: Redis saves its snapshot first when persistence is on."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _pings(client) -> bool:  # noqa: ANN001
    import redis as redis_lib

    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


class PostgresCluster:
    """A throwaway PostgreSQL cluster of its own (as tests/conftest.py makes the session's),
    so that a test can stop and start it without disturbing other tests."""

    def __init__(self) -> None:
        import shutil
        import tempfile

        from tests.conftest import PG_BIN, _as_postgres
        from tests.helpers import free_port

        self.pg_bin, self._as_postgres = PG_BIN, _as_postgres
        # Not under pytest's tmp_path: its parents are private to root, and the cluster
        # belongs to the postgres user when the tests run as root.
        base = Path(tempfile.mkdtemp(prefix="glimpser-faults-pg-"))
        if os.geteuid() == 0:
            shutil.chown(base, "postgres", "postgres")
        self.base, self.data, self.log = base, base / "data", base / "log"
        self.port = free_port()
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
                + ["--no-sync", "-E", "UTF8"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.start()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            self._as_postgres([str(self.pg_bin / "pg_ctl"), "-D", str(self.data), *args]),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        self._ctl(
            "-l",
            str(self.log),
            "-w",
            "-o",
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(f"{self.dsn}/postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return f"{self.dsn}/{name}"

    def destroy(self) -> None:
        import shutil

        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
