"""API keys on /api/v1: who may call, with which scope, on which streams (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.api_support import ApiClient, api_as, bearer, make_key, make_user
from tests.helpers import add_stream


@pytest.fixture
def api_app(db_app):
    return db_app


def _grant(user, stream) -> None:
    from glimpser.db import database
    from glimpser.models import StreamAccess

    with database.connection_context():
        StreamAccess.create(user=user, stream=stream)


def test_a_key_reads_streams_and_a_missing_or_bad_key_is_401(api_app):
    admin = api_as(api_app, "alice")
    with api_app.app_context():
        add_stream("Porch")
    listed = admin.get("/streams")
    assert listed.status_code == 200, listed.get_data(as_text=True)
    assert [s["name"] for s in listed.json["items"]] == ["Porch"]
    assert "url" in listed.json["items"][0]["config"]
    anonymous = api_app.test_client().get("/api/v1/streams")
    assert anonymous.status_code == 401
    assert anonymous.mimetype == "application/problem+json"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = api_app.test_client().get("/api/v1/streams", headers=bearer(admin.token[:-2] + "xx"))
    assert wrong.status_code == 401
    # Never a query string, never a cookie.
    assert api_app.test_client().get(f"/api/v1/streams?key={admin.token}").status_code == 401
    assert "Set-Cookie" not in listed.headers


def test_expired_revoked_and_deactivated_keys_are_401(api_app):
    from glimpser import times
    from glimpser.auth import api_keys
    from glimpser.db import database
    from glimpser.models import ApiKey, User

    user = make_user("bob", "admin")
    expired, revoked, live = (make_key(user, "read") for _ in range(3))
    with database.connection_context():
        ApiKey.update(expires_at=times.utcnow() - timedelta(seconds=1)).where(
            ApiKey.prefix == api_keys.parse_prefix(expired)
        ).execute()
        api_keys.revoke(ApiKey.get(ApiKey.prefix == api_keys.parse_prefix(revoked)))
    assert ApiClient(api_app, expired).get("/streams").status_code == 401
    assert ApiClient(api_app, revoked).get("/streams").status_code == 401
    assert ApiClient(api_app, live).get("/streams").status_code == 200
    with database.connection_context():
        User.update(active=False).where(User.id == user.id).execute()
    assert ApiClient(api_app, live).get("/streams").status_code == 401


def test_a_key_limited_to_streams_sees_only_those(api_app):
    with api_app.app_context():
        porch, garden = add_stream("Porch"), add_stream("Garden")
    admin = api_as(api_app, "alice", "admin", "read", stream_ids=[porch.id])
    assert [s["name"] for s in admin.get("/streams").json["items"]] == ["Porch"]
    assert admin.get(f"/streams/{garden.id}").status_code == 404
    assert admin.get(f"/streams/{porch.id}").status_code == 200


def test_a_viewer_key_sees_only_granted_streams(api_app):
    with api_app.app_context():
        porch, garden = add_stream("Porch"), add_stream("Garden")
    viewer = make_user("vera")
    _grant(viewer, porch)
    api = ApiClient(api_app, make_key(viewer, "read"))
    assert [s["name"] for s in api.get("/streams").json["items"]] == ["Porch"]
    assert api.get(f"/streams/{garden.id}").status_code == 404
    assert api.get(f"/streams/{2**63}").status_code == 404


def test_scopes_and_roles_are_checked(api_app):
    from glimpser.auth import api_keys

    viewer = make_user("vera")
    with pytest.raises(api_keys.ApiKeyError):
        make_key(viewer, "admin")
    metrics_only = ApiClient(api_app, make_key(make_user("prom", "admin"), "metrics"))
    assert metrics_only.get("/streams").status_code == 403


def test_pages_follow_the_link_header(api_app):
    with api_app.app_context():
        for n in range(5):
            add_stream(f"S{n}")
    api = api_as(api_app, "alice")
    names, url = [], "/api/v1/streams?limit=2"
    while url:
        page = api.get(url)
        assert page.status_code == 200
        names += [s["name"] for s in page.json["items"]]
        link = page.headers.get("Link")
        url = link[1 : link.index(">")].replace("http://localhost", "") if link else None
    assert names == [f"S{n}" for n in range(5)]
    assert api.get("/streams?limit=0").status_code == 422
    assert api.get("/streams?limit=0").json["errors"][0]["field"] == "limit"
    assert api.get("/streams?cursor=x").status_code == 400


def test_the_openapi_document_is_served(api_app):
    doc = api_app.test_client().get("/api/v1/openapi.json")
    assert doc.status_code == 200
    assert doc.json["openapi"].startswith("3.1")
    assert "/api/v1/streams/{stream_id}" in doc.json["paths"]
    bad = doc.json["paths"]["/api/v1/streams"]["get"]["responses"]["401"]
    assert "application/problem+json" in bad["content"]


def test_text_no_database_can_store_is_a_422_naming_the_field(api_app):
    """A NUL or a lone surrogate (JSON's "\\ud800") anywhere in a body: 422, nothing written."""
    admin = api_as(api_app, "alice")
    for bad in ("Bad\u0000name", "Bad\ud800name"):
        body = (
            '{"name": '
            + json.dumps(bad)
            + ', "config": {"kind": "http_image", "url": "http://192.0.2.1/x.jpg"}}'
        )
        answer = admin.post("/streams", data=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, answer.get_data(as_text=True)
        assert answer.json["errors"][0]["field"] == "name"
    assert admin.get("/streams").json["items"] == []


def test_a_chunked_body_gets_the_same_checks(api_app):
    """A body sent without Content-Length (chunked, as gunicorn passes it on) is checked like
    any other: nested too deep is a 400 problem, never a 500."""
    import io

    admin = api_as(api_app, "alice")
    answer = admin.client.open(
        "/api/v1/streams",
        method="POST",
        input_stream=io.BytesIO(b"[" * 5000 + b"]" * 5000),
        headers={
            **bearer(admin.token),
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert answer.mimetype == "application/problem+json"
