"""Profile → API keys and Admin → API keys: making, listing and revoking keys in the web UI,
bad input refused with nothing made, the per-key rate limit, and a deactivated user's key
(SQLite and PostgreSQL where the database matters)."""

from __future__ import annotations

import re

import pytest

from glimpser.auth import api_keys
from glimpser.db import database
from glimpser.models import ApiKey, AuditLog, StreamAccess, User
from tests.api_support import ApiClient, bearer, make_key, make_user
from tests.helpers import PASSWORD, add_stream, csrf_from, form_post, labelled, login, setup_admin

TOKEN = re.compile(r'id="new-api-key"[^>]*>(glp_[0-9a-f]{8}_[^<]+)</textarea>')
PAGE = "/profile/api-keys"
ADMIN_PAGE = "/admin/api-keys/"


def _admin(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def _signed_in(app, name: str):
    client = app.test_client()
    assert login(client, name, PASSWORD).status_code == 302
    return client


def _keys() -> list[ApiKey]:
    with database.connection_context():
        return list(ApiKey.select().order_by(ApiKey.id))


def _actions() -> list[str]:
    with database.connection_context():
        return [a.action for a in AuditLog.select().order_by(AuditLog.id)]


def _token(response) -> str:
    html = response.get_data(as_text=True)
    match = TOKEN.search(html)
    assert match, html
    return match.group(1)


def test_a_viewer_makes_lists_and_revokes_their_own_key(db_app):
    _admin(db_app)
    with db_app.app_context():
        porch, _garden = add_stream("Porch"), add_stream("Garden")
    vera = make_user("vera")
    with database.connection_context():
        StreamAccess.create(user=vera, stream=porch)
    client = _signed_in(db_app, "vera")

    page = client.get(PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    labelled(html)
    assert "You have no API keys yet." in html
    assert 'value="admin"' not in html and 'value="metrics"' not in html  # admins only
    assert ">Porch</option>" in html and "Garden" not in html  # only streams vera sees

    created = form_post(
        client,
        PAGE,
        data={
            "name": "Home Assistant",
            "scopes": ["read", "write"],
            "stream_ids": [str(porch.id)],
            "expires_days": "30",
        },
    )
    assert created.status_code == 200
    assert created.headers["Cache-Control"] == "no-store"
    token = _token(created)
    assert "You will not see it again" in created.get_data(as_text=True)
    [key] = _keys()
    assert (key.name, key.scopes, key.stream_ids) == (
        "Home Assistant",
        ["read", "write"],
        [porch.id],
    )
    assert key.expires_at is not None and token not in (key.secret_hash, key.prefix)
    assert key.secret_hash == api_keys.hash_token(token)

    # The key works on the API, for vera's streams only, and its use is shown in the list.
    api = ApiClient(db_app, token)
    listed = api.get("/streams", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert [s["name"] for s in listed.json["items"]] == ["Porch"]
    html = client.get(PAGE).get_data(as_text=True)
    assert token not in html  # the list never shows the secret
    assert f"glp_{key.prefix}_…" in html and "Home Assistant" in html and "read, write" in html
    assert "from 192.0.2.7" in html and ">active<" in html and "Porch" in html

    confirm = client.get(f"{PAGE}/{key.id}/revoke")
    assert confirm.status_code == 200
    assert f"Revoke key {key.prefix}" in confirm.get_data(as_text=True)
    revoked = form_post(client, f"{PAGE}/{key.id}/revoke")
    assert revoked.status_code == 302
    assert api.get("/streams").status_code == 401
    assert ">revoked<" in client.get(PAGE).get_data(as_text=True)
    # Revoking again changes nothing and says so.
    again = form_post(client, f"{PAGE}/{key.id}/revoke", follow_redirects=True)
    assert "already revoked" in again.get_data(as_text=True)
    assert _actions().count("api_key.create") == 1
    assert _actions().count("api_key.revoke") == 1
    with database.connection_context():
        entry = AuditLog.get(AuditLog.action == "api_key.create")
        assert entry.user_id == vera.id and token not in str(entry.detail)


def test_someone_elses_key_is_404_on_the_profile(db_app):
    _admin(db_app)
    bob = make_user("bob")
    make_user("vera")
    make_key(bob, "read")
    [key] = _keys()
    vera = _signed_in(db_app, "vera")
    assert vera.get(f"{PAGE}/{key.id}/revoke").status_code == 404
    assert form_post(vera, PAGE, f"{PAGE}/{key.id}/revoke").status_code == 404
    assert vera.get(f"{PAGE}/{2**63}/revoke").status_code == 404
    assert api_keys.state(_keys()[0]) == "active"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"scopes": "read", "expires_days": "٣"}, "expires_days", "whole number of days"),
        ({"scopes": "read", "expires_days": "²"}, "expires_days", "whole number of days"),
        ({"scopes": "read", "expires_days": "0"}, "expires_days", "from 1 to 3650"),
        ({"scopes": "read", "expires_days": "99999"}, "expires_days", "from 1 to 3650"),
        ({"scopes": "read", "expires_days": "1e3"}, "expires_days", "whole number"),
        ({"scopes": "read", "expires_days": str(2**63)}, "expires_days", "whole number"),
        ({"scopes": "root"}, "scopes", "Choose scopes among"),
        ({}, "scopes", "at least one scope"),
        ({"scopes": "admin"}, "scopes", "admin or metrics scope"),
        ({"scopes": "read", "stream_ids": "2"}, "stream_ids", "cannot see it"),
        ({"scopes": "read", "stream_ids": str(2**63)}, "stream_ids", "does not exist"),
        ({"scopes": "read", "stream_ids": "٣"}, "stream_ids", "does not exist"),
        ({"scopes": "read", "name": "x" * 101}, "name", "at most 100"),
        ({"scopes": "read", "name": "a\x1bb"}, "name", "Use letters"),
    ],
)
def test_bad_input_is_a_422_form_and_nothing_is_made(app, data, field, message):
    _admin(app)
    with app.app_context():
        porch, _garden = add_stream("Porch"), add_stream("Garden")
    vera = make_user("vera")
    with database.connection_context():
        StreamAccess.create(user=vera, stream=porch)
    client = _signed_in(app, "vera")
    response = form_post(client, PAGE, data=data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'id="key-{field}-error"' in html and message in html
    assert "aria-invalid" in html
    assert not _keys()
    assert "api_key.create" not in _actions()


def test_the_profile_form_needs_its_csrf_token_and_refuses_nul(app):
    _admin(app)
    make_user("vera")
    client = _signed_in(app, "vera")
    assert client.post(PAGE, data={"scopes": "read"}).status_code == 400
    assert form_post(client, PAGE, data={"scopes": "read", "name": "a\x00b"}).status_code == 400
    assert not _keys()


def test_a_form_with_the_admin_scope_makes_an_admins_key(app):
    admin = _admin(app)
    assert 'value="admin"' in admin.get(PAGE).get_data(as_text=True)
    token = _token(form_post(admin, PAGE, data={"scopes": "admin"}))
    assert ApiClient(app, token).get("/streams").status_code == 200
    [key] = _keys()
    assert key.scopes == ["admin"] and key.stream_ids is None and key.expires_at is None


def test_admin_lists_everyones_keys_revokes_any_and_makes_one_for_a_user(db_app):
    admin = _admin(db_app)
    with db_app.app_context():
        porch, garden = add_stream("Porch"), add_stream("Garden")
    vera = make_user("vera")
    with database.connection_context():
        StreamAccess.create(user=vera, stream=porch)
    vera_token = make_key(vera, "read", name="vera script")
    make_key(make_user("bob", "admin"), "metrics", name="prometheus")

    page = admin.get(ADMIN_PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    labelled(html)
    assert "vera script" in html and "prometheus" in html and vera_token not in html
    assert '<td data-label="Owner">vera' in html and '<td data-label="Owner">bob' in html
    filtered = admin.get(ADMIN_PAGE, query_string={"user": str(vera.id)}).get_data(as_text=True)
    assert "vera script" in filtered and "prometheus" not in filtered
    assert "prometheus" not in admin.get(ADMIN_PAGE, query_string={"state": "revoked"}).get_data(
        as_text=True
    )
    assert "/admin/api-keys/" in admin.get("/admin/").get_data(as_text=True)

    # A viewer's key limited to a stream they cannot see, or with the admin scope: refused.
    for data, message in (
        ({"user": str(vera.id), "scopes": "read", "stream_ids": str(garden.id)}, "cannot see"),
        ({"user": str(vera.id), "scopes": "admin"}, "admin or metrics scope"),
        ({"user": str(2**63), "scopes": "read"}, "Choose an active user"),
        ({"user": "٣", "scopes": "read"}, "Choose an active user"),
    ):
        refused = form_post(admin, ADMIN_PAGE, data=data)
        assert refused.status_code == 422 and message in refused.get_data(as_text=True)
    assert len(_keys()) == 2

    made = form_post(
        admin,
        ADMIN_PAGE,
        data={"user": str(vera.id), "scopes": "read", "stream_ids": str(porch.id), "name": "ha"},
    )
    assert made.status_code == 200
    token = _token(made)
    assert "API key of vera" in made.get_data(as_text=True)
    assert [s["name"] for s in ApiClient(db_app, token).get("/streams").json["items"]] == ["Porch"]
    with database.connection_context():
        key = ApiKey.get(ApiKey.name == "ha")
        entry = AuditLog.get(
            AuditLog.action == "api_key.create", AuditLog.target == f"api_key:{key.id}"
        )
        assert entry.user.username == "alice" and entry.detail["owner"] == "vera"
        vera_key = ApiKey.get(ApiKey.name == "vera script")

    assert admin.get(f"/admin/api-keys/{vera_key.id}/revoke").status_code == 200
    assert form_post(admin, ADMIN_PAGE, f"/admin/api-keys/{vera_key.id}/revoke").status_code == 302
    assert ApiClient(db_app, vera_token).get("/streams").status_code == 401
    assert admin.get(f"/admin/api-keys/{2**63}/revoke").status_code == 404

    # Viewers do not reach the admin page, nor revoke through it.
    viewer = _signed_in(db_app, "vera")
    assert viewer.get(ADMIN_PAGE).status_code == 403
    token_ = csrf_from(viewer.get(PAGE).get_data(as_text=True))
    assert (
        viewer.post(f"/admin/api-keys/{key.id}/revoke", data={"csrf_token": token_}).status_code
        == 403
    )


def test_deactivating_the_user_in_admin_users_ends_their_key(db_app):
    admin = _admin(db_app)
    vera = make_user("vera")
    api = ApiClient(db_app, make_key(vera, "read"))
    assert api.get("/streams").status_code == 200
    detail = f"/admin/users/{vera.id}"
    assert form_post(admin, detail, f"{detail}/deactivate").status_code == 302
    refused = api.get("/streams")
    assert refused.status_code == 401 and refused.mimetype == "application/problem+json"
    assert "user deactivated" in admin.get(ADMIN_PAGE).get_data(as_text=True)
    # Reactivated, the key works again (it was not revoked).
    assert form_post(admin, detail, f"{detail}/reactivate").status_code == 302
    assert api.get("/streams").status_code == 200


def test_the_rate_limit_is_per_key(app_factory):
    app = app_factory(GLIMPSER_API_RATE_LIMIT="3 per minute")
    alice = make_user("alice", "admin")
    first, second = make_key(alice, "read"), make_key(alice, "read")
    client = app.test_client()
    for _ in range(3):
        assert client.get("/api/v1/streams", headers=bearer(first)).status_code == 200
    over = client.get("/api/v1/streams", headers=bearer(first))
    assert over.status_code == 429
    assert over.mimetype == "application/problem+json"
    assert over.json["status"] == 429
    assert int(over.headers["Retry-After"]) > 0
    assert client.get("/api/v1/streams", headers=bearer(second)).status_code == 200


def test_keys_of_a_user_who_is_deleted_go_with_them(app):
    admin = _admin(app)
    vera = make_user("vera")
    make_key(vera, "read")
    assert form_post(admin, f"/admin/users/{vera.id}/delete").status_code == 302
    assert not _keys()
    with database.connection_context():
        assert not User.select().where(User.username == "vera").exists()
