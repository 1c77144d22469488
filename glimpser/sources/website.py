"""Web pages and dashboards, captured by headless Chromium driven by Playwright.

A worker process keeps one browser: launched on first use, launched again if it crashed,
closed at exit. Every capture gets a fresh browser context (no cookies, cache or storage
carried over from another stream) that is closed when the capture ends.

With `extract_text` on, the page's (or the cropped element's) innerText goes with the picture
(Frame.text, bounded). A test capture may also ask for the page's visible elements, their boxes
on the picture and a unique CSS selector for each (Frame.elements): the stream form's element
picker (static/picker.js) maps a click on the test picture to the smallest box under it.

Playwright's sync API is bound to the thread that started it: call capture() from one thread.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Request,
    Route,
    WebSocketRoute,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from glimpser.logs import redact
from glimpser.media.imaging import to_jpeg
from glimpser.sources import browser_pool
from glimpser.sources.base import CaptureContext, CaptureError, Frame
from glimpser.sources.network_guard import address_problem, check_url, resolve
from glimpser.sources.schemas import TEXT_MAX_CHARS, WebsiteConfig

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Besides http(s), a page may use inline data: and in-page blob: URLs, which never leave Chromium.
_LOCAL_SCHEMES = ("data", "blob")
_SOCKET_SCHEMES = ("ws", "wss")  # WebSockets: checked like http(s), through their own route
_JPEG_QUALITY = 85
# Hides with an inline !important style: page CSP rules cannot block this, unlike a <style> tag.
_HIDE = "els => els.forEach(el => el.style.setProperty('visibility', 'hidden', 'important'))"
# How long a crop selector may take to match before the capture says it matched nothing: a page
# that draws the element later should wait for it ("Wait for: selector") instead.
SELECTOR_WAIT_SECONDS = 3.0
# The picker gets at most this many elements (the first ones in document order).
MAX_ELEMENTS = 2000
_TEXT = f"el => (el.innerText || el.textContent || '').slice(0, {TEXT_MAX_CHARS})"
# The visible elements inside the screenshot's area (document coordinates {x, y, w, h}; null:
# the viewport), each as [unique CSS selector, x, y, w, h] relative to that area.
_ELEMENTS = """([area, max]) => {
  const sx = window.scrollX, sy = window.scrollY;
  const box = area || {x: sx, y: sy, w: window.innerWidth, h: window.innerHeight};
  const ids = new Map();
  for (const el of document.querySelectorAll('[id]')) ids.set(el.id, (ids.get(el.id) || 0) + 1);
  const unique = el => el.id && ids.get(el.id) === 1;
  const selector = el => {
    const parts = [];
    for (let node = el; node && node !== document.documentElement; node = node.parentElement) {
      if (unique(node)) { parts.unshift('#' + CSS.escape(node.id)); break; }
      let part = node.localName;
      const parent = node.parentElement;
      if (parent && node.localName !== 'body') {
        const same = Array.from(parent.children).filter(c => c.localName === node.localName);
        if (same.length > 1) part += ':nth-of-type(' + (same.indexOf(node) + 1) + ')';
      }
      parts.unshift(part);
    }
    return parts.join(' > ');
  };
  const skip = new Set(['script', 'style', 'link', 'meta', 'noscript', 'template', 'br']);
  const items = [];
  for (const el of document.body ? document.body.querySelectorAll('*') : []) {
    if (items.length >= max) break;
    if (skip.has(el.localName)) continue;
    const r = el.getBoundingClientRect();
    if (r.width < 4 || r.height < 4) continue;
    const x = Math.max(r.left + sx, box.x), y = Math.max(r.top + sy, box.y);
    const right = Math.min(r.right + sx, box.x + box.w);
    const bottom = Math.min(r.bottom + sy, box.y + box.h);
    if (right - x < 2 || bottom - y < 2) continue;
    if (getComputedStyle(el).visibility === 'hidden') continue;
    items.push([selector(el), Math.round(x - box.x), Math.round(y - box.y),
                Math.round(right - x), Math.round(bottom - y)]);
  }
  return {width: Math.round(box.w), height: Math.round(box.h), items: items};
}"""

log = logging.getLogger(__name__)

_playwright: Playwright | None = None
_browser: Browser | None = None
_owner_pid = 0  # the process that started _playwright; a forked child must start its own


def capture(config: WebsiteConfig, ctx: CaptureContext, *, elements: bool = False) -> Frame:
    """Screenshot the page (or one element of it) as a JPEG, within config.timeout; with its
    text when the stream keeps it, and its visible elements when `elements` (test captures)."""
    check_url(config.url, ctx, WebsiteConfig.URL_SCHEMES)
    _take_slot()  # before the capture's own time budget starts: waiting is not loading
    try:
        return _capture(config, ctx, elements)
    finally:
        _yield_slot()


def _capture(config: WebsiteConfig, ctx: CaptureContext, elements: bool) -> Frame:
    deadline = _Deadline(config.timeout)
    password = config.secret("password")
    guard = _RequestGuard(ctx)
    context = _new_context(config, ctx, deadline)
    try:
        context.route("**/*", guard.route)
        context.route_web_socket(re.compile(".*"), guard.route_web_socket)
        context.on("request", guard.note_redirect)
        try:
            shot = _screenshot(context.new_page(), config, deadline, password, elements)
        except (CaptureError, PlaywrightError) as exc:
            raise CaptureError(guard.refusal or _message(exc, password)) from None
        if guard.refusal:  # a redirect reached a refused address: show nothing of it
            raise CaptureError(guard.refusal)
    finally:
        with contextlib.suppress(PlaywrightError):  # already gone if Chromium crashed
            context.close()
    frame = to_jpeg(shot.jpeg, ctx.max_jpeg_bytes)
    return replace(frame, text=shot.text, elements=shot.elements)


@dataclass
class _Shot:
    jpeg: bytes
    text: str | None = None
    elements: dict[str, Any] | None = None


def _take_slot() -> None:
    """With GLIMPSER_BROWSER_MAX_PER_HOST set: hold one of this host's Chromium slots before
    a browser runs, waiting for one if they are all taken (glimpser.sources.browser_pool)."""
    pool = browser_pool.current()
    if pool is None or pool.held:
        return
    if _browser is not None:  # the slot lapsed while Chromium ran (Redis was away): restart
        close_browser()
    try:
        pool.acquire()
    except browser_pool.NoSlot as exc:
        raise CaptureError(str(exc)) from None
    except redis.RedisError as exc:
        raise CaptureError(f"cannot take a Chromium slot (Redis: {exc})") from None


def _yield_slot() -> None:
    """After a capture: close Chromium and free the slot when another worker of this host
    waits for one; keep both otherwise (the next capture starts faster)."""
    pool = browser_pool.current()
    if pool is None or not pool.held:
        return
    try:
        waiting = pool.others_waiting()
    except redis.RedisError:
        waiting = 1  # cannot tell: let the slot go rather than starve a waiting worker
    if waiting or _browser is None:
        close_browser()


@atexit.register
def close_browser() -> None:
    """Close Chromium and the Playwright driver, so a worker leaves no browser behind, and
    give its Chromium slot back (when the host has a cap) once Chromium has really exited."""
    _close_chromium()
    pool = browser_pool.current()
    if pool is not None:
        pool.release()


def _close_chromium() -> None:
    """Close Chromium and the Playwright driver, keeping the slot (a capture that restarts a
    crashed Chromium still holds it). Returns once the browser process is gone: closing it may
    fail or return early, and a slot given back before then would let another worker of this
    host start a second Chromium beside it (GLIMPSER_BROWSER_MAX_PER_HOST)."""
    global _playwright, _browser
    running: list[int] = []
    if _owner_pid == os.getpid():
        running = _browser_pids()
        # Best effort: at exit the driver may already be gone, or we are on another thread.
        with contextlib.suppress(Exception):
            if _browser is not None:
                _browser.close()
        with contextlib.suppress(Exception):
            if _playwright is not None:
                _playwright.stop()
    _playwright = _browser = None
    if not _wait_gone(running):
        log.warning("Chromium still ran after it was closed: killed", extra={"pids": running})
        for pid in running:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(running)


# How long a closed Chromium may take to exit before it is killed.
EXIT_GRACE_SECONDS = 10.0


def _browser_pids() -> list[int]:
    """The Chromium browser processes below this one: Playwright starts each with
    --remote-debugging-pipe; its helpers (renderer, GPU, zygote) carry --type=."""
    found, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError):
                todo += [
                    int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                ]
        if pid != os.getpid():
            with contextlib.suppress(OSError):
                line = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"--remote-debugging-pipe" in line and b"--type=" not in line:
                    found.append(pid)
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: list[int], grace: float = EXIT_GRACE_SECONDS) -> bool:
    """Wait up to `grace` seconds for these processes to exit; False if one still runs."""
    deadline = time.monotonic() + grace
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _new_context(config: WebsiteConfig, ctx: CaptureContext, deadline: _Deadline) -> BrowserContext:
    """A fresh context in the worker's browser, launching it again if it has died."""
    options = _context_options(config)
    try:
        return _launched_browser(ctx.chromium, deadline).new_context(**options)
    except PlaywrightError:
        _close_chromium()  # Chromium died since the last capture, before Playwright noticed
    try:
        return _launched_browser(ctx.chromium, deadline).new_context(**options)
    except PlaywrightError as exc:
        raise CaptureError(f"Chromium failed: {_first_line(exc)}") from None


def _launched_browser(executable: str, deadline: _Deadline) -> Browser:
    """The worker's one Chromium: reused while it is connected, launched again otherwise."""
    global _playwright, _browser, _owner_pid
    if not Path(executable).is_file():
        raise CaptureError(f"Chromium not found at {executable} (set GLIMPSER_CHROMIUM)")
    if _owner_pid != os.getpid():  # inherited through fork: the driver belongs to the parent
        _playwright = _browser = None
        _owner_pid = os.getpid()
    if _browser is not None and _browser.is_connected():
        return _browser
    try:
        if _playwright is None:
            _playwright = sync_playwright().start()
        _browser = _playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True, timeout=deadline.ms()
        )
    except PlaywrightError as exc:
        _close_chromium()  # start from scratch next time, the driver may be broken
        raise CaptureError(f"cannot start Chromium: {_first_line(exc)}") from None
    return _browser


def _context_options(config: WebsiteConfig) -> dict[str, Any]:
    """Browser context options: the viewport, colour scheme and credentials the stream asks for."""
    options: dict[str, Any] = {
        "viewport": {"width": config.viewport_width, "height": config.viewport_height},
        "color_scheme": "dark" if config.dark_mode else "light",
        # Requests a service worker makes would bypass the request guard.
        "service_workers": "block",
    }
    if config.username:
        options["http_credentials"] = {
            "username": config.username,
            "password": config.secret("password"),
            "origin": _origin(config.url),  # never answer another site's 401 with them
        }
    return options


def _screenshot(
    page: Page, config: WebsiteConfig, deadline: _Deadline, password: str, elements: bool
) -> _Shot:
    """Load the page, wait until it is ready, hide what should not show, take the picture
    (and the text and elements asked for)."""
    until = "networkidle" if config.wait == "networkidle" else "load"
    try:
        response = page.goto(config.url, wait_until=until, timeout=deadline.ms())
    except PlaywrightError as exc:
        if "ERR_INVALID_AUTH_CREDENTIALS" in exc.message:  # Chromium gave up on a 401
            raise CaptureError(_http_error(401, config.url, config)) from None
        raise CaptureError(f"{config.url} did not load: {_message(exc, password)}") from None
    if response is not None and response.status >= 400:
        raise CaptureError(_http_error(response.status, response.url, config))
    if config.wait == "selector":
        with _step(f"{config.wait_selector!r} did not appear", password):
            page.wait_for_selector(config.wait_selector, timeout=deadline.ms())
    if config.wait_delay > 0:
        if config.wait_delay * 1000 >= deadline.ms():
            raise CaptureError(
                f"the extra delay of {config.wait_delay:g} s leaves no time "
                f"for the screenshot within the {config.timeout} s timeout"
            )
        page.wait_for_timeout(config.wait_delay * 1000)
    for selector in config.hide_selectors:
        with _step(f"cannot hide {selector!r}", password):
            page.locator(selector).evaluate_all(_HIDE)
    options: dict[str, Any] = {"type": "jpeg", "quality": _JPEG_QUALITY}
    if config.element_selector:
        element = _crop_element(page, config, deadline, password)
        with _step("screenshot failed", password):
            shot = _Shot(element.screenshot(**options, timeout=deadline.ms()))
        target = element
    else:
        with _step("screenshot failed", password):
            shot = _Shot(
                page.screenshot(**options, full_page=config.full_page, timeout=deadline.ms())
            )
        target = page.locator("body")
    if config.extract_text:
        with _step("cannot read the page's text", password):
            shot.text = target.evaluate(_TEXT, timeout=deadline.ms())
    if elements:
        with _step("cannot list the page's elements", password):
            shot.elements = page.evaluate(_ELEMENTS, [_area(page, config, target), MAX_ELEMENTS])
    return shot


def _crop_element(page: Page, config: WebsiteConfig, deadline: _Deadline, password: str) -> Any:
    """The element to crop to; fails within a few seconds when the selector matches nothing."""
    prefix = "xpath=" if config.selector_type == "xpath" else ""
    matches = page.locator(prefix + config.element_selector)
    wait_ms = min(int(SELECTOR_WAIT_SECONDS * 1000), deadline.ms())
    try:
        matches.first.wait_for(state="visible", timeout=wait_ms)
    except PlaywrightTimeoutError:
        with _step(f"selector {config.element_selector} cannot be used", password):
            count = matches.count()
        if count == 0:
            raise CaptureError(
                f"selector {config.element_selector} matched nothing on the page"
            ) from None
        raise CaptureError(
            f"selector {config.element_selector} matched only hidden elements"
        ) from None
    except PlaywrightError as exc:  # e.g. a selector the browser cannot parse
        raise CaptureError(
            f"selector {config.element_selector} cannot be used: {_message(exc, password)}"
        ) from None
    return matches.first


def _area(page: Page, config: WebsiteConfig, target: Any) -> dict[str, float] | None:
    """The picture's area in document coordinates (None: the viewport as it is)."""
    if config.element_selector:
        return target.evaluate(
            "el => { const r = el.getBoundingClientRect(); return {x: r.left + scrollX, "
            "y: r.top + scrollY, w: r.width, h: r.height}; }"
        )
    if config.full_page:
        return page.evaluate(
            "() => ({x: 0, y: 0, w: document.documentElement.scrollWidth, "
            "h: document.documentElement.scrollHeight})"
        )
    return None


def _http_error(status: int, url: str, config: WebsiteConfig) -> str:
    """An error page is a failed capture, not a picture of the error."""
    if status == 401:
        why = "wrong username or password" if config.username else "it needs a login"
        return f"HTTP 401 from {url} ({why})"
    return f"HTTP {status} from {url}"


class _Deadline:
    """One capture's time budget, handed to each Playwright call as the milliseconds left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def ms(self) -> int:
        left = self.end - time.monotonic()
        if left <= 0.001:
            raise CaptureError(f"timed out after {self.seconds:g} s")
        return int(left * 1000)


class _RequestGuard:
    """The SSRF policy for every request a page makes, not only for the URL it starts at."""

    def __init__(self, ctx: CaptureContext) -> None:
        self.ctx = ctx
        self.refusal: str | None = None  # set when the capture as a whole must be refused
        self._host_problems: dict[str, str | None] = {}  # one DNS lookup per host and capture

    def problem(self, url: str) -> str | None:
        """Why the page may not load this URL, or None."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in _LOCAL_SCHEMES:
            return None
        if scheme not in (*WebsiteConfig.URL_SCHEMES, *_SOCKET_SCHEMES):
            return f"scheme {scheme}:// is not allowed"
        host = parts.hostname or ""
        if host not in self._host_problems:
            self._host_problems[host] = self._host_problem(host)
        return self._host_problems[host]

    def _host_problem(self, host: str) -> str | None:
        try:
            addresses = resolve(host)
        except CaptureError as exc:
            return str(exc)
        for address in addresses:
            problem = address_problem(address, self.ctx)
            if problem:
                return f"{host} ({address}): {problem}"
        return None

    def route(self, route: Route) -> None:
        """Abort a refused request before Chromium sends it; let the others through."""
        request = route.request
        problem = self.problem(request.url)
        if problem is None:
            route.continue_()
            return
        log.info("website capture refused a request", extra={"url": request.url, "reason": problem})
        if request.is_navigation_request() and request.frame.parent_frame is None:
            self.refusal = f"refused to load {request.url}: {problem}"
        route.abort("blockedbyclient")

    def route_web_socket(self, socket: WebSocketRoute) -> None:
        """WebSockets bypass request routing: refuse them the same way, or connect them."""
        if self.problem(socket.url) is None:
            socket.connect_to_server()
        else:
            socket.close(code=1008, reason="refused by Glimpser")

    def note_redirect(self, request: Request) -> None:
        """Redirects bypass routing, so a refused target can only refuse the whole capture."""
        if request.redirected_from is not None and self.refusal is None:
            problem = self.problem(request.url)
            if problem:
                self.refusal = (
                    f"refused: {request.redirected_from.url} redirected to {request.url}: {problem}"
                )


@contextlib.contextmanager
def _step(what: str, password: str) -> Iterator[None]:
    """Turn a Playwright failure into a CaptureError that says which step failed and why."""
    try:
        yield
    except PlaywrightError as exc:
        raise CaptureError(f"{what}: {_message(exc, password)}") from None


def _message(exc: Exception, password: str) -> str:
    """An error as one safe line: no call log, no API prefix, no credentials."""
    line = _first_line(exc) if isinstance(exc, PlaywrightError) else str(exc)
    if password:
        line = line.replace(password, "***")
    return redact(line, 500)


def _first_line(exc: PlaywrightError) -> str:
    """Playwright's reason without the multi-line call log ("Page.goto: " prefix dropped)."""
    lines = (exc.message or "").strip().splitlines()
    line = lines[0].strip() if lines else exc.__class__.__name__
    return re.sub(r"^\w+\.\w+: ", "", line)


def _origin(url: str) -> str:
    """The URL's origin as browsers write it (default port omitted), e.g. http://cam.lan:8080."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return f"{parts.scheme.lower()}://{host}{port}"
