"""Real peers for capture tests, on loopback: a camera HTTP server, a static media server,
the GStreamer RTSP server from ../shared/fixtures, and test media made by ffmpeg."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import threading
import time
from base64 import b64decode
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image, ImageDraw

# ../shared beside the repository (as in CI); GLIMPSER_TEST_SHARED points elsewhere.
SHARED = Path(
    os.environ.get("GLIMPSER_TEST_SHARED") or Path(__file__).resolve().parents[2] / "shared"
)
RTSP_SERVER = SHARED / "fixtures" / "rtsp_server.py"

CAMERA_USER, CAMERA_PASSWORD = "cam", "s3cret-pass"


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (320, 240), label: str = "") -> bytes:
    image = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 60, 60), fill=(255 - color[0], 255 - color[1], 255 - color[2]))
    if label:
        draw.text((80, 20), label, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


class CameraState:
    """What the camera server shows; tests change it to make the picture change."""

    def __init__(self) -> None:
        self.picture = jpeg((30, 90, 160), label="one")
        self.requests: list[str] = []
        self.mjpeg_clients = 0
        self.lock = threading.Lock()


class CameraHandler(BaseHTTPRequestHandler):
    state: CameraState
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _basic_ok(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        return b64decode(header[6:]).decode() == f"{CAMERA_USER}:{CAMERA_PASSWORD}"

    def _digest_ok(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Digest "):
            return False
        parts = dict(p.strip().split("=", 1) for p in header[7:].split(","))
        parts = {k: v.strip('"') for k, v in parts.items()}
        ha1 = hashlib.md5(f"{CAMERA_USER}:cam:{CAMERA_PASSWORD}".encode()).hexdigest()  # noqa: S324
        ha2 = hashlib.md5(f"GET:{parts.get('uri')}".encode()).hexdigest()  # noqa: S324
        expected = hashlib.md5(  # noqa: S324
            f"{ha1}:{parts.get('nonce')}:{parts.get('nc')}:{parts.get('cnonce')}:auth:{ha2}".encode()
        ).hexdigest()
        return parts.get("response") == expected

    def do_GET(self) -> None:  # noqa: N802
        self.state.requests.append(self.path)
        path = self.path.split("?")[0]
        if path == "/snapshot.jpg":
            self._send(200, self.state.picture, "image/jpeg")
        elif path == "/basic.jpg":
            if self._basic_ok():
                self._send(200, self.state.picture, "image/jpeg")
            else:
                self._send(401, b"no", "text/plain", {"WWW-Authenticate": 'Basic realm="cam"'})
        elif path == "/digest.jpg":
            if self._digest_ok():
                self._send(200, self.state.picture, "image/jpeg")
            else:
                self._send(
                    401,
                    b"no",
                    "text/plain",
                    {
                        "WWW-Authenticate": 'Digest realm="cam", qop="auth", nonce="abc123", '
                        'opaque="xyz", algorithm=MD5'
                    },
                )
        elif path == "/image.png":
            out = io.BytesIO()
            Image.new("RGB", (200, 100), (10, 200, 10)).save(out, "PNG")
            self._send(200, out.getvalue(), "image/png")
        elif path == "/page.html":
            self._send(200, b"<html><body>not a picture</body></html>", "text/html")
        elif path == "/redirect-to-metadata":
            self._send(302, b"", "text/plain", {"Location": "http://169.254.169.254/latest/"})
        elif path == "/redirect-to-snapshot":
            self._send(302, b"", "text/plain", {"Location": "/snapshot.jpg"})
        elif path == "/stall":
            time.sleep(30)  # accepts, never answers in time
        elif path == "/stream.mjpg":
            self._mjpeg()
        else:
            self._send(404, b"not found", "text/plain")

    def _mjpeg(self) -> None:
        with self.state.lock:
            self.state.mjpeg_clients += 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace;boundary=frame")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            for _ in range(50):
                frame = self.state.picture
                self.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\n"
                    + f"Content-Length: {len(frame)}\r\n\r\n".encode()
                    + frame
                    + b"\r\n"
                )
                self.wfile.flush()
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self.state.lock:
                self.state.mjpeg_clients -= 1
            self.close_connection = True


class Server:
    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self.httpd = httpd
        self.port = httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        """Clients hanging up mid-stream (MJPEG readers do) are normal here, not errors."""


def start_camera_server() -> tuple[Server, CameraState]:
    state = CameraState()
    handler = type("Handler", (CameraHandler,), {"state": state})
    httpd = QuietServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    return Server(httpd), state


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def start_file_server(root: Path) -> Server:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietFiles, directory=str(root)))
    httpd.daemon_threads = True
    return Server(httpd)


def make_media(root: Path) -> Path:
    """test.mp4 (6 s, moving test pattern), its HLS copy, and a page with a <video> tag."""
    root.mkdir(parents=True, exist_ok=True)
    mp4 = root / "test.mp4"
    if not mp4.exists():
        subprocess.run(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=10",
                "-t",
                "6",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-g",
                "10",
                str(mp4),
            ],
            check=True,
        )
        (root / "hls").mkdir(exist_ok=True)
        subprocess.run(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(mp4),
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_time",
                "1",
                "-hls_playlist_type",
                "vod",
                str(root / "hls" / "index.m3u8"),
            ],
            check=True,
        )
        (root / "page.html").write_text("<html><body><video src=test.mp4></video></body></html>")
    return mp4


class RtspServer:
    def __init__(self, mp4: Path) -> None:
        from tests.helpers import free_port

        self.port = free_port()
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(RTSP_SERVER), str(self.port), str(mp4)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": ""},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if "ready" not in line:
            self.proc.kill()
            raise RuntimeError(f"RTSP server did not start: {line}")
        self.url = f"rtsp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
