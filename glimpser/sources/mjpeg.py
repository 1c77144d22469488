"""MJPEG over HTTP (multipart/x-mixed-replace): the first complete JPEG part, as sent.

Read directly rather than through ffmpeg: the camera already sends JPEG, so there is no
process to start and nothing to decode or re-encode (see docs/benchmarks.md).
"""

from __future__ import annotations

import time

from glimpser.imaging import to_jpeg
from glimpser.sources.base import CaptureContext, CaptureError, Frame
from glimpser.sources.http_fetch import CHUNK, make_auth, open_stream
from glimpser.sources.schemas import MjpegConfig

SOI, EOI = b"\xff\xd8", b"\xff\xd9"
MAX_SCAN = 16 * 1024 * 1024  # give up if no whole frame arrives in this many bytes


def first_jpeg(chunks, deadline: float) -> bytes:  # noqa: ANN001 - any iterator of bytes
    """Cut the first whole JPEG out of a multipart byte stream (SOI … EOI)."""
    buffer = bytearray()
    start = -1
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise CaptureError("no whole frame arrived in time (timed out)")
        scan_from = max(0, len(buffer) - 1)
        buffer += chunk
        if start < 0:
            start = buffer.find(SOI, scan_from)
            if start < 0:
                if len(buffer) > MAX_SCAN:
                    raise CaptureError("the stream sends no JPEG frames")
                continue
            scan_from = start + 2
        end = buffer.find(EOI, max(scan_from, start + 2))
        if end >= 0:
            return bytes(buffer[start : end + 2])
        if len(buffer) > MAX_SCAN:
            raise CaptureError("no whole JPEG frame within 16 MB of stream")
    raise CaptureError("the stream ended before a whole frame arrived")


def capture(config: MjpegConfig, ctx: CaptureContext) -> Frame:
    deadline = time.monotonic() + config.timeout
    auth = make_auth(config.auth, config.username, config.secret("password"))
    with open_stream(config.url, ctx, config.timeout, auth) as response:
        ctype = response.headers.get("content-type", "")
        if not ctype.startswith(("multipart/", "image/jpeg")):
            raise CaptureError(f"not an MJPEG stream (content type {ctype or 'missing'})")
        jpeg = first_jpeg(response.iter_content(CHUNK), deadline)
    return to_jpeg(jpeg, ctx.max_jpeg_bytes)
