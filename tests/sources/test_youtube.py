"""The youtube kind against real yt-dlp, ffmpeg and a loopback web server (no mocks).

yt-dlp's generic extractor resolves a plain page with <video src=…>, an .mp4 URL and an HLS
playlist, so the whole path (resolve, cache, grab, re-resolve) runs offline.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yt_dlp
from PIL import Image, ImageChops, ImageStat

from glimpser.sources import youtube
from glimpser.sources.base import CaptureContext, CaptureError, Frame
from glimpser.sources.schemas import YoutubeConfig
from glimpser.sources.youtube import (
    Media,
    MediaUrlCache,
    format_selector,
    pick_media,
    url_expiry,
    ytdlp_message,
    ytdlp_options,
)

# --- fixtures -------------------------------------------------------------------------------


@dataclass
class Hit:
    method: str
    path: str  # as requested, query included
    status: int
    headers: dict[str, str]


@dataclass
class Site:
    """A folder served on loopback, with every request it answered."""

    root: Path
    base: str
    hits: list[Hit] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def count(self, path: str, status: int | None = None) -> int:
        return sum(
            1 for h in self.hits if h.path == f"/{path}" and (status is None or h.status == status)
        )

    def last(self, path: str) -> Hit:
        return [h for h in self.hits if h.path == f"/{path}"][-1]


class _Handler(SimpleHTTPRequestHandler):
    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        self.server.hits.append(  # type: ignore[attr-defined]
            Hit(self.command, self.path, int(code), dict(self.headers))
        )

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=60
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("youtube-site")
    # testsrc's counter and moving gradient make frames at different times differ.
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=10",
        "-t",
        "6",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "10",
        "-movflags",
        "+faststart",
        str(root / "test.mp4"),
    )
    (root / "hls").mkdir()
    _ffmpeg(
        "-i",
        str(root / "test.mp4"),
        "-c",
        "copy",
        "-f",
        "hls",
        "-hls_time",
        "1",
        "-hls_playlist_type",
        "vod",
        str(root / "hls" / "index.m3u8"),
    )
    (root / "page.html").write_text("<html><body><video src=test.mp4></video></body></html>")
    (root / "empty.html").write_text("<html><body><p>Nothing to watch here.</p></body></html>")

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    result = Site(root=root, base=f"http://127.0.0.1:{server.server_address[1]}")
    server.hits = result.hits  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield result
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    youtube.CACHE.clear()
    yield
    youtube.CACHE.clear()


def _ctx(tmp: Path, **overrides: Any) -> CaptureContext:
    values: dict[str, Any] = {
        "max_jpeg_bytes": 2_000_000,
        "allow_loopback": True,
        "deny_cidrs": (),
        "media_dir": tmp,
        "chromium": "",
    }
    return CaptureContext(**{**values, **overrides})


def _config(url: str, **fields: Any) -> YoutubeConfig:
    return YoutubeConfig(url=url, timeout=15, **fields)


def _image(frame: Frame) -> Image.Image:
    image = Image.open(io.BytesIO(frame.jpeg))
    image.load()
    return image


def _write_page(site: Site, name: str, video: str) -> None:
    (site.root / name).write_text(f"<html><body><video src={video}></video></body></html>")


# --- format selection (real yt-dlp, synthetic formats, no network) --------------------------


def test_format_selector_strings() -> None:
    assert format_selector("best") == "bestvideo/best"
    assert format_selector("worst") == "worstvideo/worst"
    assert format_selector("720") == (
        "bestvideo[height<=720]/best[height<=720]"
        "/worstvideo[height>720]/worst[height>720]/bestvideo/best"
    )
    assert format_selector("360").startswith("bestvideo[height<=360]/")


def _fmt(
    fid: str, height: int | None, vcodec: str | None, acodec: str | None, **extra: Any
) -> dict[str, Any]:
    return {
        "format_id": fid,
        "url": f"https://media.invalid/{fid}",
        "ext": "mp4",
        "protocol": "https",
        "height": height,
        "vcodec": vcodec,
        "acodec": acodec,
        **extra,
    }


SPLIT = [
    _fmt("v1080", 1080, "avc1", "none"),
    _fmt("v720", 720, "avc1", "none"),
    _fmt("v360", 360, "avc1", "none"),
    _fmt("audio", None, "none", "mp4a"),
]
MUXED = [_fmt("m720", 720, "avc1", "mp4a"), _fmt("m360", 360, "avc1", "mp4a")]
UNKNOWN = [_fmt("a", None, None, None), _fmt("b", None, None, None)]
TALL = [
    _fmt("v1440", 1440, "avc1", "none"),
    _fmt("v1080", 1080, "avc1", "none"),
    _fmt("audio", None, "none", "mp4a"),
]


def _select(quality: str, formats: list[dict[str, Any]], **info: Any) -> Media:
    """Run yt-dlp's own format selection with our options, then pick_media."""
    config = YoutubeConfig(url="https://example.invalid/watch", quality=quality)
    entry = {
        "id": "x",
        "title": "x",
        "formats": formats,
        "extractor": "test",
        "extractor_key": "Test",
        "webpage_url": config.url,
        **info,
    }
    with yt_dlp.YoutubeDL(ytdlp_options(config)) as ydl:
        result = ydl.process_ie_result(entry, download=False)
    return pick_media(result)


@pytest.mark.parametrize(
    ("quality", "formats", "expected"),
    [
        ("best", SPLIT, "v1080"),  # a video-only format, never the audio track
        ("worst", SPLIT, "v360"),
        ("720", SPLIT, "v720"),
        ("480", SPLIT, "v360"),
        ("1080", MUXED, "m720"),
        ("360", MUXED, "m360"),
        ("720", TALL, "v1080"),  # everything is taller: the smallest of it
        ("720", UNKNOWN, None),  # heights unknown: still a format, not an error
        ("best", UNKNOWN, None),
    ],
)
def test_format_selection_picks_a_video_format(
    quality: str, formats: list[dict[str, Any]], expected: str | None
) -> None:
    media = _select(quality, formats)
    if expected is None:
        assert media.url.startswith("https://media.invalid/")
    else:
        assert media.url == f"https://media.invalid/{expected}"


def test_pick_media_carries_headers_live_and_duration() -> None:
    formats = [
        _fmt(
            "v720",
            720,
            "avc1",
            "none",
            http_headers={"User-Agent": "UA/1", "Referer": "https://example.invalid/"},
        )
    ]
    media = _select("720", formats, is_live=True, duration=12.5)
    assert media.headers["User-Agent"] == "UA/1"  # yt-dlp adds its standard headers too
    assert media.headers["Referer"] == "https://example.invalid/"
    assert media.is_live is True
    assert media.duration == 12.5
    assert _select("720", SPLIT[:1]).is_live is False


def test_audio_only_page_is_a_clear_error() -> None:
    with pytest.raises(CaptureError, match="only audio"):
        _select("best", [_fmt("audio", None, "none", "mp4a")])


def test_pick_media_without_entries_is_no_video() -> None:
    with pytest.raises(CaptureError, match="no video found"):
        pick_media({"_type": "playlist", "entries": []})


def test_ytdlp_message_is_one_clean_line() -> None:
    exc = yt_dlp.utils.DownloadError(
        "\x1b[0;31mERROR:\x1b[0m [generic] nope: Unable to download webpage: HTTP Error 404: "
        "Not Found (caused by <HTTPError 404: Not Found>)\nsecond line"
    )
    assert (
        ytdlp_message(exc)
        == "[generic] nope: Unable to download webpage: HTTP Error 404: Not Found"
    )
    plea = yt_dlp.utils.DownloadError(
        "ERROR: [x] 1: boom; please report this issue on  https://github.com/yt-dlp/yt-dlp/issues"
    )
    assert ytdlp_message(plea) == "[x] 1: boom"


# --- the cache (injected clock) -------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_url_expiry_from_query_or_path() -> None:
    assert (
        url_expiry("https://r1.googlevideo.com/videoplayback?expire=1700000000&sig=a")
        == 1_700_000_000
    )
    assert (
        url_expiry(
            "https://manifest.googlevideo.com/api/manifest/hls_playlist/expire/"
            "1700000000/ei/abc/index.m3u8"
        )
        == 1_700_000_000
    )
    assert url_expiry("https://example.com/video.mp4") is None
    assert url_expiry("https://example.com/v.mp4?expire=soon") is None


def test_cache_default_and_live_ttl() -> None:
    clock = Clock()
    cache = MediaUrlCache(clock=clock, default_ttl=1200, live_ttl=300)
    cache.put(("page", "720"), Media("https://example.com/a.mp4"))
    cache.put(("live", "720"), Media("https://example.com/live.m3u8", is_live=True))
    clock.now += 299
    assert cache.get(("live", "720")) is not None
    clock.now += 1
    assert cache.get(("live", "720")) is None
    assert cache.get(("page", "720")) == Media("https://example.com/a.mp4")
    assert cache.get(("page", "best")) is None  # quality is part of the key
    clock.now += 900
    assert cache.get(("page", "720")) is None


def test_cache_honours_the_urls_own_expiry() -> None:
    clock = Clock(now=1_000_000)
    cache = MediaUrlCache(clock=clock, default_ttl=1200, margin=60)
    cache.put(("p", "best"), Media("https://r1.googlevideo.com/videoplayback?expire=1005000"))
    clock.now = 1_004_939
    assert cache.get(("p", "best")) is not None  # well past the default TTL
    clock.now = 1_004_940
    assert cache.get(("p", "best")) is None
    cache.put(("p", "best"), Media("https://r1.googlevideo.com/videoplayback?expire=1000000"))
    assert cache.get(("p", "best")) is None  # already (nearly) expired: not stored


def test_cache_invalidate_clear_and_purge() -> None:
    clock = Clock()
    cache = MediaUrlCache(clock=clock, default_ttl=10)
    cache.put(("a", "720"), Media("https://example.com/a"))
    cache.put(("b", "720"), Media("https://example.com/b"))
    cache.invalidate(("a", "720"))
    assert cache.get(("a", "720")) is None and len(cache) == 1
    clock.now += 11
    cache.put(("c", "720"), Media("https://example.com/c"))
    assert len(cache) == 1  # the stale entry went on put
    cache.clear()
    assert len(cache) == 0


# --- end to end: yt-dlp + ffmpeg + loopback server ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("path", ["page.html", "test.mp4", "hls/index.m3u8"])
def test_capture_real_jpeg(site: Site, tmp_path: Path, path: str) -> None:
    frame = youtube.capture(_config(site.url(path)), _ctx(tmp_path))
    image = _image(frame)
    assert image.format == "JPEG"
    assert image.size == (320, 240) == (frame.width, frame.height)
    assert frame.content_type == "image/jpeg"


@pytest.mark.slow
def test_hls_segments_are_fetched(site: Site, tmp_path: Path) -> None:
    before = site.count("hls/index0.ts", 200)
    youtube.capture(_config(site.url("hls/index.m3u8")), _ctx(tmp_path))
    assert site.count("hls/index0.ts", 200) > before


@pytest.mark.slow
def test_ffmpeg_sends_ytdlp_headers(site: Site, tmp_path: Path) -> None:
    youtube.capture(_config(site.url("page.html")), _ctx(tmp_path))
    hit = site.last("test.mp4")
    assert hit.headers.get("Referer") == site.url("page.html")
    assert "Lavf" not in hit.headers.get("User-Agent", "")  # yt-dlp's, not ffmpeg's own


@pytest.mark.slow
def test_seek_takes_a_later_frame(site: Site, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    start = _image(youtube.capture(_config(site.url("page.html")), ctx)).convert("L")
    again = _image(youtube.capture(_config(site.url("page.html")), ctx)).convert("L")
    later = _image(youtube.capture(_config(site.url("page.html"), seek=4), ctx)).convert("L")
    assert ImageStat.Stat(ImageChops.difference(start, again)).mean[0] < 1
    assert ImageStat.Stat(ImageChops.difference(start, later)).mean[0] > 5


@pytest.mark.slow
def test_second_capture_uses_the_cached_media_url(site: Site, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    pages, videos = site.count("page.html"), site.count("test.mp4")
    youtube.capture(_config(site.url("page.html")), ctx)
    youtube.capture(_config(site.url("page.html")), ctx)
    assert site.count("page.html") == pages + 1
    assert site.count("test.mp4") >= videos + 2
    youtube.capture(_config(site.url("page.html"), quality="best"), ctx)  # another key
    assert site.count("page.html") == pages + 2


@pytest.mark.slow
def test_failing_cached_url_is_resolved_again(site: Site, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    config = _config(site.url("moving.html"))
    shutil.copy(site.root / "test.mp4", site.root / "first.mp4")
    _write_page(site, "moving.html", "first.mp4")
    youtube.capture(config, ctx)
    assert youtube.CACHE.get((config.url, config.quality)).url == site.url("first.mp4")

    # The site moves its video: the cached URL now 404s, the page points elsewhere.
    (site.root / "first.mp4").rename(site.root / "second.mp4")
    _write_page(site, "moving.html", "second.mp4")
    frame = youtube.capture(config, ctx)
    assert frame.width == 320
    assert site.count("first.mp4", 404) == 1
    assert site.count("moving.html") == 2
    assert site.count("second.mp4", 200) >= 1
    assert youtube.CACHE.get((config.url, config.quality)).url == site.url("second.mp4")

    # Then the page itself goes away: one re-resolve, and yt-dlp's error, cleanly.
    (site.root / "second.mp4").unlink()
    (site.root / "moving.html").unlink()
    with pytest.raises(CaptureError) as err:
        youtube.capture(config, ctx)
    assert "HTTP Error 404" in str(err.value)
    assert not str(err.value).startswith("ERROR")
    assert site.count("moving.html") == 3
    assert youtube.CACHE.get((config.url, config.quality)) is None


@pytest.mark.slow
def test_freshly_resolved_url_failing_is_not_retried(site: Site, tmp_path: Path) -> None:
    _write_page(site, "broken.html", "missing.mp4")
    config = _config(site.url("broken.html"))
    with pytest.raises(CaptureError, match="404"):
        youtube.capture(config, _ctx(tmp_path))
    assert site.count("broken.html") == 1
    assert youtube.CACHE.get((config.url, config.quality)) is None


@pytest.mark.slow
def test_missing_page_is_a_capture_error(site: Site, tmp_path: Path) -> None:
    with pytest.raises(CaptureError) as err:
        youtube.capture(_config(site.url("nope.html")), _ctx(tmp_path))
    message = str(err.value)
    assert "HTTP Error 404" in message
    assert "ERROR" not in message and "\x1b" not in message and "\n" not in message


@pytest.mark.slow
def test_page_without_video_is_a_capture_error(site: Site, tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no video found on the page"):
        youtube.capture(_config(site.url("empty.html")), _ctx(tmp_path))


def test_loopback_refused_before_ytdlp(site: Site, tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="loopback"):
        youtube.capture(
            _config(site.url("page.html?refused")), _ctx(tmp_path, allow_loopback=False)
        )
    assert site.count("page.html?refused") == 0


@pytest.mark.slow
def test_media_url_checked_before_ffmpeg(site: Site, tmp_path: Path) -> None:
    _write_page(site, "elsewhere.html", "http://127.0.0.2:9/test.mp4")
    with pytest.raises(CaptureError, match=r"127\.0\.0\.2.*denied network"):
        youtube.capture(
            _config(site.url("elsewhere.html")), _ctx(tmp_path, deny_cidrs=("127.0.0.2/32",))
        )
    assert site.count("elsewhere.html") == 1  # yt-dlp read the page; ffmpeg never started


@pytest.mark.slow
def test_live_ignores_seek_and_vod_seek_stops_at_the_end(site: Site, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    url = site.url("test.mp4")
    start = _image(youtube.grab(Media(url), _config(url), ctx, timeout=15))
    live = _image(youtube.grab(Media(url, is_live=True), _config(url, seek=4), ctx, timeout=15))
    assert ImageStat.Stat(ImageChops.difference(start.convert("L"), live.convert("L"))).mean[0] < 1
    with pytest.raises(CaptureError, match="past the end of the video"):
        youtube.grab(Media(url, duration=6.0), _config(url, seek=10), ctx, timeout=15)
