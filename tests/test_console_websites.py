"""Website changes: text extraction, ignore rules, the element picker's data, and honest
selector errors, against a real page on a loopback server rendered by real Chromium."""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError

from glimpser import jobs
from glimpser.analysis.textchange import diff_lines, normalise, text_changed
from glimpser.db import database
from glimpser.models import Event, Rule, Snapshot, Stream
from glimpser.sources import website
from glimpser.sources.base import CaptureContext, CaptureError
from glimpser.sources.schemas import TEXT_MAX_CHARS, WebsiteConfig
from tests.conftest import run_queued_jobs

CHROMIUM = "/usr/bin/chromium"
CLOCK = r"\d{2}:\d{2}:\d{2}\.\d{6}"
T = TypeVar("T")


# --- pure functions and the schema (fast) ----------------------------------------------------


def test_ignored_patterns_and_blank_space_do_not_count():
    assert normalise("Time: 12:00:01\n\n  Rent   due \n", [r"\d+:\d+:\d+"]) == "Time:\nRent due"
    assert not text_changed("at 12:00:01 ok", "at 12:00:02 ok", [r"\d+:\d+:\d+"])
    assert text_changed("at 12:00:01 ok", "at 12:00:02 ok")
    assert text_changed("at 12:00:01 ok", "at 12:00:02 down", [r"\d+:\d+:\d+"])
    assert normalise("x" * (TEXT_MAX_CHARS + 10)) == "x" * TEXT_MAX_CHARS


def test_diff_lines_says_what_was_added_and_removed():
    lines, cut = diff_lines("a\nb\nc\n--x", "a\nB\nc\n--x\nd")
    assert not cut
    assert [(d.op, d.text) for d in lines] == [
        ("same", "a"),
        ("removed", "b"),
        ("added", "B"),
        ("same", "c"),
        ("same", "--x"),
        ("added", "d"),
    ]
    assert diff_lines("same", "same") == ([], False)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ignore_text": "(unclosed"}, "is not a valid regular expression"),
        ({"ignore_text": "x" * 201}, "at most 200 characters"),
        ({"ignore_text": "\n".join(f"p{i}" for i in range(21))}, "at most 20 items"),
        ({"change_by": "text"}, "needs “Keep the page's text” on"),
        ({"change_by": "pixels"}, "'picture', 'text' or 'either'"),
        ({"extract_text": "maybe"}, "valid boolean"),
    ],
)
def test_bad_text_settings_are_refused(fields: dict, message: str):
    with pytest.raises(ValidationError, match=message):
        WebsiteConfig(url="http://example.com/", **fields)


def test_text_settings_default_off_for_existing_streams():
    config = WebsiteConfig.model_validate({"kind": "website", "url": "http://example.com/"})
    assert (config.extract_text, config.change_by, config.ignore_text) == (False, "picture", [])


# --- a page with a ticking clock -------------------------------------------------------------


class ClockSite:
    """Serves /clock: the time to the microsecond (it ticks with every load) and `content`."""

    def __init__(self) -> None:
        self.content = "All systems normal"
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                if self.path == "/clock":
                    now = datetime.now(UTC).strftime("%H:%M:%S.%f")
                    body = (
                        "<!doctype html><html><head><style>body { margin: 0; font: 28px sans-serif;"
                        " background: white; } #clock { height: 60px; margin: 0; }"
                        " .box { width: 120px; height: 40px; margin: 8px; background: #36c; }"
                        "</style></head><body>"
                        f'<p id="clock">{now}</p><div id="content"><h1>Status</h1>'
                        f"<p>{html.escape(site.content)}</p></div>"
                        '<div class="box"></div><div class="box"></div></body></html>'
                    ).encode()
                    self.send_response(200)
                else:
                    body = b"not here"
                    self.send_response(404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/clock"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def clock_site() -> Iterator[ClockSite]:
    site = ClockSite()
    yield site
    site.close()


# Playwright's sync API belongs to one thread: every capture of this module runs on this one.
_browser_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-websites")


def on_browser_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return _browser_thread.submit(fn, *args, **kwargs).result()


@pytest.fixture(scope="module", autouse=True)
def _close_browser_after_module() -> Iterator[None]:
    yield
    on_browser_thread(website.close_browser)


def context(tmp_path) -> CaptureContext:
    return CaptureContext(
        max_jpeg_bytes=2_000_000,
        allow_loopback=True,
        deny_cidrs=(),
        media_dir=tmp_path,
        chromium=CHROMIUM,
    )


@pytest.mark.slow
def test_text_and_elements_of_a_real_page(clock_site, tmp_path):
    config = WebsiteConfig(
        url=clock_site.url, viewport_width=400, viewport_height=300, extract_text=True
    )
    frame = on_browser_thread(website.capture, config, context(tmp_path), elements=True)
    assert frame.text is not None and "All systems normal" in frame.text
    assert frame.elements is not None
    assert (frame.elements["width"], frame.elements["height"]) == (400, 300)
    boxes = {item[0]: item[1:] for item in frame.elements["items"]}
    assert boxes["#clock"][0:2] == [0, 0] and boxes["#clock"][3] == 60
    assert "#content > h1" in boxes
    assert boxes["body > div:nth-of-type(2)"][0::2] == [8, 120]
    # A crop keeps only that element's text; no text is kept unless asked for.
    crop = config.model_copy(update={"element_selector": "#content"})
    frame = on_browser_thread(website.capture, crop, context(tmp_path))
    assert "Status" in frame.text and ":" not in frame.text and frame.elements is None
    plain = config.model_copy(update={"extract_text": False})
    assert on_browser_thread(website.capture, plain, context(tmp_path)).text is None


@pytest.mark.slow
def test_a_selector_that_matches_nothing_fails_soon_and_says_so(clock_site, tmp_path):
    config = WebsiteConfig(url=clock_site.url, element_selector="#x", timeout=60)
    started = time.monotonic()
    with pytest.raises(CaptureError) as caught:
        on_browser_thread(website.capture, config, context(tmp_path))
    assert str(caught.value) == "selector #x matched nothing on the page"
    assert time.monotonic() - started < 45  # not the 60 s timeout (generous: a few s meant)


def website_stream(url: str, name: str, analysis: dict | None = None, **config: Any) -> Stream:
    with database.connection_context():
        return Stream.create(
            name=name,
            kind="website",
            enabled=False,  # captured by the test only, never chained
            state="paused",
            config={
                "kind": "website",
                "url": url,
                "viewport_width": 400,
                "viewport_height": 300,
                **config,
            },
            analysis=analysis or {},
        )


def capture_and_analyse(app, stream: Stream) -> None:
    """Capture (Chromium, on the browser thread) then run the queued analysis with a real RQ
    worker (on the main thread, which RQ's signal handlers need)."""

    def capture() -> dict:
        with database.connection_context():
            return jobs.capture_stream(stream.id, manual=True)

    result = on_browser_thread(capture)
    assert result["ok"], result
    run_queued_jobs(app, ("analysis",))


def events_of(stream: Stream) -> list[Event]:
    with database.connection_context():
        return list(Event.select().where(Event.stream == stream.id).order_by(Event.id))


@pytest.fixture
def change_rule(capture_app):
    with database.connection_context():
        Rule.update(enabled=True, cooldown_seconds=0).where(
            Rule.name == "Motion or change"
        ).execute()
    return capture_app


@pytest.mark.slow
def test_an_ignore_rule_keeps_a_clock_page_quiet(change_rule, clock_site):
    app = change_rule
    clock_site.content = "All systems normal"
    quiet = website_stream(
        clock_site.url, "Quiet", extract_text=True, change_by="text", ignore_text=[CLOCK]
    )
    noisy = website_stream(clock_site.url, "Noisy", extract_text=True, change_by="text")
    masked = website_stream(
        clock_site.url, "Masked", analysis={"masks": [[[0, 0], [1, 0], [1, 0.25], [0, 0.25]]]}
    )
    for _ in range(3):
        for stream in (quiet, noisy, masked):
            capture_and_analyse(app, stream)
    with database.connection_context():
        stored = Snapshot.select().where(Snapshot.stream == quiet.id).order_by(Snapshot.id)
        texts = [s.text for s in stored]
        notes = [s.analysis_note for s in stored]
    assert len(texts) == 3 and len(set(texts)) == 3  # the clock ticked in every capture
    assert notes == ["first", "text unchanged", "text unchanged"]
    assert events_of(quiet) == [] and events_of(masked) == []
    assert len(events_of(noisy)) == 2, "without the ignore rule, each tick is a change"
    clock_site.content = "Database DOWN"
    capture_and_analyse(app, quiet)
    capture_and_analyse(app, masked)
    [event] = events_of(quiet)
    assert event.kind == "change" and event.description == "The page's text changed"
    assert len(events_of(masked)) == 1, "a real change outside the mask is an event"
