"""/api/v1/streams/<id>/snapshots and /image: pages by time, metadata, the pictures with
ETag/304, and who may see them, on SQLite and PostgreSQL with real captures."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from tests.api_support import ApiClient, api_as, make_key, make_user
from tests.conftest import run_queued_jobs
from tests.helpers import jobs_configured


@pytest.fixture
def cap_app(app_factory, database_url, media_root):
    app = app_factory(
        database_url, GLIMPSER_ALLOW_LOOPBACK_SOURCES="1", GLIMPSER_MEDIA_DIR=str(media_root)
    )
    with jobs_configured(app):
        yield app


@pytest.fixture
def captured(cap_app, camera):
    """An admin's key, a stream with one real picture from the loopback camera, and a second
    stream with none."""
    api = api_as(cap_app, "alice")
    config = {"kind": "http_image", "url": f"{camera.url}/snapshot.jpg"}
    porch = api.post("/streams", json={"name": "Porch", "enabled": False, "config": config})
    empty = api.post("/streams", json={"name": "Empty", "enabled": False, "config": config})
    assert porch.status_code == empty.status_code == 201
    job = api.post(f"/streams/{porch.json['id']}/capture").json
    run_queued_jobs(cap_app)
    result = api.get(job["url"]).json
    assert result["stored"] is True, result
    return api, porch.json["id"], empty.json["id"], result["snapshot_id"]


def add_rows(stream_id: int, times: list[datetime]) -> list[int]:
    """Snapshot rows (metadata only: the listing never opens the files)."""
    from glimpser.db import database
    from glimpser.models import Snapshot

    with database.connection_context():
        return [
            Snapshot.create(
                stream=stream_id,
                captured_at=at,
                storage_key=f"test/{stream_id}/{n}.jpg",
                width=4,
                height=3,
                bytes=10,
                sha256="0" * 64,
                phash="0" * 16,
            ).id
            for n, at in enumerate(times)
        ]


def follow(api: ApiClient, url: str) -> list[int]:
    ids = []
    while url:
        page = api.get(url)
        assert page.status_code == 200, page.get_data(as_text=True)
        ids += [s["id"] for s in page.json["items"]]
        link = page.headers.get("Link")
        assert (link is None) == (page.json["next_cursor"] is None)
        url = link[1 : link.index(">")].replace("http://localhost", "") if link else None
    return ids


def test_metadata_image_thumbnail_and_the_latest_image(captured):
    api, porch, empty, snap = captured
    listed = api.get(f"/streams/{porch}/snapshots")
    assert listed.status_code == 200
    (item,) = listed.json["items"]
    assert item["id"] == snap and item["stream_id"] == porch
    assert item["content_type"] == "image/jpeg" and item["width"] > 0 and item["bytes"] > 0
    assert item["has_text"] is False and item["analysed_at"] is None
    meta = api.get(f"/streams/{porch}/snapshots/{snap}").json
    assert meta == item
    image = api.get(meta["image_url"])
    assert image.status_code == 200 and image.mimetype == "image/jpeg"
    assert hashlib.sha256(image.data).hexdigest() == meta["sha256"]
    assert len(image.data) == meta["bytes"]
    assert image.headers["ETag"].strip('"') == meta["sha256"]
    again = api.get(meta["image_url"], headers={"If-None-Match": image.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    thumb = api.get(meta["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    from io import BytesIO

    assert Image.open(BytesIO(thumb.data)).width <= meta["width"]
    latest = api.get(f"/streams/{porch}/image")
    assert latest.status_code == 200 and latest.data == image.data
    assert "no-cache" in latest.headers["Cache-Control"]
    etag = latest.headers["ETag"]
    assert api.get(f"/streams/{porch}/image", headers={"If-None-Match": etag}).status_code == 304
    assert api.get(f"/streams/{porch}/image", headers={"If-None-Match": '"x"'}).status_code == 200
    # A newer picture: the old ETag no longer matches.
    newer = add_rows(porch, [datetime.now(UTC) + timedelta(minutes=1)])
    assert api.get(f"/streams/{porch}/snapshots").json["items"][0]["id"] == newer[0]
    # None yet: a 404 problem.
    none = api.get(f"/streams/{empty}/image")
    assert none.status_code == 404 and none.mimetype == "application/problem+json"
    # A snapshot of another stream, or ids beyond any row: 404.
    for url in (
        f"/streams/{empty}/snapshots/{snap}",
        f"/streams/{empty}/snapshots/{snap}/image",
        f"/streams/{empty}/snapshots/{snap}/thumbnail",
        f"/streams/{porch}/snapshots/{2**63}",
        f"/streams/{porch}/snapshots/{2**31}/image",
        f"/streams/{2**63}/snapshots",
        f"/streams/{2**63}/image",
    ):
        assert api.get(url).status_code == 404, url


def test_pages_newest_first_with_cursors_and_time_bounds(db_app):
    from tests.helpers import add_stream

    with db_app.app_context():
        stream = add_stream("Porch")
    base = datetime(2030, 5, 1, 12, tzinfo=UTC)
    # Two pictures share a time: the id breaks the tie.
    times = [base + timedelta(minutes=n) for n in range(7)] + [base + timedelta(minutes=3)]
    ids = add_rows(stream.id, times)
    api = api_as(db_app, "alice")
    order = sorted(zip(times, ids, strict=True), key=lambda p: (p[0], p[1]), reverse=True)
    newest_first = [i for _t, i in order]
    assert follow(api, f"/api/v1/streams/{stream.id}/snapshots?limit=3") == newest_first
    assert follow(api, f"/api/v1/streams/{stream.id}/snapshots?limit=1") == newest_first
    window = follow(
        api,
        f"/api/v1/streams/{stream.id}/snapshots?limit=2"
        "&since=2030-05-01T12:02:00Z&until=2030-05-01T14:04:00%2B02:00",
    )
    assert window == [
        i for t, i in order if base + timedelta(minutes=2) <= t < base + timedelta(minutes=4)
    ]
    naive = api.get(f"/streams/{stream.id}/snapshots?since=2030-05-01T12:06:00").json
    assert [s["id"] for s in naive["items"]] == [ids[6]]
    # The ends of the calendar are fine; what is not a time, or overflows, is a 422.
    for ok in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999999"):
        assert api.get(f"/streams/{stream.id}/snapshots?until={ok}").status_code == 200, ok
    for bad in (
        "yesterday",
        "2030-13-01T00:00:00Z",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00%2B05:00",
        "٢٠٣٠-05-01T12:00:00Z",
    ):
        response = api.get(f"/streams/{stream.id}/snapshots?since={bad}")
        assert response.status_code == 422, (bad, response.status_code)
        assert response.json["errors"][0]["field"] == "since"
    for bad in ("0", "501", str(2**63), "١٠", "x"):
        assert api.get(f"/streams/{stream.id}/snapshots?limit={bad}").status_code == 422, bad
    for bad in (
        "x",
        "20300501T120000.000000Z_abc",
        "20300501T120000.000000Z_١",
        "_1",
        f"20300501T120000.000000Z_{2**63}",
        "99999999T000000.000000Z_1",
    ):
        response = api.get(f"/streams/{stream.id}/snapshots?cursor={bad}")
        assert response.status_code == 400, (bad, response.status_code)
        assert response.mimetype == "application/problem+json"


def test_viewers_and_limited_keys_see_only_their_streams(captured, cap_app):
    from glimpser.db import database
    from glimpser.models import StreamAccess

    api, porch, empty, snap = captured
    vera = make_user("vera")
    with database.connection_context():
        StreamAccess.create(user=vera, stream=empty)
    viewer = ApiClient(cap_app, make_key(vera, "read"))
    limited = api_as(cap_app, "admin2", "admin", "read", stream_ids=[empty])
    for client in (viewer, limited):
        for url in (
            f"/streams/{porch}/snapshots",
            f"/streams/{porch}/snapshots/{snap}",
            f"/streams/{porch}/snapshots/{snap}/image",
            f"/streams/{porch}/snapshots/{snap}/thumbnail",
            f"/streams/{porch}/image",
        ):
            response = client.get(url)
            assert response.status_code == 404, (url, response.status_code)
            assert b"Porch" not in response.data
        assert client.get(f"/streams/{empty}/snapshots").json["items"] == []
    assert api.get(f"/streams/{porch}/image").status_code == 200
    # No key: 401.
    assert cap_app.test_client().get(f"/api/v1/streams/{porch}/image").status_code == 401


def test_the_paths_are_in_the_openapi_document(db_app):
    paths = db_app.test_client().get("/api/v1/openapi.json").json["paths"]
    listing = paths["/api/v1/streams/{stream_id}/snapshots"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"limit", "cursor", "since", "until"}
    assert "get" in paths["/api/v1/streams/{stream_id}/snapshots/{snapshot_id}"]
    for path in (
        "/api/v1/streams/{stream_id}/snapshots/{snapshot_id}/image",
        "/api/v1/streams/{stream_id}/snapshots/{snapshot_id}/thumbnail",
        "/api/v1/streams/{stream_id}/image",
    ):
        answers = paths[path]["get"]["responses"]
        assert answers["200"]["content"] == {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}}
        }
        assert "304" in answers and "content" not in answers["304"]
        assert "application/problem+json" in answers["404"]["content"]
