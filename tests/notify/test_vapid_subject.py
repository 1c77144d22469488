"""The Web Push VAPID subject: its own setting, never a local contact push services refuse.

Apple's push service answers 403 BadJwtToken (final, never retried) to a subject such as
mailto:glimpser@localhost, so a local subject is a configuration error when set explicitly, and
when only a local one can be derived Web Push says why it is off instead of failing at Apple.
"""

from __future__ import annotations

import pytest

from glimpser.auth.users import create_user
from glimpser.config import ConfigError, load_settings
from glimpser.db import database
from glimpser.models import Delivery, Event, NotificationChannel
from glimpser.notify import dispatch
from tests.conftest import make_env
from tests.helpers import csrf_from, jobs_configured, setup_admin
from tests.notify.push_service import PushService

SENDER, MAILTO = {"GLIMPSER_CAP_SENDER": "ops@example.org"}, "mailto:ops@example.org"


def settings_with(tmp_path, redis_url, **env: str):
    return load_settings(make_env(tmp_path / "data", redis_url, **env))


@pytest.mark.parametrize(
    "subject",
    [
        "mailto:glimpser@localhost",
        "mailto:ops@printer.local",
        "mailto:ops@nas.home.arpa",
        "mailto:ops@10.1.2.3",
        "mailto:ops@glimpser",
        "mailto:not-an-address",
        "https://localhost/",
        "https://127.0.0.1:8443/",
        "https://[::1]/",
        "https://192.168.1.20/",
        "https://glimpser.lan/",
        "http://glimpser.example.org/",  # push services want mailto: or https:
        "ops@example.org",
    ],
)
def test_a_local_or_malformed_subject_is_refused_at_start(tmp_path, redis_url, subject):
    with pytest.raises(ConfigError) as caught:
        settings_with(tmp_path, redis_url, GLIMPSER_VAPID_SUBJECT=subject)
    assert "GLIMPSER_VAPID_SUBJECT" in str(caught.value)


@pytest.mark.parametrize("subject", ["mailto:ops@example.org", "https://glimpser.example.org/"])
def test_a_public_subject_is_used_as_given(tmp_path, redis_url, subject):
    settings = settings_with(
        tmp_path,
        redis_url,
        GLIMPSER_VAPID_SUBJECT=subject,
        GLIMPSER_PUBLIC_URL="https://elsewhere.example.net",
    )
    assert settings.vapid_subject == subject


@pytest.mark.parametrize(
    ("env", "subject"),
    [
        ({"GLIMPSER_PUBLIC_URL": "https://glimpser.example.org/"}, "https://glimpser.example.org"),
        ({"GLIMPSER_PUBLIC_URL": "http://glimpser.example.org", **SENDER}, MAILTO),
        ({"GLIMPSER_PUBLIC_URL": "https://glimpser.local", **SENDER}, MAILTO),
        ({"GLIMPSER_PUBLIC_URL": "https://glimpser.local"}, ""),
        ({"GLIMPSER_PUBLIC_URL": "http://192.168.1.5:8000"}, ""),
        ({}, ""),  # the default CAP sender is glimpser@localhost: never the push contact
    ],
)
def test_the_subject_is_derived_from_the_public_url_or_the_cap_sender(
    tmp_path, redis_url, env, subject
):
    assert settings_with(tmp_path, redis_url, **env).vapid_subject == subject


@pytest.fixture
def push_service():
    service = PushService().start()
    yield service
    service.stop()


def test_without_a_usable_subject_web_push_says_why_and_sends_nothing(
    app_factory, media_root, push_service
):
    app = app_factory(
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_MEDIA_DIR=str(media_root),
        GLIMPSER_PUBLIC_URL="http://glimpser.local:8000",
    )
    settings = app.extensions["glimpser.settings"]
    assert settings.vapid_subject == ""
    client = app.test_client()
    setup_admin(client)
    with jobs_configured(app):
        page = client.get("/profile/").get_data(as_text=True)
        assert "Web Push is off" in page and "GLIMPSER_VAPID_SUBJECT" in page
        token = csrf_from(page)
        browser = push_service.subscriber("admin").subscription(push_service.url)
        response = client.post(
            "/profile/push/subscriptions", json=browser, headers={"X-CSRFToken": token}
        )
        assert response.status_code == 201  # kept for when the subject is set
        with database.connection_context():
            create_user("vera", "correct horse battery", "viewer")
            channel = NotificationChannel.create(name="Browsers", kind="webpush", config={})
            event = Event.create(kind="capture_failed", severity="high", title="Disk full")
            delivery = Delivery.create(event=event, channel=channel)
            status = dispatch.deliver(
                delivery.id, app.extensions["glimpser.redis"], settings, lambda *_: None
            )
            delivery = Delivery.get_by_id(delivery.id)
    assert status == "failed"  # not retried: it cannot work until the setting changes
    assert "Web Push is off" in delivery.error
    assert "GLIMPSER_PUBLIC_URL is not an https:// URL" in delivery.error
    assert "GLIMPSER_CAP_SENDER is local" in delivery.error
    assert push_service.pushes == []
