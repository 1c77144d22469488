"""The dashboard and the stream history in a real browser against web + worker + scheduler:
the grid picks up new snapshots without a reload, filters and search, click-to-enlarge with
arrow keys, and a phone-sized screen without horizontal scrolling. The camera wall's own
features (columns, kiosk, failing first, the viewer) are in tests/test_console_wall_browser.py."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.helpers import first_run_in_browser
from tests.media_servers import jpeg

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def add_stream(page: Page, url: str, name: str, image_url: str, interval: int, groups: str = ""):
    page.goto(url + "/streams/new")
    page.get_by_label("Kind of source").select_option("http_image")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Capture every (seconds)").fill(str(interval))
    if groups:
        page.get_by_label("Groups").fill(groups)
    page.get_by_label("Image URL", exact=True).fill(image_url)
    page.get_by_role("button", name="Create stream").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()


def test_dashboard_shows_new_snapshots_without_reloading(live_stack, page: Page, camera):
    camera.state.picture = jpeg((30, 90, 160), size=(640, 360), label="first")
    first_run_in_browser(page, live_stack.url)
    add_stream(page, live_stack.url, "Porch", f"{camera.url}/snapshot.jpg", interval=2)
    page.goto(live_stack.url + "/")
    picture = page.get_by_role("img", name="Latest snapshot of Porch")
    expect(picture).to_be_visible(timeout=30_000)
    before = picture.get_attribute("src")
    assert re.search(r"/snapshots/\d+/thumb\.jpg$", before)
    page.evaluate("window.__noReload = 'still here'")
    camera.state.picture = jpeg((200, 40, 40), size=(640, 360), label="second")
    expect(picture).not_to_have_attribute("src", before, timeout=30_000)
    assert page.evaluate("window.__noReload") == "still here"
    expect(page.locator("#tile-1 .tile-age time[data-relative]")).to_have_count(1)
    # The new thumbnail really loaded.
    assert page.evaluate("document.querySelector('#dashboard-grid img').naturalWidth") == 320


def test_filters_and_search_update_the_grid_and_the_url(live_stack, page: Page, camera):
    first_run_in_browser(page, live_stack.url)
    add_stream(page, live_stack.url, "Front door", f"{camera.url}/snapshot.jpg", 300, "outdoor")
    add_stream(page, live_stack.url, "Kitchen", f"{camera.url}/snapshot.jpg", 300, "indoor")
    add_stream(page, live_stack.url, "Broken", f"{camera.url}/missing.jpg", 300, "outdoor")
    page.goto(live_stack.url + "/")
    cards = page.locator("#dashboard-grid .tile-name")
    expect(cards).to_have_count(3)
    page.evaluate("window.__noReload = 1")
    page.get_by_label("Search").fill("kit")
    expect(cards).to_have_text(["Kitchen"])
    expect(page).to_have_url(re.compile(r"\?q=kit$"))
    page.get_by_label("Search").fill("")
    expect(cards).to_have_count(3)
    page.get_by_label("Group").select_option("outdoor")
    expect(cards).to_have_count(2)  # Broken (failing first, once it failed) and Front door
    # The failing stream shows its real error on its tile.
    page.get_by_label("State").select_option("failing")
    expect(cards).to_have_text(["Broken"], timeout=30_000)
    expect(page.locator("#dashboard-grid .tile-error")).to_contain_text("HTTP 404")
    expect(page).to_have_url(re.compile(r"group=outdoor.*state=failing"))
    assert page.evaluate("window.__noReload") == 1
    # The URL keeps the filters: a reload shows the same view.
    page.reload()
    expect(cards).to_have_text(["Broken"])


def test_history_enlarges_and_steps_with_the_arrow_keys(live_stack, page: Page, camera):
    first_run_in_browser(page, live_stack.url)
    camera.state.picture = jpeg((0, 0, 0), size=(640, 360), label="0")
    add_stream(page, live_stack.url, "Yard", f"{camera.url}/snapshot.jpg", interval=1)
    stream_url = page.url
    thumbs = page.locator("#history a.thumb")
    for i in range(1, 4):
        count = thumbs.count()
        camera.state.picture = jpeg((60 * i, 30, 30), size=(640, 360), label=str(i))
        for _ in range(60):
            page.goto(stream_url)
            if thumbs.count() > count:
                break
            page.wait_for_timeout(500)
        else:
            pytest.fail(f"picture {i} never reached the history ({count} thumbnails)")
    hrefs = [thumbs.nth(i).get_attribute("href") for i in range(3)]
    viewer = page.locator("dialog#viewer")
    big = viewer.locator("img")
    thumbs.first.click()
    expect(viewer).to_be_visible()
    expect(big).to_have_attribute("src", hrefs[0])
    page.keyboard.press("ArrowRight")
    expect(big).to_have_attribute("src", hrefs[1])
    page.keyboard.press("ArrowRight")
    expect(big).to_have_attribute("src", hrefs[2])
    page.keyboard.press("ArrowLeft")
    expect(big).to_have_attribute("src", hrefs[1])
    assert page.evaluate("document.querySelector('dialog#viewer img').naturalWidth") == 640
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()


def test_dashboard_fits_a_phone(live_stack, page: Page, camera):
    first_run_in_browser(page, live_stack.url)
    add_stream(
        page,
        live_stack.url,
        "A stream with a rather long name that must wrap",
        f"{camera.url}/missing.jpg",
        300,
        "somewhere-far-away",
    )
    page.set_viewport_size({"width": 375, "height": 740})
    for columns in ("2", "12"):
        page.goto(f"{live_stack.url}/")
        page.get_by_label("Columns").select_option(columns)
        expect(page.locator(f"ul.wall-grid.cols-{columns}")).to_be_visible()
        for kiosk in ("0", "1"):
            page.goto(f"{live_stack.url}/?kiosk={kiosk}")
            expect(page.locator("#dashboard-grid .tile")).to_have_count(1)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, (columns, kiosk, width)
    page.goto(live_stack.url + "/streams/1")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
