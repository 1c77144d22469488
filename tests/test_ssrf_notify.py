"""Notification senders through the SSRF guard, end to end: a Web Push endpoint (supplied by
any signed-in browser) that redirects to a refused address reaches nothing there, and a refused
connection is a final failure, not one retried."""

from __future__ import annotations

import pytest

from glimpser.db import database
from glimpser.models import Event, NotificationChannel, PushSubscription, User
from tests.helpers import jobs_configured, setup_admin
from tests.notify.push_service import Subscriber
from tests.notify.test_webpush import SUBJECT, deliver, subscribe
from tests.test_ssrf_guard import DENIED_IP, Peer, allowed, rebinding  # noqa: F401 - fixtures


@pytest.fixture
def push_app(app_factory):
    app = app_factory(
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_SOURCE_DENY_CIDRS=f"{DENIED_IP}/32",
        GLIMPSER_VAPID_SUBJECT=SUBJECT,
    )
    with jobs_configured(app):
        yield app


def test_a_push_endpoint_redirecting_to_a_refused_address_reaches_nothing(push_app):
    allowed, denied = Peer("127.0.0.1"), Peer(DENIED_IP)  # noqa: F811 - not the fixture
    try:
        client = push_app.test_client()
        setup_admin(client)
        allowed.routes["/push/admin"] = (307, {"Location": f"{denied.url}/push/admin"}, b"")
        denied.routes["/push/admin"] = (201, {}, b"")
        subscription = Subscriber("/push/admin").subscription(allowed.url)
        assert subscribe(client, subscription).status_code == 201
        with database.connection_context():
            channel = NotificationChannel.create(name="Browsers", kind="webpush", config={})
            event = Event.create(stream=None, kind="test", severity="high", title="Hello")
        delivery = deliver(push_app, event, channel)
        assert [path for path, _ in allowed.requests] == ["/push/admin"]
        assert denied.requests == []
        assert (delivery.status, delivery.attempts) == ("failed", 1)  # a refusal is final
        assert "0 of 1" in delivery.error
        assert f"refused to connect to {DENIED_IP}" in delivery.error
    finally:
        allowed.stop()
        denied.stop()


def test_a_webhook_refused_by_the_guard_fails_at_once_with_the_reason(
    push_app,
    rebinding,  # noqa: F811 - the fixture imported above
):
    # The name passes the check before sending, then rebinds to the denied address: the guarded
    # session refuses the connection. A refusal is final: retrying would be refused again.
    name, other = rebinding
    other.routes["/hook"] = (204, {}, b"")
    with database.connection_context():
        channel = NotificationChannel.create(
            name="Hook", kind="webhook", config={"url": f"http://{name}:{other.port}/hook"}
        )
        event = Event.create(stream=None, kind="test", severity="high", title="Hello")
    delivery = deliver(push_app, event, channel)
    assert other.requests == []
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert f"refused to connect to {name} ({DENIED_IP})" in delivery.error


DENIED_PUBLIC = "8.8.8.0"  # public: only the deny setting refuses it (literal, never resolved)


@pytest.fixture
def denying_push_app(app_factory):
    """A public network in GLIMPSER_SOURCE_DENY_CIDRS (a documentation range stands in)."""
    app = app_factory(
        GLIMPSER_SOURCE_DENY_CIDRS=f"{DENIED_PUBLIC}/24",
        GLIMPSER_VAPID_SUBJECT=SUBJECT,
    )
    with jobs_configured(app):
        yield app


def test_a_push_endpoint_in_a_denied_network_is_refused_when_subscribing(denying_push_app):
    client = denying_push_app.test_client()
    setup_admin(client)
    subscription = Subscriber("/push/admin").subscription("https://8.8.8.8")
    answer = subscribe(client, subscription)
    assert answer.status_code == 422
    assert f"denied network ({DENIED_PUBLIC}/24)" in answer.get_json()["error"]
    with database.connection_context():
        assert PushSubscription.select().count() == 0


def test_a_stored_push_endpoint_in_a_denied_network_is_not_sent_to(denying_push_app):
    # Stored before the network was denied: the send checks it again and refuses for good.
    client = denying_push_app.test_client()
    setup_admin(client)
    keys = Subscriber("/push/admin").subscription("https://8.8.8.8")["keys"]
    with database.connection_context():
        admin = User.get(User.role == "admin")
        PushSubscription.create(
            user=admin,
            endpoint="https://8.8.8.8/push/admin",
            p256dh=keys["p256dh"],
            auth=keys["auth"],
        )
        channel = NotificationChannel.create(name="Browsers", kind="webpush", config={})
        event = Event.create(stream=None, kind="test", severity="high", title="Hello")
    delivery = deliver(denying_push_app, event, channel)
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert f"denied network ({DENIED_PUBLIC}/24)" in delivery.error
