"""The worker process runs many capture jobs at once (glimpser/workers.py): real `glimpser
worker` processes, a real Redis and database, and a loopback camera that holds every request
until the test lets it answer, so "in flight" is a state the test controls, not a race."""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta

import pytest
from rq import Worker
from rq.job import Job, JobStatus

from glimpser import times
from glimpser.capture import scheduling
from glimpser.db import database
from glimpser.models import Snapshot, Stream
from glimpser.queues import get_queue
from glimpser.workers import CaptureThreadWorker, main_queues, uses_pool
from tests.faults_support import (
    LoopbackServer,
    QuietHandler,
    picture,
    sqlite_env,
    start_glimpser,
    stop,
    wait_until,
    warm_shutdown_requested,
)

GUARD = 60.0  # seconds: a hang guard, not a performance threshold


class HeldCamera(LoopbackServer):
    """A still-image camera that answers only once `release` is set; counts requests in
    flight. Every answer is a different picture."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.in_flight = 0
        self.arrived = 0
        self._lock = threading.Lock()
        camera = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                with camera._lock:
                    camera.arrived += 1
                    camera.in_flight += 1
                    n = camera.arrived
                camera.release.wait(GUARD)
                self.reply(picture(n), "image/jpeg")
                with camera._lock:
                    camera.in_flight -= 1

        super().__init__(Handler, "/snapshot.jpg")

    def stop(self) -> None:
        self.release.set()
        super().stop()


def _streams(camera_url: str, n: int) -> list[Stream]:
    """Streams with a long interval: each test capture is one the test queued itself."""
    with database.connection_context():
        return [
            Stream.create(
                name=f"Held camera {i}",
                kind="http_image",
                interval=3600,
                config={"kind": "http_image", "url": camera_url, "timeout": 50},
                next_due_at=times.utcnow().replace(year=2100),
            )
            for i in range(n)
        ]


def _snapshot_counts(streams: list[Stream]) -> dict[int, int]:
    with database.connection_context():
        return {s.id: Snapshot.select().where(Snapshot.stream == s.id).count() for s in streams}


def test_one_worker_runs_captures_at_once_and_a_sigterm_lets_them_finish(
    tmp_path, redis_url, redis_client
):
    threads, streams_n = 4, 6
    camera = HeldCamera()
    env = sqlite_env(tmp_path, redis_url, GLIMPSER_CAPTURE_THREADS=str(threads))
    streams = _streams(camera.url, streams_n)
    logs = tmp_path / "logs"
    worker = start_glimpser(["worker"], env, logs)
    procs = [worker]
    try:
        with database.connection_context():
            for stream in streams:
                assert scheduling.enqueue_capture(redis_client, stream)
        # One process, `threads` captures waiting on the camera at the same time; the others
        # stay queued (the main thread serves the other queues, not this one).
        wait_until(lambda: camera.in_flight == threads, GUARD, f"{threads} captures in flight")
        capture_queue = get_queue("capture", redis_client)
        assert capture_queue.count == streams_n - threads
        running = [
            Job.fetch(job_id, connection=redis_client)
            for job_id in capture_queue.started_job_registry.get_job_ids()
        ]
        assert len(running) == threads  # RQ's registry (Admin → System) lists each of them

        worker.send_signal(signal.SIGTERM)  # a warm shutdown while they wait on the camera
        wait_until(lambda: warm_shutdown_requested(logs), GUARD, "the worker took the signal")
        assert worker.poll() is None  # not gone: it waits for the captures in hand
        camera.release.set()
        worker.wait(timeout=GUARD)  # ends by itself once they are recorded
        assert worker.returncode == 0

        counts = _snapshot_counts(streams)
        assert sorted(counts.values()) == [0] * (streams_n - threads) + [1] * threads
        for job in running:
            assert job.get_status(refresh=True) == JobStatus.FINISHED
        # Nothing queued was lost: the captures nobody started wait in the queue, each still
        # holding its stream's claim, and the next worker takes them.
        assert capture_queue.count == streams_n - threads
        assert all(scheduling.is_claimed(redis_client, s.id) for s in streams if not counts[s.id])
        assert not any(scheduling.is_claimed(redis_client, s.id) for s in streams if counts[s.id])

        procs.append(start_glimpser(["worker"], env, logs))
        wait_until(lambda: all(_snapshot_counts(streams).values()), GUARD, "the queued captures")
        with database.connection_context():
            for stream in Stream.select().where(Stream.id.in_([s.id for s in streams])):
                assert stream.state == "ok" and stream.consecutive_failures == 0
        assert capture_queue.failed_job_registry.count == 0
    finally:
        stop(procs)
        camera.stop()


def test_a_capture_scheduled_for_later_runs_on_a_capture_thread(tmp_path, redis_url, redis_client):
    """The next capture of a stream is scheduled (enqueue_at); the main thread's RQ scheduler
    must move the capture queue's scheduled jobs although the threads run them. No `glimpser
    scheduler` runs here, so nothing else could queue it."""
    camera = HeldCamera()
    camera.release.set()
    env = sqlite_env(tmp_path, redis_url, GLIMPSER_CAPTURE_THREADS="2")
    (stream,) = _streams(camera.url, 1)
    procs = [start_glimpser(["worker"], env, tmp_path / "logs")]
    try:
        with database.connection_context():
            at = times.utcnow() + timedelta(seconds=2)
            assert scheduling.enqueue_capture(redis_client, stream, at)
        assert get_queue("capture", redis_client).scheduled_job_registry.count == 1
        wait_until(lambda: _snapshot_counts([stream])[stream.id], GUARD, "the scheduled capture")
        worker_names = [w.name for w in Worker.all(connection=redis_client)]
        assert sum("-capture-" in name for name in worker_names) == 2
    finally:
        stop(procs)
        camera.stop()


def _slow_python() -> None:
    """A job that runs Python (so an asynchronous exception can land) for up to 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_capture_thread_enforces_the_job_timeout(redis_client):
    """SIGALRM reaches only the main thread: a thread's job times out by a timer instead, and
    fails like any timed-out RQ job (failed registry, failure callback)."""
    queue = get_queue("capture", redis_client)
    job = queue.enqueue(_slow_python, job_timeout=1)
    stop = threading.Event()
    worker = CaptureThreadWorker([queue], connection=redis_client, stop=stop)
    thread = threading.Thread(
        target=worker.work, kwargs={"burst": True, "logging_level": "WARNING"}, daemon=True
    )
    thread.start()
    thread.join(GUARD)
    assert not thread.is_alive()
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert "JobTimeoutException" in (job.latest_result().exc_string or "")
    assert "maximum timeout value (1 seconds)" in job.latest_result().exc_string


def test_a_capture_thread_stops_while_idle(redis_client):
    """An idle thread blocks on the queue in short steps, so a warm shutdown reaches it."""
    stop = threading.Event()
    worker = CaptureThreadWorker(
        [get_queue("capture", redis_client)], connection=redis_client, stop=stop
    )
    thread = threading.Thread(target=worker.work, kwargs={"logging_level": "WARNING"}, daemon=True)
    thread.start()
    wait_until(lambda: worker.get_state() == "idle", GUARD, "the worker idle")
    stop.set()
    thread.join(GUARD)
    assert not thread.is_alive()


@pytest.mark.parametrize(
    ("names", "threads", "burst", "pool", "main"),
    [
        (["schedule", "capture", "browser"], 8, False, True, ["schedule", "browser"]),
        (["capture"], 8, False, True, ["capture"]),
        (["browser", "analysis"], 8, False, False, ["browser", "analysis"]),
        (["schedule", "capture"], 0, False, False, ["schedule", "capture"]),
        (["schedule", "capture"], 8, True, False, ["schedule", "capture"]),
    ],
)
def test_which_queues_the_threads_and_the_main_thread_serve(names, threads, burst, pool, main):
    uses = uses_pool(names, threads, burst)
    assert uses is pool
    assert main_queues(names, threads if uses else 0) == main


def test_a_second_sigterm_cuts_the_captures_in_hand_off(tmp_path, redis_url, redis_client):
    """RQ's cold shutdown: the worker ends without waiting for its capture threads (as after
    kill -9; the captures are recovered as after a crash: docs/reliability.md)."""
    camera = HeldCamera()
    env = sqlite_env(tmp_path, redis_url, GLIMPSER_CAPTURE_THREADS="2")
    streams = _streams(camera.url, 2)
    logs = tmp_path / "logs"
    worker = start_glimpser(["worker"], env, logs)
    try:
        with database.connection_context():
            for stream in streams:
                assert scheduling.enqueue_capture(redis_client, stream)
        wait_until(lambda: camera.in_flight == 2, GUARD, "2 captures in flight")
        worker.send_signal(signal.SIGTERM)
        wait_until(lambda: warm_shutdown_requested(logs), GUARD, "the warm shutdown")
        # RQ ignores a second signal within a second of the first (a pool's duplicate).
        time.sleep(1.5)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=GUARD)  # without the camera ever answering
        assert camera.in_flight == 2
        assert _snapshot_counts(streams) == {s.id: 0 for s in streams}
    finally:
        stop([worker])
        camera.stop()


def test_the_sweep_frees_only_the_locks_of_a_silent_rq_scheduler(redis_client):
    """free_dead_scheduler_locks: a lock whose holder has not beaten for
    SCHEDULER_SILENT_SECONDS is removed; one that beat lately, one whose holder has no
    heartbeat yet (it is starting), and a free queue are left as they are."""
    from datetime import timedelta

    from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
    from rq.utils import utcformat

    from glimpser import queues, times

    def holder(queue: str, name: str, silent_for: float | None) -> None:
        redis_client.set(RQScheduler.get_locking_key(queue), name, ex=61)
        if silent_for is not None:
            beat = times.utcnow() - timedelta(seconds=silent_for)
            redis_client.hset(SCHEDULER_KEY_TEMPLATE % name, "last_heartbeat", utcformat(beat))

    holder("capture", "dead", queues.SCHEDULER_SILENT_SECONDS + 5)
    holder("notify", "dead", queues.SCHEDULER_SILENT_SECONDS + 5)
    holder("analysis", "alive", 1)
    holder("maintenance", "starting", None)

    assert sorted(queues.free_dead_scheduler_locks(redis_client)) == ["capture", "notify"]
    locks = {q: redis_client.get(RQScheduler.get_locking_key(q)) for q in queues.QUEUE_NAMES}
    assert locks == {
        "schedule": None,
        "capture": None,
        "browser": None,
        "alerts": None,
        "analysis": b"alive",
        "notify": None,
        "maintenance": b"starting",
    }
    assert queues.free_dead_scheduler_locks(redis_client) == []
