"""Video that ffmpeg opens directly: HLS playlists, MP4 and other URLs, or a media file."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from glimpser.sources.base import CaptureContext, CaptureError, Frame
from glimpser.sources.ffmpeg_grab import FAST_PROBE, grab_command, run_grab
from glimpser.sources.network_guard import GuardError, check_url, guard_proxy, with_address
from glimpser.sources.schemas import VideoConfig

# ffmpeg may follow an HLS playlist to segments; only these protocols, never file: or data:.
# httpproxy: every http(s) request goes through the SSRF guard's proxy (see guarded_grab).
NETWORK_WHITELIST = "http,https,tcp,tls,crypto,hls,httpproxy,rtmp,rtmps"


def media_path(relative: str, media_dir: Path) -> Path:
    """Resolve a media file strictly inside the media directory (no traversal, no links out)."""
    root = media_dir.resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise CaptureError("the media file must be inside the media directory")
    if not path.is_file():
        raise CaptureError(f"media file not found: {relative}")
    return path


def guarded_grab(
    url: str,
    args: dict[str, object],
    ctx: CaptureContext,
    schemes: tuple[str, ...],
    *,
    timeout: float,
    seek: float = 0,
) -> Frame:
    """One frame from a network URL, with every host ffmpeg reaches checked by the SSRF guard.

    ffmpeg follows HTTP redirects and opens whatever hosts an HLS playlist names (variants,
    segments, keys), resolving each name itself. So its HTTP and HTTPS go through a GuardProxy
    (the `http_proxy` option and environment variable; HTTPS is tunnelled with CONNECT), which
    checks every host and connects to the address it checked. RTMP is not proxied: ffmpeg is
    given the checked address instead of the name.
    """
    addr = check_url(url, ctx, schemes)
    if urlsplit(url).scheme.lower() in ("rtmp", "rtmps"):
        url = with_address(url, addr)
    with guard_proxy(ctx) as proxy:
        cmd = grab_command(url, {**args, "http_proxy": proxy.url}, seek=seek)
        try:
            return run_grab(cmd, timeout=timeout, max_bytes=ctx.max_jpeg_bytes, env=proxy.env())
        except CaptureError:
            if proxy.refusals:
                raise GuardError(proxy.refusals[0]) from None
            raise


def capture(config: VideoConfig, ctx: CaptureContext) -> Frame:
    if config.path:
        source = str(media_path(config.path, ctx.media_dir))
        cmd = grab_command(source, {}, seek=config.seek)
        return run_grab(cmd, timeout=config.timeout, max_bytes=ctx.max_jpeg_bytes)
    args = {
        **FAST_PROBE,
        "protocol_whitelist": NETWORK_WHITELIST,
        "rw_timeout": int(config.timeout * 1_000_000),
    }
    return guarded_grab(
        config.url, args, ctx, VideoConfig.URL_SCHEMES, timeout=config.timeout, seek=config.seek
    )
