"""Admin → Rules through the Flask test client: the form from RuleSpec, validation (422, nothing
saved), edit, enable/disable over htmx, delete, the default rule, CSRF and the admin-only policy."""

from __future__ import annotations

import re

import pytest

from glimpser.analysis.rules import rule_spec
from glimpser.analysis.schemas import RuleConditions, RuleSpec, TimeWindow
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import AuditLog, Event, NotificationChannel, Rule, Stream
from tests.helpers import csrf_from, form_post, login, setup_admin

PASSWORD = "correct horse battery"
LIST = "/admin/rules/"
NEW = "/admin/rules/new"


@pytest.fixture
def admin(db_app):
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


@pytest.fixture
def sqlite_admin(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def add_stream(name: str, groups: list[str] | None = None, kind: str = "http_image") -> Stream:
    with database.connection_context():
        return Stream.create(name=name, kind=kind, config={"kind": kind}, groups=groups or [])


def rule_named(name: str) -> Rule | None:
    with database.connection_context():
        return Rule.get_or_none(Rule.name == name)


def rule_count() -> int:
    with database.connection_context():
        return Rule.select().count()


def labelled(html: str) -> None:
    labels = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', html))
    for attrs in re.findall(r"<(?:input|select|textarea)\b([^>]*)>", html):
        if 'type="hidden"' in attrs:
            continue
        ident = re.search(r'\bid="([^"]+)"', attrs)
        assert ident and ident.group(1) in labels, attrs


def test_default_rule_exists_on_a_fresh_install_and_is_listed(admin):
    html = admin.get(LIST).get_data(as_text=True)
    assert "Motion or change" in html
    assert "All streams" in html and "motion or change detected" in html
    assert "300 s" in html and "never" in html
    rule = rule_named("Motion or change")
    assert rule is not None and rule.enabled
    with database.connection_context():
        spec = rule_spec(rule)
    assert spec.conditions.changed and spec.severity == "info" and spec.applies_to == "all"
    # The admin page links here.
    assert 'href="/admin/rules/"' in admin.get("/admin/").get_data(as_text=True)


def test_the_form_renders_every_schema_field_with_labels(sqlite_admin):
    add_stream("Front door")
    html = sqlite_admin.get(NEW).get_data(as_text=True)
    for name in ("name", "description", "enabled", "groups", "severity", "cooldown_seconds"):
        assert f'name="{name}"' in html, name
    for name in RuleConditions.model_fields:
        assert f'name="conditions.{name}"' in html, name
    for title in (RuleSpec.model_fields["cooldown_seconds"].title, "Quiet hours", "Time zone"):
        assert title in html
    assert RuleConditions.model_fields["objects_any"].description in html
    assert 'name="schedule.active.2.start"' in html and 'name="schedule.quiet.2.days"' in html
    for name in ("start", "end"):
        assert f"{TimeWindow.model_fields[name].title}</label>" in html
    assert 'name="stream_ids"' in html and "Front door" in html
    # No channels yet: the Notify fieldset points to Admin → Channels (tests/ has the rest).
    assert "No notification channels yet: add one in" in html and "Admin → Channels" in html
    # No AI configured in the tests' settings: the page says so next to the AI conditions.
    assert "AI not configured — AI conditions will not match" in html
    labelled(html)


def test_no_ai_note_when_ai_is_configured(app_factory):
    app = app_factory(GLIMPSER_AI_BASE_URL="http://127.0.0.1:9/v1", GLIMPSER_AI_MODEL="vision")
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    for url in (LIST, NEW):
        html = client.get(url).get_data(as_text=True)
        assert "AI not configured" not in html, url
    assert "AI conditions" in client.get(NEW).get_data(as_text=True)


def test_create_a_rule(admin):
    door = add_stream("Front door", groups=["outdoor"])
    add_stream("Back door")
    response = form_post(
        admin,
        NEW,
        data={
            "name": "Person at the door",
            "description": "Someone is there",
            "enabled": "1",
            "applies_to": "chosen",
            "stream_ids": [str(door.id)],
            "severity": "high",
            "cooldown_seconds": "60",
            "conditions.changed": "1",
            "conditions.objects_any": "Person, car",
            "conditions.min_confidence": "0.6",
            "schedule.timezone": "Europe/Berlin",
            "schedule.quiet.1.days": ["5", "6"],
            "schedule.quiet.1.start": "22:00",
            "schedule.quiet.1.end": "06:00",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    rule = rule_named("Person at the door")
    assert rule is not None
    assert rule.applies_to == "chosen" and rule.stream_ids == [door.id] and rule.groups == []
    assert rule.conditions == {"changed": True, "objects_any": ["person", "car"]}
    assert rule.schedule == {
        "timezone": "Europe/Berlin",
        "quiet": [{"days": [5, 6], "start": "22:00", "end": "06:00"}],
    }
    assert rule.severity == "high" and rule.cooldown_seconds == 60 and rule.channels == []
    with database.connection_context():
        entry = AuditLog.get(AuditLog.action == "rule.create")
        assert entry.target == f"rule:{rule.id}" and entry.detail["name"] == rule.name
    html = admin.get(LIST).get_data(as_text=True)
    assert "Person at the door" in html and "AI sees person or car" in html
    assert "quiet Sat, Sun 22:00–06:00 (Europe/Berlin)" in html


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": ""}, "f-name-error", "at least 1 character"),
        ({"conditions.changed": None}, None, "choose at least one condition"),
        ({"conditions.motion_above": "150"}, "f-conditions-motion-above-error", "less than"),
        ({"applies_to": "groups", "groups": ""}, "f-applies-to-error", "name at least one group"),
        ({"applies_to": "chosen"}, "f-applies-to-error", "choose at least one stream"),
        ({"schedule.timezone": "Mars/Olympus"}, "f-schedule-timezone-error", "unknown time zone"),
        ({"schedule.active.1.start": "25:00"}, "f-schedule-active-1-start-error", "07:30"),
        ({"schedule.quiet.0.start": "22:00"}, "f-schedule-quiet-0-days-error", "at least 1"),
        ({"cooldown_seconds": "soon"}, "f-cooldown-seconds-error", "valid integer"),
        (
            {"conditions.capture_failing": "1"},
            None,
            "cannot be combined with picture conditions",
        ),
    ],
)
def test_invalid_input_is_a_422_with_messages_next_to_fields_and_saves_nothing(
    sqlite_admin, data, field, message
):
    before = rule_count()
    base = {"name": "Bad", "applies_to": "all", "conditions.changed": "1", "severity": "info"}
    fields = {k: v for k, v in {**base, **data}.items() if v is not None}  # None: unticked
    response = form_post(sqlite_admin, NEW, data=fields)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Nothing was saved" in html
    assert message in html
    if field:
        match = re.search(rf'id="{field}"[^>]*>([^<]*)<', html)
        assert match and message in match.group(1), field
    assert rule_count() == before
    labelled(html)


def test_a_duplicate_name_is_refused(sqlite_admin):
    response = form_post(
        sqlite_admin,
        NEW,
        data={"name": "motion OR change", "applies_to": "all", "conditions.changed": "1"},
    )
    assert response.status_code == 422
    assert "Another rule already has this name." in response.get_data(as_text=True)
    assert rule_count() == 1


def test_edit_the_default_rule(admin):
    add_stream("Status page", groups=["web"], kind="website")
    rule = rule_named("Motion or change")
    page = admin.get(f"/admin/rules/{rule.id}/edit")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'value="Motion or change"' in html
    assert re.search(r'name="conditions.changed" value="1"\s+checked', html)
    response = form_post(
        admin,
        f"/admin/rules/{rule.id}/edit",
        data={
            "name": "Motion or change",
            "enabled": "1",
            "applies_to": "groups",
            "groups": "web, outdoor",
            "severity": "low",
            "cooldown_seconds": "0",
            "conditions.changed": "1",
            "conditions.changed_area_above": "2.5",
            "schedule.timezone": "UTC",
            "schedule.active.0.days": ["0", "1", "2", "3", "4"],
            "schedule.active.0.start": "08:00",
            "schedule.active.0.end": "18:00",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    fresh = rule_named("Motion or change")
    assert fresh.id == rule.id and fresh.applies_to == "groups"
    assert fresh.groups == ["web", "outdoor"] and fresh.severity == "low"
    assert fresh.cooldown_seconds == 0
    assert fresh.conditions == {"changed": True, "changed_area_above": 2.5}
    assert fresh.schedule["active"] == [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}]
    with database.connection_context():
        assert AuditLog.select().where(AuditLog.action == "rule.update").count() == 1
    # The edit form shows the stored windows again.
    html = admin.get(f"/admin/rules/{rule.id}/edit").get_data(as_text=True)
    assert 'name="schedule.active.0.start" value="08:00"' in html
    assert 'value="web, outdoor"' in html


def test_toggle_over_htmx_and_plain_post(sqlite_admin):
    rule = rule_named("Motion or change")
    token = csrf_from(sqlite_admin.get(LIST).get_data(as_text=True))
    response = sqlite_admin.post(
        f"/admin/rules/{rule.id}/toggle", headers={"X-CSRFToken": token, "HX-Request": "true"}
    )
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert fragment.lstrip().startswith(f'<tr id="rule-{rule.id}"') and "Enable" in fragment
    assert not rule_named("Motion or change").enabled
    response = sqlite_admin.post(f"/admin/rules/{rule.id}/toggle", data={"csrf_token": token})
    assert response.status_code == 302
    assert rule_named("Motion or change").enabled
    with database.connection_context():
        actions = [a.action for a in AuditLog.select().order_by(AuditLog.id)]
    assert actions[-2:] == ["rule.disable", "rule.enable"]


def test_delete_is_confirmed_and_keeps_the_events(admin):
    stream = add_stream("Front door")
    rule = rule_named("Motion or change")
    with database.connection_context():
        Event.create(stream=stream.id, rule=rule.id, kind="motion", title="Motion on Front door")
    listed = admin.get(LIST).get_data(as_text=True)
    row = listed[listed.index(f'id="rule-{rule.id}"') :]
    row = row[: row.index("</tr>")]
    assert re.search(r'rule-events">1<br><small class="muted">last <time datetime="\d{4}-', row)
    page = admin.get(f"/admin/rules/{rule.id}/delete").get_data(as_text=True)
    assert "Its 1 event stay" in page
    response = form_post(admin, f"/admin/rules/{rule.id}/delete")
    assert response.status_code == 302
    assert rule_named("Motion or change") is None
    with database.connection_context():
        [event] = list(Event.select())
        assert event.rule_id is None
        assert AuditLog.get(AuditLog.action == "rule.delete").detail["name"] == "Motion or change"
    assert admin.get(f"/admin/rules/{rule.id}/edit").status_code == 404


def test_posts_without_csrf_are_refused(sqlite_admin):
    rule = rule_named("Motion or change")
    assert sqlite_admin.post(f"/admin/rules/{rule.id}/toggle").status_code == 400
    assert sqlite_admin.post(f"/admin/rules/{rule.id}/delete").status_code == 400
    response = sqlite_admin.post(NEW, data={"name": "x", "conditions.changed": "1"})
    assert response.status_code == 400
    assert rule_count() == 1 and rule_named("Motion or change").enabled


def test_viewers_get_403(app):
    setup_admin(app.test_client(), "alice", PASSWORD)
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    rule = rule_named("Motion or change")
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    token = csrf_from(viewer.get("/").get_data(as_text=True))
    for url in (LIST, NEW, f"/admin/rules/{rule.id}/edit", f"/admin/rules/{rule.id}/delete"):
        assert viewer.get(url).status_code == 403, url
    for url in (NEW, f"/admin/rules/{rule.id}/toggle", f"/admin/rules/{rule.id}/delete"):
        response = viewer.post(url, data={"csrf_token": token, "name": "x"})
        assert response.status_code == 403, url
    assert rule_named("Motion or change").enabled and rule_count() == 1


def test_a_rule_that_no_longer_validates_is_shown_as_such(sqlite_admin):
    with database.connection_context():
        Rule.create(name="Broken", conditions={"nonsense": True})
    html = sqlite_admin.get(LIST).get_data(as_text=True)
    assert "Not valid, skipped" in html


# --- in a real browser ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.browser
def test_toggle_and_create_in_the_browser_on_a_phone(live_server, page):
    from playwright.sync_api import expect

    from tests.helpers import first_run_in_browser

    page.set_viewport_size({"width": 375, "height": 800})
    first_run_in_browser(page, live_server.url)
    page.goto(live_server.url + "/admin/")
    page.get_by_role("link", name="Rules: what becomes an event").click()
    expect(page.get_by_role("heading", name="Rules")).to_be_visible()
    # htmx posts with the CSRF header from <body> and swaps the row in place.
    page.get_by_role("button", name="Disable Motion or change").click()
    expect(page.get_by_role("button", name="Enable Motion or change")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Enable Motion or change")).to_be_visible()

    page.get_by_role("button", name="New rule").click()
    page.get_by_label("Name", exact=True).fill("Parcel")
    page.get_by_label("AI sees any of").fill("parcel, box")
    page.get_by_role("group", name="Quiet hours 1: days").get_by_label("Sun").check()
    page.locator("#f-schedule-quiet-0-start").fill("25:00")
    page.get_by_role("button", name="Create rule").click()
    expect(page.locator("#f-schedule-quiet-0-start-error")).to_contain_text("07:30")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.locator("#f-schedule-quiet-0-start").fill("20:00")
    page.get_by_role("button", name="Create rule").click()
    expect(page.get_by_text("Rule “Parcel” created.")).to_be_visible()
    expect(page.get_by_role("cell", name="AI sees parcel or box")).to_be_visible()


# --- Notify: choosing channels ----------------------------------------------------------------


def add_channel(name: str, kind: str = "webpush", enabled: bool = True) -> NotificationChannel:
    with database.connection_context():
        return NotificationChannel.create(
            name=name, kind=kind, config={"kind": kind}, enabled=enabled
        )


def test_the_form_lists_channels_and_stores_the_chosen_ones(admin, db_app):
    pager = add_channel("Pager", "pushover")
    hook = add_channel("Old hook", "webhook", enabled=False)
    add_channel("Browsers")
    html = admin.get(NEW).get_data(as_text=True)
    assert "No notification channels yet" not in html
    for channel, label in ((pager, "Pushover"), (hook, "Webhook (JSON over HTTP)")):
        box = re.search(rf'<label for="f-channels-{channel.id}">(.*?)</label>', html, re.S)
        assert box and f'name="channels" value="{channel.id}"' in box.group(1)
        assert channel.name in box.group(1) and label in box.group(1)
    assert "(disabled)" in re.search(rf'for="f-channels-{hook.id}">(.*?)</label>', html, re.S)[1]
    assert (
        "(disabled)" not in re.search(rf'for="f-channels-{pager.id}">(.*?)</label>', html, re.S)[1]
    )
    labelled(html)

    base = {"name": "Alarm", "applies_to": "all", "conditions.changed": "1", "severity": "high"}
    response = form_post(admin, NEW, data={**base, "channels": [str(hook.id), str(pager.id)]})
    assert response.status_code == 302, response.get_data(as_text=True)
    rule = rule_named("Alarm")
    assert rule.channels == sorted([pager.id, hook.id])
    listed = admin.get(LIST).get_data(as_text=True)
    row = listed[listed.index(f'id="rule-{rule.id}"') :]
    row = row[: row.index("</tr>")]
    assert "Pager" in row and "Old hook" in row
    default_row = listed[listed.index(f'id="rule-{rule_named("Motion or change").id}"') :]
    assert "no channel" in default_row[: default_row.index("</tr>")]

    # The edit form ticks the stored channels; unticking them all stores none.
    edit_url = f"/admin/rules/{rule.id}/edit"
    html = admin.get(edit_url).get_data(as_text=True)
    assert re.search(rf'name="channels" value="{pager.id}"\s+checked', html)
    response = form_post(admin, edit_url, data={**base, "channels": [str(pager.id)]})
    assert response.status_code == 302
    assert rule_named("Alarm").channels == [pager.id]
    response = form_post(admin, edit_url, data=base)
    assert response.status_code == 302
    assert rule_named("Alarm").channels == []


@pytest.mark.parametrize("bad", ["999999", "abc", "99999999999999999999999"])
def test_an_unknown_channel_is_a_422_and_nothing_is_saved(sqlite_admin, bad):
    pager = add_channel("Pager", "pushover")
    rule = rule_named("Motion or change")
    edit_url = f"/admin/rules/{rule.id}/edit"
    data = {"name": "Renamed", "applies_to": "all", "conditions.changed": "1"}
    for url in (NEW, edit_url):
        response = form_post(sqlite_admin, url, data={**data, "channels": [str(pager.id), bad]})
        assert response.status_code == 422, url
        html = response.get_data(as_text=True)
        assert "Nothing was saved" in html
        message = re.search(r'id="f-channels-error"[^>]*>([^<]*)<', html)
        assert message and "reload the page" in message.group(1)
        assert re.search(rf'name="channels" value="{pager.id}"\s+checked', html) or bad == "abc"
    assert rule_count() == 1
    fresh = rule_named("Motion or change")
    assert fresh is not None and fresh.channels == []


def test_a_deleted_channel_shows_in_the_list_and_is_dropped_on_save(sqlite_admin):
    pager = add_channel("Pager", "pushover")
    rule = rule_named("Motion or change")
    with database.connection_context():
        Rule.update(channels=[pager.id, pager.id + 50]).where(Rule.id == rule.id).execute()
    listed = sqlite_admin.get(LIST).get_data(as_text=True)
    assert f"Pager, #{pager.id + 50} (deleted)" in listed
    # The form only offers channels that exist, so saving it keeps the existing one only.
    html = sqlite_admin.get(f"/admin/rules/{rule.id}/edit").get_data(as_text=True)
    assert f'value="{pager.id + 50}"' not in html
    response = form_post(
        sqlite_admin,
        f"/admin/rules/{rule.id}/edit",
        data={
            "name": rule.name,
            "applies_to": "all",
            "conditions.changed": "1",
            "channels": [str(pager.id)],
        },
    )
    assert response.status_code == 302
    assert rule_named(rule.name).channels == [pager.id]


def test_no_channels_yet_points_to_admin_channels(sqlite_admin, app):
    html = sqlite_admin.get(NEW).get_data(as_text=True)
    assert 'name="channels"' not in html
    assert "No notification channels yet: add one in" in html
    if "admin_channels.index" in app.view_functions:
        assert '<a href="/admin/channels/">Admin → Channels</a>' in html
    else:
        assert "add one in Admin → Channels." in html
