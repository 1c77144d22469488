"""GLIMPSER_BROWSER_MAX_PER_HOST with real processes and real Chromium: two `glimpser worker
--queues browser` on one host, a cap of 1, two website streams captured every two seconds
from a slow loopback page. Sampled throughout: the host's Chromium slots (the Redis semaphore)
and the Chromium processes under each worker (from /proc). Never more than one Chromium on the
host; the workers take turns (one waited for the slot), and both streams are captured.
The semaphore's own rules (waiters first, lapsing leases) are checked against real Redis."""

from __future__ import annotations

import threading
import time

import pytest

from glimpser import times
from glimpser.db import database
from glimpser.models import Snapshot, Stream
from glimpser.sources import browser_pool
from tests.faults_support import (
    LoopbackServer,
    QuietHandler,
    chromium_pids_under,
    sqlite_env,
    start_glimpser,
    stop,
    wait_until,
)

GUARD = 120.0  # seconds: a hang guard, not a performance threshold
NODE = "browser-host"


class SlowPage(LoopbackServer):
    """A loopback page that answers after `delay` seconds, different every time."""

    def __init__(self, delay: float = 1.0) -> None:
        self.hits = 0
        page = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                page.hits += 1
                time.sleep(delay)
                body = (
                    f"<html><body style='background:#{(page.hits * 2654435) % 0xFFFFFF:06x}'>"
                    f"<h1>Page {page.hits}</h1></body></html>"
                ).encode()
                self.reply(body, "text/html")

        super().__init__(Handler, "/")


@pytest.mark.slow
def test_cap_of_one_chromium_per_host_with_two_browser_workers(tmp_path, redis_url, redis_client):
    page = SlowPage(delay=1.0)
    env = sqlite_env(
        tmp_path, redis_url, GLIMPSER_NODE_NAME=NODE, GLIMPSER_BROWSER_MAX_PER_HOST="1"
    )
    with database.connection_context():
        streams = [
            Stream.create(
                name=f"Page {n}",
                kind="website",
                interval=2,
                config={"kind": "website", "url": f"{page.url}?s={n}", "timeout": 20},
                next_due_at=times.utcnow(),
            )
            for n in (1, 2)
        ]
    logs = tmp_path / "logs"
    workers = [start_glimpser(["worker", "--queues", "browser"], env, logs) for _ in range(2)]
    # The capture sweep runs on the schedule queue: a worker of its own, with no Chromium.
    sweeper = start_glimpser(["worker", "--queues", "schedule"], env, logs)
    procs = [*workers, sweeper, start_glimpser(["scheduler"], env, logs)]
    most = {"slots": 0, "chromium": 0, "waiters": 0}
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.is_set():
            most["slots"] = max(most["slots"], len(browser_pool.holders(redis_client, NODE)))
            most["waiters"] = max(
                most["waiters"], redis_client.zcard(browser_pool.waiters_key(NODE))
            )
            running = sum(len(chromium_pids_under(w.pid)) for w in workers)
            most["chromium"] = max(most["chromium"], running)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    def captured(n: int) -> bool:
        with database.connection_context():
            return all(
                Snapshot.select().where(Snapshot.stream == s.id).count() >= n for s in streams
            )

    try:
        wait_until(lambda: captured(3), GUARD, "three snapshots of each stream")
        wait_until(lambda: most["waiters"] >= 1, GUARD, "a worker waiting for the slot")
    finally:
        stop_sampling.set()
        sampler.join(timeout=10)
        stop(procs)
        page.stop()
    assert most["chromium"] == 1, most
    assert most["slots"] == 1, most
    with database.connection_context():
        errors = [s.last_error for s in Stream.select()]
    assert errors == ["", ""], errors
    # Both workers stopped cleanly: their slots are given back.
    assert browser_pool.holders(redis_client, NODE) == []


def test_waiters_go_first_and_a_dead_holders_slot_lapses(redis_client):
    # first's slot lapses after its ttl; long enough that it still holds the slot when second
    # tries (a loaded machine can take a while between two lines), short enough to wait for.
    first = browser_pool.BrowserPool(redis_client, 1, "n1", ttl=5.0, renew_every=3600)
    second = browser_pool.BrowserPool(redis_client, 1, "n1")
    third = browser_pool.BrowserPool(redis_client, 1, "n1")
    first.acquire(wait=0)
    with pytest.raises(browser_pool.NoSlot, match="GLIMPSER_BROWSER_MAX_PER_HOST=1"):
        second.acquire(wait=0.3)
    assert browser_pool.holders(redis_client, "n1") == [first.holder]
    # first "dies": its keeper renews nothing (renew_every > ttl) and the slot lapses.
    second_got = threading.Event()

    def take() -> None:
        second.acquire(wait=GUARD)
        second_got.set()

    threading.Thread(target=take, daemon=True).start()
    wait_until(second_got.is_set, GUARD, "the lapsed slot taken by the waiter")
    assert browser_pool.holders(redis_client, "n1") == [second.holder]
    # Another host has its own slots.
    other = browser_pool.BrowserPool(redis_client, 1, "n2")
    other.acquire(wait=0)
    # A newcomer does not jump ahead of a waiter when the slot frees.
    waiting = threading.Event()

    def wait_for_it() -> None:
        third.acquire(wait=GUARD)
        waiting.set()

    threading.Thread(target=wait_for_it, daemon=True).start()
    wait_until(lambda: second.others_waiting() == 1, GUARD, "third registered as a waiter")
    second.release()
    newcomer = browser_pool.BrowserPool(redis_client, 1, "n1")
    if not waiting.is_set():
        with pytest.raises(browser_pool.NoSlot):
            newcomer.acquire(wait=0)
    wait_until(waiting.is_set, GUARD, "the waiter got the slot")
    assert browser_pool.holders(redis_client, "n1") == [third.holder]
    third.release()
    other.release()


def test_the_keeper_renews_a_slot_taken_again_right_after_its_release(redis_client):
    pool = browser_pool.BrowserPool(redis_client, 1, "n3", ttl=30.0, renew_every=0.1)
    pool.acquire(wait=0)
    pool.release()
    pool.acquire(wait=0)  # at once: the first keeper may not have stopped yet

    def expiry() -> float:
        return redis_client.zscore(browser_pool.slots_key("n3"), pool.holder) or 0.0

    taken = expiry()
    wait_until(lambda: expiry() > taken, GUARD, "the slot renewed by a live keeper")
    pool.release()
    assert browser_pool.holders(redis_client, "n3") == []
