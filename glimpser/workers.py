"""The `glimpser worker` process: RQ workers that run capture jobs many at a time.

A capture spends nearly all its time waiting: on a camera's HTTP answer, on ffmpeg's RTSP
handshake (about 1.7 s per snapshot above GLIMPSER_READER_MAX_INTERVAL). One RQ worker runs one
job at a time, so the number of worker processes used to bound how many captures were in flight,
long before the CPU ran out (docs/benchmarks.md). So a worker process runs:

- in its main thread, an RQ `SimpleWorker` on the other queues (schedule, notify, analysis,
  browser, maintenance) — as before: it owns the signals and the RQ scheduler, and keeps the
  one Chromium of the process (website captures are CPU-bound and stay one at a time);
- `GLIMPSER_CAPTURE_THREADS` threads, each a whole RQ `SimpleWorker` of its own on the
  `capture` queue (`CaptureThreadWorker`).

Each thread being a complete RQ worker, not a job run by a pool behind one worker, is the point:
RQ keeps its per-job state (the current job, its `Execution`, the started registry's heartbeat)
on the worker object, so every guarantee RQ gives a job — started/failed/finished registries and
statuses that Admin → System reads, failure callbacks (which free the stream's claim), result
TTLs, the reliable LMOVE dequeue of a single-queue worker, the cleanup of a dead worker's jobs —
holds per capture unchanged, and each capture slot is listed in Admin → System with its job.
What differs from the main thread: a job's timeout is enforced by a timer that raises in the
job's thread (SIGALRM reaches only the main thread), and signals are the main thread's, which
stops the threads on a warm shutdown: each finishes the capture in hand (it is recorded and
schedules its next one) and takes no other; what is queued stays queued for the next worker.
peewee keeps one connection per thread (each job opens and closes its own).

Stopping: SIGTERM or SIGINT asks RQ for a warm shutdown. Jobs in hand run to their end (a
capture is stored, a notification is delivered exactly once), then the worker exits and closes
its Chromium; an idle worker exits at once. A second signal is RQ's cold shutdown: jobs are cut
off as by kill -9, and the usual recovery applies (docs/reliability.md).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import redis
from rq import SimpleWorker
from rq.exceptions import DequeueTimeout
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.timeouts import BaseTimeoutException, JobTimeoutException, TimerDeathPenalty

from glimpser import node, queues
from glimpser.capture import scheduling

log = logging.getLogger(__name__)

CAPTURE_QUEUE = "capture"
# How long an idle capture thread blocks on the queue before looking at the stop flag again: a
# warm shutdown of an idle worker takes at most this long (one BLPOP per thread per period).
POLL_SECONDS = 1
# A capture thread whose RQ worker ended (Redis went away) starts a new one after this pause.
RESTART_SECONDS = 2.0
# RQ's registry maintenance: the main thread's worker does it often (see glimpser.cli); the
# threads' workers at RQ's own pace.
THREAD_MAINTENANCE_SECONDS = 600


class GlimpserWorker(SimpleWorker):
    """A SimpleWorker that reports this node's name (glimpser.node) as its host, so that
    Admin → System groups workers, capture threads included, under the same host names as the
    other processes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hostname = node.name()

    def prepare_execution(self, job: Job) -> Execution:
        """A capture's claim becomes a short lease before RQ lists the job as started, so that a
        worker killed at any moment from here frees the stream within seconds
        (scheduling.start_lease), not after the claim's whole lifetime."""
        if job.func_name == queues.CAPTURE_JOB:
            scheduling.start_lease(self.connection, job)
        return super().prepare_execution(job)


class ThreadDeathPenalty(TimerDeathPenalty):
    """A job timeout for a job run outside the main thread: a timer raises JobTimeoutException
    in the job's thread. RQ's own TimerDeathPenalty sets the message on the exception class it
    is given, which concurrent jobs share; here each job gets a subclass of its own."""

    def __init__(
        self,
        timeout: int,
        exception: type[BaseTimeoutException] = JobTimeoutException,
        **kwargs: Any,
    ) -> None:
        own = type(exception.__name__, (exception,), {"__module__": exception.__module__})
        super().__init__(timeout, own, **kwargs)


class CaptureThreadWorker(GlimpserWorker):
    """An RQ SimpleWorker run in a thread of the worker process, on the capture queue.

    It leaves the signals to the main thread (a stop event ends it), enforces timeouts with a
    timer, and polls the queue in short blocks so that a warm shutdown reaches it while idle."""

    death_penalty_class = ThreadDeathPenalty

    def __init__(self, *args: Any, stop: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop_event = stop

    def _install_signal_handlers(self) -> None:
        """Signals reach the main thread only: its worker stops the threads (CapturePool.stop)."""

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """RQ blocks on the queue for minutes; here in POLL_SECONDS steps, checking the stop
        event between them. None (which ends RQ's work loop) only when asked to stop."""
        if timeout is None:  # burst: RQ's own non-blocking pop
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while not self._stop_event.is_set():
            result = super().dequeue_job_and_maintain_ttl(POLL_SECONDS, POLL_SECONDS)
            if result is not None:
                return result
        self._stop_requested = True
        return None


class CapturePool:
    """GLIMPSER_CAPTURE_THREADS threads, each running a CaptureThreadWorker until stopped."""

    def __init__(self, connection: redis.Redis, size: int, name: str, log_level: str) -> None:
        self.connection = connection
        self.size = size
        self.name = name
        self.log_level = log_level
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._workers: dict[int, CaptureThreadWorker] = {}

    def start(self) -> None:
        """Start the threads (once: a main worker made again after Redis came back finds
        them running)."""
        if self._threads:
            return
        for slot in range(self.size):
            thread = threading.Thread(
                target=self._run, args=(slot,), name=f"capture-{slot}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Ask every thread to finish its capture in hand and take no other (no waiting)."""
        self.stopping.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker._stop_requested = True

    def join(self) -> None:
        """Wait for the threads (their captures) to end. Daemon threads: a second signal (a cold
        shutdown) ends the process without waiting for them."""
        for thread in self._threads:
            while thread.is_alive():
                thread.join(timeout=0.5)  # short waits, so the main thread still takes signals

    def alive(self) -> int:
        return sum(thread.is_alive() for thread in self._threads)

    def _run(self, slot: int) -> None:
        """One capture slot: an RQ worker, made again if it ended without being asked to."""
        while not self.stopping.is_set():
            worker = CaptureThreadWorker(
                [CAPTURE_QUEUE],
                name=f"{self.name}-capture-{slot}-{uuid.uuid4().hex[:6]}",
                connection=self.connection,
                maintenance_interval=THREAD_MAINTENANCE_SECONDS,
                stop=self.stopping,
            )
            with self._lock:
                self._workers[slot] = worker
            try:
                worker.work(burst=False, with_scheduler=False, logging_level=self.log_level)
            except (redis.RedisError, OSError, DequeueTimeout) as exc:
                log.warning("capture thread lost Redis", extra={"slot": slot, "error": str(exc)})
            except Exception:  # a bug in RQ or here: the slot must not vanish silently
                log.exception("capture thread failed", extra={"slot": slot})
            finally:
                with self._lock:
                    self._workers.pop(slot, None)
            # RQ's work() also returns on its own when Redis went away mid-bookkeeping.
            if self.stopping.wait(RESTART_SECONDS):
                return
            _wait_for_redis(self.connection, self.stopping)


def _wait_for_redis(connection: redis.Redis, stopping: threading.Event) -> None:
    pause = 0.5
    while not stopping.is_set():
        try:
            connection.ping()
            return
        except (redis.RedisError, OSError):
            stopping.wait(pause)
            pause = min(pause * 2, 5.0)


class MainWorker(GlimpserWorker):
    """The main thread's RQ worker. Its RQ scheduler also moves the capture queue's scheduled
    jobs (the next capture of every stream) although the threads run them, and it starts the
    capture threads once that scheduler process is forked (no fork while they run). On a warm
    shutdown request (SIGTERM, SIGINT) it stops them too: their captures finish while this
    worker finishes its own job."""

    pool: CapturePool | None = None
    also_scheduled: tuple[Queue, ...] = ()

    @property
    def dequeue_timeout(self) -> int:
        """RQ blocks on the queues for ~7 min and runs its maintenance (which takes over a dead
        worker's RQ scheduler) only between two blocks: block at most one maintenance interval,
        so that an idle worker still takes over within it."""
        return max(1, min(super().dequeue_timeout, self.maintenance_interval))

    def _start_scheduler(self, *args: Any, **kwargs: Any) -> None:
        own = self.queues
        self.queues = [*own, *(q for q in self.also_scheduled if q not in own)]
        try:
            super()._start_scheduler(*args, **kwargs)
        finally:
            self.queues = own
            if self.pool is not None:
                self.pool.start()

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        if self.pool is not None:
            self.pool.stop()


def main_queues(names: list[str], threads: int) -> list[str]:
    """The queues of the main thread's worker: all of them but capture when threads take it.
    A worker for the capture queue alone keeps it in the main thread too (RQ needs a queue,
    and the RQ scheduler runs in that worker): one more capture slot."""
    if threads <= 0 or CAPTURE_QUEUE not in names:
        return names
    rest = [n for n in names if n != CAPTURE_QUEUE]
    return rest or names


def uses_pool(names: list[str], threads: int, burst: bool) -> bool:
    """Threads only for a long-running worker of the capture queue. `--burst` drains the queues
    one job at a time, as RQ does: it is for tests and one-off runs, not throughput."""
    return threads > 0 and not burst and CAPTURE_QUEUE in names


def wait_for_threads(pool: CapturePool | None) -> None:
    """After the main worker stopped: let the captures in hand finish (logged once)."""
    if pool is None:
        return
    pool.stop()
    if pool.alive():
        log.info("waiting for the captures in hand", extra={"threads": pool.alive()})
    started = time.monotonic()
    pool.join()
    log.info("capture threads stopped", extra={"s": round(time.monotonic() - started, 1)})
