"""Which function sends each channel kind: the table the notify job hands to dispatch."""

from __future__ import annotations

import functools

import redis
import requests

from glimpser.config import Settings
from glimpser.models import Delivery, Event, NotificationChannel
from glimpser.notify import cap, senders, webpush
from glimpser.notify.dispatch import Sender, SendError, SendResult


def send_cap(
    channel: NotificationChannel,
    event: Event,
    delivery: Delivery,
    settings: Settings,
    connection: redis.Redis,
) -> SendResult:
    """Issue the event's CAP message (Alert/Update, or Cancel for a "cancel" delivery) and POST
    it as application/cap+xml to the channel's endpoints. Endpoints already reached by this
    delivery are remembered, so a retry after a partial failure posts nowhere twice."""
    from pydantic import ValidationError

    from glimpser.notify.schemas import parse_config

    try:
        config = parse_config({**(channel.config or {}), "kind": "cap"})
    except ValidationError:
        raise SendError("the channel's settings are invalid", retryable=False) from None
    if delivery.purpose == "cancel":
        message = cap.cancel_for_event(event, settings, area_desc=config.area_desc)
        if message is None:
            raise SendError("no CAP alert was issued for this event to cancel", retryable=False)
    else:
        message = cap.alert_for_event(event, settings, area_desc=config.area_desc)
    if not config.endpoints:
        return SendResult(detail=f"published in the CAP feed as {message.identifier}")

    ctx = senders.SendContext(settings, delivery_id=delivery.id)
    headers = {**config.headers, "Content-Type": cap.CAP_CONTENT_TYPE}
    if config.secret_value("authorization"):
        headers["Authorization"] = config.secret_value("authorization")
    done_key = f"glimpser:cap:done:{delivery.id}"
    failures: list[SendError] = []
    code = None
    try:
        for url in config.endpoints:
            if connection.sismember(done_key, url):
                continue
            try:
                senders.check_target(url, ctx)
                response = ctx.session.post(
                    url,
                    data=message.xml.encode(),
                    headers=headers,
                    timeout=config.timeout,
                    allow_redirects=False,
                )
            except SendError as exc:
                failures.append(exc)
                continue
            except requests.RequestException as exc:
                failures.append(senders.network_failure("the CAP endpoint", exc, config.timeout))
                continue
            code = response.status_code
            if not 200 <= code < 300:
                secrets = [config.secret_value("authorization")]
                failures.append(senders.http_failure("the CAP endpoint", response, secrets))
                continue
            connection.sadd(done_key, url)
            connection.expire(done_key, 7 * 24 * 3600)
    finally:
        ctx.session.close()
    if failures:
        retryable = any(f.retryable for f in failures)
        first = next((f for f in failures if f.retryable), failures[0])
        raise SendError(
            f"{len(failures)} of {len(config.endpoints)} CAP endpoints failed: {first}",
            retryable=retryable,
            status_code=first.status_code,
            retry_after=first.retry_after,
        )
    return SendResult(status_code=code, detail=f"{message.msg_type} {message.identifier}")


def senders_for(connection: redis.Redis) -> dict[str, Sender]:
    """kind → Sender for dispatch.deliver; kinds that keep per-delivery state get Redis."""
    return {
        "webhook": senders.channel_sender,
        "pushover": senders.channel_sender,
        "email": senders.channel_sender,
        "apprise": senders.channel_sender,
        "webpush": functools.partial(webpush.send, connection=connection),
        "cap": functools.partial(send_cap, connection=connection),
    }
