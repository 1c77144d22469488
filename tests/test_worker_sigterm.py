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

import pytest

from glimpser import queues
from glimpser.capture import scheduling
from glimpser.config import load_settings
from glimpser.db import database
from glimpser.models import Delivery, Event, Snapshot, Stream
from tests.faults_support import (
    LoopbackServer,
    QuietHandler,
    Receiver,
    alive,
    chromium_pids_under,
    sqlite_env,
    start_glimpser,
    stop,
    wait_until,
    warm_shutdown_requested,
    webhook_rule,
)

pytestmark = pytest.mark.slow

GUARD = 90.0  # seconds: a hang guard, not a performance threshold


class HeldPage(LoopbackServer):
    """A loopback page whose answer waits until release() (so SIGTERM lands mid-capture)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.in_flight = threading.Event()
        self.gate = threading.Event()
        page = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                page.requests.append(self.path)
                page.in_flight.set()
                page.gate.wait(GUARD)
                self.reply(f"<html><body><h1>{self.path}</h1></body></html>".encode(), "text/html")

        super().__init__(Handler, "/")

    def stop(self) -> None:
        self.gate.set()
        super().stop()


def snapshots(stream_id: int) -> int:
    with database.connection_context():
        return Snapshot.select().where(Snapshot.stream == stream_id).count()


def test_sigterm_mid_website_capture_finishes_it_and_leaves_the_next_for_another_worker(
    tmp_path, redis_url, redis_client
):
    page = HeldPage()
    env = sqlite_env(tmp_path, redis_url)
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
        browsers = wait_until(
            lambda: chromium_pids_under(worker.pid, nested=True), GUARD, "its Chromium"
        )
        worker.send_signal(signal.SIGTERM)  # the page is still held: mid-capture
        wait_until(lambda: warm_shutdown_requested(logs), GUARD, "the worker took the signal")
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
    env = sqlite_env(tmp_path, redis_url)
    total = 3
    with database.connection_context():
        stream, rule = webhook_rule(receiver.url)
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
        wait_until(lambda: warm_shutdown_requested(logs), GUARD, "the worker took the signal")
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
