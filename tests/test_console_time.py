"""Local time: the human formats of `when()` (today / yesterday / this year / another year,
DST, zones far apart), datetime-local inputs read in the viewer's zone (year 1, year 9999, a
DST gap → 400), and the preferences endpoint (zone and theme; bad input → 4xx, nothing stored)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import Event, User
from glimpser.web.humantime import human_time, iso_time, relative_time
from glimpser.web.local_time import format_local, parse_local
from tests.helpers import PASSWORD, add_stream, csrf_from, form_post, login, signed_in_admin

AUCKLAND = ZoneInfo("Pacific/Auckland")
LA = ZoneInfo("America/Los_Angeles")
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 2, 21, 25, tzinfo=UTC)  # Thu 3 Dec 10:25 in Auckland, Wed 2 Dec 13:25 LA


# --- the human formats -----------------------------------------------------------------------


def test_today_yesterday_tomorrow_in_the_viewers_zone():
    at = datetime(2026, 12, 2, 20, 3, 7, tzinfo=UTC)
    assert human_time(at, LA, NOW) == "today 12:03"
    assert human_time(at, AUCKLAND, NOW) == "today 09:03"  # 3 Dec in Auckland, as now there
    early = datetime(2026, 12, 2, 9, 12, tzinfo=UTC)  # 2 Dec 22:12 in Auckland, 01:12 in LA
    assert human_time(early, AUCKLAND, NOW) == "yesterday 22:12"
    assert human_time(early, LA, NOW) == "today 01:12"
    assert human_time(early, LA, NOW, seconds=True) == "today 01:12:00"
    assert human_time(datetime(2026, 12, 3, 16, 0, tzinfo=UTC), LA, NOW) == "tomorrow 08:00"


def test_this_year_and_other_years():
    assert human_time(datetime(2026, 3, 1, 9, 12, tzinfo=UTC), UTC, NOW) == "Sun 1 Mar 09:12"
    assert human_time(datetime(2025, 12, 1, 9, 12, tzinfo=UTC), UTC, NOW) == "1 Dec 2025 09:12"
    # New Year's Eve in UTC is already next year in Auckland.
    eve = datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
    assert human_time(eve, AUCKLAND, NOW) == "Thu 1 Jan 01:00"
    assert human_time(eve, LA, NOW) == "31 Dec 2025 04:00"


def test_dst_changes_the_offset_not_the_wall_clock():
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    assert human_time(summer, BERLIN, NOW) == "Wed 1 Jul 14:00"
    assert human_time(winter, BERLIN, NOW) == "Thu 15 Jan 13:00"
    assert iso_time(summer, BERLIN) == "2026-07-01T14:00:00+02:00"
    assert iso_time(winter, BERLIN) == "2026-01-15T13:00:00+01:00"
    assert iso_time(winter, AUCKLAND) == "2026-01-16T01:00:00+13:00"


def test_extreme_years_never_fail():
    first = datetime(1, 1, 1, 0, 0, tzinfo=UTC)
    last = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    assert human_time(first, LA, NOW) == "1 Jan 0001 00:00"  # LA would be year 0: stays UTC
    assert iso_time(first, LA) == "0001-01-01T00:00:00+00:00"
    assert human_time(last, AUCKLAND, NOW) == "31 Dec 9999 23:59"
    assert human_time(first, AUCKLAND, NOW).endswith("0001 11:39")  # local mean time, +11:39


def test_relative_ages():
    assert relative_time(datetime(2026, 12, 2, 21, 24, 50, tzinfo=UTC), NOW) == "10 s ago"
    assert relative_time(datetime(2026, 12, 2, 21, 22, tzinfo=UTC), NOW) == "3 min ago"
    assert relative_time(datetime(2026, 12, 2, 18, 0, tzinfo=UTC), NOW) == "3 h ago"
    assert relative_time(datetime(2026, 11, 30, 0, 0, tzinfo=UTC), NOW) == "2 d ago"
    assert relative_time(datetime(2026, 12, 2, 21, 30, tzinfo=UTC), NOW) == "in 5 min"


# --- datetime-local inputs -------------------------------------------------------------------


def test_datetime_local_is_read_and_written_in_the_zone():
    assert parse_local("2026-07-01T14:00", BERLIN) == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert parse_local("2026-07-01T14:00", AUCKLAND) == datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
    assert parse_local("2026-07-01T14:00+00:00", AUCKLAND) == datetime(2026, 7, 1, 14, tzinfo=UTC)
    assert parse_local("", BERLIN) is None
    assert format_local(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), BERLIN) == "2026-07-01T14:00"
    assert format_local(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), LA) == "2026-07-01T05:00"
    # Clocks going back: 02:30 happens twice in Berlin; the first one is meant.
    assert parse_local("2026-10-25T02:30", BERLIN) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_datetime_local_edges():
    assert parse_local("0001-01-01T00:00", UTC) == datetime(1, 1, 1, tzinfo=UTC)
    assert parse_local("9999-12-31T23:59", AUCKLAND) == datetime(9999, 12, 31, 10, 59, tzinfo=UTC)
    with pytest.raises(ValueError, match="out of range"):
        parse_local("0001-01-01T00:00", AUCKLAND)  # before the year 1 in UTC
    with pytest.raises(ValueError, match="out of range"):
        parse_local("9999-12-31T23:59", LA)  # after 9999 in UTC
    assert format_local(datetime(1, 1, 1, tzinfo=UTC), LA) == "0001-01-01T00:00"
    with pytest.raises(ValueError, match="does not exist in Europe/Berlin"):
        parse_local("2026-03-29T02:30", BERLIN)  # the clocks skip 02:00-03:00
    with pytest.raises(ValueError, match="does not exist in Pacific/Auckland"):
        parse_local("2026-09-27T02:15", AUCKLAND)
    for bad in ("2026-13-01T00:00", "tomorrow", "２０２６-01-01T00:00", "2026-01-01T00:00" * 10):
        with pytest.raises(ValueError):
            parse_local(bad, BERLIN)


# --- pages in the user's zone ----------------------------------------------------------------


@pytest.fixture
def admin(app):
    client = signed_in_admin(app)
    return client


def stored(username: str = "alice") -> User:
    with database.connection_context():
        return User.get(User.username == username)


def test_times_on_pages_follow_the_users_zone(app, admin):
    stream = add_stream("Porch")
    at = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    with database.connection_context():
        Event.create(stream=stream, kind="motion", title="Fox", created_at=at)
    html = admin.get("/events").get_data(as_text=True)
    assert "1 Jun 2025 12:00:00" in html and 'datetime="2025-06-01T12:00:00+00:00"' in html
    assert "From (UTC)" in html  # no zone stored yet: the default (UTC)
    assert "data-timezone-unknown" in html

    response = form_post(admin, "/profile/", "/profile/preferences", {"timezone": "Asia/Tokyo"})
    assert response.status_code == 302
    html = admin.get("/events").get_data(as_text=True)
    assert "1 Jun 2025 21:00:00" in html and 'title="2025-06-01T21:00:00+09:00"' in html
    assert "From (Asia/Tokyo)" in html and "data-timezone-unknown" not in html
    assert " UTC</" not in html and "+00:00" not in html

    # The filter's datetime-local values are read in Tokyo time.
    page = admin.get("/events?range=custom&from=2025-06-01T20:00&to=2025-06-01T22:00")
    assert page.status_code == 200 and "Fox" in page.get_data(as_text=True)
    assert 'value="2025-06-01T20:00"' in page.get_data(as_text=True)
    page = admin.get("/events?range=custom&from=2025-06-01T12:30&to=2025-06-01T13:00")
    assert "Fox" not in page.get_data(as_text=True).split('id="event-list"')[-1]


def test_a_dst_gap_in_filters_is_a_clear_400(app, admin):
    form_post(admin, "/profile/", "/profile/preferences", {"timezone": "Europe/Berlin"})
    response = admin.get("/events?range=custom&from=2026-03-29T02:30")
    assert response.status_code == 400
    assert "does not exist in Europe/Berlin" in response.get_data(as_text=True)
    response = admin.get("/admin/audit/?from=2026-03-29T02:30")
    assert response.status_code == 400
    assert "does not exist in Europe/Berlin" in response.get_data(as_text=True)
    response = admin.get("/admin/audit/?to=9999-12-31T23:59")
    assert response.status_code == 200  # Berlin is east: still inside the year 9999 in UTC
    form_post(admin, "/profile/", "/profile/preferences", {"timezone": "America/Los_Angeles"})
    response = admin.get("/admin/audit/?to=9999-12-31T23:59")
    assert response.status_code == 400 and "out of range" in response.get_data(as_text=True)


def test_admin_default_zone_applies_until_the_user_has_one(app_factory):
    app = app_factory(GLIMPSER_TIMEZONE="Pacific/Auckland")
    client = signed_in_admin(app)
    html = client.get("/events").get_data(as_text=True)
    assert "From (Pacific/Auckland)" in html
    assert "Pacific/Auckland" in client.get("/profile/").get_data(as_text=True)


# --- the preferences endpoint ----------------------------------------------------------------


def test_detected_zone_is_stored_once_and_never_overrides_a_choice(db_app):
    client = signed_in_admin(db_app)
    token = csrf_from(client.get("/profile/").get_data(as_text=True))
    reply = client.post(
        "/profile/preferences",
        data={"csrf_token": token, "timezone": "Pacific/Auckland", "detected": "1"},
    )
    assert reply.status_code == 200 and reply.json["stored"] is True
    assert stored().timezone == "Pacific/Auckland"
    again = client.post(
        "/profile/preferences",
        data={"csrf_token": token, "timezone": "America/Los_Angeles", "detected": "1"},
    )
    assert again.status_code == 200 and again.json["stored"] is False
    assert stored().timezone == "Pacific/Auckland"
    # The user's own choice replaces it; "" means "detect from my browser" again.
    reply = form_post(client, "/profile/", "/profile/preferences", {"timezone": ""})
    assert reply.status_code == 302
    assert stored().timezone == ""


def test_theme_is_remembered_and_rendered(db_app):
    client = signed_in_admin(db_app)
    assert "data-theme=" not in client.get("/profile/").get_data(as_text=True)
    response = form_post(client, "/profile/", "/profile/preferences", {"theme": "dark"})
    assert response.status_code == 302
    with database.connection_context():
        User.update(preferences={**stored().preferences, "wall_columns": 6}).execute()
    form_post(client, "/profile/", "/profile/preferences", {"theme": "light"})
    assert stored().preferences == {"theme": "light", "wall_columns": 6}  # other keys kept
    html = client.get("/profile/").get_data(as_text=True)
    assert '<html lang="en" data-theme="light" data-theme-pref="light">' in html
    assert re.search(r'value="light" checked', html)


BAD = [
    {"timezone": "Mars/Olympus_Mons"},
    {"timezone": "Europe/Berlin" * 10},
    {"timezone": "../../etc/passwd"},
    {"timezone": "/usr/share/zoneinfo/UTC"},
    {"timezone": "localtime"},
    {"timezone": "", "detected": "1"},
    {"timezone": "Europe/Berlin", "theme": "purple"},  # all or nothing
    {"theme": "DARK"},
    {"theme": "x" * 10_000},
    {},
]


@pytest.mark.parametrize("data", BAD)
def test_bad_preferences_are_refused_and_nothing_is_stored(app, admin, data):
    token = csrf_from(admin.get("/profile/").get_data(as_text=True))
    response = admin.post("/profile/preferences", data={"csrf_token": token, **data})
    assert response.status_code == 400, data
    user = stored()
    assert user.timezone == "" and user.preferences == {}


def test_preferences_need_csrf_and_a_sign_in(app, admin):
    response = admin.post("/profile/preferences", data={"timezone": "Europe/Berlin"})
    assert response.status_code == 400 and stored().timezone == ""
    response = admin.post("/profile/preferences", json={"timezone": "Europe/Berlin"})
    assert response.status_code == 400 and stored().timezone == ""
    anonymous = app.test_client()
    response = anonymous.post("/profile/preferences", data={"timezone": "Europe/Berlin"})
    assert response.status_code in (302, 400, 401, 403) and stored().timezone == ""


def test_a_viewer_sets_only_their_own_preferences(app, admin):
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    bob = app.test_client()
    assert login(bob, "bob", PASSWORD).status_code == 302
    reply = form_post(
        bob, "/profile/", "/profile/preferences", {"timezone": "Asia/Kolkata", "theme": "dark"}
    )
    assert reply.status_code == 302
    assert stored("bob").timezone == "Asia/Kolkata" and stored("bob").preferences["theme"] == "dark"
    assert stored("alice").timezone == "" and stored("alice").preferences == {}
