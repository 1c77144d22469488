"""The stream timeline, the self-updating history grid and the bulk actions of the streams
list, through the Flask test client on SQLite and PostgreSQL: bad input gets a 4xx and
changes nothing, viewers are refused, every change is audited."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from glimpser import times
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import AuditLog, Event, Snapshot, Stream, StreamAccess, User
from tests.helpers import PASSWORD, add_snapshot, add_stream, csrf_from, login, setup_admin
from tests.media_servers import jpeg


@pytest.fixture
def site(db_app):
    """An admin client, a viewer client granted "Garden" only, and three streams."""
    admin = db_app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    garden = add_stream("Garden", groups=["outdoor"])
    porch = add_stream("Porch")
    shed = add_stream("Shed", enabled=False, state="paused")
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=garden)
    viewer = db_app.test_client()
    login(viewer, "bob", PASSWORD)
    return db_app, admin, viewer, {"garden": garden, "porch": porch, "shed": shed}


def token(client) -> str:
    return csrf_from(client.get("/streams/").get_data(as_text=True))


def bulk(client, **data):
    return client.post("/streams/bulk", data={"csrf_token": token(client), **data})


def streams_state() -> dict[str, tuple]:
    with database.connection_context():
        return {
            s.name: (s.enabled, s.state, tuple(s.groups), s.deleting_since is not None)
            for s in Stream.select()
        }


def audit_count() -> int:
    with database.connection_context():
        return AuditLog.select().where(AuditLog.action.startswith("stream.")).count()


# --- timeline ------------------------------------------------------------------------------


def test_timeline_returns_the_days_pictures_marks_and_events(site):
    app, admin, viewer, streams = site
    garden = streams["garden"]
    older = add_snapshot(app, garden, jpeg((10, 10, 10)), seconds_ago=120)
    newer = add_snapshot(app, garden, jpeg((200, 10, 10)), seconds_ago=60)
    with database.connection_context():
        Snapshot.update(motion_score=0.25).where(Snapshot.id == newer.id).execute()
        event = Event.create(stream=garden, snapshot=newer, kind="motion", title="Cat on the lawn")
    today = times.utcnow().date().isoformat()
    for client in (admin, viewer):
        data = client.get(f"/streams/{garden.id}/timeline?day={today}").get_json()
        assert data["day"] == today and data["zone"] == "UTC"
        # Both pictures unless the test ran across midnight (then only the newer one).
        ids = [s[0] for s in data["snapshots"]]
        assert ids[-1] == newer.id and set(ids) <= {older.id, newer.id}
        assert data["snapshots"][-1][3] == pytest.approx(0.25)
        assert max(m for m in data["activity"] if m is not None) == pytest.approx(0.25)
        assert [e["id"] for e in data["events"]] == [event.id]
        assert data["events"][0]["url"] == f"/events/{event.id}"
        assert data["image"] == f"/streams/{garden.id}/snapshots/{{id}}.jpg"
    # Another day: nothing; the page renders its date picker at that day.
    empty = admin.get(f"/streams/{garden.id}/timeline?day=2020-02-29").get_json()
    assert empty["snapshots"] == [] and empty["events"] == [] and empty["total"] == 0
    page = admin.get(f"/streams/{garden.id}?day=2020-02-29").get_data(as_text=True)
    assert 'value="2020-02-29"' in page and "day=2020-02-28" in page and "day=2020-03-01" in page


def test_timeline_day_is_the_users_time_zone(site):
    app, admin, _viewer, streams = site
    garden = streams["garden"]
    with database.connection_context():
        User.update(timezone="Pacific/Kiritimati").where(User.username == "alice").execute()
    snap = add_snapshot(app, garden, jpeg((10, 10, 10)))
    local_day = times.utcnow().astimezone(ZoneInfo("Pacific/Kiritimati"))
    data = admin.get(f"/streams/{garden.id}/timeline?day={local_day.date().isoformat()}").get_json()
    assert data["zone"] == "Pacific/Kiritimati"
    assert data["start"].endswith("+00:00") and data["start"][11:16] == "10:00"  # UTC+14
    assert [s[0] for s in data["snapshots"]] == [snap.id]
    assert data["snapshots"][0][2] == local_day.strftime("%H:%M:%S")


@pytest.mark.parametrize(
    "day",
    [
        "0001-01-01",
        "9999-12-31",
        "1969-12-31",
        "garbage",
        "2024-02-30",
        "２０２４-01-01",
        "2024-1-1",
        "x" * 5000,
        "20240101",
    ],
)
def test_timeline_refuses_bad_days(app, day):
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    stream = add_stream("Garden")
    assert admin.get(f"/streams/{stream.id}/timeline", query_string={"day": day}).status_code == 400
    assert admin.get(f"/streams/{stream.id}", query_string={"day": day}).status_code == 400


def test_timeline_and_history_hidden_from_viewers_without_access(site):
    _app, _admin, viewer, streams = site
    porch = streams["porch"]
    assert viewer.get(f"/streams/{porch.id}/timeline").status_code == 404
    assert viewer.get(f"/streams/{porch.id}/history/newer?after=0").status_code == 404
    assert viewer.get(f"/streams/{2**63}/timeline").status_code == 404


def test_history_poll_answers_204_until_a_picture_arrives(site):
    app, admin, _viewer, streams = site
    garden = streams["garden"]
    page = admin.get(f"/streams/{garden.id}").get_data(as_text=True)
    assert "No snapshot yet; new pictures appear here" in page
    assert f"/streams/{garden.id}/history/newer?after=0" in page
    assert admin.get(f"/streams/{garden.id}/history/newer?after=0").status_code == 204
    snap = add_snapshot(app, garden, jpeg((10, 200, 10)))
    fragment = admin.get(f"/streams/{garden.id}/history/newer?after=0")
    html = fragment.get_data(as_text=True)
    assert fragment.status_code == 200
    assert 'hx-swap-oob="afterbegin:#history"' in html
    assert f"/snapshots/{snap.id}/thumb.jpg" in html
    assert f"history/newer?after={snap.id}" in html
    assert admin.get(f"/streams/{garden.id}/history/newer?after={snap.id}").status_code == 204
    for bad in ("-1", "x", "٣", str(2**63), ""):
        url = f"/streams/{garden.id}/history/newer"
        assert admin.get(url, query_string={"after": bad}).status_code == 400, bad


# --- bulk actions --------------------------------------------------------------------------


def test_bulk_pause_resume_and_group_are_audited(site):
    _app, admin, _viewer, streams = site
    ids = [str(streams["garden"].id), str(streams["shed"].id)]
    before = audit_count()
    assert bulk(admin, action="pause", ids=ids).status_code == 302
    state = streams_state()
    assert state["Garden"][:2] == (False, "paused") and state["Shed"][:2] == (False, "paused")
    assert state["Porch"][0] is True
    assert audit_count() == before + 1  # Shed was paused already
    assert bulk(admin, action="resume", ids=ids).status_code == 302
    state = streams_state()
    assert state["Garden"][0] is True and state["Shed"][0] is True
    assert audit_count() == before + 3
    assert bulk(admin, action="group", ids=ids, group="Back yard").status_code == 302
    state = streams_state()
    assert state["Garden"][2] == ("Back yard",) and state["Shed"][2] == ("Back yard",)
    assert state["Porch"][2] == ()
    assert bulk(admin, action="group", ids=ids, group="").status_code == 302
    assert streams_state()["Garden"][2] == ()
    with database.connection_context():
        last = AuditLog.select().order_by(AuditLog.id.desc()).first()
    assert last.action == "stream.update" and last.detail["bulk"] is True


def test_bulk_delete_confirms_listing_the_streams_then_deletes(site, redis_client):
    _app, admin, _viewer, streams = site
    ids = [str(streams["porch"].id), str(streams["shed"].id)]
    confirm = bulk(admin, action="delete", ids=ids)
    html = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "Delete 2 streams?" in html
    assert "Porch" in html and "Shed" in html and "Garden" not in html
    assert not any(s[3] for s in streams_state().values())  # nothing deleted yet
    done = bulk(admin, action="delete", ids=ids, confirm="yes")
    assert done.status_code == 302
    with database.connection_context():
        marked = {s.id for s in Stream.raw("SELECT * FROM stream WHERE deleting_since IS NOT NULL")}
        deletes = AuditLog.select().where(AuditLog.action == "stream.delete").count()
    assert marked == {streams["porch"].id, streams["shed"].id} and deletes == 2
    assert admin.get("/streams/").get_data(as_text=True).count('name="ids"') == 1
    # Deleting them again: they are gone (404), nothing else changes.
    assert bulk(admin, action="delete", ids=ids, confirm="yes").status_code == 404


@pytest.mark.parametrize(
    "data",
    [
        {"action": "pause"},  # nothing selected
        {"action": "pause", "ids": ["x"]},
        {"action": "pause", "ids": ["٣"]},
        {"action": "pause", "ids": [str(2**63)]},
        {"action": "pause", "ids": ["-1"]},
        {"action": "explode", "ids": ["1"]},
        {"action": "", "ids": ["1"]},
        {"action": "group", "ids": ["1"], "group": "x" * 65},
        {"action": "group", "ids": ["1"], "group": "a, b"},
    ],
)
def test_bulk_refuses_bad_input_and_changes_nothing(site, data):
    _app, admin, _viewer, _streams = site
    before, audits = streams_state(), audit_count()
    response = bulk(admin, **data)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert streams_state() == before and audit_count() == audits


def test_bulk_with_an_unknown_stream_changes_none_of_them(site):
    _app, admin, _viewer, streams = site
    before, audits = streams_state(), audit_count()
    for action in ("pause", "delete", "group"):
        data = {"action": action, "ids": [str(streams["garden"].id), "999999"], "confirm": "yes"}
        assert bulk(admin, **data).status_code == 404
    assert streams_state() == before and audit_count() == audits


def test_bulk_is_admin_only_and_needs_csrf(site):
    _app, admin, viewer, streams = site
    before = streams_state()
    ids = [str(streams["garden"].id)]
    csrf = csrf_from(viewer.get("/streams/").get_data(as_text=True))
    for action in ("pause", "delete"):
        response = viewer.post(
            "/streams/bulk", data={"csrf_token": csrf, "action": action, "ids": ids}
        )
        assert response.status_code == 403
    assert 'name="ids"' not in viewer.get("/streams/").get_data(as_text=True)
    response = admin.post("/streams/bulk", data={"action": "pause", "ids": ids})
    assert response.status_code == 400  # no CSRF token
    assert streams_state() == before


def test_live_page_counts_its_own_viewer(site, redis_client):
    """The server-rendered count includes the feed the page is about to open (not "0")."""
    from glimpser.capture import live
    from glimpser.capture.readers import frame_key

    _app, admin, _viewer, _streams = site
    with database.connection_context():
        cam = Stream.create(
            name="Cam", kind="rtsp", config={"kind": "rtsp", "url": "rtsp://192.0.2.1/x"}
        )
    redis_client.hset(frame_key(cam.id), mapping={"at": str(datetime.now(UTC).timestamp())})
    live.register(redis_client, cam.id, "other-viewer", 30)
    html = admin.get(f"/streams/{cam.id}/live").get_data(as_text=True)
    assert "Live · 2 watching" in html
    status = admin.get(f"/streams/{cam.id}/live/status").get_data(as_text=True)
    assert "Live · 1 watching" in status  # the test client opened no feed
