"""Senders against real receivers on loopback: webhook (signature verified), the Pushover API
stand-in, an aiosmtpd SMTP server, Apprise json:// — plus the channel schemas and the message.

Each send makes one attempt; what the dispatcher does with SendError (retryable or not,
Retry-After) is decided here and checked on the error itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from requests.structures import CaseInsensitiveDict

from glimpser import times
from glimpser.config import load_settings
from glimpser.db import database
from glimpser.media.storage import get_storage
from glimpser.models import Delivery, Event, NotificationChannel
from glimpser.notify import registry, webhook
from glimpser.notify.dispatch import SendError, SendResult
from glimpser.notify.message import Message, message_for
from glimpser.notify.schemas import (
    ChannelSpec,
    ValidationError,
    dump_config,
    error_messages,
    parse_config,
)
from glimpser.notify.senders import SendContext, parse_retry_after
from tests.helpers import free_port
from tests.media_servers import jpeg
from tests.notify.receivers import HttpReceiver, Reply, SmtpReceiver, make_certificate
from tests.test_images import add_snapshot, add_stream

SNAPSHOT = jpeg((200, 40, 40), label="event")


def send(config, message: Message, ctx: SendContext) -> SendResult:
    """One attempt through the kind's module, found in the one table of kinds."""
    return registry.module_for(config.kind).send(config, message, ctx)


PUBLIC_URL = "https://glimpser.example.org"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def receiver():
    with HttpReceiver() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, receiver: HttpReceiver):
    return load_settings(
        {
            "GLIMPSER_DATA_DIR": str(tmp_path / "data"),
            "GLIMPSER_SECRET_KEY": "test-secret-key-0123456789abcdef",
            "GLIMPSER_ALLOW_LOOPBACK_SOURCES": "1",
            "GLIMPSER_PUBLIC_URL": PUBLIC_URL,
            "GLIMPSER_PUSHOVER_API_URL": receiver.url("/1/messages.json"),
        }
    )


@pytest.fixture
def ctx(settings):
    context = SendContext(settings, delivery_id=41)
    yield context
    context.session.close()


def make_message(**changes) -> Message:
    message = Message(
        event_id=7,
        title='Person at the "gate" <b>now</b>',
        body="Someone walked in.\nSecond line & more.",
        severity="high",
        kind="ai",
        stream_name="Gate",
        stream_id=3,
        created_at=datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC),
        url=f"{PUBLIC_URL}/events/7",
        image=SNAPSHOT,
        image_name="glimpser-event-7.jpg",
        data={"objects": ["person"], "confidence": 0.9},
        acknowledged=False,
    )
    return replace(message, **changes)


def verify_signature(secret: str, headers: dict[str, str], body: bytes, max_age: int = 300) -> bool:
    """The receiver-side check exactly as docs/notifications.md documents it."""
    timestamp = headers["x-glimpser-timestamp"]
    signature = headers["x-glimpser-signature"]
    if abs(time.time() - int(timestamp)) > max_age:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(signature, "sha256=" + expected.hexdigest())


def send_error(config: dict, message: Message, ctx: SendContext) -> SendError:
    with pytest.raises(SendError) as caught:
        send(parse_config(config), message, ctx)
    return caught.value


# --- webhook ----------------------------------------------------------------------------------


def test_webhook_signed_default_body(receiver, ctx):
    config = parse_config({"kind": "webhook", "url": receiver.url("/hook"), "secret": "s3cr3t-key"})
    message = make_message()
    result = send(config, message, ctx)

    assert result.status_code == 200
    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hook"
    assert request.header("content-type") == "application/json"
    assert request.header("x-glimpser-event") == "7"
    assert request.header("x-glimpser-delivery") == "41"
    assert verify_signature("s3cr3t-key", request.headers, request.body)
    # The same check refuses a changed body, another secret and a stale timestamp.
    assert not verify_signature("s3cr3t-key", request.headers, request.body + b" ")
    assert not verify_signature("other-secret", request.headers, request.body)
    stale = {**request.headers, "x-glimpser-timestamp": str(int(time.time()) - 3600)}
    assert not verify_signature("s3cr3t-key", stale, request.body)

    body = request.json()
    assert body == message.as_template_fields()
    assert body["title"] == 'Person at the "gate" <b>now</b>'
    assert body["created_at"] == "2026-11-24T10:00:00+00:00"
    assert body["url"] == f"{PUBLIC_URL}/events/7"
    assert body["has_image"] is True and body["data"] == {"objects": ["person"], "confidence": 0.9}


def documented_verifier():
    """The receiver code from docs/notifications.md, run as written."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
    blocks = re.findall(r"```python\n(.*?)```", docs.read_text(), re.S)
    [code] = [b for b in blocks if "def verify_glimpser_signature" in b]
    namespace: dict = {}
    exec(compile(code, str(docs), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify_glimpser_signature"]


def test_documented_receiver_code_verifies_a_real_request(receiver, ctx):
    verify = documented_verifier()
    config = parse_config({"kind": "webhook", "url": receiver.url(), "secret": "docs-secret"})
    send(config, make_message(), ctx)
    [request] = receiver.requests
    headers = CaseInsensitiveDict(request.headers)
    assert verify("docs-secret", headers, request.body)
    assert not verify("docs-secret", headers, request.body.replace(b"high", b"low!"))
    assert not verify("wrong-secret", headers, request.body)
    old = CaseInsensitiveDict({**headers, "X-Glimpser-Timestamp": str(int(time.time()) - 900)})
    assert not verify("docs-secret", old, request.body)


def test_webhook_without_secret_is_not_signed(receiver, ctx):
    send(parse_config({"kind": "webhook", "url": receiver.url()}), make_message(), ctx)
    [request] = receiver.requests
    assert request.header("x-glimpser-signature") is None
    assert request.header("x-glimpser-timestamp").isdigit()


def test_webhook_template_headers_method_and_authorization(receiver, ctx):
    template = json.dumps(
        {
            "text": "[${severity}] ${title} on ${stream_name}",
            "details": "${data}",
            "event": "${event_id}",
            "link": "${url}",
            "note": "costs $$5",
        }
    )
    config = parse_config(
        {
            "kind": "webhook",
            "url": receiver.url("/put-here"),
            "method": "PUT",
            "headers": "X-Team: cameras\nContent-Type: application/json; charset=utf-8",
            "authorization": "Bearer tok-123456",
            "body_template": template,
            "secret": "k",
        }
    )
    title = 'He said "hi"\n}{ ${body} \\ done'
    send(config, make_message(title=title), ctx)
    [request] = receiver.requests
    assert request.method == "PUT" and request.path == "/put-here"
    assert request.header("x-team") == "cameras"
    assert request.header("content-type") == "application/json; charset=utf-8"
    assert request.header("authorization") == "Bearer tok-123456"
    assert verify_signature("k", request.headers, request.body)
    body = request.json()  # still valid JSON, whatever the title holds
    assert body == {
        "text": f"[high] {title} on Gate",
        "details": {"objects": ["person"], "confidence": 0.9},  # a whole placeholder keeps types
        "event": 7,
        "link": f"{PUBLIC_URL}/events/7",
        "note": "costs $5",
    }


def test_webhook_500_is_retryable(receiver, ctx):
    receiver.script(Reply(500, "database down"))
    error = send_error({"kind": "webhook", "url": receiver.url()}, make_message(), ctx)
    assert error.retryable and error.status_code == 500
    assert "500" in str(error) and "database down" in str(error)


def test_webhook_400_is_not_retried_and_hides_secrets(receiver, ctx):
    # A receiver that echoes what it got must not leak the credentials into the delivery log.
    receiver.script(Reply(400, "bad request, got Authorization: Bearer tok-abcdef"))
    config = {"kind": "webhook", "url": receiver.url(), "authorization": "Bearer tok-abcdef"}
    error = send_error(config, make_message(), ctx)
    assert not error.retryable and error.status_code == 400
    assert "tok-abcdef" not in str(error) and "bad request" in str(error)


def test_webhook_429_retry_after_seconds(receiver, ctx):
    receiver.script(Reply(429, "slow down", headers={"Retry-After": "7"}))
    error = send_error({"kind": "webhook", "url": receiver.url()}, make_message(), ctx)
    assert error.retryable and error.status_code == 429 and error.retry_after == 7


def test_retry_after_http_date():
    later = times.utcnow() + timedelta(seconds=120)
    parsed = parse_retry_after(format_datetime(later, usegmt=True))
    assert parsed is not None and 100 < parsed <= 120
    assert parse_retry_after(format_datetime(times.utcnow() - timedelta(hours=1), usegmt=True)) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_webhook_timeout_is_retryable(receiver, ctx):
    receiver.script(Reply(200, delay=30))
    config = {"kind": "webhook", "url": receiver.url(), "timeout": 1}
    error = send_error(config, make_message(), ctx)
    assert error.retryable and error.status_code is None
    assert "did not answer within 1 s" in str(error)


def test_webhook_connection_refused_is_retryable(ctx):
    url = f"http://127.0.0.1:{free_port()}/nobody"
    error = send_error({"kind": "webhook", "url": url}, make_message(), ctx)
    assert error.retryable and "could not connect" in str(error)


def test_webhook_redirect_is_not_followed(receiver, ctx):
    receiver.script(Reply(302, headers={"Location": receiver.url("/elsewhere")}))
    error = send_error({"kind": "webhook", "url": receiver.url("/hook")}, make_message(), ctx)
    assert not error.retryable and error.status_code == 302
    assert [r.path for r in receiver.requests] == ["/hook"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "http://[fe80::1]/hook",
        "http://100.100.100.200/",  # Alibaba metadata
    ],
)
def test_webhook_ssrf_guard_refuses_metadata_and_link_local(ctx, url):
    error = send_error({"kind": "webhook", "url": url}, make_message(), ctx)
    assert not error.retryable
    assert "link-local and cloud metadata addresses are never allowed" in str(error)


def test_webhook_loopback_only_when_allowed(receiver, settings):
    closed = SendContext(replace(settings, allow_loopback_sources=False))
    error = send_error({"kind": "webhook", "url": receiver.url()}, make_message(), closed)
    assert not error.retryable and "loopback addresses are not allowed" in str(error)
    denied = SendContext(replace(settings, source_deny_cidrs=("127.0.0.0/8",)))
    error = send_error({"kind": "webhook", "url": receiver.url()}, make_message(), denied)
    assert "denied network (127.0.0.0/8)" in str(error)
    assert receiver.requests == []


# --- Pushover ---------------------------------------------------------------------------------

TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
USER = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"


def pushover_config(**changes) -> dict:
    return {"kind": "pushover", "app_token": TOKEN, "user_key": USER, **changes}


def test_pushover_stand_in_receives_the_message_and_snapshot(receiver, ctx):
    receiver.script(Reply(200, {"status": 1, "request": "647d2300-702c-4b38-8b2f-d56326ae460b"}))
    config = parse_config(
        pushover_config(priority=2, retry=60, expire=3600, sound="siren", device="phone,tablet")
    )
    message = make_message()
    result = send(config, message, ctx)

    assert result.status_code == 200 and "647d2300" in result.detail
    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/1/messages.json"
    form = request.form()
    assert form["token"].text == TOKEN and form["user"].text == USER
    assert form["title"].text == message.title
    assert form["message"].text == message.body
    assert form["priority"].text == "2"
    assert form["retry"].text == "60" and form["expire"].text == "3600"
    assert form["sound"].text == "siren" and form["device"].text == "phone,tablet"
    assert form["url"].text == f"{PUBLIC_URL}/events/7"
    assert form["timestamp"].text == str(int(message.created_at.timestamp()))
    attachment = form["attachment"]
    assert attachment.content == SNAPSHOT
    assert attachment.content_type == "image/jpeg"
    assert attachment.filename == "glimpser-event-7.jpg"


def test_pushover_without_snapshot_or_with_attachment_off(receiver, ctx):
    receiver.default = Reply(200, {"status": 1, "request": "r"})
    send(parse_config(pushover_config()), make_message(image=None), ctx)
    send(parse_config(pushover_config(attach_snapshot=False)), make_message(), ctx)
    assert all("attachment" not in r.form() for r in receiver.requests)
    assert [r.form()["priority"].text for r in receiver.requests] == ["0", "0"]
    assert all("retry" not in r.form() for r in receiver.requests)


def test_pushover_error_reply_is_reported_without_the_token(receiver, ctx):
    receiver.script(
        Reply(
            400,
            {
                "token": "invalid",
                "errors": [f"application token is invalid ({TOKEN})", "user key is invalid"],
                "status": 0,
                "request": "5042853c",
            },
        )
    )
    error = send_error(pushover_config(), make_message(), ctx)
    assert not error.retryable and error.status_code == 400
    assert "application token is invalid" in str(error) and "user key is invalid" in str(error)
    assert TOKEN not in str(error) and USER not in str(error)


def test_pushover_status_not_1_quota_and_outage(receiver, ctx):
    receiver.script(
        Reply(200, {"status": 0, "errors": ["message cannot be blank"]}),
        Reply(429, {"status": 0, "errors": ["monthly limit reached"]}, {"Retry-After": "60"}),
        Reply(503, "maintenance"),
    )
    first = send_error(pushover_config(), make_message(), ctx)
    assert not first.retryable and "message cannot be blank" in str(first)
    quota = send_error(pushover_config(), make_message(), ctx)
    assert quota.retryable and quota.status_code == 429 and quota.retry_after == 60
    outage = send_error(pushover_config(), make_message(), ctx)
    assert outage.retryable and outage.status_code == 503


def test_pushover_without_credentials_fails_clearly(receiver, ctx):
    error = send_error({"kind": "pushover", "user_key": USER}, make_message(), ctx)
    assert not error.retryable and "Application token" in str(error)
    assert receiver.requests == []


# --- email ------------------------------------------------------------------------------------


def email_config(port: int, **changes) -> dict:
    return {
        "kind": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": "mailer",
        "password": "pa55word-xyz",
        "from_addr": "glimpser@example.org",
        "to": "ops@example.org\noncall@example.org",
        **changes,
    }


def test_email_text_html_and_snapshot(ctx):
    with SmtpReceiver(credentials=("mailer", "pa55word-xyz")) as smtp:
        message = make_message()
        result = send(parse_config(email_config(smtp.port)), message, ctx)
        assert result.status_code == 250 and "2 of 2" in result.detail
        [mail] = smtp.messages
    assert mail.auth_user == "mailer"
    assert mail.mail_from == "glimpser@example.org"
    assert mail.rcpt_tos == ["ops@example.org", "oncall@example.org"]
    email = mail.message
    assert email["From"] == "glimpser@example.org"
    assert email["To"] == "ops@example.org, oncall@example.org"
    assert email["Subject"] == '[Glimpser] Person at the "gate" <b>now</b>'
    assert email["X-Glimpser-Event"] == "7"
    text = email.get_body(("plain",)).get_content()
    html = email.get_body(("html",)).get_content()
    assert 'Person at the "gate" <b>now</b>' in text and "Second line & more." in text
    assert f"Open: {PUBLIC_URL}/events/7" in text
    # Event text is escaped in the HTML part, never interpreted.
    assert "Person at the &#34;gate&#34; &lt;b&gt;now&lt;/b&gt;" in html and "<b>now" not in html
    assert "Second line &amp; more." in html
    assert f'<a href="{PUBLIC_URL}/events/7">' in html
    [attachment] = list(email.iter_attachments())
    assert attachment.get_content_type() == "image/jpeg"
    assert attachment.get_filename() == "glimpser-event-7.jpg"
    assert attachment.get_content() == SNAPSHOT


def test_email_every_recipient_refused(ctx):
    with SmtpReceiver() as smtp:
        smtp.refuse["ops@example.org"] = "550 5.1.1 no such user"
        config = email_config(smtp.port, username="", password="", to="ops@example.org")
        permanent = send_error(config, make_message(), ctx)
        assert not permanent.retryable and permanent.status_code == 550
        assert "ops@example.org (550)" in str(permanent)
        smtp.refuse["ops@example.org"] = "451 4.3.0 try again later"
        temporary = send_error(config, make_message(), ctx)
        assert temporary.retryable and temporary.status_code == 451
        assert smtp.messages == []


def test_email_one_recipient_refused_is_reported(ctx):
    with SmtpReceiver() as smtp:
        smtp.refuse["oncall@example.org"] = "550 5.1.1 no such user"
        config = parse_config(email_config(smtp.port, username="", password=""))
        result = send(config, make_message(), ctx)
        assert result.detail == (
            "accepted for 1 of 2 recipients; refused: oncall@example.org (550)"
        )
        assert [m.rcpt_tos for m in smtp.messages] == [["ops@example.org"]]


def test_email_wrong_password_is_permanent_and_not_shown(ctx):
    with SmtpReceiver(credentials=("mailer", "right-password")) as smtp:
        error = send_error(email_config(smtp.port), make_message(), ctx)
        assert not error.retryable and error.status_code == 535
        assert "login failed" in str(error) and "pa55word-xyz" not in str(error)
        assert smtp.messages == []


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_email_over_starttls_and_tls_with_a_verified_certificate(
    ctx, tmp_path, monkeypatch, security
):
    certificate = make_certificate(tmp_path / "tls")
    # The system trust store, extended by this test's CA (OpenSSL reads SSL_CERT_FILE).
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.ca_file))
    credentials = ("mailer", "pa55word-xyz")
    with SmtpReceiver(credentials, tls=security, certificate=certificate) as smtp:
        config = parse_config(email_config(smtp.port, security=security))
        result = send(config, make_message(), ctx)
        [mail] = smtp.messages
    assert result.status_code == 250
    assert mail.auth_user == "mailer"
    assert next(mail.message.iter_attachments()).get_content() == SNAPSHOT


def test_email_untrusted_certificate_is_refused(ctx, tmp_path):
    certificate = make_certificate(tmp_path / "tls")  # its CA is not trusted here
    with SmtpReceiver(tls="tls", certificate=certificate) as smtp:
        config = email_config(smtp.port, security="tls", username="", password="")
        error = send_error(config, make_message(), ctx)
        assert not error.retryable and "certificate is not valid" in str(error)
        assert smtp.messages == []


def test_email_starttls_required_but_not_offered(ctx):
    with SmtpReceiver() as smtp:
        config = email_config(smtp.port, security="starttls", username="", password="")
        error = send_error(config, make_message(), ctx)
        assert not error.retryable and "STARTTLS" in str(error)
        assert smtp.messages == []


def test_email_login_without_its_password_fails_before_connecting(ctx):
    # An import without secrets can leave the password empty: say so, do not try to log in.
    error = send_error(email_config(free_port(), password=""), make_message(), ctx)
    assert not error.retryable and "no Password" in str(error)


def test_email_unreachable_server_is_retryable(ctx):
    error = send_error(email_config(free_port()), make_message(), ctx)
    assert error.retryable and "could not connect" in str(error)


def test_email_without_snapshot_has_no_attachment(ctx):
    with SmtpReceiver() as smtp:
        config = email_config(smtp.port, username="", password="", subject_prefix="")
        send(parse_config(config), make_message(image=None, image_name=""), ctx)
        email = smtp.messages[0].message
    assert list(email.iter_attachments()) == []
    assert email["Subject"] == 'Person at the "gate" <b>now</b>'


# --- Apprise ----------------------------------------------------------------------------------


def test_apprise_json_reaches_the_receiver(receiver, ctx):
    url = f"json://127.0.0.1:{receiver.port}/apprise/hook"
    result = send(parse_config({"kind": "apprise", "urls": url}), make_message(), ctx)
    assert result.status_code is None  # Apprise does not tell status codes
    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/apprise/hook"
    body = request.json()
    assert body["title"] == 'Person at the "gate" <b>now</b>'
    assert body["message"] == f"Someone walked in.\nSecond line & more.\n\n{PUBLIC_URL}/events/7"
    [attachment] = body["attachments"]
    assert base64.b64decode(attachment["base64"]) == SNAPSHOT
    assert attachment["mimetype"] == "image/jpeg"


def test_apprise_failure_is_retryable_partial_is_not(receiver, ctx):
    receiver.script(Reply(500, "down"))
    one = f"json://127.0.0.1:{receiver.port}/a"
    error = send_error(
        {"kind": "apprise", "urls": one, "attach_snapshot": False}, make_message(), ctx
    )
    assert error.retryable and "Apprise could not notify" in str(error)

    receiver.script(Reply(200), Reply(500, "down"))
    two = f"{one}\njson://127.0.0.1:{receiver.port}/b"
    error = send_error(
        {"kind": "apprise", "urls": two, "attach_snapshot": False}, make_message(), ctx
    )
    assert not error.retryable and "reached 1 of 2" in str(error)


def test_apprise_json_target_passes_the_ssrf_guard(ctx):
    error = send_error(
        {"kind": "apprise", "urls": "json://169.254.169.254/latest"}, make_message(), ctx
    )
    assert not error.retryable and "link-local" in str(error)


# --- schemas ----------------------------------------------------------------------------------

SECRETS = {
    "webhook": (
        {
            "url": "https://hooks.example.org/x",
            "secret": "hmac-secret-1",
            "authorization": "Bearer abcdefgh",
        },
        ("secret", "authorization"),
    ),
    "pushover": ({"app_token": TOKEN, "user_key": USER}, ("app_token", "user_key")),
    "email": (
        {
            "host": "smtp.example.org",
            "username": "u",
            "password": "smtp-pass-1",
            "from_addr": "a@example.org",
            "to": ["b@example.org"],
        },
        ("password",),
    ),
    "apprise": ({"urls": "tgram://123456:ABCDEFsecret/987654"}, ("urls",)),
    "cap": (
        {"endpoints": "https://cap.example.org/in", "authorization": "Basic eHl6"},
        ("authorization",),
    ),
}


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_secrets_only_in_dumps_that_ask_for_them(kind):
    values, names = SECRETS[kind]
    config = parse_config({"kind": kind, **values})
    shown = dump_config(config, include_secrets=False)
    stored = dump_config(config, include_secrets=True)
    for name in names:
        assert name not in shown
        assert stored[name] == values[name]
        assert str(values[name]) not in json.dumps(shown)
        assert str(values[name]) not in repr(config)
    # A dump without secrets validates again (an import without secrets).
    assert dump_config(parse_config(shown), include_secrets=False) == shown


def test_channel_spec_and_webpush_defaults():
    spec = ChannelSpec.model_validate(
        {"name": "Phones", "min_severity": "high", "config": {"kind": "webpush"}}
    )
    assert spec.enabled and spec.cooldown_seconds == 0
    assert dump_config(spec.config, include_secrets=False) == {
        "kind": "webpush",
        "users": [],
        "ttl": 86400,
    }
    cap = parse_config({"kind": "cap"})
    assert cap.endpoints == [] and cap.area_desc == ""


@pytest.mark.parametrize(
    ("config", "field", "text"),
    [
        ({"kind": "webhook", "url": "ftp://x.example/"}, "url", "must start with http"),
        ({"kind": "webhook", "url": "https://"}, "url", "has no host"),
        ({"kind": "webhook", "url": "https://u:pw@x.example/"}, "url", "user:password@"),
        ({"kind": "webhook", "url": "https://x.example/", "method": "GET"}, "method", "POST"),
        ({"kind": "webhook", "url": "https://x.example/", "timeout": 61}, "timeout", "60"),
        (
            {"kind": "webhook", "url": "https://x.example/", "headers": {"Bad Name": "1"}},
            "headers",
            "not a valid header name",
        ),
        (
            {"kind": "webhook", "url": "https://x.example/", "headers": {"Authorization": "x"}},
            "headers",
            "Authorization field",
        ),
        (
            {
                "kind": "webhook",
                "url": "https://x.example/",
                "headers": {f"X-H{i}": "v" for i in range(21)},
            },
            "headers",
            "at most 20",
        ),
        (
            {"kind": "webhook", "url": "https://x.example/", "body_template": "{nope"},
            "body_template",
            "not valid JSON",
        ),
        (
            {"kind": "webhook", "url": "https://x.example/", "body_template": '{"a": "${nope}"}'},
            "body_template",
            "unknown placeholder ${nope}",
        ),
        (
            {"kind": "webhook", "url": "https://x.example/", "body_template": '{"a": "5$"}'},
            "body_template",
            "$$",
        ),
        (
            {
                "kind": "email",
                "host": "smtp.example.org",
                "from_addr": "not-an-address",
                "to": ["b@example.org"],
            },
            "from_addr",
            "not an email address",
        ),
        (
            {
                "kind": "email",
                "host": "smtp.example.org",
                "from_addr": "a@example.org",
                "to": "b@example.org\nbroken@",
            },
            "to",
            "'broken@' is not an email address",
        ),
        (
            {"kind": "email", "host": "smtp.example.org", "from_addr": "a@example.org", "to": []},
            "to",
            "at least 1",
        ),
        ({"kind": "pushover", "priority": 2}, "", "needs retry and expire"),
        ({"kind": "pushover", "priority": 2, "retry": 10, "expire": 60}, "retry", "30"),
        ({"kind": "pushover", "priority": 2, "retry": 60, "expire": 20000}, "expire", "10800"),
        ({"kind": "pushover", "priority": 3}, "priority", "2"),
        ({"kind": "cap", "endpoints": "https://ok.example/\nnot a url"}, "endpoints", "must"),
        ({"kind": "webpush", "bogus": 1}, "bogus", "Extra inputs"),
    ],
)
def test_validation_errors(config, field, text):
    with pytest.raises(ValidationError) as caught:
        parse_config(config)
    errors = error_messages(caught.value)
    assert field in errors, errors
    assert text in errors[field]


def test_apprise_url_errors_do_not_repeat_the_url():
    with pytest.raises(ValidationError) as caught:
        parse_config({"kind": "apprise", "urls": "json://127.0.0.1/ok\nnosuchservice://tok3n-XYZ"})
    errors = error_messages(caught.value)
    assert "line 2 (nosuchservice://…)" in errors["urls"]
    assert "tok3n-XYZ" not in json.dumps(errors)
    assert "tok3n-XYZ" not in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        ChannelSpec.model_validate(
            {"name": "x", "config": {"kind": "pushover", "app_token": "bad token-XYZ"}}
        )
    assert error_messages(caught.value) == {
        "config.app_token": "must be letters and digits only (as Pushover shows it)"
    }
    assert "token-XYZ" not in str(caught.value)


# --- the message, from real rows --------------------------------------------------------------


def test_message_from_event_and_snapshot_through_a_channel(app_factory):
    with HttpReceiver() as hook:
        app = app_factory(GLIMPSER_PUBLIC_URL=PUBLIC_URL, GLIMPSER_ALLOW_LOOPBACK_SOURCES="1")
        settings = app.extensions["glimpser.settings"]
        stream = add_stream("Back yard")
        snapshot = add_snapshot(app, stream, SNAPSHOT)
        storage = get_storage(settings)
        with database.connection_context():
            event = Event.create(
                stream=stream, snapshot=snapshot, kind="motion", severity="medium", title="Motion"
            )
            message = message_for(event, settings, storage)
            assert message.image == storage.get(snapshot.storage_key) == SNAPSHOT
            assert message.image_name == f"glimpser-event-{event.id}.jpg"
            assert message.url == f"{PUBLIC_URL}/events/{event.id}"
            assert message.body == "Motion was detected on Back yard."
            assert message.stream_name == "Back yard" and message.stream_id == stream.id
            assert message.created_at.tzinfo is not None and message.severity == "medium"

            channel = NotificationChannel.create(
                name="Hook", kind="webhook", config={"kind": "webhook", "url": hook.url("/in")}
            )
            delivery = Delivery.create(event=event, channel=channel)
            result = webhook.deliver(channel, event, delivery, settings, None)
            assert result.status_code == 200
            [request] = hook.requests
            assert request.header("x-glimpser-delivery") == str(delivery.id)
            assert request.json()["url"] == f"{PUBLIC_URL}/events/{event.id}"

            # The snapshot's file is gone: the message says so (no image) instead of failing.
            storage.delete(snapshot.storage_key)
            gone = message_for(event, settings, storage)
            assert gone.image is None and gone.image_name == ""
            assert gone.as_template_fields()["has_image"] is False


def test_message_without_public_url_has_no_link(app_factory):
    app = app_factory()
    settings = app.extensions["glimpser.settings"]
    with database.connection_context():
        event = Event.create(kind="capture_failed", severity="high", title="", description="")
        message = message_for(event, settings, get_storage(settings))
    assert message.url == "" and message.image is None and message.stream_name == ""
    assert message.title == message.body == "A stream stopped capturing."
