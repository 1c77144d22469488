"""The SSRF guard past the first URL: redirects, HLS segments, embedded IPv4, DNS rebinding.

Two real loopback servers play the parts: `allowed` on 127.0.0.1 and `denied` on 127.0.0.2,
which the guard refuses through GLIMPSER_SOURCE_DENY_CIDRS-style policy (127.0.0.2/32). Every
test asserts that the denied server received nothing, not only that the capture failed.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from pywebpush import webpush

from glimpser.sources import http_image, video, youtube
from glimpser.sources.base import CaptureContext, CaptureError
from glimpser.sources.network_guard import address_problem, check_url, guarded_session
from glimpser.sources.schemas import HttpImageConfig, VideoConfig, YoutubeConfig
from tests.media_servers import CAMERA_PASSWORD, CAMERA_USER, jpeg

DENIED_IP = "127.0.0.2"


class Peer:
    """A loopback HTTP server that records every request and answers from a route table."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                peer.requests.append((self.path, dict(self.headers)))
                code, headers, body = peer.routes.get(self.path, (404, {}, b"not here"))
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def allowed() -> Iterator[Peer]:
    peer = Peer("127.0.0.1")
    yield peer
    peer.stop()


@pytest.fixture
def denied() -> Iterator[Peer]:
    peer = Peer(DENIED_IP)
    yield peer
    peer.stop()


def _ctx(tmp_path: Path) -> CaptureContext:
    return CaptureContext(
        max_jpeg_bytes=5 * 1024 * 1024,
        allow_loopback=True,
        deny_cidrs=(f"{DENIED_IP}/32",),
        media_dir=tmp_path,
        chromium="/usr/bin/chromium",
    )


def _redirect(to: str, code: int = 302) -> tuple[int, dict[str, str], bytes]:
    return code, {"Location": to}, b""


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:127.0.0.1",  # IPv4-mapped
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "64:ff9b::7f00:1",  # NAT64 around 127.0.0.1
        "::169.254.169.254",  # compatible form of the metadata address
        "::ffff:169.254.169.254",
        "::1",
        "::",
    ],
)
def test_ipv6_forms_of_refused_ipv4_addresses_are_refused(address: str, tmp_path: Path):
    ctx = CaptureContext(5_000_000, False, (), tmp_path, "/usr/bin/chromium")
    assert address_problem(ipaddress.ip_address(address), ctx) is not None
    with pytest.raises(CaptureError, match="refused to connect"):
        check_url(f"http://[{address}]/snapshot.jpg", ctx, ("http",))


def test_ordinary_addresses_still_pass(tmp_path: Path):
    ctx = CaptureContext(5_000_000, False, (), tmp_path, "/usr/bin/chromium")
    for address in ("192.168.1.20", "10.0.0.5", "2001:db8::1", "8.8.8.8", "::ffff:192.168.1.20"):
        assert address_problem(ipaddress.ip_address(address), ctx) is None


# --- redirects and HLS through ffmpeg and yt-dlp ---------------------------------------------


@pytest.mark.slow
def test_ffmpeg_does_not_follow_a_redirect_to_a_denied_address(
    allowed, denied, media_root, tmp_path
):
    denied.routes["/test.mp4"] = (
        200,
        {"Content-Type": "video/mp4"},
        (media_root / "test.mp4").read_bytes(),
    )
    allowed.routes["/video.mp4"] = _redirect(f"{denied.url}/test.mp4")
    config = VideoConfig(kind="video", url=f"{allowed.url}/video.mp4", timeout=15)
    with pytest.raises(CaptureError, match="denied network"):
        video.capture(config, _ctx(tmp_path))
    assert [path for path, _ in allowed.requests] == ["/video.mp4"]
    assert denied.requests == []


@pytest.mark.slow
def test_hls_segment_on_a_denied_host_is_never_fetched(allowed, denied, media_root, tmp_path):
    hls = media_root / "hls"
    lines = []
    for line in (hls / "index.m3u8").read_text().splitlines():
        if line.endswith(".ts"):
            denied.routes[f"/{line}"] = (
                200,
                {"Content-Type": "video/mp2t"},
                (hls / line).read_bytes(),
            )
            line = f"{denied.url}/{line}"
        lines.append(line)
    allowed.routes["/index.m3u8"] = (
        200,
        {"Content-Type": "application/vnd.apple.mpegurl"},
        "\n".join(lines).encode(),
    )
    config = VideoConfig(kind="video", url=f"{allowed.url}/index.m3u8", timeout=15)
    with pytest.raises(CaptureError, match="denied network"):
        video.capture(config, _ctx(tmp_path))
    assert denied.requests == []


@pytest.mark.slow
def test_guarded_ffmpeg_still_reads_hls_from_an_allowed_host(media_server, tmp_path):
    config = VideoConfig(kind="video", url=f"{media_server.url}/hls/index.m3u8", timeout=20)
    frame = video.capture(config, _ctx(tmp_path))
    assert (frame.width, frame.height) == (320, 240)


@pytest.mark.slow
def test_ytdlp_does_not_follow_a_redirect_to_a_denied_address(
    allowed, denied, media_root, tmp_path
):
    denied.routes["/page.html"] = (
        200,
        {"Content-Type": "text/html"},
        b"<html><body><video src=test.mp4></video></body></html>",
    )
    allowed.routes["/page.html"] = _redirect(f"{denied.url}/page.html")
    youtube.CACHE.clear()
    config = YoutubeConfig(kind="youtube", url=f"{allowed.url}/page.html", timeout=20)
    with pytest.raises(CaptureError, match="denied network"):
        youtube.capture(config, _ctx(tmp_path))
    assert denied.requests == []


@pytest.mark.slow
def test_media_url_from_ytdlp_redirecting_to_a_denied_host_is_refused(
    allowed, denied, media_root, tmp_path
):
    denied.routes["/test.mp4"] = (
        200,
        {"Content-Type": "video/mp4"},
        (media_root / "test.mp4").read_bytes(),
    )
    allowed.routes["/page.html"] = (
        200,
        {"Content-Type": "text/html"},
        b"<html><body><video src=clip.mp4></video></body></html>",
    )
    allowed.routes["/clip.mp4"] = _redirect(f"{denied.url}/test.mp4")
    youtube.CACHE.clear()
    config = YoutubeConfig(kind="youtube", url=f"{allowed.url}/page.html", timeout=20)
    with pytest.raises(CaptureError, match="denied network"):
        youtube.capture(config, _ctx(tmp_path))
    assert denied.requests == []


# --- requests: redirects, rebinding, credentials ---------------------------------------------


def test_push_endpoint_redirecting_to_a_denied_address_is_refused(allowed, denied, tmp_path):
    """pywebpush follows redirects; with the guarded session every hop is checked."""
    from py_vapid import Vapid02

    allowed.routes["/push/abc"] = _redirect(f"{denied.url}/push/abc", code=307)
    vapid = Vapid02()
    vapid.generate_keys()
    receiver = Vapid02()
    receiver.generate_keys()
    from cryptography.hazmat.primitives import serialization

    p256dh = receiver.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    subscription = {
        "endpoint": f"{allowed.url}/push/abc",
        "keys": {"p256dh": b64(p256dh), "auth": b64(b"0123456789abcdef")},
    }
    with pytest.raises(requests.RequestException, match="denied network"):
        webpush(
            subscription,
            data="hello",
            vapid_private_key=vapid,
            vapid_claims={"sub": "mailto:admin@example.com"},
            timeout=10,
            requests_session=guarded_session(_ctx(tmp_path)),
        )
    assert [path for path, _ in allowed.requests] == ["/push/abc"]
    assert denied.requests == []


@pytest.fixture
def rebinding(monkeypatch, allowed) -> Iterator[tuple[str, Peer]]:
    """A name whose first answer is the allowed server, every later answer a denied server on
    the same port, like a DNS server rebinding a name between the check and the connection."""
    answers = {"n": 0}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):  # noqa: ANN001, ANN202
        if host == "rebind.test":
            answers["n"] += 1
            ip = "127.0.0.1" if answers["n"] == 1 else DENIED_IP
            return real(ip, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    peer = Peer(DENIED_IP, allowed.port)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield "rebind.test", peer
    peer.stop()


def test_a_rebinding_name_cannot_reach_the_denied_address(rebinding, allowed, tmp_path):
    name, other = rebinding
    picture = jpeg((0, 128, 0))
    allowed.routes["/snapshot.jpg"] = (200, {"Content-Type": "image/jpeg"}, picture)
    other.routes["/snapshot.jpg"] = allowed.routes["/snapshot.jpg"]
    url = f"http://{name}:{allowed.port}/snapshot.jpg"
    config = HttpImageConfig(kind="http_image", url=url, timeout=10)
    http_image.capture(config, _ctx(tmp_path))
    assert other.requests == []
    assert [path for path, _ in allowed.requests] == ["/snapshot.jpg"]
    assert allowed.requests[0][1]["Host"] == f"{name}:{allowed.port}"


def test_a_notification_session_cannot_be_rebound(rebinding, allowed, tmp_path):
    name, other = rebinding
    allowed.routes["/hook"] = (204, {}, b"")
    other.routes["/hook"] = (204, {}, b"")
    session = guarded_session(_ctx(tmp_path))
    response = session.post(f"http://{name}:{allowed.port}/hook", data=b"{}", timeout=5)
    assert response.status_code == 204
    assert response.url == f"http://{name}:{allowed.port}/hook"
    assert other.requests == []
    assert [path for path, _ in allowed.requests] == ["/hook"]


def test_camera_credentials_are_not_sent_to_another_origin(allowed, tmp_path):
    other = Peer("127.0.0.1")
    try:
        picture = jpeg((0, 0, 128))
        other.routes["/snapshot.jpg"] = (200, {"Content-Type": "image/jpeg"}, picture)
        allowed.routes["/snapshot.jpg"] = _redirect(f"{other.url}/snapshot.jpg")
        config = HttpImageConfig(
            kind="http_image",
            url=f"{allowed.url}/snapshot.jpg",
            auth="basic",
            username=CAMERA_USER,
            password=CAMERA_PASSWORD,
            timeout=10,
        )
        http_image.capture(config, _ctx(tmp_path))
        assert "Authorization" in allowed.requests[0][1]
        assert [path for path, _ in other.requests] == ["/snapshot.jpg"]
        assert "Authorization" not in other.requests[0][1]
    finally:
        other.stop()


def test_credentials_still_follow_a_redirect_on_the_same_origin(allowed, tmp_path):
    picture = jpeg((0, 0, 128))
    allowed.routes["/real.jpg"] = (200, {"Content-Type": "image/jpeg"}, picture)
    allowed.routes["/snapshot.jpg"] = _redirect("/real.jpg")
    config = HttpImageConfig(
        kind="http_image",
        url=f"{allowed.url}/snapshot.jpg",
        auth="basic",
        username=CAMERA_USER,
        password=CAMERA_PASSWORD,
        timeout=10,
    )
    http_image.capture(config, _ctx(tmp_path))
    assert all("Authorization" in headers for _, headers in allowed.requests)


@pytest.mark.slow
def test_a_persistent_video_reader_never_fetches_a_denied_segment(
    allowed, denied, media_root, tmp_path
):
    import subprocess

    from glimpser.capture.readers import video_command

    hls = media_root / "hls"
    lines = []
    for line in (hls / "index.m3u8").read_text().splitlines():
        if line.endswith(".ts"):
            body = (hls / line).read_bytes()
            denied.routes[f"/{line}"] = (200, {"Content-Type": "video/mp2t"}, body)
            line = f"{denied.url}/{line}"
        lines.append(line)
    playlist = "\n".join(lines).encode()
    allowed.routes["/index.m3u8"] = (200, {"Content-Type": "application/x-mpegurl"}, playlist)
    config = VideoConfig(kind="video", url=f"{allowed.url}/index.m3u8", timeout=10)
    command = video_command(config, _ctx(tmp_path), fps=2)
    result = subprocess.run(command, capture_output=True, timeout=60)
    assert result.stdout == b""  # no frame
    assert [path for path, _ in allowed.requests] == ["/index.m3u8"]
    assert denied.requests == []


def test_https_through_the_guarded_session_still_verifies_the_name(tmp_path):
    """Connecting to the checked address keeps TLS on the name: SNI and certificate check."""
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key)]
        + ["-out", str(cert), "-days", "2", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    peer = Peer("127.0.0.1")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    peer.httpd.socket = tls.wrap_socket(peer.httpd.socket, server_side=True)
    peer.routes["/hook"] = (204, {}, b"")
    try:
        session = guarded_session(_ctx(tmp_path))
        response = session.get(f"https://localhost:{peer.port}/hook", verify=str(cert), timeout=5)
        assert response.status_code == 204
        assert peer.requests[0][1]["Host"] == f"localhost:{peer.port}"
        with pytest.raises(requests.exceptions.SSLError):  # not a CA this client trusts
            session.get(f"https://localhost:{peer.port}/hook", timeout=5)
    finally:
        peer.stop()


def test_user_supplied_endpoints_must_be_on_the_public_internet(tmp_path):
    from glimpser.sources.network_guard import public_problem

    ctx = CaptureContext(5_000_000, True, (), tmp_path, "")
    for address in ("192.168.1.1", "10.0.0.1", "::ffff:10.0.0.1", "fc00::1", "100.64.0.1"):
        assert public_problem(ipaddress.ip_address(address), ctx), address
    for address in ("8.8.8.8", "2001:4860:4860::8888", "127.0.0.1"):  # loopback: allowed here
        assert public_problem(ipaddress.ip_address(address), ctx) is None, address
