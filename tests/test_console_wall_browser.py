"""The camera wall in a real browser against web + worker + scheduler: failing stream first
with its error, an unchanged poll answered 204 (counted in the browser) while a stream keeps
capturing the same picture, the column count remembered across a reload and a new sign-in,
kiosk mode with the Fullscreen API and the idle cursor, the in-page stream viewer with the
arrow keys, and no console error or CSP violation throughout."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.helpers import PASSWORD, first_run_in_browser
from tests.media_servers import jpeg

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def add_stream(page: Page, url: str, name: str, image_url: str, interval: int) -> None:
    page.goto(url + "/streams/new")
    page.get_by_label("Kind of source").select_option("http_image")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Capture every (seconds)").fill(str(interval))
    page.get_by_label("Image URL", exact=True).fill(image_url)
    page.get_by_role("button", name="Create stream").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()


def test_the_camera_wall(live_stack, page: Page, camera):
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    camera.state.picture = jpeg((30, 90, 160), size=(640, 360), label="same")
    url = live_stack.url
    first_run_in_browser(page, url)
    # Alpha captures the same picture every 2 s: not stored, so nothing the wall shows changes.
    add_stream(page, url, "Alpha", f"{camera.url}/snapshot.jpg", 2)
    add_stream(page, url, "Porch", f"{camera.url}/snapshot.jpg", 300)
    add_stream(page, url, "Broken", f"{camera.url}/missing.jpg", 300)

    page.goto(url + "/")
    names = page.locator("#dashboard-grid .tile-name")
    # The wall refreshes itself: the failing stream comes first, with its error on the tile.
    expect(names).to_have_text(["Broken", "Alpha", "Porch"], timeout=60_000)
    expect(page.locator("#dashboard-grid li.tile-failing .tile-error")).to_contain_text("404")
    expect(page.locator("#dashboard-grid img")).to_have_count(2, timeout=60_000)
    for img in page.locator("#dashboard-grid img").all():
        expect(img).to_have_js_property("complete", True)

    # Unchanged polls are empty 204s, counted in the browser, while Alpha keeps capturing.
    polls: list[int] = []
    page.on("response", lambda r: polls.append(r.status) if "v=" in r.url else None)
    page.evaluate("window.__noReload = 1")
    deadline = time.monotonic() + 90
    while len(polls) < 3 and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    assert len(polls) >= 3 and set(polls) == {204}, polls
    assert page.evaluate("window.__noReload") == 1

    # Columns: remembered across a reload and a new sign-in.
    page.get_by_label("Columns").select_option("2")
    expect(page.locator("ul.wall-grid.cols-2")).to_be_visible()
    page.reload()
    expect(page.locator("ul.wall-grid.cols-2")).to_be_visible()
    expect(page.get_by_label("Columns")).to_have_value("2")
    page.get_by_role("button", name="Sign out").click()
    page.goto(url + "/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(url + "/")
    expect(page.locator("ul.wall-grid.cols-2")).to_be_visible()

    # Kiosk: the Fullscreen button hides the chrome, asks for fullscreen, and the URL keeps it.
    header = page.locator("body > header")
    expect(header).to_be_visible()
    page.locator("[data-wall-fullscreen]").click()
    expect(header).to_be_hidden()
    expect(page.locator("form.filters")).to_be_hidden()
    expect(page).to_have_url(re.compile(r"\?kiosk=1$"))
    page.wait_for_function("document.fullscreenElement !== null")
    page.evaluate("document.exitFullscreen()")
    page.reload()
    expect(header).to_be_hidden()
    expect(page.locator("body > footer")).to_be_hidden()
    # The cursor (and the kiosk bar) hide after a few idle seconds; a movement shows them.
    html = page.locator("html")
    expect(html).to_have_class(re.compile(r"\bwall-idle\b"), timeout=15_000)
    page.mouse.move(200, 200)
    page.mouse.move(220, 210)
    expect(html).not_to_have_class(re.compile(r"\bwall-idle\b"))
    page.get_by_role("button", name="Exit wall mode").click()
    expect(header).to_be_visible()
    expect(page).to_have_url(url + "/")

    # A tile opens that stream over the page; ← → step through the wall, Escape closes.
    viewer = page.locator("dialog#wall-viewer")
    title = viewer.locator("h2")
    big = viewer.locator("img")
    page.locator("#dashboard-grid a.tile-link").nth(1).click()
    expect(viewer).to_be_visible()
    expect(title).to_have_text("Alpha")
    expect(big).to_have_attribute("src", re.compile(r"/streams/\d+/snapshots/\d+\.jpg$"))
    page.wait_for_function("document.querySelector('dialog#wall-viewer img').naturalWidth === 640")
    page.keyboard.press("ArrowRight")
    expect(title).to_have_text("Porch")
    page.keyboard.press("ArrowRight")
    expect(title).to_have_text("Broken")  # wraps around
    expect(viewer.locator(".wall-viewer-state")).to_contain_text("failing")
    page.keyboard.press("ArrowLeft")
    expect(title).to_have_text("Porch")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(page.locator("#dashboard-grid a.tile-link").nth(2)).to_be_focused()
    # Keyboard alone: a focused tile opens with Enter.
    page.locator("#dashboard-grid a.tile-link").first.focus()
    page.keyboard.press("Enter")
    expect(title).to_have_text("Broken")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    # The wall is still the page (no navigation happened).
    expect(page).to_have_url(url + "/")
    assert errors == [], errors
