"""The camera wall through the Flask test client, on SQLite and PostgreSQL: the column count
remembered per user (and its bad input), failing streams first, kiosk mode, and the poll that
stays an empty 204 while only the clock moves."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from glimpser import times
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import Stream, StreamAccess, User
from tests.helpers import csrf_from, login, setup_admin
from tests.media_servers import jpeg
from tests.test_images import add_snapshot, add_stream

PASSWORD = "correct horse battery"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def app(db_app):
    return db_app


@pytest.fixture
def admin(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


@pytest.fixture
def wall(app, admin):
    """A website, two cameras (one failing) and a paused one, each with a picture."""
    streams = [
        add_stream("Ant farm", state="ok"),
        add_stream("Bay", state="failing", last_error="Connection refused by 192.0.2.7:554"),
        add_website("Rent status"),
        add_stream("Yard", state="paused", enabled=False),
    ]
    for i, stream in enumerate(streams):
        add_snapshot(app, stream, jpeg((50 * i, 80, 120), size=(640, 360)), seconds_ago=60)
    return streams


def add_website(name: str) -> Stream:
    with database.connection_context():
        return Stream.create(
            name=name,
            kind="website",
            config={"kind": "website", "url": "https://example.com/"},
            state="ok",
        )


def names(html: str) -> list[str]:
    return re.findall(r'<span class="tile-name">([^<]+)</span>', html)


def poll_url(html: str) -> str:
    match = re.search(r'id="dashboard-grid"[^>]*hx-get="([^"]+)"', html)
    assert match
    return match.group(1).replace("&amp;", "&")


def columns_of(html: str) -> int:
    return int(re.search(r'class="wall-grid cols-(\d+)"', html).group(1))


def post_columns(client, value, **extra):
    token = csrf_from(client.get("/").get_data(as_text=True))
    return client.post("/wall/columns", data={"csrf_token": token, "columns": value, **extra})


def preferences(username: str) -> dict:
    with database.connection_context():
        return User.get(User.username == username).preferences


def test_failing_first_with_its_error_then_the_rest_in_order(admin, wall):
    html = admin.get("/").get_data(as_text=True)
    assert names(html) == ["Bay", "Ant farm", "Rent status", "Yard"]
    bay = re.search(r'<li class="tile tile-failing" id="tile-\d+">.*?</li>', html, re.S).group(0)
    assert "Connection refused by 192.0.2.7:554" in bay and "dot-failing" in bay
    assert 'class="tile tile-ok tile-website"' in html  # shown whole (contain), not cropped
    assert '<span class="tile-flag">paused</span>' in html
    # Each tile opens the stream; a camera kind can go live in the viewer, a website cannot.
    ant, rent = wall[0], wall[2]
    assert f'data-stream-id="{ant.id}"' in html and f"/streams/{rent.id}/live.mjpg" not in html


def test_columns_are_remembered_per_user_and_applied_on_render(app, admin, wall):
    assert columns_of(admin.get("/").get_data(as_text=True)) == 4  # the default
    response = post_columns(admin, "8", q="a", state="ok")
    assert response.status_code == 303
    assert response.headers["Location"] == "/?q=a&state=ok"  # back to the same view
    assert preferences("alice")["wall_columns"] == 8
    html = admin.get("/").get_data(as_text=True)
    assert columns_of(html) == 8 and '<option value="8" selected>' in html
    # htmx gets the grid itself, re-rendered with the new count and the filters it sent.
    token = csrf_from(html)
    fragment = admin.post(
        "/wall/columns",
        data={"csrf_token": token, "columns": "2", "state": "failing"},
        headers=HTMX,
    )
    assert fragment.status_code == 200
    body = fragment.get_data(as_text=True)
    assert body.lstrip().startswith('<section id="dashboard-grid"') and columns_of(body) == 2
    assert names(body) == ["Bay"]
    # Another user's wall is their own; a viewer may set theirs (and keeps other preferences).
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=wall[0])
        User.update(preferences={"theme": "dark"}).where(User.id == bob.id).execute()
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    assert columns_of(viewer.get("/").get_data(as_text=True)) == 4
    assert post_columns(viewer, "12").status_code == 303
    assert preferences("bob") == {"theme": "dark", "wall_columns": 12}
    assert preferences("alice")["wall_columns"] == 2
    assert columns_of(viewer.get("/").get_data(as_text=True)) == 12
    # A new sign-in keeps it.
    again = app.test_client()
    login(again, "alice", PASSWORD)
    assert columns_of(again.get("/").get_data(as_text=True)) == 2


@pytest.mark.parametrize(
    "value",
    ["7", "0", "-4", "", "4.0", " 4", "\u0664", "\uff14", str(2**63), "9" * 5000, "four"],
    ids=[
        "not-offered",
        "zero",
        "negative",
        "empty",
        "float",
        "space",
        "arabic-digit",
        "fullwidth-digit",
        "2**63",
        "huge",
        "word",
    ],
)
def test_bad_column_counts_are_a_clear_400_and_change_nothing(admin, wall, value):
    assert post_columns(admin, "6").status_code == 303
    response = post_columns(admin, value)
    assert response.status_code == 400
    assert "Choose a number of columns" in response.get_data(as_text=True)
    assert preferences("alice")["wall_columns"] == 6


def test_bad_filters_missing_csrf_and_signed_out_are_refused(app, admin, wall):
    response = post_columns(admin, "3", state="burning")
    assert response.status_code == 400 and preferences("alice").get("wall_columns") is None
    assert post_columns(admin, "3", q="x" * 201).status_code == 400
    assert admin.post("/wall/columns", data={"columns": "3"}).status_code == 400  # no CSRF
    assert preferences("alice").get("wall_columns") is None
    anonymous = app.test_client()
    response = anonymous.post("/wall/columns", data={"columns": "3"})
    assert response.status_code in (302, 400, 401)
    assert preferences("alice").get("wall_columns") is None


def test_kiosk_mode_is_in_the_url_and_hides_the_chrome(admin, wall):
    plain = admin.get("/").get_data(as_text=True)
    assert 'class="wall-page"' in plain and "data-wall-fullscreen" in plain
    html = admin.get("/?kiosk=1&group=").get_data(as_text=True)
    assert 'class="wall-page kiosk"' in html
    assert 'data-kiosk-url="/?kiosk=1"' in html and 'id="wall-exit-kiosk"' in html
    assert "wall.js" in html and " style=" not in html
    assert "kiosk" not in poll_url(html)  # the poll is the same grid
    assert 'class="wall-page"' in admin.get("/?kiosk=0").get_data(as_text=True)


def test_an_unchanged_poll_is_204_while_the_clock_moves(app, admin, wall):
    ant = wall[0]
    html = admin.get("/").get_data(as_text=True)
    url = poll_url(html)
    assert admin.get(url, headers=HTMX).status_code == 204
    # Captures whose picture was unchanged (not stored) move last_capture_at, and the time
    # passes; neither changes what the wall renders.
    for minutes in (1, 5, 90):
        with database.connection_context():
            Stream.update(last_capture_at=times.utcnow() + timedelta(minutes=minutes)).where(
                Stream.id.in_([s.id for s in wall])
            ).execute()
        response = admin.get(url, headers=HTMX)
        assert response.status_code == 204 and response.data == b""
    # A new picture is a change: 200 with its thumbnail, and the new version is quiet again.
    snap = add_snapshot(app, ant, jpeg((255, 0, 0), size=(640, 360)))
    changed = admin.get(url, headers=HTMX)
    assert changed.status_code == 200
    assert f"/streams/{ant.id}/snapshots/{snap.id}/thumb.jpg" in changed.get_data(as_text=True)
    assert admin.get(poll_url(changed.get_data(as_text=True)), headers=HTMX).status_code == 204
    # So is a changed error, a rename and a new column count.
    url = poll_url(changed.get_data(as_text=True))
    with database.connection_context():
        Stream.update(last_error="timed out").where(Stream.id == wall[1].id).execute()
    changed = admin.get(url, headers=HTMX)
    assert changed.status_code == 200 and "timed out" in changed.get_data(as_text=True)
    url = poll_url(changed.get_data(as_text=True))
    post_columns(admin, "3")
    assert admin.get(url, headers=HTMX).status_code == 200


def test_live_kinds_open_live_in_the_viewer_and_viewers_see_only_theirs(app, admin, wall):
    with database.connection_context():
        cam = Stream.create(
            name="Dock", kind="mjpeg", config={"kind": "mjpeg", "url": "http://192.0.2.9/v.mjpg"}
        )
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=cam)
    html = admin.get("/").get_data(as_text=True)
    assert f'data-live="/streams/{cam.id}/live.mjpg"' in html
    # A still-image camera has no live feed: the viewer shows its latest picture.
    ant = wall[0]
    tile = re.search(rf'<a href="/streams/{ant.id}" class="tile-link".*?>', html, re.S).group(0)
    assert "data-live" not in tile and f"/streams/{ant.id}/snapshots/" in tile
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    page = viewer.get("/").get_data(as_text=True)
    assert names(page) == ["Dock"] and "Ant farm" not in page
