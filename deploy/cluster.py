"""A Glimpser cluster on one machine: every role of docs/deploy.md as a separate "host".

    .venv/bin/python deploy/cluster.py up       # start it (returns; the processes run on)
    .venv/bin/python deploy/cluster.py status   # what runs, where to sign in
    .venv/bin/python deploy/cluster.py doctor   # `glimpser doctor` on every host
    .venv/bin/python deploy/cluster.py down     # stop everything it started

Each host is a set of `glimpser` processes with a data directory of its own (nothing on disk
is shared between hosts) and its own log directory; what they share is what real hosts share:
one PostgreSQL database, one Redis and one S3-compatible bucket. `up` starts those three
itself (a throwaway PostgreSQL 15 cluster, a redis-server and moto's S3 server, all on
loopback), and nginx in front of the two web hosts, round robin (docs/deploy.md, "Try a
cluster on one machine").

The hosts all run on this machine, so they share its hostname: a readers process names
itself `hostname:pid:random` (glimpser/capture/leases.py) and Admin → System tells the
readers hosts apart by PID. `Cluster.host_of_pid()` maps a PID back to its host.

tests/test_cluster.py starts the same cluster through the same `Cluster` class (with the test
session's PostgreSQL and moto), so what the tests prove is what this script runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NGINX = os.environ.get("GLIMPSER_CLUSTER_NGINX", "/usr/sbin/nginx")
PG_BIN = Path(os.environ.get("GLIMPSER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
DEFAULT_DIR = Path(os.environ.get("GLIMPSER_CLUSTER_DIR") or ROOT / "cluster-data")
BUCKET = "glimpser-cluster"


@dataclass(frozen=True)
class Host:
    """One machine of the cluster: a name, and the `glimpser` commands it runs (role → args)."""

    name: str
    roles: tuple[tuple[str, tuple[str, ...]], ...]
    web: bool = False


# The layout docs/deploy.md describes, on seven "hosts".
HOSTS: tuple[Host, ...] = (
    Host("web-a", (("web", ("web",)),), web=True),
    Host("web-b", (("web", ("web",)),), web=True),
    Host("capture-a", (("capture", ("worker", "--queues", "capture")), ("readers", ("readers",)))),
    Host("capture-b", (("capture", ("worker", "--queues", "capture")), ("readers", ("readers",)))),
    Host(
        "jobs-c",
        (
            ("browser", ("worker", "--queues", "browser")),
            ("jobs", ("worker", "--queues", "schedule,analysis,maintenance")),
            ("scheduler", ("scheduler",)),
        ),
    ),
    Host("notify-d", (("notify", ("worker", "--queues", "notify")),)),
    Host("notify-e", (("notify", ("worker", "--queues", "notify")),)),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    check: Callable[[], object], timeout: float, what: str, every: float = 0.2
) -> object:
    """Poll check() until it returns something truthy; the timeout only ends a hung start."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


def _answers(url: str, ok: Callable[[int], bool] = lambda code: code == 200) -> bool:
    import requests

    try:
        return ok(requests.get(url, timeout=5).status_code)
    except requests.RequestException:
        return False


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child not reaped yet) is dead for our purposes.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


@dataclass(frozen=True)
class Shared:
    """What every host shares: the database, Redis and the bucket (with its credentials)."""

    database_url: str
    redis_url: str
    s3_endpoint: str
    s3_bucket: str
    aws_key_id: str = "cluster-key-id"
    aws_secret: str = "cluster-secret"  # noqa: S105 - moto accepts any credentials


@dataclass
class Cluster:
    """Starts, kills and restarts the hosts of HOSTS as `glimpser` processes.

    Every process runs in a session (process group) of its own, so that a host's kill -9 also
    reaches what it started (the RQ scheduler a worker forks, ffmpeg under the readers), and
    so that a terminal's Ctrl-C does not reach the cluster's processes under `up`."""

    base: Path
    shared: Shared
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    extra_env: dict[str, str] = field(default_factory=dict)
    hosts: tuple[Host, ...] = HOSTS
    ports: dict[str, int] = field(default_factory=dict)
    proxy_port: int = 0
    procs: dict[str, dict[str, int]] = field(default_factory=dict)  # host → role → pid
    proxy_pid: int = 0
    _popen: dict[int, subprocess.Popen] = field(default_factory=dict)

    # --- environment ------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def data_dir(self, name: str) -> Path:
        return self.base / "hosts" / name / "data"

    def log_dir(self, name: str) -> Path:
        return self.base / "hosts" / name / "logs"

    def common_env(self) -> dict[str, str]:
        """What /etc/glimpser/glimpser.env holds on every host (docs/deploy.md)."""
        aws_config = self.base / "aws-config"  # no ~/.aws of whoever runs this
        return {
            "GLIMPSER_DATABASE_URL": self.shared.database_url,
            "GLIMPSER_REDIS_URL": self.shared.redis_url,
            "GLIMPSER_SECRET_KEY": self.secret_key,
            "GLIMPSER_STORAGE": "s3",
            "GLIMPSER_S3_BUCKET": self.shared.s3_bucket,
            "GLIMPSER_S3_PREFIX": "snapshots",
            "GLIMPSER_S3_ENDPOINT_URL": self.shared.s3_endpoint,
            "GLIMPSER_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": self.shared.aws_key_id,
            "AWS_SECRET_ACCESS_KEY": self.shared.aws_secret,
            "AWS_CONFIG_FILE": str(aws_config),
            "AWS_SHARED_CREDENTIALS_FILE": str(aws_config),
            # The cameras of a one-machine cluster are on loopback too.
            "GLIMPSER_ALLOW_LOOPBACK_SOURCES": "1",
            # Plain HTTP on loopback: no TLS in front, so cookies may not be Secure-only.
            "GLIMPSER_SECURE_COOKIES": "0",
            "GLIMPSER_PUBLIC_URL": self.url,
            "GLIMPSER_LOG_LEVEL": "INFO",
            **self.extra_env,
        }

    def host_env(self, name: str) -> dict[str, str]:
        """The common environment plus what /etc/glimpser/host.env holds on that host."""
        data = str(self.data_dir(name))
        # HOME too, as the `glimpser` user's home is its data directory (docs/deploy.md): two
        # gunicorns with one HOME would share ~/.gunicorn/gunicorn.ctl, a control socket the
        # second one takes from the first.
        env = {
            **self.common_env(),
            "GLIMPSER_DATA_DIR": data,
            "HOME": data,
            "GLIMPSER_NODE_NAME": name,  # how Admin → System names the host
        }
        if self.host(name).web:
            env.update(
                GLIMPSER_HOST="127.0.0.1",
                GLIMPSER_PORT=str(self.ports[name]),
                GLIMPSER_TRUSTED_PROXIES="1",  # nginx in front
                GLIMPSER_WEB_WORKERS="2",
                GLIMPSER_WEB_THREADS="4",
            )
        return env

    @property
    def url(self) -> str:
        """Where browsers go: the proxy."""
        return f"http://127.0.0.1:{self.proxy_port}"

    def web_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    # --- processes --------------------------------------------------------------------------

    def _process_env(self, env: dict[str, str]) -> dict[str, str]:
        """The environment of a process: this one's, the host's, and this checkout first on
        the module path (the processes start in their host's data directory, as under
        systemd, so neither the code nor a `.env` file is picked up from the current
        directory)."""
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, **env, "PYTHONPATH": path}

    def _spawn(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                env=self._process_env(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._popen[proc.pid] = proc
        return proc.pid

    def run_glimpser(self, name: str, args: list[str]) -> subprocess.CompletedProcess[str]:
        """A one-off command (`migrate`, `doctor`) on a host, with that host's environment."""
        return subprocess.run(
            [sys.executable, "-m", "glimpser.cli", *args],
            env=self._process_env(self.host_env(name)),
            cwd=self.data_dir(name),
            capture_output=True,
            text=True,
            timeout=300,  # only ends a hung run
        )

    def start_host(self, name: str) -> None:
        """Start every role of the host (again, after a kill)."""
        host = self.host(name)
        self.data_dir(name).mkdir(parents=True, exist_ok=True)
        env = self.host_env(name)
        self.procs[name] = {
            role: self._spawn(
                [sys.executable, "-m", "glimpser.cli", *args],
                env,
                self.log_dir(name) / f"{role}.log",
                self.data_dir(name),
            )
            for role, args in host.roles
        }

    def kill_host(self, name: str) -> None:
        """kill -9 every process of the host and what they started: no handler runs, nothing
        is released or cleaned up, as when the machine loses power."""
        for pid in self.procs.pop(name, {}).values():
            _kill_group(pid, signal.SIGKILL)
            self._reap(pid, 30)

    def _reap(self, pid: int, timeout: float) -> bool:
        proc = self._popen.pop(pid, None)
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                self._popen[pid] = proc
                return False
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def pids(self, name: str) -> set[int]:
        return set(self.procs.get(name, {}).values())

    def host_of_pid(self, pid: int) -> str | None:
        for name, roles in self.procs.items():
            if pid in roles.values():
                return name
        return None

    def write_proxy_config(self) -> Path:
        """nginx, round robin over the web hosts, as docs/deploy.md's "nginx in front" (no TLS:
        loopback), and a header naming the web host that answered, for the tests."""
        prefix = self.base / "proxy"
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        upstreams = "\n".join(
            f"        server 127.0.0.1:{self.ports[h.name]};" for h in self.hosts if h.web
        )
        user = "user root root;\n" if os.geteuid() == 0 else ""
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    upstream glimpser {{
{upstreams}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{self.proxy_port};
        client_max_body_size 16m;
        location / {{
            proxy_pass http://glimpser;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_read_timeout 120s;
            add_header X-Cluster-Upstream $upstream_addr always;
        }}
    }}
}}
"""
        )
        return conf

    def start_proxy(self) -> None:
        conf = self.write_proxy_config()
        prefix = conf.parent
        self.proxy_pid = self._spawn(
            [NGINX, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
            {},
            prefix / "logs" / "nginx.out",
            prefix,
        )

    def upstream_name(self, addr: str) -> str | None:
        """The web host behind an X-Cluster-Upstream value (127.0.0.1:PORT)."""
        for name, port in self.ports.items():
            if addr.strip() == f"127.0.0.1:{port}":
                return name
        return None

    def up(self, timeout: float = 300) -> None:
        """Migrate once, start every host and the proxy, and wait until the proxy answers
        /readyz through both web hosts. On any failure everything started is stopped."""
        self.base.mkdir(parents=True, exist_ok=True)
        for host in self.hosts:
            if host.web and host.name not in self.ports:
                self.ports[host.name] = free_port()
        if not self.proxy_port:
            self.proxy_port = free_port()
        try:
            first = self.hosts[0].name
            self.data_dir(first).mkdir(parents=True, exist_ok=True)
            done = self.run_glimpser(first, ["migrate"])
            if done.returncode != 0:
                raise RuntimeError(f"glimpser migrate failed: {done.stderr or done.stdout}")
            for host in self.hosts:
                self.start_host(host.name)
            self.start_proxy()
            for host in self.hosts:
                if host.web:
                    wait_until(
                        lambda h=host.name: (
                            self._check_alive() and _answers(self.web_url(h) + "/readyz")
                        ),
                        timeout,
                        f"{host.name} ready",
                        every=0.5,
                    )
            wait_until(lambda: _answers(self.url + "/readyz"), timeout, "the proxy", every=0.5)
        except BaseException:
            self.down()
            raise

    def _check_alive(self) -> bool:
        """True while every process runs; a process that exited at start is an error at once."""
        for name, roles in self.procs.items():
            for role, pid in roles.items():
                if not _alive(pid):
                    log = self.log_dir(name) / f"{role}.log"
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise RuntimeError(f"{name}/{role} (pid {pid}) exited:\n{tail}")
        return True

    def all_pids(self) -> list[int]:
        pids = [pid for roles in self.procs.values() for pid in roles.values()]
        return pids + ([self.proxy_pid] if self.proxy_pid else [])

    def down(self) -> None:
        """SIGTERM every process (a warm stop: jobs in hand finish), then SIGKILL whatever of
        their process groups is left after a grace period."""
        pids = self.all_pids()
        for pid in pids:
            _kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for pid in pids:
            self._reap(pid, max(0.1, deadline - time.monotonic()))
        for pid in pids:
            _kill_group(pid, signal.SIGKILL)
            self._reap(pid, 10)
        self.procs.clear()
        self.proxy_pid = 0

    # --- state for the command line ---------------------------------------------------------

    def state(self) -> dict:
        return {
            "shared": self.shared.__dict__,
            "secret_key": self.secret_key,
            "ports": self.ports,
            "proxy_port": self.proxy_port,
            "procs": self.procs,
            "proxy_pid": self.proxy_pid,
        }

    @classmethod
    def from_state(cls, base: Path, state: dict) -> Cluster:
        return cls(
            base=base,
            shared=Shared(**state["shared"]),
            secret_key=state["secret_key"],
            ports=state["ports"],
            proxy_port=state["proxy_port"],
            procs=state["procs"],
            proxy_pid=state["proxy_pid"],
        )


# --- the shared services, for the command line (the tests bring their own) ----------------------


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb refuses to run as root; the cluster belongs to the `postgres` user then.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_services(base: Path) -> tuple[Shared, dict[str, int]]:
    """A PostgreSQL cluster, a redis-server and moto's S3 server on loopback, under base;
    when one fails to start, the others are stopped again (nothing is left running)."""
    pids: dict[str, int] = {}
    try:
        return _start_services(base, pids)
    except BaseException:
        stop_services(base, pids)
        raise


def _start_services(base: Path, pids: dict[str, int]) -> tuple[Shared, dict[str, int]]:
    import boto3

    services = base / "services"
    services.mkdir(parents=True, exist_ok=True)
    # PostgreSQL, as the `postgres` user when run as root.
    pg = services / "postgres"
    pg.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(pg, "postgres", "postgres")
    pg_port = free_port()
    subprocess.run(
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(pg / "data"), "-A", "trust", "-U", "postgres"]
            + ["--no-sync", "-E", "UTF8"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        _as_postgres(
            [str(PG_BIN / "pg_ctl"), "-D", str(pg / "data"), "-l", str(pg / "log"), "-w", "-o"]
            + [f"-p {pg_port} -k {pg} -c listen_addresses=127.0.0.1", "start"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        _as_postgres([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(pg_port), "glimpser"]),
        check=True,
        env={**os.environ, "PGUSER": "postgres"},
    )
    # Redis, no persistence.
    redis_port = free_port()
    with open(services / "redis.log", "ab") as out:
        redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", str(services)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pids["redis"] = redis_proc.pid
    # S3: moto's server, and the bucket.
    s3_port = free_port()
    with open(services / "moto.log", "ab") as out:
        moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pids["moto"] = moto.pid
    shared = Shared(
        database_url=f"postgresql://postgres@127.0.0.1:{pg_port}/glimpser",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        s3_endpoint=f"http://127.0.0.1:{s3_port}",
        s3_bucket=BUCKET,
    )
    wait_until(
        lambda: _answers(shared.s3_endpoint, lambda code: code < 500), 60, "moto's S3 server"
    )
    boto3.client(
        "s3",
        endpoint_url=shared.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=shared.aws_key_id,
        aws_secret_access_key=shared.aws_secret,
    ).create_bucket(Bucket=BUCKET)
    return shared, pids


def stop_services(base: Path, pids: dict[str, int]) -> None:
    for pid in pids.values():
        _kill_group(pid, signal.SIGTERM)
    for pid in pids.values():
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        _kill_group(pid, signal.SIGKILL)
    data = base / "services" / "postgres" / "data"
    if data.exists():
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )


def _state_file(base: Path) -> Path:
    return base / "cluster.json"


def missing_tools() -> list[str]:
    """What `up` needs and this machine lacks, each with how to get it."""
    import importlib.util

    missing = []
    if not Path(NGINX).exists():
        missing.append(f"nginx ({NGINX}): apt-get install nginx-light")
    if not (PG_BIN / "initdb").exists():
        missing.append(f"PostgreSQL ({PG_BIN}/initdb): apt-get install postgresql-15")
    if shutil.which("redis-server") is None:
        missing.append("redis-server: apt-get install redis-server")
    if importlib.util.find_spec("moto") is None:
        missing.append("moto (the S3 server): make setup installs the dev extras")
    return missing


def cmd_up(base: Path) -> int:
    if _state_file(base).exists():
        print(f"a cluster already runs from {base} (deploy/cluster.py down first)")
        return 1
    if (base / "services").exists():
        # moto keeps its objects in memory: the database of a previous run would point at
        # pictures that are gone. A cluster starts afresh.
        print(f"{base} holds a previous cluster's data and logs: delete it first")
        return 1
    missing = missing_tools()
    if missing:
        print("cannot start a cluster; missing:\n  " + "\n  ".join(missing))
        return 2
    base.mkdir(parents=True, exist_ok=True)
    shared, service_pids = start_services(base)
    cluster = Cluster(base=base, shared=shared)
    try:
        cluster.up()
    except BaseException:
        stop_services(base, service_pids)
        raise
    _state_file(base).write_text(json.dumps({**cluster.state(), "services": service_pids}))
    print(f"glimpser cluster is running on {cluster.url} (first visit: create the admin)")
    print(f"hosts, data and logs under {base / 'hosts'}; stop it with deploy/cluster.py down")
    return 0


def _running(base: Path) -> tuple[Cluster, dict] | None:
    """The cluster `up` started from `base` and its saved state, or None (said so) when none
    runs: every command but `up` needs exactly this."""
    if not _state_file(base).exists():
        print(f"no cluster runs from {base}")
        return None
    state = json.loads(_state_file(base).read_text())
    return Cluster.from_state(base, state), state


def cmd_status(base: Path) -> int:
    running = _running(base)
    if running is None:
        return 1
    cluster, state = running
    print(f"proxy    {cluster.url}  nginx pid {cluster.proxy_pid}: ", end="")
    print("running" if _alive(cluster.proxy_pid) else "NOT RUNNING")
    for name, roles in cluster.procs.items():
        for role, pid in roles.items():
            where = f" {cluster.web_url(name)}" if role == "web" else ""
            print(f"{name:10} {role:9} pid {pid}{where}: ", end="")
            print("running" if _alive(pid) else "NOT RUNNING")
    for service, pid in state["services"].items():
        print(f"{service:10} pid {pid}: {'running' if _alive(pid) else 'NOT RUNNING'}")
    print(f"ready: {'yes' if _answers(cluster.url + '/readyz') else 'NO'} ({cluster.url}/readyz)")
    return 0


def cmd_doctor(base: Path) -> int:
    """`glimpser doctor` on every host, with that host's environment."""
    running = _running(base)
    if running is None:
        return 1
    cluster, _ = running
    worst = 0
    for host in cluster.hosts:
        done = cluster.run_glimpser(host.name, ["doctor"])
        print(f"== {host.name}\n{done.stdout}{done.stderr}", end="")
        worst = max(worst, done.returncode)
    return worst


def cmd_down(base: Path) -> int:
    running = _running(base)
    if running is None:
        return 1
    cluster, state = running
    cluster.down()
    stop_services(base, state["services"])
    _state_file(base).unlink()
    print(f"stopped; the hosts' data and logs stay under {base} (delete it to start afresh)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "doctor"])
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"where state, data and logs go (default {DEFAULT_DIR}, or $GLIMPSER_CLUSTER_DIR)",
    )
    args = parser.parse_args(argv)
    base = args.dir.resolve()
    commands = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "doctor": cmd_doctor}
    return commands[args.command](base)


if __name__ == "__main__":
    sys.exit(main())
