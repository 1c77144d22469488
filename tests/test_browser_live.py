"""A signed-in admin opens the live page of a real RTSP stream in Chromium and watches the
picture render and move — gunicorn and `glimpser readers` running as separate processes."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from tests.test_live import PASSWORD, live_stack_readers, sign_up_and_add_rtsp  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_the_live_page_plays_the_rtsp_stream(live_stack_readers, page: Page, rtsp):  # noqa: F811
    url = live_stack_readers.url
    _session, stream_url = sign_up_and_add_rtsp(url, f"{rtsp.url}/test", name="Yard")
    page.goto(url + "/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(stream_url + "/live")
    expect(page.get_by_role("heading", name="Yard")).to_be_visible()
    expect(page.get_by_role("link", name="Back to the stream page")).to_have_attribute(
        "href", stream_url.removeprefix(url)
    )
    feed = page.get_by_role("img", name="Live view of Yard")
    expect(feed).to_be_visible()
    page.wait_for_function("document.getElementById('live-feed').naturalWidth > 0", timeout=30_000)
    assert feed.evaluate("img => img.naturalWidth") == 320
    expect(page.locator("#live-status")).to_contain_text("Live", timeout=15_000)
    # The picture changes by itself (the ball moves): compare what the element shows.
    first = feed.screenshot()
    changed = False
    for _ in range(20):
        time.sleep(0.3)
        if feed.screenshot() != first:
            changed = True
            break
    assert changed, "the live picture did not change"
