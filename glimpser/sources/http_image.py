"""A camera's still-image URL (snapshot.jpg), fetched directly: no process, no re-encoding."""

from __future__ import annotations

import time

from glimpser.media.imaging import to_jpeg
from glimpser.sources.base import CaptureContext, Frame
from glimpser.sources.http_fetch import make_auth, open_stream, read_body
from glimpser.sources.schemas import HttpImageConfig

# A still image larger than this is not a camera snapshot.
MAX_DOWNLOAD = 32 * 1024 * 1024


def capture(config: HttpImageConfig, ctx: CaptureContext) -> Frame:
    deadline = time.monotonic() + config.timeout
    auth = make_auth(config.auth, config.username, config.secret("password"))
    with open_stream(config.url, ctx, config.timeout, auth) as response:
        data = read_body(response, MAX_DOWNLOAD, deadline)
    return to_jpeg(data, ctx.max_jpeg_bytes)
