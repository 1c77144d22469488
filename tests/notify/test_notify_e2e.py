"""From a real capture through a rule to every channel kind, each at a real loopback receiver.

The RTSP test camera's moving ball is captured through the stream's reader, the analysis job
finds motion, the default rule (given all six channels) raises an event, and the notify jobs
deliver it: webhook (signature checked), Pushover API stand-in (with the snapshot), SMTP (with
the snapshot attached), CAP 1.2 endpoint (schema-valid), Apprise json://, and Web Push (payload
decrypted with the subscription's keys). Each delivery is recorded once, and running the
queues again sends nothing more.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from lxml import etree

from glimpser import jobs
from glimpser.db import database
from glimpser.models import Delivery, Event, NotificationChannel, Rule, Snapshot
from tests.conftest import run_queued_jobs
from tests.helpers import csrf_from, setup_admin
from tests.notify.push_service import PushService
from tests.notify.receivers import HttpReceiver, Reply, SmtpReceiver
from tests.test_analysis_pipeline import capture_and_analyse, rtsp_stream

pytestmark = pytest.mark.slow

SECRET = "hook-signing-secret"
CAP_SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).with_name("cap-1.2.xsd"))))


@pytest.fixture
def receivers():
    http = HttpReceiver().start()
    pushover = HttpReceiver(Reply(200, {"status": 1, "request": "e2e"})).start()
    smtp = SmtpReceiver().start()
    push = PushService().start()
    yield http, pushover, smtp, push
    for receiver in (http, pushover, smtp, push):
        receiver.stop()


def test_a_capture_reaches_every_channel_kind_once(app_factory, media_root, rtsp, receivers):
    http, pushover, smtp, push = receivers
    app = app_factory(
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_MEDIA_DIR=str(media_root),
        GLIMPSER_PUBLIC_URL="http://glimpser.test",
        GLIMPSER_VAPID_SUBJECT="mailto:ops@glimpser.example.org",
        GLIMPSER_PUSHOVER_API_URL=pushover.url("/1/messages.json"),
    )
    jobs.configure(app.extensions["glimpser.settings"])
    try:
        admin = app.test_client()
        setup_admin(admin)
        token = csrf_from(admin.get("/profile/").get_data(as_text=True))
        browser = push.subscriber("admin").subscription(push.url)
        response = admin.post(
            "/profile/push/subscriptions", json=browser, headers={"X-CSRFToken": token}
        )
        assert response.status_code == 201

        configs = {
            "webhook": {"url": http.url("/hook"), "secret": SECRET},
            "pushover": {
                "app_token": "azGDORePK8gMaC0QOYAMyEEuzJnyUi",
                "user_key": "uQiRzpo4DXghDmr9QzzfQu27cmVRsG",
            },
            "email": {
                "host": "127.0.0.1",
                "port": smtp.port,
                "security": "none",
                "from_addr": "glimpser@example.org",
                "to": ["guard@example.org"],
            },
            "cap": {"endpoints": [http.url("/cap")]},
            "apprise": {"urls": f"json://127.0.0.1:{http.port}/apprise"},
            "webpush": {},
        }
        with database.connection_context():
            channels = [
                NotificationChannel.create(name=kind, kind=kind, config={"kind": kind, **config})
                for kind, config in configs.items()
            ]
            Rule.update(channels=[c.id for c in channels]).where(
                Rule.name == "Motion or change"
            ).execute()

        stream = rtsp_stream(f"{rtsp.url}/test", "Front door")
        capture_and_analyse(app, stream, 3)
        run_queued_jobs(app, ("notify",))
        run_queued_jobs(app, ("analysis", "notify"))  # again: nothing new may go out

        with database.connection_context():
            (event,) = Event.select().where(Event.stream == stream.id)
            snapshot = Snapshot.get_by_id(event.snapshot_id)
            picture = app.extensions["glimpser.settings"].snapshot_dir / snapshot.storage_key
            picture = picture.read_bytes()
            rows = list(Delivery.select())
        assert sorted((d.channel.kind, d.status, d.attempts) for d in rows) == sorted(
            (kind, "sent", 1) for kind in configs
        )

        by_path = {}
        for request in http.requests:
            by_path.setdefault(request.path, []).append(request)
        (hook,) = by_path["/hook"]
        stamp = hook.header("x-glimpser-timestamp")
        expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + hook.body, hashlib.sha256)
        assert hook.header("x-glimpser-signature") == "sha256=" + expected.hexdigest()
        assert hook.json()["url"] == f"http://glimpser.test/events/{event.id}"

        (cap,) = by_path["/cap"]
        alert = etree.fromstring(cap.body)
        CAP_SCHEMA.assertValid(alert)

        (apprise,) = by_path["/apprise"]
        assert event.title in apprise.body.decode()

        (note,) = pushover.requests
        assert note.form()["attachment"].content == picture

        (mail,) = smtp.messages
        attachments = [p for p in mail.message.iter_attachments()]
        assert attachments and attachments[0].get_content() == picture

        (pushed,) = push.pushes_to("admin")
        assert pushed.payload["title"] == event.title
        assert push.problems == []
    finally:
        jobs.configure(None)
