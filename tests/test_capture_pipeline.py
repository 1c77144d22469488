"""The capture job and scheduling, on real RQ and Redis with a real camera on loopback."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from rq import Queue
from rq.registry import ScheduledJobRegistry

from glimpser import times
from glimpser.capture import scheduling
from glimpser.capture.run import backoff_delay, next_due
from glimpser.db import database
from glimpser.models import Event, Snapshot, Stream
from tests.conftest import run_queued_jobs
from tests.media_servers import jpeg


def make_stream(camera, name="Door", path="/snapshot.jpg", interval=60, **extra) -> Stream:
    with database.connection_context():
        return Stream.create(
            name=name,
            kind="http_image",
            interval=interval,
            config={
                "kind": "http_image",
                "url": f"{camera.url}{path}",
                "auth": "none",
                "username": "",
                "password": "",
                "timeout": 5,
            },
            next_due_at=times.utcnow(),
            **extra,
        )


def reload(stream: Stream) -> Stream:
    with database.connection_context():
        return Stream.get_by_id(stream.id)


def snapshots(stream: Stream) -> list[Snapshot]:
    with database.connection_context():
        return list(
            Snapshot.select().where(Snapshot.stream == stream.id).order_by(Snapshot.captured_at)
        )


def events(stream: Stream, kind: str) -> list[Event]:
    with database.connection_context():
        return list(Event.select().where((Event.stream == stream.id) & (Event.kind == kind)))


def test_capture_stores_file_and_row_and_sets_status(capture_app, camera):
    redis = capture_app.extensions["glimpser.redis"]
    settings = capture_app.extensions["glimpser.settings"]
    camera.state.picture = jpeg((1, 2, 3), label="first")
    stream = make_stream(camera)
    with database.connection_context():
        assert scheduling.enqueue_capture(redis, stream)
    run_queued_jobs(capture_app)
    [snap] = snapshots(stream)
    assert (snap.width, snap.height) == (320, 240) and snap.bytes == len(camera.state.picture)
    stored = Path(settings.snapshot_dir, snap.storage_key)
    assert stored.read_bytes() == camera.state.picture
    assert len(snap.sha256) == 64 and len(snap.phash) == 16
    fresh = reload(stream)
    assert fresh.state == "ok" and fresh.last_error == "" and fresh.consecutive_failures == 0
    assert fresh.last_success_at is not None
    assert fresh.next_due_at > times.utcnow() + timedelta(seconds=50)
    assert not scheduling.is_claimed(redis, stream.id)


def test_identical_frames_are_not_stored_twice(capture_app, camera):
    redis = capture_app.extensions["glimpser.redis"]
    camera.state.picture = jpeg((9, 9, 9), label="same")
    stream = make_stream(camera)
    for _ in range(2):
        with database.connection_context():
            assert scheduling.enqueue_capture(redis, reload(stream))
        run_queued_jobs(capture_app)
    assert len(snapshots(stream)) == 1
    camera.state.picture = jpeg((200, 9, 9), label="changed")
    with database.connection_context():
        scheduling.enqueue_capture(redis, reload(stream))
    run_queued_jobs(capture_app)
    assert len(snapshots(stream)) == 2


def test_a_stream_is_never_enqueued_twice(capture_app, camera):
    redis = capture_app.extensions["glimpser.redis"]
    stream = make_stream(camera)
    with database.connection_context():
        assert scheduling.enqueue_capture(redis, stream)
        assert not scheduling.enqueue_capture(redis, stream)
        assert scheduling.sweep_due_streams(redis) == 0
    assert Queue("capture", connection=redis).count == 1
    run_queued_jobs(capture_app)
    assert not scheduling.is_claimed(redis, stream.id)


def test_sweep_schedules_due_enabled_streams_only(capture_app, camera):
    redis = capture_app.extensions["glimpser.redis"]
    due = make_stream(camera, "due")
    make_stream(camera, "paused", enabled=False)
    later = make_stream(camera, "later")
    with database.connection_context():
        Stream.update(next_due_at=times.utcnow() + timedelta(hours=1)).where(
            Stream.id == later.id
        ).execute()
        assert scheduling.sweep_due_streams(redis) == 1
    assert scheduling.is_claimed(redis, due.id)
    assert not scheduling.is_claimed(redis, later.id)


def test_near_future_captures_are_scheduled_at_their_time(capture_app, camera):
    redis = capture_app.extensions["glimpser.redis"]
    stream = make_stream(camera)
    at = times.utcnow() + timedelta(seconds=8)
    with database.connection_context():
        Stream.update(next_due_at=at).where(Stream.id == stream.id).execute()
        assert scheduling.sweep_due_streams(redis) == 1
    registry = ScheduledJobRegistry("capture", connection=redis)
    [job_id] = registry.get_job_ids()
    scheduled_for = registry.get_scheduled_time(job_id)
    assert abs((scheduled_for - at).total_seconds()) <= 1.5


def test_a_herd_of_overdue_streams_is_spread_over_the_interval(capture_app, camera):
    """After an outage every stream is past due at once. Started together they would keep
    capturing together (the cadence is kept), so the sweep spreads them out: at most
    CATCH_UP_RATE start per second, none later than one interval."""
    redis = capture_app.extensions["glimpser.redis"]
    streams = [make_stream(camera, f"cam{i}", interval=10) for i in range(40)]
    now = times.utcnow()
    with database.connection_context():
        Stream.update(next_due_at=now - timedelta(minutes=5)).execute()
        assert scheduling.sweep_due_streams(redis, now) == len(streams)
    registry = ScheduledJobRegistry("capture", connection=redis)
    queued = Queue("capture", connection=redis).count
    offsets = sorted(
        (registry.get_scheduled_time(job_id) - now).total_seconds()
        for job_id in registry.get_job_ids()
    )
    assert queued + len(offsets) == len(streams)
    # 40 streams at 10 per second: spread over 4 s (the 1 s jitter of an interval of 10 s
    # alone would start them all within 1 s)
    assert offsets[-1] <= 4 + 1
    assert offsets[-1] - (offsets[0] if queued == 0 else 0) > 2


def test_a_sweep_does_not_reschedule_a_capture_that_ended_after_it_looked(
    capture_app, camera, monkeypatch
):
    """The sweep reads the due streams, then claims them one by one. A capture of one of them
    that ends in between records its next due time and gives up its claim: scheduling from
    the first read would capture the stream again at once (seen in bench_capture's load)."""
    redis = capture_app.extensions["glimpser.redis"]
    stream = make_stream(camera)
    new_job_id = scheduling._new_job_id

    def capture_ends_first(stream_id: int) -> str:  # between the sweep's read and its claims
        Stream.update(next_due_at=times.utcnow() + timedelta(seconds=60)).where(
            Stream.id == stream_id
        ).execute()
        return new_job_id(stream_id)

    monkeypatch.setattr(scheduling, "_new_job_id", capture_ends_first)
    with database.connection_context():
        assert scheduling.sweep_due_streams(redis) == 0
    assert not scheduling.is_claimed(redis, stream.id)
    assert Queue("capture", connection=redis).count == 0


def test_a_capture_job_holds_only_a_short_lease_once_a_worker_takes_it(capture_app, camera):
    """Until a worker takes it, a capture's claim lives until its planned start plus its
    timeout (a minute or more). The worker shortens it to a lease before RQ lists the job as
    started: a worker killed right after taking the job (before the job's first line) frees
    the stream within LEASE_SECONDS, not after the whole claim (seen in tests/test_cluster.py).
    A claim that is another job's is left alone."""
    from rq.registry import StartedJobRegistry

    from glimpser.workers import GlimpserWorker

    redis = capture_app.extensions["glimpser.redis"]
    stream, other = make_stream(camera), make_stream(camera, name="Gate")
    with database.connection_context():
        scheduling.enqueue_capture(redis, stream)
        scheduling.enqueue_capture(redis, other)
    queue = Queue("capture", connection=redis)
    job, other_job = (queue.fetch_job(i) for i in queue.get_job_ids())
    assert redis.ttl(scheduling.claim_key(stream.id)) > scheduling.LEASE_SECONDS
    redis.set(scheduling.claim_key(other.id), "someone-else", ex=600)

    worker = GlimpserWorker([queue], connection=redis)
    worker.prepare_execution(job)
    assert job.id in StartedJobRegistry("capture", connection=redis).get_job_ids()
    assert 0 < redis.ttl(scheduling.claim_key(stream.id)) <= scheduling.LEASE_SECONDS
    assert redis.get(scheduling.claim_key(stream.id)) == job.id.encode()

    worker.prepare_execution(other_job)
    assert redis.ttl(scheduling.claim_key(other.id)) > scheduling.LEASE_SECONDS
    assert redis.get(scheduling.claim_key(other.id)) == b"someone-else"


def test_snapshots_of_streams_whose_rules_notify_are_analysed_first(capture_app, camera):
    """A stream that an enabled rule with a notification channel applies to (by id, by group
    or all) has its snapshots analysed on the alerts queue, which a worker asked for
    "analysis" serves first: under a backlog of analyses, an event and its notification do
    not wait behind every other stream's. The rest stay on the analysis queue: streams no
    such rule applies to (a rule for another group, a disabled rule, a rule without a channel
    such as the default "Motion or change")."""
    from glimpser.models import NotificationChannel, Rule
    from glimpser.queues import WORKER_QUEUE_ORDER, worker_queues

    redis = capture_app.extensions["glimpser.redis"]
    chosen = make_stream(camera, name="Chosen")
    yard = make_stream(camera, name="Yard", groups=["yard"])
    plain = make_stream(camera, name="Plain", groups=["street"])
    with database.connection_context():
        hook = NotificationChannel.create(
            name="Hook", kind="webhook", config={"kind": "webhook", "url": "http://192.0.2.1/"}
        )
        Rule.create(name="By id", applies_to="chosen", stream_ids=[chosen.id], channels=[hook.id])
        Rule.create(name="By group", applies_to="groups", groups=["Yard"], channels=[hook.id])
        Rule.create(name="Off", applies_to="all", enabled=False, channels=[hook.id])
        Rule.create(name="Silent", applies_to="all")
        for stream in (chosen, yard, plain):
            scheduling.enqueue_capture(redis, stream)
    run_queued_jobs(capture_app, ("capture",))

    def queued(name: str) -> set[int]:
        jobs = Queue(name, connection=redis).get_jobs()
        with database.connection_context():
            return {Snapshot.get_by_id(j.args[0]).stream_id for j in jobs}

    assert queued("alerts") == {chosen.id, yard.id}
    assert queued("analysis") == {plain.id}
    assert worker_queues(["browser", "analysis"]) == ["browser", "alerts", "analysis"]
    assert worker_queues(["alerts"]) == ["alerts"]
    assert WORKER_QUEUE_ORDER.index("alerts") < WORKER_QUEUE_ORDER.index("analysis")
    # Once a notifying rule applies to every stream, every stream's analysis comes first.
    later = make_stream(camera, name="Later", groups=["street"])
    with database.connection_context():
        Rule.create(name="All", applies_to="all", channels=[hook.id])
        scheduling.enqueue_capture(redis, later)
    run_queued_jobs(capture_app, ("capture",))
    assert queued("alerts") == {chosen.id, yard.id, later.id}
    # A worker for "analysis" runs both (run_queued_jobs expands it as the worker does).
    run_queued_jobs(capture_app, ("analysis",))
    assert Queue("alerts", connection=redis).count == Queue("analysis", connection=redis).count == 0


def test_streams_resume_after_a_restart_that_lost_redis(capture_app, camera):
    redis = capture_app.extensions["glimpser.redis"]
    stream = make_stream(camera)
    with database.connection_context():
        scheduling.enqueue_capture(redis, stream)
    redis.flushdb()  # a Redis without persistence restarted: every queued job is gone
    with database.connection_context():
        assert scheduling.sweep_due_streams(redis) == 1  # with up to 1 s of jitter
    run_queued_jobs(capture_app, wait_for_scheduled=1.1)
    assert len(snapshots(stream)) == 1


def test_short_intervals_chain_the_next_capture(capture_app, camera):
    redis = capture_app.extensions["glimpser.redis"]
    stream = make_stream(camera, interval=2)
    with database.connection_context():
        scheduling.enqueue_capture(redis, stream)
    run_queued_jobs(capture_app)
    registry = ScheduledJobRegistry("capture", connection=redis)
    assert len(registry.get_job_ids()) == 1, "the next capture was not chained"
    assert scheduling.is_claimed(redis, stream.id)


def test_capture_now_pulls_a_scheduled_capture_forward(capture_app, camera):
    redis = capture_app.extensions["glimpser.redis"]
    stream = make_stream(camera)
    with database.connection_context():
        scheduling.enqueue_capture(redis, stream, times.utcnow() + timedelta(seconds=60))
        assert scheduling.capture_now(redis, stream)
    assert ScheduledJobRegistry("capture", connection=redis).get_job_ids() == []
    assert Queue("capture", connection=redis).count == 1
    with database.connection_context():
        assert not scheduling.capture_now(redis, stream)  # queued now: not twice


def test_failures_back_off_raise_one_event_and_recover(capture_app, camera):
    redis = capture_app.extensions["glimpser.redis"]
    settings = capture_app.extensions["glimpser.settings"]
    stream = make_stream(camera, path="/missing.jpg", interval=10)
    delays = []
    for _ in range(settings.failure_event_after + 1):
        with database.connection_context():  # the retry is already scheduled: pull it forward
            assert scheduling.capture_now(redis, reload(stream))
        before = times.utcnow()
        run_queued_jobs(capture_app)
        fresh = reload(stream)
        delays.append((fresh.next_due_at - before).total_seconds())
    assert fresh.state == "failing" and "HTTP 404" in fresh.last_error
    assert fresh.consecutive_failures == settings.failure_event_after + 1
    assert delays == sorted(delays) and delays[-1] > delays[0] * 4
    [failed] = events(stream, "capture_failed")
    assert "HTTP 404" in failed.description
    with database.connection_context():
        config = dict(reload(stream).config, url=f"{camera.url}/snapshot.jpg")
        Stream.update(config=config).where(Stream.id == stream.id).execute()
        assert scheduling.capture_now(redis, reload(stream))
    run_queued_jobs(capture_app)
    fresh = reload(stream)
    assert fresh.state == "ok" and fresh.consecutive_failures == 0 and fresh.last_error == ""
    assert len(events(stream, "capture_recovered")) == 1


def test_paused_streams_are_not_captured_by_schedule(capture_app, camera):
    redis = capture_app.extensions["glimpser.redis"]
    stream = make_stream(camera, enabled=False)
    with database.connection_context():
        scheduling.enqueue_capture(redis, stream)
    run_queued_jobs(capture_app)
    assert snapshots(stream) == []


def test_a_stream_deleted_mid_flight_is_harmless(capture_app, camera):
    redis = capture_app.extensions["glimpser.redis"]
    stream = make_stream(camera)
    with database.connection_context():
        scheduling.enqueue_capture(redis, stream)
        Stream.delete_by_id(stream.id)
    run_queued_jobs(capture_app)
    assert not scheduling.is_claimed(redis, stream.id)


def test_backoff_and_cadence_arithmetic():
    assert [backoff_delay(10, n, 300) for n in (1, 2, 3, 4, 5, 6)] == [10, 20, 40, 80, 160, 300]
    assert backoff_delay(3600, 5, 300) == 3600  # never sooner than the interval
    now = times.utcnow()
    assert next_due(now - timedelta(seconds=1), 10, now) == now + timedelta(seconds=9)
    assert next_due(now - timedelta(seconds=30), 10, now) == now + timedelta(seconds=1)


@pytest.mark.slow
def test_concurrent_workers_never_fail_on_database_locks(capture_app, camera):
    """Four worker processes writing snapshots and status at once on SQLite: every job ends
    well (a deferred transaction that reads then writes would fail with 'database is locked')."""
    import os
    import subprocess
    import sys

    from rq.registry import FailedJobRegistry

    from tests.conftest import ROOT

    redis = capture_app.extensions["glimpser.redis"]
    settings = capture_app.extensions["glimpser.settings"]
    streams = [make_stream(camera, f"cam{i}") for i in range(40)]
    with database.connection_context():
        for stream in streams:
            assert scheduling.enqueue_capture(redis, stream)
    env = {
        **os.environ,
        "GLIMPSER_DATA_DIR": str(settings.data_dir),
        "GLIMPSER_REDIS_URL": settings.redis_url,
        "GLIMPSER_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "GLIMPSER_ALLOW_LOOPBACK_SOURCES": "1",
        "GLIMPSER_STORE_IDENTICAL_FRAMES": "1",
        "GLIMPSER_LOG_LEVEL": "WARNING",
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", "worker", "--burst", "--queues", "capture"],
            env=env,
            cwd=ROOT,
        )
        for _ in range(4)
    ]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    assert FailedJobRegistry("capture", connection=redis).count == 0
    with database.connection_context():
        assert Snapshot.select().count() == 40
        assert Stream.select().where(Stream.state == "ok").count() == 40


def test_a_failing_rule_notifies_the_failure_and_then_the_recovery(capture_app, camera):
    """A "capture failing" rule's channel hears that the camera stopped and that it is back."""
    from glimpser.models import Delivery, NotificationChannel, Rule
    from tests.notify.receivers import HttpReceiver

    redis = capture_app.extensions["glimpser.redis"]
    settings = capture_app.extensions["glimpser.settings"]
    with HttpReceiver() as hook:
        with database.connection_context():
            channel = NotificationChannel.create(
                name="Ops", kind="webhook", config={"kind": "webhook", "url": hook.url("/ops")}
            )
            Rule.create(
                name="Camera down",
                conditions={"capture_failing": True},
                severity="high",
                channels=[channel.id],
            )
        stream = make_stream(camera, path="/missing.jpg", interval=10)
        for _ in range(settings.failure_event_after):
            with database.connection_context():
                assert scheduling.capture_now(redis, reload(stream))
            run_queued_jobs(capture_app, ("capture", "notify"))
        with database.connection_context():
            config = dict(reload(stream).config, url=f"{camera.url}/snapshot.jpg")
            Stream.update(config=config).where(Stream.id == stream.id).execute()
            assert scheduling.capture_now(redis, reload(stream))
        run_queued_jobs(capture_app, ("capture", "notify"))

        [failed] = events(stream, "capture_failed")
        [recovered] = events(stream, "capture_recovered")
        assert failed.rule_id == recovered.rule_id and recovered.severity == "high"
        assert [r.json()["kind"] for r in hook.requests] == ["capture_failed", "capture_recovered"]
        with database.connection_context():
            assert [d.status for d in Delivery.select().order_by(Delivery.id)] == ["sent", "sent"]
