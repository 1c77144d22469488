"""Admin → Channels through the Flask test client, on real Redis and a real database: the form
built from each kind's schema, validation (422, nothing saved), write-only secrets (never
rendered, blank keeps, "remove" clears), enable/disable over htmx, delete, "send test" through a
real RQ job to a loopback receiver, the circuit breaker shown and reset, CSRF and admin-only."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from glimpser import jobs, times
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import (
    AuditLog,
    Delivery,
    Event,
    NotificationChannel,
    PushSubscription,
    Rule,
    User,
)
from glimpser.notify.dispatch import breaker_for
from glimpser.notify.schemas import CONFIG_BY_KIND, KIND_LABELS, parse_config
from tests.conftest import run_queued_jobs
from tests.helpers import csrf_from, login, setup_admin
from tests.notify.receivers import HttpReceiver, Reply

PASSWORD = "correct horse battery"
LIST = "/admin/channels/"
NEW = "/admin/channels/new"

# Every secret below contains SECRET: no rendered page may contain that string.
VALID: dict[str, dict[str, str]] = {
    "webhook": {
        "config.url": "https://hooks.example.com/glimpser",
        "config.method": "PUT",
        "config.headers": "X-Team: ops\nX-Env: prod",
        "config.authorization": "Bearer tok-SECRET-auth",
        "config.body_template": '{"text": "${title}", "id": "${event_id}"}',
        "config.secret": "whsec-SECRET-sign",
        "config.timeout": "5",
    },
    "webpush": {"config.users": "alice\nbob", "config.ttl": "3600"},
    "pushover": {
        "config.app_token": "appSECRETtoken123",
        "config.user_key": "userSECRETkey456",
        "config.device": "phone, tablet",
        "config.priority": "2",
        "config.retry": "60",
        "config.expire": "3600",
        "config.sound": "siren",
        "config.attach_snapshot": "1",
    },
    "email": {
        "config.host": "smtp.example.com",
        "config.port": "587",
        "config.security": "starttls",
        "config.username": "glimpser",
        "config.password": "smtp-SECRET-pass",
        "config.from_addr": "glimpser@example.com",
        "config.to": "ops@example.com\nboss@example.com",
        "config.subject_prefix": "[Cams]",
        "config.timeout": "30",
    },
    "cap": {
        "config.endpoints": "https://cap.example.org/in\nhttps://backup.example.org/in",
        "config.authorization": "Bearer capSECRET",
        "config.timeout": "10",
        "config.area_desc": "Front gate",
    },
    "apprise": {
        "config.urls": "json://hooks.example.com/appriseSECRET123",
        "config.attach_snapshot": "1",
    },
}
# kind → (invalid fields, the form field that must show the error, a fragment of its message)
INVALID: dict[str, tuple[dict[str, str], str, str]] = {
    "webhook": ({"config.url": "ftp://example.com/x"}, "config.url", "http:// or https://"),
    "webpush": ({"config.ttl": "-5"}, "config.ttl", "greater than or equal to 0"),
    "pushover": (
        {**VALID["pushover"], "config.retry": "", "config.expire": ""},
        "config",
        "needs retry and expire",
    ),
    "email": ({**VALID["email"], "config.to": "not-an-address"}, "config.to", "not an email"),
    "cap": ({"config.endpoints": "javascript:alert(1)"}, "config.endpoints", "http://"),
    "apprise": ({"config.urls": "no-scheme-SECRET-here"}, "config.urls", "line 1 is not a URL"),
}


@pytest.fixture
def notify_app(app_factory):
    app = app_factory(
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_NOTIFY_BACKOFF_SECONDS="1",
        GLIMPSER_NOTIFY_MAX_ATTEMPTS="2",
        GLIMPSER_BREAKER_THRESHOLD="2",
        GLIMPSER_BREAKER_COOLDOWN_SECONDS="300",
    )
    jobs.configure(app.extensions["glimpser.settings"])
    yield app
    jobs.configure(None)


@pytest.fixture
def admin(notify_app):
    client = notify_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


@pytest.fixture
def db_admin(db_app):
    """Signed in on SQLite and on PostgreSQL."""
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


@pytest.fixture
def hook():
    with HttpReceiver() as receiver:
        yield receiver


def token(client) -> str:
    return csrf_from(client.get(LIST).get_data(as_text=True))


def post(client, url: str, data: dict | None = None, htmx: bool = False, **kwargs):
    headers = {"X-CSRFToken": token(client)}
    if htmx:
        headers["HX-Request"] = "true"
    return client.post(url, data=data or {}, headers=headers, **kwargs)


def form_data(kind: str, name: str, fields: dict[str, str], **common: str) -> dict[str, str]:
    data = {"name": name, "kind": kind, "enabled": "1", "min_severity": "info"}
    data.update(common)
    data.update(fields)
    return data


def channel_named(name: str) -> NotificationChannel | None:
    with database.connection_context():
        return NotificationChannel.get_or_none(NotificationChannel.name == name)


def channel_count() -> int:
    with database.connection_context():
        return NotificationChannel.select().count()


def create(client, kind: str, name: str, fields: dict[str, str], **common: str):
    return post(client, NEW, form_data(kind, name, fields, **common))


def webhook_to(client, receiver: HttpReceiver, name: str = "Hook", **extra: str):
    response = create(
        client,
        "webhook",
        name,
        {"config.url": receiver.url("/hook"), "config.timeout": "2", **extra},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return channel_named(name)


def html(response) -> str:
    return response.get_data(as_text=True)


def error_at(page: str, field_name: str) -> str:
    """The error message rendered for a form field (found by its element id)."""
    ident = "f-" + field_name.replace(".", "-").replace("_", "-")
    match = re.search(rf'<small id="{re.escape(ident)}-error" class="error">([^<]*)</small>', page)
    assert match, f"no error shown at {field_name}"
    return match.group(1)


# --- the form ---------------------------------------------------------------------------------


def test_admin_pages_link_to_channels_and_deliveries(admin):
    page = html(admin.get("/admin/"))
    assert 'href="/admin/channels/"' in page and 'href="/admin/deliveries/"' in page
    listing = html(admin.get(LIST))
    assert "No channels" in listing
    assert "GLIMPSER_PUBLIC_URL is not set" in listing  # links are left out of notifications


def test_no_public_url_note_when_it_is_set(app_factory):
    client = app_factory(GLIMPSER_PUBLIC_URL="https://glimpser.example.org").test_client()
    setup_admin(client, "alice", PASSWORD)
    assert "GLIMPSER_PUBLIC_URL is not set" not in html(client.get(LIST))
    assert "GLIMPSER_PUBLIC_URL is not set" not in html(client.get(NEW))


@pytest.mark.parametrize("kind", list(CONFIG_BY_KIND))
def test_each_kind_renders_its_schema_fields(admin, kind):
    model = CONFIG_BY_KIND[kind]
    for page in (
        html(admin.get(f"{NEW}?kind={kind}")),
        html(admin.get(f"{LIST}kind-fields?kind={kind}")),
    ):
        for name, info in model.model_fields.items():
            if name == "kind":
                continue
            assert f'name="config.{name}"' in page, name
            assert info.title in page.replace("&#39;", "'"), info.title
    new_page = html(admin.get(f"{NEW}?kind={kind}"))
    assert f'<option value="{kind}" selected>{KIND_LABELS[kind]}</option>' in new_page
    for name in ("name", "enabled", "min_severity", "cooldown_seconds"):
        assert f'name="{name}"' in new_page
    # The kind select swaps the kind's fields in over htmx.
    assert 'hx-get="/admin/channels/kind-fields"' in new_page


def test_lines_and_headers_widgets_are_textareas_and_limits_come_from_the_schema(admin):
    page = html(admin.get(f"{NEW}?kind=webhook"))
    assert '<textarea id="f-config-headers" name="config.headers"' in page
    assert 'id="f-config-timeout" name="config.timeout"' in page
    assert 'min="1" max="60"' in page
    email = html(admin.get(f"{NEW}?kind=email"))
    assert '<textarea id="f-config-to" name="config.to"' in email
    apprise = html(admin.get(f"{NEW}?kind=apprise"))
    assert '<textarea id="f-config-urls" name="config.urls"' in apprise


def test_unknown_kind_fragment_is_a_bad_request(admin):
    assert admin.get(f"{LIST}kind-fields?kind=carrier-pigeon").status_code == 400


@pytest.mark.parametrize("kind", list(CONFIG_BY_KIND))
def test_create_each_kind_through_the_form(db_admin, kind):
    response = create(
        db_admin, kind, f"My {kind}", VALID[kind], min_severity="medium", cooldown_seconds="120"
    )
    assert response.status_code == 302, html(response)
    assert response.headers["Location"] == LIST
    channel = channel_named(f"My {kind}")
    assert channel is not None
    assert (channel.kind, channel.enabled, channel.min_severity, channel.cooldown_seconds) == (
        kind,
        True,
        "medium",
        120,
    )
    config = parse_config(channel.config)  # what is stored validates with the kind's schema
    assert config.kind == kind
    for name in CONFIG_BY_KIND[kind].SECRET_FIELDS:
        submitted = VALID[kind].get(f"config.{name}", "")
        assert config.secret_value(name) == submitted.strip(), name
    with database.connection_context():
        entry = AuditLog.get(AuditLog.action == "channel.create")
    assert entry.target == f"channel:{channel.id}" and entry.detail["kind"] == kind
    assert "SECRET" not in str(entry.detail)

    # Secrets never come back: not in the list, the edit form or the kind fragment.
    for url in (
        LIST,
        f"{LIST}{channel.id}/edit",
        f"{LIST}kind-fields?kind={kind}&channel_id={channel.id}",
        f"{LIST}{channel.id}/delete",
    ):
        page = html(db_admin.get(url))
        assert "SECRET" not in page, url
    if CONFIG_BY_KIND[kind].SECRET_FIELDS:
        edit = html(db_admin.get(f"{LIST}{channel.id}/edit"))
        assert "stored — leave blank to keep" in edit
        assert "Remove the stored value" in edit


def test_stored_values_come_back_into_the_edit_form(admin):
    create(admin, "webhook", "Hook", VALID["webhook"])
    create(admin, "email", "Mail", VALID["email"])
    hook, mail = channel_named("Hook"), channel_named("Mail")
    assert hook.config["headers"] == {"X-Team": "ops", "X-Env": "prod"}
    page = html(admin.get(f"{LIST}{hook.id}/edit"))
    headers = re.search(r'name="config.headers"[^>]*>([^<]*)</textarea>', page).group(1)
    assert sorted(headers.splitlines()) == ["X-Env: prod", "X-Team: ops"]
    assert 'value="https://hooks.example.com/glimpser"' in page
    assert '<option value="PUT" selected>' in page
    assert mail.config["to"] == ["ops@example.com", "boss@example.com"]
    assert "ops@example.com\nboss@example.com</textarea>" in html(
        admin.get(f"{LIST}{mail.id}/edit")
    )


@pytest.mark.parametrize("kind", list(CONFIG_BY_KIND))
def test_invalid_input_is_422_with_the_message_at_the_field_and_nothing_saved(admin, kind):
    fields, where, message = INVALID[kind]
    response = create(admin, kind, "Broken", fields)
    assert response.status_code == 422
    page = html(response)
    assert "Please correct the fields marked below." in page
    if where == "config":
        assert message in page
    else:
        assert message in error_at(page, where)
    assert "SECRET" not in page  # typed secrets are not sent back, even to their author
    assert channel_count() == 0
    with database.connection_context():
        assert not AuditLog.select().where(AuditLog.action == "channel.create").exists()


def test_name_is_required_and_unique(admin):
    response = create(admin, "webhook", "", VALID["webhook"])
    assert response.status_code == 422
    assert error_at(html(response), "name")
    assert create(admin, "webhook", "Ops", VALID["webhook"]).status_code == 302
    again = create(admin, "webhook", "ops", VALID["webhook"])
    assert again.status_code == 422
    assert "Another channel already has this name." in error_at(html(again), "name")
    assert channel_count() == 1


@pytest.mark.parametrize(
    ("kind", "fields", "where", "message"),
    [
        ("webhook", {"config.url": "http://169.254.169.254/latest"}, "config.url", "link-local"),
        ("webhook", {"config.url": "http://127.0.0.1:8080/hook"}, "config.url", "loopback"),
        (
            "cap",
            {"config.endpoints": "https://ok.example.org/\nhttp://[fe80::1]/"},
            "config.endpoints",
            "link-local",
        ),
        ("email", {**VALID["email"], "config.host": "169.254.10.1"}, "config.host", "link-local"),
    ],
)
def test_targets_the_ssrf_guard_refuses_are_caught_on_the_form(app, kind, fields, where, message):
    client = app.test_client()  # GLIMPSER_ALLOW_LOOPBACK_SOURCES is not set here
    setup_admin(client, "alice", PASSWORD)
    response = create(client, kind, "Inside", fields)
    assert response.status_code == 422
    assert message in error_at(html(response), where)
    assert channel_count() == 0


def test_a_new_pushover_channel_needs_its_token_and_key(admin):
    fields = {**VALID["pushover"], "config.app_token": "", "config.user_key": ""}
    response = create(admin, "pushover", "Phone", fields)
    assert response.status_code == 422
    page = html(response)
    assert error_at(page, "config.app_token") == "Application token is required."
    assert error_at(page, "config.user_key") == "User or group key is required."
    assert channel_count() == 0


def test_unknown_kind_is_refused(admin):
    response = create(admin, "telegraph", "Old", {})
    assert response.status_code == 422
    assert "Choose what kind of channel this is." in html(response)
    assert channel_count() == 0


# --- secrets on edit --------------------------------------------------------------------------


def test_editing_with_a_blank_secret_keeps_it_and_remove_clears_it(admin):
    assert create(admin, "webhook", "Hook", VALID["webhook"]).status_code == 302
    channel = channel_named("Hook")
    edit_url = f"{LIST}{channel.id}/edit"
    blank = {
        **VALID["webhook"],
        "config.secret": "",
        "config.authorization": "",
        "config.timeout": "7",
    }
    assert post(admin, edit_url, form_data("webhook", "Hook", blank)).status_code == 302
    channel = channel_named("Hook")
    assert channel.config["timeout"] == 7
    assert channel.config["secret"] == "whsec-SECRET-sign"
    assert channel.config["authorization"] == "Bearer tok-SECRET-auth"

    removing = form_data("webhook", "Hook", blank, remove_secret="secret")
    assert post(admin, edit_url, removing).status_code == 302
    channel = channel_named("Hook")
    assert channel.config["secret"] == ""
    assert channel.config["authorization"] == "Bearer tok-SECRET-auth"
    page = html(admin.get(edit_url))
    assert 'id="f-config-secret-remove"' not in page  # nothing stored any more
    assert 'id="f-config-authorization-remove"' in page
    assert "SECRET" not in page

    replaced = {**blank, "config.authorization": "Bearer new-SECRET"}
    assert post(admin, edit_url, form_data("webhook", "Hook", replaced)).status_code == 302
    assert channel_named("Hook").config["authorization"] == "Bearer new-SECRET"
    with database.connection_context():
        updates = list(AuditLog.select().where(AuditLog.action == "channel.update"))
    assert len(updates) == 3
    assert updates[1].detail["removed_secrets"] == ["secret"]


def test_a_required_secret_cannot_be_removed(admin):
    create(admin, "pushover", "Phone", VALID["pushover"])
    channel = channel_named("Phone")
    fields = {**VALID["pushover"], "config.app_token": "", "config.user_key": ""}
    data = form_data("pushover", "Phone", fields, remove_secret="app_token")
    response = post(admin, f"{LIST}{channel.id}/edit", data)
    assert response.status_code == 422
    assert error_at(html(response), "config.app_token") == "Application token is required."
    assert channel_named("Phone").config["app_token"] == "appSECRETtoken123"
    # Left blank without "remove", both are kept.
    assert (
        post(admin, f"{LIST}{channel.id}/edit", form_data("pushover", "Phone", fields)).status_code
        == 302
    )
    assert channel_named("Phone").config["user_key"] == "userSECRETkey456"


def test_changing_the_kind_does_not_carry_secrets_over(admin):
    create(admin, "webhook", "Hook", VALID["webhook"])
    channel = channel_named("Hook")
    fields = {**VALID["cap"], "config.authorization": ""}
    assert (
        post(admin, f"{LIST}{channel.id}/edit", form_data("cap", "Hook", fields)).status_code == 302
    )
    channel = channel_named("Hook")
    assert channel.kind == "cap"
    assert channel.config["authorization"] == ""  # the webhook's was not reused


# --- list, toggle, delete ---------------------------------------------------------------------


def test_list_shows_kind_severity_cooldown_and_the_rules_using_it(admin):
    create(admin, "webhook", "Hook", VALID["webhook"], min_severity="high", cooldown_seconds="90")
    channel = channel_named("Hook")
    with database.connection_context():
        Rule.create(name="Doorbell rule", conditions={"changed": True}, channels=[channel.id])
    page = html(admin.get(LIST))
    row = page[page.index(f'id="channel-{channel.id}"') :]
    assert KIND_LABELS["webhook"] in row
    assert "sev-high" in row and "90 s" in row
    assert "Doorbell rule" in row
    assert "closed" in row  # the circuit


def test_list_counts_the_deliveries_of_the_last_24_hours_by_status(db_admin):
    create(db_admin, "webhook", "Hook", VALID["webhook"])
    channel = channel_named("Hook")
    now = times.utcnow()
    with database.connection_context():
        for status, age in [("sent", 1), ("sent", 2), ("failed", 3), ("sent", 30)]:
            event = Event.create(kind="motion", title=f"{status} {age}")
            Delivery.create(
                event=event,
                channel=channel,
                status=status,
                created_at=now - timedelta(hours=age),
            )
    page = html(db_admin.get(LIST))
    row = page[page.index(f'id="channel-{channel.id}"') :]
    counts = re.findall(r'status=(\w+)" class="nowrap">(\d+) (\w+)</a>', row)
    assert counts == [("sent", "2", "sent"), ("failed", "1", "failed")]
    assert f"/admin/deliveries/?channel={channel.id}&amp;status=failed" in row


def test_toggle_over_htmx_and_plain_post(admin):
    create(admin, "webhook", "Hook", VALID["webhook"])
    channel = channel_named("Hook")
    url = f"{LIST}{channel.id}/toggle"
    response = post(admin, url, htmx=True)
    assert response.status_code == 200
    fragment = html(response)
    assert fragment.lstrip().startswith(f'<tr id="channel-{channel.id}">')
    assert ">off<" in fragment and "Enable" in fragment
    assert channel_named("Hook").enabled is False
    response = post(admin, url)
    assert response.status_code == 302
    assert channel_named("Hook").enabled is True
    with database.connection_context():
        actions = [e.action for e in AuditLog.select().order_by(AuditLog.id)]
    assert actions[-2:] == ["channel.disable", "channel.enable"]


def test_delete_asks_first_and_removes_deliveries_and_rule_references(admin):
    create(admin, "webhook", "Hook", VALID["webhook"])
    create(admin, "email", "Mail", VALID["email"])
    hook, mail = channel_named("Hook"), channel_named("Mail")
    with database.connection_context():
        rule = Rule.create(name="R", conditions={"changed": True}, channels=[hook.id, mail.id])
        event = Event.create(kind="motion", title="Something")
        Delivery.create(event=event, channel=hook, status="sent")
        Delivery.create(event=event, channel=mail, status="failed")
    confirm = html(admin.get(f"{LIST}{hook.id}/delete"))
    assert "Delete channel “Hook”?" in confirm and "1 delivery" in confirm and "R" in confirm
    assert channel_named("Hook") is not None  # a GET deletes nothing
    response = post(admin, f"{LIST}{hook.id}/delete")
    assert response.status_code == 302
    assert channel_named("Hook") is None
    with database.connection_context():
        assert [d.channel_id for d in Delivery.select()] == [mail.id]
        assert Rule.get_by_id(rule.id).channels == [mail.id]
        assert Event.get_or_none(Event.id == event.id) is not None
        assert AuditLog.select().where(AuditLog.action == "channel.delete").count() == 1
    assert admin.get(f"{LIST}{hook.id}/edit").status_code == 404


# --- kinds with their own notes ---------------------------------------------------------------


def test_web_push_form_points_to_the_profile_page_and_counts_subscriptions(admin):
    with database.connection_context():
        alice = User.get(User.username == "alice")
        for i in range(2):
            PushSubscription.create(
                user=alice, endpoint=f"https://push.example.com/{i}", p256dh="k", auth="a"
            )
    page = html(admin.get(f"{NEW}?kind=webpush"))
    assert 'href="/profile/"' in page and "profile page" in page
    assert "2 browser subscriptions so far" in page
    create(admin, "webpush", "Browsers", {"config.users": "", "config.ttl": "60"})
    channel = channel_named("Browsers")
    assert "This channel reaches 2 browser subscriptions" in html(
        admin.get(f"{LIST}{channel.id}/edit")
    )
    assert "2 browser subscriptions" in html(admin.get(LIST))


def test_cap_form_and_list_show_the_feed_url(admin):
    page = html(admin.get(f"{NEW}?kind=cap"))
    assert "http://localhost/cap/alerts.atom" in page
    create(admin, "cap", "Warnings", {"config.endpoints": "", "config.timeout": "10"})
    assert "http://localhost/cap/alerts.atom" in html(admin.get(LIST))


# --- send test --------------------------------------------------------------------------------


def card(client, delivery_id: int) -> str:
    return html(client.get(f"/admin/deliveries/{delivery_id}/card"))


def test_send_test_reaches_the_webhook_receiver_and_the_card_says_sent(admin, notify_app, hook):
    channel = webhook_to(admin, hook, "Hook", **{"config.secret": "sig-SECRET"})
    response = post(admin, f"{LIST}{channel.id}/test", htmx=True)
    assert response.status_code == 200
    fragment = html(response)
    assert "queued" in fragment
    assert 'hx-trigger="every 1s"' in fragment  # it polls until there is an outcome
    assert hook.requests == []  # the web request only queued it

    with database.connection_context():
        delivery = Delivery.get(Delivery.channel == channel.id)
        event = Event.get_by_id(delivery.event_id)
    assert (event.kind, event.severity, event.title) == (
        "test",
        "info",
        "Test notification from Glimpser",
    )
    assert event.stream_id is None and event.data == {"test": True}
    assert "Test notification from Glimpser" in html(admin.get(f"/events/{event.id}"))

    run_queued_jobs(notify_app, ("notify",))
    (request,) = hook.requests
    assert request.json()["title"] == "Test notification from Glimpser"
    assert request.json()["data"] == {"test": True}
    assert request.header("X-Glimpser-Signature").startswith("sha256=")

    done = card(admin, delivery.id)
    assert 'data-status="sent"' in done and "HTTP 200" in done
    assert "hx-trigger" not in done  # polling stops
    with database.connection_context():
        entry = AuditLog.get(AuditLog.action == "channel.test")
    assert entry.detail["delivery_id"] == delivery.id
    for url in (LIST, "/admin/deliveries/", f"{LIST}{channel.id}/edit"):
        assert "SECRET" not in html(admin.get(url))


def test_send_test_without_htmx_redirects_to_the_log(admin, hook):
    channel = webhook_to(admin, hook)
    response = post(admin, f"{LIST}{channel.id}/test")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/deliveries/?channel={channel.id}"


def test_send_test_to_a_failing_receiver_shows_retrying_then_failed(admin, notify_app, hook):
    hook.default = Reply(500, "receiver is broken <b>today</b>")
    channel = webhook_to(admin, hook)
    post(admin, f"{LIST}{channel.id}/test", htmx=True)
    run_queued_jobs(notify_app, ("notify",))
    with database.connection_context():
        delivery = Delivery.get(Delivery.channel == channel.id)
    page = card(admin, delivery.id)
    assert 'data-status="retrying"' in page and "HTTP 500" in page
    assert "receiver is broken &lt;b&gt;today&lt;/b&gt;" in page
    assert 'hx-trigger="every 1s"' in page

    run_queued_jobs(notify_app, ("notify",), wait_for_scheduled=1.5)
    page = card(admin, delivery.id)
    assert 'data-status="failed"' in page and "HTTP 500" in page
    assert "receiver is broken" in page
    assert len(hook.requests) == 2


def test_breaker_state_is_shown_and_reset_closes_it(admin, notify_app, hook):
    hook.default = Reply(503, "maintenance")
    channel = webhook_to(admin, hook)
    for _ in range(2):  # threshold 2: two failures in a row open the circuit
        post(admin, f"{LIST}{channel.id}/test", htmx=True)
    run_queued_jobs(notify_app, ("notify",))
    page = html(admin.get(LIST))
    row = page[page.index(f'id="channel-{channel.id}"') :]
    assert "breaker-open" in row
    assert re.search(r"retry in \d+ s", row)
    assert "2 failures in a row" in row
    assert f'action="{LIST}{channel.id}/breaker/reset"' in row

    response = post(admin, f"{LIST}{channel.id}/breaker/reset", htmx=True)
    assert response.status_code == 200
    assert "breaker-closed" in html(response) and "Reset" not in html(response)
    settings = notify_app.extensions["glimpser.settings"]
    state = breaker_for(notify_app.extensions["glimpser.redis"], channel.id, settings).state()
    assert (state.state, state.failures) == ("closed", 0)
    with database.connection_context():
        assert AuditLog.select().where(AuditLog.action == "channel.breaker_reset").count() == 1


# --- access -----------------------------------------------------------------------------------


def post_routes(channel_id: int) -> list[str]:
    return [
        NEW,
        f"{LIST}{channel_id}/edit",
        f"{LIST}{channel_id}/toggle",
        f"{LIST}{channel_id}/breaker/reset",
        f"{LIST}{channel_id}/delete",
        f"{LIST}{channel_id}/test",
    ]


def test_every_post_needs_the_csrf_token(admin):
    create(admin, "webhook", "Hook", VALID["webhook"])
    channel = channel_named("Hook")
    for url in post_routes(channel.id):
        response = admin.post(url, data=form_data("webhook", "Other", VALID["webhook"]))
        assert response.status_code == 400, url
    channel_after = channel_named("Hook")
    assert channel_after is not None and channel_after.enabled
    assert channel_named("Other") is None
    with database.connection_context():
        assert Delivery.select().count() == 0


def test_viewers_get_403_everywhere(admin, notify_app):
    create(admin, "webhook", "Hook", VALID["webhook"])
    channel = channel_named("Hook")
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    viewer = notify_app.test_client()
    login(viewer, "bob", PASSWORD)
    headers = {"X-CSRFToken": csrf_from(html(viewer.get("/")))}
    for url in (
        LIST,
        NEW,
        f"{LIST}kind-fields?kind=webhook",
        f"{LIST}{channel.id}/edit",
        f"{LIST}{channel.id}/delete",
    ):
        assert viewer.get(url).status_code == 403, url
    for url in post_routes(channel.id):
        assert viewer.post(url, headers=headers).status_code == 403, url
    assert channel_named("Hook").enabled


# --- channel_store: what the form, the import and the API write through ----------------------


def test_channel_store_keeps_stored_secrets_unless_removed(app):
    from pydantic import ValidationError

    from glimpser.notify import channel_store
    from glimpser.notify.schemas import ChannelSpec

    def spec(**config) -> ChannelSpec:
        return ChannelSpec(name="Mail", config={"kind": "email", **config})

    base = {"host": "smtp.example.com", "from_addr": "a@example.com", "to": ["b@example.com"]}
    with database.connection_context():
        channel = channel_store.create_channel(spec(**base, username="u", password="store-SECRET"))
        assert channel.config["password"] == "store-SECRET"
        # An import without secrets (or a blank form field) keeps the stored one.
        channel = channel_store.update_channel(channel, spec(**base, username="u", port=465))
        assert (channel.config["port"], channel.config["password"]) == (465, "store-SECRET")
        # Keeping it must still give a valid configuration: a password needs a username.
        with pytest.raises(ValidationError):
            channel_store.update_channel(channel, spec(**base))
        channel = channel_store.update_channel(channel, spec(**base), remove_secrets=["password"])
        assert channel.config["password"] == "" and channel.config["username"] == ""
        assert parse_config(channel.config).kind == "email"
