"""MJPEG over HTTP (multipart/x-mixed-replace): the first complete JPEG part, as sent.

Read directly rather than through ffmpeg: the camera already sends JPEG, so there is no
process to start and nothing to decode or re-encode (see docs/benchmarks.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from glimpser.media.imaging import split_jpegs, to_jpeg
from glimpser.sources.base import CaptureContext, CaptureError, Frame
from glimpser.sources.http_fetch import iter_available, make_auth, open_stream
from glimpser.sources.schemas import MjpegConfig


def first_jpeg(chunks: Iterable[bytes], deadline: float) -> bytes:
    """The first whole JPEG of a multipart byte stream, within the deadline."""

    def timed() -> Iterator[bytes]:
        for chunk in chunks:
            if time.monotonic() > deadline:
                raise CaptureError("no whole frame arrived in time (timed out)")
            yield chunk

    for jpeg in split_jpegs(timed()):
        return jpeg
    raise CaptureError("the stream ended before a whole frame arrived")


def capture(config: MjpegConfig, ctx: CaptureContext) -> Frame:
    deadline = time.monotonic() + config.timeout
    auth = make_auth(config.auth, config.username, config.secret("password"))
    with open_stream(config.url, ctx, config.timeout, auth) as response:
        ctype = response.headers.get("content-type", "")
        if not ctype.startswith(("multipart/", "image/jpeg")):
            raise CaptureError(f"not an MJPEG stream (content type {ctype or 'missing'})")
        jpeg = first_jpeg(iter_available(response), deadline)
    return to_jpeg(jpeg, ctx.max_jpeg_bytes)
