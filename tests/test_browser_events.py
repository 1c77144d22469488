"""The event timeline and the motion boxes in a real browser against a live server: a new event
inserted while the page is open appears without a reload, acknowledging (one, and selected)
works, the boxes toggle shows the overlay over the picture, and a phone-sized screen needs no
horizontal scrolling."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from glimpser import create_app, times
from glimpser.config import load_settings
from glimpser.db import database
from glimpser.models import Event, Snapshot
from tests.helpers import add_snapshot, add_stream, first_run_in_browser
from tests.media_servers import jpeg

pytestmark = [pytest.mark.slow, pytest.mark.browser]

BOXES = [[0.1, 0.2, 0.3, 0.4], [0.6, 0.5, 0.2, 0.25]]


@pytest.fixture
def site(live_server):
    """The live server, and an app on the same database and storage to insert data with."""
    app = create_app(load_settings(live_server.env))
    return live_server, app


def add_event(stream, title: str, **fields: object) -> Event:
    fields.setdefault("kind", "motion")
    with database.connection_context():
        return Event.create(stream=stream, title=title, **fields)


def acknowledged(event_id: int) -> bool:
    with database.connection_context():
        return Event.get_by_id(event_id).acknowledged


def test_new_events_appear_without_reloading_and_can_be_acknowledged(site, page: Page):
    server, app = site
    first_run_in_browser(page, server.url)
    stream = add_stream("Porch")
    snap = add_snapshot(app, stream, jpeg((30, 90, 160), size=(640, 360)))
    first = add_event(
        stream, "Earlier motion", snapshot=snap, created_at=times.utcnow() - timedelta(minutes=3)
    )
    page.goto(server.url + "/events")
    entries = page.locator("#event-list .event-title")
    expect(entries).to_have_text(["Earlier motion"])
    page.evaluate("window.__noReload = 'still here'")

    fresh = add_event(
        stream,
        "A fox in the garden",
        snapshot=snap,
        severity="high",
        description="A red fox crosses the lawn.",
    )
    expect(entries).to_have_text(["A fox in the garden", "Earlier motion"], timeout=20_000)
    new_entry = page.locator(f"#event-{fresh.id}")
    expect(new_entry).to_contain_text("A red fox crosses the lawn.")
    expect(new_entry.locator(".badge.sev-high")).to_have_text("high")
    # Its thumbnail really loaded.
    expect(new_entry.locator("img")).to_have_js_property("complete", True)
    assert new_entry.locator("img").evaluate("img => img.naturalWidth") > 0
    assert page.evaluate("window.__noReload") == "still here"

    # One, with its own button: the entry is swapped in place.
    new_entry.get_by_role("button", name="Acknowledge").click()
    expect(new_entry.locator(".event-ack-badge")).to_have_text("Acknowledged")
    expect(new_entry.get_by_role("button", name="Acknowledge")).to_have_count(0)
    assert acknowledged(fresh.id) and not acknowledged(first.id)

    # Many: select, then "Acknowledge selected".
    third = add_event(stream, "Third event")
    expect(entries).to_have_count(3, timeout=20_000)
    page.locator(f"#select-event-{first.id}").check()
    page.locator(f"#select-event-{third.id}").check()
    page.get_by_role("button", name="Acknowledge selected").click()
    expect(page.locator("#ack-status")).to_have_text("2 events acknowledged.")
    expect(page.locator(f"#event-{third.id} .event-ack-badge")).to_be_visible()
    expect(page.locator(f"#event-{first.id} .event-ack-badge")).to_be_visible()
    assert acknowledged(first.id) and acknowledged(third.id)
    assert page.evaluate("window.__noReload") == "still here"

    # The filters change the list and the address, without a reload.
    page.locator(".filter-cell", has_text="Severities").locator("summary").click()
    page.locator('label[for="ev-sev-high"]').click()
    expect(entries).to_have_text(["A fox in the garden"])
    expect(page).to_have_url(re.compile(r"/events\?severity=high$"))
    assert page.evaluate("window.__noReload") == "still here"


def test_motion_boxes_toggle_over_the_picture(site, page: Page):
    server, app = site
    first_run_in_browser(page, server.url)
    stream = add_stream("Yard")
    snap = add_snapshot(app, stream, jpeg((80, 120, 40), size=(640, 360)))
    with database.connection_context():
        Snapshot.update(
            boxes=BOXES,
            motion_score=0.08,
            changed=True,
            analysis_note="motion",
            analysed_at=times.utcnow(),
        ).where(Snapshot.id == snap.id).execute()
    page.goto(f"{server.url}/streams/{stream.id}")
    overlay = page.locator("#stream-status svg.boxes")
    expect(overlay).to_be_hidden()
    page.locator('label[for="boxes-latest"]').click()
    expect(overlay).to_be_visible()
    expect(overlay.locator("rect")).to_have_count(2)
    # The first box sits where its fractions say, over the picture.
    picture = page.locator("#stream-status .snapshot-frame img").bounding_box()
    box = overlay.locator("rect").first.bounding_box()
    assert abs(box["x"] - (picture["x"] + 0.1 * picture["width"])) <= 2
    assert abs(box["y"] - (picture["y"] + 0.2 * picture["height"])) <= 2
    assert abs(box["width"] - 0.3 * picture["width"]) <= 3
    assert abs(box["height"] - 0.4 * picture["height"]) <= 3
    # A newer analysed snapshot refreshes the block; the toggle stays on (hx-preserve).
    newer = add_snapshot(app, stream, jpeg((90, 30, 40), size=(640, 360)))
    with database.connection_context():
        Snapshot.update(boxes=[[0.4, 0.4, 0.2, 0.2]], analysed_at=times.utcnow()).where(
            Snapshot.id == newer.id
        ).execute()
    expect(page.locator("#stream-status .snapshot-frame img")).to_have_attribute(
        "src", re.compile(rf"/snapshots/{newer.id}\.jpg$"), timeout=20_000
    )
    expect(overlay.locator("rect")).to_have_count(1)
    expect(page.locator("#boxes-latest")).to_be_checked()
    expect(overlay).to_be_visible()
    page.locator('label[for="boxes-latest"]').click()
    expect(overlay).to_be_hidden()

    # The enlarged history viewer has the same toggle, drawn for the picture it shows.
    page.reload()  # the history shows the newest snapshot first
    page.locator("#history a.thumb").first.click()
    viewer = page.locator("dialog#viewer")
    expect(viewer).to_be_visible()
    viewer_overlay = viewer.locator("svg.boxes")
    expect(viewer_overlay.locator("rect")).to_have_count(1)
    expect(viewer_overlay).to_be_hidden()
    viewer.locator('label[for="boxes-viewer"]').click()
    expect(viewer_overlay).to_be_visible()
    expect(viewer.locator("[data-boxes-count]")).to_have_text("(1)")
    # Stepping to the older picture draws its boxes instead.
    page.keyboard.press("ArrowRight")
    expect(viewer.locator("[data-boxes-count]")).to_have_text("(2)")
    expect(viewer_overlay.locator("rect")).to_have_count(2)


def test_events_and_stream_pages_fit_a_phone(site, page: Page):
    server, app = site
    first_run_in_browser(page, server.url)
    stream = add_stream("A stream with a rather long name that must wrap somewhere")
    snap = add_snapshot(app, stream, jpeg((10, 10, 10), size=(1280, 720)))
    with database.connection_context():
        Snapshot.update(
            boxes=BOXES,
            ai={
                "title": "A very long title " * 5,
                "description": "Averyveryverylongwordwithoutanyspacesatallthatmustwrap " * 3,
                "objects": ["person", "bicycle"],
                "threat": 0,
                "confidence": 0.5,
            },
            analysed_at=times.utcnow(),
        ).where(Snapshot.id == snap.id).execute()
    for i in range(3):
        add_event(
            stream,
            f"Event {i} with an unbreakablelongtitlethatgoesonandonandonforever",
            snapshot=snap,
            description="Somethinglongwithoutspaces" * 4,
        )
    add_event(None, "A system event")
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(server.url + "/events")
    expect(page.locator("#event-list .event")).to_have_count(4)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.locator('label[for="ev-range-custom"]').click()
    expect(page.locator("#ev-from")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.goto(f"{server.url}/streams/{stream.id}")
    page.locator('label[for="boxes-latest"]').click()
    expect(page.locator("#stream-status svg.boxes")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
