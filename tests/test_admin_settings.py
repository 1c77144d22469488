"""Admin → Settings in one process: the form, validation, storage, audit, secrets, the
environment winning, the settings version, and where each setting takes effect.

(tests/test_admin_settings_live.py proves that other, already running processes follow.)
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
import redis as redis_lib
from markupsafe import escape

from glimpser import runtime_settings as rs
from glimpser.analysis.ai import AIClient
from glimpser.db import database
from glimpser.models import AuditLog, Setting
from glimpser.web.app_settings import current_settings
from tests.helpers import csrf_from, form_post, login, logout, setup_admin
from tests.openai_server import Reply

PAGE = "/admin/settings/"


def stored() -> dict[str, Any]:
    with database.connection_context():
        return rs.load_stored()


def audit_rows() -> list[AuditLog]:
    with database.connection_context():
        return list(AuditLog.select().where(AuditLog.action == "settings.update"))


def form_data(app, **changes: Any) -> dict[str, str]:
    """The form as the page posts it (current values), with `changes` applied."""
    base = app.extensions["glimpser.settings"]
    values = rs.values_of(rs.overlay(base, stored()), stored())
    values.update(changes)
    data: dict[str, str] = {}
    for name, value in values.items():
        if rs.env_set(base, name):
            continue
        if name in rs.SECRET_FIELDS:
            data[name] = str(changes.get(name, ""))
        elif isinstance(value, bool):
            if value:
                data[name] = "1"
        elif isinstance(value, list | tuple):
            data[name] = "\n".join(value)
        else:
            data[name] = str(value)
    return data


def save(client, app, **changes: Any):
    return form_post(client, PAGE, data=form_data(app, **changes))


@pytest.fixture
def admin(db_app):
    client = db_app.test_client()
    setup_admin(client)
    return client


def test_the_page_shows_every_group_from_the_schema(app):
    client = app.test_client()
    setup_admin(client)
    html = client.get(PAGE).get_data(as_text=True)
    for _key, title, _help in rs.GROUPS:
        assert f">{title}</h2>" in html
    for name, info in rs.FIELDS.items():
        assert f'name="{name}"' in html, name
        assert escape(info.title) in html
    assert 'min="16384"' in html  # bounds from config.INT_LIMITS
    assert "Test connection" in html


def test_a_save_is_stored_audited_announced_and_idempotent(admin, db_app, redis_client):
    before_version = int(redis_client.get(rs.VERSION_KEY) or 0)
    answer = save(
        admin,
        db_app,
        default_interval=30,
        source_deny_cidrs=["10.0.0.0/8", "192.168.0.0/16"],
        ai_base_url="http://127.0.0.1:9/v1",
        ai_model="llava",
        ai_api_key="sk-new-secret-key",
        event_retention_days=5,
    )
    assert answer.status_code == 302
    values = stored()
    assert values["default_interval"] == 30
    assert values["source_deny_cidrs"] == ["10.0.0.0/8", "192.168.0.0/16"]
    assert values["ai_api_key"] == "sk-new-secret-key"
    assert "retention_max_age_days" not in values  # unchanged: no row, the default applies
    assert int(redis_client.get(rs.VERSION_KEY)) == before_version + 1
    [entry] = audit_rows()
    changes = entry.detail["changes"]
    assert changes["default_interval"] == [60, 30]
    assert changes["ai_api_key"] == [None, "••••"]
    assert "sk-new-secret-key" not in str(entry.detail)
    with db_app.test_request_context():
        assert current_settings().source_deny_cidrs == ("10.0.0.0/8", "192.168.0.0/16")
        assert current_settings().default_interval == 30

    again = save(admin, db_app)  # the same values (the key left blank: kept)
    assert again.status_code == 302
    assert stored() == values
    assert len(audit_rows()) == 1  # nothing changed: no entry, no announcement
    assert int(redis_client.get(rs.VERSION_KEY)) == before_version + 1
    assert "Nothing changed." in admin.get(PAGE).get_data(as_text=True)


def test_a_value_back_to_its_default_removes_the_row(app):
    client = app.test_client()
    setup_admin(client)
    save(client, app, event_retention_days=5)
    assert stored() == {"event_retention_days": 5}
    save(client, app, event_retention_days=30)
    assert stored() == {}


def test_settings_set_in_the_environment_are_read_only_and_win(app_factory):
    app = app_factory(GLIMPSER_EVENT_RETENTION_DAYS="12", GLIMPSER_CAP_SENDER="ops@example.org")
    client = app.test_client()
    setup_admin(client)
    html = client.get(PAGE).get_data(as_text=True)
    field = re.search(r'<input id="f-event-retention-days"[^>]*>', html, re.S).group(0)
    assert "disabled" in field and 'value="12"' in field
    assert "set by GLIMPSER_EVENT_RETENTION_DAYS" in html
    assert "2 settings are set by environment variables" in html
    # A hand-made post with the env-set fields: nothing of them is stored.
    data = {**form_data(app), "event_retention_days": "1", "cap_sender": "evil@example.org"}
    assert form_post(client, PAGE, data=data).status_code == 302
    assert "event_retention_days" not in stored() and "cap_sender" not in stored()
    # Even a row written behind the form's back does not override the environment.
    with database.connection_context():
        Setting.create(key="settings.event_retention_days", value=1)
    rs.publish(app.extensions["glimpser.redis"])
    with app.test_request_context():
        assert current_settings().event_retention_days == 12
        assert current_settings().cap_sender == "ops@example.org"


def test_the_api_key_is_write_only_kept_when_blank_and_removed_on_request(app, caplog):
    caplog.set_level(logging.DEBUG, logger="glimpser")
    client = app.test_client()
    setup_admin(client)
    secret = "sk-do-not-show-0123456789"
    save(client, app, ai_base_url="http://127.0.0.1:9/v1", ai_model="m", ai_api_key=secret)
    html = client.get(PAGE).get_data(as_text=True)
    assert secret not in html
    assert "stored — leave blank to keep" in html
    save(client, app, ai_model="m2")  # key left blank: kept
    assert stored()["ai_api_key"] == secret
    # The server moves: a kept key must be typed again (it is not sent to a new host).
    moved = save(client, app, ai_base_url="http://127.0.0.2:9/v1")
    assert moved.status_code == 422
    assert "type the API key again" in moved.get_data(as_text=True)
    assert stored()["ai_base_url"] == "http://127.0.0.1:9/v1"
    data = {**form_data(app), "ai_api_key.clear": "1"}
    assert form_post(client, PAGE, data=data).status_code == 302
    assert "ai_api_key" not in stored()
    assert secret not in caplog.text
    for entry in audit_rows():
        assert secret not in str(entry.detail)


# Bad input, field by field: each answers 422 with the field's message and stores nothing.
BAD_INPUT = [
    ("default_interval", "0"),
    ("default_interval", "abc"),
    ("default_interval", "٣٠"),  # unicode digits
    ("default_interval", str(2**63)),
    ("default_interval", "1_000"),
    ("capture_max_jpeg_bytes", "100"),
    ("reader_max_interval", "-1"),
    ("retention_max_bytes", str(2**63)),
    ("event_retention_days", "36501"),
    ("audit_retention_days", "1.5"),
    ("ai_daily_token_budget", ""),
    ("ai_base_url", "ftp://example.org"),
    ("ai_base_url", "x" * 600),
    ("ai_default_prompt", "p" * 2001),
    ("source_deny_cidrs", "10.0.0.0/8\nnot-a-network"),
    ("source_deny_cidrs", "\n".join(f"10.{i}.0.0/16" for i in range(101))),
    ("public_url", "cams.example.org"),
    ("cap_sender", "c" * 201),
    ("vapid_subject", "mailto:ops@localhost"),
    ("vapid_subject", "http://example.org"),
    ("login_rate_limit", "lots"),
    ("login_user_rate_limit", "10 per fortnight"),
    ("session_lifetime_days", "366"),
    ("default_timezone", "Mars/Olympus"),
    ("default_locale", "english please"),
    ("notify_cooldown_seconds", "99999999"),
]


@pytest.mark.parametrize(("name", "value"), BAD_INPUT)
def test_bad_input_is_refused_with_the_fields_message_and_nothing_stored(app, name, value):
    client = app.test_client()
    setup_admin(client)
    data = form_data(app, event_retention_days=3)  # a good change next to the bad one
    data[name] = value
    answer = form_post(client, PAGE, data=data)
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    field_id = "f-" + name.replace("_", "-")
    assert f'id="{field_id}-error"' in html, html[html.find("Nothing was saved") :][:500]
    assert stored() == {}
    assert audit_rows() == []


def test_the_ai_model_is_needed_with_a_server(app):
    client = app.test_client()
    setup_admin(client)
    answer = save(client, app, ai_base_url="http://127.0.0.1:9/v1", ai_model="")
    assert answer.status_code == 422
    assert "is needed with an AI server URL" in answer.get_data(as_text=True)


def test_a_post_missing_a_field_is_refused(app):
    client = app.test_client()
    setup_admin(client)
    data = form_data(app)
    del data["default_interval"]
    assert form_post(client, PAGE, data=data).status_code == 422
    assert stored() == {}


def test_viewers_get_403_and_posts_without_csrf_get_400(app):
    from glimpser.auth.users import create_user

    client = app.test_client()
    setup_admin(client)
    data = form_data(app, event_retention_days=3)
    assert client.post(PAGE, data=data).status_code == 400  # no CSRF token
    with database.connection_context():
        create_user("vera", "viewer password 123", "viewer")
    logout(client)
    login(client, "vera", "viewer password 123")
    assert client.get(PAGE).status_code == 403
    token = csrf_from(client.get("/").get_data(as_text=True))
    assert client.post(PAGE, data={"csrf_token": token, **data}).status_code == 403
    assert client.post(PAGE + "test-ai", data={"csrf_token": token, **data}).status_code == 403
    assert stored() == {}


def test_test_connection_shows_the_models_answer(app, openai_server):
    openai_server.handler = lambda _r: Reply.completion("Yes, I am here.")
    client = app.test_client()
    setup_admin(client)
    data = form_data(
        app, ai_base_url=openai_server.url, ai_model="test-model", ai_api_key="sk-typed-key-1234"
    )
    page = client.get(PAGE).get_data(as_text=True)
    answer = client.post(
        PAGE + "test-ai",
        data={"csrf_token": csrf_from(page), **data},
        headers={"HX-Request": "true"},
    )
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert "Yes, I am here." in html and "test-model" in html
    request = openai_server.requests[-1]
    assert request.body["model"] == "test-model"
    assert request.headers.get("authorization") == "Bearer sk-typed-key-1234"
    assert stored() == {}  # a test saves nothing


def test_test_connection_shows_the_exact_error_without_the_key(app, openai_server):
    key = "sk-echoed-back-secret"
    openai_server.handler = lambda _r: Reply.error(401, f"Incorrect API key provided: {key}")
    client = app.test_client()
    setup_admin(client)
    data = form_data(app, ai_base_url=openai_server.url, ai_model="m", ai_api_key=key)
    answer = form_post(client, PAGE, PAGE + "test-ai", data=data)  # without htmx: the page
    html = answer.get_data(as_text=True)
    assert "The test failed:" in html
    assert "refused the API key (HTTP 401)" in html
    assert key not in html


def test_test_connection_says_when_ai_is_not_configured(app):
    client = app.test_client()
    setup_admin(client)
    answer = form_post(client, PAGE, PAGE + "test-ai", data=form_data(app))
    assert "AI is not configured" in answer.get_data(as_text=True)


# --- propagation ------------------------------------------------------------------------------


def test_a_source_follows_the_version_and_keeps_the_last_good_on_failures(app, caplog):
    base = app.extensions["glimpser.settings"]
    source = rs.SettingsSource(base, app.extensions["glimpser.redis"])
    assert source.get().event_retention_days == 30
    with database.connection_context():
        Setting.create(key="settings.event_retention_days", value=7)
    assert source.get().event_retention_days == 30  # checked less than a second ago
    source._checked_at = float("-inf")  # a second later (not announced: same version)
    assert source.get().event_retention_days == 30
    rs.publish(app.extensions["glimpser.redis"])
    assert source.get().event_retention_days == 7
    same = source.get()
    source.invalidate()
    assert source.get() is same  # reloaded, unchanged: the same object (cached clients stay)

    # Redis away: the rows are still read; the database away too: the last good stays.
    broken = rs.SettingsSource(base, redis_lib.Redis(host="127.0.0.1", port=1))
    caplog.set_level(logging.WARNING)
    with database.connection_context():
        assert broken.get().event_retention_days == 7
    database.close()
    original = database.obj
    database.initialize(None)  # type: ignore[arg-type]
    try:
        broken.invalidate()
        assert broken.get().event_retention_days == 7
        broken.invalidate()
        assert broken.get().event_retention_days == 7
    finally:
        database.initialize(original)
    warnings = [r for r in caplog.records if "cannot check for changed settings" in r.message]
    assert len(warnings) == 2  # once for Redis, once for the database: not on every check


def test_a_job_started_right_after_a_save_runs_with_it(app):
    """Between two checks a process keeps its settings for up to a second; a job asks for the
    version as it starts (jobs.job), so a change saved in another process before the job was
    enqueued applies however soon the job starts (the loaded worker once ran with the old)."""
    connection = app.extensions["glimpser.redis"]
    source = rs.SettingsSource(app.extensions["glimpser.settings"], connection)
    assert source.get().event_retention_days == 30
    with database.connection_context():
        Setting.create(key="settings.event_retention_days", value=7)
    connection.incr(rs.VERSION_KEY)  # what publish() does in the web process that saved
    assert source.get().event_retention_days == 30  # between checks: the last ones
    assert source.check_now().event_retention_days == 7
    assert source.get().event_retention_days == 7


def test_a_stored_value_that_no_longer_validates_is_ignored(app):
    with database.connection_context():
        Setting.create(key="settings.event_retention_days", value=10**9)
        Setting.create(key="settings.default_interval", value=45)
    effective = rs.overlay(app.extensions["glimpser.settings"], stored())
    assert effective.event_retention_days == 30
    assert effective.default_interval == 45
    with database.connection_context():  # a URL without its model: the AI group is ignored
        Setting.create(key="settings.ai_base_url", value="http://127.0.0.1:9/v1")
    effective = rs.overlay(app.extensions["glimpser.settings"], stored())
    assert effective.ai_base_url == "" and effective.default_interval == 45


def test_the_worker_settings_and_its_ai_client_follow_a_change(app, openai_server):
    from glimpser import jobs
    from tests.helpers import jobs_configured

    client = app.test_client()
    setup_admin(client)
    # The request is made outside any connection context of the test: its teardown closes
    # this thread's connection (the web and the test share it), which would end that context.
    with jobs_configured(app):
        with database.connection_context():
            assert jobs._ai_client(app.extensions["glimpser.redis"]) is None
        save(client, app, ai_base_url=openai_server.url, ai_model="m")
        with database.connection_context():
            ai = jobs._ai_client(app.extensions["glimpser.redis"])
        assert isinstance(ai, AIClient) and ai.settings.ai_base_url == openai_server.url


# --- where the settings take effect -----------------------------------------------------------


def test_defaults_reach_the_new_stream_form_new_rules_and_html_lang(app):
    client = app.test_client()
    setup_admin(client)
    save(client, app, default_interval=45, default_timezone="Europe/Berlin", default_locale="de")
    stream_form = client.get("/streams/new").get_data(as_text=True)
    assert re.search(r'name="interval"[^>]*value="45"', stream_form)
    rule_form = client.get("/admin/rules/new").get_data(as_text=True)
    assert "Europe/Berlin" in rule_form
    assert re.search(r'<html lang="de"[ >]', client.get(PAGE).get_data(as_text=True))


def test_the_default_prompt_is_sent_for_streams_without_their_own(app, openai_server):
    from glimpser.media.imaging import to_jpeg
    from tests.helpers import jobs_configured

    openai_server.reply_json({"title": "A fox", "description": "A fox.", "objects": ["fox"]})
    client = app.test_client()
    setup_admin(client)
    save(
        client,
        app,
        ai_base_url=openai_server.url,
        ai_model="m",
        ai_default_prompt="Count the foxes.",
    )
    from glimpser import jobs

    with jobs_configured(app):
        ai = AIClient.from_settings(jobs.settings(), app.extensions["glimpser.redis"])
        picture = to_jpeg(_tiny_jpeg(), 10**6).jpeg
        with database.connection_context():
            ai.describe(picture, stream_id=None)
    text = str(openai_server.requests[-1].body["messages"])
    assert "Count the foxes." in text


def _tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (20, 120, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_test_connection_uses_the_stored_key_only_where_it_was_meant_to_go(app, openai_server):
    openai_server.handler = lambda _r: Reply.completion("Here.")
    client = app.test_client()
    setup_admin(client)
    save(client, app, ai_base_url=openai_server.url, ai_model="m", ai_api_key="sk-stored-1234")
    answer = form_post(client, PAGE, PAGE + "test-ai", data=form_data(app))  # key left blank
    assert "Here." in answer.get_data(as_text=True)
    assert openai_server.requests[-1].headers["authorization"] == "Bearer sk-stored-1234"
    sent = len(openai_server.requests)
    elsewhere = form_data(app, ai_base_url="http://127.0.0.2:9/v1")
    answer = form_post(client, PAGE, PAGE + "test-ai", data=elsewhere)
    assert "type the API key again" in answer.get_data(as_text=True)
    assert len(openai_server.requests) == sent  # nothing was sent anywhere


def test_a_key_set_in_the_environment_is_not_sent_to_a_new_server(app_factory):
    app = app_factory(GLIMPSER_AI_API_KEY="sk-env-key-5678", GLIMPSER_AI_MODEL="m")
    client = app.test_client()
    setup_admin(client)
    html = client.get(PAGE).get_data(as_text=True)
    assert "sk-env-key-5678" not in html and "set by GLIMPSER_AI_API_KEY" in html
    answer = save(client, app, ai_base_url="http://127.0.0.1:9/v1")
    assert answer.status_code == 422
    assert "change GLIMPSER_AI_BASE_URL in the environment" in answer.get_data(as_text=True)
    assert stored() == {}


def test_an_env_value_beyond_the_forms_limits_blocks_nothing(app_factory):
    sender = "alerts-" + "x" * 250 + "@example.org"  # config.py sets no length limit here
    app = app_factory(GLIMPSER_CAP_SENDER=sender)
    client = app.test_client()
    setup_admin(client)
    assert save(client, app, event_retention_days=4).status_code == 302
    assert stored() == {"event_retention_days": 4}
    with app.test_request_context():
        assert current_settings().event_retention_days == 4
        assert current_settings().cap_sender == sender


def generated_bad_input() -> list[tuple[str, str]]:
    """For every field of the schema: what its type and limits refuse."""
    from annotated_types import Le, MaxLen

    cases = []
    for name, info in rs.FIELDS.items():
        if info.annotation is int:
            top = next(m.le for m in info.metadata if isinstance(m, Le))
            cases += [(name, str(top + 1)), (name, "٣"), (name, str(2**63)), (name, "1e3")]
        elif info.annotation is str:
            longest = next(m.max_length for m in info.metadata if isinstance(m, MaxLen))
            cases.append((name, "a" * (longest + 1)))
    return cases


def test_every_field_refuses_what_its_type_and_limits_refuse(app):
    client = app.test_client()
    setup_admin(client)
    cases = generated_bad_input()
    assert {name for name, _ in cases} >= set(rs.FIELDS) - {
        "allow_loopback_sources",  # a checkbox: present or not
        "source_deny_cidrs",  # tested above (bad network, too many)
    }
    token = csrf_from(client.get(PAGE).get_data(as_text=True))
    for name, value in cases:
        data = {**form_data(app, event_retention_days=3), name: value, "csrf_token": token}
        answer = client.post(PAGE, data=data)
        assert answer.status_code == 422, (name, value[:20])
        assert f'id="f-{name.replace("_", "-")}-error"' in answer.get_data(as_text=True), name
    assert stored() == {}
    assert audit_rows() == []
