"""The dashboard (camera wall) and the stream page through the Flask test client: the
self-refreshing grid (204 while unchanged), filters, search, empty states, per-user visibility,
and the stream page's paginated history. The wall's own features (columns, kiosk, failing
first, a poll under a moving clock) are in tests/test_console_wall.py."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from glimpser import times
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import Stream, StreamAccess
from tests.helpers import login, setup_admin
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


def poll_url(html: str) -> str:
    match = re.search(r'id="dashboard-grid"[^>]*hx-get="([^"]+)"', html)
    assert match, "the grid does not poll"
    return match.group(1).replace("&amp;", "&")


def card_names(html: str) -> list[str]:
    return re.findall(r'<span class="tile-name">([^<]+)</span>', html)


@pytest.fixture
def three(app, admin):
    """Three streams in two groups and three states, each with a snapshot."""
    now = times.utcnow()
    front = add_stream(
        "Front door", groups=["Outdoor"], state="ok", last_capture_at=now - timedelta(seconds=12)
    )
    garage = add_stream(
        "Garage",
        groups=["outdoor", "Car"],
        state="failing",
        last_error="HTTP 503 from the camera",
        last_capture_at=now - timedelta(minutes=5),
    )
    kitchen = add_stream("Kitchen", groups=["Indoor"], state="paused", enabled=False)
    for i, stream in enumerate((front, garage, kitchen)):
        add_snapshot(app, stream, jpeg((40 * i, 90, 160), size=(640, 360)))
    return front, garage, kitchen


def test_unchanged_grid_answers_204_and_a_new_snapshot_200(app, admin, three):
    front = three[0]
    page = admin.get("/").get_data(as_text=True)
    url = poll_url(page)
    assert admin.get(url, headers=HTMX).status_code == 204
    assert admin.get(url, headers=HTMX).data == b""
    snap = add_snapshot(app, front, jpeg((255, 0, 0), size=(640, 360)))
    response = admin.get(url, headers=HTMX)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="dashboard-grid"')  # the fragment only
    assert f"/streams/{front.id}/snapshots/{snap.id}/thumb.jpg" in html
    assert "HX-Push-Url" not in response.headers  # a poll does not add history entries
    new_url = poll_url(html)
    assert new_url != url and admin.get(new_url, headers=HTMX).status_code == 204
    # A status change alone is a change too.
    with database.connection_context():
        Stream.update(state="failing", last_error="timed out").where(
            Stream.id == front.id
        ).execute()
    changed = admin.get(new_url, headers=HTMX)
    assert changed.status_code == 200 and "timed out" in changed.get_data(as_text=True)


def test_tiles_show_picture_state_error_and_age(admin, three):
    front, garage, kitchen = three
    html = admin.get("/").get_data(as_text=True)
    assert card_names(html) == ["Garage", "Front door", "Kitchen"]  # failing first
    # The picture's age (its snapshot's time), through the one time macro, kept ticking.
    assert (
        len(re.findall(r'<span class="tile-age"><time datetime="[^"]+"[^>]*data-relative', html))
        == 3
    )
    # The failing stream's real error is on its tile.
    assert re.search(r'<span class="tile-error" title="HTTP 503 from the camera">HTTP 503', html)
    assert 'class="dot dot-paused"' in html and '<span class="tile-flag">paused</span>' in html
    assert f"/streams/{front.id}/snapshots/" in html and "/thumb.jpg" in html
    assert " style=" not in html and " onclick=" not in html and "<script>" not in html


def test_filters_and_search(admin, three):
    assert card_names(admin.get("/?state=failing").get_data(as_text=True)) == ["Garage"]
    assert card_names(admin.get("/?group=outdoor").get_data(as_text=True)) == [
        "Garage",
        "Front door",
    ]
    assert card_names(admin.get("/?q=KITCH").get_data(as_text=True)) == ["Kitchen"]
    assert card_names(admin.get("/?q=%25").get_data(as_text=True)) == []  # no LIKE wildcards
    both = admin.get("/?group=Outdoor&state=ok").get_data(as_text=True)
    assert card_names(both) == ["Front door"]
    nothing = admin.get("/?q=zzz").get_data(as_text=True)
    assert "No stream matches these filters" in nothing and "No streams yet" not in nothing
    # The groups menu lists each group once, whatever its case.
    page = admin.get("/").get_data(as_text=True)
    groups = re.search(r'<select id="dash-group".*?</select>', page, re.S).group(0)
    assert re.findall(r'<option value="([^"]*)"', groups) == ["", "Car", "Indoor", "Outdoor"]


def test_filter_changes_push_their_url_and_polls_keep_the_filters(admin, three):
    response = admin.get("/?q=gar&state=failing", headers=HTMX)
    assert response.status_code == 200
    assert response.headers["HX-Push-Url"] == "/?q=gar&state=failing"
    url = poll_url(response.get_data(as_text=True))
    assert "q=gar" in url and "state=failing" in url
    assert admin.get(url, headers=HTMX).status_code == 204
    defaults = admin.get("/?q=&group=&state=", headers=HTMX)
    assert defaults.headers["HX-Push-Url"] == "/"


@pytest.mark.parametrize(
    "query",
    ["state=burning", "kiosk=yes", "kiosk=%D9%A1", "q=" + "x" * 201],
    ids=["state", "kiosk", "kiosk-unicode-digit", "q"],
)
def test_bad_filters_are_a_clear_400(admin, query):
    response = admin.get(f"/?{query}")
    assert response.status_code == 400
    assert "Bad request" in response.get_data(as_text=True)


def test_empty_states(app, admin):
    html = admin.get("/").get_data(as_text=True)
    assert "No streams yet" in html and "Add a camera, video or website" in html
    assert 'class="filters"' not in html
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    html = viewer.get("/").get_data(as_text=True)
    assert "No stream has been shared with you yet" in html
    assert "Add a camera" not in html


def test_viewers_see_only_granted_streams(app, admin, three):
    front, garage, kitchen = three
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=garage)
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    page = viewer.get("/").get_data(as_text=True)
    assert card_names(page) == ["Garage"]
    assert "Indoor" not in page and "Front door" not in page  # nor their groups
    fragment = viewer.get("/?q=ga", headers=HTMX).get_data(as_text=True)
    assert card_names(fragment) == ["Garage"]
    # A grant changes what the grid shows, so the next poll is not a 204.
    url = poll_url(page)
    assert viewer.get(url, headers=HTMX).status_code == 204
    with database.connection_context():
        StreamAccess.create(user=bob, stream=front)
    assert card_names(viewer.get(url, headers=HTMX).get_data(as_text=True)) == [
        "Garage",  # failing first
        "Front door",
    ]


def test_stream_status_block_answers_204_while_unchanged(app, admin, three):
    front = three[0]
    page = admin.get(f"/streams/{front.id}").get_data(as_text=True)
    url = re.search(r'id="stream-status"[^>]*hx-get="([^"]+)"', page).group(1)
    url = url.replace("&amp;", "&")
    assert admin.get(url, headers=HTMX).status_code == 204
    snap = add_snapshot(app, front, jpeg((0, 0, 255), size=(640, 360)))
    html = admin.get(url, headers=HTMX).get_data(as_text=True)
    assert f"/streams/{front.id}/snapshots/{snap.id}.jpg" in html


def test_history_is_paginated(app, admin):
    stream = add_stream("Busy")
    snaps = [
        add_snapshot(app, stream, jpeg((i, 50, 50), size=(400, 300)), seconds_ago=100 - i)
        for i in range(30)
    ]
    newest_first = [s.id for s in reversed(snaps)]
    page = admin.get(f"/streams/{stream.id}").get_data(as_text=True)
    shown = [int(i) for i in re.findall(rf"/streams/{stream.id}/snapshots/(\d+)/thumb.jpg", page)]
    assert shown == newest_first[:24]
    assert 'alt="Latest snapshot of Busy"' in page
    more = re.search(r'<li class="more"><a href="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert 'hx-trigger="click, revealed"' in page
    # htmx gets the next items alone...
    fragment = admin.get(more, headers=HTMX).get_data(as_text=True)
    rest = [int(i) for i in re.findall(r"/snapshots/(\d+)/thumb.jpg", fragment)]
    assert rest == newest_first[24:]
    assert 'class="more"' not in fragment and "<html" not in fragment
    # ...and without JavaScript the same link is a whole page.
    full = admin.get(more).get_data(as_text=True)
    assert "Back to the newest snapshots" in full and "<html" in full
    assert [int(i) for i in re.findall(r"/snapshots/(\d+)/thumb.jpg", full)] == rest
    for bad in ("nonsense", "2026_x", ""):
        assert admin.get(f"/streams/{stream.id}/history?before={bad}").status_code == 400


def test_stream_page_keeps_its_actions_and_viewer(admin, three):
    front = three[0]
    html = admin.get(f"/streams/{front.id}").get_data(as_text=True)
    for text in ("Capture now", "Pause", "Edit", "Delete", "Events", '<dialog id="viewer"'):
        assert text in html, text
    assert "history.js" in html
    assert " style=" not in html and " onclick=" not in html and "<script>" not in html
