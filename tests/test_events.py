"""The event timeline and the analysis results on other pages, through the Flask test client
on SQLite and PostgreSQL with real Redis: listing, every filter, keyset pagination, the
204-until-new poll, acknowledging one or many (CSRF, per-stream access, audit), system-wide
events for admins only, bad input, the stream page's events / AI description / motion result /
boxes, and the dashboard card's AI caption."""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta

import pytest

from glimpser import times
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import AuditLog, Event, Rule, Snapshot, Stream, StreamAccess
from tests.helpers import csrf_from, login, setup_admin
from tests.media_servers import jpeg
from tests.test_images import add_snapshot, add_stream

PASSWORD = "correct horse battery"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def app(db_app):
    """Every test here runs on SQLite and on PostgreSQL (the queries differ)."""
    return db_app


@pytest.fixture
def admin(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def add_event(stream: Stream | None, title: str, **fields: object) -> Event:
    fields.setdefault("kind", "motion")
    with database.connection_context():
        return Event.create(stream=stream, title=title, **fields)


def titles(html: str) -> list[str]:
    """The event titles shown, in order."""
    found = re.findall(r'<h3 class="event-title">(.*?)</h3>', html, re.S)
    return [html_lib.unescape(re.sub(r"<[^>]+>", "", t)) for t in found]


def entry(html: str, event_id: int) -> str:
    match = re.search(rf'<li id="event-{event_id}".*?</li>', html, re.S)
    assert match, f"event {event_id} is not shown"
    return match.group(0)


def poll_url(html: str) -> str:
    match = re.search(r'<div id="events-poll"[^>]*hx-get="([^"]+)"', html)
    assert match, "the timeline does not poll"
    return html_lib.unescape(match.group(1))


@pytest.fixture
def scene(app, admin):
    """Two streams with pictures and events of several kinds, severities and ages."""
    now = times.utcnow()
    porch = add_stream("Porch")
    garage = add_stream("Garage")
    porch_snap = add_snapshot(app, porch, jpeg((20, 90, 160), size=(640, 360)))
    garage_snap = add_snapshot(app, garage, jpeg((160, 90, 20), size=(640, 360)))
    with database.connection_context():
        rule = Rule.get(Rule.name == "Motion or change")
    events = {
        "person": add_event(
            porch,
            "Person at the door",
            snapshot=porch_snap,
            rule=rule,
            severity="high",
            kind="ai",
            description="A courier holds a parcel.",
            created_at=now - timedelta(minutes=5),
        ),
        "motion": add_event(
            porch,
            "Motion on the porch",
            snapshot=porch_snap,
            rule=rule,
            severity="info",
            created_at=now - timedelta(hours=3),
        ),
        "old": add_event(
            garage,
            "Garage door moved",
            snapshot=garage_snap,
            severity="medium",
            acknowledged=True,
            created_at=now - timedelta(days=3),
        ),
        "failed": add_event(
            garage,
            "Capture failing",
            kind="capture_failed",
            severity="low",
            created_at=now - timedelta(days=10),
        ),
        "system": add_event(
            None,
            "Disk almost full",
            kind="capture_failed",
            severity="critical",
            created_at=now - timedelta(minutes=1),
        ),
    }
    return porch, garage, porch_snap, events


# --- the timeline ---------------------------------------------------------------------------


def test_timeline_shows_every_part_of_an_entry(admin, scene):
    porch, garage, porch_snap, events = scene
    response = admin.get("/events")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert titles(html) == [
        "Disk almost full",
        "Person at the door",
        "Motion on the porch",
        "Garage door moved",
        "Capture failing",
    ]
    person = entry(html, events["person"].id)
    thumb = f"/streams/{porch.id}/snapshots/{porch_snap.id}/thumb.jpg"
    assert f'src="{thumb}"' in person
    assert f'href="/events/{events["person"].id}#picture"' in person  # the app's viewer
    assert 'class="badge sev-high">high<' in person
    assert f'<a href="/streams/{porch.id}" class="event-stream">Porch</a>' in person
    assert "rule “Motion or change”" in person and "AI rule" in person
    assert "A courier holds a parcel." in person
    assert re.search(r'<time datetime="[^"]+" title="[^"]+" data-relative>5 min ago</time>', person)
    assert re.search(r">(today|yesterday) \d\d:\d\d:\d\d</time>", person)  # the user's zone
    assert ">Acknowledge</button>" in person and "Acknowledged<" not in person
    # Acknowledged events say so; system-wide events have no stream and no picture.
    assert "Acknowledged</span>" in entry(html, events["old"].id)
    system = entry(html, events["system"].id)
    assert '<span class="event-stream">System</span>' in system and "No picture" in system
    # The thumbnail really is served.
    assert admin.get(thumb).status_code == 200
    # The nav links here, and every control on the page has a label.
    assert '<a href="/events">Events</a>' in html
    labels_for = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', html))
    for attrs in re.findall(r"<(?:input|select|textarea)\b([^>]*)>", html):
        if 'type="hidden"' not in attrs:
            assert re.search(r'\bid="([^"]+)"', attrs).group(1) in labels_for, attrs


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("severity=high", ["Person at the door"]),
        ("kind=capture_failed", ["Disk almost full", "Capture failing"]),
        ("ack=yes", ["Garage door moved"]),
        (
            "ack=no",
            ["Disk almost full", "Person at the door", "Motion on the porch", "Capture failing"],
        ),
        ("range=hour", ["Disk almost full", "Person at the door"]),
        ("range=day", ["Disk almost full", "Person at the door", "Motion on the porch"]),
        (
            "range=week",
            ["Disk almost full", "Person at the door", "Motion on the porch", "Garage door moved"],
        ),
        ("stream=system", ["Disk almost full"]),
        ("severity=info&kind=motion&ack=no&range=day", ["Motion on the porch"]),
    ],
)
def test_filters(admin, scene, query, expected):
    assert titles(admin.get(f"/events?{query}").get_data(as_text=True)) == expected


def test_stream_filter_and_custom_time_range(admin, scene):
    porch, garage, _snap, _events = scene
    html = admin.get(f"/events?stream={garage.id}").get_data(as_text=True)
    assert titles(html) == ["Garage door moved", "Capture failing"]
    assert f'id="ev-stream-{garage.id}" name="stream" value="{garage.id}" checked> Garage' in html
    now = times.utcnow()
    start = (now - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M")
    end = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    custom = admin.get(f"/events?range=custom&from={start}&to={end}").get_data(as_text=True)
    assert titles(custom) == ["Motion on the porch", "Garage door moved"]
    assert f'value="{start}"' in custom and 'id="ev-range-custom" value="custom" checked>' in custom
    only_start = admin.get(f"/events?range=custom&from={start}").get_data(as_text=True)
    assert len(titles(only_start)) == 4
    # From/to belong to a custom range: with a preset they are ignored.
    assert len(titles(admin.get(f"/events?range=hour&to={start}").get_data(as_text=True))) == 2
    nothing = admin.get("/events?severity=critical&kind=motion").get_data(as_text=True)
    assert titles(nothing) == [] and "No event matches these filters." in nothing


@pytest.mark.parametrize(
    "query",
    [
        "severity=urgent",
        "kind=earthquake",
        "ack=maybe",
        "range=century",
        "stream=porch",
        "stream=99999999999999999999999",
        "range=custom&from=yesterday",
        "range=custom&from=0001-01-01T00:00%2B05:00",
        "range=custom&from=2026-01-02T00:00&to=2026-01-01T00:00",
        "before=nonsense",
        "before=20260101T000000.000000Z_x",
        "after=-1",
        "after=99999999999999999999",
    ],
)
def test_bad_filters_are_a_clear_400(admin, scene, query):
    response = admin.get(f"/events?{query}")
    assert response.status_code == 400, response.status_code
    assert "Bad request" in response.get_data(as_text=True)


def test_an_unknown_stream_filter_is_404(admin, scene):
    assert admin.get("/events?stream=4242").status_code == 404


def test_empty_timeline(admin):
    html = admin.get("/events").get_data(as_text=True)
    assert titles(html) == [] and "No events yet." in html
    assert admin.get(poll_url(html), headers=HTMX).status_code == 204


def test_pagination_is_keyset_and_scrolls_in(app, admin):
    stream = add_stream("Busy")
    same_time = times.utcnow() - timedelta(hours=1)
    # Equal times on purpose: the id breaks the tie, nothing is shown twice or skipped.
    made = [add_event(stream, f"Event {i:02d}", created_at=same_time) for i in range(30)]
    newest_first = [f"Event {i:02d}" for i in reversed(range(30))]
    page = admin.get("/events").get_data(as_text=True)
    assert titles(page) == newest_first[:25]
    more = re.search(r'<li class="more"><a href="([^"]+)"', page).group(1)
    more = html_lib.unescape(more)
    assert 'hx-trigger="click, revealed"' in page
    fragment = admin.get(more, headers=HTMX).get_data(as_text=True)
    assert titles(fragment) == newest_first[25:]
    assert 'class="more"' not in fragment and "<html" not in fragment
    assert 'id="events-poll"' not in fragment
    # Without JavaScript the same link is a whole page, without polling.
    full = admin.get(more).get_data(as_text=True)
    assert "Back to the newest events" in full and "<html" in full
    assert titles(full) == newest_first[25:] and 'id="events-poll"' not in full
    # Filters travel with the cursor.
    with database.connection_context():
        Event.update(severity="high").where(Event.id.in_([e.id for e in made[:27]])).execute()
    filtered = admin.get("/events?severity=high").get_data(as_text=True)
    more = html_lib.unescape(re.search(r'<li class="more"><a href="([^"]+)"', filtered).group(1))
    assert "severity=high" in more
    assert titles(admin.get(more, headers=HTMX).get_data(as_text=True)) == ["Event 01", "Event 00"]


def test_new_events_arrive_through_the_poll(admin, scene):
    porch, garage, _snap, _events = scene
    page = admin.get("/events").get_data(as_text=True)
    url = poll_url(page)
    nothing = admin.get(url, headers=HTMX)
    assert nothing.status_code == 204 and nothing.data == b""
    fresh = add_event(porch, "A fox crosses", severity="medium")
    response = admin.get(url, headers=HTMX)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert titles(html) == ["A fox crosses"] and "<html" not in html
    assert 'id="events-poll"' in html and 'hx-swap-oob="true"' in html
    assert f'<li id="event-{fresh.id}"' in html
    # The poller comes back asking for what is newer than the new entry.
    newer_url = poll_url(html)
    assert f"after={fresh.id}" in newer_url
    assert admin.get(newer_url, headers=HTMX).status_code == 204
    # The poll keeps the filters: a matching event comes, another does not.
    filtered = poll_url(admin.get(f"/events?stream={garage.id}").get_data(as_text=True))
    add_event(porch, "Not for this filter")
    assert admin.get(filtered, headers=HTMX).status_code == 204
    add_event(garage, "Garage light on")
    assert titles(admin.get(filtered, headers=HTMX).get_data(as_text=True)) == ["Garage light on"]


def test_a_filter_change_answers_the_results_and_pushes_the_url(admin, scene):
    response = admin.get("/events?severity=high&stream=", headers=HTMX)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="event-results"')
    assert titles(html) == ["Person at the door"]
    assert response.headers["HX-Push-Url"] == "/events?severity=high"
    assert "severity=high" in poll_url(html)


# --- acknowledge ----------------------------------------------------------------------------


def test_acknowledge_one(admin, scene):
    _porch, _garage, _snap, events = scene
    event_id = events["person"].id
    page = admin.get("/events").get_data(as_text=True)
    token = csrf_from(page)
    # CSRF is required.
    assert admin.post(f"/events/{event_id}/acknowledge").status_code == 400
    with database.connection_context():
        assert not Event.get_by_id(event_id).acknowledged
    response = admin.post(f"/events/{event_id}/acknowledge", headers={**HTMX, "X-CSRFToken": token})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<li id="event-{event_id}"')
    assert "Acknowledged</span>" in html and ">Acknowledge</button>" not in html
    with database.connection_context():
        assert Event.get_by_id(event_id).acknowledged
        audit = AuditLog.get(AuditLog.action == "events.acknowledge")
        assert audit.target == f"event:{event_id}"
        assert audit.detail == {"ids": [event_id], "count": 1}
    # Without JavaScript: a form post, then back to where it came from (local paths only).
    other = events["motion"].id
    plain = admin.post(
        f"/events/{other}/acknowledge",
        data={"csrf_token": token, "next": "/events?severity=info"},
    )
    assert plain.status_code == 302 and plain.headers["Location"] == "/events?severity=info"
    evil = admin.post(
        f"/events/{events['failed'].id}/acknowledge",
        data={"csrf_token": token, "next": "//evil.example/"},
    )
    assert evil.headers["Location"] == "/events"
    assert admin.get("/events?ack=no").status_code == 200
    assert titles(admin.get("/events?ack=no").get_data(as_text=True)) == ["Disk almost full"]
    assert admin.post("/events/4242/acknowledge", headers={"X-CSRFToken": token}).status_code == 404
    huge = admin.post("/events/99999999999999999999/acknowledge", headers={"X-CSRFToken": token})
    assert huge.status_code == 404


def test_acknowledge_many_and_all_shown(admin, scene):
    _porch, _garage, _snap, events = scene
    token = csrf_from(admin.get("/events").get_data(as_text=True))
    headers = {**HTMX, "X-CSRFToken": token}
    assert admin.post("/events/acknowledge", data={"ids": [events["person"].id]}).status_code == 400
    picked = [events["person"].id, events["motion"].id]
    response = admin.post(
        "/events/acknowledge", data={"scope": "selected", "ids": picked}, headers=headers
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "2 events acknowledged." in html
    for event_id in picked:
        assert f'<li id="event-{event_id}" class="event' in html
        assert 'hx-swap-oob="true"' in entry(html, event_id)
    with database.connection_context():
        acked = {e.id for e in Event.select().where(Event.acknowledged == True)}  # noqa: E712
    assert acked == {*picked, events["old"].id}
    # "All shown" takes the shown ids, not the selection.
    shown = [events["system"].id, events["failed"].id]
    response = admin.post(
        "/events/acknowledge",
        data={"scope": "shown", "shown": shown, "ids": []},
        headers=headers,
    )
    assert "2 events acknowledged." in response.get_data(as_text=True)
    with database.connection_context():
        assert Event.select().where(Event.acknowledged == False).count() == 0  # noqa: E712
    # Nothing selected: a clear message, not an error page.
    empty = admin.post("/events/acknowledge", data={"scope": "selected"}, headers=headers)
    assert empty.status_code == 422
    assert "Select the events to acknowledge first." in empty.get_data(as_text=True)
    bad = admin.post("/events/acknowledge", data={"ids": ["1", "x"]}, headers=headers)
    assert bad.status_code == 400
    plain = admin.post(
        "/events/acknowledge", data={"csrf_token": token, "ids": picked, "next": "/events?ack=no"}
    )
    assert plain.status_code == 302 and plain.headers["Location"] == "/events?ack=no"


# --- per-stream access ----------------------------------------------------------------------


@pytest.fixture
def viewer(app, scene):
    porch, garage, _snap, _events = scene
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=porch)
    client = app.test_client()
    login(client, "bob", PASSWORD)
    return client


def test_viewers_see_only_their_streams_events(viewer, scene):
    porch, garage, _snap, events = scene
    html = viewer.get("/events").get_data(as_text=True)
    assert titles(html) == ["Person at the door", "Motion on the porch"]
    for hidden in ("Garage", "Disk almost full", "Capture failing", "System (no stream)"):
        assert hidden not in html, hidden
    assert viewer.get(f"/events?stream={garage.id}").status_code == 404
    assert viewer.get("/events?stream=system").status_code == 404
    assert (
        viewer.get("/events?kind=capture_failed").get_data(as_text=True).count("event-title") == 0
    )
    # The poll does not bring them either.
    url = poll_url(html)
    add_event(garage, "Hidden garage event")
    add_event(None, "Hidden system event")
    assert viewer.get(url, headers=HTMX).status_code == 204
    add_event(porch, "Visible porch event")
    assert titles(viewer.get(url, headers=HTMX).get_data(as_text=True)) == ["Visible porch event"]


def test_each_event_has_its_own_page_for_those_who_may_see_it(admin, viewer, scene):
    porch, garage, _snap, events = scene
    page = admin.get(f"/events/{events['person'].id}")
    assert page.status_code == 200
    assert "Person at the door" in page.get_data(as_text=True)
    assert viewer.get(f"/events/{events['person'].id}").status_code == 200
    hidden = add_event(garage, "Hidden garage event")
    assert viewer.get(f"/events/{hidden.id}").status_code == 404
    assert admin.get(f"/events/{hidden.id}").status_code == 200
    assert admin.get("/events/999999999").status_code == 404


def test_viewers_acknowledge_only_what_they_see(viewer, scene):
    porch, garage, _snap, events = scene
    token = csrf_from(viewer.get("/events").get_data(as_text=True))
    headers = {**HTMX, "X-CSRFToken": token}
    for name in ("failed", "system"):
        response = viewer.post(f"/events/{events[name].id}/acknowledge", headers=headers)
        assert response.status_code == 404
        assert events[name].title not in response.get_data(as_text=True)
    mine = events["person"].id
    assert viewer.post(f"/events/{mine}/acknowledge", headers=headers).status_code == 200
    mixed = [events["motion"].id, events["failed"].id, events["system"].id]
    response = viewer.post("/events/acknowledge", data={"ids": mixed}, headers=headers)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "1 event acknowledged." in html
    assert titles(html) == ["Motion on the porch"]
    assert "Capture failing" not in html and "Disk almost full" not in html
    with database.connection_context():
        assert Event.get_by_id(events["motion"].id).acknowledged
        assert not Event.get_by_id(events["failed"].id).acknowledged
        assert not Event.get_by_id(events["system"].id).acknowledged
    # Only ids the viewer may not see: nothing happens, and nothing is told about them.
    response = viewer.post(
        "/events/acknowledge", data={"ids": [events["failed"].id]}, headers=headers
    )
    assert "0 events acknowledged." in response.get_data(as_text=True)
    with database.connection_context():
        assert not Event.get_by_id(events["failed"].id).acknowledged


def test_the_stream_page_lists_only_that_streams_events(viewer, scene):
    porch, garage, _snap, events = scene
    page = viewer.get(f"/streams/{porch.id}").get_data(as_text=True)
    assert titles(page) == ["Person at the door", "Motion on the porch"]
    assert f'href="/events?stream={porch.id}"' in page
    assert viewer.get(f"/streams/{garage.id}").status_code == 404


# --- analysis results on the stream page and the dashboard ----------------------------------


def set_analysis(snapshot: Snapshot, **values: object) -> None:
    with database.connection_context():
        Snapshot.update(analysed_at=times.utcnow(), **values).where(
            Snapshot.id == snapshot.id
        ).execute()


def status_block(client, stream: Stream) -> str:
    html = client.get(f"/streams/{stream.id}").get_data(as_text=True)
    match = re.search(r'<div id="stream-status".*?<dl class="status">', html, re.S)
    assert match
    return match.group(0)


def test_stream_page_shows_the_ai_description_and_motion_result(app, admin, scene):
    porch, _garage, snap, _events = scene
    block = status_block(admin, porch)
    assert "not analysed yet" in block and "AI not configured." in block
    set_analysis(
        snap,
        motion_score=0.125,
        changed_fraction=0.3,
        changed=True,
        boxes=[[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.25, 0.25]],
        analysis_note="motion",
        ai={
            "title": "Courier at the door",
            "description": "A person in a yellow jacket holds a parcel.",
            "objects": ["person", "parcel"],
            "threat": 1,
            "confidence": 0.87,
        },
    )
    block = status_block(admin, porch)
    assert "score 12.5 %" in block and "changed" in block and "30.0 % of the picture" in block
    assert "Courier at the door" in block and "yellow jacket" in block
    assert "objects: person, parcel" in block and "threat: unusual" in block
    assert "confidence 87 %" in block and "AI not configured" not in block
    # The boxes, as an SVG over the picture, toggled by a labelled checkbox.
    svg = re.search(
        r'<svg class="boxes" viewBox="0 0 1 1" preserveAspectRatio="none".*?</svg>', block
    )
    assert svg
    rects = re.findall(
        r'<rect x="([^"]+)" y="([^"]+)" width="([^"]+)" height="([^"]+)"/>', svg.group(0)
    )
    assert rects == [("0.1", "0.2", "0.3", "0.4"), ("0.5", "0.5", "0.25", "0.25")]
    assert '<input type="checkbox" id="boxes-latest"' in block
    assert '<label for="boxes-latest" class="boxes-label">Show motion boxes</label>' in block
    assert "(2)" in block
    # The history thumbnails carry their boxes for the enlarged viewer (static/events.js).
    page = admin.get(f"/streams/{porch.id}").get_data(as_text=True)
    assert 'data-boxes="[[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.25, 0.25]]"' in page
    assert "/static/events.js" in page and '<label for="boxes-viewer"' in page
    assert " style=" not in page


def test_stream_page_shows_the_ai_error_and_the_status_poll_refreshes(app, admin, scene):
    porch, _garage, snap, _events = scene
    page = admin.get(f"/streams/{porch.id}").get_data(as_text=True)
    url = html_lib.unescape(re.search(r'id="stream-status"[^>]*hx-get="([^"]+)"', page).group(1))
    assert admin.get(url, headers=HTMX).status_code == 204
    set_analysis(
        snap,
        motion_score=0.0,
        changed_fraction=0.0,
        changed=False,
        boxes=[],
        analysis_note="quiet",
        ai={"error": "The AI server answered HTTP 500 three times."},
    )
    # The analysis finishing is a change of the status block.
    html = admin.get(url, headers=HTMX).get_data(as_text=True)
    assert "The AI could not describe this snapshot: The AI server answered HTTP 500" in html
    assert "no change" in html and "quiet" in html and "(none)" in html
    assert "<rect" not in html


def test_ai_configured_but_no_description_yet(app_factory, database_url):
    app = app_factory(
        database_url, GLIMPSER_AI_BASE_URL="http://127.0.0.1:9/v1", GLIMPSER_AI_MODEL="llava"
    )
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    stream = add_stream("Yard")
    add_snapshot(app, stream, jpeg((1, 2, 3), size=(320, 240)))
    block = status_block(client, stream)
    assert "AI not configured" not in block
    assert "None yet: snapshots are described when they change." in block
    with database.connection_context():
        Stream.update(
            ai_caption="A cat on the wall", ai_caption_at=times.utcnow() - timedelta(minutes=3)
        ).where(Stream.id == stream.id).execute()
    block = status_block(client, stream)
    assert "A cat on the wall" in block and "3 min ago" in block


def test_dashboard_cards_show_the_ai_caption_with_its_age(app, admin, scene):
    """The wall is picture-first: the latest AI caption is the tile's title (hover / long
    press), and a new caption is a change of the grid (the poll answers 200, not 204)."""
    porch, garage, _snap, _events = scene
    html = admin.get("/").get_data(as_text=True)
    assert "A courier leaves a parcel" not in html
    url = html_lib.unescape(re.search(r'id="dashboard-grid"[^>]*hx-get="([^"]+)"', html).group(1))
    with database.connection_context():
        Stream.update(
            ai_caption="A courier leaves a parcel",
            ai_caption_at=times.utcnow() - timedelta(minutes=2),
        ).where(Stream.id == porch.id).execute()
    response = admin.get(url, headers=HTMX)
    assert response.status_code == 200
    grid = response.get_data(as_text=True)
    tile = re.search(rf'<li class="tile[^"]*" id="tile-{porch.id}">.*?</li>', grid, re.S).group(0)
    assert 'title="A courier leaves a parcel"' in tile
    other = re.search(rf'<li class="tile[^"]*" id="tile-{garage.id}">.*?</li>', grid, re.S).group(0)
    assert "A courier" not in other
