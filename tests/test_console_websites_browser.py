"""Website changes in a real browser: the element picker of the test capture fills the crop
selector, and the change view shows the text diff — web, worker and scheduler as separate
processes, the page served by a loopback server whose clock ticks."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.helpers import first_run_in_browser
from tests.test_console_websites import CLOCK, ClockSite

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def clock_site():
    site = ClockSite()
    yield site
    site.close()


def test_picker_fills_the_selector_and_the_change_view_shows_the_text_diff(
    live_stack, page: Page, clock_site: ClockSite
):
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    first_run_in_browser(page, live_stack.url)
    page.goto(live_stack.url + "/streams/new")
    page.get_by_label("Kind of source").select_option("website")
    expect(page.get_by_label("Page URL", exact=True)).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Status page")
    page.get_by_label("Capture every (seconds)").fill("3600")
    page.get_by_label("Page URL", exact=True).fill(clock_site.url)
    page.get_by_label("Keep the page's text").check()
    page.get_by_role("button", name="Test capture").click()
    picture = page.locator("#preview .picker img")
    expect(picture).to_be_visible(timeout=60_000)
    page.locator("#preview summary").click()  # the page's text, shown with the test capture
    expect(page.locator("#preview .test-text pre")).to_contain_text("All systems normal")
    # The page is 1280x720; the heading "Status" of #content spans y 98-163 at 28 px type.
    box = picture.bounding_box()
    assert box is not None
    picture.click(position={"x": box["width"] * 0.1, "y": box["height"] * 130 / 720})
    expect(page.get_by_label("Crop to element")).to_have_value("#content > h1")
    expect(page.locator(".picker-chosen")).to_have_text("Crop to element: #content > h1")
    expect(page.locator(".picker-box")).to_be_visible()
    # Crop to the whole content block, keep its text, judge by text without the clock.
    page.get_by_label("Crop to element").fill("#content")
    page.get_by_label("Judge changes by").select_option("text")
    page.get_by_label("Ignore text").fill(CLOCK)
    page.get_by_role("button", name="Create stream").click()
    expect(page.get_by_role("heading", name="Status page")).to_be_visible()
    stream_url = page.url
    # Saving captures once; a second capture after the content changed.
    history = page.locator("#history a.change-link")
    deadline = time.monotonic() + 90
    while history.count() < 1:
        assert time.monotonic() < deadline, "no first snapshot"
        time.sleep(0.5)
        page.goto(stream_url)
    clock_site.content = "Database DOWN since 09:12"
    page.get_by_role("button", name="Capture now").click()
    deadline = time.monotonic() + 90
    while history.count() < 2:
        assert time.monotonic() < deadline, "no second snapshot"
        time.sleep(0.5)
        page.goto(stream_url)
    history.first.click()
    expect(page.get_by_role("heading", name="What changed on Status page")).to_be_visible()
    expect(page.locator(".text-diff .diff-removed")).to_contain_text("All systems normal")
    expect(page.locator(".text-diff .diff-added")).to_contain_text("Database DOWN since")
    diff = page.get_by_role("img", name=re.compile("The difference"))
    expect(diff).to_be_visible()
    assert diff.evaluate("img => img.complete && img.naturalWidth > 0")
    assert errors == [], errors


def test_the_picker_works_with_the_keyboard_alone(live_stack, page: Page, clock_site: ClockSite):
    """Tab reaches the test capture's picture, arrows walk its elements (announced), Escape
    cancels, Enter picks; the candidate and the focus are visible; Tab leaves at the end."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    first_run_in_browser(page, live_stack.url)
    page.goto(live_stack.url + "/streams/new")
    page.get_by_label("Kind of source").select_option("website")
    expect(page.get_by_label("Page URL", exact=True)).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Status page")
    page.get_by_label("Page URL", exact=True).fill(clock_site.url)
    page.get_by_role("button", name="Test capture").focus()
    page.keyboard.press("Enter")
    picker = page.get_by_role("application", name="Element picker")
    expect(picker).to_be_visible(timeout=60_000)
    selector_field = page.get_by_label("Crop to element")
    expect(selector_field).to_have_value("")
    # Tab from the button until the picture has the focus.
    page.get_by_role("button", name="Test capture").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        if picker.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the element picker")
    assert picker.evaluate("el => el.matches(':focus-visible')")
    assert picker.evaluate("el => getComputedStyle(el).outlineStyle") == "solid"
    candidate = page.locator(".picker-focus")
    announced = page.locator(".picker-candidate")
    expect(candidate).to_be_visible()
    expect(announced).to_have_attribute("aria-live", "polite")
    expect(announced).to_contain_text("Element 1 of ")
    expect(announced).to_contain_text(": #clock.")
    # The arrow keys walk the elements in document order.
    page.keyboard.press("ArrowDown")
    expect(announced).to_contain_text(": #content.")
    page.keyboard.press("ArrowRight")
    expect(announced).to_contain_text(": #content > h1.")
    # Escape cancels: nothing chosen, the candidate outline gone.
    page.keyboard.press("Escape")
    expect(announced).to_have_text("Cancelled: the crop selector is unchanged.")
    expect(candidate).to_be_hidden()
    expect(selector_field).to_have_value("")
    expect(page.locator(".picker-box")).to_be_hidden()
    # Shift+Tab and Tab move between elements too; Enter picks.
    page.keyboard.press("Tab")
    expect(announced).to_contain_text(": #content.")
    page.keyboard.press("Tab")
    expect(announced).to_contain_text(": #content > h1.")
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    expect(announced).to_contain_text(": #content > h1.")
    page.keyboard.press("Enter")
    expect(selector_field).to_have_value("#content > h1")
    chosen = page.locator(".picker-chosen")
    expect(chosen).to_have_attribute("aria-live", "polite")
    expect(chosen).to_have_text("Crop to element: #content > h1")
    expect(page.locator(".picker-box")).to_be_visible()
    # The chosen box sits where the candidate was: over the heading of the page.
    box = page.locator(".picker-box").bounding_box()
    shown = candidate.bounding_box()
    assert box is not None and shown is not None
    assert abs(box["y"] - shown["y"]) < 2 and abs(box["height"] - shown["height"]) < 2
    # No keyboard trap: from the last element, Tab leaves the picture.
    page.keyboard.press("End")
    page.keyboard.press("Tab")
    assert not picker.evaluate("el => el === document.activeElement")
    expect(candidate).to_be_hidden()
    expect(selector_field).to_have_value("#content > h1")
    assert errors == [], errors
