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
    assert "high, low" in html  # the dropdown says what is chosen
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
    assert 'href="/events?q=door&amp;range=today"' in html


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
