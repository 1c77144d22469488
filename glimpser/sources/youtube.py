"""Any page yt-dlp understands (live or recorded): yt-dlp finds the media URL, ffmpeg the frame.

Resolving a page is the slow part (seconds, several requests), so the media URL is cached
per (page URL, quality) until it expires or a grab with it fails; then it is resolved again.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yt_dlp
from yt_dlp.utils import YoutubeDLError

from glimpser.logs import redact
from glimpser.sources.base import CaptureContext, CaptureError, Frame
from glimpser.sources.ffmpeg_grab import FAST_PROBE
from glimpser.sources.network_guard import GuardError, check_url, guard_proxy
from glimpser.sources.schemas import VideoConfig, YoutubeConfig
from glimpser.sources.video import NETWORK_WHITELIST, guarded_grab

log = logging.getLogger(__name__)

PAGE_SCHEMES = YoutubeConfig.URL_SCHEMES
MEDIA_SCHEMES = VideoConfig.URL_SCHEMES

DEFAULT_TTL = 20 * 60  # media URLs without an expiry of their own
LIVE_TTL = 5 * 60  # live manifests can change under the same page
EXPIRY_MARGIN = 60  # stop using a signed URL this long before it says it expires

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CAUSED_BY = re.compile(r"\s*\(caused by .*\)$")
_REPORT_BUG = re.compile(r";? *please report this issue on .*$", re.I)
_PATH_EXPIRE = re.compile(r"/expire/(\d{9,11})(?:/|$)")


def format_selector(quality: str) -> str:
    """yt-dlp's format string for a quality: one video-bearing format, never a merge."""
    if quality == "best":
        return "bestvideo/best"
    if quality == "worst":
        return "worstvideo/worst"
    height = int(quality)
    # Largest up to N; if every known height is above N, the smallest of those; if heights
    # are unknown (plain files, generic pages), simply the best.
    return (
        f"bestvideo[height<={height}]/best[height<={height}]"
        f"/worstvideo[height>{height}]/worst[height>{height}]/bestvideo/best"
    )


def ytdlp_options(config: YoutubeConfig, proxy: str | None = None) -> dict[str, Any]:
    """Resolve only: no download, no playlist walk, no cache files, nothing on stderr.
    `proxy`: the SSRF guard's proxy, through which yt-dlp makes every request (redirects too)."""
    options: dict[str, Any] = {
        "format": format_selector(config.quality),
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "playlist_items": "1",
        "skip_download": True,
        "cachedir": False,
        "socket_timeout": config.timeout,
        "logger": _YtdlpLog(),
    }
    if proxy:
        options["proxy"] = proxy
    return options


class _YtdlpLog:
    """yt-dlp's chatter goes to our debug log; its errors reach us as exceptions."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", redact(msg))

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", redact(msg))

    def warning(self, msg: str) -> None:
        log.debug("yt-dlp: %s", redact(msg))

    def error(self, msg: str) -> None:
        log.debug("yt-dlp: %s", redact(msg))


def ytdlp_message(exc: BaseException) -> str:
    """yt-dlp's error as one clean line: no colour codes, no "ERROR:", no bug-report plea."""
    text = _ANSI.sub("", str(exc)).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = line.removeprefix("ERROR:").strip()
    line = _REPORT_BUG.sub("", _CAUSED_BY.sub("", line)).strip()
    return redact(line, 500) or exc.__class__.__name__


@dataclass(frozen=True)
class Media:
    """A resolved media URL and what ffmpeg needs to open it."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    is_live: bool = False
    duration: float | None = None


def pick_media(info: dict[str, Any]) -> Media:
    """The video-bearing format yt-dlp selected, from extract_info's result."""
    if info.get("_type") in ("playlist", "multi_video"):
        entries = [e for e in info.get("entries") or [] if e]
        if not entries:
            raise CaptureError("no video found on the page")
        info = entries[0]
    chosen: dict[str, Any] = info
    if not info.get("url") and info.get("requested_formats"):
        videos = [f for f in info["requested_formats"] if f.get("vcodec") != "none"]
        chosen = videos[0] if videos else {}
    if not chosen.get("url"):
        raise CaptureError("no video found on the page")
    if chosen.get("vcodec") == "none":
        raise CaptureError("the page has only audio, no video")
    headers = {str(k): str(v) for k, v in (chosen.get("http_headers") or {}).items()}
    duration = info.get("duration")
    return Media(
        url=chosen["url"],
        headers=headers,
        is_live=bool(info.get("is_live")),
        duration=float(duration) if duration else None,
    )


def resolve(config: YoutubeConfig, ctx: CaptureContext) -> Media:
    """Ask yt-dlp for the page's media URL (network, seconds); errors become CaptureError.
    Every request yt-dlp makes (each redirect hop included) goes through the SSRF guard."""
    with guard_proxy(ctx) as proxy:
        try:
            with yt_dlp.YoutubeDL(ytdlp_options(config, proxy.url)) as ydl:
                info = ydl.extract_info(config.url, download=False)
        except YoutubeDLError as exc:
            if proxy.refusals:
                raise GuardError(proxy.refusals[0]) from None
            raise CaptureError(_resolve_error(exc)) from None
    if not info:
        raise CaptureError("no video found on the page")
    return pick_media(info)


def _resolve_error(exc: YoutubeDLError) -> str:
    message = ytdlp_message(exc)
    if message.startswith("Unsupported URL"):
        return "no video found on the page (yt-dlp: Unsupported URL)"
    if message.startswith("Requested format is not available"):
        return "the page has no video format yt-dlp can select"
    return message


def url_expiry(url: str) -> float | None:
    """When a signed media URL stops working (googlevideo's expire=, in query or path)."""
    parts = urlsplit(url)
    values = parse_qs(parts.query).get("expire") or []
    match = _PATH_EXPIRE.search(parts.path)
    raw = values[0] if values else (match.group(1) if match else "")
    return float(raw) if raw.isascii() and raw.isdigit() else None


class MediaUrlCache:
    """Resolved media URLs per (page URL, quality), in this process, until they expire."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        default_ttl: float = DEFAULT_TTL,
        live_ttl: float = LIVE_TTL,
        margin: float = EXPIRY_MARGIN,
    ) -> None:
        self.clock = clock
        self.default_ttl = default_ttl
        self.live_ttl = live_ttl
        self.margin = margin
        self._entries: dict[tuple[str, str], tuple[Media, float]] = {}
        self._lock = threading.Lock()

    def expires_at(self, media: Media) -> float:
        """The URL's own expiry (less a margin) if it has one, else a TTL from now."""
        expiry = url_expiry(media.url)
        if expiry is not None:
            return expiry - self.margin
        return self.clock() + (self.live_ttl if media.is_live else self.default_ttl)

    def get(self, key: tuple[str, str]) -> Media | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self.clock() >= entry[1]:
                del self._entries[key]
                return None
            return entry[0]

    def put(self, key: tuple[str, str], media: Media) -> None:
        expires = self.expires_at(media)
        with self._lock:
            now = self.clock()
            # Drop stale entries so streams that were deleted do not pile up.
            for stale in [k for k, (_, exp) in self._entries.items() if exp <= now]:
                del self._entries[stale]
            if expires > now:
                self._entries[key] = (media, expires)

    def invalidate(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


CACHE = MediaUrlCache()


def _header_block(headers: dict[str, str]) -> str:
    """ffmpeg's `headers` option: CRLF-terminated lines, nothing that could split a line."""
    lines = []
    for name, value in headers.items():
        name, value = re.sub(r"[\r\n:]", "", name), re.sub(r"[\r\n]", " ", value)
        if name:
            lines.append(f"{name}: {value}\r\n")
    return "".join(lines)


def _short(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


def grab(media: Media, config: YoutubeConfig, ctx: CaptureContext, timeout: float) -> Frame:
    """One frame from the media URL with ffmpeg (seek only into recorded video), every host
    ffmpeg reaches checked by the SSRF guard (video.guarded_grab)."""
    seek = 0.0 if media.is_live else config.seek
    if seek and media.duration and seek >= media.duration:
        raise CaptureError(f"seek {seek:g} s is past the end of the video ({media.duration:g} s)")
    args: dict[str, object] = {
        **FAST_PROBE,
        "protocol_whitelist": NETWORK_WHITELIST,
        "rw_timeout": int(timeout * 1_000_000),
    }
    if media.headers:
        args["headers"] = _header_block(media.headers)
    try:
        return guarded_grab(media.url, args, ctx, MEDIA_SCHEMES, timeout=timeout, seek=seek)
    except CaptureError as exc:
        # Signed media URLs are long and say nothing to a user; the host is enough.
        raise CaptureError(str(exc).replace(media.url, _short(media.url))) from None


def capture(config: YoutubeConfig, ctx: CaptureContext) -> Frame:
    """Resolve (or reuse) the media URL, grab a frame; a failing cached URL is resolved anew."""
    deadline = time.monotonic() + config.timeout
    check_url(config.url, ctx, PAGE_SCHEMES)  # before yt-dlp sends anything
    key = (config.url, config.quality)
    media = CACHE.get(key)
    cached = media is not None
    if media is None:
        media = resolve(config, ctx)
        CACHE.put(key, media)
    try:
        return grab(media, config, ctx, _remaining(deadline, config))
    except CaptureError:
        CACHE.invalidate(key)
        if not cached:
            raise
    _remaining(deadline, config)  # no time left: say so rather than resolve for nothing
    log.info("cached media URL failed; resolving the page again")
    media = resolve(config, ctx)
    CACHE.put(key, media)
    return grab(media, config, ctx, _remaining(deadline, config))


def _remaining(deadline: float, config: YoutubeConfig) -> float:
    left = deadline - time.monotonic()
    if left < 0.5:
        raise CaptureError(f"no frame within {config.timeout:g} s (timed out)")
    return left
