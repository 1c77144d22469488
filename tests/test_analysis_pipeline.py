"""The analysis job end to end: real captures → detection → AI (loopback) → rules → events."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from PIL import Image

from glimpser import jobs
from glimpser.capture import readers
from glimpser.capture.readers import ReaderHub
from glimpser.db import database
from glimpser.models import AICall, Event, Rule, Snapshot, Stream
from tests.conftest import run_queued_jobs
from tests.openai_server import Reply, Request

pytestmark = pytest.mark.slow

DESCRIPTION = {
    "title": "A ball rolls across the picture",
    "description": "A white ball moves from left to right over a dark background.",
    "objects": ["ball"],
    "threat": 0,
    "confidence": 0.9,
}


@contextmanager
def readers_running(app) -> Iterator[ReaderHub]:
    """The persistent readers (`glimpser readers`) that serve 1-second RTSP streams.

    A one-shot ffmpeg grab of the GStreamer test camera always lands on a keyframe, where the
    test ball sits at the same place; the reader decodes every frame, as it does in production.
    """
    hub = ReaderHub(app.extensions["glimpser.settings"], app.extensions["glimpser.redis"])
    try:
        yield hub
    finally:
        hub.close()


def rtsp_stream(url: str, name: str, analysis: dict | None = None) -> Stream:
    with database.connection_context():
        return Stream.create(
            name=name,
            kind="rtsp",
            interval=1,
            config={
                "kind": "rtsp",
                "url": url,
                "transport": "tcp",
                "username": "",
                "password": "",
                "timeout": 10,
            },
            analysis=analysis or {},
        )


def capture_and_analyse(app, stream: Stream, count: int) -> None:
    """Capture like the scheduler does (through the stream's reader), then run the queued
    analysis jobs with a real RQ worker."""
    redis = app.extensions["glimpser.redis"]
    with readers_running(app) as hub:
        with database.connection_context():
            hub.reconcile()
        deadline = time.monotonic() + 20
        while readers.latest_frame(redis, stream.id, max_age=5) is None:
            assert time.monotonic() < deadline, "the reader delivered no frame"
            time.sleep(0.1)
        for _ in range(count):
            published = redis.hget(readers.frame_key(stream.id), "at")
            result = jobs.capture_stream(stream.id, manual=True)
            assert result["ok"], result
            # The next capture takes the reader's next frame (the ball has moved on by then),
            # however slow the machine: wait for it to be published rather than for a time.
            deadline = time.monotonic() + 20
            while redis.hget(readers.frame_key(stream.id), "at") == published:
                assert time.monotonic() < deadline, "the reader published no new frame"
                time.sleep(0.05)
    run_queued_jobs(app, ("analysis",))


def events_of(stream: Stream) -> list[Event]:
    with database.connection_context():
        return list(Event.select().where(Event.stream == stream.id).order_by(Event.id))


def snapshots_of(stream: Stream) -> list[Snapshot]:
    with database.connection_context():
        return list(Snapshot.select().where(Snapshot.stream == stream.id).order_by(Snapshot.id))


def test_moving_scene_raises_events_and_static_scene_stays_quiet(capture_app, rtsp):
    moving = rtsp_stream(f"{rtsp.url}/test", "Ball")
    still = rtsp_stream(f"{rtsp.url}/still", "Bars")
    capture_and_analyse(capture_app, moving, 4)
    capture_and_analyse(capture_app, still, 4)

    shots = snapshots_of(moving)
    assert all(s.analysed_at is not None for s in shots)
    assert shots[0].analysis_note == "first"
    changed = [s for s in shots if s.changed]
    assert changed, [(s.analysis_note, s.motion_score) for s in shots]
    assert all(s.boxes and s.motion_score > 0 for s in changed)
    # The default rule ("Motion or change") raised an info event; its cooldown holds the rest.
    moving_events = events_of(moving)
    assert len(moving_events) == 1
    event = moving_events[0]
    assert (event.kind, event.severity) == ("motion", "info")
    with database.connection_context():
        assert event.rule_id == Rule.get(Rule.name == "Motion or change").id
    assert event.snapshot_id in {s.id for s in changed}

    assert not any(s.changed for s in snapshots_of(still)), [
        (s.analysis_note, s.motion_score, s.changed_fraction, s.storage_key)
        for s in snapshots_of(still)
    ]
    assert events_of(still) == []


@pytest.fixture
def ai_app(app_factory, media_root, openai_server):
    app = app_factory(
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_MEDIA_DIR=str(media_root),
        GLIMPSER_AI_BASE_URL=openai_server.url,
        GLIMPSER_AI_MODEL="test-vision",
        GLIMPSER_AI_API_KEY="sk-test-secret",
        GLIMPSER_AI_TIMEOUT="2",
        GLIMPSER_AI_MAX_RETRIES="1",
    )
    jobs.configure(app.extensions["glimpser.settings"])
    yield app
    jobs.configure(None)


def test_changed_snapshots_are_described_by_the_ai(ai_app, rtsp, openai_server):
    openai_server.handler = lambda _request: Reply.json(DESCRIPTION, 900, 40)
    stream = rtsp_stream(
        f"{rtsp.url}/test",
        "Ball",
        {"describe_on_change": True, "describe_prompt": "Mention the colour of balls."},
    )
    capture_and_analyse(ai_app, stream, 3)

    described = [s for s in snapshots_of(stream) if s.ai]
    assert described and all(s.changed for s in described)
    assert described[0].ai["title"] == DESCRIPTION["title"]
    # Only changed snapshots were sent, each with its picture and the stream's prompt.
    assert len(openai_server.requests) == len(described)
    request = openai_server.requests[0]
    assert request.body["model"] == "test-vision"
    assert request.images and request.images[0][:2] == b"\xff\xd8"
    assert "Mention the colour of balls." in request.text
    with database.connection_context():
        fresh = Stream.get_by_id(stream.id)
        assert fresh.ai_caption == DESCRIPTION["title"]
        calls = list(AICall.select().where(AICall.stream == stream.id))
    assert calls and all(c.ok and c.total_tokens == 940 for c in calls if not c.cached)
    (event,) = events_of(stream)
    assert event.title == DESCRIPTION["title"]
    assert event.description == DESCRIPTION["description"]


def test_ai_failure_fails_open(ai_app, rtsp, openai_server):
    openai_server.handler = lambda _request: Reply.error(500, "model crashed")
    stream = rtsp_stream(f"{rtsp.url}/test", "Ball", {"describe_on_change": True})
    capture_and_analyse(ai_app, stream, 3)

    failed = [s for s in snapshots_of(stream) if s.ai]
    assert failed and all("error" in s.ai for s in failed)
    assert "sk-test-secret" not in json.dumps([s.ai for s in failed])
    (event,) = events_of(stream)  # raised anyway, without a description
    assert event.kind == "motion"
    with database.connection_context():
        assert Stream.get_by_id(stream.id).ai_caption == ""


def test_natural_language_rule_asks_the_ai(ai_app, rtsp, openai_server):
    def answer(request: Request) -> Reply:
        if "ball" in request.text.lower() and "match" in request.text.lower():
            return Reply.json({"match": True, "confidence": 0.95, "reason": "A ball is visible."})
        return Reply.json(DESCRIPTION)

    openai_server.handler = answer
    with database.connection_context():
        Rule.update(enabled=False).execute()  # only the rule under test
        Rule.create(
            name="Ball in view",
            conditions={"changed": True, "question": "Is there a ball in the picture?"},
            severity="high",
            cooldown_seconds=3600,
        )
    stream = rtsp_stream(f"{rtsp.url}/test", "Ball")
    capture_and_analyse(ai_app, stream, 3)

    (event,) = events_of(stream)
    assert (event.kind, event.severity) == ("ai", "high")
    assert event.data["answer"]["match"] is True
    assert any("Is there a ball in the picture?" in r.text for r in openai_server.requests)


def test_without_ai_nothing_is_described_and_events_still_come(capture_app, rtsp):
    stream = rtsp_stream(f"{rtsp.url}/test", "Ball", {"describe_on_change": True})
    capture_and_analyse(capture_app, stream, 3)
    shots = snapshots_of(stream)
    assert all(s.ai is None for s in shots)
    assert len(events_of(stream)) == 1, [(s.analysis_note, s.motion_score) for s in shots]


@pytest.mark.parametrize("store_identical", ["1", "0"])
def test_identical_snapshot_is_recognised_only_when_identical_frames_are_stored(
    app_factory, store_identical
):
    """With GLIMPSER_STORE_IDENTICAL_FRAMES a repeated frame is "identical" without decoding;
    otherwise capture never stores one, and the analysis does not look the previous one up."""
    import io
    from datetime import timedelta

    from PIL import Image

    from glimpser import times
    from glimpser.analysis.pipeline import analyse_snapshot
    from glimpser.media.snapshots import save_snapshot
    from glimpser.media.storage import get_storage
    from glimpser.sources.base import Frame

    app = app_factory(GLIMPSER_STORE_IDENTICAL_FRAMES=store_identical)
    settings = app.extensions["glimpser.settings"]
    storage = get_storage(settings)
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 90, 160)).save(out, "JPEG")
    frame = Frame(jpeg=out.getvalue(), width=64, height=48)
    with database.connection_context():
        stream = Stream.create(
            name="Still", kind="http_image", interval=60, config={"kind": "http_image"}
        )
        now = times.utcnow()
        first = save_snapshot(stream, frame, now, storage, store_identical=True)
        second = save_snapshot(
            stream, frame, now + timedelta(seconds=60), storage, store_identical=True
        )
        connection = app.extensions["glimpser.redis"]
        analyse_snapshot(first.id, settings, connection, storage, None)
        outcome = analyse_snapshot(second.id, settings, connection, storage, None)
    assert (outcome.note == "identical") is (store_identical == "1")
    assert not outcome.changed


def test_the_analysis_job_makes_the_thumbnail_so_the_web_process_need_not(capture_app):
    from glimpser.media.storage import get_storage
    from glimpser.media.thumbnails import THUMB_WIDTH, thumbnail_key
    from tests.helpers import add_snapshot, add_stream
    from tests.media_servers import jpeg

    stream = add_stream("Wide")
    snapshot = add_snapshot(capture_app, stream, jpeg((30, 90, 150), size=(1280, 720)))
    storage = get_storage(capture_app.extensions["glimpser.settings"])
    key = thumbnail_key(snapshot.storage_key)
    assert not storage.exists(key)
    jobs.analyse_snapshot(snapshot.id)
    thumb = Image.open(io.BytesIO(storage.get(key)))
    assert thumb.width == THUMB_WIDTH


@pytest.mark.timeout(30)  # a hang guard: the old wait for a left-behind lock was a minute
def test_a_lock_left_behind_by_a_dead_job_does_not_hold_up_the_worker(capture_app):
    """Redis restarted with a job's analysis lock saved in its RDB (the job died with Redis
    away, so it could not release it): the next analysis of that stream must not keep the
    worker, which runs the captures too, waiting for the lock to expire."""
    from tests.helpers import add_snapshot, add_stream
    from tests.media_servers import jpeg

    redis = capture_app.extensions["glimpser.redis"]
    stream = add_stream("Orphaned lock")
    snapshot = add_snapshot(capture_app, stream, jpeg((30, 90, 150), size=(640, 360)))
    lock_key = f"glimpser:analysis:lock:{stream.id}"
    redis.set(lock_key, "token-of-a-dead-job", ex=3600)
    outcome = jobs.analyse_snapshot(snapshot.id)
    assert outcome["snapshot_id"] == snapshot.id
    # Compared, but the state was left to the lock's holder, and the lock to its TTL.
    assert redis.get(lock_key) == b"token-of-a-dead-job"
    with database.connection_context():
        assert Snapshot.get_by_id(snapshot.id).analysed_at is not None
