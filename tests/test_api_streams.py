"""/api/v1/streams writes: create, replace (write-only secrets), pause/resume, delete, capture
now and test capture, on SQLite and PostgreSQL, with real RQ jobs and the loopback camera."""

from __future__ import annotations

import pytest
from rq.job import Job

from tests.api_support import ApiClient, api_as, make_key, make_user
from tests.conftest import run_queued_jobs
from tests.helpers import add_stream, jobs_configured
from tests.media_servers import CAMERA_PASSWORD, CAMERA_USER

SECRET = "pa55-w0rd-never-shown"


@pytest.fixture
def cap_app(app_factory, database_url, media_root):
    """The app on SQLite and PostgreSQL, allowed to capture from the loopback test camera."""
    app = app_factory(
        database_url, GLIMPSER_ALLOW_LOOPBACK_SOURCES="1", GLIMPSER_MEDIA_DIR=str(media_root)
    )
    with jobs_configured(app):
        yield app


def body(name: str = "Porch", url: str = "http://192.0.2.1/x.jpg", **config: object) -> dict:
    return {
        "name": name,
        "enabled": config.pop("enabled", False),
        "interval": 300,
        "groups": ["outdoor"],
        "config": {"kind": "http_image", "url": url, **config},
    }


def stored(stream_id: int):
    from glimpser.db import database
    from glimpser.models import Stream

    with database.connection_context():  # also a stream being deleted
        return Stream.select_including_deleting().where(Stream.id == stream_id).get()


def audit_entries(action: str) -> list:
    from glimpser.db import database
    from glimpser.models import AuditLog

    with database.connection_context():
        return list(AuditLog.select().where(AuditLog.action == action).order_by(AuditLog.id))


def fields(response) -> dict[str, str]:
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return {e["field"]: e["message"] for e in response.json["errors"]}


def test_create_answers_201_with_the_stream_and_audits_it(db_app, redis_client):
    from glimpser.capture import scheduling

    api = api_as(db_app, "alice")
    made = api.post("/streams", json=body(username="cam", password=SECRET, enabled=True))
    assert made.status_code == 201, made.get_data(as_text=True)
    out = made.json
    assert made.headers["Location"].endswith(f"/api/v1/streams/{out['id']}")
    assert out["name"] == "Porch" and out["kind"] == "http_image" and out["groups"] == ["outdoor"]
    assert out["state"] == "pending" and out["enabled"] is True
    assert out["secrets_set"] == ["password"] and "password" not in out["config"]
    assert SECRET not in made.get_data(as_text=True)
    assert stored(out["id"]).config["password"] == SECRET
    # Its first capture is queued, as after the form.
    assert scheduling.is_claimed(redis_client, out["id"])
    # The same audit entry as the form, naming the key.
    (entry,) = audit_entries("stream.create")
    assert entry.target == f"stream:{out['id']}"
    assert entry.detail["api_key"] == api.token.split("_")[1]
    assert SECRET not in str(entry.detail)
    assert api.get(f"/streams/{out['id']}").json["name"] == "Porch"


def test_create_refuses_bad_input_with_field_errors_and_writes_nothing(db_app):
    from glimpser.db import database
    from glimpser.models import Stream

    api = api_as(db_app, "alice")
    assert api.post("/streams", json=body()).status_code == 201
    assert fields(api.post("/streams", json=body(name="PORCH"))) == {
        "name": "Another stream already has this name."
    }
    assert "config.url" in fields(api.post("/streams", json=body(url="ftp://x/y.jpg")))
    assert "interval" in fields(api.post("/streams", json={**body("B"), "interval": 0}))
    assert "interval" in fields(api.post("/streams", json={**body("B"), "interval": 2**63}))
    assert fields(api.post("/streams", json={**body("B"), "config": {"kind": "nope"}}))
    assert fields(api.post("/streams", json={**body("B"), "surprise": 1}))
    assert api.post("/streams", json=body("١٢")).status_code == 201  # any name, any script
    assert fields(api.post("/streams", json={}))
    assert fields(api.post("/streams"))  # no body at all
    nul = api.post("/streams", json=body("Bad\u0000name"))
    assert nul.status_code == 422 and nul.mimetype == "application/problem+json"
    deep = api.post(
        "/streams", data="[" * 100 + "]" * 100, headers={"Content-Type": "application/json"}
    )
    assert deep.status_code == 400
    form = api.post("/streams", data={"name": "x"})
    assert form.status_code == 415
    with database.connection_context():
        assert [s.name for s in Stream.select().order_by(Stream.id)] == ["Porch", "١٢"]


def test_put_keeps_a_blank_secret_only_while_the_host_is_the_same(db_app):
    api = api_as(db_app, "alice")
    made = api.post("/streams", json=body(username="cam", password=SECRET)).json
    url = f"/streams/{made['id']}"
    # Left out: kept (the same host, another path).
    kept = api.put(url, json=body("Porch 2", url="http://192.0.2.1/other.jpg", username="cam"))
    assert kept.status_code == 200, kept.get_data(as_text=True)
    assert kept.json["name"] == "Porch 2" and kept.json["secrets_set"] == ["password"]
    assert stored(made["id"]).config["password"] == SECRET
    # Blank: kept too.
    blank = api.put(url, json=body("Porch 2", username="cam", password=""))
    assert blank.status_code == 200 and stored(made["id"]).config["password"] == SECRET
    # Another host: the stored secret is not sent there; it must be typed again.
    moved = api.put(url, json=body("Porch 3", url="http://198.51.100.7/x.jpg", username="cam"))
    assert fields(moved) == {
        "config.password": "The address changed: enter this again (a stored secret is not "
        "sent elsewhere)."
    }
    assert stored(made["id"]).name == "Porch 2"
    retyped = api.put(
        url, json=body("Porch 3", url="http://198.51.100.7/x.jpg", password="new-one")
    )
    assert retyped.status_code == 200 and stored(made["id"]).config["password"] == "new-one"
    # A taken name, a missing stream, ids beyond any row.
    api.post("/streams", json=body("Garden"))
    assert fields(api.put(url, json=body("garden", url="http://198.51.100.7/x.jpg"))) == {
        "name": "Another stream already has this name."
    }
    assert set(fields(api.put(url, json=body("garden")))) == {"name", "config.password"}
    for missing in (10**6, 2**31, 2**63):
        assert api.put(f"/streams/{missing}", json=body("X")).status_code == 404
    updates = audit_entries("stream.update")
    assert len(updates) == 3
    assert updates[0].detail["changes"]["name"] == ["Porch", "Porch 2"]
    assert "new-one" not in str([e.detail for e in updates])


def test_pause_resume_and_delete(db_app, redis_client):
    from glimpser.capture import scheduling
    from glimpser.media import deletion

    api = api_as(db_app, "alice")
    made = api.post("/streams", json=body(enabled=True)).json
    sid = made["id"]
    paused = api.post(f"/streams/{sid}/pause")
    assert paused.status_code == 200 and paused.json["state"] == "paused"
    assert paused.json["enabled"] is False and not stored(sid).enabled
    scheduling.release(redis_client, sid)
    resumed = api.post(f"/streams/{sid}/resume")
    assert resumed.status_code == 200 and resumed.json["state"] == "pending"
    assert stored(sid).enabled and scheduling.is_claimed(redis_client, sid)
    assert [len(audit_entries(a)) for a in ("stream.pause", "stream.resume")] == [1, 1]

    gone = api.delete(f"/streams/{sid}")
    assert gone.status_code == 202, gone.get_data(as_text=True)
    assert gone.json == {"id": sid, "name": "Porch", "snapshots": 0}
    assert stored(sid).deleting_since is not None
    assert Job.fetch(deletion.job_id(sid), connection=redis_client) is not None
    assert not scheduling.is_claimed(redis_client, sid)
    assert api.get("/streams").json["items"] == []
    for method, path in (
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/pause"),
        ("POST", "/capture"),
        ("PUT", ""),
    ):
        kwargs = {"json": body("Again")} if method == "PUT" else {}
        assert api.open(method, f"/streams/{sid}{path}", **kwargs).status_code == 404
    (entry,) = audit_entries("stream.delete")
    assert entry.detail["snapshots"] == 0 and "api_key" in entry.detail
    # The name is free again.
    assert api.post("/streams", json=body()).status_code == 201


def test_viewers_and_limited_keys_cannot_write(db_app):
    from glimpser.db import database
    from glimpser.models import StreamAccess

    with db_app.app_context():
        porch, garden = add_stream("Porch"), add_stream("Garden")
    vera = make_user("vera")
    with database.connection_context():
        StreamAccess.create(user=vera, stream=porch)
    viewer = ApiClient(db_app, make_key(vera, "write"))
    for method, path in (
        ("POST", f"/streams/{porch.id}/pause"),
        ("POST", f"/streams/{porch.id}/resume"),
        ("POST", f"/streams/{porch.id}/capture"),
        ("DELETE", f"/streams/{porch.id}"),
        ("PUT", f"/streams/{porch.id}"),
        ("POST", "/streams"),
        ("POST", "/streams/test-capture"),
    ):
        assert viewer.open(method, path, json=body("X")).status_code == 403, (method, path)
    assert viewer.get(f"/streams/{porch.id}").status_code == 200
    assert viewer.get(f"/streams/{garden.id}").status_code == 404
    # An admin's read key may not write.
    reader = api_as(db_app, "rita", "admin", "read")
    assert reader.post(f"/streams/{porch.id}/pause").status_code == 403
    # An admin's key limited to one stream reaches no other.
    limited = api_as(db_app, "alice", "admin", "admin", stream_ids=[porch.id])
    assert limited.post(f"/streams/{garden.id}/pause").status_code == 404
    assert limited.delete(f"/streams/{garden.id}").status_code == 404
    assert limited.put(f"/streams/{garden.id}", json=body("Garden")).status_code == 404
    assert (
        limited.post(
            "/streams/test-capture", json={"config": body()["config"], "stream_id": garden.id}
        ).status_code
        == 404
    )
    assert limited.post(f"/streams/{porch.id}/pause").status_code == 200
    assert stored(garden.id).enabled


def test_capture_now_runs_a_real_capture_and_reports_it(cap_app, camera, redis_client):
    api = api_as(cap_app, "alice")
    made = api.post("/streams", json=body(url=f"{camera.url}/snapshot.jpg")).json
    sid = made["id"]
    queued = api.post(f"/streams/{sid}/capture")
    assert queued.status_code == 202, queued.get_data(as_text=True)
    job_id = queued.json["job_id"]
    assert job_id.startswith(f"capture-{sid}-") and queued.json["state"] == "pending"
    assert queued.headers["Location"].endswith(f"/streams/{sid}/capture/{job_id}")
    busy = api.post(f"/streams/{sid}/capture")
    assert busy.status_code == 409 and busy.mimetype == "application/problem+json"
    pending = api.get(f"/streams/{sid}/capture/{job_id}")
    assert pending.status_code == 200 and pending.json["state"] == "pending"
    assert pending.json["queued"] is True
    run_queued_jobs(cap_app)
    done = api.get(f"/streams/{sid}/capture/{job_id}").json
    assert done["state"] == "done" and done["ok"] is True and done["stored"] is True
    assert done["error"] is None
    snapshot = api.get(f"/streams/{sid}/snapshots/{done['snapshot_id']}")
    assert snapshot.status_code == 200 and snapshot.json["width"] > 0
    # Another stream's job id, a made-up one, and one of another stream: 404.
    other = api.post("/streams", json=body("Other")).json
    assert api.get(f"/streams/{other['id']}/capture/{job_id}").status_code == 404
    assert api.get(f"/streams/{sid}/capture/capture-{sid}-000000000000").status_code == 404
    assert api.get(f"/streams/{sid}/capture/..%2F..").status_code == 404
    # A failing source: done, not ok, with the error.
    api.put(f"/streams/{sid}", json=body(url=f"{camera.url}/page.html"))
    run_queued_jobs(cap_app)  # the capture the save queued
    failing = api.post(f"/streams/{sid}/capture").json
    run_queued_jobs(cap_app)
    result = api.get(failing["url"]).json
    assert result["state"] == "done" and result["ok"] is False and result["error"]


def test_test_capture_uses_sealed_and_stored_secrets_for_the_key_that_asked(
    cap_app, camera, redis_client
):
    api = api_as(cap_app, "alice")
    config = {
        "kind": "http_image",
        "url": f"{camera.url}/basic.jpg",
        "auth": "basic",
        "username": CAMERA_USER,
        "password": CAMERA_PASSWORD,
    }
    asked = api.post("/streams/test-capture", json={"config": config})
    assert asked.status_code == 202, asked.get_data(as_text=True)
    job_id = asked.json["job_id"]
    assert asked.headers["Location"].endswith(f"/streams/test-capture/{job_id}")
    # No secret in the job's arguments.
    assert CAMERA_PASSWORD not in repr(Job.fetch(job_id, connection=redis_client).args)
    assert api.get(f"/streams/test-capture/{job_id}").json["state"] == "pending"
    # Another key (even the same user's) may not read it.
    alice = make_user("alice2", "admin")
    other = ApiClient(cap_app, make_key(alice, "admin"))
    assert other.get(f"/streams/test-capture/{job_id}").status_code == 404
    run_queued_jobs(cap_app)
    done = api.get(f"/streams/test-capture/{job_id}").json
    assert done["state"] == "done" and done["ok"] is True, done
    assert done["width"] > 0 and done["bytes"] > 0 and done["jpeg_base64"]
    # A saved stream's stored password is used for a blank one while the host is the same.
    saved = api.post("/streams", json={**body(), "config": config}).json
    blank = {**config, "password": ""}
    kept = api.post("/streams/test-capture", json={"config": blank, "stream_id": saved["id"]})
    assert kept.status_code == 202
    run_queued_jobs(cap_app)
    assert api.get(kept.json["url"]).json["ok"] is True
    # Without the stream, the blank password fails at the camera.
    bare = api.post("/streams/test-capture", json={"config": blank})
    run_queued_jobs(cap_app)
    failed = api.get(bare.json["url"]).json
    assert failed["state"] == "done" and failed["ok"] is False and failed["error"]
    # Another host: the stored password must be typed again.
    moved = {**blank, "url": "http://198.51.100.7/basic.jpg"}
    assert "config.password" in fields(
        api.post("/streams/test-capture", json={"config": moved, "stream_id": saved["id"]})
    )
    assert "config.url" in fields(
        api.post("/streams/test-capture", json={"config": {**config, "url": "x"}})
    )
    assert api.post(
        "/streams/test-capture", json={"config": config, "stream_id": 2**63}
    ).status_code in (404, 422)
    assert api.get("/streams/test-capture/not-a-job").status_code == 404
    assert api.get("/streams/test-capture/" + "x" * 200).status_code == 404


def test_the_paths_are_in_the_openapi_document(db_app):
    doc = db_app.test_client().get("/api/v1/openapi.json").json
    paths = doc["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/streams"])
    assert {"get", "put", "delete"} <= set(paths["/api/v1/streams/{stream_id}"])
    for path in ("pause", "resume", "capture"):
        assert "post" in paths[f"/api/v1/streams/{{stream_id}}/{path}"]
    assert "get" in paths["/api/v1/streams/{stream_id}/capture/{job_id}"]
    assert "post" in paths["/api/v1/streams/test-capture"]
    assert "get" in paths["/api/v1/streams/test-capture/{job_id}"]
    create = paths["/api/v1/streams"]["post"]
    assert set(create["responses"]) >= {"201", "400", "401", "403", "422", "429"}
    assert "requestBody" in create
    assert "409" in paths["/api/v1/streams/{stream_id}/capture"]["post"]["responses"]
    assert "202" in paths["/api/v1/streams/{stream_id}"]["delete"]["responses"]
