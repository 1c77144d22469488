"""What every sender shares: the send context, the SSRF guard, HTTP failure classification and
reading a channel's stored config. Which module sends a kind: glimpser.notify.registry.

A sender makes exactly ONE attempt. It returns a SendResult only when the receiver answered
success, and raises SendError otherwise: `retryable` for network errors, timeouts, 5xx and 429
(with Retry-After), not for other 4xx, a destination the SSRF guard refuses, or a channel that
cannot work as configured. Retries, backoff, the circuit breaker and the delivery log are the
dispatcher's (glimpser.notify.dispatch).
Error messages name what failed, never a token, password or secret URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from pydantic import ValidationError

from glimpser.config import Settings
from glimpser.media.storage import get_storage
from glimpser.models import Delivery, Event, NotificationChannel
from glimpser.notify.dispatch import SendError, SendResult
from glimpser.notify.message import Message, message_for
from glimpser.notify.schemas import ChannelConfig, error_messages, parse_config
from glimpser.retry_after import retry_after_seconds as parse_retry_after
from glimpser.sources.base import CaptureContext, CaptureError
from glimpser.sources.network_guard import (
    GuardError,
    address_problem,
    guarded_session,
    resolve,
)

__all__ = [
    "SendContext",
    "SendError",
    "SendResult",
    "check_target",
    "http_failure",
    "parse_retry_after",
    "scrub",
    "send_event",
    "stored_config",
]


@dataclass
class SendContext:
    """What a send needs besides the channel's config and the message.

    `session` is reused across sends by the caller when it likes (connection pooling);
    `delivery_id`, when known, is passed to receivers (X-Glimpser-Delivery) so they can drop
    a duplicate even if one ever reached them.
    """

    settings: Settings
    session: requests.Session = field(default=None)  # type: ignore[assignment]
    delivery_id: int | None = None

    def __post_init__(self) -> None:
        if self.session is None:  # every connection and redirect hop passes the SSRF guard
            self.session = guarded_session(self.guard)

    @property
    def guard(self) -> CaptureContext:
        return CaptureContext.from_settings(self.settings)


def check_host(host: str, port: int | None, ctx: SendContext) -> None:
    """Refuse a host that resolves to an address the SSRF guard forbids.

    The same policy as capture sources (glimpser.sources.network_guard): link-local and cloud
    metadata never, loopback only with GLIMPSER_ALLOW_LOOPBACK_SOURCES=1, denied CIDRs never.
    A name that does not resolve may be a passing DNS problem: retryable.
    """
    host = host.strip("[]")
    try:
        addresses = resolve(host, port)
    except CaptureError as exc:
        raise SendError(str(exc), retryable=True) from None
    for address in addresses:
        problem = address_problem(address, ctx.guard)
        if problem:
            raise SendError(f"refused to connect to {host} ({address}): {problem}", retryable=False)


def check_target(url: str, ctx: SendContext, schemes: tuple[str, ...] = ("http", "https")) -> None:
    """The SSRF guard for a URL an admin configured (webhook, CAP endpoint, Apprise json://)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise SendError(f"scheme {scheme or '(none)'}:// is not allowed here", retryable=False)
    if not parts.hostname:
        raise SendError("the URL has no host", retryable=False)
    try:
        port = parts.port
    except ValueError:
        raise SendError("the URL has an invalid port", retryable=False) from None
    check_host(parts.hostname, port, ctx)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Text with every (non-trivial) secret value replaced, for errors a receiver echoed back."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def short(text: str, limit: int = 300) -> str:
    """One line, at most `limit` characters (receivers' answers go into the delivery log)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def http_failure(
    what: str, response: requests.Response, secrets: Iterable[str] = (), detail: str = ""
) -> SendError:
    """The SendError for a non-2xx answer: 429 and 5xx retryable (Retry-After kept), others not."""
    code = response.status_code
    retryable = code == 429 or code >= 500
    retry_after = parse_retry_after(response.headers.get("Retry-After")) if retryable else None
    if 300 <= code < 400:
        message = (
            f"{what} answered {code} (a redirect; redirects are not followed: "
            "configure the final URL)"
        )
    else:
        if not detail:
            try:
                detail = response.text
            except (UnicodeDecodeError, LookupError):
                detail = ""
        message = f"{what} answered HTTP {code}"
        if detail:
            message += f": {short(scrub(detail, secrets))}"
    return SendError(message, retryable=retryable, status_code=code, retry_after=retry_after)


def network_failure(what: str, exc: requests.RequestException, timeout: float) -> SendError:
    """Timeouts and connection errors: retryable. The message names the kind of failure only
    (requests' own messages repeat the URL, which may carry a token). A connection the SSRF
    guard refused (a redirect hop, a name resolved again) is final, with the guard's reason
    (host and address only)."""
    if isinstance(exc, GuardError):
        return SendError(str(exc), retryable=False)
    if isinstance(exc, requests.Timeout):
        return SendError(f"{what} did not answer within {timeout:g} s", retryable=True)
    if isinstance(exc, requests.ConnectionError):
        return SendError(f"could not connect to {what} ({type(exc).__name__})", retryable=True)
    return SendError(f"request to {what} failed ({type(exc).__name__})", retryable=True)


def missing_secrets_error(config: ChannelConfig) -> SendError | None:
    missing = config.missing_secrets()
    if not missing:
        return None
    return SendError(
        f"the channel has no {', '.join(missing)} (set it in the channel's settings)",
        retryable=False,
    )


def stored_config(channel: NotificationChannel) -> ChannelConfig:
    """The channel's stored config, validated by its kind's schema; a SendError (not retryable)
    naming the problems when it is invalid (a config stored by an older version, say)."""
    try:
        return parse_config({**(channel.config or {}), "kind": channel.kind})
    except ValidationError as exc:
        problems = "; ".join(f"{k or 'config'}: {v}" for k, v in error_messages(exc).items())
        raise SendError(
            f"the channel's settings are invalid ({problems})", retryable=False
        ) from None


SendFunction = Callable[[ChannelConfig, Message, SendContext], SendResult]


def send_event(
    send: SendFunction,
    channel: NotificationChannel,
    event: Event,
    delivery: Delivery | None,
    settings: Settings,
) -> SendResult:
    """One `send(config, message, ctx)` for a delivery: the channel's stored config, the event's
    message (glimpser.notify.message) and a fresh session, closed afterwards."""
    config = stored_config(channel)
    message = message_for(event, settings, get_storage(settings))
    ctx = SendContext(settings, delivery_id=delivery.id if delivery is not None else None)
    try:
        return send(config, message, ctx)
    finally:
        ctx.session.close()
