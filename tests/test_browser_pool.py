"""GLIMPSER_BROWSER_MAX_PER_HOST with real processes and real Chromium: two `glimpser worker
--queues browser` on one host, a cap of 1, two website streams captured every two seconds
from a slow loopback page. Sampled throughout: the host's Chromium slots (the Redis semaphore)
and the Chromium processes under each worker (from /proc). Never more than one Chromium on the
host; the workers take turns (one waited for the slot), and both streams are captured.
The semaphore's own rules (waiters first, lapsing leases) are checked against real Redis."""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from glimpser import db, times
from glimpser.db import database
from glimpser.models import Snapshot, Stream
from glimpser.sources import browser_pool
from tests.conftest import make_env
from tests.faults_support import _Held, start_glimpser, stop, wait_until

GUARD = 120.0  # seconds: a hang guard, not a performance threshold
NODE = "browser-host"


class SlowPage:
    """A loopback page that answers after `delay` seconds, different every time."""

    def __init__(self, delay: float = 1.0) -> None:
        self.hits = 0
        page = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                page.hits += 1
                time.sleep(delay)
                body = (
                    f"<html><body style='background:#{(page.hits * 2654435) % 0xFFFFFF:06x}'>"
                    f"<h1>Page {page.hits}</h1></body></html>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = _Held(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _children() -> dict[int, list[int]]:
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


def chromium_browsers_under(pid: int) -> int:
    """How many Chromium browsers run under pid (through the Playwright driver): Chromium
    processes that are not helpers (those carry --type=) and whose parent is not Chromium (a
    helper just forked, not yet exec'd, still looks like its parent)."""
    tree = _children()
    found, todo = 0, [(child, False) for child in tree.get(pid, [])]
    while todo:
        child, under_chromium = todo.pop()
        program, line = _program(child)
        is_chromium = program in CHROMIUM
        if is_chromium and not under_chromium and b"--type=" not in line:
            found += 1
        todo.extend((grandchild, is_chromium) for grandchild in tree.get(child, []))
    return found


@pytest.mark.slow
def test_cap_of_one_chromium_per_host_with_two_browser_workers(tmp_path, redis_url, redis_client):
    page = SlowPage(delay=1.0)
    url = f"sqlite:///{tmp_path / 'glimpser.db'}"
    db.init_database(url)
    db.migrate()
    env = make_env(
        tmp_path / "data",
        redis_url,
        url,
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_NODE_NAME=NODE,
        GLIMPSER_BROWSER_MAX_PER_HOST="1",
        GLIMPSER_LOG_LEVEL="INFO",
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
            running = sum(chromium_browsers_under(w.pid) for w in workers)
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
    first = browser_pool.BrowserPool(redis_client, 1, "n1", ttl=1.0, renew_every=10)
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
