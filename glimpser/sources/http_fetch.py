"""HTTP for camera sources: keep-alive connections to SSRF-checked addresses, redirects, limits.

Every hop's host is checked by the SSRF guard (glimpser.sources.network_guard) and the
connection is made to the address it checked, the name kept for the Host header and, for
HTTPS, for SNI and certificate verification. Credentials go only to the origin the admin
configured: a redirect to another scheme, host or port is followed without them.

This is the standard library's http.client with a small keep-alive pool, not requests: a
snapshot is one small GET, and requests' per-request machinery (merging session settings,
preparing the request, hooks, cookie jars, urllib3's wrappers beneath) cost more CPU than the
HTTP exchange itself — 2.4–3.7× a bare GET; urllib3 alone still cost 1.5–1.7× (measured with
cProfile, docs/benchmarks.md). Idle connections are kept per (scheme, checked address, port,
TLS name), so a camera's next snapshot reuses the connection; the capture threads of a worker
(glimpser.workers) share the pool, each connection used by one thread at a time. Digest
authentication reuses requests' implementation of the header (RFC 7616), nothing else of it.
"""

from __future__ import annotations

import http.client
import re
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urljoin, urlsplit

import certifi
import idna
from requests.auth import HTTPDigestAuth
from requests.utils import parse_dict_header, requote_uri

from glimpser import __version__
from glimpser.sources.base import CaptureContext, CaptureError
from glimpser.sources.network_guard import (
    GuardError,
    IPAddress,
    check_scheme,
    checked_address,
    same_origin,
)

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
HTTP_SCHEMES = ("http", "https")
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# Idle keep-alive connections kept per camera: the capture threads of one process that may
# fetch from the same camera at once.
IDLE_PER_HOST = 8
# Idle connections kept in all (one file descriptor each); beyond this the least recently used
# camera's are closed (it reconnects on its next capture).
MAX_IDLE = 256
# An idle connection older than this is closed rather than reused: a NAT or firewall on the
# way may have dropped it silently, and a request on it would wait out the whole timeout.
MAX_IDLE_SECONDS = 30.0

BASE_HEADERS = {"User-Agent": f"Glimpser/{__version__}", "Accept": "*/*"}

Response = http.client.HTTPResponse
_Key = tuple[str, str, int, str]  # scheme, checked address, port, TLS name


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked address, with SNI and certificate verification for the name."""

    def __init__(self, addr: str, port: int, *, server_hostname: str, timeout: float) -> None:
        super().__init__(addr, port, timeout=timeout, context=_tls_context())
        self.server_hostname = server_hostname

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_hostname)


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    """Certificates verified against certifi's bundle (as requests did), names checked."""
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context(cafile=certifi.where())
    return _tls


class ConnectionPool:
    """Idle keep-alive connections per (scheme, address, port, TLS name), thread-safe: at most
    IDLE_PER_HOST per camera and MAX_IDLE in all (file descriptors are finite), the least
    recently used camera's closed first."""

    def __init__(self) -> None:
        # Per camera, its idle connections with the time each was given back.
        self._idle: OrderedDict[_Key, list[tuple[http.client.HTTPConnection, float]]] = (
            OrderedDict()
        )
        self._count = 0
        self._lock = threading.Lock()

    def take(self, key: _Key) -> http.client.HTTPConnection | None:
        """An idle connection that is still fit to carry a request, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                conn, since = idle.pop()
                self._count -= 1
            if time.monotonic() - since < MAX_IDLE_SECONDS and _reusable(conn.sock):
                return conn
            conn.close()

    def give(self, key: _Key, conn: http.client.HTTPConnection) -> None:
        evicted: list[http.client.HTTPConnection] = []
        with self._lock:
            idle = self._idle.setdefault(key, [])
            self._idle.move_to_end(key)
            if len(idle) < IDLE_PER_HOST:
                idle.append((conn, time.monotonic()))
                self._count += 1
            else:
                evicted.append(conn)
            while self._count > MAX_IDLE:
                oldest = self._idle.popitem(last=False)[1]
                self._count -= len(oldest)
                evicted += [c for c, _ in oldest]
        for old in evicted:
            old.close()

    def clear(self) -> None:
        with self._lock:
            idle = [c for conns in self._idle.values() for c, _ in conns]
            self._idle.clear()
            self._count = 0
        for conn in idle:
            conn.close()


def _reusable(sock: socket.socket | None) -> bool:
    """An idle keep-alive socket may carry the next request only when nothing is waiting on
    it: a readable socket was closed by the server (EOF) or holds bytes nobody asked for, and
    a TLS socket may hold such bytes already decrypted (pending). poll, not select: select
    fails for descriptors from 1024 on."""
    if sock is None:
        return False
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


POOL = ConnectionPool()


@dataclass
class Auth:
    """A camera's credentials: Basic sent with every request to the origin; Digest answers the
    camera's challenge (one retry per 401) and then signs each request to the origin."""

    kind: str  # "basic" or "digest"
    username: str
    password: str = field(repr=False)
    _digest: HTTPDigestAuth | None = field(default=None, repr=False)

    def header(self, url: str) -> str | None:
        """The Authorization header for a GET of `url` before any challenge."""
        if self.kind == "basic":
            return _basic(self.username, self.password)
        if self._digest is not None and self._digest._thread_local.last_nonce:
            return self._digest.build_digest_header("GET", url)
        return None

    def answer(self, challenge: str, url: str) -> str | None:
        """The Authorization header that answers a 401's digest challenge, or None."""
        if self.kind != "digest" or "digest" not in challenge.lower():
            return None
        if self._digest is None:
            self._digest = HTTPDigestAuth(self.username, self.password)
            self._digest.init_per_thread_state()
        chal = re.sub(r"(?i)digest ", "", challenge, count=1)
        self._digest._thread_local.chal = parse_dict_header(chal)
        return self._digest.build_digest_header("GET", url)


def _basic(username: str, password: str) -> str:
    from base64 import b64encode

    token = b64encode(f"{username}:{password}".encode("latin1")).decode("ascii")
    return f"Basic {token}"


def make_auth(kind: str, username: str, password: str) -> Auth | None:
    if kind == "none" or not username:
        return None
    return Auth("digest" if kind == "digest" else "basic", username, password)


@contextmanager
def open_stream(
    url: str, ctx: CaptureContext, timeout: float, auth: Auth | None
) -> Iterator[Response]:
    """GET with every redirect hop checked by the SSRF guard; yields a streaming response.
    `auth` is sent only to the first URL's origin, never to a host a redirect points to."""
    first = url
    for _hop in range(MAX_REDIRECTS + 1):
        credentials = (
            auth if auth is not None and (url is first or same_origin(url, first)) else None
        )
        exchange = _get(url, ctx, timeout, credentials.header(url) if credentials else None)
        response = exchange.response
        if response.status == 401 and credentials is not None:
            answer = credentials.answer(response.headers.get("www-authenticate", ""), url)
            if answer is not None:  # one more try, with the answer to the camera's challenge
                cookies = _cookies(response)
                exchange.close()
                exchange = _get(url, ctx, timeout, answer, cookies)
                response = exchange.response
        if response.status in REDIRECT_CODES and "location" in response.headers:
            url = urljoin(url, response.headers["location"])
            exchange.close()
            continue
        try:
            if response.status != 200:
                raise CaptureError(
                    f"HTTP {response.status} {response.reason or ''} from "
                    f"{urlsplit(url).hostname}".strip()
                )
            yield response
        finally:
            exchange.done()
        return
    raise CaptureError(f"more than {MAX_REDIRECTS} redirects")


@dataclass
class _Exchange:
    key: _Key
    conn: http.client.HTTPConnection
    response: Response

    def done(self) -> None:
        """A response read to its end gives its connection back for the next capture; one cut
        short closes it (unread bytes must never reach the next request)."""
        if self.response.isclosed() and not self.response.will_close:
            POOL.give(self.key, self.conn)
        else:
            self.close()

    def close(self) -> None:
        self.response.close()
        self.conn.close()


def _get(
    url: str,
    ctx: CaptureContext,
    timeout: float,
    authorization: str | None,
    cookies: str | None = None,
) -> _Exchange:
    """One GET, to the address the guard checked for this URL's host."""
    host, port = check_scheme(url, HTTP_SCHEMES)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        addr = checked_address(host, port, ctx)
    except GuardError:
        raise
    except CaptureError as exc:  # the name does not resolve
        raise CaptureError(f"cannot connect to {host}: {_root_cause(exc)}") from None
    host_header = _ascii_host(host) if ":" not in host else f"[{host}]"
    if port is not None:
        host_header += f":{port}"
    headers = {**BASE_HEADERS, "Host": host_header}
    if authorization:
        headers["Authorization"] = authorization
    if cookies:
        headers["Cookie"] = cookies
    # As requests sent it: characters a request line may not carry (spaces, non-ASCII from a
    # camera's URL or its redirect) percent-encoded, existing escapes kept.
    target = requote_uri((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    port = port or (443 if scheme == "https" else 80)
    key: _Key = (scheme, str(addr), port, host if scheme == "https" else "")
    conn = POOL.take(key)
    try:
        if conn is not None:
            try:
                return _Exchange(key, conn, _send(conn, target, headers, timeout))
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()  # the server closed it as we reused it: a new connection
        conn = _connect(scheme, addr, port, host, timeout)
        return _Exchange(key, conn, _send(conn, target, headers, timeout))
    except TimeoutError:
        if conn is not None:
            conn.close()
        raise CaptureError(f"no answer from {host} within {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        if conn is not None:
            conn.close()
        raise CaptureError(f"cannot connect to {host}: {_root_cause(exc)}") from None


def _ascii_host(host: str) -> str:
    """The host name as it goes in the Host header: IDNA for an internationalised name."""
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise CaptureError(f"the host name {host!r} is not a valid domain name") from None


def _connect(
    scheme: str, addr: IPAddress, port: int, host: str, timeout: float
) -> http.client.HTTPConnection:
    connect_timeout = min(timeout, 10)
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = _TLSConnection(str(addr), port, server_hostname=host, timeout=connect_timeout)
    else:
        conn = http.client.HTTPConnection(str(addr), port, timeout=connect_timeout)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _send(
    conn: http.client.HTTPConnection, target: str, headers: dict[str, str], timeout: float
) -> Response:
    conn.sock.settimeout(timeout)  # the connect timeout was shorter; now the read timeout
    conn.request("GET", target, headers=headers)
    if _QUICKACK is not None:
        # Acknowledge the answer's first segment at once. Many HTTP servers (cameras too) send
        # the headers and the body in two writes under Nagle's algorithm: on a reused
        # connection, where Linux delays ACKs, the body then waits ~40 ms for our ACK — a
        # stall per snapshot that also costs CPU (measured: 0.5 ms of CPU and 44 ms per GET
        # without, 0.2 ms and 0.3 ms with; a new connection starts in quick-ACK mode).
        conn.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
    return conn.getresponse()


_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux


def _cookies(response: Response) -> str | None:
    """Cookies a camera set with its 401 challenge, sent back with the answer (as requests'
    digest authentication did)."""
    jar: SimpleCookie = SimpleCookie()
    for value in response.headers.get_all("set-cookie") or []:
        try:
            jar.load(value)
        except CookieError:
            continue
    return "; ".join(f"{k}={m.value}" for k, m in jar.items()) or None


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return text.split(":")[-1].strip() or type(exc).__name__


def iter_available(response: Response) -> Iterator[bytes]:
    """Chunks as they arrive (read1), not once 64 KiB have piled up: an MJPEG camera sends a
    few KiB a frame, and waiting for full chunks would cost a dozen frames of latency."""
    try:
        while chunk := response.read1(CHUNK):
            yield chunk
    except TimeoutError:
        raise CaptureError("the stream stopped sending (timed out)") from None
    except (OSError, http.client.HTTPException) as exc:
        raise CaptureError(f"the stream broke off: {_root_cause(exc)}") from None


def read_body(response: Response, limit: int, deadline: float) -> bytes:
    """The whole body, refusing more than `limit` bytes or reading past the deadline."""
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := response.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise CaptureError(f"the response is larger than {limit // (1024 * 1024)} MB")
            if time.monotonic() > deadline:
                raise CaptureError("the response did not finish in time (timed out)")
            chunks.append(chunk)
    except TimeoutError:
        raise CaptureError("the response did not finish in time (timed out)") from None
    except (OSError, http.client.HTTPException) as exc:
        raise CaptureError(f"the response broke off: {_root_cause(exc)}") from None
    return b"".join(chunks)
