"""AI summaries against the loopback OpenAI-compatible server, real Redis and a real database:
what the model is given, what is stored, scheduling, per-user visibility and the page."""

from __future__ import annotations

import dataclasses
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest

from glimpser import jobs, times
from glimpser.analysis import summaries
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import Event, Snapshot, Stream, StreamAccess, Summary, User
from glimpser.queues import get_queue
from tests.conftest import run_queued_jobs
from tests.helpers import csrf_from, login, setup_admin
from tests.openai_server import Reply

PASSWORD = "correct horse battery"
HTMX = {"HX-Request": "true"}
MODEL = "summary-test-model"
# A whole UTC hour in the past; the scheduler runs a few minutes after it ended.
HOUR_START = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
SCHEDULER_NOW = HOUR_START + timedelta(hours=1, minutes=3)  # 2026-11-24 00:03: hour and day


@pytest.fixture
def ai_app(app_factory, openai_server):
    app = app_factory(GLIMPSER_AI_BASE_URL=openai_server.url, GLIMPSER_AI_MODEL=MODEL)
    jobs.configure(app.extensions["glimpser.settings"])
    yield app
    jobs.configure(None)


@pytest.fixture
def db_ai_app(app_factory, openai_server, database_url):
    """The same, on SQLite and on PostgreSQL."""
    app = app_factory(database_url, GLIMPSER_AI_BASE_URL=openai_server.url, GLIMPSER_AI_MODEL=MODEL)
    jobs.configure(app.extensions["glimpser.settings"])
    yield app
    jobs.configure(None)


@pytest.fixture
def plain_app(app_factory):
    """No AI configured."""
    app = app_factory()
    jobs.configure(app.extensions["glimpser.settings"])
    yield app
    jobs.configure(None)


_counter = iter(range(1, 10**9))


def make_stream(name: str) -> Stream:
    with database.connection_context():
        return Stream.create(
            name=name,
            kind="http_image",
            config={"kind": "http_image", "url": "http://192.168.1.50/snapshot.jpg"},
            enabled=False,
            state="paused",
        )


def add_snapshot(stream: Stream, at: datetime, changed: bool = False, ai: dict | None = None):
    n = next(_counter)
    with database.connection_context():
        return Snapshot.create(
            stream=stream.id,
            captured_at=at,
            storage_key=f"test/{stream.id}/{n}.jpg",
            width=640,
            height=360,
            bytes=1000,
            sha256=f"{n:064x}",
            phash="0" * 16,
            changed=changed,
            motion_score=0.2 if changed else 0.0,
            ai=ai,
            analysed_at=at,
        )


def add_event(stream: Stream, at: datetime, title: str, **fields) -> Event:
    with database.connection_context():
        return Event.create(
            stream=stream.id,
            kind=fields.pop("kind", "motion"),
            severity=fields.pop("severity", "info"),
            title=title,
            created_at=at,
            **fields,
        )


def add_summary(stream: Stream | None, text: str, **fields) -> Summary:
    with database.connection_context():
        ids = fields.pop("stream_ids", [stream.id] if stream else [])
        return Summary.create(
            stream=stream.id if stream else None,
            stream_ids=ids,
            period=fields.pop("period", "hour"),
            window_start=fields.pop("window_start", HOUR_START - timedelta(hours=1)),
            window_end=fields.pop("window_end", HOUR_START),
            status=fields.pop("status", "done"),
            text=text,
            **fields,
        )


def schedule(app, now: datetime = SCHEDULER_NOW, periods=("hour",)) -> list[int]:
    with database.connection_context():
        return summaries.schedule_due(now, app.extensions["glimpser.redis"], periods)


def get_summary(summary_id: int) -> Summary:
    with database.connection_context():
        return Summary.get_by_id(summary_id)


def request_with(openai_server, marker: str):
    found = [r for r in openai_server.requests if marker in r.text]
    assert len(found) == 1, [r.text[:200] for r in openai_server.requests]
    return found[0]


# --- building -------------------------------------------------------------------------------


def test_material_holds_events_descriptions_and_previous_summary(ai_app, openai_server):
    door = make_stream("Front door")
    previous = add_summary(door, "PREVIOUS-DOOR-SUMMARY: a quiet evening.")
    add_event(
        door,
        HOUR_START + timedelta(minutes=15),
        "Person at the door",
        severity="medium",
        description="Someone rang the bell",
    )
    add_event(door, HOUR_START + timedelta(minutes=70), "Outside-window event")
    add_event(
        door,
        HOUR_START + timedelta(minutes=40),
        "Capture failing",
        kind="capture_failed",
        severity="high",
        description="connection refused",
    )
    courier = {"title": "Courier", "description": "A courier leaves a parcel", "threat": 0}
    add_snapshot(door, HOUR_START + timedelta(minutes=10), True, courier)
    add_snapshot(door, HOUR_START + timedelta(minutes=11), True, courier)  # told once
    add_snapshot(door, HOUR_START + timedelta(minutes=12), True, {"error": "timed out"})
    openai_server.handler = lambda _r: Reply.completion(
        "A courier came by.\n\nLater the camera failed.", prompt_tokens=300, completion_tokens=40
    )

    created = schedule(ai_app)
    assert len(created) == 2  # the stream's and the one across all streams
    run_queued_jobs(ai_app, ("analysis",))

    with database.connection_context():
        mine = Summary.get((Summary.stream == door.id) & (Summary.window_start == HOUR_START))
    sent = request_with(openai_server, "PREVIOUS-DOOR-SUMMARY")
    assert "Person at the door" in sent.text and "Someone rang the bell" in sent.text
    assert sent.text.count("A courier leaves a parcel") == 1
    assert "seen 2 times in a row" in sent.text
    assert "could not describe 1 snapshot" in sent.text
    assert "connection refused" in sent.text  # a capture problem
    assert "Outside-window event" not in sent.text
    assert "Front door" in sent.text
    assert "previous" in sent.body["messages"][0]["content"].lower()  # the instructions
    assert sent.body["model"] == MODEL

    assert mine.status == "done", mine.error
    assert mine.text == "A courier came by.\n\nLater the camera failed."
    assert mine.model == MODEL
    assert mine.total_tokens == 340
    assert mine.previous_id == previous.id
    assert mine.window_start == HOUR_START and mine.window_end == HOUR_START + timedelta(hours=1)
    assert mine.finished_at is not None

    # The summary across all streams got the same events, without the stream's previous text.
    with database.connection_context():
        overall = Summary.get(Summary.stream.is_null() & (Summary.period == "hour"))
    assert overall.status == "done" and overall.stream_ids == [door.id]
    assert overall.previous_id is None

    # The page shows it as paragraphs.
    admin = ai_app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    html = admin.get(f"/summaries/?stream={door.id}").get_data(as_text=True)
    assert "<p>A courier came by.</p>" in html and "<p>Later the camera failed.</p>" in html
    assert "340 tokens" in html and MODEL in html
    assert f'datetime="{HOUR_START.isoformat()}"' in html


def test_material_is_capped_and_says_so(ai_app, openai_server):
    busy = make_stream("Busy street")
    for i in range(summaries.MAX_EVENTS + 5):
        add_event(
            busy,
            HOUR_START + timedelta(seconds=5 * i),
            f"Car {i} passing by " + "x" * 80,
            description="A long description of a car " + "y" * 200,
        )
    openai_server.handler = lambda _r: Reply.completion("Many cars.")
    created = schedule(ai_app)
    run_queued_jobs(ai_app, ("analysis",))
    assert {get_summary(i).status for i in created} == {"done"}
    sent = openai_server.requests[-1]
    material = sent.body["messages"][1]["content"]
    assert len(material) <= summaries.MAX_MATERIAL_CHARS + 200
    assert "Material cut" in material or "material cut" in material
    assert "Car 0 passing by" in material  # the start of the window is there


def test_nothing_happened_makes_no_ai_request(ai_app, openai_server):
    quiet = make_stream("Quiet yard")
    for minute in (5, 25, 45):
        add_snapshot(quiet, HOUR_START + timedelta(minutes=minute), changed=False)
    created = schedule(ai_app)
    assert len(created) == 2
    run_queued_jobs(ai_app, ("analysis",))
    assert openai_server.requests == []
    for summary_id in created:
        row = get_summary(summary_id)
        assert row.status == "done"
        assert row.text == summaries.NOTHING_HAPPENED
        assert row.total_tokens == 0 and row.model == ""


def test_ai_error_fails_the_summary_and_the_page_shows_it(ai_app, openai_server):
    door = make_stream("Front door")
    add_event(door, HOUR_START + timedelta(minutes=5), "Person at the door")
    openai_server.handler = lambda _r: Reply.error(400, "model-exploded-badly")
    created = schedule(ai_app)
    run_queued_jobs(ai_app, ("analysis",))
    assert openai_server.requests  # it was asked
    rows = [get_summary(i) for i in created]
    assert {r.status for r in rows} == {"failed"}
    assert all(r.error and r.text == "" for r in rows)
    admin = ai_app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    html = admin.get("/summaries/").get_data(as_text=True)
    assert rows[0].error.replace("'", "&#39;").replace('"', "&#34;") in html


def test_day_summary_builds_on_the_hourly_ones(ai_app, openai_server):
    door = make_stream("Front door")
    add_event(door, HOUR_START + timedelta(minutes=5), "Person at the door")
    day_start = HOUR_START.replace(hour=0)
    add_summary(
        door,
        "HOURLY-AT-NOON",
        window_start=day_start + timedelta(hours=12),
        window_end=day_start + timedelta(hours=13),
    )
    add_summary(
        door,
        "YESTERDAY-DAY",
        period="day",
        window_start=day_start - timedelta(days=1),
        window_end=day_start,
    )
    openai_server.handler = lambda _r: Reply.completion("A day at the door.")
    created = schedule(ai_app, periods=("day",))
    assert len(created) == 2
    run_queued_jobs(ai_app, ("analysis",))
    sent = request_with(openai_server, "YESTERDAY-DAY")
    assert "HOURLY-AT-NOON" in sent.text
    with database.connection_context():
        day = Summary.get(
            (Summary.stream == door.id)
            & (Summary.period == "day")
            & (Summary.window_start == day_start)
        )
    assert day.status == "done" and day.window_end == day_start + timedelta(days=1)


# --- scheduling -----------------------------------------------------------------------------


def test_schedule_due_is_idempotent_per_scope_and_window(db_ai_app):
    a, b, idle = make_stream("A"), make_stream("B"), make_stream("Idle")
    add_snapshot(a, HOUR_START + timedelta(minutes=30))
    add_event(b, HOUR_START + timedelta(minutes=31), "Something")
    add_snapshot(idle, HOUR_START - timedelta(days=2))  # outside both windows
    connection = db_ai_app.extensions["glimpser.redis"]

    results: list[list[int]] = []

    def run() -> None:
        results.append(schedule(db_ai_app, periods=("hour", "day")))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.append(schedule(db_ai_app, periods=("hour", "day")))

    with database.connection_context():
        rows = list(Summary.select().order_by(Summary.id))
    created = [i for r in results for i in r]
    assert sorted(created) == [r.id for r in rows]  # every row was created exactly once
    keys = [(r.stream_id, r.period, r.window_start) for r in rows]
    assert len(keys) == len(set(keys))
    day_start = HOUR_START.replace(hour=0)
    expected = {
        (a.id, "hour", HOUR_START),
        (b.id, "hour", HOUR_START),
        (None, "hour", HOUR_START),
        (a.id, "day", day_start),
        (b.id, "day", day_start),
        (None, "day", day_start),
    }
    assert set(keys) == expected
    overall = [r for r in rows if r.stream_id is None]
    assert all(r.stream_ids == sorted([a.id, b.id, idle.id]) for r in overall)
    assert all(r.requested_by_id is None and r.status == "queued" for r in rows)
    assert get_queue("analysis", connection).count == len(rows)

    # The next hour is a new window.
    later = schedule(db_ai_app, SCHEDULER_NOW + timedelta(hours=1), periods=("hour",))
    assert later == []  # nothing happened in it: no summary at all


def test_schedule_summaries_job_is_registered_and_needs_ai(plain_app):
    assert any(func is jobs.schedule_summaries for func, _q, _every in jobs.CRON_JOBS)
    make_stream("A")
    assert jobs.schedule_summaries() == {"created": 0, "skipped": "AI not configured"}


# --- visibility -----------------------------------------------------------------------------


def test_viewers_see_only_summaries_of_what_they_may_see(db_ai_app):
    ai_app = db_ai_app
    a, b = make_stream("Granted cam"), make_stream("Hidden cam")
    admin = ai_app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        carol = create_user("carol", PASSWORD, "viewer")
        alice = User.get(User.username == "alice")
        StreamAccess.create(user=bob, stream=a)
        StreamAccess.create(user=carol, stream=a)
    own_a = add_summary(a, "TEXT-A")
    own_b = add_summary(b, "TEXT-B")
    everything = add_summary(None, "TEXT-GLOBAL", stream_ids=[a.id, b.id])
    bobs = add_summary(None, "TEXT-BOBS", stream_ids=[a.id], requested_by=bob.id, period="custom")
    carols = add_summary(
        None, "TEXT-CAROLS", stream_ids=[a.id], requested_by=carol.id, period="custom"
    )
    alices = add_summary(
        None, "TEXT-ALICES", stream_ids=[a.id, b.id], requested_by=alice.id, period="custom"
    )
    gone = add_summary(None, "TEXT-DELETED-STREAM", stream_ids=[a.id, 987654])

    viewer = ai_app.test_client()
    login(viewer, "bob", PASSWORD)
    html = viewer.get("/summaries/").get_data(as_text=True)
    for text in ("TEXT-A", "TEXT-BOBS", "TEXT-CAROLS"):
        assert f"<p>{text}</p>" in html
    for text in ("TEXT-B", "TEXT-GLOBAL", "TEXT-ALICES", "TEXT-DELETED-STREAM"):
        assert f"<p>{text}</p>" not in html
    assert "Hidden cam" not in html
    assert "asked for by you" in html and "asked for by another user" in html
    assert "carol" not in html  # other users' names are not shown to viewers
    for hidden in (own_b, everything, alices, gone):
        assert viewer.get(f"/summaries/{hidden.id}").status_code == 404
        assert viewer.get(f"/summaries/{hidden.id}", headers=HTMX).status_code == 404
    for shown in (own_a, bobs, carols):
        assert viewer.get(f"/summaries/{shown.id}").status_code == 200
    assert viewer.get(f"/summaries/?stream={b.id}").status_code == 404
    assert viewer.get("/summaries/?stream=x").status_code == 400
    assert viewer.get("/summaries/?period=weekly").status_code == 400
    huge = str(2**63)
    assert viewer.get(f"/summaries/?stream={huge}").status_code == 404
    assert viewer.get(f"/summaries/{huge}").status_code == 404
    token = csrf_from(viewer.get("/summaries/").get_data(as_text=True))
    response = viewer.post(
        "/summaries/", data={"scope": huge, "window": "hour"}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 404
    filtered = viewer.get(f"/summaries/?stream={a.id}").get_data(as_text=True)
    assert "<p>TEXT-A</p>" in filtered and "<p>TEXT-BOBS</p>" not in filtered

    # Once the grant is revoked, even what bob asked for himself is gone.
    with database.connection_context():
        StreamAccess.delete().where(StreamAccess.user == bob.id).execute()
    html = viewer.get("/summaries/").get_data(as_text=True)
    assert "<p>TEXT-BOBS</p>" not in html and "<p>TEXT-A</p>" not in html
    assert viewer.get(f"/summaries/{bobs.id}").status_code == 404
    with database.connection_context():
        StreamAccess.create(user=bob, stream=a)

    # Admins see everything.
    html = admin.get("/summaries/").get_data(as_text=True)
    for text in ("TEXT-A", "TEXT-B", "TEXT-GLOBAL", "TEXT-BOBS", "TEXT-ALICES"):
        assert f"<p>{text}</p>" in html
    period = admin.get("/summaries/?period=custom").get_data(as_text=True)
    assert "<p>TEXT-BOBS</p>" in period
    assert "<p>TEXT-A</p>" not in period and "<p>TEXT-GLOBAL</p>" not in period


def test_list_is_paginated_newest_first(ai_app):
    cam = make_stream("Cam")
    for i in range(25):
        start = HOUR_START - timedelta(hours=i)
        add_summary(
            cam, f"HOUR-{i:02d}-TEXT", window_start=start, window_end=start + timedelta(hours=1)
        )
    admin = ai_app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    first = admin.get("/summaries/").get_data(as_text=True)
    assert first.index("HOUR-00-TEXT") < first.index("HOUR-01-TEXT")
    assert "HOUR-19-TEXT" in first and "HOUR-20-TEXT" not in first
    assert "page=2" in first
    second = admin.get("/summaries/?page=2").get_data(as_text=True)
    assert "HOUR-20-TEXT" in second and "HOUR-24-TEXT" in second and "HOUR-19-TEXT" not in second


# --- on demand ------------------------------------------------------------------------------


def test_summarise_now_runs_through_the_job_and_the_page_shows_it(ai_app, openai_server):
    a, b = make_stream("Granted cam"), make_stream("Hidden cam")
    admin = ai_app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=a)
    now = times.utcnow()
    add_event(a, now - timedelta(minutes=10), "Fox in the garden", severity="low")
    add_event(b, now - timedelta(minutes=10), "SECRET-HIDDEN-EVENT")
    viewer = ai_app.test_client()
    login(viewer, "bob", PASSWORD)
    page = viewer.get("/summaries/").get_data(as_text=True)
    assert "Hidden cam" not in page and "Granted cam" in page
    token = csrf_from(page)

    # CSRF is required.
    assert viewer.post("/summaries/", data={"scope": "all", "window": "hour"}).status_code == 400
    headers = {"X-CSRFToken": token, **HTMX}
    bad = viewer.post("/summaries/", data={"scope": "all", "window": "fortnight"}, headers=headers)
    assert bad.status_code == 422 and "Choose a time window." in bad.get_data(as_text=True)
    assert bad.headers["HX-Retarget"] == "#summary-form"
    bad = viewer.post("/summaries/", data={"scope": "garden", "window": "hour"}, headers=headers)
    assert bad.status_code == 422
    bad = viewer.post(
        "/summaries/", data={"scope": "all", "window": "hour"}, headers={"X-CSRFToken": token}
    )
    assert bad.status_code == 303  # the plain form works too (and is counted below)
    hidden = viewer.post(
        "/summaries/", data={"scope": str(b.id), "window": "hour"}, headers=headers
    )
    assert hidden.status_code == 404
    with database.connection_context():
        assert Summary.select().count() == 1

    response = viewer.post("/summaries/", data={"scope": "all", "window": "day"}, headers=headers)
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    summary_id = int(re.search(r'id="summary-(\d+)"', fragment)[1])
    assert 'hx-trigger="every 2s"' in fragment and "queued" in fragment

    openai_server.handler = lambda _r: Reply.completion("A fox visited the garden.")
    run_queued_jobs(ai_app, ("analysis",))
    row = get_summary(summary_id)
    assert row.status == "done" and row.requested_by_id == bob.id and row.period == "custom"
    assert row.stream_ids == [a.id]
    assert row.window_end - row.window_start == timedelta(hours=24)
    assert all("SECRET-HIDDEN-EVENT" not in r.text for r in openai_server.requests)
    assert any("Fox in the garden" in r.text for r in openai_server.requests)
    polled = viewer.get(f"/summaries/{summary_id}", headers=HTMX).get_data(as_text=True)
    assert "A fox visited the garden." in polled and "hx-trigger" not in polled
    assert "A fox visited the garden." in viewer.get("/summaries/").get_data(as_text=True)

    # One stream, then the per-user cap on pending summaries.
    one = viewer.post("/summaries/", data={"scope": str(a.id), "window": "week"}, headers=headers)
    assert one.status_code == 200
    for _ in range(summaries.MAX_PENDING_PER_USER - 1):
        assert (
            viewer.post(
                "/summaries/", data={"scope": "all", "window": "hour"}, headers=headers
            ).status_code
            == 200
        )
    too_many = viewer.post("/summaries/", data={"scope": "all", "window": "hour"}, headers=headers)
    assert too_many.status_code == 429
    with database.connection_context():
        mine = Summary.select().where(Summary.requested_by == bob.id)
        assert mine.where(Summary.status.in_(summaries.ACTIVE_STATES)).count() == 3
        assert mine.where(Summary.stream == a.id).count() == 1


def test_without_ai_the_page_says_so_and_nothing_is_created(plain_app):
    cam = make_stream("Cam")
    admin = plain_app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    html = admin.get("/summaries/").get_data(as_text=True)
    assert "AI not configured" in html
    assert re.search(r'<button type="submit" disabled>Summarise now', html)
    token = csrf_from(html)
    for headers in ({"X-CSRFToken": token}, {"X-CSRFToken": token, **HTMX}):
        response = admin.post(
            "/summaries/", data={"scope": str(cam.id), "window": "hour"}, headers=headers
        )
        assert response.status_code == 409
        assert "AI not configured" in response.get_data(as_text=True)
    with database.connection_context():
        assert Summary.select().count() == 0

    # A summary queued before the AI was switched off fails, saying why.
    add_event(cam, HOUR_START + timedelta(minutes=1), "Something")
    queued = add_summary(cam, "", status="queued")
    summaries.enqueue_build(queued.id, plain_app.extensions["glimpser.redis"])
    run_queued_jobs(plain_app, ("analysis",))
    row = get_summary(queued.id)
    assert row.status == "failed" and row.error == "AI not configured"
    assert "AI not configured" in admin.get(f"/summaries/{queued.id}").get_data(as_text=True)


def test_concurrent_builds_of_one_stream_count_their_own_tokens(ai_app, openai_server):
    """Hour and day summaries of one stream are due at the same time; on two workers each
    must record only its own call's tokens (builds of one scope call the model in turn)."""
    from glimpser.analysis.ai import AIClient

    door = make_stream("Front door")
    add_event(door, HOUR_START + timedelta(minutes=5), "Person at the door")

    def reply(request):
        day = "(day)." in request.text
        tokens = 1000 if day else 100
        answer = Reply.completion("Day." if day else "Hour.", tokens, completion_tokens=1)
        return dataclasses.replace(answer, delay=0.3)  # the two calls would overlap

    openai_server.handler = reply
    created = schedule(ai_app, periods=("hour", "day"))
    with database.connection_context():
        ids = [s.id for s in Summary.select().where(Summary.stream == door.id).order_by(Summary.id)]
    assert len(created) == 4 and len(ids) == 2
    settings = ai_app.extensions["glimpser.settings"]
    connection = ai_app.extensions["glimpser.redis"]

    def run(summary_id: int) -> None:
        client = AIClient.from_settings(settings, connection)
        try:
            with database.connection_context():
                summaries.build(summary_id, client, connection)
        finally:
            client.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hour, day = (get_summary(i) for i in ids)
    assert (hour.period, hour.text, hour.total_tokens) == ("hour", "Hour.", 101)
    assert (day.period, day.text, day.total_tokens) == ("day", "Day.", 1001)
