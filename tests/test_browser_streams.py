"""An admin adds one stream of each kind in a real browser, sees a test capture, saves, and
snapshots arrive on schedule — web, worker and scheduler running as separate processes."""

from __future__ import annotations

import re
import time

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.helpers import first_run_in_browser

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def kinds(camera, media_server, rtsp) -> list[tuple[str, str, dict[str, str]]]:
    return [
        ("rtsp", "IP camera (RTSP)", {"RTSP URL": f"{rtsp.url}/test"}),
        (
            "http_image",
            "Camera still image (snapshot URL)",
            {"Image URL": f"{camera.url}/snapshot.jpg"},
        ),
        ("mjpeg", "MJPEG stream", {"MJPEG URL": f"{camera.url}/stream.mjpg"}),
        (
            "video",
            "Video (HLS, MP4 or a media file)",
            {"Video URL": f"{media_server.url}/hls/index.m3u8"},
        ),
        (
            "youtube",
            "YouTube and other video sites (yt-dlp)",
            {"Page URL": f"{media_server.url}/page.html"},
        ),
        ("website", "Website or dashboard (Chromium)", {"Page URL": f"{camera.url}/page.html"}),
    ]


def test_admin_creates_every_kind_with_a_test_capture(
    live_stack, page: Page, camera, media_server, rtsp
):
    first_run_in_browser(page, live_stack.url)
    for kind, label, fields in kinds(camera, media_server, rtsp):
        page.goto(live_stack.url + "/streams/new")
        kind_select = page.get_by_label("Kind of source")
        if kind_select.input_value() != kind:  # re-selecting the default would re-swap the fields
            kind_select.select_option(label=label)
        # htmx swaps in the kind's own fields
        first_label = next(iter(fields))
        expect(page.get_by_label(first_label, exact=True)).to_be_visible()
        page.get_by_label("Name", exact=True).fill(f"My {kind}")
        page.get_by_label("Capture every (seconds)").fill("2" if kind == "http_image" else "300")
        for field_label, value in fields.items():
            page.get_by_label(field_label, exact=True).fill(value)
        page.get_by_role("button", name="Test capture").click()
        preview = page.locator("#preview")
        expect(preview.get_by_role("img", name="Test capture")).to_be_visible(timeout=45_000)
        page.get_by_role("button", name="Create stream").click()
        expect(page.get_by_role("heading", name=f"My {kind}")).to_be_visible()
        # The status block refreshes itself until the first snapshot is there.
        expect(page.get_by_role("img", name=f"Latest snapshot of My {kind}")).to_be_visible(
            timeout=45_000
        )

    # Snapshots keep arriving on schedule: the 2-second stream gains more without any clicks.
    page.goto(live_stack.url + "/streams/")
    page.get_by_role("link", name="My http_image").click()
    stream_url = page.url
    from tests.media_servers import jpeg

    thumbs = page.locator("ul.thumbs li")
    page.goto(stream_url)
    counts = [thumbs.count()]
    for i in range(3):
        camera.state.picture = jpeg((40 * i, 100, 200 - 40 * i), label=f"tick {i}")
        # Each new picture must arrive by itself; poll the page instead of guessing a sleep.
        deadline = time.monotonic() + 30
        while True:
            page.goto(stream_url)
            if thumbs.count() > counts[-1]:
                break
            assert time.monotonic() < deadline, f"tick {i} never arrived: {counts}"
            page.wait_for_timeout(500)
        counts.append(thumbs.count())
    assert counts[-1] > counts[0], counts


def test_kind_switch_and_inline_errors_in_the_browser(live_stack, page: Page):
    first_run_in_browser(page, live_stack.url)
    page.goto(live_stack.url + "/streams/new")
    page.get_by_label("Kind of source").select_option("website")
    expect(page.get_by_label("Viewport width (px)")).to_be_visible()
    expect(page.get_by_label("RTSP URL")).to_have_count(0)
    page.get_by_label("Page URL").fill("file:///etc/passwd")
    page.get_by_role("button", name="Create stream").click()
    expect(page.get_by_text("must start with http://, https://")).to_be_visible()
    expect(page.get_by_label("Page URL")).to_have_attribute("aria-invalid", "true")


def test_failure_shows_the_real_cause(live_stack, page: Page, camera):
    first_run_in_browser(page, live_stack.url)
    page.goto(live_stack.url + "/streams/new")
    page.get_by_label("Kind of source").select_option("http_image")
    page.get_by_label("Name", exact=True).fill("Broken camera")
    page.get_by_label("Image URL", exact=True).fill(f"{camera.url}/missing.jpg")
    page.get_by_role("button", name="Create stream").click()
    expect(page.locator("#stream-status").get_by_text(re.compile("HTTP 404"))).to_be_visible(
        timeout=30_000
    )
    assert requests.get(live_stack.url + "/healthz", timeout=5).ok


def test_test_capture_shows_validation_errors_in_the_page(live_stack, page: Page):
    first_run_in_browser(page, live_stack.url)
    page.goto(live_stack.url + "/streams/new")
    page.get_by_label("Kind of source").select_option("http_image")
    page.get_by_label("Image URL", exact=True).fill("file:///etc/passwd")
    page.get_by_role("button", name="Test capture").click()
    expect(page.locator("#preview").get_by_text("Fix the source settings first")).to_be_visible()
