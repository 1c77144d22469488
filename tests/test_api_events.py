"""`/api/v1/events` on SQLite and PostgreSQL with real Redis: the events page's filters and
search, cursor pages, one event with its deliveries and who acknowledged it, acknowledging
one or many (viewers' write keys may, read keys may not), a viewer's key that never reaches
another stream's events, and bad input answered 4xx."""

from __future__ import annotations

from datetime import timedelta

import pytest

from glimpser import times
from glimpser.db import database
from glimpser.models import AuditLog, Delivery, Event, NotificationChannel, Rule, StreamAccess
from tests.api_support import ApiClient, api_as, make_key, make_user
from tests.helpers import add_snapshot, add_stream
from tests.media_servers import jpeg


@pytest.fixture
def app(db_app):
    return db_app


def add_event(stream, title: str, **fields) -> Event:
    fields.setdefault("kind", "motion")
    with database.connection_context():
        return Event.create(stream=stream, title=title, **fields)


@pytest.fixture
def scene(app):
    """Two streams; a real event raised by the default rule on a stored picture, and rows."""
    from glimpser.analysis.rules import Observation, evaluate_snapshot

    now = times.utcnow()
    porch, garage = add_stream("Porch"), add_stream("Garage")
    snap = add_snapshot(app, porch, jpeg((200, 30, 30)))
    with database.connection_context():
        snap.changed, snap.motion_score, snap.changed_fraction = True, 0.3, 0.2
        snap.analysed_at = now
        snap.save()
        Rule.update(enabled=True).where(Rule.name == "Motion or change").execute()
        [raised] = evaluate_snapshot(
            Observation(porch, snap, None), app.extensions["glimpser.redis"], now
        )
    events = {
        "raised": raised,
        "courier": add_event(
            porch,
            "Person at the door",
            kind="ai",
            severity="high",
            description="A courier holds a parcel.",
            data={"objects": ["person", "parcel"]},
            created_at=now - timedelta(minutes=5),
        ),
        "van": add_event(
            garage,
            "Garage door moved",
            kind="change",
            severity="medium",
            description="A white van; secretword appears only here.",
            created_at=now - timedelta(days=2),
        ),
        "system": add_event(None, "Disk nearly full", kind="test", severity="low"),
    }
    return porch, garage, events


def titles(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)[:400]
    return [e["title"] for e in response.json["items"]]


def viewer_of(app, stream, *scopes: str, name: str = "vera") -> ApiClient:
    user = make_user(name)
    with database.connection_context():
        StreamAccess.create(user=user, stream=stream)
    return ApiClient(app, make_key(user, *(scopes or ("read",))))


def test_list_filters_and_search(app, scene):
    porch, garage, events = scene
    api = api_as(app, "alice")
    everything = titles(api.get("/events"))
    assert everything[-1] == "Garage door moved"  # newest first
    assert set(everything) == {e.title for e in events.values()}
    assert titles(api.get("/events?q=courier")) == ["Person at the door"]
    assert titles(api.get("/events?q=PARC")) == ["Person at the door"]  # objects, a prefix
    assert titles(api.get("/events?q=door+van")) == ["Garage door moved"]
    assert titles(api.get(f"/events?stream={garage.id}")) == ["Garage door moved"]
    both = titles(api.get(f"/events?stream={garage.id}&stream={porch.id}&severity=high"))
    assert both == ["Person at the door"]
    assert titles(api.get("/events?kind=change&kind=ai")) == [
        "Person at the door",
        "Garage door moved",
    ]
    assert titles(api.get("/events?system=true")) == ["Disk nearly full"]
    since = (times.utcnow() - timedelta(days=1)).isoformat()
    assert "Garage door moved" not in titles(api.get("/events", query_string={"since": since}))
    until = (times.utcnow() - timedelta(days=1)).isoformat()
    assert titles(api.get("/events", query_string={"until": until})) == ["Garage door moved"]
    assert titles(api.get("/events?acknowledged=true")) == []
    raised = api.get("/events?kind=motion").json["items"][0]
    assert raised["rule"]["name"] == "Motion or change"
    assert raised["stream"] == {"id": porch.id, "name": "Porch"}
    assert raised["snapshot_id"] == events["raised"].snapshot_id


def test_cursor_pages_follow_the_link_header(app, scene):
    api = api_as(app, "alice")
    seen, url = [], "/api/v1/events?limit=1"
    while url:
        page = api.get(url)
        assert page.status_code == 200
        seen += titles(page)
        link = page.headers.get("Link")
        url = link[1 : link.index(">")].replace("http://localhost", "") if link else None
    assert seen == titles(api.get("/events"))
    assert len(seen) == 4


def test_one_event_with_deliveries_and_acknowledgement(app, scene):
    porch, _garage, events = scene
    raised = events["raised"]
    with database.connection_context():
        channel = NotificationChannel.create(
            name="Ops hook", kind="webhook", config={"kind": "webhook", "url": "http://x.test/"}
        )
        Delivery.create(event=raised.id, channel=channel, status="failed", error="HTTP 500")
    admin = api_as(app, "alice")
    got = admin.get(f"/events/{raised.id}")
    assert got.status_code == 200, got.get_data(as_text=True)
    body = got.json
    assert body["stream"]["name"] == "Porch" and body["rule"]["name"] == "Motion or change"
    assert body["acknowledged"] is False and body["acknowledgement"] is None
    assert body["links"]["page"] == f"/events/{raised.id}"
    [delivery] = body["deliveries"]
    assert delivery["status"] == "failed" and delivery["error"] == "HTTP 500"
    assert delivery["channel_name"] == "Ops hook"

    viewer = viewer_of(app, porch, "write")
    seen = viewer.get(f"/events/{raised.id}").json["deliveries"][0]
    assert seen["status"] == "failed" and seen["error"] is None and seen["channel_name"] is None
    acked = viewer.post(f"/events/{raised.id}/acknowledge")
    assert acked.status_code == 200, acked.get_data(as_text=True)
    assert acked.json["acknowledged"] is True
    assert acked.json["acknowledgement"]["user"] == "vera"
    assert acked.json["acknowledgement"]["api_key"] in viewer.token  # its prefix
    with database.connection_context():
        entry = AuditLog.get(AuditLog.action == "events.acknowledge")
        assert entry.target == f"event:{raised.id}"
        assert entry.detail["ids"] == [raised.id]
        assert entry.detail["api_key"] in viewer.token
    # Again: nothing changes, no second entry.
    assert viewer.post(f"/events/{raised.id}/acknowledge").status_code == 200
    with database.connection_context():
        assert AuditLog.select().where(AuditLog.action == "events.acknowledge").count() == 1


def test_acknowledge_many_by_ids_and_by_filters(app, scene):
    porch, garage, events = scene
    admin = api_as(app, "alice", "admin", "write")
    ids = [events["courier"].id, events["van"].id, 2**31 - 1]
    done = admin.post("/events/acknowledge", json={"ids": ids})
    assert done.status_code == 200, done.get_data(as_text=True)
    assert done.json == {
        "acknowledged": sorted(ids[:2]),
        "count": 2,
        "more": False,
    }
    with database.connection_context():
        entry = AuditLog.get(AuditLog.action == "events.acknowledge")
        assert entry.target == "events" and entry.detail["count"] == 2
    by_filter = admin.post(
        "/events/acknowledge", json={"filters": {"stream": [porch.id], "kind": ["motion"]}}
    )
    assert by_filter.json == {"acknowledged": [events["raised"].id], "count": 1, "more": False}
    assert titles(admin.get("/events?acknowledged=false")) == ["Disk nearly full"]
    assert admin.post("/events/acknowledge", json={"ids": [], "filters": {}}).status_code == 422
    assert admin.post("/events/acknowledge", json={}).status_code == 422
    too_many = admin.post("/events/acknowledge", json={"ids": list(range(1, 502))})
    assert too_many.status_code == 422


def test_a_viewer_key_sees_and_acknowledges_only_its_streams_events(app, scene):
    porch, garage, events = scene
    viewer = viewer_of(app, porch, "write")
    assert set(titles(viewer.get("/events"))) == {"Person at the door", events["raised"].title}
    # Search never reaches another stream's events.
    assert titles(viewer.get("/events?q=secretword")) == []
    assert titles(viewer.get("/events?q=door")) == ["Person at the door"]
    assert viewer.get(f"/events/{events['van'].id}").status_code == 404
    assert viewer.get(f"/events/{events['system'].id}").status_code == 404
    assert viewer.get(f"/events?stream={garage.id}").status_code == 404
    assert viewer.get("/events?system=true").status_code == 404
    assert viewer.post(f"/events/{events['van'].id}/acknowledge").status_code == 404
    many = viewer.post("/events/acknowledge", json={"ids": [events["van"].id]})
    assert many.json["acknowledged"] == []
    everything = viewer.post("/events/acknowledge", json={"filters": {}})
    assert sorted(everything.json["acknowledged"]) == sorted(
        [events["raised"].id, events["courier"].id]
    )
    with database.connection_context():
        assert not Event.get_by_id(events["van"].id).acknowledged
        assert not Event.get_by_id(events["system"].id).acknowledged


def test_a_read_key_may_not_acknowledge(app, scene):
    porch, _garage, events = scene
    reader = viewer_of(app, porch, "read")
    refused = reader.post(f"/events/{events['courier'].id}/acknowledge")
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert reader.post("/events/acknowledge", json={"ids": [1]}).status_code == 403
    admin_reader = api_as(app, "alice", "admin", "read")
    assert admin_reader.post(f"/events/{events['courier'].id}/acknowledge").status_code == 403
    with database.connection_context():
        assert not Event.get_by_id(events["courier"].id).acknowledged


def test_a_key_limited_to_a_stream_sees_only_its_events(app, scene):
    porch, _garage, events = scene
    limited = api_as(app, "alice", "admin", "write", stream_ids=[porch.id])
    assert set(titles(limited.get("/events"))) == {"Person at the door", events["raised"].title}
    assert limited.get(f"/events/{events['system'].id}").status_code == 404
    done = limited.post("/events/acknowledge", json={"ids": [events["van"].id]})
    assert done.json["acknowledged"] == []


@pytest.mark.parametrize(
    "query",
    [
        "severity=urgent",
        "kind=bogus",
        "stream=abc",
        "stream=0",
        f"stream={2**63}",
        "stream=%D9%A1",  # an Arabic-Indic digit
        "since=0001-01-01",  # no offset
        "since=9999-12-31T23:59:59-14:00",  # past year 9999 in UTC
        "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
        f"limit={10**9}",
        "limit=0",
        "acknowledged=maybe",
        "q=%22%22%22",  # only punctuation
        "q=" + "a" * 201,
        "cursor=nonsense",
        f"cursor=20260101T000000.000000Z_{2**63}",
    ],
)
def test_bad_filters_are_4xx(app, scene, query):
    api = api_as(app, "alice")
    response = api.get(f"/events?{query}")
    assert 400 <= response.status_code < 500, (query, response.status_code)
    assert response.mimetype == "application/problem+json"


def test_extreme_but_valid_times_and_ids(app, scene):
    api = api_as(app, "alice")
    assert len(titles(api.get("/events?since=0001-01-01T00:00:00Z"))) == 4
    assert titles(api.get("/events?since=9999-12-31T23:59:59Z")) == []
    assert api.get(f"/events/{2**63}").status_code == 404
    assert api.get(f"/events/{2**31 - 1}").status_code == 404
    assert api.post(f"/events/{2**63}/acknowledge").status_code in (403, 404)
    assert api.get(f"/events?stream={2**31 - 1}").status_code == 404


def test_the_paths_are_in_the_openapi_document(app):
    paths = app.test_client().get("/api/v1/openapi.json").json["paths"]
    for path, method in (
        ("/api/v1/events", "get"),
        ("/api/v1/events/{event_id}", "get"),
        ("/api/v1/events/{event_id}/acknowledge", "post"),
        ("/api/v1/events/acknowledge", "post"),
    ):
        assert method in paths[path], path
        assert "404" in paths[path][method]["responses"] or path == "/api/v1/events"
