"""CAP 1.2 alerts, their Update/Cancel lifecycle, the Atom feed and per-alert URLs.

Every alert is validated against the official OASIS CAP 1.2 schema (tests/notify/cap-1.2.xsd,
see cap-1.2.xsd.NOTICE) with two independent validators (libxml2 through lxml, and xmlschema),
on SQLite and PostgreSQL, with real snapshots in real storage and real users and grants.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from itertools import product
from pathlib import Path
from urllib.parse import urlparse

import pytest
import xmlschema
from lxml import etree

from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.media.storage import get_storage
from glimpser.models import (
    EVENT_KINDS,
    SEVERITIES,
    CapMessage,
    Event,
    Stream,
    StreamAccess,
    User,
)
from glimpser.notify import cap
from tests.helpers import login, setup_admin
from tests.media_servers import jpeg
from tests.test_images import add_snapshot, add_stream

PASSWORD = "correct horse battery"
SCHEMA_PATH = Path(__file__).with_name("cap-1.2.xsd")
NS = {"cap": cap.CAP_NS, "atom": "http://www.w3.org/2005/Atom"}
CAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
PUBLIC_URL = "https://glimpser.example.org"


@pytest.fixture(scope="module")
def schemas() -> tuple[etree.XMLSchema, xmlschema.XMLSchema]:
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH))), xmlschema.XMLSchema(str(SCHEMA_PATH))


def assert_valid(schemas, xml: str | bytes) -> etree._Element:
    """Parse and validate one alert against the OASIS schema; returns its root."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    root = etree.fromstring(data)
    lxml_schema, py_schema = schemas
    assert lxml_schema.validate(root), lxml_schema.error_log.filter_from_errors()
    py_schema.validate(data.decode("utf-8"))  # raises with the reason when invalid
    return root


def text(root: etree._Element, path: str) -> str | None:
    return root.findtext(path, namespaces=NS)


@pytest.fixture
def app(db_app):
    return db_app


@pytest.fixture
def settings(app):
    return app.extensions["glimpser.settings"]


@pytest.fixture
def admin(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def add_event(stream: Stream | None, **fields: object) -> Event:
    fields.setdefault("kind", "motion")
    fields.setdefault("title", "Someone at the door")
    with database.connection_context():
        return Event.create(stream=stream, **fields)


def reload(event: Event) -> Event:
    return Event.get_by_id(event.id)


# --- the alert itself -----------------------------------------------------------------------


def test_every_severity_and_kind_makes_a_schema_valid_alert(app, settings, schemas):
    porch = add_stream("Porch")
    picture = jpeg((20, 90, 160), size=(320, 240))
    snap = add_snapshot(app, porch, picture)
    for kind, severity in product(EVENT_KINDS, SEVERITIES):
        event = add_event(
            porch,
            kind=kind,
            severity=severity,
            snapshot=snap,
            title=f"{kind} at severity {severity}",
            description="A person in a red coat crosses the drive & stops.",
        )
        with database.connection_context():
            message = cap.issue(event, "Alert", settings)
        root = assert_valid(schemas, message.xml)
        assert root.tag == f"{{{cap.CAP_NS}}}alert"
        assert text(root, "cap:msgType") == "Alert"
        status = "Test" if kind == "test" else "Actual"  # a "Send test" never reads as real
        assert text(root, "cap:status") == status and text(root, "cap:scope") == "Public"
        assert text(root, "cap:identifier") == f"glimpser-localhost-event-{event.id}-1"
        assert re.fullmatch(r"[^\s,<&]+", text(root, "cap:identifier"))
        assert text(root, "cap:sender") == "glimpser@localhost"
        assert root.find("cap:references", NS) is None
        info = root.find("cap:info", NS)
        assert text(info, "cap:language") == "en-US"
        assert text(info, "cap:category") == cap.CATEGORY_MAP[kind]
        assert text(info, "cap:event") == cap.EVENT_WORDS[kind]
        urgency, cap_severity, certainty = cap.SEVERITY_MAP[severity]
        assert text(info, "cap:severity") == cap_severity
        if kind == "capture_recovered":
            assert text(info, "cap:urgency") == "Past"
            assert text(info, "cap:responseType") == "AllClear"
        else:
            assert text(info, "cap:urgency") == urgency
        if kind == "ai":
            assert text(info, "cap:certainty") == (
                "Likely" if certainty == "Observed" else certainty
            )
        elif kind.startswith("capture_") or kind in ("motion", "change"):
            assert text(info, "cap:certainty") == "Observed"
        else:
            assert text(info, "cap:certainty") == certainty
        assert text(info, "cap:headline") == f"{kind} at severity {severity}"
        assert text(info, "cap:description").endswith("crosses the drive & stops.")
        params = {
            p.findtext("cap:valueName", namespaces=NS): p.findtext("cap:value", namespaces=NS)
            for p in info.findall("cap:parameter", NS)
        }
        assert params["stream"] == "Porch" and params["eventId"] == str(event.id)
        assert params["eventSeverity"] == severity and params["snapshotId"] == str(snap.id)
        assert text(info, "cap:area/cap:areaDesc") == "Porch"
        assert info.find("cap:web", NS) is None  # no GLIMPSER_PUBLIC_URL: no link to make up


def test_the_mapping_table_is_the_documented_one():
    assert cap.SEVERITY_MAP == {
        "critical": ("Immediate", "Extreme", "Observed"),
        "high": ("Expected", "Severe", "Observed"),
        "medium": ("Expected", "Moderate", "Likely"),
        "low": ("Future", "Minor", "Possible"),
        "info": ("Unknown", "Minor", "Observed"),
    }
    assert set(cap.SEVERITY_MAP) == set(SEVERITIES)
    assert set(cap.CATEGORY_MAP) == set(EVENT_KINDS) == set(cap.EVENT_WORDS)
    documented = (Path(__file__).resolve().parents[2] / "docs" / "cap.md").read_text()
    for severity, (urgency, cap_severity, certainty) in cap.SEVERITY_MAP.items():
        assert f"| {severity} | {urgency} | {cap_severity} | {certainty} |" in documented


def test_times_carry_an_explicit_offset_never_z(app, settings, schemas):
    from datetime import datetime, timedelta, timezone

    porch = add_stream("Porch")
    # Made in another zone with microseconds: still UTC, whole seconds, "+00:00".
    made = datetime(2026, 11, 24, 11, 0, 0, 654321, tzinfo=timezone(timedelta(hours=1)))
    event = add_event(porch, created_at=made)
    with database.connection_context():
        xml = cap.build_alert(event, "Alert", settings, sent=made)
    root = assert_valid(schemas, xml)
    assert text(root, "cap:sent") == "2026-11-24T10:00:00+00:00"
    assert text(root, "cap:info/cap:onset") == "2026-11-24T10:00:00+00:00"
    with database.connection_context():
        stored = cap.issue(event, "Alert", settings)
    root = assert_valid(schemas, stored.xml)
    for value in (text(root, "cap:sent"), text(root, "cap:info/cap:onset")):
        assert CAP_TIME.match(value) and "Z" not in value
    assert "Z<" not in stored.xml


def test_long_titles_become_headlines_of_at_most_160_characters(app, settings, schemas):
    event = add_event(add_stream("Porch"), title="A very long title " * 15)
    with database.connection_context():
        root = assert_valid(schemas, cap.issue(event, "Alert", settings).xml)
    headline = text(root, "cap:info/cap:headline")
    assert len(headline) <= 160 and headline.startswith("A very long title")


def test_a_system_event_without_a_stream_has_no_area(app, settings, schemas):
    event = add_event(None, kind="capture_failed", severity="critical", title="Disk full")
    with database.connection_context():
        root = assert_valid(schemas, cap.issue(event, "Alert", settings).xml)
    assert root.find("cap:info/cap:area", NS) is None
    assert text(root, "cap:info/cap:category") == "Infra"
    with database.connection_context():
        root = assert_valid(schemas, cap.build_alert(event, "Alert", settings, area_desc="Site A"))
    assert text(root, "cap:info/cap:area/cap:areaDesc") == "Site A"


def test_a_channels_area_is_used_when_the_message_is_made(app, settings, schemas):
    event = add_event(add_stream("Porch"))
    with database.connection_context():
        first = cap.alert_for_event(event, settings, area_desc="Warehouse 7,  north gate")
        # Shared by every channel: a later caller with another area gets the same message.
        assert cap.alert_for_event(reload(event), settings, area_desc="Elsewhere").id == first.id
        cancel = cap.cancel_for_event(reload(event), settings, area_desc="Warehouse 7")
    root = assert_valid(schemas, first.xml)
    assert text(root, "cap:info/cap:area/cap:areaDesc") == "Warehouse 7, north gate"
    root = assert_valid(schemas, cancel.xml)
    assert text(root, "cap:info/cap:area/cap:areaDesc") == "Warehouse 7"


def test_unknown_msg_types_and_unreferenced_updates_are_refused(app, settings):
    event = add_event(add_stream("Porch"))
    with database.connection_context():
        with pytest.raises(ValueError, match="msgType"):
            cap.build_alert(event, "Ack", settings)
        with pytest.raises(ValueError, match="reference"):
            cap.build_alert(event, "Update", settings)
        with pytest.raises(ValueError, match="no earlier"):
            cap.issue(event, "Update", settings)
        assert cap.cancel_for_event(event, settings) is None  # nothing issued, nothing to cancel
        assert CapMessage.select().count() == 0


# --- snapshot resource ----------------------------------------------------------------------


def test_snapshot_is_embedded_with_its_sha1_digest_without_a_public_url(app, settings, schemas):
    porch = add_stream("Porch")
    snap = add_snapshot(app, porch, jpeg((200, 30, 30), size=(640, 360), label="door"))
    stored = get_storage(settings).get(snap.storage_key)
    event = add_event(porch, snapshot=snap)
    with database.connection_context():
        root = assert_valid(schemas, cap.issue(event, "Alert", settings).xml)
    resource = root.find("cap:info/cap:resource", NS)
    assert text(resource, "cap:resourceDesc") == "Snapshot"
    assert text(resource, "cap:mimeType") == "image/jpeg"
    assert int(text(resource, "cap:size")) == len(stored) == snap.bytes
    assert text(resource, "cap:digest") == hashlib.sha1(stored, usedforsecurity=False).hexdigest()
    assert base64.b64decode(text(resource, "cap:derefUri")) == stored
    assert resource.find("cap:uri", NS) is None


def test_snapshot_and_event_are_linked_with_a_public_url(app_factory, database_url, schemas):
    app = app_factory(database_url, GLIMPSER_PUBLIC_URL=PUBLIC_URL)
    settings = app.extensions["glimpser.settings"]
    porch = add_stream("Porch")
    snap = add_snapshot(app, porch, jpeg((30, 200, 30), size=(640, 360)))
    stored = get_storage(settings).get(snap.storage_key)
    event = add_event(porch, snapshot=snap, severity="high")
    with database.connection_context():
        root = assert_valid(schemas, cap.issue(event, "Alert", settings).xml)
    assert text(root, "cap:identifier") == f"glimpser-glimpser.example.org-event-{event.id}-1"
    assert text(root, "cap:info/cap:web") == f"{PUBLIC_URL}/events/{event.id}"
    resource = root.find("cap:info/cap:resource", NS)
    assert text(resource, "cap:uri") == (f"{PUBLIC_URL}/streams/{porch.id}/snapshots/{snap.id}.jpg")
    assert resource.find("cap:derefUri", NS) is None
    assert text(resource, "cap:digest") == hashlib.sha1(stored, usedforsecurity=False).hexdigest()
    assert int(text(resource, "cap:size")) == len(stored)


def test_a_snapshot_whose_file_is_gone_is_left_out(app, settings, schemas):
    porch = add_stream("Porch")
    snap = add_snapshot(app, porch, jpeg((1, 2, 3)))
    get_storage(settings).delete(snap.storage_key)
    event = add_event(porch, snapshot=snap)
    with database.connection_context():
        root = assert_valid(schemas, cap.issue(event, "Alert", settings).xml)
    assert root.find("cap:info/cap:resource", NS) is None


# --- lifecycle --------------------------------------------------------------------------------


def test_alert_update_cancel_reference_the_earlier_messages(app, settings, schemas):
    porch = add_stream("Porch")
    snap = add_snapshot(app, porch, jpeg((20, 90, 160)))
    event = add_event(porch, snapshot=snap, severity="medium")
    with database.connection_context():
        first = cap.alert_for_event(event, settings)
        assert cap.alert_for_event(reload(event), settings).id == first.id  # nothing changed
        Event.update(severity="high", description="Now two people.").where(
            Event.id == event.id
        ).execute()
        update = cap.alert_for_event(reload(event), settings)
        again = cap.alert_for_event(reload(event), settings)
    assert first.msg_type == "Alert" and update.msg_type == "Update"
    assert again.id == update.id  # the same state twice: no second Update
    alert_root = assert_valid(schemas, first.xml)
    update_root = assert_valid(schemas, update.xml)
    assert text(update_root, "cap:msgType") == "Update"
    assert text(update_root, "cap:identifier") == f"glimpser-localhost-event-{event.id}-2"
    first_ref = ",".join(
        [
            text(alert_root, "cap:sender"),
            text(alert_root, "cap:identifier"),
            text(alert_root, "cap:sent"),
        ]
    )
    assert text(update_root, "cap:references") == first_ref
    assert update.references == first_ref
    assert text(update_root, "cap:info/cap:severity") == "Severe"
    assert text(update_root, "cap:info/cap:description") == "Now two people."

    with database.connection_context():
        Event.update(acknowledged=True).where(Event.id == event.id).execute()
        cancel = cap.cancel_for_event(reload(event), settings)
        assert cap.cancel_for_event(reload(event), settings).id == cancel.id
        assert cap.alert_for_event(reload(event), settings).id == cancel.id  # withdrawn stays so
        with pytest.raises(ValueError, match="cancelled"):
            cap.issue(reload(event), "Update", settings)
        assert CapMessage.select().where(CapMessage.event == event.id).count() == 3
    cancel_root = assert_valid(schemas, cancel.xml)
    assert text(cancel_root, "cap:msgType") == "Cancel"
    update_ref = ",".join(
        [
            text(update_root, "cap:sender"),
            text(update_root, "cap:identifier"),
            text(update_root, "cap:sent"),
        ]
    )
    assert text(cancel_root, "cap:references").split(" ") == [first_ref, update_ref]
    assert text(cancel_root, "cap:info/cap:urgency") == "Past"
    assert text(cancel_root, "cap:info/cap:responseType") == "AllClear"
    for entry in text(cancel_root, "cap:references").split(" "):
        sender, identifier, sent = entry.split(",")
        assert sender == "glimpser@localhost" and CAP_TIME.match(sent)
        with database.connection_context():
            assert CapMessage.get(CapMessage.identifier == identifier).sent_at <= cancel.sent_at


def test_issuing_twice_creates_no_duplicate(app, settings):
    event = add_event(add_stream("Porch"))
    with database.connection_context():
        first = cap.issue(event, "Alert", settings)
        second = cap.issue(reload(event), "Alert", settings)  # a retried job
        assert first.id == second.id and first.identifier == second.identifier
        assert first.xml == second.xml
        cancel = cap.issue(event, "Cancel", settings)
        assert cap.issue(event, "Cancel", settings).id == cancel.id
        assert CapMessage.select().count() == 2


def test_a_message_another_worker_stored_is_returned_not_duplicated(app, settings):
    event = add_event(add_stream("Porch"))
    with database.connection_context():
        xml = cap.build_alert(event, "Alert", settings)
        winner = CapMessage.create(
            event=event.id,
            identifier=cap.make_identifier(event.id, 1, settings),
            msg_type="Alert",
            xml=xml,
        )
        assert cap.issue(event, "Alert", settings).id == winner.id
        assert CapMessage.select().count() == 1


def test_workers_issuing_at_once_store_one_message(app, settings):
    """Eight threads, each with its own connection, ask for the same Alert together: the
    unique identifier lets exactly one insert, and every thread answers with that row."""
    event = add_event(add_stream("Porch"))
    barrier = threading.Barrier(8)
    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with database.connection_context():
                barrier.wait()
                results.append(cap.issue(Event.get_by_id(event.id), "Alert", settings).id)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    with database.connection_context():
        assert CapMessage.select().count() == 1
        assert set(results) == {CapMessage.get().id}


def test_an_identifier_taken_by_another_event_fails_cleanly(app, settings):
    """A number that can never be stored (e.g. a restored database reusing ids) ends in a
    clear error after a few tries instead of looping or storing a duplicate identifier."""
    porch = add_stream("Porch")
    event, other = add_event(porch), add_event(porch, title="Other")
    with database.connection_context():
        CapMessage.create(
            event=other.id,
            identifier=cap.make_identifier(event.id, 1, settings),
            msg_type="Alert",
            xml=cap.build_alert(other, "Alert", settings),
        )
        with pytest.raises(RuntimeError, match="could not store"):
            cap.issue(event, "Alert", settings)
        assert CapMessage.select().where(CapMessage.event == event.id).count() == 0


# --- the feed and per-alert URLs ------------------------------------------------------------


@pytest.fixture
def alerts(app, settings):
    """Alerts on a granted stream, a hidden stream and a system event; one updated, one
    cancelled. Returns (granted stream, {name: [CapMessage, ...]})."""
    granted = add_stream("Granted")
    hidden = add_stream("Hidden")
    snap = add_snapshot(app, granted, jpeg((10, 120, 200)))
    out: dict[str, list[CapMessage]] = {}
    porch = add_event(granted, snapshot=snap, title="Granted motion", severity="high")
    yard = add_event(hidden, title="Hidden motion", severity="low", kind="change")
    disk = add_event(None, title="System capture failed", kind="capture_failed")
    with database.connection_context():
        out["granted"] = [cap.alert_for_event(porch, settings)]
        Event.update(title="Granted motion, two people").where(Event.id == porch.id).execute()
        out["granted"].append(cap.alert_for_event(reload(porch), settings))
        out["hidden"] = [cap.alert_for_event(yard, settings)]
        out["hidden"].append(cap.cancel_for_event(reload(yard), settings))
        out["system"] = [cap.alert_for_event(disk, settings)]
    return granted, out


def read_feed(response) -> etree._Element:
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "application/atom+xml"
    root = etree.fromstring(response.get_data())
    assert root.tag == "{http://www.w3.org/2005/Atom}feed"
    assert text(root, "atom:id").startswith("urn:uuid:")
    assert text(root, "atom:title") and CAP_TIME.match(text(root, "atom:updated"))
    assert root.find("atom:link[@rel='self']", NS).get("type") == "application/atom+xml"
    return root


def entries(root: etree._Element) -> list[etree._Element]:
    return root.findall("atom:entry", NS)


def fetch_alert(client, href: str, schemas) -> etree._Element:
    response = client.get(urlparse(href).path)
    assert response.status_code == 200, (href, response.status_code)
    assert response.mimetype == "application/cap+xml"
    return assert_valid(schemas, response.get_data())


def test_the_feed_lists_every_message_and_links_each_valid_alert(admin, alerts, schemas):
    _granted, out = alerts
    root = read_feed(admin.get("/cap/alerts.atom"))
    found = entries(root)
    every = [m for messages in out.values() for m in messages]
    assert len(found) == len(every) == 5
    ids = set()
    for entry in found:
        assert text(entry, "atom:id").startswith("urn:uuid:")
        ids.add(text(entry, "atom:id"))
        assert text(entry, "atom:title")
        assert CAP_TIME.match(text(entry, "atom:updated"))
        assert CAP_TIME.match(text(entry, "atom:published"))
        assert text(entry, "atom:summary") is not None
        link = entry.find("atom:link[@rel='alternate']", NS)
        assert link.get("type") == "application/cap+xml"
        assert link.get("href").startswith("http://localhost/cap/alerts/")
        alert = fetch_alert(admin, link.get("href"), schemas)
        assert text(alert, "cap:sent") == text(entry, "atom:updated")
        assert text(alert, "cap:info/cap:headline") in text(entry, "atom:title")
    assert len(ids) == 5  # each entry its own permanent id
    titles = [text(e, "atom:title") for e in found]
    assert "Update: Granted motion, two people" in titles
    assert "Cancelled: Hidden motion" in titles
    # Newest first.
    updated = [text(e, "atom:updated") for e in found]
    assert updated == sorted(updated, reverse=True)


def test_each_alert_url_serves_the_stored_xml(admin, alerts, schemas):
    _granted, out = alerts
    for message in [m for messages in out.values() for m in messages]:
        response = admin.get(f"/cap/alerts/{message.id}.xml")
        assert response.status_code == 200
        assert response.mimetype == "application/cap+xml"
        assert response.get_data(as_text=True) == message.xml
        assert_valid(schemas, response.get_data())
    assert admin.get("/cap/alerts/999999.xml").status_code == 404
    assert admin.get(f"/cap/alerts/{2**64}.xml").status_code == 404


def test_anonymous_users_are_sent_to_login(app, alerts):
    _granted, out = alerts
    setup_admin(app.test_client(), "alice", PASSWORD)
    anonymous = app.test_client()
    for url in ("/cap/alerts.atom", f"/cap/alerts/{out['granted'][0].id}.xml"):
        response = anonymous.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
        assert anonymous.get(url, headers={"HX-Request": "true"}).status_code == 401


def test_viewers_see_only_alerts_of_their_streams(app, admin, alerts, schemas):
    granted, out = alerts
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=granted)
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    root = read_feed(viewer.get("/cap/alerts.atom"))
    hrefs = [e.find("atom:link", NS).get("href") for e in entries(root)]
    assert sorted(urlparse(h).path for h in hrefs) == sorted(
        f"/cap/alerts/{m.id}.xml" for m in out["granted"]
    )
    assert b"Hidden" not in viewer.get("/cap/alerts.atom").get_data()
    for message in out["granted"]:
        fetch_alert(viewer, f"/cap/alerts/{message.id}.xml", schemas)
    for message in out["hidden"] + out["system"]:
        response = viewer.get(f"/cap/alerts/{message.id}.xml")
        assert response.status_code == 404
        assert b"Hidden" not in response.get_data()


def test_a_feed_reader_with_a_viewers_key_sees_what_the_viewer_sees(app, admin, alerts, schemas):
    """A key in `Authorization: Bearer` instead of a session: the same messages, no cookie."""
    from glimpser.auth import api_keys

    granted, out = alerts
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=granted)
        token = api_keys.create_key(bob, ["read"]).token
        metrics_only = api_keys.create_key(User.get(User.username == "alice"), ["metrics"]).token
    reader = app.test_client()
    feed = reader.get("/cap/alerts.atom", headers={"Authorization": f"Bearer {token}"})
    assert feed.status_code == 200 and b"Hidden" not in feed.get_data()
    assert len(entries(read_feed(feed))) == len(out["granted"])
    assert "glimpser_session" not in feed.headers.get("Set-Cookie", "")
    for message in out["hidden"]:
        hidden = reader.get(
            f"/cap/alerts/{message.id}.xml", headers={"Authorization": f"Bearer {token}"}
        )
        assert hidden.status_code == 404
    bad = reader.get("/cap/alerts.atom", headers={"Authorization": f"Bearer {token}x"})
    assert bad.status_code == 401
    wrong_scope = reader.get(
        "/cap/alerts.atom", headers={"Authorization": f"Bearer {metrics_only}"}
    )
    assert wrong_scope.status_code == 403


def test_a_viewer_without_grants_gets_an_empty_feed(app, admin, alerts):
    with database.connection_context():
        create_user("carol", PASSWORD, "viewer")
    viewer = app.test_client()
    login(viewer, "carol", PASSWORD)
    assert entries(read_feed(viewer.get("/cap/alerts.atom"))) == []


def test_a_public_feed_is_readable_by_anyone(app_factory, database_url, schemas):
    app = app_factory(database_url, GLIMPSER_CAP_FEED_PUBLIC="1", GLIMPSER_PUBLIC_URL=PUBLIC_URL)
    settings = app.extensions["glimpser.settings"]
    setup_admin(app.test_client(), "alice", PASSWORD)
    event = add_event(add_stream("Porch"), severity="critical")
    system = add_event(None, kind="capture_failed", title="Disk full")
    with database.connection_context():
        messages = [cap.alert_for_event(event, settings), cap.alert_for_event(system, settings)]
    anonymous = app.test_client()
    root = read_feed(anonymous.get("/cap/alerts.atom"))
    assert root.find("atom:link[@rel='self']", NS).get("href") == f"{PUBLIC_URL}/cap/alerts.atom"
    hrefs = [e.find("atom:link", NS).get("href") for e in entries(root)]
    assert sorted(hrefs) == sorted(f"{PUBLIC_URL}/cap/alerts/{m.id}.xml" for m in messages)
    for href in hrefs:
        fetch_alert(anonymous, href, schemas)
    # Public means readable, nothing more: the rest of the app is still closed.
    assert anonymous.get("/events").status_code == 302
    assert anonymous.post("/cap/alerts.atom").status_code == 405


def test_the_bundled_schema_is_the_oasis_cap_1_2_schema():
    """Guards the copy: the file is byte-for-byte the one whose source the NOTICE names."""
    digest = hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest()
    notice = SCHEMA_PATH.with_name("cap-1.2.xsd.NOTICE").read_text()
    assert digest in notice
    root = etree.parse(str(SCHEMA_PATH)).getroot()
    assert root.get("targetNamespace") == cap.CAP_NS and root.get("version") == "1.2"


def test_a_picture_removed_by_retention_is_no_update(app, settings):
    """Only the event's content makes an Update; its picture's bytes going away do not."""
    porch = add_stream("Porch")
    snap = add_snapshot(app, porch, jpeg((90, 90, 90)))
    event = add_event(porch, snapshot=snap)
    with database.connection_context():
        first = cap.alert_for_event(event, settings)
        get_storage(settings).delete(snap.storage_key)
        assert cap.alert_for_event(reload(event), settings).id == first.id
        assert CapMessage.select().count() == 1
