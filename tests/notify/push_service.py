"""A Web Push service on loopback, for tests: it checks what a real push service checks.

Each test subscription gets its own P-256 key pair and auth secret (as a browser makes them), so
the service can decrypt the aes128gcm payload with http_ece — proving the encryption — and it
verifies the VAPID JWT (ES256 signature by the key in `k`, audience, expiry, subject).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscriber:
    """One browser's subscription: the keys only it (and this test) knows."""

    path: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self, base_url: str) -> dict[str, Any]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": f"{base_url}{self.path}",
            "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)},
        }


@dataclass
class Push:
    path: str
    headers: dict[str, str]
    payload: dict[str, Any]
    vapid_claims: dict[str, Any]
    vapid_key: str


def verify_vapid(authorization: str) -> tuple[dict[str, Any], str]:
    """Check 'vapid t=<JWT>, k=<key>' (RFC 8292): ES256 signed by k. Returns (claims, k)."""
    assert authorization.startswith("vapid "), authorization
    parts = dict(p.strip().split("=", 1) for p in authorization[6:].split(","))
    token, key = parts["t"], parts["k"]
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = json.loads(unb64url(header_b64))
    assert header["alg"] == "ES256", header
    signature = unb64url(signature_b64)
    assert len(signature) == 64
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
    # Raises InvalidSignature when the token was not signed by k.
    public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    return json.loads(unb64url(claims_b64)), key


class PushService:
    def __init__(self) -> None:
        self.subscribers: dict[str, Subscriber] = {}
        self.pushes: list[Push] = []
        self.statuses: dict[str, deque[int]] = {}  # path → scripted statuses, then 201
        self.problems: list[str] = []  # anything a real push service would reject
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def subscriber(self, name: str) -> Subscriber:
        sub = Subscriber(f"/push/{name}")
        self.subscribers[sub.path] = sub
        return sub

    def answer(self, name: str, *statuses: int) -> None:
        self.statuses.setdefault(f"/push/{name}", deque()).extend(statuses)

    def pushes_to(self, name: str) -> list[Push]:
        return [p for p in self.pushes if p.path == f"/push/{name}"]

    def start(self) -> PushService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 201
                scripted = service.statuses.get(self.path)
                if scripted:
                    status = scripted.popleft()
                if status == 201:
                    try:
                        service._accept(self.path, dict(self.headers.items()), body)
                    except Exception as exc:  # recorded; the test asserts there were none
                        service.problems.append(f"{type(exc).__name__}: {exc}")
                        status = 400
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _accept(self, path: str, headers: dict[str, str], body: bytes) -> None:
        headers = {k.lower(): v for k, v in headers.items()}
        subscriber = self.subscribers[path]
        assert headers.get("content-encoding") == "aes128gcm", headers
        assert int(headers.get("ttl", "-1")) >= 0, headers
        claims, key = verify_vapid(headers["authorization"])
        assert claims["aud"] == self.url, claims
        assert claims["exp"] > time.time(), claims
        assert claims["sub"].startswith(("mailto:", "https://")), claims
        plain = http_ece.decrypt(
            body, private_key=subscriber.private_key, auth_secret=subscriber.auth
        )
        self.pushes.append(Push(path, headers, json.loads(plain), claims, key))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
