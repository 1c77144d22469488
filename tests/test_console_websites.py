"""Website changes: text extraction, ignore rules, the element picker's data, and honest
selector errors, against a real page on a loopback server rendered by real Chromium."""

from __future__ import annotations

import html
import re
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
from glimpser.analysis.textchange import diff_counts, diff_lines, normalise, text_changed
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


def test_lines_only_an_ignore_pattern_changed_are_shown_as_ignored():
    before = "Status\n09:12:01.000001\nAll systems normal\nUpdated 09:12 by ops\nFooter"
    after = "Status\n09:13:07.123456\nAll systems normal\nUpdated 09:13 by ops\nFooter"
    lines, cut = diff_lines(before, after, [CLOCK, r"\d{2}:\d{2}"])
    assert not cut
    assert [(d.op, d.side, d.text) for d in lines] == [
        ("same", "", "Status"),
        ("ignored", "before", "09:12:01.000001"),
        ("ignored", "after", "09:13:07.123456"),
        ("same", "", "All systems normal"),
        ("ignored", "before", "Updated 09:12 by ops"),
        ("ignored", "after", "Updated 09:13 by ops"),
        ("same", "", "Footer"),
    ]
    assert diff_counts(lines) == {"added": 0, "removed": 0, "ignored": 4}
    # A real change next to the ticking clock: only the real change counts.
    lines, _ = diff_lines(before, after.replace("normal", "DOWN"), [CLOCK, r"\d{2}:\d{2}"])
    assert diff_counts(lines) == {"added": 1, "removed": 1, "ignored": 4}
    assert ("removed", "All systems normal") in [(d.op, d.text) for d in lines]
    assert ("added", "All systems DOWN") in [(d.op, d.text) for d in lines]
    # Without the patterns, the clock lines are changes like any other.
    assert diff_counts(diff_lines(before, after)[0]) == {"added": 2, "removed": 2, "ignored": 0}


@pytest.mark.parametrize(
    ("before", "after", "patterns"),
    [
        ("a 10:01\nb", "a 10:02\nb", [r"\d+:\d+"]),
        ("a 10:01\nb", "a 10:02\nc", [r"\d+:\d+"]),
        ("x 1:2\ny\nz", "x 1:3\ny\nz", [r"\d:\d\n"]),  # a pattern that eats the newline
        ("x 1:2\ny\nz", "x 1:3\nY\nz", [r"\d:\d\n"]),
        ("^top\nTick 1", "^top\nTick 2", [r"^\^top", r"\d"]),  # anchors: the whole text's
        ("Tick 1\nTick 2", "Tick 3\nTick 1", [r"^Tick \d"]),
        ("  spaced   out \n\n\nend", "spaced out\nend", []),  # blank space only
        ("a\r\nb\u2028c", "a\nb\nc", []),
        ("", "new", [r"x"]),
        ("old", "", []),
        ("t 12:00\n\n12:01\n", "\n12:02\nt 12:03", [r"\d+:\d+"]),
    ],
)
def test_the_diff_counts_a_change_exactly_when_the_text_changed(before, after, patterns):
    lines, _ = diff_lines(before, after, patterns)
    counts = diff_counts(lines)
    assert bool(counts["added"] or counts["removed"]) == text_changed(before, after, patterns)
    # Every line of both texts is accounted for, in order, by the full diff.
    full, _ = diff_lines(before, after, patterns, context=10**6)
    shown_before = [d.text for d in full if d.op in ("same", "removed") or d.side == "before"]
    shown_after = [d.text for d in full if d.op in ("same", "added") or d.side == "after"]
    if full:
        assert shown_before == before.splitlines() and shown_after == after.splitlines()


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


# --- the change view -------------------------------------------------------------------------


def _jpeg(colour: tuple[int, int, int], box: tuple[int, int, int, int] | None = None) -> bytes:
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 200), colour)
    if box:
        ImageDraw.Draw(image).rectangle(box, fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def _store(app, stream: Stream, picture: bytes, text: str | None, seconds_ago: float) -> Snapshot:
    from datetime import timedelta

    from glimpser import times
    from glimpser.media.snapshots import save_snapshot
    from glimpser.media.storage import get_storage
    from glimpser.sources.base import Frame

    frame = Frame(jpeg=picture, width=320, height=200, text=text)
    at = times.utcnow() - timedelta(seconds=seconds_ago)
    with database.connection_context():
        snap = save_snapshot(
            stream,
            frame,
            at,
            get_storage(app.extensions["glimpser.settings"]),
            store_identical=True,
        )
    assert snap is not None
    return snap


@pytest.fixture
def changes(app):
    """An admin client, a viewer (granted one site, not the other), and three snapshots."""
    from glimpser.auth.users import create_user
    from glimpser.models import StreamAccess
    from tests.helpers import PASSWORD, login, signed_in_admin

    admin = signed_in_admin(app)
    site = website_stream(
        "http://192.0.2.1/", "Rent status", extract_text=True, ignore_text=[r"\d+:\d+"]
    )
    other = website_stream("http://192.0.2.2/", "Other")
    white = _jpeg((255, 255, 255))
    first = _store(app, site, white, "Rent: due\nAt 10:01\n<script>alert(1)</script>", 30)
    second = _store(
        app,
        site,
        _jpeg((255, 255, 255), (20, 20, 60, 60)),
        "Rent: PAID\nAt 10:02\n<script>alert(1)</script>",
        20,
    )
    hidden = _store(app, other, white, None, 10)
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=site)
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    return admin, viewer, site, other, first, second, hidden


def test_the_change_view_shows_pictures_and_an_escaped_text_diff(changes):
    admin, viewer, site, _other, first, second, _hidden = changes
    url = f"/streams/{site.id}/changes/{second.id}"
    for client in (admin, viewer):
        page = client.get(url)
        assert page.status_code == 200
        html_text = page.get_data(as_text=True)
        assert f"/streams/{site.id}/snapshots/{first.id}.jpg" in html_text
        assert f"/streams/{site.id}/changes/{second.id}/diff.png" in html_text
        assert 'class="diff-removed"' in html_text and "Rent: due" in html_text
        assert 'class="diff-added"' in html_text and "Rent: PAID" in html_text
        assert "<script>alert" not in html_text and "&lt;script&gt;alert(1)" in html_text
        assert "the text changed apart from these" in html_text
        # The clock line differs only by the ignore pattern: shown, dimmed, never counted.
        ignored = re.findall(r'<li class="diff-ignored">(.*?)</li>', html_text)
        assert len(ignored) == 2 and all("ignored" in li for li in ignored)
        assert "At 10:01" in ignored[0] and "At 10:02" in ignored[1]
        assert "+ 1 added" in html_text and "− 1 removed" in html_text
        assert "2 ignored" in html_text
    first_page = admin.get(f"/streams/{site.id}/changes/{first.id}").get_data(as_text=True)
    assert "nothing to compare it with" in first_page
    # The stream's history links here.
    assert f"/streams/{site.id}/changes/{second.id}" in admin.get(f"/streams/{site.id}").get_data(
        as_text=True
    )


def test_a_page_where_only_the_clock_ticked_shows_the_clock_as_ignored(app, changes):
    admin, viewer, site, _other, _first, second, _hidden = changes
    third = _store(
        app, site, _jpeg((255, 255, 255)), "Rent: PAID\nAt 10:03\n<script>alert(1)</script>", 5
    )
    page = viewer.get(f"/streams/{site.id}/changes/{third.id}").get_data(as_text=True)
    assert "apart from these, the text did not change" in page
    assert '<li class="diff-added">' not in page and '<li class="diff-removed">' not in page
    assert "+ 0 added" in page and "− 0 removed" in page and "2 ignored" in page
    ignored = re.findall(r'<li class="diff-ignored">(.*?)</li>', page)
    assert ["At 10:02" in ignored[0], "At 10:03" in ignored[1]] == [True, True]
    assert "ignored, before" in ignored[0] and "ignored, after" in ignored[1]


def test_the_difference_picture_marks_the_changed_pixels_red(changes):
    import cv2
    import numpy as np

    admin, viewer, site, _other, first, second, _hidden = changes
    response = viewer.get(f"/streams/{site.id}/changes/{second.id}/diff.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    picture = cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[:2] == (200, 320)
    blue, green, red = picture[40, 40]
    assert red > 200 and green < 50 and blue < 50, "the new black square is red"
    assert not (picture[150, 250][2] > 200 and picture[150, 250][1] < 50), "unchanged: not red"
    again = viewer.get(
        f"/streams/{site.id}/changes/{second.id}/diff.png",
        headers={"If-None-Match": response.headers["ETag"]},
    )
    assert again.status_code == 304
    assert admin.get(f"/streams/{site.id}/changes/{first.id}/diff.png").status_code == 404


def test_the_change_view_is_access_checked(changes):
    admin, viewer, site, other, first, second, hidden = changes
    for path in (
        f"/streams/{other.id}/changes/{hidden.id}",
        f"/streams/{other.id}/changes/{hidden.id}/diff.png",
    ):
        assert viewer.get(path).status_code == 404  # another stream: as if it did not exist
        assert admin.get(path).status_code == 200 or path.endswith(".png")
    # A snapshot of another stream under this stream's URL, huge and odd ids: all 404.
    for bad in (hidden.id, 2**63, "١٢", "-1", "x"):
        assert admin.get(f"/streams/{site.id}/changes/{bad}").status_code == 404
        assert admin.get(f"/streams/{site.id}/changes/{bad}/diff.png").status_code == 404
    assert viewer.get(f"/streams/{2**63}/changes/{second.id}").status_code == 404
    anonymous = admin.application.test_client()
    assert anonymous.get(f"/streams/{site.id}/changes/{second.id}").status_code in (302, 401)


# --- honest feedback: "Capture now" and the form's words -------------------------------------


def _capture_now(client, stream: Stream) -> str:
    from tests.helpers import csrf_from

    token = csrf_from(client.get(f"/streams/{stream.id}").get_data(as_text=True))
    answer = client.post(
        f"/streams/{stream.id}/capture",
        data={"csrf_token": token},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def _result_after_jobs(app, client, pending: str) -> str:
    import re as re_

    url = re_.search(r'hx-get="([^"]+)"', pending)
    assert url, pending
    run_queued_jobs(app, ("capture",))
    return client.get(html.unescape(url.group(1))).get_data(as_text=True)


@pytest.mark.slow
def test_capture_now_says_what_happened(capture_app, camera):
    from tests.helpers import signed_in_admin

    admin = signed_in_admin(capture_app)
    with database.connection_context():
        cam = Stream.create(
            name="Door",
            kind="http_image",
            enabled=False,
            state="paused",
            config={"kind": "http_image", "url": f"{camera.url}/snapshot.jpg"},
        )
        broken = Stream.create(
            name="Broken",
            kind="http_image",
            enabled=False,
            state="paused",
            config={"kind": "http_image", "url": f"{camera.url}/nothing-here.jpg"},
        )
    pending = _capture_now(admin, cam)
    assert "Capturing…" in pending
    assert "New picture stored." in _result_after_jobs(capture_app, admin, pending)
    again = _result_after_jobs(capture_app, admin, _capture_now(admin, cam))
    assert "Unchanged: the picture is the same as the last one" in again
    failed = _result_after_jobs(capture_app, admin, _capture_now(admin, broken))
    assert "Capture failed:" in failed and "404" in failed
    # Another session cannot follow these jobs; a made-up job id is a 404.
    from tests.helpers import PASSWORD, login

    other = capture_app.test_client()
    login(other, "alice", PASSWORD)
    assert other.get(f"/streams/{cam.id}/capture/capture-{cam.id}-abc").status_code == 404
    assert admin.get(f"/streams/{cam.id}/capture/capture-{broken.id}-x").status_code == 404


def test_the_form_speaks_plainly(app):
    from tests.helpers import form_post, signed_in_admin

    admin = signed_in_admin(app)
    answer = form_post(
        admin,
        "/streams/new",
        data={"kind": "rtsp", "name": "Cam", "interval": "0", "config.url": ""},
    )
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "Enter a number of seconds, at least 1" in page
    assert "Enter the camera&#39;s RTSP address" in page
    answer = form_post(
        admin,
        "/streams/new",
        data={
            "kind": "website",
            "name": "Site",
            "interval": "٣",  # unicode digits
            "config.url": "http://example.com/",
            "config.ignore_text": "(unclosed",
            "config.change_by": "text",
        },
    )
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "Enter a number of seconds, at least 1" in page
    assert "is not a valid regular expression" in page
    with database.connection_context():
        assert Stream.select().count() == 0


@pytest.mark.slow
def test_an_ffmpeg_failure_names_the_address_and_the_reason(tmp_path):
    """Real ffmpeg against a closed loopback port: its meaningful line, not its summaries."""
    import socket

    from glimpser.sources import rtsp
    from glimpser.sources.schemas import RtspConfig

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"rtsp://127.0.0.1:{port}/stream"
    with pytest.raises(CaptureError) as caught:
        rtsp.capture(RtspConfig(url=url, timeout=20), context(tmp_path))
    assert str(caught.value) == f"{url}: Connection refused"


def test_a_list_field_is_not_cut_to_its_number_of_lines(app):
    """The form's textareas for lists (ignore patterns, hidden elements) carry no maxlength:
    the schema's limit there counts lines, not characters."""
    from tests.helpers import signed_in_admin

    admin = signed_in_admin(app)
    page = admin.get("/streams/kind-fields?kind=website").get_data(as_text=True)
    for name in ("config.ignore_text", "config.hide_selectors"):
        tag = re.search(rf'<textarea[^>]*name="{re.escape(name)}"[^>]*>', page)
        assert tag and "maxlength" not in tag.group(0), tag
