"""The audit log: every audited action writes exactly one row (who, where, what, secrets
masked), in the same transaction as the change (a refused change leaves no row, a refused row
leaves no change), and Admin → Audit lists, filters, pages and exports it as CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import AuditLog, Delivery, Event, NotificationChannel, Rule, Stream, User
from tests.helpers import PASSWORD, add_stream, csrf_from, form_post, login, logout, setup_admin

PAGE = "/admin/audit/"
CSV = "/admin/audit/export.csv"
CAMERA_PASSWORD = "hunter22-SECRET"  # noqa: S105 - test data
NEW_CAMERA_PASSWORD = "new-SECRET-pass"  # noqa: S105
HOOK_AUTH = "Bearer tok-SECRET-auth"
NEW_HOOK_AUTH = "Bearer new-SECRET-auth"


@pytest.fixture
def admin(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


@pytest.fixture
def db_admin(db_app):
    """Signed in on SQLite and on PostgreSQL."""
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def entries(action: str) -> list[AuditLog]:
    with database.connection_context():
        return list(AuditLog.select().where(AuditLog.action == action).order_by(AuditLog.id))


def one(action: str) -> AuditLog:
    found = entries(action)
    assert len(found) == 1, (action, len(found))
    return found[0]


def by_alice(entry: AuditLog, target: str) -> None:
    with database.connection_context():
        assert entry.user_id == User.get(User.username == "alice").id
    assert entry.ip == "127.0.0.1" and entry.target == target


def no_secret_in(entry: AuditLog, *secrets: str) -> None:
    text = json.dumps(entry.detail)
    for secret in secrets:
        assert secret not in text


def token(client) -> str:
    return csrf_from(client.get("/").get_data(as_text=True))


def rtsp_form(name: str, password: str, interval: str = "60") -> dict[str, str]:
    return {
        "kind": "rtsp",
        "name": name,  # no "enabled": a paused stream, never captured here
        "interval": interval,
        "config.url": "rtsp://192.0.2.10/stream",
        "config.username": "cam",
        "config.password": password,
    }


def create_camera(client, name: str = "Gate") -> Stream:
    response = form_post(client, "/streams/new", data=rtsp_form(name, CAMERA_PASSWORD))
    assert response.status_code == 302, response.get_data(as_text=True)
    with database.connection_context():
        return Stream.get(Stream.name == name)


def webhook_form(name: str, authorization: str, timeout: str = "5") -> dict[str, str]:
    return {
        "name": name,
        "kind": "webhook",
        "enabled": "1",
        "min_severity": "info",
        "config.url": "https://hooks.example.com/glimpser",
        "config.timeout": timeout,
        "config.authorization": authorization,
    }


def rule_form(name: str, cooldown: str = "60") -> dict[str, str]:
    return {
        "name": name,
        "enabled": "1",
        "applies_to": "all",
        "severity": "high",
        "cooldown_seconds": cooldown,
        "conditions.changed": "1",
    }


# --- what is recorded -------------------------------------------------------------------------


def test_sign_in_failed_sign_in_and_sign_out_are_recorded_once_each(db_app):
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    logout(client)
    entry = one("auth.logout")
    by_alice(entry, "")

    assert login(client, "alice", "wrong password!").status_code == 401
    failed = one("auth.login_failed")
    by_alice(failed, f"user:{failed.user_id}")
    assert failed.detail == {"username": "alice"}
    # An unknown username: recorded as typed (cut to 64 characters), with no user.
    assert login(client, "m" * 64, "whatever it is").status_code == 401
    unknown = entries("auth.login_failed")[-1]
    assert unknown.user_id is None and unknown.target == "" and unknown.ip == "127.0.0.1"
    assert unknown.detail == {"username": "m" * 64}
    assert "whatever" not in json.dumps(unknown.detail)

    assert login(client, "alice", PASSWORD).status_code == 302
    by_alice(one("auth.login"), "")
    assert len(entries("auth.login_failed")) == 2


def test_stream_changes_are_recorded_field_by_field_with_secrets_masked(admin):
    stream = create_camera(admin)
    created = one("stream.create")
    by_alice(created, f"stream:{stream.id}")
    changes = created.detail["changes"]
    assert changes["name"] == [None, "Gate"] and changes["kind"] == [None, "rtsp"]
    assert changes["config.password"] == [None, "••••"]
    no_secret_in(created, CAMERA_PASSWORD)

    edit = rtsp_form("Gate", NEW_CAMERA_PASSWORD, interval="20")
    response = form_post(admin, f"/streams/{stream.id}/edit", data=edit)
    assert response.status_code == 302
    updated = one("stream.update")
    by_alice(updated, f"stream:{stream.id}")
    assert updated.detail["changes"] == {
        "config.password": ["••••", "••••"],
        "interval": [60, 20],
    }
    no_secret_in(updated, CAMERA_PASSWORD, NEW_CAMERA_PASSWORD)
    # Saved again unchanged (the password left blank keeps it): an entry with no changes.
    form_post(admin, f"/streams/{stream.id}/edit", data={**edit, "config.password": ""})
    assert entries("stream.update")[-1].detail["changes"] == {}

    form_post(admin, f"/streams/{stream.id}", f"/streams/{stream.id}/resume")
    assert one("stream.resume").detail["changes"] == {"enabled": [False, True]}
    form_post(admin, f"/streams/{stream.id}", f"/streams/{stream.id}/pause")
    assert one("stream.pause").detail["changes"] == {"enabled": [True, False]}
    by_alice(one("stream.pause"), f"stream:{stream.id}")

    response = form_post(
        admin, f"/streams/{stream.id}/delete", data={"confirm": "Gate"}, follow_redirects=False
    )
    assert response.status_code == 302
    deleted = one("stream.delete")
    by_alice(deleted, f"stream:{stream.id}")
    assert deleted.detail == {"name": "Gate", "snapshots": 0}

    # The page shows the changes, masked, and no secret.
    html = admin.get(PAGE).get_data(as_text=True)
    assert "<code>interval</code>: <del>60</del> → <ins>20</ins>" in html
    assert "<code>config.password</code>: <ins>changed</ins>" in html
    assert CAMERA_PASSWORD not in html and NEW_CAMERA_PASSWORD not in html


def test_a_password_in_a_url_is_masked_in_the_log(admin):
    stream = add_stream("Yard")
    with database.connection_context():
        Stream.update(
            kind="mjpeg", config={"kind": "mjpeg", "url": "http://u:SECRET1@192.0.2.3/v"}
        ).where(Stream.id == stream.id).execute()
    form = {
        "kind": "mjpeg",
        "name": "Yard",
        "interval": "60",
        "config.url": "http://192.0.2.4/v?token=SECRET2",
    }
    assert form_post(admin, f"/streams/{stream.id}/edit", data=form).status_code == 302
    entry = one("stream.update")
    assert "config.url" in entry.detail["changes"]
    no_secret_in(entry, "SECRET1", "SECRET2")


def test_rule_changes_are_recorded(db_admin):
    admin = db_admin
    assert form_post(admin, "/admin/rules/new", data=rule_form("Door")).status_code == 302
    with database.connection_context():
        rule = Rule.get(Rule.name == "Door")
    created = one("rule.create")
    by_alice(created, f"rule:{rule.id}")
    assert created.detail["changes"]["severity"] == [None, "high"]
    edit = rule_form("Door", cooldown="600")
    assert form_post(admin, f"/admin/rules/{rule.id}/edit", data=edit).status_code == 302
    assert one("rule.update").detail["changes"] == {"cooldown_seconds": [60, 600]}
    form_post(admin, "/admin/rules/", f"/admin/rules/{rule.id}/toggle")
    assert one("rule.disable").detail["changes"] == {"enabled": [True, False]}
    form_post(admin, f"/admin/rules/{rule.id}/delete", data={})
    deleted = one("rule.delete")
    by_alice(deleted, f"rule:{rule.id}")
    assert deleted.detail == {"name": "Door", "events_kept": 0}


def test_channel_changes_are_recorded_with_secrets_masked(db_admin):
    admin = db_admin
    new = "/admin/channels/new"
    response = form_post(admin, new, data=webhook_form("Hook", HOOK_AUTH))
    assert response.status_code == 302, response.get_data(as_text=True)
    with database.connection_context():
        channel = NotificationChannel.get(NotificationChannel.name == "Hook")
    created = one("channel.create")
    by_alice(created, f"channel:{channel.id}")
    assert created.detail["changes"]["config.authorization"] == [None, "••••"]
    edit = webhook_form("Hook", NEW_HOOK_AUTH, timeout="9")
    assert form_post(admin, f"/admin/channels/{channel.id}/edit", data=edit).status_code == 302
    updated = one("channel.update")
    assert updated.detail["changes"] == {
        "config.authorization": ["••••", "••••"],
        "config.timeout": [5, 9],
    }
    form_post(admin, "/admin/channels/", f"/admin/channels/{channel.id}/toggle")
    assert one("channel.disable").detail["changes"] == {"enabled": [True, False]}
    form_post(admin, f"/admin/channels/{channel.id}/delete", data={})
    assert one("channel.delete").detail["deliveries_deleted"] == 0
    for action in ("channel.create", "channel.update", "channel.delete"):
        no_secret_in(one(action), HOOK_AUTH, NEW_HOOK_AUTH, "tok-SECRET", "new-SECRET")


def test_acknowledging_events_is_one_entry_listing_them(db_admin):
    admin = db_admin
    stream = add_stream("Porch")
    with database.connection_context():
        ids = [Event.create(stream=stream, kind="motion", title=f"E{i}").id for i in range(3)]
    headers = {"X-CSRFToken": token(admin)}
    response = admin.post("/events/acknowledge", data={"ids": ids[:2]}, headers=headers)
    assert response.status_code == 302
    bulk = one("events.acknowledge")
    by_alice(bulk, "events")
    assert bulk.detail == {"ids": sorted(ids[:2]), "count": 2}
    admin.post(f"/events/{ids[2]}/acknowledge", headers=headers)
    single = entries("events.acknowledge")[-1]
    assert single.target == f"event:{ids[2]}" and single.detail["ids"] == [ids[2]]
    assert f'<a href="/events/{ids[2]}">open</a>' in admin.get(PAGE).text
    # Acknowledged already: nothing changes, nothing is recorded.
    admin.post(f"/events/{ids[2]}/acknowledge", headers=headers)
    assert len(entries("events.acknowledge")) == 2


def test_exports_and_imports_are_recorded(admin):
    create_camera(admin)
    plain = admin.get("/admin/transfer/export.json")
    exported = one("stream.export")
    by_alice(exported, "streams")
    assert exported.detail["include_secrets"] is False and exported.detail["count"] == 1
    assert exported.detail["rules"] == 1  # the default rule
    token_ = csrf_from(admin.get("/admin/transfer/").get_data(as_text=True))
    response = admin.post(
        "/admin/transfer/",
        data={
            "csrf_token": token_,
            "mode": "rename",
            "file": (io.BytesIO(plain.get_data()), "setup.json"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    imported = one("stream.import")
    by_alice(imported, "streams")
    assert imported.detail["mode"] == "rename" and imported.detail["renamed"] == 1
    assert imported.detail["source"] == "setup.json"


# --- the same transaction ---------------------------------------------------------------------


def add_trigger(name: str, table: str, when: str) -> None:
    """A real failure: SQLite refuses the write (the app sees it as the database would)."""
    with database.connection_context():
        database.execute_sql(
            f'CREATE TRIGGER {name} BEFORE {when} ON "{table}" '
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )


def drop_trigger(name: str) -> None:
    with database.connection_context():
        database.execute_sql(f"DROP TRIGGER {name}")


def test_a_refused_audit_entry_undoes_the_change(admin):
    stream = create_camera(admin)
    with database.connection_context():
        rule = Rule.create(name="Door", cooldown_seconds=60)
        channel = NotificationChannel.create(
            name="Hook", kind="webhook", config={"kind": "webhook", "url": "https://192.0.2.1/"}
        )
        event = Event.create(stream=stream, kind="motion", title="Motion")
    export = admin.get("/admin/transfer/export.json").get_data()
    with database.connection_context():
        before = AuditLog.select().count()
    add_trigger("no_audit", "audit_log", "INSERT")

    edit = rtsp_form("Gate", NEW_CAMERA_PASSWORD, interval="20")
    response = form_post(admin, f"/streams/{stream.id}/edit", data=edit)
    assert response.status_code == 409
    assert "nothing was saved" in response.get_data(as_text=True)
    resume = form_post(admin, f"/streams/{stream.id}", f"/streams/{stream.id}/resume")
    assert resume.status_code == 409
    response = form_post(admin, f"/admin/rules/{rule.id}/edit", data=rule_form("Door", "600"))
    assert response.status_code == 409
    response = form_post(
        admin, f"/admin/channels/{channel.id}/edit", data=webhook_form("Hook", HOOK_AUTH)
    )
    assert response.status_code == 409
    headers = {"X-CSRFToken": token(admin)}
    assert admin.post(f"/events/{event.id}/acknowledge", headers=headers).status_code == 409
    response = form_post(
        admin,
        f"/streams/{stream.id}/delete",
        data={"confirm": "Gate"},
    )
    assert response.status_code == 409
    token_ = csrf_from(admin.get("/admin/transfer/").get_data(as_text=True))
    response = admin.post(
        "/admin/transfer/",
        data={"csrf_token": token_, "mode": "rename", "file": (io.BytesIO(export), "x.json")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 409
    assert "nothing was written" in response.get_data(as_text=True)
    drop_trigger("no_audit")

    with database.connection_context():
        assert AuditLog.select().count() == before
        kept = Stream.get_by_id(stream.id)
        assert kept.interval == 60 and kept.config["password"] == CAMERA_PASSWORD
        assert not kept.enabled and kept.deleting_since is None
        assert Stream.select().count() == 1  # no imported copy
        assert Rule.get_by_id(rule.id).cooldown_seconds == 60
        assert NotificationChannel.get_by_id(channel.id).config.get("authorization") is None
        assert not Event.get_by_id(event.id).acknowledged


def test_a_refused_change_leaves_no_audit_entry(admin):
    stream = create_camera(admin)
    with database.connection_context():
        rule = Rule.create(name="Door", cooldown_seconds=60)
        channel = NotificationChannel.create(
            name="Hook", kind="webhook", config={"kind": "webhook", "url": "https://192.0.2.1/"}
        )
        event = Event.create(stream=stream, kind="motion", title="Motion")
    export = admin.get("/admin/transfer/export.json").get_data()
    with database.connection_context():
        before = AuditLog.select().count()
    for table in ("stream", "rule", "notification_channel", "event"):
        add_trigger(f"no_{table}_update", table, "UPDATE")
    add_trigger("no_stream_insert", "stream", "INSERT")

    edit = rtsp_form("Gate", NEW_CAMERA_PASSWORD, interval="20")
    assert form_post(admin, f"/streams/{stream.id}/edit", data=edit).status_code == 409
    resume = form_post(admin, f"/streams/{stream.id}", f"/streams/{stream.id}/resume")
    assert resume.status_code == 409
    response = form_post(admin, f"/admin/rules/{rule.id}/edit", data=rule_form("Door", "600"))
    assert response.status_code == 409
    response = form_post(
        admin, f"/admin/channels/{channel.id}/edit", data=webhook_form("Hook", HOOK_AUTH)
    )
    assert response.status_code == 409
    headers = {"X-CSRFToken": token(admin)}
    assert admin.post(f"/events/{event.id}/acknowledge", headers=headers).status_code == 409
    token_ = csrf_from(admin.get("/admin/transfer/").get_data(as_text=True))
    response = admin.post(
        "/admin/transfer/",
        data={"csrf_token": token_, "mode": "rename", "file": (io.BytesIO(export), "x.json")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 409

    with database.connection_context():
        # Only the failed import is recorded, as failed: no entry claims a change.
        assert [a.action for a in AuditLog.select().where(AuditLog.id > 0)][before:] == [
            "stream.import_failed"
        ]
        assert Stream.get_by_id(stream.id).interval == 60
        assert not Event.get_by_id(event.id).acknowledged


# --- Admin → Audit ----------------------------------------------------------------------------


def add_entries(count: int, start: datetime, **fields) -> list[int]:
    with database.connection_context():
        return [AuditLog.create(at=start + timedelta(minutes=i), **fields).id for i in range(count)]


def listed_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="audit-(\d+)"', html)]


def test_viewers_may_not_see_the_audit_log(admin, app):
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    assert viewer.get(PAGE).status_code == 403
    assert viewer.get(CSV).status_code == 403
    assert app.test_client().get(PAGE).status_code in (302, 401)


def test_the_page_says_how_long_entries_are_kept(admin, app_factory):
    assert "kept for 365 days" in admin.get(PAGE).get_data(as_text=True)
    forever = app_factory(GLIMPSER_AUDIT_RETENTION_DAYS="0").test_client()
    login(forever, "alice", PASSWORD)
    assert "kept forever" in forever.get(PAGE).get_data(as_text=True)


def test_newest_first_in_pages_that_hold_still(admin):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = add_entries(120, start, action="test.page", target="thing:1")
    seen: list[int] = []
    url = f"{PAGE}?action=test.page"
    while url:
        response = admin.get(url)
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        page_ids = listed_ids(html)
        assert len(page_ids) <= 50
        seen += page_ids
        if not seen[50:]:  # new entries after the first page do not shift the next one
            add_entries(5, start + timedelta(days=30), action="test.page")
        more = re.search(r'href="([^"]+)" rel="next"', html)
        url = more.group(1).replace("&amp;", "&") if more else ""
    assert len(seen) == len(set(seen)) == 120  # the newer entries come before page 1
    assert seen == ids[::-1]


def test_entries_of_the_same_instant_page_by_id(admin):
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with database.connection_context():
        ids = [AuditLog.create(at=at, action="test.tie").id for _ in range(70)]
    first = admin.get(f"{PAGE}?action=test.tie").get_data(as_text=True)
    more = re.search(r'href="([^"]+)" rel="next"', first)
    second = admin.get(more.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert listed_ids(first) + listed_ids(second) == ids[::-1]
    assert 'rel="next"' not in second and "← Newest" in second


def test_filters_by_user_action_object_and_time(db_app):
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    with database.connection_context():
        alice = User.get(User.username == "alice")
        bob = create_user("bob", PASSWORD, "viewer")
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    a = add_entries(1, start, action="stream.update", target="stream:3", user=alice)[0]
    b = add_entries(1, start + timedelta(hours=1), action="stream.create", target="stream:4")[0]
    c = add_entries(1, start + timedelta(hours=2), action="rule.update", target="rule:3")[0]
    d = add_entries(1, start + timedelta(hours=3), action="auth.login", user=bob)[0]
    e = add_entries(1, start + timedelta(hours=4), action="stream_x.y", target="stream_3")[0]

    def shown(query: str) -> set[int]:
        response = client.get(PAGE + "?" + query)
        assert response.status_code == 200, (query, response.get_data(as_text=True))
        return set(listed_ids(response.get_data(as_text=True))) & {a, b, c, d, e}

    assert shown("") == {a, b, c, d, e}
    assert shown(f"user={alice.id}") == {a}
    assert shown(f"user={bob.id}") == {d}
    assert shown("action=stream.update") == {a}
    assert shown("action=stream.*") == {a, b}  # not stream_x.y: "_" is no wildcard
    assert shown("action=*") == {a, b, c, d, e}
    assert shown("object=stream:3") == {a}
    assert shown("object=stream:*") == {a, b}
    assert shown("from=2026-03-01T13:00&to=2026-03-01T14:00") == {b, c}
    assert shown("from=2026-03-01T14:30") == {d, e}
    assert shown("to=2026-03-01T12:59") == {a}
    late = add_entries(1, start + timedelta(seconds=59.5), action="late.second")[0]
    assert late in set(listed_ids(client.get(PAGE + "?to=2026-03-01T12:00").text))
    assert late not in set(listed_ids(client.get(PAGE + "?to=2026-03-01T11:59").text))
    assert shown("from=2026-03-01T14:30%2B02:00") == {b, c, d, e}  # 12:30 UTC
    assert shown(f"user={2**63}") == set()
    assert shown("action=stream.*&object=stream:4") == {b}


@pytest.mark.parametrize(
    "query",
    [
        "user=abc",
        "user=%C2%B2",  # ²
        "user=-1",
        "action=DROP%20TABLE",
        "action=" + "a" * 80,
        "action=stream.%25",
        "object=" + "x" * 201,
        "object=a%0Ab",
        "from=0000-01-01T00:00",
        "from=2026-13-01T00:00",
        "from=%D9%A2%D9%A0%D9%A2%D9%A6-01-01T00:00",  # Arabic-Indic digits
        "to=10000-01-01T00:00",
        "from=0001-01-01T00:00%2B01:00",
        "from=yesterday",
        "from=2026-03-02T00:00&to=2026-03-01T00:00",
        "before=nonsense",
        f"before=20240101T000000.000000Z_{2**63}",
        "before=20240101T000000.000000Z_%D9%A3",
    ],
)
def test_bad_filters_are_a_clear_400(admin, query):
    for url in (PAGE, CSV) if not query.startswith("before=") else (PAGE,):
        response = admin.get(url + "?" + query)
        assert response.status_code == 400, (url, query)
    assert "Bad request" in admin.get(PAGE + "?" + query).get_data(as_text=True)


def test_links_to_the_objects_that_still_exist(admin):
    stream = create_camera(admin)
    html = admin.get(PAGE).get_data(as_text=True)
    assert f'<a href="/streams/{stream.id}">open</a>' in html
    form_post(admin, f"/streams/{stream.id}/delete", data={"confirm": "Gate"})
    html = admin.get(PAGE).get_data(as_text=True)
    assert f'<a href="/streams/{stream.id}">open</a>' not in html
    assert f"?object=stream:{stream.id}" in html.replace("%3A", ":")


def test_csv_export_of_the_filtered_rows_guards_against_formulas(admin):
    login(admin.application.test_client(), '=HYPERLINK("http://evil")', "x" * 12)
    start = datetime(2026, 2, 1, tzinfo=UTC)
    add_entries(3, start, action="test.csv", target="+thing:1", detail={"note": "-1+2"})
    add_entries(1, start, action="other.csv", target="@x")
    response = admin.get(CSV + "?action=test.*")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == [
        "id",
        "time_utc",
        "user",
        "action",
        "object",
        "address",
        "changes",
        "details",
    ]
    assert len(rows) == 4 and {r[3] for r in rows[1:]} == {"test.csv"}
    assert [r[4] for r in rows[1:]] == ["'+thing:1"] * 3
    assert rows[1][7] == "note: -1+2"
    assert rows[1][1].startswith("2026-02-01T00:02")  # newest first
    failed = list(csv.reader(io.StringIO(admin.get(CSV + "?action=auth.login_failed").text)))
    assert failed[1][7] == 'username: =HYPERLINK("http://evil")'  # not at the cell's start
    # A cell that starts with a formula character is prefixed.
    add_entries(1, start, action="test.formula", detail={"x": 1}, target="=1+1")
    formula = list(csv.reader(io.StringIO(admin.get(CSV + "?action=test.formula").text)))
    assert formula[1][4] == "'=1+1"


def test_csv_export_streams_every_matching_row(admin):
    ids = add_entries(1203, datetime(2025, 1, 1, tzinfo=UTC), action="test.many")
    response = admin.get(CSV + "?action=test.many")
    assert response.is_streamed
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))[1:]
    assert [int(r[0]) for r in rows] == ids[::-1]


def test_a_retried_delivery_is_recorded_with_the_retry(admin):
    with database.connection_context():
        event = Event.create(kind="test", title="Test")
        channel = NotificationChannel.create(
            name="Hook", kind="webhook", config={"kind": "webhook", "url": "https://192.0.2.1/"}
        )
        delivery = Delivery.create(event=event, channel=channel, status="failed")
    url = f"/admin/deliveries/{delivery.id}/retry"
    add_trigger("no_audit", "audit_log", "INSERT")
    assert form_post(admin, "/admin/deliveries/", url).status_code == 409
    drop_trigger("no_audit")
    with database.connection_context():
        assert Delivery.get_by_id(delivery.id).status == "failed"
    assert entries("delivery.retry") == []
    assert form_post(admin, "/admin/deliveries/", url).status_code == 302
    retried = one("delivery.retry")
    by_alice(retried, f"delivery:{delivery.id}")
    assert retried.detail == {"channel": "Hook", "event_id": event.id}
