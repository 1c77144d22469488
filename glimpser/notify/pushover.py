"""Pushover: one message through the Pushover Messages API, with the snapshot attached.

The API base is GLIMPSER_PUSHOVER_API_URL (default https://api.pushover.net/1/messages.json), an
operator setting: tests point it at a loopback stand-in. Pushover answers JSON
{"status": 1, "request": "<id>"} on success and {"status": 0, "errors": [...]} otherwise; 4xx
means the message will never be accepted as it is (bad token, user, sound ...), 429 that the
app's monthly quota is used up, 5xx a problem on their side.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
import requests

from glimpser.config import Settings
from glimpser.models import Delivery, Event, NotificationChannel
from glimpser.notify.dispatch import SendError, SendResult
from glimpser.notify.message import Message
from glimpser.notify.schemas import ChannelConfig, PushoverConfig
from glimpser.notify.senders import (
    SendContext,
    http_failure,
    missing_secrets_error,
    network_failure,
    scrub,
    send_event,
    short,
)

TIMEOUT_SECONDS = 15
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024  # Pushover's limit
# Pushover's limits (characters).
TITLE_MAX, MESSAGE_MAX, URL_MAX, URL_TITLE_MAX = 250, 1024, 512, 100


def _errors(response: requests.Response) -> tuple[int | None, str]:
    """(status, joined errors) from Pushover's JSON answer; (None, "") when it is not JSON."""
    try:
        data = response.json()
    except ValueError:
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    errors = data.get("errors")
    text = "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
    status = data.get("status")
    return (status if isinstance(status, int) else None), text


def form_fields(config: PushoverConfig, message: Message) -> dict[str, str]:
    """The API's form fields (secrets included: never log this)."""
    fields: dict[str, Any] = {
        "token": config.secret_value("app_token"),
        "user": config.secret_value("user_key"),
        "title": message.title[:TITLE_MAX],
        "message": (message.body or message.title)[:MESSAGE_MAX],
        "priority": config.priority,
        "timestamp": message.timestamp,
    }
    if message.url and len(message.url) <= URL_MAX:
        fields["url"] = message.url
        fields["url_title"] = "Open in Glimpser"[:URL_TITLE_MAX]
    if config.priority == 2:
        fields["retry"] = config.retry
        fields["expire"] = config.expire
    if config.sound:
        fields["sound"] = config.sound
    if config.device:
        fields["device"] = config.device
    return {name: str(value) for name, value in fields.items()}


def send(config: ChannelConfig, message: Message, ctx: SendContext) -> SendResult:
    """POST the message (multipart/form-data, snapshot as `attachment`) once."""
    assert isinstance(config, PushoverConfig)
    missing = missing_secrets_error(config)
    if missing:
        raise missing
    fields = form_fields(config, message)
    secrets = (fields["token"], fields["user"])
    # Every field as a multipart part (filename None = a plain form field).
    files: dict[str, tuple[str | None, bytes | str, str | None]] = {
        name: (None, value, None) for name, value in fields.items()
    }
    note = ""
    if config.attach_snapshot and message.image is not None:
        if len(message.image) <= MAX_ATTACHMENT_BYTES:
            files["attachment"] = (
                message.image_name or "snapshot.jpg",
                message.image,
                "image/jpeg",
            )
        else:
            note = "snapshot not attached (larger than Pushover's 5 MB limit)"
    url = ctx.settings.pushover_api_url
    try:
        response = ctx.session.post(
            url, files=files, timeout=TIMEOUT_SECONDS, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise network_failure("the Pushover API", exc, TIMEOUT_SECONDS) from None
    with response:
        status, errors = _errors(response)
        if not 200 <= response.status_code < 300:
            detail = errors or ""
            if response.status_code < 500 and response.status_code != 429 and not detail:
                detail = short(scrub(response.text, secrets))
            raise http_failure("the Pushover API", response, secrets, detail=detail)
        if status != 1:
            raise SendError(
                "Pushover did not accept the message"
                + (
                    f": {short(scrub(errors, secrets))}"
                    if errors
                    else " (no status 1 in its answer)"
                ),
                retryable=False,
                status_code=response.status_code,
            )
        request_id = ""
        with contextlib.suppress(ValueError, AttributeError):
            request_id = str(response.json().get("request", ""))[:64]
        detail = f"request {request_id}" if request_id else ""
        if note:
            detail = f"{detail}; {note}" if detail else note
        return SendResult(status_code=response.status_code, detail=detail)


Config = PushoverConfig


def deliver(
    channel: NotificationChannel,
    event: Event,
    delivery: Delivery,
    settings: Settings,
    connection: redis.Redis,
) -> SendResult:
    """One attempt for one delivery (the dispatcher's entry; see glimpser.notify.registry)."""
    return send_event(send, channel, event, delivery, settings)
