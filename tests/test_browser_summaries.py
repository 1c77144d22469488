"""In a real browser against gunicorn + an RQ worker and the loopback OpenAI server: ask for a
summary on /summaries, watch the queued item turn into the model's text, on a phone-sized page."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from glimpser import times
from glimpser.config import load_settings
from glimpser.db import database, init_database
from glimpser.models import Event
from tests.conftest import ROOT, LiveStack, start_live_server, stop_process
from tests.helpers import first_run_in_browser, paused_stream
from tests.openai_server import Reply

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def ai_stack(tmp_path: Path, redis_url: str, redis_client, openai_server) -> Iterator[LiveStack]:
    """gunicorn and one worker, with AI pointed at the loopback server."""
    server = start_live_server(
        tmp_path / "stack-data",
        redis_url,
        GLIMPSER_AI_BASE_URL=openai_server.url,
        GLIMPSER_AI_MODEL="browser-test-model",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "glimpser.cli", "worker"],
        env=server.env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    stack = LiveStack(server, [worker])
    yield stack
    for proc in [worker, server.proc]:
        stop_process(proc)


def seed(env: dict[str, str]) -> int:
    """A paused stream with one event in the last hour."""
    init_database(load_settings(env).database_url)
    with database.connection_context():
        stream = paused_stream("Garden")
        Event.create(
            stream=stream.id,
            kind="motion",
            severity="low",
            title="Fox on the lawn",
            created_at=times.utcnow() - timedelta(minutes=5),
        )
        return stream.id


def test_summarise_now_in_the_browser(ai_stack, openai_server, page: Page):
    openai_server.handler = lambda _r: Reply.completion(
        "A fox crossed the lawn.\n\nNothing else moved."
    )
    page.set_viewport_size({"width": 375, "height": 800})
    first_run_in_browser(page, ai_stack.url)
    seed(ai_stack.env)
    page.goto(ai_stack.url + "/")
    page.get_by_role("link", name="Summaries").click()
    expect(page.get_by_role("heading", name="Summaries")).to_be_visible()
    expect(page.get_by_text("No summaries yet.")).to_be_visible()

    page.get_by_label("Summarise").select_option(label="Garden")
    page.get_by_label("Window").select_option(label="Last hour")
    page.get_by_role("button", name="Summarise now").click()

    item = page.locator("#summary-list li.summary").first
    expect(item).to_contain_text("Garden")
    expect(page.get_by_text("No summaries yet.")).to_be_hidden()
    # The queued item polls itself until the worker has written the summary.
    expect(item.get_by_text("A fox crossed the lawn.")).to_be_visible(timeout=30_000)
    expect(item.get_by_text("Nothing else moved.")).to_be_visible()
    expect(item).to_contain_text("browser-test-model")
    assert "Fox on the lawn" in openai_server.requests[-1].text

    # Nothing is wider than a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
