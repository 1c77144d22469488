"""Camera HTTP (glimpser/sources/http_fetch.py): keep-alive connections reused and replaced when
the camera closed them, and HTTPS to the checked address verified on the name. Real loopback
servers that count the connections they accept."""

from __future__ import annotations

import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from glimpser.sources import http_fetch, http_image
from glimpser.sources.base import CaptureContext, CaptureError
from glimpser.sources.schemas import HttpImageConfig
from tests.media_servers import jpeg

PICTURE = jpeg((20, 120, 220), label="keep-alive")


class CountingCamera:
    """An HTTP/1.1 still-image camera that counts accepted connections; with `close_after`
    it closes each connection after its answer without saying so (a short keep-alive)."""

    def __init__(self, *, close_after: bool = False, tls: ssl.SSLContext | None = None) -> None:
        self.connections = 0
        self.hosts: list[str] = []
        self.paths: list[str] = []
        camera = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                camera.connections += 1
                super().setup()

            def do_GET(self) -> None:  # noqa: N802
                camera.hosts.append(self.headers.get("Host", ""))
                camera.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(PICTURE)))
                self.end_headers()
                self.wfile.write(PICTURE)
                self.close_connection = close_after

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ctx(tmp_path: Path) -> CaptureContext:
    return CaptureContext(2_000_000, True, (), tmp_path, "")


def _capture(url: str, ctx: CaptureContext) -> bytes:
    config = HttpImageConfig(kind="http_image", url=url, timeout=10)
    return http_image.capture(config, ctx).jpeg


@pytest.mark.parametrize(
    ("close_after", "connections"),
    [(False, 1), (True, 3)],
    ids=["a-kept-connection-is-reused", "a-connection-the-camera-closed-is-replaced"],
)
def test_camera_connections_across_three_captures(ctx, close_after: bool, connections: int):
    """Three captures of one camera: one connection while the camera keeps it open, a new one
    each time the camera closes it after answering."""
    camera = CountingCamera(close_after=close_after)
    try:
        for _ in range(3):
            assert _capture(f"http://127.0.0.1:{camera.port}/snapshot.jpg", ctx) == PICTURE
        assert camera.connections == connections
    finally:
        camera.stop()


def test_a_non_ascii_url_is_sent_percent_encoded(ctx):
    """As requests did: a request line may only carry ASCII, so a camera URL (or a redirect)
    with accented letters or spaces is quoted, and escapes already there are kept."""
    camera = CountingCamera()
    try:
        url = f"http://127.0.0.1:{camera.port}/caméra/snap%20shot.jpg?name=Ü"
        assert _capture(url, ctx) == PICTURE
        assert camera.paths == ["/cam%C3%A9ra/snap%20shot.jpg?name=%C3%9C"]
    finally:
        camera.stop()


def test_an_internationalised_host_name_goes_in_the_host_header_as_idna():
    assert http_fetch._ascii_host("bücher.example") == "xn--bcher-kva.example"
    assert http_fetch._ascii_host("camera.example") == "camera.example"
    with pytest.raises(CaptureError, match="not a valid domain name"):
        http_fetch._ascii_host("bad\u200d.example")


@pytest.mark.parametrize(
    ("setting", "value", "connections"),
    [("MAX_IDLE_SECONDS", 0.0, 2), ("MAX_IDLE", 1, 2)],
    ids=["an-old-idle-connection-is-not-reused", "the-pool-keeps-at-most-max-idle"],
)
def test_idle_connections_are_bounded(ctx, monkeypatch, setting, value, connections):
    """Two captures of camera A with one of camera B between: A's kept connection is reused
    unless it grew older than MAX_IDLE_SECONDS or B's pushed it out of a pool of MAX_IDLE."""
    monkeypatch.setattr(http_fetch, setting, value)
    http_fetch.POOL.clear()
    a, b = CountingCamera(), CountingCamera()
    try:
        for camera in (a, b, a):
            assert _capture(f"http://127.0.0.1:{camera.port}/snapshot.jpg", ctx) == PICTURE
        assert a.connections == connections
    finally:
        a.stop()
        b.stop()
        http_fetch.POOL.clear()


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key)]
        + ["-out", str(cert), "-days", "2", "-subj", f"/CN={name}"]
        + ["-addext", f"subjectAltName=DNS:{name}"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def trusted_ca(tmp_path: Path):
    """Certificates made here, trusted by the camera client for this test only (its trust
    store is otherwise certifi's bundle, which no loopback server can be in)."""
    certs: list[Path] = []

    def trust(cert: Path) -> None:
        certs.append(cert)
        context = ssl.create_default_context()
        for c in certs:
            context.load_verify_locations(c)
        http_fetch._tls = context

    yield trust
    http_fetch._tls = None
    http_fetch.POOL.clear()


def _tls_server(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_https_to_the_checked_address_verifies_the_name(tmp_path, ctx, trusted_ca):
    cert, key = _certificate(tmp_path, "localhost")
    trusted_ca(cert)
    camera = CountingCamera(tls=_tls_server(cert, key))
    try:
        assert _capture(f"https://localhost:{camera.port}/snapshot.jpg", ctx) == PICTURE
        assert camera.hosts == [f"localhost:{camera.port}"]
        # The same server reached by its address: the certificate does not name it.
        with pytest.raises(CaptureError, match="cannot connect to 127.0.0.1"):
            _capture(f"https://127.0.0.1:{camera.port}/snapshot.jpg", ctx)
    finally:
        camera.stop()


def test_https_with_an_untrusted_certificate_is_refused(tmp_path, ctx, trusted_ca):
    cert, key = _certificate(tmp_path, "localhost")
    camera = CountingCamera(tls=_tls_server(cert, key))
    try:
        with pytest.raises(CaptureError, match="cannot connect to localhost"):
            _capture(f"https://localhost:{camera.port}/snapshot.jpg", ctx)
    finally:
        camera.stop()
