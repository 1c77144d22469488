"""The sign-in edge: lock-outs, redirects after sign-in and acknowledge, anonymous sessions,
NUL bytes, and what /readyz tells whom."""

from __future__ import annotations

import pytest

from glimpser.auth.sessions import ANONYMOUS_LIFETIME
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import Event
from tests.helpers import (
    PASSWORD,
    add_stream,
    csrf_from,
    form_post,
    login,
    logout,
    setup_admin,
    signed_in_admin,
)


def client_at(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


# --- lock-outs ------------------------------------------------------------------------------


def test_an_attackers_address_does_not_lock_the_user_out_elsewhere(app_factory):
    app = app_factory(GLIMPSER_LOGIN_RATE_LIMIT="3 per minute")
    setup_admin(app.test_client(), "alice", PASSWORD)
    attacker = client_at(app, "203.0.113.66")
    codes = [login(attacker, "alice", "guess").status_code for _ in range(6)]
    assert codes == [401, 401, 401, 429, 429, 429]
    # The attacker is locked out, even with the right password...
    assert login(attacker, "alice", PASSWORD).status_code == 429
    # ... the user, from their own address, is not.
    assert login(client_at(app, "198.51.100.7"), "alice", PASSWORD).status_code == 302


def test_the_per_username_backstop_holds_across_addresses(app_factory):
    app = app_factory(
        GLIMPSER_LOGIN_RATE_LIMIT="2 per minute", GLIMPSER_LOGIN_USER_RATE_LIMIT="5 per hour"
    )
    setup_admin(app.test_client(), "alice", PASSWORD)
    codes = []
    for i in range(8):  # a new address for every guess: the per-address limit never bites
        codes.append(login(client_at(app, f"10.1.0.{i + 1}"), "Alice ", "guess").status_code)
    assert codes == [401] * 5 + [429] * 3
    # Another username is not affected.
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    assert login(client_at(app, "10.1.0.99"), "bob", PASSWORD).status_code == 302


@pytest.mark.parametrize("which", ["address", "username"])
def test_a_429_says_when_to_retry(app_factory, which):
    app = app_factory(
        GLIMPSER_LOGIN_RATE_LIMIT="2 per minute" if which == "address" else "50 per minute",
        GLIMPSER_LOGIN_USER_RATE_LIMIT="2 per hour" if which == "username" else "50 per hour",
    )
    setup_admin(app.test_client(), "alice", PASSWORD)
    responses = [login(client_at(app, "10.2.0.1"), "alice", "guess") for _ in range(3)]
    assert [r.status_code for r in responses] == [401, 401, 429]
    retry_after = responses[-1].headers["Retry-After"]
    window = 60 if which == "address" else 3600
    assert retry_after.isdigit() and 0 < int(retry_after) <= window
    assert "Too many attempts" in responses[-1].get_data(as_text=True)


# --- next -----------------------------------------------------------------------------------

# As the view reads them (query strings and forms decoded).
HOSTILE_NEXT = [
    "/\t/evil.example/",
    "/\n/evil.example/",
    "/\r\n/evil.example/",
    "\t//evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "/\\/evil.example/",
    "https://evil.example/",
    "HTTPS:evil.example",
    "javascript:alert(1)",
    " /admin/",
    "/\u3000/evil.example/",
    "/\uff0f/evil.example/",  # fullwidth solidus
    "/\u2215evil.example/",  # division slash
    "/\x00/evil.example/",
    "/\x7f/evil.example/",
    "evil.example",
    "/" + "a" * 5000,
]


def _same_site(location: str) -> bool:
    return location.startswith("/") and not location.startswith("//") and "\\" not in location


def _query(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


@pytest.mark.parametrize("target", HOSTILE_NEXT, ids=lambda t: repr(t[:24]))
def test_login_falls_back_to_the_dashboard_for_anything_but_a_local_path(app, target):
    setup_admin(app.test_client(), "alice", PASSWORD)
    client = app.test_client()
    url = f"/login?next={_query(target)}"
    response = form_post(client, url, data={"username": "alice", "password": PASSWORD})
    assert response.status_code in (302, 400), response.status_code
    if response.status_code == 302:
        assert response.headers["Location"] == "/", response.headers["Location"]
        # Signed in already: the GET answers the same way.
        again = client.get(url)
        assert again.status_code == 302 and again.headers["Location"] == "/"


@pytest.mark.parametrize(
    "raw",
    [
        "/%09/evil.example/",
        "%09//evil.example/",
        "/%0d%0a/evil.example/",
        "%2F%2Fevil.example/",
        "/%5Cevil.example/",
        "%5C%5Cevil.example/",
        "/%E3%80%80/evil.example/",
        "/%00/evil",
    ],
)
def test_login_refuses_encoded_forms_sent_as_typed(app, raw):
    """The issue's request exactly: `/login?next=/%09/evil.example/` (and kin), as typed."""
    setup_admin(app.test_client(), "alice", PASSWORD)
    client = app.test_client()
    response = form_post(
        client, f"/login?next={raw}", data={"username": "alice", "password": PASSWORD}
    )
    assert response.status_code in (302, 400)
    if response.status_code == 302:
        assert response.headers["Location"] == "/"
        assert client.get(f"/login?next={raw}").headers["Location"] == "/"


def test_login_still_follows_a_local_next(app):
    setup_admin(app.test_client(), "alice", PASSWORD)
    client = app.test_client()
    target = "/events?stream=1&range=24h"
    response = form_post(
        client, f"/login?next={_query(target)}", data={"username": "alice", "password": PASSWORD}
    )
    assert response.headers["Location"] == target
    assert client.get(f"/login?next={_query('/admin/')}").headers["Location"] == "/admin/"


@pytest.mark.parametrize("target", HOSTILE_NEXT, ids=lambda t: repr(t[:24]))
def test_acknowledge_falls_back_to_the_events_page(app, target):
    client = signed_in_admin(app)
    stream = add_stream("Garden")
    with database.connection_context():
        event = Event.create(stream=stream, kind="motion", title="Motion")
    token = csrf_from(client.get("/events").get_data(as_text=True))
    for url, data in (
        (f"/events/{event.id}/acknowledge", {}),
        ("/events/acknowledge", {"ids": str(event.id)}),
        ("/events/acknowledge", {}),
    ):
        response = client.post(url, data={"csrf_token": token, "next": target, **data})
        assert response.status_code in (302, 400), (url, response.status_code)
        if response.status_code == 302:
            location = response.headers["Location"]
            assert location == "/events", (url, location)
    with database.connection_context():
        assert Event.get_by_id(event.id).acknowledged or "\x00" in target


def test_every_redirect_to_next_is_same_site(app):
    """Whatever the route: the Location header of each answer is a same-site path."""
    client = signed_in_admin(app)
    token = csrf_from(client.get("/").get_data(as_text=True))
    for target in HOSTILE_NEXT:
        for response in (
            client.get(f"/login?next={_query(target)}"),
            client.post("/events/acknowledge", data={"csrf_token": token, "next": target}),
        ):
            if response.status_code in (301, 302, 303, 307, 308):
                assert _same_site(response.headers["Location"]), (target, response.headers)


# --- anonymous sessions ---------------------------------------------------------------------


def test_anonymous_visits_store_only_short_lived_sessions(app, redis_client):
    setup_admin(app.test_client(), "alice", PASSWORD)
    before = set(redis_client.scan_iter("glimpser:session:*"))
    for _ in range(50):
        assert app.test_client().get("/login").status_code == 200
        assert app.test_client().get("/").status_code == 302  # to /login: stores nothing
    new = set(redis_client.scan_iter("glimpser:session:*")) - before
    assert len(new) <= 50
    for key in new:
        assert 0 < redis_client.ttl(key) <= ANONYMOUS_LIFETIME.total_seconds()


def test_login_works_with_csrf_enforced_and_the_session_then_lives_long(app, redis_client):
    setup_admin(app.test_client(), "alice", PASSWORD)
    client = app.test_client()
    refused = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert refused.status_code == 400  # no token: refused
    forged = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    other = forged.post(
        "/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD}
    )
    assert other.status_code == 400  # somebody else's token: refused
    assert login(client, "alice", PASSWORD).status_code == 302
    sid = next(c for c in client._cookies.values() if c.key == "glimpser_session").value
    assert redis_client.ttl(f"glimpser:session:{sid}") > ANONYMOUS_LIFETIME.total_seconds()
    assert client.get("/").status_code == 200
    assert logout(client).status_code == 302


# --- NUL bytes ------------------------------------------------------------------------------


def test_nul_bytes_in_any_field_are_refused(app):
    client = signed_in_admin(app)
    token = csrf_from(client.get("/").get_data(as_text=True))
    assert client.get("/events", query_string={"kind": "mo\x00tion"}).status_code == 400
    response = client.post(
        "/streams/new",
        data={"csrf_token": token, "kind": "http_image", "name": "Gar\x00den"},
    )
    assert response.status_code == 400
    assert "NUL" in response.get_data(as_text=True)
    anonymous = app.test_client()
    page = anonymous.get("/login")
    assert page.status_code == 200
    bad = anonymous.post(
        "/login",
        data={
            "csrf_token": csrf_from(page.get_data(as_text=True)),
            "username": "alice",
            "password": PASSWORD + "\x00",
        },
    )
    assert bad.status_code == 400
