"""`/api/v1/summaries` and `/api/v1/timelapses` on SQLite and PostgreSQL with real Redis, real
RQ workers (run_queued_jobs), the fake OpenAI server and ffmpeg: requested as the pages request
them, built by the real jobs, read back and downloaded; viewers' keys reach only their
streams', read keys cannot ask, and bad input is a 4xx problem that writes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from glimpser import jobs, times
from glimpser.db import database
from glimpser.models import StreamAccess, Summary, Timelapse
from tests.api_support import ApiClient, api_as, make_key, make_user
from tests.conftest import run_queued_jobs
from tests.openai_server import Reply
from tests.test_summaries import MODEL, add_event, add_summary
from tests.test_timelapse import add_snapshots, make_stream


@pytest.fixture
def ai_app(app_factory, openai_server, database_url):
    app = app_factory(database_url, GLIMPSER_AI_BASE_URL=openai_server.url, GLIMPSER_AI_MODEL=MODEL)
    jobs.configure(app.extensions["glimpser.settings"])
    yield app
    jobs.configure(None)


@pytest.fixture
def tl_app(app_factory, database_url):
    app = app_factory(database_url)
    jobs.configure(app.extensions["glimpser.settings"])
    yield app
    jobs.configure(None)


def viewer_of(app, stream, *scopes: str, name: str = "vera") -> ApiClient:
    user = make_user(name)
    with database.connection_context():
        StreamAccess.create(user=user, stream=stream)
    return ApiClient(app, make_key(user, *(scopes or ("read",))))


def count(model) -> int:
    with database.connection_context():
        return model.select().count()


# --- summaries ------------------------------------------------------------------------------


def test_summarise_now_through_the_api(ai_app, openai_server):
    granted, hidden = make_stream("Granted cam"), make_stream("Hidden cam")
    now = times.utcnow()
    add_event(granted, now - timedelta(minutes=10), "Fox in the garden", severity="low")
    add_event(hidden, now - timedelta(minutes=10), "SECRET-HIDDEN-EVENT")
    viewer = viewer_of(ai_app, granted, "write")

    asked = viewer.post("/summaries", json={"stream_id": granted.id, "window": "hour"})
    assert asked.status_code == 202, asked.get_data(as_text=True)
    assert asked.json["status"] == "queued" and asked.json["stream_id"] == granted.id
    assert asked.headers["Location"] == asked.json["url"]
    openai_server.handler = lambda _r: Reply.completion("A fox visited the garden.")
    run_queued_jobs(ai_app, ("analysis",))
    done = viewer.get(asked.json["url"])
    assert done.status_code == 200
    assert done.json["status"] == "done", done.json
    assert done.json["text"] == "A fox visited the garden."
    assert done.json["model"] == MODEL and done.json["requested"] is True
    assert all("SECRET-HIDDEN-EVENT" not in r.text for r in openai_server.requests)
    # Every stream the viewer may see: only the granted one.
    everything = viewer.post("/summaries", json={"window": "day"})
    assert everything.status_code == 202 and everything.json["stream_ids"] == [granted.id]

    assert (
        viewer.post("/summaries", json={"stream_id": hidden.id, "window": "hour"}).status_code
        == 404
    )
    bad = viewer.post("/summaries", json={"window": "fortnight"})
    assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "window"
    assert viewer.post("/summaries", json={"stream_id": 2**63, "window": "hour"}).status_code == 422
    assert viewer.post("/summaries", data="window=hour").status_code == 415
    reader = ApiClient(ai_app, make_key(make_user("rita", "admin"), "read"))
    assert reader.post("/summaries", json={"window": "hour"}).status_code == 403
    assert count(Summary) == 2

    # The per-user cap: one is done, one pending; two more may be, then 429.
    for _ in range(2):
        assert viewer.post("/summaries", json={"window": "week"}).status_code == 202
    capped = viewer.post("/summaries", json={"window": "week"})
    assert capped.status_code == 429 and capped.mimetype == "application/problem+json"
    assert count(Summary) == 4


def test_summaries_list_only_visible_ones_in_cursor_pages(ai_app):
    granted, hidden = make_stream("Granted cam"), make_stream("Hidden cam")
    base = times.utcnow().replace(microsecond=0) - timedelta(days=1)
    for n in range(3):
        add_summary(
            granted,
            f"granted {n}",
            window_start=base + timedelta(hours=n),
            window_end=base + timedelta(hours=n + 1),
        )
    secret = add_summary(hidden, "hidden text")
    both = add_summary(None, "both", stream_ids=[granted.id, hidden.id])
    viewer = viewer_of(ai_app, granted)
    texts, url = [], "/api/v1/summaries?limit=2"
    while url:
        page = viewer.get(url)
        assert page.status_code == 200, page.get_data(as_text=True)
        texts += [s["text"] for s in page.json["items"]]
        link = page.headers.get("Link")
        url = link[1 : link.index(">")].replace("http://localhost", "") if link else None
    assert texts == ["granted 2", "granted 1", "granted 0"]
    assert viewer.get(f"/summaries/{secret.id}").status_code == 404
    assert viewer.get(f"/summaries/{both.id}").status_code == 404
    assert viewer.get(f"/summaries?stream={hidden.id}").status_code == 404
    admin = api_as(ai_app, "alice")
    assert len(admin.get("/summaries").json["items"]) == 5
    assert admin.get(f"/summaries/{both.id}").json["stream_ids"] == [granted.id, hidden.id]
    assert [s["text"] for s in admin.get(f"/summaries?stream={hidden.id}").json["items"]] == [
        "hidden text"
    ]
    limited = api_as(ai_app, "bob", "admin", "write", stream_ids=[granted.id])
    assert len(limited.get("/summaries").json["items"]) == 3
    assert limited.get(f"/summaries/{both.id}").status_code == 404
    assert limited.post("/summaries", json={"window": "hour"}).status_code == 422
    for query in ("period=weekly", "status=x", f"limit={10**6}", "cursor=x", f"stream={2**63}"):
        response = admin.get(f"/summaries?{query}")
        assert 400 <= response.status_code < 500, query
        assert response.mimetype == "application/problem+json"


def test_without_ai_a_summary_request_is_409(tl_app):
    stream = make_stream("Yard")
    admin = api_as(tl_app, "alice")
    refused = admin.post("/summaries", json={"stream_id": stream.id, "window": "hour"})
    assert refused.status_code == 409 and "AI not configured" in refused.json["detail"]
    assert count(Summary) == 0


# --- timelapses -----------------------------------------------------------------------------


def test_a_timelapse_is_requested_built_and_downloaded(tl_app):
    stream, hidden = make_stream("Yard"), make_stream("Hidden")
    start = times.utcnow().replace(microsecond=0) - timedelta(minutes=30)
    saved = add_snapshots(tl_app, stream, 0, 6, start)
    viewer = viewer_of(tl_app, stream, "write")
    body = {
        "stream_id": stream.id,
        "start": saved[0].isoformat(),
        "end": saved[-1].isoformat(),
        "fps": 5,
    }
    asked = viewer.post("/timelapses", json=body)
    assert asked.status_code == 202, asked.get_data(as_text=True)
    assert asked.json["status"] == "queued" and asked.json["download"] is None
    url = asked.json["url"]
    not_ready = viewer.get(f"{url}/download")
    assert not_ready.status_code == 409 and not_ready.mimetype == "application/problem+json"

    run_queued_jobs(tl_app, ("maintenance",))
    done = viewer.get(url).json
    assert (done["status"], done["progress"], done["frames"]) == ("done", 100, 6)
    video = viewer.get(done["download"])
    assert video.status_code == 200 and video.mimetype == "video/mp4"
    assert video.headers["Content-Disposition"].startswith("attachment")
    assert len(video.data) == done["bytes"] and video.data[4:8] == b"ftyp"
    part = viewer.get(done["download"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.data == video.data[:100]
    listed = viewer.get("/timelapses")
    assert [t["id"] for t in listed.json["items"]] == [done["id"]]

    # A range without snapshots fails on the worker: no video, 404.
    empty = viewer.post(
        "/timelapses",
        json={
            **body,
            "start": (start - timedelta(days=2)).isoformat(),
            "end": (start - timedelta(minutes=1)).isoformat(),
        },
    )
    run_queued_jobs(tl_app, ("maintenance",))
    failed = viewer.get(empty.json["url"]).json
    assert failed["status"] == "failed" and failed["error"]
    assert viewer.get(f"{empty.json['url']}/download").status_code == 404

    # Another stream's timelapses stay out of reach.
    admin = api_as(tl_app, "alice")
    theirs = admin.post("/timelapses", json={**body, "stream_id": hidden.id})
    assert theirs.status_code == 202
    assert viewer.get(theirs.json["url"]).status_code == 404
    assert viewer.get(theirs.json["url"] + "/download").status_code == 404
    assert viewer.post("/timelapses", json={**body, "stream_id": hidden.id}).status_code == 404
    assert viewer.get(f"/timelapses?stream={hidden.id}").status_code == 404
    assert len(viewer.get("/timelapses").json["items"]) == 2
    assert len(admin.get("/timelapses").json["items"]) == 3


def test_bad_timelapse_requests_are_4xx_and_write_nothing(tl_app):
    stream = make_stream("Yard")
    now = times.utcnow().replace(microsecond=0)
    good = {
        "stream_id": stream.id,
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": now.isoformat(),
    }
    api = api_as(tl_app, "alice")
    for change in (
        {"fps": 7},
        {"fps": "10"},
        {"end": good["start"]},
        {"start": "0001-01-01T00:00:00"},  # no offset
        {"end": "9999-12-31T23:59:59-14:00"},  # past year 9999 in UTC
        {"stream_id": 0},
        {"stream_id": 2**63},
        {"stream_id": "١"},
    ):
        response = api.post("/timelapses", json={**good, **change})
        assert response.status_code == 422, (change, response.status_code)
        assert response.mimetype == "application/problem+json"
    assert api.post("/timelapses", json={**good, "stream_id": 2**31 - 1}).status_code == 404
    reader = ApiClient(tl_app, make_key(make_user("rita", "admin"), "read"))
    assert reader.post("/timelapses", json=good).status_code == 403
    assert count(Timelapse) == 0
    year_one = {**good, "start": "0001-01-01T00:00:00Z"}
    assert api.post("/timelapses", json=year_one).status_code == 202  # a real, if empty, range
    for _ in range(2):
        assert api.post("/timelapses", json=good).status_code == 202
    assert api.post("/timelapses", json=good).status_code == 429  # three are pending
    assert count(Timelapse) == 3
    for query in ("status=x", f"limit={10**6}", "cursor=x", f"stream={2**63}"):
        assert 400 <= api.get(f"/timelapses?{query}").status_code < 500, query
    assert api.get(f"/timelapses/{2**63}").status_code == 404
    assert api.get(f"/timelapses/{2**31 - 1}/download").status_code == 404


def test_the_paths_are_in_the_openapi_document(tl_app):
    doc = tl_app.test_client().get("/api/v1/openapi.json").json
    paths = doc["paths"]
    for path, method in (
        ("/api/v1/summaries", "get"),
        ("/api/v1/summaries", "post"),
        ("/api/v1/summaries/{summary_id}", "get"),
        ("/api/v1/timelapses", "get"),
        ("/api/v1/timelapses", "post"),
        ("/api/v1/timelapses/{timelapse_id}", "get"),
        ("/api/v1/timelapses/{timelapse_id}/download", "get"),
    ):
        assert method in paths[path], (path, method)
    download = paths["/api/v1/timelapses/{timelapse_id}/download"]["get"]["responses"]
    assert "video/mp4" in download["200"]["content"]
    assert "application/problem+json" in download["409"]["content"]
    assert "202" in paths["/api/v1/timelapses"]["post"]["responses"]
