"""First-run setup, login, logout, sessions and their cookies, rate limits, CSRF."""

from __future__ import annotations

import pytest

from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import AuditLog, User
from tests.helpers import (
    PASSWORD,
    csrf_from,
    form_post,
    login,
    logout,
    setup_admin,
    signed_in_admin,
)


def session_cookie(client):
    return client.get_cookie("glimpser_session")


def test_fresh_install_sends_everyone_to_setup(db_app):
    client = db_app.test_client()
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/setup")
    assert client.get("/login").headers["Location"] == "/setup"


def test_setup_creates_the_first_admin_and_signs_in(db_app):
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    with database.connection_context():
        user = User.get(User.username == "alice")
        assert user.role == "admin"
        assert user.password_hash.startswith("$argon2id$")
        assert AuditLog.select().where(AuditLog.action == "user.create").count() == 1
    page = client.get("/")
    assert page.status_code == 200
    assert "Dashboard" in page.get_data(as_text=True)


def test_setup_is_refused_for_good_once_a_user_exists(db_app):
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    assert client.get("/setup").status_code == 404
    with database.connection_context():
        User.update(active=False).execute()  # even with nobody left active
    other = db_app.test_client()
    assert other.get("/setup").status_code == 404
    token = csrf_from(other.get("/login").get_data(as_text=True))
    response = other.post(
        "/setup",
        data={
            "csrf_token": token,
            "username": "mallory",
            "password": PASSWORD,
            "confirm": PASSWORD,
        },
    )
    assert response.status_code == 404
    with database.connection_context():
        assert not User.select().where(User.username == "mallory").exists()


def test_setup_validates_input_inline(app):
    client = app.test_client()
    response = form_post(
        client,
        "/setup",
        data={"username": "bad name!", "password": "short", "confirm": "different"},
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "at least 12 characters" in html
    assert "Username must be" in html
    assert "Passwords do not match." in html
    with database.connection_context():
        assert User.select().count() == 0


def test_login_and_wrong_password(db_app):
    setup_admin(db_app.test_client(), "alice", PASSWORD)
    client = db_app.test_client()
    bad = login(client, "alice", "wrong password")
    assert bad.status_code == 401
    assert "Wrong username or password." in bad.get_data(as_text=True)
    assert client.get("/").status_code == 302
    good = login(client, "alice", PASSWORD)
    assert good.status_code == 302 and good.headers["Location"] == "/"
    assert client.get("/").status_code == 200


def test_login_redirects_only_to_local_paths(app):
    setup_admin(app.test_client(), "alice", PASSWORD)
    client = app.test_client()
    for target, expected in [
        ("/admin/", "/admin/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
    ]:
        client.get("/login")
        response = form_post(
            client, f"/login?next={target}", data={"username": "alice", "password": PASSWORD}
        )
        assert response.headers["Location"] == expected
        logout(client)


def test_session_cookie_is_opaque_httponly_lax_and_secure_by_default(app_factory, redis_client):
    app = app_factory()  # GLIMPSER_SECURE_COOKIES unset: Secure is on
    client = app.test_client()
    response = setup_admin(client, "alice", PASSWORD)
    header = next(
        h for h in response.headers.getlist("Set-Cookie") if h.startswith("glimpser_session=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"httponly", "secure", "samesite"} <= attributes
    assert "SameSite=Lax" in header
    sid = header.split(";")[0].split("=", 1)[1]
    assert "alice" not in sid and "_user_id" not in sid
    # The session lives in Redis under that id, not in the cookie.
    assert redis_client.exists(f"glimpser:session:{sid}")


def test_secure_flag_can_be_turned_off_for_plain_http(app_factory):
    app = app_factory(GLIMPSER_SECURE_COOKIES="0")
    response = setup_admin(app.test_client(), "alice", PASSWORD)
    header = next(
        h for h in response.headers.getlist("Set-Cookie") if h.startswith("glimpser_session=")
    )
    assert "Secure" not in header and "HttpOnly" in header


def test_session_id_is_rotated_at_login(app, redis_client):
    setup_admin(app.test_client(), "alice", PASSWORD)
    client = app.test_client()
    client.get("/login")
    before = session_cookie(client).value
    login(client, "alice", PASSWORD)
    after = session_cookie(client).value
    assert before != after
    assert not redis_client.exists(f"glimpser:session:{before}")


def test_old_cookie_is_dead_after_logout(app, redis_client):
    client = signed_in_admin(app)
    old = session_cookie(client).value
    assert logout(client).status_code == 302
    assert not redis_client.exists(f"glimpser:session:{old}")
    replay = app.test_client()
    replay.set_cookie("glimpser_session", old)
    assert replay.get("/").status_code == 302
    assert replay.get("/admin/").status_code == 302


def test_deactivating_a_user_ends_their_sessions(db_app):
    setup_admin(db_app.test_client(), "alice", PASSWORD)
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    bob = db_app.test_client()
    login(bob, "bob", PASSWORD)
    assert bob.get("/").status_code == 200
    with database.connection_context():
        User.update(active=False).where(User.username == "bob").execute()
    assert bob.get("/").status_code == 302
    assert login(db_app.test_client(), "bob", PASSWORD).status_code == 401


def test_bumping_the_session_epoch_ends_sessions(app):
    client = signed_in_admin(app)
    with database.connection_context():
        User.update(session_epoch=User.session_epoch + 1).execute()
    assert client.get("/").status_code == 302


def test_failed_logins_are_rate_limited_per_ip(app_factory):
    app = app_factory(GLIMPSER_LOGIN_RATE_LIMIT="3 per minute")
    setup_admin(app.test_client(), "alice", PASSWORD)
    client = app.test_client()
    codes = [login(client, f"user{i}", "nope").status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]
    page = login(client, "alice", PASSWORD)
    assert page.status_code == 429
    assert "Too many attempts" in page.get_data(as_text=True)


def test_failed_logins_are_rate_limited_per_username(app_factory):
    # The backstop: per username from all addresses (tests/test_webedge_auth.py has more).
    app = app_factory(GLIMPSER_LOGIN_USER_RATE_LIMIT="3 per minute")
    setup_admin(app.test_client(), "alice", PASSWORD)
    codes = []
    for i in range(4):  # four different addresses, one username
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"10.0.0.{i + 1}"
        codes.append(login(client, "alice", "wrong").status_code)
    assert codes == [401, 401, 401, 429]


def test_successful_logins_do_not_count_against_the_limit(app_factory):
    app = app_factory(GLIMPSER_LOGIN_RATE_LIMIT="2 per minute")
    setup_admin(app.test_client(), "alice", PASSWORD)
    client = app.test_client()
    for _ in range(4):
        assert login(client, "alice", PASSWORD).status_code == 302
        logout(client)


def test_post_without_csrf_token_is_refused(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    response = client.post("/logout")
    assert response.status_code == 400
    assert "form expired" in response.get_data(as_text=True)
    assert client.get("/").status_code == 200  # still signed in


def test_htmx_requests_send_the_token_in_a_header(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    page = client.get("/").get_data(as_text=True)
    assert "hx-headers=" in page
    token = csrf_from(page)
    response = client.post("/logout", headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert response.status_code == 302


@pytest.mark.parametrize("password", ["short", "x" * 1025])
def test_create_user_refuses_bad_passwords(app, password):
    from glimpser.auth.users import UserError

    with database.connection_context(), pytest.raises(UserError):
        create_user("carol", password, "viewer")


def test_behind_a_trusted_proxy_limits_apply_to_the_real_client(app_factory):
    app = app_factory(GLIMPSER_LOGIN_RATE_LIMIT="2 per minute", GLIMPSER_TRUSTED_PROXIES="1")
    setup_admin(app.test_client(), "alice", PASSWORD)
    codes = []
    for client_ip in ("203.0.113.1", "203.0.113.1", "203.0.113.1", "203.0.113.2"):
        client = app.test_client()
        client.environ_base["HTTP_X_FORWARDED_FOR"] = client_ip
        codes.append(login(client, f"user-{client_ip}-{len(codes)}", "nope").status_code)
    # The third attempt from one client is limited; another client behind the same proxy is not.
    assert codes == [401, 401, 429, 401]


def test_without_trusted_proxies_forwarded_headers_are_ignored(app_factory):
    app = app_factory(GLIMPSER_LOGIN_RATE_LIMIT="2 per minute")
    setup_admin(app.test_client(), "alice", PASSWORD)
    codes = []
    for i in range(3):  # a client cannot dodge the limit by inventing X-Forwarded-For
        client = app.test_client()
        client.environ_base["HTTP_X_FORWARDED_FOR"] = f"198.51.100.{i}"
        codes.append(login(client, f"user{i}", "nope").status_code)
    assert codes == [401, 401, 429]
