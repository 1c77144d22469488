"""Event search and the multi-select filters (issue 12), through the Flask test client on
SQLite (FTS5) and PostgreSQL (tsvector/GIN) with real Redis: words found in titles,
descriptions and objects, the index kept current by the database, highlighted results that
stay escaped, viewers who never find another stream's events, hostile queries (4xx, never a
500), multi-select streams/severities/kinds, and the quick time ranges."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from glimpser import times
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import Event, StreamAccess
from tests.helpers import login, setup_admin
from tests.test_events import PASSWORD, add_event, titles
from tests.test_images import add_stream

HTMX = {"HX-Request": "true"}


@pytest.fixture
def app(db_app):
    """Every test here runs on SQLite and on PostgreSQL (the search differs)."""
    return db_app


@pytest.fixture
def admin(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


@pytest.fixture
def scene(app, admin):
    now = times.utcnow()
    porch = add_stream("Porch")
    garage = add_stream("Garage")
    events = {
        "courier": add_event(
            porch,
            "Person at the door",
            kind="ai",
            severity="high",
            description="A courier holds a parcel <b>marked</b> FRAGILE.",
            data={"objects": ["person", "parcel"]},
            created_at=now - timedelta(minutes=5),
        ),
        "cat": add_event(
            porch,
            "Motion on the porch",
            severity="info",
            data={"objects": ["cat"]},
            created_at=now - timedelta(hours=2),
        ),
        "van": add_event(
            garage,
            "Garage door moved",
            kind="change",
            severity="medium",
            description="A white van is parked; secretword appears only here.",
            created_at=now - timedelta(days=2),
        ),
        "failed": add_event(
            garage,
            "Capture failing",
            kind="capture_failed",
            severity="low",
            created_at=now - timedelta(days=10),
        ),
    }
    return porch, garage, events


def search(client, q: str, **params: object) -> list[str]:
    response = client.get("/events", query_string={"q": q, **params})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return titles(response.get_data(as_text=True))


def test_search_finds_titles_descriptions_and_objects(admin, scene):
    assert search(admin, "door") == ["Person at the door", "Garage door moved"]
    assert search(admin, "courier") == ["Person at the door"]  # the (AI) description
    assert search(admin, "cat") == ["Motion on the porch"]  # an object the AI saw
    assert search(admin, "PARCEL") == ["Person at the door"]  # any case; objects too
    assert search(admin, "pers") == ["Person at the door"]  # a word's start
    assert search(admin, "door van") == ["Garage door moved"]  # every word must match
    assert search(admin, "nothing-like-this") == []
    # The search box keeps the words; no match says so.
    html = admin.get("/events?q=zebra").get_data(as_text=True)
    assert 'value="zebra"' in html and "No event contains these words" in html


def test_results_highlight_the_words_and_stay_escaped(admin, scene):
    html = admin.get("/events?q=marked+person").get_data(as_text=True)
    assert "<mark>Person</mark> at the door" in html
    # The description's markup is text: escaped first, then the word marked.
    assert "&lt;b&gt;<mark>marked</mark>&lt;/b&gt;" in html
    assert "<b>marked</b>" not in html
    assert "Objects: <mark>person</mark>, parcel" in html


def test_the_index_follows_writes(admin, scene):
    _porch, garage, events = scene
    with database.connection_context():
        Event.update(title="Delivery van left").where(Event.id == events["cat"].id).execute()
        Event.update(data={"objects": ["bicycle"]}).where(Event.id == events["van"].id).execute()
    assert search(admin, "delivery") == ["Delivery van left"]
    assert search(admin, "porch") == []  # the old title is gone from the index
    assert search(admin, "cat") == ["Delivery van left"]  # its objects are unchanged
    assert search(admin, "bicycle") == ["Garage door moved"]
    new = add_event(garage, "Fox in the garden", severity="low")
    assert search(admin, "fox") == ["Fox in the garden"]
    with database.connection_context():
        Event.delete().where(Event.id == new.id).execute()
    assert search(admin, "fox") == []


def test_search_with_filters_and_htmx(admin, scene):
    porch, garage, _events = scene
    assert search(admin, "door", stream=garage.id) == ["Garage door moved"]
    assert search(admin, "door", severity="high") == ["Person at the door"]
    response = admin.get("/events?q=door&kind=change", headers=HTMX)
    assert response.status_code == 200
    assert titles(response.get_data(as_text=True)) == ["Garage door moved"]
    assert response.headers["HX-Push-Url"] == "/events?q=door&kind=change"


@pytest.fixture
def viewer(app, scene):
    porch, _garage, _events = scene
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=porch)
    client = app.test_client()
    login(client, "bob", PASSWORD)
    return client


def test_viewers_never_find_another_streams_events(viewer, scene):
    _porch, garage, _events = scene
    assert search(viewer, "secretword") == []
    assert search(viewer, "door") == ["Person at the door"]
    assert "A white van" not in viewer.get("/events?q=secretword").get_data(as_text=True)
    assert viewer.get(f"/events?q=secretword&stream={garage.id}").status_code == 404
    assert viewer.get("/events?q=door&stream=system").status_code == 404


HOSTILE_OK = [
    '"door',
    "door*",
    "NEAR(door moved)",
    "door OR van",
    "title:door",
    "-door",
    "door AND NOT van",
    "'; DROP TABLE event; --",
    "café 東京 ٣",
    "d\u0301oor",
    "^door",
    "a" * 150,
    "door:* & van",
    "\\door",
]
HOSTILE_400 = [
    "*",
    '"',
    "***",
    "(((",
    "x" * 10_000,
    "door\x00van",
    " ".join(f"w{i}" for i in range(40)),
]


@pytest.mark.parametrize("q", HOSTILE_OK)
def test_hostile_queries_are_read_as_words(admin, scene, q):
    response = admin.get("/events", query_string={"q": q})
    assert response.status_code == 200, q


def test_hostile_queries_that_cannot_be_searched_are_400(admin, scene):
    for q in HOSTILE_400:
        response = admin.get("/events", query_string={"q": q})
        assert response.status_code == 400, q
        assert "Search for" in response.get_data(as_text=True) or "NUL" in response.get_data(
            as_text=True
        )
    # Punctuation around words does not change what is found.
    assert search(admin, '"door" (moved)* -') == ["Garage door moved"]


def test_multi_select_filters(admin, scene):
    porch, garage, _events = scene
    assert search(admin, "", severity=["high", "low"]) == ["Person at the door", "Capture failing"]
    assert search(admin, "", kind=["change", "capture_failed"]) == [
        "Garage door moved",
        "Capture failing",
    ]
    assert len(search(admin, "", stream=[porch.id, garage.id])) == 4
    html = admin.get(f"/events?severity=high&severity=low&stream={porch.id}").get_data(as_text=True)
    assert titles(html) == ["Person at the door"]
    assert 'id="ev-sev-high" name="severity" value="high" checked' in html
    assert html.count('<span class="when-some">Only the chosen</span>') == 3  # shown by CSS
    # The poll and "Older events" keep every chosen value.
    poll = re.search(r'id="events-poll"[^>]*hx-get="([^"]+)"', html).group(1)
    assert "severity=high&amp;severity=low" in poll


def test_quick_ranges(admin, scene):
    assert search(admin, "", range="hour") == ["Person at the door"]
    assert search(admin, "", range="week") == [
        "Person at the door",
        "Motion on the porch",
        "Garage door moved",
    ]
    today = search(admin, "", range="today")
    assert "Garage door moved" not in today and "Capture failing" not in today
    html = admin.get("/events?q=door").get_data(as_text=True)
    assert 'id="ev-range-today" value="today">' in html  # a one-click pick (a radio)
    assert 'id="ev-range-any" value="" checked>' in html


@pytest.mark.parametrize(
    "query",
    [
        "severity=high&severity=bogus",
        "kind=motion&kind=%D9%A3",
        "stream=abc",
        f"stream={2**63}",
        "stream=%D9%A3",
        "range=yesterday",
        "&".join(["severity=high"] * 201),
    ],
)
def test_bad_filter_values_are_400(admin, scene, query):
    assert admin.get(f"/events?{query}").status_code == 400


def test_unknown_stream_in_a_multi_select_is_404(admin, scene):
    porch, _garage, _events = scene
    assert admin.get(f"/events?stream={porch.id}&stream=999999").status_code == 404


# --- the event page -------------------------------------------------------------------------


@pytest.fixture
def review(app, admin):
    """A stream with five pictures; the event is on the third, with boxes, AI and a rule."""
    from glimpser.models import Delivery, NotificationChannel, Rule, Snapshot
    from tests.media_servers import jpeg
    from tests.test_images import add_snapshot

    porch = add_stream("Porch")
    colours = [(20, 20, 20), (40, 40, 40), (220, 220, 220), (60, 60, 60), (80, 80, 80)]
    snaps = [
        add_snapshot(app, porch, jpeg(c, size=(320, 240)), seconds_ago=600 - i * 60)
        for i, c in enumerate(colours)
    ]
    with database.connection_context():
        Snapshot.update(
            boxes=[[0.1, 0.2, 0.3, 0.4]],
            ai={
                "title": "A courier",
                "description": "A courier at the door.",
                "objects": ["person", "parcel"],
                "threat": 1,
                "confidence": 0.9,
            },
        ).where(Snapshot.id == snaps[2].id).execute()
        rule = Rule.get(Rule.name == "Motion or change")
        channel = NotificationChannel.create(name="Ops hook", kind="webhook", config={})
    now = times.utcnow()
    older = add_event(porch, "Earlier thing", created_at=now - timedelta(hours=1))
    event = add_event(
        porch,
        "Person at the door",
        snapshot=snaps[2],
        rule=rule,
        kind="ai",
        severity="high",
        description="A courier at the door.",
        data={
            "rule": rule.name,
            "conditions": {"min_motion": 0.02},
            "score": 0.125,
            "matched_objects": ["person"],
            "answer": {"match": True, "confidence": 0.8, "reason": "someone is at the door"},
            "question": "Is someone at the door?",
        },
        created_at=now - timedelta(minutes=2),
    )
    newer = add_event(porch, "Later thing", created_at=now - timedelta(minutes=1))
    with database.connection_context():
        Delivery.create(
            event=event,
            channel=channel,
            status="failed",
            attempts=3,
            response_code=500,
            error="server said no",
        )
    return porch, snaps, event, older, newer


def test_event_page_shows_the_review(admin, review):
    porch, snaps, event, older, newer = review
    response = admin.get(f"/events/{event.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    # The large picture with its boxes, the picture before it, and their difference.
    assert f'src="/streams/{porch.id}/snapshots/{snaps[2].id}.jpg"' in html
    assert '<rect x="0.1" y="0.2" width="0.3" height="0.4"/>' in html
    assert f'src="/streams/{porch.id}/snapshots/{snaps[1].id}.jpg"' in html
    assert f'src="/events/{event.id}/difference.jpg"' in html
    assert 'id="view-side"' in html and 'id="view-diff"' in html
    # AI description and objects, the rule and why it matched, the deliveries.
    assert "A courier at the door." in html and '<span class="badge">parcel</span>' in html
    assert "90 % confident" in html
    assert "“Motion or change”" in html
    assert "Is someone at the door?" in html and "yes (80 % sure): someone is at the door" in html
    assert "12.5 %" in html and "Objects that matched" in html
    assert "Ops hook" in html and "failed" in html and "HTTP 500" in html
    # The pictures around that moment (±4: two before, two after), the event's one marked.
    strip = re.search(r'<ol class="event-strip">(.*?)</ol>', html, re.S).group(1)
    assert strip.count("<li") == 5 and strip.count("aria-current") == 1
    # j/k neighbours, and the shortcuts.
    assert f'data-older="/events/{older.id}" data-newer="/events/{newer.id}"' in html
    assert 'id="shortcuts"' in html and "event_review.js" in html
    assert 'id="event-ack"' in html


def test_difference_image(admin, review):
    import cv2
    import numpy as np

    _porch, _snaps, event, older, _newer = review
    response = admin.get(f"/events/{event.id}/difference.jpg")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    picture = cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[:2] == (240, 320)
    b, g, r = (float(picture[..., i].mean()) for i in range(3))
    assert r > 150 and r > g + 50  # 40 -> 220 grey everywhere: all of it changed, in red
    again = admin.get(
        f"/events/{event.id}/difference.jpg", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status_code == 304
    # No picture before (or no picture at all): nothing to compare.
    assert admin.get(f"/events/{older.id}/difference.jpg").status_code == 404
    assert admin.get(f"/events/{2**63}/difference.jpg").status_code == 404
    assert admin.get("/events/99999/difference.jpg").status_code == 404


def test_event_page_for_viewers(app, review):
    porch, _snaps, event, _older, _newer = review
    garage = add_stream("Garage")
    hidden = add_event(garage, "Hidden thing")
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=porch)
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    html = viewer.get(f"/events/{event.id}").get_data(as_text=True)
    assert "A courier at the door." in html
    assert "Ops hook" not in html and "server said no" not in html  # deliveries: admins only
    assert "/admin/rules/" not in html
    assert viewer.get(f"/events/{hidden.id}").status_code == 404
    assert viewer.get(f"/events/{hidden.id}/difference.jpg").status_code == 404
    # The neighbours skip events of streams the viewer may not see.
    assert f"/events/{hidden.id}" not in html


def test_event_page_without_picture(admin, scene):
    _porch, _garage, events = scene
    html = admin.get(f"/events/{events['failed'].id}").get_data(as_text=True)
    assert "This event has no picture." in html
    assert "difference.jpg" not in html
    assert "No notification was sent for this event." in html


def test_migration_0010_backfills_existing_events_on_sqlite(tmp_path):
    """Events written before the index existed are found; a row whose data is not JSON does
    not stop the migration nor later writes."""
    import peewee

    from glimpser.db import discover_migrations

    db = peewee.SqliteDatabase(str(tmp_path / "old.db"), pragmas={"foreign_keys": 1})
    migrations = discover_migrations()
    with db.connection_context():
        for migration in migrations:
            if migration.version < 10:
                migration.module.up(db)
        insert = (
            "INSERT INTO event (kind, severity, title, description, data, acknowledged, "
            "created_at) VALUES ('ai', 'info', ?, ?, ?, 0, '2026-01-01 00:00:00')"
        )
        db.execute_sql(insert, ("Old fox event", "a red fox", '{"objects": ["fox", "hedge"]}'))
        db.execute_sql(insert, ("Odd row", "x", "not json"))
        next(m for m in migrations if m.version == 10).module.up(db)
        found = db.execute_sql(
            "SELECT rowid FROM event_fts WHERE event_fts MATCH ?", ['"hedge"*']
        ).fetchall()
        assert found == [(1,)]
        db.execute_sql("UPDATE event SET data = 'still not json' WHERE id = 2")
        assert db.execute_sql("SELECT count(*) FROM event_fts").fetchone() == (2,)


def test_search_finds_summaries_the_user_may_see(app, admin, scene):
    from glimpser.models import Summary

    porch, garage, _events = scene
    now = times.utcnow()
    with database.connection_context():
        for stream, text in ((porch, "Quiet hour; a heron visited."), (garage, "A heron again.")):
            Summary.create(
                stream=stream,
                stream_ids=[stream.id],
                period="hour",
                window_start=now - timedelta(hours=1),
                window_end=now,
                status="done",
                text=text,
            )
    html = admin.get("/events?q=heron").get_data(as_text=True)
    assert "Summaries with these words (2)" in html and "a <mark>heron</mark> visited" in html
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=porch)
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    html = viewer.get("/events?q=heron", headers=HTMX).get_data(as_text=True)
    assert "Summaries with these words (1)" in html and "again" not in html
