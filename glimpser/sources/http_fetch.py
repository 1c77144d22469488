"""HTTP for camera sources: pooled guarded sessions, SSRF-checked redirects, limits.

Every connection goes through the SSRF guard's session (glimpser.sources.network_guard), which
checks each hop's host and connects to the checked address. Credentials go only to the origin
the admin configured: a redirect to another scheme, host or port is followed without them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urljoin, urlsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth, HTTPDigestAuth

from glimpser import __version__
from glimpser.sources.base import CaptureContext, CaptureError
from glimpser.sources.network_guard import GuardError, check_scheme, guarded_session, same_origin

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
HTTP_SCHEMES = ("http", "https")

_sessions: dict[tuple[bool, tuple[str, ...]], requests.Session] = {}


def session(ctx: CaptureContext) -> requests.Session:
    """Keep-alive connections are reused across captures of the same camera (one guarded
    session per guard policy, which is one per process outside tests)."""
    key = (ctx.allow_loopback, ctx.deny_cidrs)
    if key not in _sessions:
        new = guarded_session(ctx)
        new.headers["User-Agent"] = f"Glimpser/{__version__}"
        _sessions[key] = new
    return _sessions[key]


def make_auth(kind: str, username: str, password: str) -> AuthBase | None:
    if kind == "none" or not username:
        return None
    return (
        HTTPDigestAuth(username, password)
        if kind == "digest"
        else HTTPBasicAuth(username, password)
    )


@contextmanager
def open_stream(
    url: str, ctx: CaptureContext, timeout: float, auth: AuthBase | None
) -> Iterator[requests.Response]:
    """GET with every redirect hop checked by the SSRF guard; yields a streaming response.
    `auth` is sent only to the first URL's origin, never to a host a redirect points to."""
    first = url
    for _hop in range(MAX_REDIRECTS + 1):
        check_scheme(url, HTTP_SCHEMES)  # the address: checked and pinned by the session
        try:
            response = session(ctx).get(
                url,
                auth=auth if same_origin(url, first) else None,
                timeout=(min(timeout, 10), timeout),
                stream=True,
                allow_redirects=False,
            )
        except GuardError:
            raise
        except requests.Timeout:
            raise CaptureError(
                f"no answer from {urlsplit(url).hostname} within {timeout:g} s"
            ) from None
        except requests.ConnectionError as exc:
            raise CaptureError(
                f"cannot connect to {urlsplit(url).hostname}: {_root_cause(exc)}"
            ) from None
        except requests.RequestException as exc:
            raise CaptureError(f"request failed: {type(exc).__name__}") from None
        if response.is_redirect and "location" in response.headers:
            url = urljoin(url, response.headers["location"])
            response.close()
            continue
        try:
            if response.status_code != 200:
                raise CaptureError(
                    f"HTTP {response.status_code} {response.reason or ''} from "
                    f"{urlsplit(url).hostname}".strip()
                )
            yield response
        finally:
            response.close()
        return
    raise CaptureError(f"more than {MAX_REDIRECTS} redirects")


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return text.split(":")[-1].strip() or type(exc).__name__


def iter_available(response: requests.Response) -> Iterator[bytes]:
    """Chunks as they arrive (read1), not once 64 KiB have piled up: an MJPEG camera sends a
    few KiB a frame, and waiting for full chunks would cost a dozen frames of latency."""
    while chunk := response.raw.read1(CHUNK, decode_content=True):
        yield chunk


def read_body(response: requests.Response, limit: int, deadline: float) -> bytes:
    """The whole body, refusing more than `limit` bytes or reading past the deadline."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(CHUNK):
        size += len(chunk)
        if size > limit:
            raise CaptureError(f"the response is larger than {limit // (1024 * 1024)} MB")
        if time.monotonic() > deadline:
            raise CaptureError("the response did not finish in time (timed out)")
        chunks.append(chunk)
    return b"".join(chunks)
