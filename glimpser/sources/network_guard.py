"""SSRF guard: which addresses a source may reach.

Private LAN ranges are allowed (cameras live there). Link-local and cloud-metadata addresses
are always refused; loopback only with GLIMPSER_ALLOW_LOOPBACK_SOURCES=1; networks in
GLIMPSER_SOURCE_DENY_CIDRS are refused. Names are resolved here, at capture time.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from glimpser.sources.base import CaptureContext, CaptureError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services that are not link-local (link-local is refused as a whole).
_METADATA = [ipaddress.ip_network(n) for n in ("100.100.100.200/32", "fd00:ec2::254/128")]


def address_problem(addr: IPAddress, ctx: CaptureContext) -> str | None:
    """Why a source may not reach this address, or None."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
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
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


def check_url(url: str, ctx: CaptureContext, schemes: tuple[str, ...]) -> None:
    """Refuse a URL whose scheme or (resolved) addresses the policy does not allow."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise CaptureError(
            f"scheme {scheme or '(none)'}:// is not allowed here (allowed: {', '.join(schemes)})"
        )
    host = parts.hostname
    if not host:
        raise CaptureError("the URL has no host")
    for addr in resolve(host, parts.port):
        problem = address_problem(addr, ctx)
        if problem:
            raise CaptureError(f"refused to connect to {host} ({addr}): {problem}")
