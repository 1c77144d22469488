"""rtsp, http_image, mjpeg and video sources against real peers on loopback."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from glimpser.sources import capture
from glimpser.sources.base import CaptureContext, CaptureError
from glimpser.sources.schemas import parse_config
from tests.media_servers import CAMERA_PASSWORD, CAMERA_USER, jpeg


@pytest.fixture
def ctx(media_root: Path) -> CaptureContext:
    return CaptureContext(
        max_jpeg_bytes=2_000_000,
        allow_loopback=True,
        deny_cidrs=(),
        media_dir=media_root,
        chromium="/usr/bin/chromium",
    )


def grab(ctx: CaptureContext, **config):
    return capture(parse_config(config), ctx)


def picture(frame) -> Image.Image:
    image = Image.open(io.BytesIO(frame.jpeg))
    assert image.format == "JPEG"
    assert image.size == (frame.width, frame.height)
    return image


def ffmpeg_children() -> list[str]:
    out = subprocess.run(["pgrep", "-a", "-x", "ffmpeg"], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "127.0.0.1" in line]


# --- RTSP ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["tcp", "udp", "auto"])
def test_rtsp_captures_a_real_frame(rtsp, ctx, transport):
    frame = grab(ctx, kind="rtsp", url=f"{rtsp.url}/test", transport=transport, timeout=15)
    assert picture(frame).size == (320, 240)


@pytest.mark.slow
def test_rtsp_404_path_fails_with_the_servers_answer(rtsp, ctx):
    with pytest.raises(CaptureError, match="404"):
        grab(ctx, kind="rtsp", url=f"{rtsp.url}/nope", timeout=10)


def test_rtsp_refused_port_fails_quickly(ctx):
    from tests.helpers import free_port

    started = time.monotonic()
    with pytest.raises(CaptureError, match="(?i)refused"):
        grab(ctx, kind="rtsp", url=f"rtsp://127.0.0.1:{free_port()}/x", timeout=10)
    assert time.monotonic() - started < 10


def test_stalled_rtsp_server_times_out_and_leaves_no_process(ctx):
    import socket

    with socket.socket() as silent:  # accepts the connection, never speaks RTSP
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(CaptureError, match="(?i)timed out|timeout"):
            grab(ctx, kind="rtsp", url=f"rtsp://127.0.0.1:{port}/cam", timeout=2)
        assert time.monotonic() - started < 6
    assert not [p for p in ffmpeg_children() if str(port) in p]


def test_rtsp_credentials_are_not_in_error_messages(ctx):
    from tests.helpers import free_port

    with pytest.raises(CaptureError) as info:
        grab(
            ctx,
            kind="rtsp",
            url=f"rtsp://127.0.0.1:{free_port()}/x",
            username="admin",
            password="hunter22",
            timeout=5,
        )
    assert "hunter22" not in str(info.value)


# --- still image ----------------------------------------------------------------------------


def test_http_image_returns_the_cameras_jpeg_untouched(camera, ctx):
    camera.state.picture = jpeg((200, 40, 40), label="untouched")
    frame = grab(ctx, kind="http_image", url=f"{camera.url}/snapshot.jpg")
    assert frame.jpeg == camera.state.picture


def test_http_image_converts_other_formats_to_jpeg(camera, ctx):
    frame = grab(ctx, kind="http_image", url=f"{camera.url}/image.png")
    assert picture(frame).size == (200, 100)


@pytest.mark.parametrize("auth", ["basic", "digest"])
def test_http_image_authentication(camera, ctx, auth):
    url = f"{camera.url}/{auth}.jpg"
    with pytest.raises(CaptureError, match="401"):
        grab(ctx, kind="http_image", url=url, auth=auth, username=CAMERA_USER, password="wrong")
    frame = grab(
        ctx, kind="http_image", url=url, auth=auth, username=CAMERA_USER, password=CAMERA_PASSWORD
    )
    assert picture(frame)


def test_http_image_credentials_in_the_url_move_to_the_fields(camera, ctx):
    config = parse_config(
        {
            "kind": "http_image",
            "auth": "basic",
            "url": f"http://{CAMERA_USER}:{CAMERA_PASSWORD}@127.0.0.1:{camera.port}/basic.jpg",
        }
    )
    assert CAMERA_PASSWORD not in config.url and config.username == CAMERA_USER
    assert picture(capture(config, ctx))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.jpg", "HTTP 404"),
        ("/page.html", "not return a valid image"),
        ("/redirect-to-metadata", "never allowed"),
    ],
)
def test_http_image_failures_are_clear(camera, ctx, path, message):
    with pytest.raises(CaptureError, match=message):
        grab(ctx, kind="http_image", url=f"{camera.url}{path}")


def test_http_image_follows_safe_redirects(camera, ctx):
    assert picture(grab(ctx, kind="http_image", url=f"{camera.url}/redirect-to-snapshot"))


def test_http_image_times_out(camera, ctx):
    started = time.monotonic()
    with pytest.raises(CaptureError, match="(?i)within 2 s|timed out"):
        grab(ctx, kind="http_image", url=f"{camera.url}/stall", timeout=2)
    assert time.monotonic() - started < 5


def test_unreachable_host_is_reported(ctx):
    with pytest.raises(CaptureError, match="(?i)resolve|unknown host"):
        grab(ctx, kind="http_image", url="http://no-such-host.invalid/snapshot.jpg", timeout=5)


# --- SSRF guard -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/x.jpg",
        "http://100.100.100.200/",
    ],
)
def test_link_local_and_metadata_addresses_are_always_refused(ctx, url):
    with pytest.raises(CaptureError, match="never allowed"):
        grab(ctx, kind="http_image", url=url)


def test_loopback_needs_the_setting(camera, media_root):
    strict = CaptureContext(
        max_jpeg_bytes=2_000_000,
        allow_loopback=False,
        deny_cidrs=(),
        media_dir=media_root,
        chromium="",
    )
    with pytest.raises(CaptureError, match="GLIMPSER_ALLOW_LOOPBACK_SOURCES"):
        grab(strict, kind="http_image", url=f"{camera.url}/snapshot.jpg")


def test_deny_list(camera, media_root):
    denied = CaptureContext(
        max_jpeg_bytes=2_000_000,
        allow_loopback=True,
        deny_cidrs=("127.0.0.0/8",),
        media_dir=media_root,
        chromium="",
    )
    with pytest.raises(CaptureError, match="denied network"):
        grab(denied, kind="http_image", url=f"{camera.url}/snapshot.jpg")


def test_private_lan_addresses_are_allowed(ctx):
    import ipaddress

    from glimpser.sources.network_guard import address_problem

    for addr in ("192.168.1.20", "10.0.0.5", "172.16.3.4", "fd12::1"):
        assert address_problem(ipaddress.ip_address(addr), ctx) is None


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("http_image", "file:///etc/passwd"),
        ("rtsp", "http://example.com/x"),
        ("video", "file:///etc/passwd"),
        ("mjpeg", "ftp://camera/x"),
    ],
)
def test_wrong_schemes_are_refused_by_the_schema(kind, url):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must start with"):
        parse_config({"kind": kind, "url": url})


# --- MJPEG ----------------------------------------------------------------------------------


def test_mjpeg_returns_the_first_whole_frame(camera, ctx):
    camera.state.picture = jpeg((10, 160, 60), label="mjpeg")
    frame = grab(ctx, kind="mjpeg", url=f"{camera.url}/stream.mjpg")
    assert frame.jpeg == camera.state.picture


def test_mjpeg_from_ffmpeg_server(ctx):
    from tests.helpers import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=10",
            "-t",
            "20",
            "-c:v",
            "mjpeg",
            "-q:v",
            "5",
            "-f",
            "mpjpeg",
            "-boundary_tag",
            "frame",
            "-content_type",
            "multipart/x-mixed-replace;boundary=frame",
            "-listen",
            "1",
            f"http://127.0.0.1:{port}/stream.mjpg",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                frame = grab(
                    ctx, kind="mjpeg", url=f"http://127.0.0.1:{port}/stream.mjpg", timeout=5
                )
                break
            except CaptureError as exc:
                if "refused" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert picture(frame).size == (320, 240)
    finally:
        proc.kill()
        proc.wait()


def test_mjpeg_refuses_a_non_stream(camera, ctx):
    with pytest.raises(CaptureError, match="not an MJPEG stream"):
        grab(ctx, kind="mjpeg", url=f"{camera.url}/page.html")


# --- video ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["test.mp4", "hls/index.m3u8"])
def test_video_over_http(media_server, ctx, path):
    frame = grab(ctx, kind="video", url=f"{media_server.url}/{path}")
    assert picture(frame).size == (320, 240)


def test_video_seek_gives_a_later_frame(media_server, ctx):
    first = grab(ctx, kind="video", url=f"{media_server.url}/test.mp4")
    later = grab(ctx, kind="video", url=f"{media_server.url}/test.mp4", seek=4)
    assert first.jpeg != later.jpeg


def test_video_from_the_media_directory(ctx):
    assert picture(grab(ctx, kind="video", path="test.mp4")).size == (320, 240)


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd"])
def test_video_paths_outside_the_media_directory_are_refused(path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="relative path inside the media directory"):
        parse_config({"kind": "video", "path": path})


def test_video_symlink_out_of_the_media_directory_is_refused(ctx, media_root):
    link = media_root / "escape.mp4"
    link.unlink(missing_ok=True)
    link.symlink_to("/etc/hostname")
    with pytest.raises(CaptureError, match="inside the media directory"):
        grab(ctx, kind="video", path="escape.mp4")


def test_video_missing_file_and_404(ctx, media_server):
    with pytest.raises(CaptureError, match="not found"):
        grab(ctx, kind="video", path="nope.mp4")
    with pytest.raises(CaptureError, match="404"):
        grab(ctx, kind="video", url=f"{media_server.url}/nope.mp4")


def test_video_that_is_not_video(ctx, camera):
    with pytest.raises(CaptureError):
        grab(ctx, kind="video", url=f"{camera.url}/page.html", timeout=5)


def test_oversized_frames_are_shrunk_to_the_limit(camera, media_root):
    camera.state.picture = jpeg((120, 50, 200), size=(1920, 1080), label="big")
    small = CaptureContext(
        max_jpeg_bytes=16 * 1024,
        allow_loopback=True,
        deny_cidrs=(),
        media_dir=media_root,
        chromium="",
    )
    frame = grab(small, kind="http_image", url=f"{camera.url}/snapshot.jpg")
    assert len(frame.jpeg) <= 16 * 1024 and picture(frame)


def test_split_jpegs_handles_markers_across_chunk_boundaries():
    from glimpser.media.imaging import split_jpegs

    frames = [jpeg((i * 60, 10, 10), label=str(i)) for i in range(3)]
    stream = b"--frame\r\n" + b"\r\n--frame\r\n".join(frames) + b"\r\n"
    for size in (1, 2, 7, 4096):
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert list(split_jpegs(chunks)) == frames, size


def test_truncated_jpegs_are_refused(camera, ctx):
    whole = jpeg((10, 200, 30), size=(640, 480), label="truncated")
    camera.state.picture = whole[: len(whole) // 2]
    try:
        with pytest.raises(CaptureError, match="not return a valid image"):
            grab(ctx, kind="http_image", url=f"{camera.url}/snapshot.jpg")
    finally:
        camera.state.picture = whole
