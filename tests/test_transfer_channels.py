"""Notification channels in `glimpser export` / `import` and Admin → Import/export: channels
travel with their settings (secrets only on explicit request), rules name them by name, the
import modes apply to them, stored secrets survive an overwrite without secrets, and nothing is
half-written."""

from __future__ import annotations

import json
from typing import Any

import peewee
import pytest

from glimpser import db, transfer
from glimpser.db import database
from glimpser.models import AuditLog, NotificationChannel, Rule, Stream
from glimpser.notify.schemas import ChannelSpec, dump_config
from tests.conftest import _new_postgres_database, make_env
from tests.helpers import setup_admin
from tests.test_cli import run_cli
from tests.test_transfer import PASSWORD, add_stream, upload
from tests.test_transfer_rules import CAMERA, add_rule, camera_entry, chosen_rule

# Secret values: each must be absent from an export without secrets and present with them.
APP_TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
USER_KEY = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
MAIL_PASSWORD = "mail-pw-0xc0ffee"
HMAC_SECRET = "hmac-secret-0xbadcafe"
HOOK_AUTH = "Bearer hook-token-0xfacade"
APPRISE_URL = "json://apprise-secret-0xdecade.example.org/hook"
SECRETS = (APP_TOKEN, USER_KEY, MAIL_PASSWORD, HMAC_SECRET, HOOK_AUTH, APPRISE_URL)

PUSHOVER = {"kind": "pushover", "priority": 1, "sound": "siren", "device": "phone"}
MAIL = {
    "kind": "email",
    "host": "smtp.example.com",
    "port": 587,
    "username": "glimpser",
    "from_addr": "glimpser@example.com",
    "to": ["ops@example.com", "night@example.com"],
}
HOOK = {
    "kind": "webhook",
    "url": "https://hooks.example.com/glimpser",
    "headers": {"X-Team": "ops"},
}


def add_channel(name: str, config: dict[str, Any], **fields: Any) -> NotificationChannel:
    """A channel stored as the channel form stores one: validated, config with its secrets."""
    spec = ChannelSpec.model_validate({"name": name, "config": config, **fields})
    return NotificationChannel.create(
        name=spec.name,
        kind=spec.config.kind,
        config=dump_config(spec.config, include_secrets=True),
        enabled=spec.enabled,
        min_severity=spec.min_severity,
        cooldown_seconds=spec.cooldown_seconds,
    )


def add_sample() -> None:
    """Channels of every kind (four with secrets), a camera and two rules that name channels."""
    pager = add_channel(
        "Pager", {**PUSHOVER, "app_token": APP_TOKEN, "user_key": USER_KEY}, min_severity="high"
    )
    mail = add_channel("Team mail", {**MAIL, "password": MAIL_PASSWORD}, cooldown_seconds=600)
    hook = add_channel("Hook", {**HOOK, "secret": HMAC_SECRET, "authorization": HOOK_AUTH})
    add_channel("Everything else", {"kind": "apprise", "urls": APPRISE_URL})
    add_channel("CAP feed", {"kind": "cap", "area_desc": "Warehouse"}, enabled=False)
    add_channel("Browsers", {"kind": "webpush", "users": ["alice"], "ttl": 600})
    door = add_stream("Front door", CAMERA)
    add_rule(
        "Person at the door",
        {"changed": True},
        applies_to="chosen",
        stream_ids=[door.id],
        severity="high",
        channels=[pager.id, hook.id],
    )
    add_rule("Camera down", {"capture_failing": True}, channels=[mail.id])


def channels_by_name() -> dict[str, dict[str, Any]]:
    return {
        c.name: {
            "kind": c.kind,
            "config": c.config,
            "enabled": c.enabled,
            "min_severity": c.min_severity,
            "cooldown_seconds": c.cooldown_seconds,
        }
        for c in NotificationChannel.select()
    }


def rule_channel_names() -> dict[str, list[str]]:
    """Each rule's channels by name: ids differ between installations."""
    names = {c.id: c.name for c in NotificationChannel.select()}
    return {r.name: sorted(names[i] for i in r.channels) for r in Rule.select()}


def doc(
    channels: list[Any] | None = None,
    rules: list[Any] | None = None,
    streams: list[Any] | None = None,
) -> dict[str, Any]:
    return {
        "format": "glimpser",
        "version": 1,
        "streams": streams or [],
        "rules": rules or [],
        "channels": channels or [],
    }


def pushover_entry(name: str, **config: Any) -> dict[str, Any]:
    return {"name": name, "config": {**PUSHOVER, **config}}


def hook_entry(name: str, url: str = HOOK["url"], **config: Any) -> dict[str, Any]:
    return {"name": name, "config": {**HOOK, "url": url, **config}}


def other_database_url(request: pytest.FixtureRequest, database_url: str, tmp_path, n: int) -> str:
    """Another empty database of the same engine as `database_url`."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / f'other-{n}.db'}"
    return _new_postgres_database(request.getfixturevalue("postgres_dsn"))


# --- the CLI: export, and a round trip into a fresh database -----------------------------------


@pytest.mark.parametrize("with_secrets", [True, False], ids=["with-secrets", "without-secrets"])
def test_a_whole_set_up_moves_to_a_fresh_database(
    request, tmp_path, redis_url, database_url, with_secrets
):
    source = db.init_database(database_url)
    db.migrate(source)
    with source.connection_context():
        add_sample()
        original = channels_by_name()
        original_rules = rule_channel_names()
    export_file = tmp_path / "setup.json"
    args = ["export", str(export_file)] + (["--include-secrets"] if with_secrets else [])
    result = run_cli(args, make_env(tmp_path / "a", redis_url, database_url))
    assert result.returncode == 0, result.stderr
    assert "exported 1 streams, 3 rules and 6 channels" in result.stderr

    text = export_file.read_text()
    for secret in SECRETS:
        assert (secret in text) is with_secrets, secret
    document = json.loads(text)
    entries = {c["name"]: c for c in document["channels"]}
    assert list(entries) == sorted(entries)  # by name, as streams and rules
    assert entries["Pager"]["min_severity"] == "high" and entries["Pager"]["enabled"] is True
    assert entries["CAP feed"]["enabled"] is False
    assert entries["Team mail"]["cooldown_seconds"] == 600
    assert entries["Hook"]["config"]["headers"] == {"X-Team": "ops"}  # not a secret
    if not with_secrets:
        assert "app_token" not in entries["Pager"]["config"]
        assert "password" not in entries["Team mail"]["config"]
        assert "urls" not in entries["Everything else"]["config"]
    rules = {r["name"]: r for r in document["rules"]}
    assert rules["Person at the door"]["channels"] == ["Hook", "Pager"]
    assert rules["Camera down"]["channels"] == ["Team mail"]
    assert rules["Motion or change"]["channels"] == []
    with source.connection_context():
        audits = AuditLog.select().where(AuditLog.action == "stream.export")
        assert [a.detail.get("channels") for a in audits] == [6]
        assert [a.detail["include_secrets"] for a in audits] == [with_secrets]

    target_url = other_database_url(request, database_url, tmp_path, 1)
    target = db.init_database(target_url)
    db.migrate(target)
    with target.connection_context():  # ids in the new database differ from the old ones
        add_channel("Unrelated", {"kind": "webpush"})
        add_channel("Also unrelated", {"kind": "webpush"})
    imported = run_cli(
        ["import", str(export_file)], make_env(tmp_path / "b", redis_url, target_url)
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "channels: 6 imported, 0 invalid" in imported.stdout
    assert "rules: 2 imported, 1 skipped, 0 invalid" in imported.stdout
    target = db.init_database(target_url)
    with target.connection_context():
        copy = channels_by_name()
        del copy["Unrelated"], copy["Also unrelated"]
        assert rule_channel_names() == {**original_rules, "Motion or change": []}
        door = Stream.get(Stream.name == "Front door")
        assert Rule.get(Rule.name == "Person at the door").stream_ids == [door.id]
    if with_secrets:
        assert copy == original
        assert "secrets to enter" not in imported.stdout
    else:
        # Secrets are empty; the report names those each channel cannot send without.
        blank = {
            "Pager": {"app_token": "", "user_key": ""},
            "Team mail": {"password": ""},
            "Hook": {"secret": "", "authorization": ""},
            "Everything else": {"urls": ""},
        }
        for name, secrets in blank.items():
            original[name]["config"].update(secrets)
        assert copy == original
        lines = imported.stdout.splitlines()
        [pager] = [line for line in lines if line.startswith("channel ") and "Pager" in line]
        assert (
            "secrets to enter in Admin → Channels before it can send: "
            "Application token, User or group key" in pager
        )
        [mail] = [line for line in lines if "Team mail: imported" in line]
        assert "before it can send: Password" in mail
        [hook] = [line for line in lines if "Hook: imported" in line]
        assert "before it can send" not in hook  # a webhook sends without them …
        assert "if the channel used them): Authorization header, Signing secret" in hook
        [apprise] = [line for line in lines if "Everything else: imported" in line]
        assert "before it can send: Apprise URLs" in apprise
        for secret in SECRETS:
            assert secret not in imported.stdout


# --- modes ------------------------------------------------------------------------------------


def test_mode_skip_keeps_the_existing_channel(db_app):
    with database.connection_context():
        stored = add_channel("Pager", {**PUSHOVER, "app_token": APP_TOKEN, "user_key": USER_KEY})
        report = transfer.import_streams(
            doc(
                [pushover_entry("pager", priority=-1), hook_entry("Hook"), hook_entry("HOOK")],
                [{"name": "Alarm", "conditions": {"changed": True}, "channels": ["Pager"]}],
            ),
            "skip",
        )
        assert [c.outcome for c in report.channels] == ["skipped", "imported", "skipped"]
        assert report.channels[0].reason == "a channel with this name exists"
        assert report.channels[2].reason == "same name as channel 2 of this file"
        fresh = NotificationChannel.get_by_id(stored.id)
        assert fresh.config["priority"] == 1 and fresh.config["app_token"] == APP_TOKEN
        assert NotificationChannel.select().count() == 2
        # The rule's "Pager" is the existing channel the file's entry was skipped for.
        assert Rule.get(Rule.name == "Alarm").channels == [stored.id]
        assert "channels: 1 imported, 2 skipped, 0 invalid" in report.summary()


def test_mode_overwrite_keeps_id_and_stored_secrets_when_the_file_has_none(db_app):
    with database.connection_context():
        pager = add_channel(
            "Pager", {**PUSHOVER, "app_token": APP_TOKEN, "user_key": USER_KEY}, enabled=False
        )
        hook = add_channel("Hook", {**HOOK, "secret": HMAC_SECRET, "authorization": HOOK_AUTH})
        rule = add_rule("Alarm", {"changed": True}, channels=[hook.id])
        report = transfer.import_streams(
            doc(
                [
                    {**pushover_entry("pager", priority=-1), "enabled": True},  # no secrets
                    hook_entry("Hook", timeout=5, secret=""),  # an explicit empty secret
                ],
                [{"name": "alarm", "conditions": {"changed": True}, "channels": ["PAGER"]}],
            ),
            "overwrite",
        )
        assert [c.outcome for c in report.channels] == ["overwritten", "overwritten"]
        assert report.channels[0].notes == [
            "stored Application token kept",
            "stored User or group key kept",
        ]
        fresh = NotificationChannel.get_by_id(pager.id)
        assert fresh.name == "pager" and fresh.enabled and fresh.config["priority"] == -1
        assert (fresh.config["app_token"], fresh.config["user_key"]) == (APP_TOKEN, USER_KEY)
        fresh_hook = NotificationChannel.get_by_id(hook.id)
        assert fresh_hook.config["timeout"] == 5
        assert fresh_hook.config["authorization"] == HOOK_AUTH  # absent from the file: kept
        assert fresh_hook.config["secret"] == ""  # given (empty) in the file: replaced
        assert report.channels[1].notes == ["stored Authorization header kept"]
        # The overwritten rule now points at the channels the file names.
        assert Rule.get_by_id(rule.id).channels == [pager.id]
        assert NotificationChannel.select().count() == 2

        # A changed address or kind never receives the stored secrets.
        report = transfer.import_streams(
            doc(
                [
                    hook_entry("Hook", url="https://elsewhere.example.net/x"),
                    {"name": "pager", "config": {"kind": "webpush"}},
                ]
            ),
            "overwrite",
        )
        assert report.channels[0].notes[0] == (
            "stored Authorization header not kept: the address changed"
        )
        assert report.channels[1].notes == []  # webpush has no secrets: none to keep
        assert NotificationChannel.get_by_id(hook.id).config["authorization"] == ""
        moved = NotificationChannel.get_by_id(pager.id)
        assert moved.kind == "webpush" and "app_token" not in moved.config

        # An email password is kept only while there is still a username to go with it.
        mail = add_channel("Mail", {**MAIL, "password": MAIL_PASSWORD})
        no_login = {**MAIL, "username": ""}
        report = transfer.import_streams(doc([{"name": "Mail", "config": no_login}]), "overwrite")
        assert report.channels[0].notes == [
            "stored Password not kept: it does not fit the new settings",
            "not in the file (enter in Admin → Channels if the channel used them): Password",
        ]
        assert NotificationChannel.get_by_id(mail.id).config["password"] == ""


def test_mode_rename_and_rules_follow_the_renamed_channel(db_app):
    with database.connection_context():
        existing = add_channel("Pager", {**PUSHOVER, "app_token": APP_TOKEN, "user_key": USER_KEY})
        report = transfer.import_streams(
            doc(
                [pushover_entry("Pager", app_token="newtoken1", user_key="newuser1")],
                [
                    {"name": "Alarm", "conditions": {"changed": True}, "channels": ["pager"]},
                    {"name": "Old", "conditions": {"changed": True}, "channels": ["Gone"]},
                ],
            ),
            "rename",
        )
        assert [(c.outcome, c.new_name) for c in report.channels] == [("renamed", "Pager (2)")]
        assert report.channels[0].notes == []  # secrets given: nothing to enter
        copy = NotificationChannel.get(NotificationChannel.name == "Pager (2)")
        assert copy.config["app_token"] == "newtoken1"
        assert NotificationChannel.get_by_id(existing.id).config["app_token"] == APP_TOKEN
        assert Rule.get(Rule.name == "Alarm").channels == [copy.id]
        # An unknown channel name is an error for that rule only.
        assert [r.outcome for r in report.rules] == ["imported", "error"]
        assert report.rules[1].errors == {"channels": "no channel named 'Gone'"}
        assert not Rule.select().where(Rule.name == "Old").exists()
        assert report.has_errors


# --- validation, dry run, all or nothing --------------------------------------------------------


def test_invalid_channel_entries_are_reported_one_by_one(db_app):
    with database.connection_context():
        report = transfer.import_streams(
            doc(
                [
                    "not a channel",
                    {"name": "No config"},
                    {"name": "Fax", "config": {"kind": "fax"}},
                    hook_entry("Bad hook", url="ftp://hooks.example.com/x"),
                    {**pushover_entry("Loud", priority=2)},  # emergency needs retry/expire
                    {**hook_entry("Extra"), "colour": "red"},
                    {"name": "Bad apprise", "config": {"kind": "apprise", "urls": "nonsense://x"}},
                    hook_entry("Fine"),
                ],
                [
                    {"name": "Uses bad", "conditions": {"changed": True}, "channels": ["Bad hook"]},
                    {"name": "Uses fine", "conditions": {"changed": True}, "channels": ["Fine"]},
                ],
                [camera_entry("Shed")],
            ),
            "skip",
        )
        assert [c.outcome for c in report.channels] == ["error"] * 7 + ["imported"]
        errors = [c.errors for c in report.channels]
        assert errors[0] == {"": "not a JSON object"}
        assert errors[1] == {"config": "missing, or not a JSON object"}
        assert errors[2]["config.kind"].startswith("unknown kind 'fax' (known: webhook")
        assert "http://" in errors[3]["config.url"]
        assert "retry and expire" in errors[4]["config"]
        assert "colour" in errors[5]
        assert "nonsense://" in errors[6]["config.urls"]
        # The valid entries of every section are written; the rule naming an invalid channel
        # is an error for that rule only.
        assert [r.outcome for r in report.rules] == ["error", "imported"]
        assert report.rules[0].errors == {"channels": "no channel named 'Bad hook'"}
        fine = NotificationChannel.get(NotificationChannel.name == "Fine")
        assert [c.name for c in NotificationChannel.select()] == ["Fine"]
        assert Rule.get(Rule.name == "Uses fine").channels == [fine.id]
        assert Stream.select().where(Stream.name == "Shed").exists()
        assert "channels: 1 imported, 7 invalid" in report.summary()
        assert report.has_errors
    with pytest.raises(transfer.TransferError, match="channels"):
        transfer.import_streams({**doc(), "channels": {"name": "x"}}, "skip")


def test_dry_run_reports_channels_and_writes_nothing(db_app):
    with database.connection_context():
        report = transfer.import_streams(
            doc(
                [pushover_entry("Pager"), hook_entry("Nope", url="mailto:x")],
                [{"name": "Alarm", "conditions": {"changed": True}, "channels": ["Pager"]}],
            ),
            "skip",
            dry_run=True,
        )
        assert [c.outcome for c in report.channels] == ["imported", "error"]
        assert [r.outcome for r in report.rules] == ["imported"]
        assert "Application token" in report.channels[0].notes[0]
        assert report.summary().startswith("dry run, nothing was written")
        assert NotificationChannel.select().count() == 0
        assert Rule.select().count() == 1  # the default rule


def _refuse_channel_inserts() -> None:
    """A real database refusal: a trigger that aborts every new channel row."""
    conn = database.obj
    if isinstance(conn, peewee.SqliteDatabase):
        conn.execute_sql(
            "CREATE TRIGGER no_channels BEFORE INSERT ON notification_channel "
            "BEGIN SELECT RAISE(ABORT, 'channels are frozen'); END"
        )
    else:
        conn.execute_sql(
            "CREATE FUNCTION no_channels() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'channels are frozen'; END $$ LANGUAGE plpgsql"
        )
        conn.execute_sql(
            "CREATE TRIGGER no_channels BEFORE INSERT ON notification_channel "
            "FOR EACH ROW EXECUTE FUNCTION no_channels()"
        )


def test_a_refused_channel_write_writes_no_stream_or_rule_either(db_app):
    with database.connection_context():
        _refuse_channel_inserts()
        report = transfer.import_streams(
            doc(
                [pushover_entry("Pager")],
                [chosen_rule("Shed rule", "Shed", channels=["Pager"])],
                [camera_entry("Shed")],
            ),
            "skip",
        )
        assert "nothing was written" in report.failure and "channels are frozen" in report.failure
        assert report.entries[0].outcome == "rolled back"
        assert report.channels[0].outcome == "rolled back"
        assert Stream.select().count() == 0 and NotificationChannel.select().count() == 0
        assert Rule.select().count() == 1
        assert AuditLog.select().where(AuditLog.action == "stream.import_failed").exists()
        assert not AuditLog.select().where(AuditLog.action == "stream.import").exists()


# --- the admin page ---------------------------------------------------------------------------


def test_the_admin_page_exports_and_imports_channels(db_app):
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    with database.connection_context():
        add_sample()
    page = client.get("/admin/transfer/").get_data(as_text=True)
    assert "Import and export the set-up: streams, rules, channels" in page
    assert "6 notification channels" in page

    plain = client.get("/admin/transfer/export.json").get_data(as_text=True)
    assert len(json.loads(plain)["channels"]) == 6
    for secret in SECRETS:
        assert secret not in plain
    secret_export = client.get("/admin/transfer/export.json?secrets=1").get_data(as_text=True)
    for secret in SECRETS:
        assert secret in secret_export

    content = json.dumps(
        doc(
            [
                pushover_entry("Pager", priority=0),
                pushover_entry("New pager"),
                hook_entry("Bad", url="x"),
            ],
            [{"name": "Alarm", "conditions": {"changed": True}, "channels": ["New pager"]}],
        )
    ).encode()
    response = upload(client, content, mode="overwrite")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "channels: 1 imported, 1 overwritten, 1 invalid" in html
    channels_table = html.split('<h3 id="report-channels">', 1)[1].split("<h3", 1)[0]
    assert "<td>Pager</td>" in channels_table and ">overwritten</td>" in channels_table
    assert "stored Application token kept; stored User or group key kept" in channels_table
    assert (
        "secrets to enter in Admin → Channels before it can send: "
        "Application token, User or group key" in channels_table
    )
    assert "<code>config.url</code>" in channels_table
    rules_table = html.split('<h3 id="report-rules">', 1)[1]
    assert "<td>Alarm</td>" in rules_table and ">imported</td>" in rules_table
    with database.connection_context():
        new = NotificationChannel.get(NotificationChannel.name == "New pager")
        assert Rule.get(Rule.name == "Alarm").channels == [new.id]
        assert (
            NotificationChannel.get(NotificationChannel.name == "Pager").config["app_token"]
            == APP_TOKEN
        )

    # Re-importing the export with secrets never shows one on the page.
    response = upload(client, secret_export.encode(), mode="overwrite")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.count(">overwritten</td>") == 1 + 6 + 3  # stream, channels, rules
    for secret in SECRETS:
        assert secret not in html
