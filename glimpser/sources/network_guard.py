"""SSRF guard: which addresses a source or a notification channel may reach, and connections
made only to the address that was checked.

Private LAN ranges are allowed (cameras live there). Link-local and cloud-metadata addresses
are always refused; loopback only with GLIMPSER_ALLOW_LOOPBACK_SOURCES=1; networks in
GLIMPSER_SOURCE_DENY_CIDRS are refused. IPv6 addresses that carry an IPv4 address (mapped
``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, 6to4, NAT64) are judged by that IPv4 address.

Checking a URL once is not enough: an HTTP client resolves the name again (a DNS server can
answer differently the second time, "rebinding") and follows redirects to anywhere. So every
request is made through one of two doors, both built on `checked_address()` (resolve once, check
every address, connect to the one checked):

- `guarded_session()`: a requests Session whose adapter checks the host of every request it
  sends (each redirect hop included) and connects to the checked address, keeping the name for
  the Host header and for TLS (SNI and certificate verification). Used by every notification
  sender that speaks HTTP. HTTP camera sources do the same with `checked_address()` directly
  (glimpser.sources.http_fetch: http.client, cheaper per snapshot than requests).
- `GuardProxy`: a small HTTP proxy on loopback for programs that take a proxy setting (ffmpeg
  and yt-dlp). Every request they make, redirects, HLS variants, segments and keys included,
  goes through it and is checked the same way; HTTPS is tunnelled with CONNECT to the checked
  address.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from glimpser.schema_helpers import url_origin
from glimpser.sources.base import CaptureContext, CaptureError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services that are not link-local (link-local is refused as a whole).
_METADATA = [ipaddress.ip_network(n) for n in ("100.100.100.200/32", "fd00:ec2::254/128")]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class GuardError(CaptureError, requests.ConnectionError):
    """A request was refused by the SSRF guard. A CaptureError, so sources report it as is, and
    a requests ConnectionError, so HTTP clients that catch those (senders, pywebpush) do too."""


def embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, 6to4, NAT64), if any."""
    if addr.ipv4_mapped:
        return addr.ipv4_mapped
    if addr.sixtofour:
        return addr.sixtofour
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    value = int(addr)
    # IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks); not :: or ::1.
    if 1 < value < 2**32:
        return ipaddress.IPv4Address(value)
    return None


def address_problem(addr: IPAddress, ctx: CaptureContext) -> str | None:
    """Why a source may not reach this address, or None."""
    if isinstance(addr, ipaddress.IPv6Address):
        inner = embedded_ipv4(addr)
        if inner is not None:
            problem = address_problem(inner, ctx)
            if problem:
                return problem
        if addr.teredo and address_problem(addr.teredo[1], ctx):
            return "the address embeds a refused IPv4 address (Teredo)"
    if addr.is_link_local or any(addr in net for net in _METADATA):
        return "link-local and cloud metadata addresses are never allowed"
    if addr.is_unspecified or addr.is_multicast:
        return "not a host address"
    if addr.is_loopback and not ctx.allow_loopback:
        return "loopback addresses are not allowed (GLIMPSER_ALLOW_LOOPBACK_SOURCES=1 allows them)"
    for cidr in ctx.deny_cidrs:
        if addr in ipaddress.ip_network(cidr, strict=False):
            return f"the address is in a denied network ({cidr})"
    return None


def resolve(host: str, port: int | None = None) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CaptureError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    except UnicodeError:
        raise CaptureError(f"cannot resolve host {host!r}: not a valid name") from None
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


def public_problem(addr: IPAddress, ctx: CaptureContext) -> str | None:
    """Stricter than `address_problem`, for URLs any signed-in user may supply (Web Push
    endpoints): the public internet only (loopback still with GLIMPSER_ALLOW_LOOPBACK_SOURCES=1)."""
    problem = address_problem(addr, ctx)
    if problem:
        return problem
    inner = embedded_ipv4(addr) if isinstance(addr, ipaddress.IPv6Address) else None
    for candidate in (addr, inner) if inner is not None else (addr,):
        if candidate.is_loopback and ctx.allow_loopback:
            continue
        if not candidate.is_global:
            return "the address is not on the public internet"
    return None


def checked_address(
    host: str, port: int | None, ctx: CaptureContext, *, public_only: bool = False
) -> IPAddress:
    """Resolve `host` once, refuse it if ANY of its addresses is refused, and return the
    address to connect to. Connecting anywhere else (resolving again) would reopen the hole.
    `public_only`: the public internet only (see `public_problem`)."""
    host = host.strip("[]")
    addresses = resolve(host, port)
    if not addresses:
        raise CaptureError(f"cannot resolve host {host!r}")
    for addr in addresses:
        problem = public_problem(addr, ctx) if public_only else address_problem(addr, ctx)
        if problem:
            raise GuardError(f"refused to connect to {host} ({addr}): {problem}")
    return addresses[0]


def check_scheme(url: str, schemes: tuple[str, ...]) -> tuple[str, int | None]:
    """Refuse a URL whose scheme is not allowed or that has no host; return (host, port)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise CaptureError(
            f"scheme {scheme or '(none)'}:// is not allowed here (allowed: {', '.join(schemes)})"
        )
    host = parts.hostname
    if not host:
        raise CaptureError("the URL has no host")
    try:
        return host, parts.port
    except ValueError:
        raise CaptureError("the URL has an invalid port") from None


def check_url(url: str, ctx: CaptureContext, schemes: tuple[str, ...]) -> IPAddress:
    """Refuse a URL whose scheme or (resolved) addresses the policy does not allow; return the
    checked address (connect to it, not to the name, see `checked_address`)."""
    host, port = check_scheme(url, schemes)
    return checked_address(host, port, ctx)


def with_address(url: str, addr: IPAddress) -> str:
    """The URL with its host replaced by the checked address (userinfo and port kept)."""
    parts = urlsplit(url)
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    userinfo, _, _hostport = parts.netloc.rpartition("@")
    netloc = (f"{userinfo}@" if userinfo else "") + host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs share scheme, host and port (credentials may go to the same origin)."""
    return url_origin(a) == url_origin(b)


# --- requests: connect to the checked address ------------------------------------------------


class GuardedAdapter(HTTPAdapter):
    """Checks the host of every request it sends (every redirect hop goes through here) and
    connects to the address it checked; the name stays in the Host header and, for HTTPS, in
    SNI and certificate verification."""

    def __init__(self, ctx: CaptureContext, *, public_only: bool = False, **kwargs: Any) -> None:
        self.guard = ctx
        self.public_only = public_only
        super().__init__(**kwargs)

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        original = request
        url = request.url or ""
        parts = urlsplit(url)
        if not parts.hostname:
            raise GuardError("the URL has no host")
        try:
            port = parts.port
        except ValueError:
            raise GuardError("the URL has an invalid port") from None
        try:
            addr = checked_address(parts.hostname, port, self.guard, public_only=self.public_only)
        except GuardError:
            raise
        except CaptureError as exc:  # the name does not resolve: as requests would say it
            raise requests.ConnectionError(str(exc)) from None
        pinned = request.copy()
        pinned.url = with_address(url, addr)
        host_header = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if port is not None:
            host_header += f":{port}"
        pinned.headers["Host"] = host_header
        pinned._guard_hostname = parts.hostname  # type: ignore[attr-defined]
        response = super().send(pinned, **kwargs)
        response.url = url
        response.request = original
        return response

    def build_connection_pool_key_attributes(  # type: ignore[override]
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        hostname = getattr(request, "_guard_hostname", None)
        if hostname and host_params.get("scheme") == "https":
            pool_kwargs["server_hostname"] = hostname
            pool_kwargs["assert_hostname"] = hostname if verify else False
        return host_params, pool_kwargs


def guarded_session(ctx: CaptureContext, *, public_only: bool = False) -> requests.Session:
    """A requests Session whose every connection (redirect hops included) passes the guard.
    Environment proxies are ignored: a proxy would connect on the guard's behalf.
    `public_only` for URLs any user may supply (Web Push endpoints): see `public_problem`."""
    session = requests.Session()
    session.trust_env = False
    adapter = GuardedAdapter(ctx, public_only=public_only)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --- a checking proxy for ffmpeg and yt-dlp --------------------------------------------------

_PROXY_TIMEOUT = 30.0
_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te"}


class _ProxyServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    guard: CaptureContext
    refusals: list[str]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client or upstream hanging up mid-transfer is normal for a media reader."""


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _refuse(self, code: int, reason: str) -> None:
        self.server.refusals.append(reason)
        body = reason.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _connect(self, host: str, port: int) -> socket.socket | None:
        try:
            addr = checked_address(host, port, self.server.guard)
        except CaptureError as exc:
            self._refuse(403, str(exc))
            return None
        try:
            return socket.create_connection((str(addr), port), timeout=_PROXY_TIMEOUT)
        except OSError as exc:
            self._refuse(502, f"cannot connect to {host}: {exc.strerror or exc}")
            return None

    def do_CONNECT(self) -> None:  # noqa: N802
        host, _, port = self.path.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()):
            self._refuse(400, "bad CONNECT target")
            return
        upstream = self._connect(host, int(port))
        if upstream is None:
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        _pipe(self.connection, upstream)

    def _forward(self) -> None:
        parts = urlsplit(self.path)
        if parts.scheme.lower() != "http" or not parts.hostname:
            self._refuse(400, "only absolute http:// URLs are proxied (HTTPS uses CONNECT)")
            return
        try:
            port = parts.port or 80
        except ValueError:
            self._refuse(400, "the URL has an invalid port")
            return
        upstream = self._connect(parts.hostname, port)
        if upstream is None:
            return
        self.close_connection = True
        with upstream:
            target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
            lines = [f"{self.command} {target} HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS]
            lines.append("Connection: close")
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            length = int(self.headers.get("Content-Length") or 0)
            if length > 0:
                upstream.sendall(self.rfile.read(length))
            while data := upstream.recv(65536):
                self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_OPTIONS = _forward  # noqa: N815


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes (a CONNECT tunnel)."""
    with b:
        sockets = [a, b]
        while True:
            readable, _, _ = select.select(sockets, [], [], _PROXY_TIMEOUT)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)


class GuardProxy:
    """A loopback HTTP proxy that checks (and pins) every host a client asks it to reach.

    `url` is what to give ffmpeg (`http_proxy`) or yt-dlp (`proxy`). `refusals` lists what it
    refused, so a caller can report the guard's reason instead of a bare "403"."""

    def __init__(self, ctx: CaptureContext) -> None:
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.guard = ctx
        self._server.refusals = []
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()

    @property
    def refusals(self) -> list[str]:
        return list(self._server.refusals)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def env(self) -> dict[str, str]:
        """An environment for a child process that sends all its HTTP(S) through the proxy."""
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy",)}
        env["http_proxy"] = self.url
        env["https_proxy"] = self.url
        return env


@contextmanager
def guard_proxy(ctx: CaptureContext) -> Iterator[GuardProxy]:
    """A GuardProxy for the duration of one grab or one page resolution."""
    proxy = GuardProxy(ctx)
    try:
        yield proxy
    finally:
        proxy.close()


_shared: dict[tuple[bool, tuple[str, ...]], GuardProxy] = {}
_shared_lock = threading.Lock()


def shared_proxy(ctx: CaptureContext) -> GuardProxy:
    """One GuardProxy per guard policy for the life of the process, for long-running ffmpeg
    readers (glimpser.capture.readers) that outlive any single grab."""
    key = (ctx.allow_loopback, ctx.deny_cidrs)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = GuardProxy(ctx)
        return _shared[key]
