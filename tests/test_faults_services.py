"""Fault injection: Redis restarted under load, and PostgreSQL restarted, beneath the real
processes (`glimpser web`, `worker`, `scheduler`, `readers`). Every process must reconnect
by itself; captures resume; sessions survive a Redis that persists them; the web answers no
5xx once the database is back. Figures: docs/reliability.md (run with -s to see them)."""

from __future__ import annotations

import time

import pytest
import requests

from glimpser import db, times
from glimpser.db import database
from glimpser.models import Snapshot, Stream
from tests.conftest import make_env
from tests.faults_support import (
    RestartableRedis,
    SlowCamera,
    start_glimpser,
    stop,
    wait_until,
)
from tests.helpers import PASSWORD, csrf_from, free_port, wait_for_http

pytestmark = pytest.mark.slow

STREAMS = 4
RESUME_GUARD = 90.0  # seconds: a hang guard, not a performance threshold


def _streams(camera_url: str, count: int) -> list[int]:
    with database.connection_context():
        return [
            Stream.create(
                name=f"Camera {n}",
                kind="http_image",
                interval=2,
                config={"kind": "http_image", "url": camera_url, "timeout": 10},
                next_due_at=times.utcnow(),
            ).id
            for n in range(count)
        ]


def _captured_since(stream_ids: list[int], since) -> dict[int, float]:  # noqa: ANN001
    """Stream id -> seconds from `since` to its first snapshot after it (streams with one)."""
    with database.connection_context():
        rows = Snapshot.select(Snapshot.stream, Snapshot.captured_at).where(
            Snapshot.stream.in_(stream_ids) & (Snapshot.captured_at > since)
        )
        first: dict[int, float] = {}
        for row in rows:
            delay = (row.captured_at - since).total_seconds()
            first[row.stream_id] = min(first.get(row.stream_id, delay), delay)
    return first


def _sign_in(base: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/setup", timeout=10)
    done = session.post(
        f"{base}/setup",
        data={
            "csrf_token": csrf_from(page.text),
            "username": "admin",
            "password": PASSWORD,
            "confirm": PASSWORD,
        },
        allow_redirects=False,
        timeout=10,
    )
    assert done.status_code == 302, done.text
    return session


def _signed_in(session: requests.Session, base: str) -> bool:
    response = session.get(f"{base}/", allow_redirects=False, timeout=10)
    return response.status_code == 200


def test_redis_restarted_under_load_captures_resume_and_sessions_survive(tmp_path):
    redis = RestartableRedis(tmp_path / "redis", persist=True)
    camera = SlowCamera(delay=0.2)
    url = f"sqlite:///{tmp_path / 'glimpser.db'}"
    db.init_database(url)
    db.migrate()
    port = free_port()
    env = make_env(
        tmp_path / "data",
        redis.url,
        url,
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_PORT=str(port),
        GLIMPSER_WEB_WORKERS="2",
        GLIMPSER_SECURE_COOKIES="0",
        GLIMPSER_LOG_LEVEL="INFO",
    )
    stream_ids = _streams(camera.url, STREAMS)
    base = f"http://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    procs = [start_glimpser([name], env, logs) for name in ("web", "scheduler", "worker")]
    try:
        wait_for_http(f"{base}/healthz", timeout=60, proc=procs[0])
        session = _sign_in(base)
        start = times.utcnow()
        wait_until(
            lambda: len(_captured_since(stream_ids, start)) == STREAMS, 60, "every stream captured"
        )
        redis.stop()
        time.sleep(2)  # down for a moment, while the workers are busy
        redis.start()
        back = times.utcnow()
        resumed = wait_until(
            lambda: (got := _captured_since(stream_ids, back)) and len(got) == STREAMS and got,
            RESUME_GUARD,
            "captures of every stream after the restart",
        )
        signed_in = _signed_in(session, base)
        # Still capturing a while later, and no process gave up.
        later = times.utcnow()
        wait_until(
            lambda: len(_captured_since(stream_ids, later)) == STREAMS, 30, "captures continue"
        )
        alive = [p.args[-1] for p in procs if p.poll() is not None]
    finally:
        stop(procs)
        camera.stop()
        redis.stop()
    assert alive == [], f"exited: {alive}"
    assert signed_in, "the session did not survive a Redis restart with persistence"
    print(
        f"\nFIGURE redis restart: {STREAMS} streams every 2 s; first capture of each after "
        f"Redis was back: {min(resumed.values()):.1f}..{max(resumed.values()):.1f} s; "
        "session kept"
    )


class WebLoad:
    """A signed-in client asking for pages in a loop (in a thread); records (start, status)."""

    def __init__(self, session: requests.Session, urls: list[str]) -> None:
        import threading

        self.session, self.urls = session, urls
        self.answers: list[tuple[float, int]] = []  # status 0: no answer at all
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for url in self.urls:
                started = time.time()
                try:
                    status = self.session.get(url, timeout=15, allow_redirects=False).status_code
                except requests.RequestException:
                    status = 0
                self.answers.append((started, status))
                time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def count(self, since: float, until: float = float("inf")) -> tuple[int, int]:
        """(answers, 5xx answers) for requests started in [since, until)."""
        window = [status for at, status in self.answers if since <= at < until]
        return len(window), sum(status >= 500 for status in window)


def test_postgresql_restarted_every_process_reconnects_and_no_500_storm(
    tmp_path, redis_url, redis_client, rtsp
):
    from tests.faults_support import PostgresCluster

    cluster = PostgresCluster()
    camera = SlowCamera(delay=0)
    try:
        url = cluster.create_database("glimpser")
        db.init_database(url)
        db.migrate()
        port = free_port()
        env = make_env(
            tmp_path / "data",
            redis_url,
            url,
            GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
            GLIMPSER_PORT=str(port),
            GLIMPSER_WEB_WORKERS="2",
            GLIMPSER_SECURE_COOKIES="0",
            GLIMPSER_LOG_LEVEL="INFO",
        )
        stream_ids = _streams(camera.url, 2)
        with database.connection_context():
            stream_ids.append(
                Stream.create(
                    name="RTSP camera",
                    kind="rtsp",
                    interval=2,
                    config={"kind": "rtsp", "url": f"{rtsp.url}/test", "transport": "tcp"},
                    next_due_at=times.utcnow(),
                ).id
            )
        base = f"http://127.0.0.1:{port}"
        names = ("web", "scheduler", "worker", "readers")
        procs = [start_glimpser([name], env, tmp_path / "logs") for name in names]
        load = None
        try:
            wait_for_http(f"{base}/healthz", timeout=60, proc=procs[0])
            load = WebLoad(_sign_in(base), [f"{base}/", f"{base}/events"])
            start = times.utcnow()
            wait_until(
                lambda: len(_captured_since(stream_ids, start)) == len(stream_ids),
                60,
                "every stream captured",
            )
            down_at = time.time()
            database.close()  # this process's own connection (the test's) goes too
            cluster.stop("fast")  # every client connection is cut
            time.sleep(3)
            cluster.start()
            up_at = time.time()
            back = times.utcnow()
            resumed = wait_until(
                lambda: (got := _captured_since(stream_ids, back))
                and len(got) == len(stream_ids)
                and got,
                RESUME_GUARD,
                "captures of every stream after the restart",
            )
            time.sleep(3)  # some more pages after the restart
            load.stop()
            exited = [p.args[-1] for p in procs if p.poll() is not None]
        finally:
            if load is not None:
                load.stop()
            stop(procs)
    finally:
        camera.stop()
        cluster.destroy()
    during, errors_during = load.count(down_at, up_at)
    after, errors_after = load.count(up_at)
    assert exited == [], f"exited: {exited}"
    assert after > 0 and errors_after == 0, (after, errors_after)
    # While it was down: "unavailable, retry" (503), never an internal error (500).
    assert [status for _, status in load.answers if status == 500] == []
    print(
        f"\nFIGURE postgresql restart: down {up_at - down_at:.1f} s; web answers during "
        f"{during} ({errors_during} 5xx), after {after} ({errors_after} 5xx); first capture "
        f"of each stream {min(resumed.values()):.1f}..{max(resumed.values()):.1f} s after"
    )
