"""In a real browser against gunicorn + worker + scheduler: build a timelapse from the stream's
timelapse panel, watch the progress fragment turn into a video, and play it."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from glimpser import times
from glimpser.config import load_settings
from glimpser.db import database, init_database
from glimpser.media.snapshots import save_snapshot
from glimpser.media.storage import LocalStorage
from glimpser.sources.base import Frame
from tests.helpers import first_run_in_browser, paused_stream

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def seed_stream(env: dict[str, str], frames: int) -> int:
    """A paused stream with distinct snapshots of the last minutes, in the stack's own storage."""
    settings = load_settings(env)
    init_database(settings.database_url)
    storage = LocalStorage(settings.snapshot_dir)
    start = times.utcnow() - timedelta(minutes=10)
    with database.connection_context():
        stream = paused_stream("Garden")
        for i in range(frames):
            image = Image.new("RGB", (320, 240), (i * 8 % 256, 255 - i * 8 % 256, 120))
            data = io.BytesIO()
            image.save(data, "JPEG")
            frame = Frame(jpeg=data.getvalue(), width=320, height=240)
            save_snapshot(
                stream, frame, start + timedelta(seconds=10 * i), storage, store_identical=True
            )
        return stream.id


def test_build_and_play_a_timelapse(live_stack, page: Page):
    first_run_in_browser(page, live_stack.url)
    stream_id = seed_stream(live_stack.env, 30)
    page.goto(f"{live_stack.url}/streams/{stream_id}/timelapses")
    panel = page.locator("#timelapses")
    expect(panel.get_by_text("No timelapses yet.")).to_be_visible()
    expect(page.get_by_label("Start (UTC)")).to_be_hidden()  # only for a custom range
    page.get_by_label("Time range").select_option(label="Last hour")
    page.get_by_label("Frames per second").select_option("10")
    page.get_by_role("button", name="Build timelapse").click()

    item = panel.locator("li.timelapse").first
    expect(item).to_be_visible()
    expect(panel.get_by_text("No timelapses yet.")).to_be_hidden()
    video = item.locator("video")
    expect(video).to_be_visible(timeout=60_000)  # the progress fragment polled until done
    expect(item).to_contain_text("30 frames")
    expect(item.get_by_role("link", name="Download MP4")).to_be_visible()

    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function(
        "v => v.readyState >= 2 && v.duration > 0", arg=video.element_handle(), timeout=30_000
    )
    duration = video.evaluate("v => v.duration")
    assert duration == pytest.approx(3.0, abs=0.2)

    # A custom range shows its start and end fields, labelled as UTC.
    page.get_by_label("Time range").select_option("custom")
    expect(page.get_by_label("Start (UTC)")).to_be_visible()
    expect(page.get_by_label("End (UTC)")).to_be_visible()
