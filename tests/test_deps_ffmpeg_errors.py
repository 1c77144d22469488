"""Capture errors carry ffmpeg's meaningful line, not its closing summary.

The peer is a real loopback HTTP server that serves an MP4 but ignores Range requests (as some
camera and NAS web servers do); ffmpeg needs to jump to the index at the end of the file and
cannot.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from glimpser.sources import capture
from glimpser.sources.base import CaptureContext, CaptureError
from glimpser.sources.ffmpeg_grab import last_error_line
from glimpser.sources.schemas import parse_config
from tests.media_servers import Server

pytestmark = pytest.mark.slow  # real ffmpeg processes


class NoRangeHandler(BaseHTTPRequestHandler):
    """Always the whole file with 200, whatever Range asks for; no Accept-Ranges."""

    def __init__(self, *args: object, body: bytes, **kwargs: object) -> None:
        self.body = body
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(self.body)  # ffmpeg may hang up, as it does


@pytest.fixture(scope="module")
def no_range_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Big enough that ffmpeg cannot read past the media to the index (moov at the end).
    mp4 = tmp_path_factory.mktemp("norange") / "moov-at-end.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "testsrc=size=640x480:rate=25", "-t", "20", "-c:v", "libx264",
         "-pix_fmt", "yuv420p", "-g", "25", str(mp4)],
        check=True,
    )  # fmt: skip
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(NoRangeHandler, body=mp4.read_bytes()))
    httpd.daemon_threads = True
    server = Server(httpd)
    yield server
    server.stop()


@pytest.fixture
def ctx(tmp_path: Path) -> CaptureContext:
    return CaptureContext(
        max_jpeg_bytes=2_000_000,
        allow_loopback=True,
        deny_cidrs=(),
        media_dir=tmp_path,
        chromium="/usr/bin/chromium",
    )


def test_an_mp4_without_range_support_names_the_real_failure(no_range_server, ctx):
    url = f"{no_range_server.url}/moov-at-end.mp4"
    for _ in range(3):  # the same words every time, also on a busy machine
        with pytest.raises(CaptureError) as failed:
            capture(parse_config({"kind": "video", "url": url}), ctx)
        message = str(failed.value)
        assert "Stream ends prematurely" in message
        assert f"{url}: Input/output error" in message
        assert "Error marking filters" not in message


def test_a_seek_into_an_mp4_without_range_support_names_the_input(no_range_server, ctx):
    url = f"{no_range_server.url}/moov-at-end.mp4"
    with pytest.raises(CaptureError) as failed:
        capture(parse_config({"kind": "video", "url": url, "seek": 3}), ctx)
    assert str(failed.value) == f"{url}: Invalid data found when processing input"


def test_only_summaries_are_still_said_and_credentials_stay_masked():
    assert last_error_line(b"Error marking filters as finished\n") == (
        "Error marking filters as finished"
    )
    stderr = (
        b"[tcp @ 0x55e7978e4000] Connection to tcp://10.0.0.9:554 failed: Connection refused\n"
        b"rtsp://admin:hunter2@10.0.0.9/live: Connection refused\n"
        b"Error opening input files: Connection refused\n"
    )
    message = last_error_line(stderr)
    assert message.endswith("/live: Connection refused") and "hunter2" not in message


def test_a_huge_error_text_is_cut_before_it_is_read_and_stays_masked():
    # 5 MB of credentialed URLs on one line without spaces: ffmpeg prints what it is given.
    stderr = b"rtsp://admin:hunter2@cam/" * 200_000 + b"\nError opening input files\n"
    message = last_error_line(stderr)
    assert message.startswith("rtsp://admin:***@cam/") and "hunter2" not in message
    assert "more characters]" in message and len(message) < 600
