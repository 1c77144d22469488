"""IP cameras over RTSP/RTSPS, through ffmpeg."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from glimpser.sources.base import CaptureContext, Frame
from glimpser.sources.ffmpeg_grab import FAST_PROBE, grab_command, run_grab
from glimpser.sources.network_guard import check_url, with_address
from glimpser.sources.schemas import RtspConfig


def url_with_credentials(url: str, username: str, password: str) -> str:
    """ffmpeg takes RTSP credentials only inside the URL."""
    if not username:
        return url
    parts = urlsplit(url)
    userinfo = quote(username, safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit(
        (parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, parts.fragment)
    )


def input_args(config: RtspConfig) -> dict[str, object]:
    args: dict[str, object] = {
        **FAST_PROBE,
        # socket I/O timeout in microseconds, so a stalled server ends
        "timeout": int(config.timeout * 1_000_000),
    }
    if config.transport != "auto":
        args["rtsp_transport"] = config.transport
    return args


def capture(config: RtspConfig, ctx: CaptureContext) -> Frame:
    # ffmpeg is given the checked address, not the name, so it cannot resolve it differently.
    addr = check_url(config.url, ctx, RtspConfig.URL_SCHEMES)
    url = with_address(config.url, addr)
    source = url_with_credentials(url, config.username, config.secret("password"))
    cmd = grab_command(source, input_args(config), live=True)
    return run_grab(cmd, timeout=config.timeout, max_bytes=ctx.max_jpeg_bytes)
