"""The stream timeline, bulk selection and the layout fixes in a real browser (Chromium)
against a live server: the arrow keys step through the day's pictures, "select all" and a
bulk pause work, changing a channel's kind swaps its fields without a CSP violation, and no
page touched here logs a console error."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from glimpser import create_app, times
from glimpser.config import load_settings
from glimpser.db import database
from glimpser.models import Event, NotificationChannel, Snapshot, Stream
from tests.helpers import add_snapshot, add_stream, first_run_in_browser
from tests.media_servers import jpeg

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def watch_console(page: Page) -> list[str]:
    """Console errors (CSP violations included) and uncaught exceptions of the page."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def test_timeline_bulk_actions_and_channel_kind_swap(live_server, page: Page):
    app = create_app(load_settings(live_server.env))
    errors = watch_console(page)
    first_run_in_browser(page, live_server.url)
    garden = add_stream("Garden")
    add_stream("Porch")
    # Three pictures of today, a minute apart (unless that crosses midnight UTC: then fewer).
    snaps = [
        add_snapshot(app, garden, jpeg((60 * i, 80, 200 - 60 * i)), seconds_ago=60 * (3 - i))
        for i in range(3)
    ]
    today = times.utcnow().date()
    snaps = [s for s in snaps if s.captured_at.date() == today]
    with database.connection_context():
        Snapshot.update(motion_score=0.3).where(Snapshot.id == snaps[-1].id).execute()
        Event.create(stream=garden, snapshot=snaps[-1], kind="motion", title="A cat")

    page.goto(f"{live_server.url}/streams/{garden.id}")
    picture = page.locator("#timeline-img")
    expect(picture).to_have_attribute("data-snapshot", str(snaps[-1].id))
    expect(page.locator("#timeline-summary")).to_contain_text(f"{len(snaps)} picture")
    expect(page.locator("ul.timeline-events a")).to_have_text([re.compile("A cat")])
    expect(page.locator("svg.timeline-marks rect.mark-motion")).to_have_count(1)
    scrub = page.locator("#timeline-scrub")
    scrub.focus()
    for snap in reversed(snaps[:-1]):
        page.keyboard.press("ArrowLeft")
        expect(picture).to_have_attribute("data-snapshot", str(snap.id))
    page.keyboard.press("End")
    expect(picture).to_have_attribute("data-snapshot", str(snaps[-1].id))
    # The caption is a person's time ("today 14:03:07"), the exact day in its title.
    expect(page.locator("#timeline-time")).to_have_text(re.compile(r"^today \d\d:\d\d:\d\d$"))
    assert picture.evaluate("img => img.complete && img.naturalWidth") > 0
    # A click at the far left of the strip shows the day's first picture.
    box = scrub.bounding_box()
    page.mouse.click(box["x"] + 2, box["y"] + box["height"] / 2)
    expect(picture).to_have_attribute("data-snapshot", str(snaps[0].id))

    # The history grid picks up a new picture by itself (its poll answers 204 until then).
    newest = add_snapshot(app, garden, jpeg((250, 250, 0)))
    expect(page.locator(f'#history a.thumb[data-snapshot="{newest.id}"]')).to_be_visible(
        timeout=30_000
    )

    # Another day: the date picker jumps there; nothing was stored.
    page.locator("#timeline-date").fill((today - timedelta(days=3)).isoformat())
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#timeline-summary")).to_contain_text("No picture stored on")

    # Streams list: select all, pause both.
    page.goto(f"{live_server.url}/streams/")
    page.get_by_label("Select all streams").check()
    expect(page.locator("#bulk-count")).to_have_text("2 streams selected")
    page.get_by_label("With the selected streams").select_option("pause")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".flash")).to_contain_text("paused")
    with database.connection_context():
        assert not any(s.enabled for s in Stream.select())

    # A channel's kind changes: its fields are swapped in without a CSP violation.
    page.goto(f"{live_server.url}/admin/channels/new")
    kind = page.get_by_label("Kind of channel")
    for option in kind.locator("option").all():
        kind.select_option(option.get_attribute("value"))
        page.wait_for_load_state("networkidle")
    # The rule form: the channel kind caption sits beside its checkbox, not over it.
    with database.connection_context():
        ops = NotificationChannel.create(
            name="Ops", kind="webhook", config={"url": "http://192.0.2.1/hook"}
        )
    page.goto(f"{live_server.url}/admin/rules/new")
    box = page.locator(f"#f-channels-{ops.id}").bounding_box()
    caption = page.locator(f"label[for='f-channels-{ops.id}'] small").bounding_box()
    assert caption["x"] >= box["x"] + box["width"] or caption["y"] >= box["y"] + box["height"]
    page.wait_for_load_state("networkidle")
    for path in ("/admin/rules/", "/admin/deliveries/", f"/streams/{garden.id}/live"):
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
    page.goto(f"{live_server.url}/admin/channels/{ops.id}/edit")
    kind = page.get_by_label("Kind of channel")
    for option in kind.locator("option").all():
        kind.select_option(option.get_attribute("value"))
        page.wait_for_load_state("networkidle")
    assert errors == [], errors
