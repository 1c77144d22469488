"""The event page and event search in Chromium against a live server (issue 12): the
before/after/difference views and motion boxes, the keyboard shortcuts (j/k/a/?), the strip's
viewer, searching from the box with htmx (highlighted words, multi-select filters), a viewer who
never finds another stream's events, and no console error or CSP violation on the way."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from glimpser import create_app, times
from glimpser.auth.users import create_user
from glimpser.config import load_settings
from glimpser.db import database
from glimpser.models import Event, Snapshot, StreamAccess
from tests.helpers import PASSWORD, add_snapshot, add_stream, first_run_in_browser
from tests.media_servers import jpeg

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def site(live_server):
    """The live server, and an app on the same database and storage to insert data with."""
    app = create_app(load_settings(live_server.env))
    return live_server, app


def collect_console_errors(page: Page) -> list[str]:
    """Console errors (CSP violations are reported as such) and uncaught exceptions."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return errors


def add_event(stream, title: str, **fields: object) -> Event:
    fields.setdefault("kind", "motion")
    with database.connection_context():
        return Event.create(stream=stream, title=title, **fields)


def press(page: Page, key: str) -> None:
    """Press a shortcut once the page's script is listening."""
    expect(page.locator("#event-review[data-ready]")).to_have_count(1)
    page.keyboard.press(key)


def acknowledged(event_id: int) -> bool:
    with database.connection_context():
        return Event.get_by_id(event_id).acknowledged


def test_event_page_before_after_and_keyboard(site, page: Page):
    server, app = site
    errors = collect_console_errors(page)
    first_run_in_browser(page, server.url)
    stream = add_stream("Porch")
    snaps = [
        add_snapshot(app, stream, jpeg(c, size=(640, 360)), seconds_ago=300 - i * 60)
        for i, c in enumerate([(30, 30, 30), (60, 60, 60), (220, 200, 40), (90, 90, 90)])
    ]
    with database.connection_context():
        Snapshot.update(boxes=[[0.1, 0.2, 0.3, 0.4]]).where(Snapshot.id == snaps[2].id).execute()
    now = times.utcnow()
    older = add_event(stream, "Older event", created_at=now - timedelta(hours=1))
    event = add_event(
        stream,
        "Yellow car",
        snapshot=snaps[2],
        severity="high",
        created_at=now - timedelta(minutes=2),
    )
    newer = add_event(stream, "Newer event", created_at=now - timedelta(minutes=1))

    # From the timeline: the title leads to the event page.
    page.goto(server.url + "/events")
    page.get_by_role("link", name="Yellow car", exact=True).click()
    expect(page).to_have_url(f"{server.url}/events/{event.id}")
    expect(page.get_by_role("heading", name="Yellow car", level=1)).to_be_visible()

    before = page.locator(".frame-before img")
    after = page.locator(".frame-after img")
    diff = page.locator(".frame-diff img")
    boxes = page.locator(".frame-after svg.boxes")
    # Side by side first; then each view alone (CSS radio buttons, no reload).
    expect(before).to_be_visible()
    expect(after).to_be_visible()
    expect(diff).to_be_hidden()
    expect(boxes).to_be_visible()
    page.locator('label[for="view-before"]').click()
    expect(before).to_be_visible()
    expect(after).to_be_hidden()
    press(page, "b")  # the event picture again
    expect(after).to_be_visible()
    expect(before).to_be_hidden()
    page.locator('label[for="view-diff"]').click()
    expect(diff).to_be_visible()
    expect(diff).to_have_js_property("complete", True)
    assert diff.evaluate("img => img.naturalWidth") == 640
    page.locator('label[for="show-boxes"]').click()
    page.locator('label[for="view-after"]').click()
    expect(boxes).to_be_hidden()

    # The strip opens a picture in the page's viewer, not the raw JPEG.
    page.locator(".event-strip a").first.click()
    expect(page.locator("#strip-viewer")).to_be_visible()
    expect(page).to_have_url(f"{server.url}/events/{event.id}")
    page.keyboard.press("Escape")
    expect(page.locator("#strip-viewer")).to_be_hidden()

    # ? shows the shortcuts; Escape closes them.
    press(page, "?")
    expect(page.locator("#shortcuts")).to_be_visible()
    expect(page.locator("#shortcuts")).to_contain_text("Acknowledge this event")
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts")).to_be_hidden()

    # j older, k newer; keys typed into a field are left alone.
    press(page, "j")
    expect(page).to_have_url(f"{server.url}/events/{older.id}")
    press(page, "k")
    expect(page).to_have_url(f"{server.url}/events/{event.id}")
    press(page, "k")
    expect(page).to_have_url(f"{server.url}/events/{newer.id}")
    press(page, "j")
    expect(page).to_have_url(f"{server.url}/events/{event.id}")

    # a acknowledges.
    press(page, "a")
    expect(page.locator(".event-ack .event-ack-badge")).to_have_text("Acknowledged")
    assert acknowledged(event.id) and not acknowledged(newer.id)

    page.set_viewport_size({"width": 390, "height": 800})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert errors == []


def cut_by_navigation(request) -> bool:  # noqa: ANN001 - a Playwright Request
    """A request the browser gave up because the test went to the next page: a picture or
    other asset still loading, or the one-off time-zone report (static/time.js, sent again on
    the next page). An htmx request aborted by another (the defect this test guards) is an
    xhr and still counts."""
    return request.failure == "net::ERR_ABORTED" and request.resource_type != "xhr"


def test_search_as_a_viewer(site, page: Page):
    server, app = site
    first_run_in_browser(page, server.url)
    porch = add_stream("Porch")
    garage = add_stream("Garage")
    now = times.utcnow()
    add_event(
        porch,
        "Parcel left at the door",
        severity="low",
        description="A courier leaves a <parcel>.",
        created_at=now - timedelta(minutes=3),
    )
    add_event(porch, "Cat on the porch", severity="info", created_at=now - timedelta(minutes=2))
    add_event(
        garage,
        "Garage secret parcel",
        severity="high",
        description="Only the garage has this.",
        created_at=now - timedelta(minutes=1),
    )
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=porch)
    # The viewer signs in in a browser of their own: clearing the admin's cookies instead
    # raced the admin page's own requests (its time-zone report answered with the admin's
    # cookie after it was cleared, so /login redirected home, signed in as the admin).
    page = page.context.browser.new_context().new_page()
    errors = collect_console_errors(page)
    page.on(
        "requestfailed",
        lambda r: None if cut_by_navigation(r) else errors.append(f"failed {r.url} {r.failure}"),
    )
    page.goto(server.url + "/login")
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(server.url + "/")

    page.goto(server.url + "/events")
    titles = page.locator("#event-list .event-title")
    expect(titles).to_have_text(["Cat on the porch", "Parcel left at the door"])
    page.evaluate("window.__noReload = 'still here'")
    page.get_by_label("Search titles, AI descriptions and objects").fill("parcel")
    page.get_by_role("button", name="Search").click()
    expect(titles).to_have_text(["Parcel left at the door"])  # never the garage's event
    expect(page).to_have_url(re.compile(r"/events\?q=parcel$"))
    expect(page.locator("#event-list mark").first).to_have_text("Parcel")
    expect(page.locator(".event-description")).to_have_text("A courier leaves a <parcel>.")
    page.get_by_label("Search titles, AI descriptions and objects").fill("secret")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#event-list .empty")).to_have_text("No event contains these words.")
    assert "Garage" not in page.content()

    # Multi-select severities, combined with the search, swapped by htmx.
    page.get_by_label("Search titles, AI descriptions and objects").fill("")
    page.locator(".filter-cell", has_text="Severities").locator("summary").click()
    page.locator('label[for="ev-sev-info"]').click()
    expect(titles).to_have_text(["Cat on the porch"])
    page.locator('label[for="ev-sev-low"]').click()
    expect(titles).to_have_text(["Cat on the porch", "Parcel left at the door"])
    expect(page).to_have_url(re.compile(r"severity=info&severity=low"))
    assert page.evaluate("window.__noReload") == "still here"
    # A quick range is one click.
    page.locator(".filter-cell", has_text="Severities").locator("summary").click()  # close
    page.locator('label[for="ev-range-hour"]').click()
    expect(page).to_have_url(re.compile(r"range=hour"))
    expect(titles).to_have_count(2)
    assert errors == []
    page.context.close()
