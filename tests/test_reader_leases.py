"""Readers as a cluster: stream leases in real Redis, and two real `glimpser readers` processes
sharing four streams of the real GStreamer RTSP server: each stream read by exactly one
process, a `kill -9`ed process's streams taken over by the other, and a restarted process
taking nothing from the survivor while its leases are valid."""

from __future__ import annotations

import re
import socket
import time

import pytest

from glimpser import times
from glimpser.capture import leases, readers
from glimpser.db import database
from glimpser.models import Stream
from tests.conftest import make_env
from tests.faults_support import kill9, start_glimpser, stop, wait_until
from tests.faults_support import reader_heartbeats as heartbeats
from tests.helpers import PASSWORD, setup_admin
from tests.media_servers import RtspServer

# --- the lease functions ------------------------------------------------------------------------


def test_a_lease_is_taken_by_one_owner_only(redis_client):
    assert leases.acquire(redis_client, 1, "host:1:a")
    assert not leases.acquire(redis_client, 1, "host:2:b")
    assert leases.holder(redis_client, 1) == "host:1:a"
    assert leases.acquire(redis_client, 1, "host:1:a")  # the owner asking again: still its
    assert leases.holders(redis_client, [1, 2]) == {1: "host:1:a", 2: None}
    ttl = redis_client.pttl(leases.lease_key(1))
    assert 0 < ttl <= leases.LEASE_TTL_SECONDS * 1000


def test_only_the_owner_renews(redis_client):
    assert leases.acquire(redis_client, 1, "A", ttl=60)
    redis_client.pexpire(leases.lease_key(1), 1000)
    assert not leases.renew(redis_client, 1, "B", ttl=60)
    assert leases.holder(redis_client, 1) == "A"
    assert redis_client.pttl(leases.lease_key(1)) <= 1000  # B's attempt extended nothing
    assert leases.renew(redis_client, 1, "A", ttl=60)
    assert redis_client.pttl(leases.lease_key(1)) > 1000
    assert leases.renew_many(redis_client, [1], "A") == {1: True}
    assert leases.renew_many(redis_client, [1], "B") == {1: False}


def test_only_the_owner_releases(redis_client):
    assert leases.acquire(redis_client, 1, "A")
    assert not leases.release(redis_client, 1, "B")
    assert leases.holder(redis_client, 1) == "A"
    assert leases.release(redis_client, 1, "A")
    assert leases.holder(redis_client, 1) is None
    assert leases.acquire(redis_client, 1, "B")  # free again at once, no TTL to wait for


def test_an_unrenewed_lease_expires_and_its_old_owner_cannot_renew_it(redis_client):
    assert leases.acquire(redis_client, 1, "A", ttl=0.3)
    wait_until(lambda: leases.holder(redis_client, 1) is None, 30, "the lease to expire")
    assert leases.acquire(redis_client, 1, "B")
    assert not leases.renew(redis_client, 1, "A")
    assert leases.holder(redis_client, 1) == "B"


def test_the_owner_keeps_a_lease_that_vanished_unclaimed(redis_client):
    # Redis restarted empty (or the lease expired and nobody took it): the owner's renewal
    # takes it back instead of restarting its reader; a lease held by another is left alone.
    assert leases.acquire(redis_client, 1, "A")
    redis_client.delete(leases.lease_key(1))
    assert leases.renew(redis_client, 1, "A")
    assert leases.holder(redis_client, 1) == "A"


def test_the_lease_set_reports_a_lease_lost_to_another_process(redis_client):
    held = leases.Leases(redis_client, owner="A")
    assert held.try_acquire(1) and held.try_acquire(2)
    other = leases.Leases(redis_client, owner="B")
    assert not other.try_acquire(1)
    # A's lease on 1 expired while A stalled, and B took it.
    redis_client.delete(leases.lease_key(1))
    assert other.try_acquire(1)
    assert held.renew_all() == {1}
    assert held.held() == {2} and held.take_lost() == {1} and held.take_lost() == set()
    held.release_all()
    assert leases.holders(redis_client, [1, 2]) == {1: "B", 2: None}


def test_the_keeper_thread_renews_past_the_ttl(redis_client):
    held = leases.Leases(redis_client, owner="A", ttl=1.0, renew_every=0.2)
    assert held.try_acquire(1)
    held.start_keeper()
    try:
        # Renewed many times over: it outlives several TTLs (polled, then checked still held).
        start = time.monotonic()
        wait_until(lambda: time.monotonic() - start > 3, 30, "three TTLs")
        assert leases.holder(redis_client, 1) == "A"
    finally:
        held.stop_keeper()
    held.release_all()
    assert leases.holder(redis_client, 1) is None


# --- two real readers processes -------------------------------------------------------------------


def frame_at(redis_client, stream_id: int) -> float:
    at = redis_client.hget(readers.frame_key(stream_id), "at")
    return float(at) if at else 0.0


def settled(redis_client, ids: list[int], pids: list[int]) -> dict[int, set[int]] | None:
    """pid -> stream ids, when every stream's lease is held by one of these processes, each
    process's heartbeat lists exactly the streams it holds the lease of, and reads them."""
    beats = heartbeats(redis_client)
    if any(pid not in beats for pid in pids):
        return None
    owners = {beats[pid]["owner"]: pid for pid in pids}
    held = leases.holders(redis_client, ids)
    by_pid: dict[int, set[int]] = {pid: set() for pid in pids}
    for stream_id, owner in held.items():
        if owner not in owners:
            return None
        by_pid[owners[owner]].add(stream_id)
    for pid in pids:
        if beats[pid]["ids"] != by_pid[pid]:
            return None
        if any(s["state"] != "reading" for s in beats[pid]["streams"]):
            return None
    return by_pid


def frames_after(redis_client, ids: list[int], mark: float) -> bool:
    return all(frame_at(redis_client, i) > mark for i in ids)


@pytest.fixture
def own_rtsp(media_root):
    """The GStreamer RTSP camera (the `rtsp` fixture's server), started for this test alone:
    its readers are killed with -9 mid-stream, and no other test should share that server."""
    server = RtspServer(media_root / "test.mp4")
    yield server
    server.stop()


@pytest.mark.slow
def test_two_readers_processes_share_the_streams_and_take_over_after_kill_9(
    tmp_path, redis_url, redis_client, database_url, own_rtsp, app_factory
):
    rtsp = own_rtsp
    app = app_factory(database_url)  # the same database and Redis as the readers processes
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    env = make_env(tmp_path / "data", redis_url, database_url, GLIMPSER_ALLOW_LOOPBACK_SOURCES="1")
    logs = tmp_path / "logs"
    procs = [start_glimpser(["readers"], env, logs) for _ in range(2)]
    try:
        # Both heartbeats first, so that each counts the other when the streams appear.
        wait_until(
            lambda: all(p.pid in heartbeats(redis_client) for p in procs), 90, "both heartbeats"
        )
        with database.connection_context():
            ids = [
                Stream.create(
                    name=f"cam {n}",
                    kind="rtsp",
                    interval=1,
                    config={
                        "kind": "rtsp",
                        "url": f"{rtsp.url}/test",
                        "transport": "tcp",
                        "timeout": 10,
                        "username": "",
                        "password": "",
                    },
                    next_due_at=times.utcnow(),
                ).id
                for n in range(4)
            ]
        pids = [p.pid for p in procs]
        # Each stream held by exactly one process, which lists it in its heartbeat and reads it.
        by_pid = wait_until(lambda: settled(redis_client, ids, pids), 120, "the streams shared")
        assert sorted(i for held in by_pid.values() for i in held) == sorted(ids)
        host = socket.gethostname()
        for pid in pids:
            assert heartbeats(redis_client)[pid]["owner"].startswith(f"{host}:{pid}:")
        mark = time.time()
        wait_until(lambda: frames_after(redis_client, ids, mark), 60, "frames from both")
        print(f"\nshared: { {pid: sorted(held) for pid, held in by_pid.items()} }")
        # Admin → System: host, PID and the streams each process holds.
        page = admin.get("/admin/system/live").get_data(as_text=True)
        for pid in pids:
            section = re.search(
                rf'<p class="readers-process" data-pid="{pid}">(.*?)</p>'
                r"(.*?)(?=<p class=|<h3>|</section>|$)",
                page,
                re.S,
            )
            assert section, page
            # Under its host's card (Admin → System groups processes by host).
            card = page[: section.start()].rsplit('<article class="host', 1)[-1]
            assert f'data-host="{host}"' in card, card[:200]
            assert f"Readers process PID {pid}," in section.group(1)
            count = len(by_pid[pid])
            assert f"holds {count} stream{'s' if count != 1 else ''}." in section.group(1)
            listed = {int(i) for i in re.findall(r'href="/streams/(\d+)"', section.group(2))}
            assert listed == by_pid[pid]

        # kill -9 the process holding more (a host dying): nothing released, nothing cleaned.
        victim = max(procs, key=lambda p: len(by_pid[p.pid]))
        survivor = next(p for p in procs if p is not victim)
        kill9(victim)
        taken = wait_until(
            lambda: (
                (s := settled(redis_client, ids, [survivor.pid])) and s[survivor.pid] == set(ids)
            ),
            120,
            "the survivor holding every stream",
        )
        assert taken
        survivor_owner = heartbeats(redis_client)[survivor.pid]["owner"]
        mark = time.time()
        wait_until(lambda: frames_after(redis_client, ids, mark), 60, "frames after the kill")

        # Restarted: it sends heartbeats, but takes no lease the survivor keeps renewing.
        procs.remove(victim)
        restarted = start_glimpser(["readers"], env, logs)
        procs.append(restarted)
        seen: set[float] = set()

        def beats_of_restarted() -> bool:
            beat = heartbeats(redis_client).get(restarted.pid)
            if beat is not None:
                seen.add(beat["at"])
            return len(seen) >= 4  # several passes of its reconcile loop

        wait_until(beats_of_restarted, 120, "the restarted process's heartbeats")
        assert leases.holders(redis_client, ids) == dict.fromkeys(ids, survivor_owner)
        assert heartbeats(redis_client)[restarted.pid]["ids"] == set()
        assert settled(redis_client, ids, [survivor.pid, restarted.pid]) == {
            survivor.pid: set(ids),
            restarted.pid: set(),
        }

        # A clean stop releases at once: the other process takes everything over.
        stop([survivor])
        procs.remove(survivor)
        wait_until(
            lambda: (
                (s := settled(redis_client, ids, [restarted.pid])) and s[restarted.pid] == set(ids)
            ),
            120,
            "the restarted process holding every stream",
        )
    finally:
        stop(procs)
    assert leases.holders(redis_client, ids) == dict.fromkeys(ids)  # released on SIGTERM
