"""Loopback receivers for notification tests: real servers, no mocks.

- HttpReceiver: an HTTP server on 127.0.0.1 that records every request and answers with
  scripted replies (status, headers, body, an optional delay for timeouts). Used as a webhook
  receiver, as the Pushover API stand-in (GLIMPSER_PUSHOVER_API_URL), for CAP endpoints and as
  the target of Apprise json:// URLs.
- SmtpReceiver: an aiosmtpd SMTP server on 127.0.0.1 that keeps every message it accepts, with
  optional AUTH and scripted RCPT refusals.

Both work as context managers or with start()/stop():

    with HttpReceiver() as receiver:
        receiver.script(Reply(500), Reply(200))
        ... send to receiver.url("/hook") ...
        assert receiver.requests[0].json()["title"] == "..."
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import free_port

# --- HTTP -------------------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer. A dict/list body is sent as JSON."""

    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (ended early by stop())


@dataclass
class FormPart:
    name: str
    content: bytes
    filename: str | None
    content_type: str

    @property
    def text(self) -> str:
        return self.content.decode()


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, FormPart]:
        """The parts of a multipart/form-data body, by field name."""
        content_type = self.header("content-type") or ""
        assert content_type.startswith("multipart/form-data"), content_type
        raw = f"Content-Type: {content_type}\r\n\r\n".encode() + self.body
        message = BytesParser(policy=policy.HTTP).parsebytes(raw)
        parts: dict[str, FormPart] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            parts[str(name)] = FormPart(
                name=str(name),
                content=part.get_payload(decode=True) or b"",
                filename=part.get_filename(),
                content_type=part.get_content_type(),
            )
        return parts


class HttpReceiver:
    """Records requests; answers with scripted replies, then with `default`."""

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply(200, {"ok": True})
        self.requests: list[ReceivedRequest] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def script(self, *replies: Reply) -> HttpReceiver:
        """Answer the next requests with these replies, in order."""
        with self._lock:
            self._replies.extend(replies)
        return self

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else self.default

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver._record(
                    ReceivedRequest(
                        method=self.command,
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                    )
                )
                reply = receiver._next_reply()
                if reply.delay and receiver._stopping.wait(reply.delay):
                    return
                payload = reply.body
                content_type = "text/plain; charset=utf-8"
                if isinstance(payload, dict | list):
                    payload = json.dumps(payload).encode()
                    content_type = "application/json"
                elif isinstance(payload, str):
                    payload = payload.encode()
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": content_type, **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle  # noqa: N815

        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- SMTP -------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    auth_user: str | None

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.content)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Handler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, N802
        refusal = self.receiver.refuse.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802
        login = session.auth_data.login.decode() if session.auth_data else None
        self.receiver.messages.append(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=bytes(envelope.original_content or envelope.content),
                auth_user=login,
            )
        )
        return "250 Message accepted for delivery"


@dataclass(frozen=True)
class TestCertificate:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""

    ca_file: Path  # trust this (e.g. SSL_CERT_FILE) to make the server's certificate valid
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificate(directory: Path) -> TestCertificate:
    """Create a CA and a certificate for 127.0.0.1 (and localhost) in `directory`."""
    now = datetime.now(UTC)

    def build(subject: str, issuer: x509.Name | None, key, signer, ca: bool) -> x509.Certificate:  # noqa: ANN001
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName("localhost"),
                    ]
                ),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("Glimpser test CA", None, ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build("127.0.0.1", ca_cert.subject, key, ca_key, ca=False)
    directory.mkdir(parents=True, exist_ok=True)
    files = TestCertificate(
        directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    )
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


class SmtpReceiver:
    """An SMTP server on loopback. `credentials` (user, password) enables AUTH; `refuse` maps
    a recipient to the SMTP reply it gets. With `certificate`, `tls="starttls"` offers and
    requires STARTTLS, `tls="tls"` speaks TLS from the first byte (SMTPS)."""

    def __init__(
        self,
        credentials: tuple[str, str] | None = None,
        *,
        tls: str = "none",
        certificate: TestCertificate | None = None,
    ) -> None:
        assert tls in ("none", "starttls", "tls")
        assert (tls == "none") == (certificate is None)
        self.credentials = credentials
        self.tls = tls
        self.certificate = certificate
        self.messages: list[ReceivedMail] = []
        self.refuse: dict[str, str] = {}
        self.port = 0
        self._controller: Controller | None = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
        ok = (
            self.credentials is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def start(self) -> SmtpReceiver:
        self.port = free_port()
        options: dict[str, Any] = {}
        if self.credentials is not None:
            options = {"authenticator": self._authenticate, "auth_require_tls": False}
        if self.certificate is not None and self.tls == "starttls":
            options.update(tls_context=self.certificate.server_context(), require_starttls=True)
        if self.certificate is not None and self.tls == "tls":
            options["ssl_context"] = self.certificate.server_context()
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, **options
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def __enter__(self) -> SmtpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
