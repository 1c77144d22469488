"""Apprise: one notification to every Apprise URL of the channel (Telegram, Slack, ntfy, ...).

Apprise does the talking and reports success or failure per service, but not the receiver's
HTTP status: deliveries through Apprise never have a response code, and every failure is
treated as possibly temporary (retryable) — except a partial one. When some URLs were reached
and others not, the delivery fails without a retry, because a retry would notify the reached
services a second time; the error names the services that failed.

The URLs hold tokens, so errors name services by Apprise's privacy-masked URL only. URLs of the
custom HTTP kinds (json://, xml://, form:// and their "s" variants) point wherever an admin
likes, so their host passes the same SSRF guard as webhooks; the other kinds reach the named
cloud service (or a host Apprise derives from the URL) and are not checked here.
"""

from __future__ import annotations

import os
import tempfile
from urllib.parse import urlsplit

import redis

from glimpser.config import Settings
from glimpser.models import Delivery, Event, NotificationChannel
from glimpser.notify.dispatch import SendError, SendResult
from glimpser.notify.message import Message
from glimpser.notify.schemas import AppriseConfig, ChannelConfig
from glimpser.notify.senders import (
    SendContext,
    check_host,
    missing_secrets_error,
    scrub,
    send_event,
    short,
)

# Apprise kinds that POST to an arbitrary host: checked by the SSRF guard.
GUARDED_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms"})
TIMEOUT_SECONDS = 60  # the whole Apprise call; each service has its own shorter limits


def _guard(urls: list[str], ctx: SendContext) -> None:
    for number, url in enumerate(urls, start=1):
        parts = urlsplit(url)
        if parts.scheme.lower() not in GUARDED_SCHEMES:
            continue
        if not parts.hostname:
            raise SendError(f"Apprise URL {number} has no host", retryable=False)
        try:
            port = parts.port
        except ValueError:
            raise SendError(f"Apprise URL {number} has an invalid port", retryable=False) from None
        check_host(parts.hostname, port, ctx)


def send(config: ChannelConfig, message: Message, ctx: SendContext) -> SendResult:
    """Notify every URL once through Apprise (title, body and link; snapshot as attachment)."""
    assert isinstance(config, AppriseConfig)
    missing = missing_secrets_error(config)
    if missing:
        raise missing
    import apprise  # loading every plugin takes a moment: only when sending

    urls = config.url_list()
    _guard(urls, ctx)
    notifier = apprise.Apprise()
    for number, url in enumerate(urls, start=1):
        if not notifier.add(url):
            raise SendError(f"Apprise URL {number} is not one Apprise understands", retryable=False)
    for server in notifier:  # the guard checked the first host only: no redirects elsewhere
        if urlsplit(server.url()).scheme.lower() in GUARDED_SCHEMES:
            server.redirects = False
    body = message.body
    if message.url:
        body = f"{body}\n\n{message.url}"
    attachment_path: str | None = None
    try:
        if config.attach_snapshot and message.image is not None:
            fd, attachment_path = tempfile.mkstemp(prefix="glimpser-notify-", suffix=".jpg")
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.image)
        result = notifier.notify(
            body=body,
            title=message.title,
            notify_type=_notify_type(message.severity),
            attach=attachment_path,
            timeout=TIMEOUT_SECONDS,
        )
    finally:
        if attachment_path:
            os.unlink(attachment_path)
    return _outcome(result, urls)


def _notify_type(severity: str) -> str:
    import apprise

    if severity in ("high", "critical"):
        return apprise.NotifyType.FAILURE
    if severity == "medium":
        return apprise.NotifyType.WARNING
    return apprise.NotifyType.INFO


def _outcome(result, urls: list[str]) -> SendResult:  # noqa: ANN001 - apprise.AppriseResult
    """SendResult when every service took it; SendError (see the module docstring) otherwise."""
    services = list(result.results)
    succeeded = [r for r in services if bool(r)]
    failed = [r for r in services if not bool(r)]
    if services and not failed:
        names = ", ".join(sorted({r.name for r in succeeded}))
        return SendResult(status_code=None, detail=f"accepted by {len(succeeded)} ({names})")
    if not services:
        raise SendError("Apprise had no service to notify", retryable=False)
    reasons: list[str] = []
    for service in failed:
        problems = [e.message for e in service.logs() if e.level in ("WARNING", "ERROR")]
        reason = short(scrub("; ".join(problems), urls), 200) if problems else "failed"
        reasons.append(f"{service.name} {service.url}: {reason}")
    message = "; ".join(reasons)
    if succeeded:
        raise SendError(
            f"reached {len(succeeded)} of {len(services)} Apprise services; not retried so the "
            f"others are not notified twice. Failed: {message}",
            retryable=False,
        )
    raise SendError(f"Apprise could not notify: {message}", retryable=True)


Config = AppriseConfig


def deliver(
    channel: NotificationChannel,
    event: Event,
    delivery: Delivery,
    settings: Settings,
    connection: redis.Redis,
) -> SendResult:
    """One attempt for one delivery (the dispatcher's entry; see glimpser.notify.registry)."""
    return send_event(send, channel, event, delivery, settings)
