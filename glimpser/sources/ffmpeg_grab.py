"""One frame from anything ffmpeg opens, as JPEG bytes (never decoded as text)."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any
from urllib.parse import urlsplit

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


# Whole pictures only, from live sources (RTSP; the persistent readers use it for every source).
# A picture is whole only from a keyframe on. Measured on the GStreamer test camera
# (../shared/fixtures/rtsp_server.py, mount /still, while another client keeps it playing): the
# first keyframe a joining client decodes is itself damaged, the top half of the picture washed
# out, decoded without a single error (so -err_detect, -fflags discardcorrupt or stderr cannot
# tell), in 32 of 33 joins (25 of them with a CPU hog); the 11 frames after it, P or I, were
# whole every time. (With no other client watching, the server starts afresh and it did not
# show.) -skip_frame nokey alone therefore gives the damaged frame every time; dropping the
# first frame (the earlier fix) is not enough either when the decoder outputs pictures before
# the first keyframe (-flags2 showall, concealed frames after a lost packet), or when the
# first frame is not a keyframe.
# The select expression counts the keyframes before each frame (variable 0) and passes a frame
# only once a keyframe has gone by: everything before the first keyframe and that keyframe
# itself are dropped. The cost is one frame (0.1 s at 10 fps); with -skip_frame nokey (slow
# readers) the second keyframe is the first picture.
WHOLE_PICTURES = r"select=st(1\,ld(0))\;st(0\,ld(0)+key)\;gte(ld(1)\,1)"
# Never output a picture the decoder knows to be incomplete (the default, stated here because
# it matters), and drop packets the demuxer marks corrupt (e.g. RTP with lost packets).
DECODE_WHOLE = {"flags2": "-showall", "fflags": "+discardcorrupt"}
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps"})


def grab_command(
    source: str, input_args: dict[str, Any], seek: float = 0, *, live: bool = False
) -> list[str]:
    """The ffmpeg command line for one JPEG frame on stdout.

    `live`: a stream joined mid-way (RTSP, and RTMP without a seek, are taken as live anyway):
    only a whole picture, see WHOLE_PICTURES. A file or recorded video is read from its start or
    from a seek (which decodes from the keyframe before the position), and HLS joins at a
    segment's start (a keyframe), so their pictures are whole without it."""
    live = live or (not seek and urlsplit(source).scheme.lower() in LIVE_SCHEMES)
    input_args = {**DECODE_WHOLE, **input_args}
    if seek:
        input_args = {**input_args, "ss": f"{seek:.3f}"}  # before -i: a fast keyframe seek
    output_args: dict[str, Any] = {"vframes": 1, "format": "image2", "vcodec": "mjpeg", "q:v": 3}
    if live:
        output_args["vf"] = WHOLE_PICTURES
    stream = ffmpeg.input(source, **input_args).output("pipe:", **output_args)
    return stream.global_args("-hide_banner", "-loglevel", "error", "-nostdin").compile(
        cmd=ffmpeg_binary()
    )


# ffmpeg's closing summaries: true, but they say only that something failed before.
_GENERIC = re.compile(
    r"^(Error marking filters as finished|Cannot determine format of input stream"
    r"|Conversion failed!|Error opening (input|output) files?|Error while (filtering|decoding)"
    r"|Error during demuxing|Nothing was written into output file|Terminating thread"
    r"|Error initializing output stream|Exiting normally|Last message repeated)"
)
# "[http @ 0x55d3edd8b640] Stream ends prematurely…": the component that logged the line.
_CONTEXT = re.compile(r"^\[(?P<name>[\w,.-]+) @ 0x[0-9a-f]+\]\s*")
# The line ffmpeg writes for a failed input: "<url or path>: <reason>". Linear time: the scheme
# holds no ":", so only the first "://" is tried (not each one of a long line, each to its end).
_INPUT_ERROR = re.compile(r"^[^\s:]+://\S+?: |^/\S+: ")
_PROTOCOLS = {"http", "https", "tcp", "tls", "udp", "rtsp", "rtmp", "hls", "crypto"}


def last_error_line(stderr: bytes) -> str:
    """The most useful line of ffmpeg's error output, credentials masked.

    ffmpeg ends with generic summaries ("Error marking filters as finished"), so those are
    skipped. The line naming the failed input ("http://…: Input/output error") is preferred,
    led by the network protocol's own reason just before it when there is one ("Stream ends
    prematurely at 48, should be 230565"). Without such a line, the last specific one is taken.
    """
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    specific = [ln for ln in lines if not _GENERIC.match(_CONTEXT.sub("", ln))]
    if not specific:
        return redact(lines[-1], 500)
    inputs = [i for i, line in enumerate(specific) if _INPUT_ERROR.match(line)]
    if not inputs:
        return redact(_CONTEXT.sub("", specific[-1]), 500)
    chosen = specific[inputs[-1]]
    # The protocol's reason, looked for among the lines of this failure only.
    this_failure = specific[inputs[-2] + 1 if len(inputs) > 1 else 0 : inputs[-1]]
    for before in reversed(this_failure):
        context = _CONTEXT.match(before)
        if context and context["name"] in _PROTOCOLS:
            reason = before[context.end() :]
            if chosen.split(": ", 1)[-1] not in reason:  # not the same words again
                chosen = f"{reason}; {chosen}"
            break
    return redact(chosen, 500)


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
