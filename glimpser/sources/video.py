"""Video that ffmpeg opens directly: HLS playlists, MP4 and other URLs, or a media file."""

from __future__ import annotations

from pathlib import Path

from glimpser.sources.base import CaptureContext, CaptureError, Frame
from glimpser.sources.ffmpeg_grab import FAST_PROBE, grab_command, run_grab
from glimpser.sources.network_guard import check_url
from glimpser.sources.schemas import VideoConfig

# ffmpeg may follow an HLS playlist to segments; only these protocols, never file: or data:.
NETWORK_WHITELIST = "http,https,tcp,tls,crypto,hls,rtmp,rtmps"


def media_path(relative: str, media_dir: Path) -> Path:
    """Resolve a media file strictly inside the media directory (no traversal, no links out)."""
    root = media_dir.resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise CaptureError("the media file must be inside the media directory")
    if not path.is_file():
        raise CaptureError(f"media file not found: {relative}")
    return path


def capture(config: VideoConfig, ctx: CaptureContext) -> Frame:
    if config.path:
        source = str(media_path(config.path, ctx.media_dir))
        args: dict[str, object] = {}
    else:
        check_url(config.url, ctx, VideoConfig.URL_SCHEMES)
        source = config.url
        args = {
            **FAST_PROBE,
            "protocol_whitelist": NETWORK_WHITELIST,
            "rw_timeout": int(config.timeout * 1_000_000),
        }
    cmd = grab_command(source, args, seek=config.seek)
    return run_grab(cmd, timeout=config.timeout, max_bytes=ctx.max_jpeg_bytes)
