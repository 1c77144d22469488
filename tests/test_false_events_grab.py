"""Issue 10 §1: which ffmpeg command lines keep to whole pictures (see WHOLE_PICTURES)."""

from __future__ import annotations

from pathlib import Path

import pytest

from glimpser.capture.readers import reader_command, video_command
from glimpser.sources.base import CaptureContext
from glimpser.sources.ffmpeg_grab import WHOLE_PICTURES, grab_command
from glimpser.sources.schemas import parse_config

CTX = CaptureContext(
    max_jpeg_bytes=2_000_000,
    allow_loopback=True,
    deny_cidrs=(),
    media_dir=Path("/nonexistent"),
    chromium="/usr/bin/chromium",
)


def filters(cmd: list[str]) -> str:
    return cmd[cmd.index("-vf") + 1] if "-vf" in cmd else ""


def decoder_flags(cmd: list[str]) -> tuple[str, str]:
    return cmd[cmd.index("-flags2") + 1], cmd[cmd.index("-fflags") + 1]


@pytest.mark.parametrize(
    "source", ["rtsp://cam.example/live", "RTSPS://cam.example/x", "rtmp://cam.example/app/key"]
)
def test_a_one_shot_grab_of_a_live_stream_skips_to_a_whole_picture(source):
    cmd = grab_command(source, {})
    assert filters(cmd) == WHOLE_PICTURES
    assert decoder_flags(cmd) == ("-showall", "+discardcorrupt")
    assert cmd.index("-flags2") < cmd.index("-i")  # input options: they must precede -i


@pytest.mark.parametrize(
    ("source", "seek"),
    [("/media/clip.mp4", 0), ("https://example.com/clip.mp4", 4), ("rtmp://x.example/vod", 4)],
)
def test_a_file_or_a_seek_is_whole_from_its_start(source, seek):
    cmd = grab_command(source, {}, seek=seek)
    assert filters(cmd) == ""  # a seek decodes from the keyframe before the position
    assert decoder_flags(cmd) == ("-showall", "+discardcorrupt")


def test_every_reader_keeps_to_whole_pictures():
    rtsp = parse_config({"kind": "rtsp", "url": "rtsp://127.0.0.1:8554/still"})
    video = parse_config({"kind": "video", "url": "http://127.0.0.1:8000/test.mp4"})
    for cmd in (
        reader_command(rtsp, CTX, fps=0.5, keyframes_only=True),
        reader_command(rtsp, CTX, fps=5),
        video_command(video, CTX, fps=5),
    ):
        assert filters(cmd).startswith(f"{WHOLE_PICTURES},fps=")
        assert decoder_flags(cmd) == ("-showall", "+discardcorrupt")
