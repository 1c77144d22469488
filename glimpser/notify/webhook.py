"""Webhook: the event as JSON over HTTP(S), optionally signed with HMAC-SHA256.

Signature (docs/notifications.md shows how a receiver checks it):
    X-Glimpser-Timestamp: <unix seconds>
    X-Glimpser-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body bytes)>
The timestamp is inside the signed text so a captured request cannot be replayed later with a
fresh timestamp; receivers reject stale ones.

The body template is a JSON document whose strings may hold ${field} placeholders. It is parsed
as JSON and filled in value by value, then serialised again — event text can never break the
JSON or inject keys, whatever it contains.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from string import Template
from typing import Any

import redis
import requests

from glimpser.config import Settings
from glimpser.models import Delivery, Event, NotificationChannel
from glimpser.notify.dispatch import SendError, SendResult
from glimpser.notify.message import Message
from glimpser.notify.schemas import ChannelConfig, WebhookConfig
from glimpser.notify.senders import (
    SendContext,
    check_target,
    http_failure,
    network_failure,
    send_event,
)

SIGNATURE_HEADER = "X-Glimpser-Signature"
TIMESTAMP_HEADER = "X-Glimpser-Timestamp"
EVENT_HEADER = "X-Glimpser-Event"
DELIVERY_HEADER = "X-Glimpser-Delivery"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Glimpser-Signature value: "sha256=" + hex HMAC-SHA256(secret, timestamp.body).

    The signed bytes are the ASCII timestamp, a dot, and the raw request body bytes."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _text(value: Any) -> str:
    """A field's value inside a longer string: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _fill(node: Any, fields: dict[str, Any], texts: dict[str, str]) -> Any:
    if isinstance(node, str):
        template = Template(node)
        names = template.get_identifiers()
        if len(names) == 1 and node == f"${{{names[0]}}}":
            return fields[names[0]]  # the whole string is one placeholder: keep the JSON type
        return template.substitute(texts) if names else template.substitute({})
    if isinstance(node, dict):
        return {_fill(k, fields, texts): _fill(v, fields, texts) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, fields, texts) for v in node]
    return node


def render_body(body_template: str, message: Message) -> bytes:
    """The request body: the filled template, or every template field when it is blank."""
    fields = message.as_template_fields()
    if not body_template:
        document: Any = fields
    else:
        texts = {name: _text(value) for name, value in fields.items()}
        try:
            document = _fill(json.loads(body_template), fields, texts)
        except (ValueError, KeyError) as exc:
            # The schema validated the template; a stored one from an older version may not be.
            raise SendError(f"the body template cannot be used ({exc})", retryable=False) from None
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def send(config: ChannelConfig, message: Message, ctx: SendContext) -> SendResult:
    """POST/PUT the event to the webhook URL once; redirects are not followed."""
    assert isinstance(config, WebhookConfig)
    check_target(config.url, ctx)
    body = render_body(config.body_template, message)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Glimpser webhook",
        **config.headers,
        EVENT_HEADER: str(message.event_id),
        TIMESTAMP_HEADER: timestamp,
    }
    if ctx.delivery_id is not None:
        headers[DELIVERY_HEADER] = str(ctx.delivery_id)
    secret = config.secret_value("secret")
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    authorization = config.secret_value("authorization")
    if authorization:
        headers["Authorization"] = authorization
    try:
        response = ctx.session.request(
            config.method,
            config.url,
            data=body,
            headers=headers,
            timeout=config.timeout,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise network_failure("the webhook", exc, config.timeout) from None
    with response:
        if 200 <= response.status_code < 300:
            return SendResult(status_code=response.status_code, detail="")
        raise http_failure("the webhook", response, secrets=(secret, authorization))


Config = WebhookConfig


def deliver(
    channel: NotificationChannel,
    event: Event,
    delivery: Delivery,
    settings: Settings,
    connection: redis.Redis,
) -> SendResult:
    """One attempt for one delivery (the dispatcher's entry; see glimpser.notify.registry)."""
    return send_event(send, channel, event, delivery, settings)
