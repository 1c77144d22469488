"""Web Push end to end: subscribe through the profile page, push through a real push service.

The push service (tests/notify/push_service.py) decrypts every payload with the subscription's
own keys (http_ece) and verifies the VAPID JWT, as real push services do.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import (
    Delivery,
    Event,
    NotificationChannel,
    PushSubscription,
    Stream,
    StreamAccess,
)
from glimpser.notify import dispatch, webpush
from glimpser.sources.base import CaptureContext
from tests.helpers import csrf_from, jobs_configured, login, setup_admin
from tests.notify.push_service import PushService

PASSWORD = "correct horse battery"
SUBJECT = "mailto:ops@glimpser.example.org"


@pytest.fixture
def capture_app(app_factory, media_root):
    """conftest's capture_app, with a VAPID subject push services accept."""
    app = app_factory(
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_MEDIA_DIR=str(media_root),
        GLIMPSER_VAPID_SUBJECT=SUBJECT,
    )
    with jobs_configured(app):
        yield app


@pytest.fixture
def push_service():
    service = PushService().start()
    yield service
    service.stop()


@pytest.fixture
def world(capture_app):
    """An admin (signed in on `client`), a viewer granted one of two streams, one event each."""
    client = capture_app.test_client()
    setup_admin(client)
    with database.connection_context():
        seen = Stream.create(name="Gate", kind="http_image", config={})
        hidden = Stream.create(name="Safe", kind="http_image", config={})
        viewer = create_user("vera", PASSWORD, "viewer")
        StreamAccess.create(user=viewer, stream=seen)
        channel = NotificationChannel.create(name="Browsers", kind="webpush", config={})
        events = {
            s.name: Event.create(
                stream=s, kind="motion", severity="high", title=f"Motion at {s.name}"
            )
            for s in (seen, hidden)
        }
    return client, channel, events


def subscribe(client, subscription: dict):
    token = csrf_from(client.get("/profile/").get_data(as_text=True))
    return client.post(
        "/profile/push/subscriptions", json=subscription, headers={"X-CSRFToken": token}
    )


def deliver(app, event: Event, channel: NotificationChannel) -> Delivery:
    connection = app.extensions["glimpser.redis"]
    settings = app.extensions["glimpser.settings"]
    with database.connection_context():
        delivery = Delivery.get_or_none(event=event.id, channel=channel.id) or Delivery.create(
            event=event.id, channel=channel.id
        )
        dispatch.deliver(delivery.id, connection, settings, lambda _id, _delay: None)
        return Delivery.get_by_id(delivery.id)


def test_profile_page_offers_the_vapid_key_which_stays_the_same(world, capture_app):
    client, _channel, _events = world
    page = client.get("/profile/").get_data(as_text=True)
    with database.connection_context():
        key = webpush.vapid_keys().public_key
        assert webpush.vapid_keys().public_key == key  # generated once, kept
    assert f'data-vapid-public-key="{key}"' in page
    assert "Turn on notifications in this browser" in page
    assert "PRIVATE KEY" not in page


def test_push_is_encrypted_signed_and_shows_the_event(world, capture_app, push_service):
    client, channel, events = world
    admin_browser = push_service.subscriber("admin")
    assert subscribe(client, admin_browser.subscription(push_service.url)).status_code == 201

    delivery = deliver(capture_app, events["Gate"], channel)

    assert push_service.problems == []
    assert push_service.pushes[0].vapid_claims["sub"] == SUBJECT  # GLIMPSER_VAPID_SUBJECT
    (push,) = push_service.pushes_to("admin")
    assert push.payload["title"] == "Motion at Gate"
    assert push.payload["url"] == f"/events/{events['Gate'].id}"
    with database.connection_context():
        assert push.vapid_key == webpush.vapid_keys().public_key
    assert (delivery.status, delivery.response_code, delivery.attempts) == ("sent", 201, 1)
    assert "1 of 1" in delivery.error


def test_viewers_only_get_pushes_about_streams_they_may_see(world, capture_app, push_service):
    client, channel, events = world
    subscribe(client, push_service.subscriber("admin").subscription(push_service.url))
    viewer = capture_app.test_client()
    login(viewer, "vera", PASSWORD)
    assert (
        subscribe(
            viewer, push_service.subscriber("vera").subscription(push_service.url)
        ).status_code
        == 201
    )

    deliver(capture_app, events["Gate"], channel)
    deliver(capture_app, events["Safe"], channel)

    assert [p.payload["title"] for p in push_service.pushes_to("vera")] == ["Motion at Gate"]
    assert len(push_service.pushes_to("admin")) == 2


def test_gone_subscriptions_are_deleted(world, capture_app, push_service):
    client, channel, events = world
    subscribe(client, push_service.subscriber("old").subscription(push_service.url))
    push_service.answer("old", 410)

    delivery = deliver(capture_app, events["Gate"], channel)

    assert delivery.status == "failed"
    assert "expired subscriptions removed" in delivery.error
    with database.connection_context():
        assert PushSubscription.select().count() == 0


def test_a_retry_after_a_partial_failure_notifies_nobody_twice(world, capture_app, push_service):
    client, channel, events = world
    subscribe(client, push_service.subscriber("phone").subscription(push_service.url))
    subscribe(client, push_service.subscriber("laptop").subscription(push_service.url))
    push_service.answer("laptop", 503)

    first = deliver(capture_app, events["Gate"], channel)
    assert first.status == "retrying" and first.response_code == 503
    second = deliver(capture_app, events["Gate"], channel)

    assert second.status == "sent" and second.attempts == 2
    assert len(push_service.pushes_to("phone")) == 1
    assert len(push_service.pushes_to("laptop")) == 1
    assert push_service.problems == []


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://169.254.169.254/push/x",  # cloud metadata
        "https://10.1.2.3/push/x",  # private network
        "ftp://push.example/x",
        "not a url",
    ],
)
def test_subscriptions_must_point_at_the_public_internet(world, endpoint):
    client, _channel, _events = world
    response = subscribe(client, {"endpoint": endpoint, "keys": {"p256dh": "AAAA", "auth": "AAAA"}})
    assert response.status_code == 422
    with database.connection_context():
        assert PushSubscription.select().count() == 0


def test_malformed_subscription_keys_are_a_clear_422(world):
    client, _channel, _events = world
    for keys, message in (
        ("abc", "must be an object"),
        (["p256dh"], "must be an object"),
        ({"p256dh": 5, "auth": "AAAA"}, "p256dh is missing or invalid"),
    ):
        response = subscribe(client, {"endpoint": "https://push.example.com/x", "keys": keys})
        assert response.status_code == 422, keys
        assert message in response.get_json()["error"]


def test_subscribing_needs_csrf_and_valid_json(world):
    client, _channel, _events = world
    no_token = client.post("/profile/push/subscriptions", json={"endpoint": "https://x.example/"})
    assert no_token.status_code == 400
    token = csrf_from(client.get("/profile/").get_data(as_text=True))
    garbage = client.post(
        "/profile/push/subscriptions",
        data="{not json",
        headers={"X-CSRFToken": token, "Content-Type": "application/json"},
    )
    assert garbage.status_code == 400


def test_users_remove_only_their_own_subscriptions(world, capture_app, push_service):
    client, _channel, _events = world
    subscribe(client, push_service.subscriber("admin").subscription(push_service.url))
    with database.connection_context():
        sub = PushSubscription.get()
    viewer = capture_app.test_client()
    login(viewer, "vera", PASSWORD)
    token = csrf_from(viewer.get("/profile/").get_data(as_text=True))
    response = viewer.post(
        f"/profile/push/subscriptions/{sub.id}/delete", data={"csrf_token": token}
    )
    assert response.status_code == 404
    with database.connection_context():
        assert PushSubscription.select().count() == 1
    token = csrf_from(client.get("/profile/").get_data(as_text=True))
    response = client.post(
        f"/profile/push/subscriptions/{sub.id}/delete", data={"csrf_token": token}
    )
    assert response.status_code == 302
    with database.connection_context():
        assert PushSubscription.select().count() == 0


def test_another_users_subscription_is_never_taken_over(world, capture_app, push_service):
    """Posting someone else's endpoint (it is all a subscription needs) changes nothing: 409."""
    client, _channel, _events = world
    admins = push_service.subscriber("admin").subscription(push_service.url)
    assert subscribe(client, admins).status_code == 201
    viewer = capture_app.test_client()
    login(viewer, "vera", PASSWORD)
    for keys in (push_service.subscriber("vera").subscription(push_service.url)["keys"], None):
        attempt = {"endpoint": admins["endpoint"], "keys": keys or admins["keys"]}
        response = subscribe(viewer, attempt)
        assert response.status_code == 409
        assert "another user" in response.get_json()["error"]
        with database.connection_context():
            (sub,) = PushSubscription.select()
            assert sub.user.username == "admin"
            assert (sub.p256dh, sub.auth) == (admins["keys"]["p256dh"], admins["keys"]["auth"])
    # The owner may post it again (a browser re-subscribing): still one subscription, theirs.
    assert subscribe(client, admins).status_code == 201
    with database.connection_context():
        assert [s.user.username for s in PushSubscription.select()] == ["admin"]


@pytest.mark.parametrize(
    ("endpoint", "allowed_with_loopback"),
    [
        ("http://127.0.0.1:8/push/x", True),  # plain http to loopback: only with the setting
        ("https://[::1]/push/x", True),
        ("http://push.example.org/x", False),  # plain http elsewhere: never
        ("https://192.168.1.9/push/x", False),  # the LAN: never, setting or not
        ("https://100.64.0.1/push/x", False),  # shared address space (CGNAT): not public
    ],
)
def test_which_push_endpoints_may_be_reached(endpoint, allowed_with_loopback, tmp_path):
    """As docs/notifications.md says: public https only; loopback with the setting alone."""
    strict = CaptureContext(5_000_000, False, (), tmp_path, "")
    assert webpush.endpoint_problem(endpoint, strict)
    problem = webpush.endpoint_problem(endpoint, replace(strict, allow_loopback=True))
    assert (problem is None) == allowed_with_loopback, problem


def test_two_users_racing_for_one_endpoint_get_201_and_409_never_a_500(app_factory, database_url):
    """Both requests read "nobody has it" and insert: the loser meets the unique endpoint and
    answers 409 (or 201 when it was its own), never an IntegrityError."""
    app = app_factory(database_url, GLIMPSER_ALLOW_LOOPBACK_SOURCES="1")  # opens the database
    guard = CaptureContext.from_settings(app.extensions["glimpser.settings"])
    with database.connection_context():
        users = [create_user(name, PASSWORD, "viewer") for name in ("ana", "ben")]
    keys = {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQ", "auth": "tBHItJI5svbpez7K"}
    for round_ in range(12):
        endpoint = f"http://127.0.0.1:9/push/race-{round_}"
        barrier = threading.Barrier(len(users))
        outcomes: dict[str, str] = {}

        def save(user, endpoint=endpoint, barrier=barrier, outcomes=outcomes):
            with database.connection_context():
                barrier.wait()
                try:
                    webpush.save_subscription(user, {"endpoint": endpoint, "keys": keys}, "", guard)
                    outcomes[user.username] = "saved"
                except webpush.SubscriptionTaken:
                    outcomes[user.username] = "taken"
                except Exception as exc:  # noqa: BLE001 - what the test is about
                    outcomes[user.username] = f"{type(exc).__name__}: {exc}"

        threads = [threading.Thread(target=save, args=(user,)) for user in users]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes.values()) == ["saved", "taken"], outcomes
        with database.connection_context():
            (sub,) = PushSubscription.select().where(PushSubscription.endpoint == endpoint)
            assert outcomes[sub.user.username] == "saved"
