"""One frame from anything ffmpeg opens, as JPEG bytes (never decoded as text)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import ffmpeg

from glimpser.logs import redact
from glimpser.media.imaging import to_jpeg
from glimpser.sources.base import CaptureError, Frame

# Less probing than ffmpeg's default (5 s): the first frame arrives in about 1 s, not 3.
FAST_PROBE = {"analyzeduration": 1_000_000, "probesize": 500_000}


def ffmpeg_binary() -> str:
    binary = shutil.which("ffmpeg")
    if binary is None:
        raise CaptureError("ffmpeg is not installed (run `make setup`)")
    return binary


# Drops the first decoded frame. A client that joins a live stream mid-way often decodes its
# first frame from an incomplete picture (seen on the GStreamer test camera as a washed-out top
# half, even on a keyframe); the next frame, ~1/fps later, is whole. Without this, a static
# scene alternates between a damaged and a clean first frame and reads as motion.
SKIP_FIRST_FRAME = r"select=gte(n\,1)"


def grab_command(
    source: str, input_args: dict[str, Any], seek: float = 0, *, live: bool = False
) -> list[str]:
    """The ffmpeg command line for one JPEG frame on stdout (`live`: skip the first frame)."""
    if seek:
        input_args = {**input_args, "ss": f"{seek:.3f}"}  # before -i: a fast keyframe seek
    output_args: dict[str, Any] = {"vframes": 1, "format": "image2", "vcodec": "mjpeg", "q:v": 3}
    if live:
        output_args["vf"] = SKIP_FIRST_FRAME
    stream = ffmpeg.input(source, **input_args).output("pipe:", **output_args)
    return stream.global_args("-hide_banner", "-loglevel", "error", "-nostdin").compile(
        cmd=ffmpeg_binary()
    )


def last_error_line(stderr: bytes) -> str:
    """The most useful line of ffmpeg's error output, credentials masked."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    # The final line is often a generic summary; a line naming the URL or protocol is better.
    return redact(lines[-1])[:500]


def run_grab(
    cmd: list[str], timeout: float, max_bytes: int, env: dict[str, str] | None = None
) -> Frame:
    """Run ffmpeg with a hard timeout (the process is killed on expiry) and read the JPEG.
    `env`: the child's environment (the SSRF guard's proxy settings), else this process's."""
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
    except OSError as exc:
        raise CaptureError(f"cannot start ffmpeg: {exc.strerror}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise CaptureError(f"no frame within {timeout:g} s (timed out)") from None
    if proc.returncode == 0 and not out:
        raise CaptureError(last_error_line(err) or "the source gave no frame (seek past the end?)")
    if proc.returncode != 0:
        raise CaptureError(last_error_line(err) or f"ffmpeg exited with code {proc.returncode}")
    return to_jpeg(out, max_bytes)
