"""Signed-in sessions against a real Redis: the registry (glimpser.auth.sessions), Profile →
password and sessions, Admin → Sessions, lifetimes, and a 503 while Redis is stopped.

Each browser is a test client with its own cookie jar; a session that was ended must no
longer work in the client that held it.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta

import pytest

from glimpser import runtime_settings, times
from glimpser.auth import sessions as registry
from glimpser.auth.passwords import verify_password
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import AuditLog, Setting, User
from tests.faults_support import RestartableRedis
from tests.helpers import PASSWORD, csrf_from, form_post, login, setup_admin

NEW_PASSWORD = "a new and longer passphrase 42"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
HANDLE = re.compile(r'name="session" value="([0-9a-f]+)"')


def browser(app, user_agent: str = FIREFOX, address: str = "127.0.0.1"):
    client = app.test_client()
    client.environ_base.update({"HTTP_USER_AGENT": user_agent, "REMOTE_ADDR": address})
    return client


def signed_in(client) -> bool:
    """True when the client's session still works (the dashboard, not the sign-in page)."""
    return client.get("/").status_code == 200


def sid_of(client) -> str:
    return client.get_cookie("glimpser_session").value


def users_sessions(app, username: str) -> dict[str, dict]:
    with database.connection_context():
        user = User.get(User.username == username)
    raw = app.extensions["glimpser.redis"].hgetall(f"{registry.REGISTRY_PREFIX}{user.id}")
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def session_key_exists(app, sid: str) -> bool:
    return bool(app.extensions["glimpser.redis"].exists(f"glimpser:session:{sid}"))


def audit_rows(action: str) -> list[AuditLog]:
    with database.connection_context():
        return list(AuditLog.select().where(AuditLog.action == action).order_by(AuditLog.id))


@pytest.fixture
def people(app):
    """alice (admin) on Firefox and on an iPhone, bob (viewer) on Firefox."""
    alice = browser(app)
    setup_admin(alice, "alice", PASSWORD)
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    phone = browser(app, IPHONE, "192.0.2.7")
    assert login(phone, "alice", PASSWORD).status_code == 302
    bob = browser(app, FIREFOX, "198.51.100.9")
    assert login(bob, "bob", PASSWORD).status_code == 302
    return {"alice": alice, "phone": phone, "bob": bob}


def test_device_labels():
    assert registry.device_label(FIREFOX) == "Firefox on Linux"
    assert registry.device_label(IPHONE) == "Safari on iOS"
    chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126 Safari/537"
    assert registry.device_label(chrome) == "Chrome on Windows"
    assert registry.device_label(chrome + " Edg/126.0") == "Edge on Windows"
    assert registry.device_label("") == "Unknown browser"
    assert registry.device_label("curl/8.5.0") == "curl"


def test_profile_lists_own_sessions_without_their_ids(app, people):
    alice, phone = people["alice"], people["phone"]
    page = alice.get("/profile/").get_data(as_text=True)
    assert "Firefox on Linux" in page and "Safari on iOS" in page and "192.0.2.7" in page
    assert page.count("<mark>this browser</mark>") == 1
    assert "198.51.100.9" not in page  # bob's session is not alice's business here
    for client in (alice, phone, people["bob"]):
        assert sid_of(client) not in page
    # One handle (the phone's) to end; this browser has "Sign out" instead.
    assert len(HANDLE.findall(page)) == 1
    record = users_sessions(app, "alice")[sid_of(phone)]
    assert record["device"] == "Safari on iOS" and record["ua"] == IPHONE
    assert record["ip"] == "192.0.2.7" and record["epoch"] == 0


def test_ending_a_session_from_the_profile_signs_that_browser_out(app, people):
    alice, phone = people["alice"], people["phone"]
    page = alice.get("/profile/").get_data(as_text=True)
    (handle,) = HANDLE.findall(page)
    ended = form_post(alice, "/profile/", "/profile/sessions/end", data={"session": handle})
    assert ended.status_code == 302
    assert not signed_in(phone)  # its next request: the sign-in page
    assert phone.get("/").headers["Location"].startswith("/login")
    assert signed_in(alice) and signed_in(people["bob"])
    assert "Safari on iOS" not in alice.get("/profile/").get_data(as_text=True)
    (row,) = audit_rows("session.end")
    assert row.detail["device"] == "Safari on iOS" and row.detail["address"] == "192.0.2.7"
    assert handle not in json.dumps(row.detail)
    # The same handle again: gone.
    again = form_post(alice, "/profile/", "/profile/sessions/end", data={"session": handle})
    assert again.status_code == 404


def test_another_users_handle_and_bad_input_end_nothing(app, people):
    alice, bob, phone = people["alice"], people["bob"], people["phone"]
    (alices_phone,) = HANDLE.findall(alice.get("/profile/").get_data(as_text=True))
    for value, status in (
        (alices_phone, 404),  # alice's session, asked for by bob
        ("", 400),
        ("x" * 10_000, 400),
        ("²", 404),
        (str(2**63), 404),
    ):
        response = form_post(bob, "/profile/", "/profile/sessions/end", data={"session": value})
        assert response.status_code == status, value
    token = csrf_from(bob.get("/profile/").get_data(as_text=True))
    missing_csrf = bob.post("/profile/sessions/end", data={"session": alices_phone})
    assert missing_csrf.status_code == 400
    assert bob.post("/profile/sessions/end-others").status_code == 400
    wrong_token = bob.post(
        "/profile/sessions/end", data={"session": alices_phone, "csrf_token": token[:-2] + "zz"}
    )
    assert wrong_token.status_code == 400
    assert signed_in(phone) and signed_in(alice) and signed_in(bob)
    assert audit_rows("session.end") == []


def test_sign_out_all_others_keeps_this_browser(app, people):
    alice, phone = people["alice"], people["phone"]
    third = browser(app, IPHONE, "192.0.2.8")
    login(third, "alice", PASSWORD)
    before = sid_of(alice)
    response = form_post(alice, "/profile/", "/profile/sessions/end-others")
    assert response.status_code == 302
    assert signed_in(alice) and not signed_in(phone) and not signed_in(third)
    assert sid_of(alice) != before and not session_key_exists(app, before)
    assert list(users_sessions(app, "alice")) == [sid_of(alice)]
    assert signed_in(people["bob"])
    page = alice.get("/profile/").get_data(as_text=True)
    assert page.count("<mark>this browser</mark>") == 1 and "192.0.2.8" not in page


def test_password_change_keeps_this_session_and_ends_the_others(db_app):
    alice = browser(db_app)
    setup_admin(alice, "alice", PASSWORD)
    phone = browser(db_app, IPHONE, "192.0.2.7")
    login(phone, "alice", PASSWORD)
    old_sid = sid_of(alice)
    started = users_sessions(db_app, "alice")[old_sid]["started"]

    def change(current: str, new: str, confirm: str | None = None):
        return form_post(
            alice,
            "/profile/",
            "/profile/password",
            data={"current_password": current, "new_password": new, "confirm": confirm or new},
        )

    # Refused, nothing changed: wrong current password, too short, not repeated, too long.
    assert change("not my password at all", NEW_PASSWORD).status_code == 400
    assert change(PASSWORD, "short").status_code == 400
    assert change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "!").status_code == 400
    assert change(PASSWORD, "y" * 5000).status_code == 400
    with database.connection_context():
        user = User.get(User.username == "alice")
        assert verify_password(user.password_hash, PASSWORD) and user.session_epoch == 0
    assert audit_rows("user.password_change") == []
    assert signed_in(phone)
    page = change("not my password at all", NEW_PASSWORD).get_data(as_text=True)
    assert "That is not your current password." in page

    assert change(PASSWORD, NEW_PASSWORD).status_code == 302
    assert signed_in(alice) and not signed_in(phone)
    assert sid_of(alice) != old_sid and not session_key_exists(db_app, old_sid)
    entries = users_sessions(db_app, "alice")
    assert list(entries) == [sid_of(alice)]
    assert entries[sid_of(alice)]["epoch"] == 1 and entries[sid_of(alice)]["started"] == started
    (row,) = audit_rows("user.password_change")
    assert PASSWORD not in json.dumps(row.detail) and NEW_PASSWORD not in json.dumps(row.detail)
    with database.connection_context():
        assert verify_password(User.get(User.username == "alice").password_hash, NEW_PASSWORD)
    again = browser(db_app)
    assert login(again, "alice", PASSWORD).status_code == 401
    assert login(again, "alice", NEW_PASSWORD).status_code == 302


def test_admin_sees_everyones_sessions_and_filters_by_user(app, people):
    alice = people["alice"]
    page = alice.get("/admin/sessions/").get_data(as_text=True)
    assert "198.51.100.9" in page and "192.0.2.7" in page
    for client in people.values():
        assert sid_of(client) not in page
    with database.connection_context():
        bob_id = User.get(User.username == "bob").id
    only_bob = alice.get(f"/admin/sessions/?user={bob_id}").get_data(as_text=True)
    assert "198.51.100.9" in only_bob and "192.0.2.7" not in only_bob
    for value, status in (("²", 400), (str(2**63), 400), ("-1", 400), ("999", 404)):
        assert alice.get(f"/admin/sessions/?user={value}").status_code == status, value
    assert people["bob"].get("/admin/sessions/").status_code == 403
    viewer_post = form_post(
        people["bob"], "/profile/", "/admin/sessions/end-all", data={"user": str(bob_id)}
    )
    assert viewer_post.status_code == 403 and signed_in(people["bob"])


def test_admin_ends_one_session_and_all_of_a_users(app, people):
    alice, bob = people["alice"], people["bob"]
    bob_laptop = browser(app, IPHONE, "198.51.100.10")
    login(bob_laptop, "bob", PASSWORD)
    with database.connection_context():
        bob_id = User.get(User.username == "bob").id
        alice_id = User.get(User.username == "alice").id
    page = alice.get(f"/admin/sessions/?user={bob_id}").get_data(as_text=True)
    assert len(HANDLE.findall(page)) == 2

    # Bad input first: nothing ends.
    handle = HANDLE.findall(page)[0]
    for data, status in (
        ({"user": "²", "session": handle}, 400),
        ({"user": str(2**63), "session": handle}, 400),
        ({"user": "999", "session": handle}, 404),
        ({"user": str(alice_id), "session": handle}, 404),  # alice's id with bob's handle
        ({"user": str(bob_id), "session": "f" * 32}, 404),
        ({"user": str(bob_id), "session": "x" * 100_000}, 400),
        ({"user": str(bob_id)}, 400),
    ):
        response = form_post(alice, "/admin/sessions/", "/admin/sessions/end", data=data)
        assert response.status_code == status, data
    no_csrf = alice.post("/admin/sessions/end", data={"user": bob_id, "session": handle})
    assert no_csrf.status_code == 400
    assert alice.post("/admin/sessions/end-all", data={"user": bob_id}).status_code == 400
    assert signed_in(bob) and signed_in(bob_laptop) and audit_rows("session.end") == []

    # End the laptop's session only.
    (laptop,) = [
        s
        for s in registry_sessions(app, bob_id)
        if s["ip"] == "198.51.100.10"  # the laptop
    ]
    laptop_handle = laptop["handle"]
    response = form_post(
        alice,
        "/admin/sessions/",
        "/admin/sessions/end",
        data={"user": str(bob_id), "session": laptop_handle, "back_user": "1"},
    )
    assert response.status_code == 302 and response.headers["Location"].endswith(f"?user={bob_id}")
    assert not signed_in(bob_laptop) and signed_in(bob)
    (row,) = audit_rows("session.end")
    assert row.target == f"user:{bob_id}" and row.detail["address"] == "198.51.100.10"
    assert row.detail["device"] == "Safari on iOS" and row.user_id != bob_id

    # End all of bob's: his epoch moves on, every client of his is signed out.
    response = form_post(
        alice, "/admin/sessions/", "/admin/sessions/end-all", data={"user": bob_id}
    )
    assert response.status_code == 302
    assert not signed_in(bob) and signed_in(alice) and signed_in(people["phone"])
    with database.connection_context():
        assert User.get_by_id(bob_id).session_epoch == 1
    assert users_sessions(app, "bob") == {}
    assert audit_rows("session.end")[-1].detail["all"] is True


def registry_sessions(app, user_id: int) -> list[dict]:
    """The registry's entries of a user, with the handle a page would show for each."""
    raw = app.extensions["glimpser.redis"].hgetall(f"{registry.REGISTRY_PREFIX}{user_id}")
    with app.test_request_context():
        return [{**json.loads(v), "handle": registry.handle_of(k.decode())} for k, v in raw.items()]


def test_stale_epoch_and_gone_keys_are_pruned(app, people):
    alice, bob = people["alice"], people["bob"]
    bob_sid, phone_sid = sid_of(bob), sid_of(people["phone"])
    # Another part (Admin → Users) ends all of bob's sessions by bumping his epoch only.
    with database.connection_context():
        User.update(session_epoch=User.session_epoch + 1).where(User.username == "bob").execute()
    # The phone's session expired (its key is gone) without anyone telling the registry.
    app.extensions["glimpser.redis"].delete(f"glimpser:session:{phone_sid}")
    page = alice.get("/admin/sessions/").get_data(as_text=True)
    assert "198.51.100.9" not in page and "192.0.2.7" not in page
    assert users_sessions(app, "bob") == {} and not session_key_exists(app, bob_sid)
    assert list(users_sessions(app, "alice")) == [sid_of(alice)]
    assert not signed_in(bob)


def test_sign_out_removes_the_session_from_the_registry(app, people):
    phone = people["phone"]
    sid = sid_of(phone)
    assert sid in users_sessions(app, "alice")
    assert form_post(phone, "/", "/logout").status_code == 302
    assert sid not in users_sessions(app, "alice") and not session_key_exists(app, sid)


def test_last_seen_is_written_at_most_once_a_minute(app, people):
    phone = people["phone"]
    sid = sid_of(phone)
    first = users_sessions(app, "alice")[sid]["seen"]
    # Requests within the minute: "last seen" stays (no registry write per request).
    past = times.isoformat(times.utcnow() - timedelta(hours=2))
    _rewrite_record(app, "alice", sid, seen=past)
    for _ in range(3):
        assert signed_in(phone)
    assert users_sessions(app, "alice")[sid]["seen"] == past != first
    # A minute later (the session says when it last wrote), the next request writes it.
    _age_seen(app, sid)
    assert signed_in(phone)
    seen = times.parse(users_sessions(app, "alice")[sid]["seen"])
    assert seen > times.parse(past) + timedelta(hours=1)


def _age_seen(app, sid: str) -> None:
    """Make the session say it last wrote "last seen" over a minute ago."""
    client, interface = app.extensions["glimpser.redis"], app.session_interface
    key = f"glimpser:session:{sid}"
    data = interface.serializer.decode(client.get(key))
    data[registry.SEEN_KEY] = times.isoformat(times.utcnow() - timedelta(seconds=61))
    client.set(key, interface.serializer.encode(data), keepttl=True)


def test_a_session_the_registry_does_not_know_is_recorded_on_its_next_visit(app, people):
    phone = people["phone"]
    sid = sid_of(phone)
    with database.connection_context():
        alice_id = User.get(User.username == "alice").id
    # As after an upgrade: a live session that was signed in before the registry existed.
    app.extensions["glimpser.redis"].hdel(f"{registry.REGISTRY_PREFIX}{alice_id}", sid)
    _age_seen(app, sid)
    assert signed_in(phone)
    record = users_sessions(app, "alice")[sid]
    assert record["device"] == "Safari on iOS" and record["started"] is None
    assert record["epoch"] == 0
    page = people["alice"].get("/profile/").get_data(as_text=True)
    assert "Safari on iOS" in page and "unknown" in page


def _rewrite_record(app, username: str, sid: str, **fields) -> None:
    with database.connection_context():
        user_id = User.get(User.username == username).id
    key = f"{registry.REGISTRY_PREFIX}{user_id}"
    client = app.extensions["glimpser.redis"]
    record = json.loads(client.hget(key, sid))
    client.hset(key, sid, json.dumps({**record, **fields}))


def test_concurrent_sign_ins_are_all_recorded(app):
    setup_admin(browser(app), "alice", PASSWORD)
    clients = [browser(app, FIREFOX, f"192.0.2.{n}") for n in range(1, 9)]
    pages = [c.get("/login") for c in clients]  # each has its own CSRF token first
    tokens = [csrf_from(p.get_data(as_text=True)) for p in pages]
    results: list[int] = []

    def sign_in(client, token: str) -> None:  # noqa: ANN001
        response = client.post(
            "/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD}
        )
        results.append(response.status_code)

    threads = [
        threading.Thread(target=sign_in, args=ct) for ct in zip(clients, tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [302] * len(clients)
    entries = users_sessions(app, "alice")
    for client in clients:
        assert sid_of(client) in entries and signed_in(client)
    assert {e["ip"] for e in entries.values()} >= {f"192.0.2.{n}" for n in range(1, 9)}


def test_signed_in_sessions_live_as_long_as_the_setting_says(app):
    alice = browser(app)
    setup_admin(alice, "alice", PASSWORD)
    anonymous = browser(app)
    anonymous.get("/login")  # stores the sign-in form's CSRF token
    client = app.extensions["glimpser.redis"]
    assert 0 < client.ttl(f"glimpser:session:{sid_of(anonymous)}") <= 3600
    assert client.ttl(f"glimpser:session:{sid_of(alice)}") > 13 * 86400
    # Changed at run time (as Admin → Settings stores and announces it): applies from the next
    # save of each session.
    with database.connection_context():
        Setting.create(key="settings.session_lifetime_days", value=2)
    runtime_settings.publish(client)
    assert signed_in(alice)
    assert 86400 < client.ttl(f"glimpser:session:{sid_of(alice)}") <= 2 * 86400
    cookie = alice.get_cookie("glimpser_session")
    assert cookie.expires is not None
    assert cookie.expires <= times.utcnow() + timedelta(days=2, minutes=1)


@pytest.mark.slow
def test_redis_stopped_answers_503_and_the_session_survives(app_factory, tmp_path):
    redis = RestartableRedis(tmp_path / "redis", persist=True)
    try:
        app = app_factory(GLIMPSER_REDIS_URL=redis.url)
        alice = browser(app)
        setup_admin(alice, "alice", PASSWORD)
        assert signed_in(alice)
        redis.stop()
        for path, accept in (
            ("/", "text/html"),
            ("/profile/", "text/html"),
            ("/", "application/json"),
        ):
            response = alice.get(path, headers={"Accept": accept})
            assert response.status_code == 503, (path, response.status_code)
            assert response.headers["Retry-After"] == str(registry.STORE_RETRY_AFTER)
            assert response.headers.get("Set-Cookie") is None
        assert alice.get("/", headers={"Accept": "application/json"}).json["status"] == 503
        # Without a cookie the session is only written at the end: that fails the same way.
        newcomer = browser(app).get("/login")
        assert newcomer.status_code == 503 and newcomer.headers.get("Set-Cookie") is None
        redis.start()
        assert signed_in(alice)  # the same cookie, the same session: still signed in
    finally:
        redis.stop()
