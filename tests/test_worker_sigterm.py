"""SIGTERM to a real `glimpser worker` in the middle of a job: the job in hand is finished
(a website capture stored from real Chromium; a webhook notification delivered exactly once
to a slow loopback receiver), the worker exits cleanly (code 0, its Chromium closed), and the
jobs still queued behind it are left on the queue for another worker, which does them.
Nothing is lost and nothing is done twice. (The capture queue is not covered here: its
execution model is being changed separately.)"""

from __future__ import annotations

import os
import signal
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from glimpser import db, queues
from glimpser.capture import scheduling
from glimpser.config import load_settings
from glimpser.db import database
from glimpser.models import Delivery, Event, NotificationChannel, Rule, Snapshot, Stream
from tests.conftest import make_env
from tests.faults_support import Receiver, _Held, start_glimpser, stop, wait_until
from tests.test_browser_pool import CHROMIUM, _children, _program

pytestmark = pytest.mark.slow

GUARD = 90.0  # seconds: a hang guard, not a performance threshold


def _setup(tmp_path, redis_url: str) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'glimpser.db'}"
    db.init_database(url)
    db.migrate()
    return make_env(
        tmp_path / "data", redis_url, url, GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_LOG_LEVEL="INFO",
    )  # fmt: skip


class HeldPage:
    """A loopback page whose answer waits until release() (so SIGTERM lands mid-capture)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.in_flight = threading.Event()
        self.gate = threading.Event()
        page = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                page.requests.append(self.path)
                page.in_flight.set()
                page.gate.wait(GUARD)
                body = f"<html><body><h1>{self.path}</h1></body></html>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = _Held(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def chromium_pids_under(pid: int) -> list[int]:
    tree = _children()
    found, todo = [], list(tree.get(pid, []))
    while todo:
        child = todo.pop()
        program, line = _program(child)
        if program in CHROMIUM and b"--type=" not in line:
            found.append(child)
        todo.extend(tree.get(child, []))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def shutdown_requested(logs: Path) -> bool:
    """RQ logged that the (only) worker got the signal and will stop after its job."""
    return any("warm shut down requested" in f.read_text() for f in logs.glob("worker-*.log"))


def snapshots(stream_id: int) -> int:
    with database.connection_context():
        return Snapshot.select().where(Snapshot.stream == stream_id).count()


def test_sigterm_mid_website_capture_finishes_it_and_leaves_the_next_for_another_worker(
    tmp_path, redis_url, redis_client
):
    page = HeldPage()
    env = _setup(tmp_path, redis_url)
    with database.connection_context():
        first, second = (
            Stream.create(
                name=f"Site {n}",
                kind="website",
                interval=3600,
                config={"kind": "website", "url": f"{page.url}site{n}", "timeout": 60},
            )
            for n in (1, 2)
        )
        assert scheduling.enqueue_capture(redis_client, first, manual=True)
        assert scheduling.enqueue_capture(redis_client, second, manual=True)
    logs = tmp_path / "logs"
    worker = start_glimpser(["worker", "--queues", "browser"], env, logs)
    procs = [worker]
    try:
        wait_until(page.in_flight.is_set, GUARD, "a capture in flight")
        browsers = wait_until(lambda: chromium_pids_under(worker.pid), GUARD, "its Chromium")
        worker.send_signal(signal.SIGTERM)  # the page is still held: mid-capture
        wait_until(lambda: shutdown_requested(logs), GUARD, "the worker took the signal")
        assert worker.poll() is None  # it waits for the capture, it does not drop it
        page.gate.set()
        assert worker.wait(timeout=GUARD) == 0
        assert snapshots(first.id) == 1
        assert snapshots(second.id) == 0  # not started: left on the queue
        assert all(not alive(pid) for pid in browsers), "the worker left its Chromium behind"
        assert queues.get_queue("browser", redis_client).count == 1
        # Another worker takes what was left.
        procs.append(start_glimpser(["worker", "--queues", "browser"], env, logs))
        wait_until(lambda: snapshots(second.id) == 1, GUARD, "the second capture")
    finally:
        stop(procs)
        page.stop()
    assert page.requests == ["/site1", "/site2"]
    with database.connection_context():
        assert [s.last_error for s in Stream.select().order_by(Stream.id)] == ["", ""]


def test_sigterm_mid_delivery_delivers_it_once_and_another_worker_sends_the_rest(
    tmp_path, redis_url, redis_client
):
    receiver = Receiver(gate=threading.Event())
    env = _setup(tmp_path, redis_url)
    total = 3
    with database.connection_context():
        stream = Stream.create(
            name="Door",
            kind="http_image",
            config={"kind": "http_image", "url": "http://192.0.2.1/x.jpg"},
            enabled=False,
        )
        channel = NotificationChannel.create(
            name="Hook", kind="webhook", config={"kind": "webhook", "url": receiver.url}
        )
        rule = Rule.create(name="Any", channels=[channel.id])
        events = [
            Event.create(stream=stream, rule=rule, kind="motion", title=f"Motion {n}")
            for n in range(total)
        ]
        queued = queues.enqueue_notifications(
            redis_client, load_settings(env), [e.id for e in events]
        )
    assert len(queued) == total
    logs = tmp_path / "logs"
    worker = start_glimpser(["worker", "--queues", "notify"], env, logs)
    procs = [worker]
    try:
        wait_until(receiver.in_flight.is_set, GUARD, "a delivery in flight")
        os.kill(worker.pid, signal.SIGTERM)  # the receiver holds the request: mid-delivery
        wait_until(lambda: shutdown_requested(logs), GUARD, "the worker took the signal")
        assert worker.poll() is None  # it waits for the delivery, it does not drop it
        receiver.gate.set()
        assert worker.wait(timeout=GUARD) == 0
        assert len(receiver.bodies) == 1
        with database.connection_context():
            statuses = sorted(d.status for d in Delivery.select())
        assert statuses == ["queued", "queued", "sent"]  # finished, not cut off
        procs.append(start_glimpser(["worker", "--queues", "notify"], env, logs))
        wait_until(lambda: len(receiver.bodies) >= total, GUARD, "every notification")

        def all_sent() -> bool:
            with database.connection_context():
                return all(d.status == "sent" for d in Delivery.select())

        wait_until(all_sent, GUARD, "every delivery recorded as sent")
    finally:
        stop(procs)
        receiver.stop()
    titles = sorted(body.decode() for body in receiver.bodies)
    assert len(titles) == total, titles
    for n in range(total):
        assert sum(f'"Motion {n}"' in t for t in titles) == 1, titles
