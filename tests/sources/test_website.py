"""The website source against real pages served from loopback, through Debian Chromium."""

from __future__ import annotations

import base64
import io
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest
from PIL import Image

from glimpser.sources import website
from glimpser.sources.base import CaptureContext, CaptureError, Frame
from glimpser.sources.schemas import WebsiteConfig

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = os.environ.get("GLIMPSER_CHROMIUM", "/usr/bin/chromium")
USER, PASSWORD = "viewer", "s3cret-Pa55word"
GREEN, RED, BLUE, WHITE, BLACK = (0, 200, 0), (230, 0, 0), (0, 0, 220), (255, 255, 255), (0, 0, 0)
W, H = 320, 240  # small viewports keep the module fast

T = TypeVar("T")


# --- A loopback web server with the pages the tests need ----------------------------------


def _page(body: str, style: str = "") -> str:
    return (
        "<!doctype html><html><head><style>html, body { margin: 0; } "
        f"{style}</style></head><body>{body}</body></html>"
    )


GREEN_PAGE = _page("", "body { background: rgb(0, 200, 0); }")
PAGES: dict[str, str] = {
    "/plain": GREEN_PAGE,
    "/tall": _page(
        '<div style="height: 600px; background: rgb(0, 200, 0)"></div>'
        '<div style="height: 600px; background: rgb(0, 0, 220)"></div>'
    ),
    "/element": _page(
        '<div id="box" style="position: absolute; left: 40px; top: 30px; width: 120px; '
        'height: 80px; background: rgb(0, 0, 220)"></div>',
        "body { background: white; }",
    ),
    # Styles come from a stylesheet because the page's CSP forbids inline styles.
    "/banner": '<!doctype html><html><head><link rel="stylesheet" href="/banner.css"></head>'
    '<body><div id="banner">We use cookies</div><div class="ad"></div></body></html>',
    "/dark": _page(
        "",
        "body { background: white; } "
        "@media (prefers-color-scheme: dark) { body { background: black; } }",
    ),
    "/late": _page(
        "<script>setTimeout(() => { const d = document.createElement('div'); d.id = 'late'; "
        "d.style = 'position: fixed; inset: 0; background: rgb(0, 200, 0)'; "
        "document.body.appendChild(d); }, 700);</script>",
        "body { background: white; }",
    ),
    # Green only for a browser context that has never seen this site before.
    "/storage": _page(
        "<script>const seen = localStorage.getItem('seen') || document.cookie.includes('seen');"
        "document.body.style.background = seen ? 'rgb(230, 0, 0)' : 'rgb(0, 200, 0)';"
        "localStorage.setItem('seen', '1'); document.cookie = 'seen=1; max-age=3600';</script>"
    ),
    # Green only if the guard closed the socket itself (an unrouted one would hang, red).
    "/websocket": _page(
        "<script>const ws = new WebSocket('ws://169.254.169.254/socket');"
        "ws.onclose = e => { document.body.style.background = e.code === 1008 ? "
        "'rgb(0, 200, 0)' : 'rgb(230, 0, 0)'; document.body.append(Object.assign("
        "document.createElement('p'), {id: 'closed', textContent: e.code})); };</script>",
        "body { background: rgb(230, 0, 0); }",
    ),
}
BANNER_CSS = (
    b"html, body { margin: 0; background: rgb(0, 200, 0); } "
    b"#banner { position: fixed; top: 0; left: 0; right: 0; height: 100px; "
    b"background: rgb(230, 0, 0); } "
    b".ad { position: fixed; bottom: 0; left: 0; right: 0; height: 60px; "
    b"background: rgb(230, 0, 0); }"
)
STRICT_CSP = "default-src 'none'; style-src 'self'; img-src 'self'"


class Site:
    """Two loopback servers (127.0.0.1 and 127.0.0.2) sharing one log of requested paths."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []  # (server address, path)
        self.release = threading.Event()  # lets /hang handlers finish at teardown
        self.servers = [self._start("127.0.0.1"), self._start("127.0.0.2")]
        self.port = self.servers[0].server_address[1]
        self.other_port = self.servers[1].server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def other_url(self, path: str) -> str:
        return f"http://127.0.0.2:{self.other_port}{path}"

    def paths(self, address: str) -> list[str]:
        return [path for host, path in self.requests if host == address]

    def close(self) -> None:
        self.release.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def _start(self, address: str) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer((address, 0), self._handler())
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requests.append((self.server.server_address[0], self.path))
                path = self.path.split("?")[0]
                if path == "/hang":  # accept the connection, never answer
                    site.release.wait(60)
                elif path == "/secret":
                    expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                    if self.headers.get("Authorization") == f"Basic {expected}":
                        self._send(200, GREEN_PAGE)
                    else:
                        self._send(401, "no", {"WWW-Authenticate": 'Basic realm="glimpser"'})
                elif path == "/banner":
                    self._send(200, PAGES[path], {"Content-Security-Policy": STRICT_CSP})
                elif path == "/banner.css":
                    self._send(200, BANNER_CSS, {"Content-Type": "text/css"})
                elif path == "/metadata":
                    self._send(
                        200,
                        _page(
                            '<img src="http://169.254.169.254/latest/meta-data/">'
                            f'<img src="{site.other_url("/canary.png")}">',
                            "body { background: rgb(0, 200, 0); }",
                        ),
                    )
                elif path == "/redirect-to-other":
                    self._send(302, "", {"Location": site.other_url("/plain")})
                elif path in PAGES:
                    self._send(200, PAGES[path])
                else:
                    self._send(404, "not found")

            def _send(self, status: int, body: str | bytes, headers: dict | None = None) -> None:
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    site = Site()
    yield site
    site.close()


# --- Running captures ------------------------------------------------------------------------

# Other test modules use pytest-playwright, whose session-wide sync Playwright occupies the main
# thread; Playwright refuses a second sync instance in the same thread. So the captures here run
# on a thread of their own, as a worker's single capture thread would.
_browser_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="website-tests")


def on_browser_thread(fn: Callable[..., T], *args: Any) -> T:
    return _browser_thread.submit(fn, *args).result()


@pytest.fixture(scope="module", autouse=True)
def _close_browser_after_module() -> Iterator[None]:
    yield
    on_browser_thread(website.close_browser)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> CaptureContext:
    return CaptureContext(
        max_jpeg_bytes=2_000_000,
        allow_loopback=True,
        deny_cidrs=(),
        media_dir=tmp_path_factory.mktemp("media"),
        chromium=CHROMIUM,
    )


def shoot(ctx: CaptureContext, url: str, **fields: Any) -> Frame:
    fields = {"viewport_width": W, "viewport_height": H, "timeout": 10, **fields}
    return on_browser_thread(website.capture, WebsiteConfig(url=url, **fields), ctx)


def image(frame: Frame) -> Image.Image:
    picture = Image.open(io.BytesIO(frame.jpeg))
    assert picture.format == "JPEG"
    assert picture.size == (frame.width, frame.height)
    return picture.convert("RGB")


def assert_colour(frame: Frame, xy: tuple[int, int], expected: tuple[int, int, int]) -> None:
    actual = image(frame).getpixel(xy)
    assert all(abs(a - e) <= 40 for a, e in zip(actual, expected, strict=True)), (
        f"pixel {xy} is {actual}, expected about {expected}"
    )


def browser_pid() -> int:
    """The pid of the worker's Chromium, as Chromium itself reports it."""
    session = website._browser.new_browser_cdp_session()
    try:
        processes = session.send("SystemInfo.getProcessInfo")["processInfo"]
    finally:
        session.detach()
    return next(p["id"] for p in processes if p["type"] == "browser")


# --- Pictures --------------------------------------------------------------------------------


def test_plain_capture_is_a_jpeg_of_the_viewport(site: Site, ctx: CaptureContext) -> None:
    frame = shoot(ctx, site.url("/plain"))
    assert frame.content_type == "image/jpeg"
    assert frame.jpeg[:3] == b"\xff\xd8\xff"
    assert (frame.width, frame.height) == (W, H)
    assert_colour(frame, (W // 2, H // 2), GREEN)


def test_full_page_is_taller_than_the_viewport(site: Site, ctx: CaptureContext) -> None:
    viewport_only = shoot(ctx, site.url("/tall"))
    assert (viewport_only.width, viewport_only.height) == (W, H)

    frame = shoot(ctx, site.url("/tall"), full_page=True)
    assert (frame.width, frame.height) == (W, 1200)
    assert_colour(frame, (W // 2, 300), GREEN)
    assert_colour(frame, (W // 2, 900), BLUE)


@pytest.mark.parametrize(
    ("selector_type", "selector"), [("css", "#box"), ("xpath", "//div[@id='box']")]
)
def test_element_crop_is_the_elements_box(
    site: Site, ctx: CaptureContext, selector_type: str, selector: str
) -> None:
    frame = shoot(ctx, site.url("/element"), selector_type=selector_type, element_selector=selector)
    assert (frame.width, frame.height) == (120, 80)
    assert_colour(frame, (5, 5), BLUE)
    assert_colour(frame, (115, 75), BLUE)


def test_hidden_selectors_disappear_despite_a_strict_csp(site: Site, ctx: CaptureContext) -> None:
    shown = shoot(ctx, site.url("/banner"))
    assert_colour(shown, (W // 2, 50), RED)
    assert_colour(shown, (W // 2, H - 30), RED)

    hidden = shoot(ctx, site.url("/banner"), hide_selectors="#banner\n.ad")
    assert_colour(hidden, (W // 2, 50), GREEN)
    assert_colour(hidden, (W // 2, H - 30), GREEN)


def test_dark_mode_selects_the_dark_colour_scheme(site: Site, ctx: CaptureContext) -> None:
    assert_colour(shoot(ctx, site.url("/dark")), (10, 10), WHITE)
    assert_colour(shoot(ctx, site.url("/dark"), dark_mode=True), (10, 10), BLACK)


def test_wait_for_a_selector_added_later_by_script(site: Site, ctx: CaptureContext) -> None:
    assert_colour(shoot(ctx, site.url("/late")), (10, 10), WHITE)  # load alone is too early

    frame = shoot(ctx, site.url("/late"), wait="selector", wait_selector="#late")
    assert_colour(frame, (10, 10), GREEN)


# --- Basic auth ------------------------------------------------------------------------------


def test_basic_auth_with_the_right_credentials(site: Site, ctx: CaptureContext) -> None:
    frame = shoot(ctx, site.url("/secret"), username=USER, password=PASSWORD)
    assert_colour(frame, (10, 10), GREEN)


def test_basic_auth_credentials_can_come_inside_the_url(site: Site, ctx: CaptureContext) -> None:
    frame = shoot(ctx, f"http://{USER}:{PASSWORD}@127.0.0.1:{site.port}/secret")
    assert_colour(frame, (10, 10), GREEN)


def test_basic_auth_without_credentials_is_a_401(site: Site, ctx: CaptureContext) -> None:
    with pytest.raises(
        CaptureError, match=r"^HTTP 401 from http://127\.0\.0\.1:\d+/secret \(it needs a login\)$"
    ):
        shoot(ctx, site.url("/secret"))


def test_wrong_password_is_a_401_and_never_shown(site: Site, ctx: CaptureContext) -> None:
    with pytest.raises(CaptureError, match=r"HTTP 401 .*\(wrong username or password\)") as caught:
        shoot(ctx, site.url("/secret"), username=USER, password="wrong-" + PASSWORD)
    assert PASSWORD not in str(caught.value)


# --- Failures --------------------------------------------------------------------------------


def test_a_server_that_never_answers_fails_within_the_timeout(
    site: Site, ctx: CaptureContext
) -> None:
    started = time.monotonic()
    with pytest.raises(CaptureError) as caught:
        shoot(ctx, site.url("/hang"), timeout=3)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    # It waited for its timeout and then gave up. The upper bound only tells "gave up" from
    # "hung": Chromium on a loaded machine takes seconds more to stop a load.
    assert 2.5 < elapsed < 60, elapsed
    assert message.startswith(f"{site.url('/hang')} did not load: Timeout")
    assert "\n" not in message and "Call log" not in message


def test_http_404_is_an_error_not_a_screenshot(site: Site, ctx: CaptureContext) -> None:
    with pytest.raises(CaptureError, match=r"^HTTP 404 from http://127\.0\.0\.1:\d+/nothing$"):
        shoot(ctx, site.url("/nothing"))


def test_a_missing_element_names_the_selector(site: Site, ctx: CaptureContext) -> None:
    started = time.monotonic()
    with pytest.raises(CaptureError) as caught:
        shoot(ctx, site.url("/plain"), element_selector="#nowhere", timeout=60)
    assert str(caught.value) == "selector #nowhere matched nothing on the page"
    # It does not wait out the timeout (a generous bound: a few seconds are meant).
    assert time.monotonic() - started < 45


def test_a_delay_longer_than_the_timeout_is_refused(site: Site, ctx: CaptureContext) -> None:
    with pytest.raises(CaptureError, match="extra delay of 5 s leaves no time"):
        shoot(ctx, site.url("/plain"), wait="delay", wait_delay=5, timeout=2)


def test_missing_chromium_says_how_to_configure_it(site: Site, ctx: CaptureContext) -> None:
    with pytest.raises(
        CaptureError,
        match=r"Chromium not found at /nowhere/chromium .*"
        "GLIMPSER_CHROMIUM",
    ):
        shoot(replace(ctx, chromium="/nowhere/chromium"), site.url("/plain"))


# --- SSRF guard -----------------------------------------------------------------------------


def test_loopback_is_refused_unless_allowed(site: Site, ctx: CaptureContext) -> None:
    with pytest.raises(CaptureError, match="loopback addresses are not allowed"):
        shoot(replace(ctx, allow_loopback=False), site.url("/plain?refused"))
    assert "/plain?refused" not in site.paths("127.0.0.1")


def test_refused_subresources_are_aborted_but_the_page_is_captured(
    site: Site, ctx: CaptureContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="glimpser.sources.website")
    denied = replace(ctx, deny_cidrs=("127.0.0.2/32",))

    frame = shoot(denied, site.url("/metadata"))

    assert_colour(frame, (W // 2, H // 2), GREEN)
    refused = {record.url: record.reason for record in caplog.records}
    assert "link-local" in refused["http://169.254.169.254/latest/meta-data/"]
    assert "denied network (127.0.0.2/32)" in refused[site.other_url("/canary.png")]
    assert "/canary.png" not in site.paths("127.0.0.2")  # it never left Chromium


def test_a_redirect_to_a_refused_address_refuses_the_capture(
    site: Site, ctx: CaptureContext
) -> None:
    # Redirect hops bypass Playwright routing: the hop is detected and nothing is shown.
    denied = replace(ctx, deny_cidrs=("127.0.0.2/32",))
    with pytest.raises(
        CaptureError, match=r"redirected to http://127\.0\.0\.2:\d+/plain: .*denied"
    ):
        shoot(denied, site.url("/redirect-to-other"))


def test_websockets_to_refused_addresses_are_closed(site: Site, ctx: CaptureContext) -> None:
    frame = shoot(ctx, site.url("/websocket"), wait="selector", wait_selector="#closed", timeout=5)
    assert_colour(frame, (10, 10), GREEN)


# --- One browser per process, one context per capture ---------------------------------------


def test_captures_share_the_browser_but_not_the_context(site: Site, ctx: CaptureContext) -> None:
    first = shoot(ctx, site.url("/storage"))
    browser, pid = website._browser, on_browser_thread(browser_pid)

    second = shoot(ctx, site.url("/storage"))

    assert website._browser is browser
    assert on_browser_thread(browser_pid) == pid
    assert on_browser_thread(lambda: browser.contexts) == []  # each context closed afterwards
    # The page turns red when it finds its own cookie or localStorage from an earlier visit.
    assert_colour(first, (10, 10), GREEN)
    assert_colour(second, (10, 10), GREEN)


def test_a_crashed_browser_is_launched_again(site: Site, ctx: CaptureContext) -> None:
    shoot(ctx, site.url("/plain"))
    old_pid = on_browser_thread(browser_pid)
    os.kill(old_pid, signal.SIGKILL)

    frame = shoot(ctx, site.url("/plain"))

    assert_colour(frame, (10, 10), GREEN)
    assert on_browser_thread(browser_pid) != old_pid


def test_closing_leaves_no_browser_behind() -> None:
    on_browser_thread(website.close_browser)
    assert website._browser is None and website._playwright is None


def test_closing_returns_once_the_browser_process_is_gone(site: Site, ctx: CaptureContext) -> None:
    """With a per-host cap the slot is given back when close_browser returns: by then the
    browser process must have exited, or another worker could start a second Chromium."""
    shoot(ctx, site.url("/plain"))
    pid = on_browser_thread(browser_pid)
    assert on_browser_thread(website._browser_pids) == [pid]  # found as Chromium reports it
    on_browser_thread(website.close_browser)
    assert not website._alive(pid)


def test_a_crashed_browser_is_restarted_within_the_slot_it_holds(
    site: Site, ctx: CaptureContext, redis_client
) -> None:
    """A capture that finds Chromium dead starts a new one without giving its slot back in
    between (another worker could take it and the host would run two)."""
    from glimpser.sources import browser_pool

    on_browser_thread(website.close_browser)
    browser_pool.configure(redis_client, 1)
    try:
        pool = browser_pool.current()
        shoot(ctx, site.url("/plain"))
        assert pool.held
        os.kill(on_browser_thread(browser_pid), signal.SIGKILL)
        released: list[bool] = []
        real_release = pool.release
        pool.release = lambda: (released.append(True), real_release())[1]  # type: ignore[method-assign]
        frame = shoot(ctx, site.url("/plain"))
        assert_colour(frame, (10, 10), GREEN)
        assert released == [] and pool.held
        assert browser_pool.holders(redis_client, pool.node) == [pool.holder]
    finally:
        on_browser_thread(website.close_browser)
        browser_pool.configure(None, 0)
