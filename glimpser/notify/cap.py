"""CAP 1.2 (OASIS Common Alerting Protocol): one `<alert>` per event, then Update / Cancel.

Why stored: CAP receivers match messages by (sender, identifier, sent). An Update or Cancel has
to name the earlier messages exactly as they were sent, and the feed has to show the same
identifiers every time it is read, so every message is kept as a CapMessage row (its XML
included) instead of being rebuilt on demand.

Lifecycle of one event (docs/cap.md has the tables):
- the first message is msgType Alert, identifier `glimpser-<host>-event-<event id>-1`;
- when the event's content changes (title, description, severity, kind, snapshot) an Update
  with the next number, its `references` naming every earlier message;
- when an operator acknowledges the event, a Cancel (urgency Past, responseType AllClear)
  referencing every earlier message. "Acknowledged" is the operator's all-clear: the alert is
  withdrawn, which is what Cancel means in CAP practice. A Cancel is final for the event.

Idempotent: issuing the same (event, msgType, content) again returns the stored message; two
workers racing meet at the unique identifier and the loser returns the winner's row.

Times are UTC with an explicit "+00:00" offset and whole seconds (the schema's pattern
refuses "Z" and fractions). XML is built with lxml, never by joining strings.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlparse

import peewee
import redis
import requests
from lxml import etree

from glimpser import times
from glimpser.config import Settings
from glimpser.db import write_transaction
from glimpser.media.storage import get_storage
from glimpser.models import CapMessage, Delivery, Event, NotificationChannel, Snapshot
from glimpser.notify.dispatch import SendError, SendResult
from glimpser.notify.message import Message, message_for
from glimpser.notify.schemas import CapConfig
from glimpser.notify.senders import (
    SendContext,
    check_target,
    http_failure,
    network_failure,
    stored_config,
)

log = logging.getLogger(__name__)

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_CONTENT_TYPE = "application/cap+xml"
MSG_TYPES = ("Alert", "Update", "Cancel")
HEADLINE_MAX = 160  # CAP 1.2 asks headlines to stay under 160 characters
Config = CapConfig

# Event severity → (urgency, severity, certainty). CAP allows "Unknown" urgency, which is the
# honest answer for an informational event: nobody is asked to act on it.
SEVERITY_MAP: dict[str, tuple[str, str, str]] = {
    "critical": ("Immediate", "Extreme", "Observed"),
    "high": ("Expected", "Severe", "Observed"),
    "medium": ("Expected", "Moderate", "Likely"),
    "low": ("Future", "Minor", "Possible"),
    "info": ("Unknown", "Minor", "Observed"),
}
# Event kind → CAP category. Watching cameras and sites is security; a stream that stops or
# starts capturing again is about the monitoring infrastructure itself.
CATEGORY_MAP: dict[str, str] = {
    "motion": "Security",
    "change": "Security",
    "ai": "Security",
    "capture_failed": "Infra",
    "capture_recovered": "Infra",
    "test": "Other",
}
# The CAP <event> text: the kind in words.
EVENT_WORDS: dict[str, str] = {
    "motion": "Motion detected",
    "change": "Change detected",
    "ai": "AI rule matched",
    "capture_failed": "Capture failed",
    "capture_recovered": "Capture recovered",
    "test": "Test notification",
}

# CAP forbids white space, commas and the XML-restricted < and & in identifiers and senders.
_NOT_ALLOWED = re.compile(r"[\s,<>&\"']+")
_HOST_CHARS = re.compile(r"[^A-Za-z0-9.\-]+")


def cap_time(value: datetime) -> str:
    """A CAP time: UTC, whole seconds, explicit "+00:00" offset (never "Z")."""
    return times.to_utc(value).replace(microsecond=0).isoformat(timespec="seconds")


def cap_sender(settings: Settings) -> str:
    """settings.cap_sender made CAP-safe (no spaces, commas, < or &)."""
    return _NOT_ALLOWED.sub("", settings.cap_sender) or "glimpser@localhost"


def sender_host(settings: Settings) -> str:
    """The host part of identifiers: the public URL's host, else the sender's domain."""
    host = urlparse(settings.public_url).hostname if settings.public_url else None
    if not host:
        sender = cap_sender(settings)
        host = sender.rsplit("@", 1)[-1] if "@" in sender else sender
    return _HOST_CHARS.sub("-", host).strip("-").lower() or "localhost"


def make_identifier(event_id: int, number: int, settings: Settings) -> str:
    """`glimpser-<host>-event-<event id>-<n>`: unique per install, stable once stored."""
    return f"glimpser-{sender_host(settings)}-event-{event_id}-{number}"


def reference_entry(message: CapMessage) -> str:
    """ "sender,identifier,sent" of a stored message, exactly as it was sent."""
    root = alert_head(message.xml)
    sender = root.findtext(f"{{{CAP_NS}}}sender") or ""
    sent = root.findtext(f"{{{CAP_NS}}}sent") or cap_time(message.sent_at)
    return f"{sender},{message.identifier},{sent}"


_HEAD_STOP = {f"{{{CAP_NS}}}resource", f"{{{CAP_NS}}}area"}


def alert_head(xml: str) -> etree._Element:
    """A stored alert parsed up to its first <resource> or <area>, i.e. everything but the
    picture, which can be megabytes of base64 (the feed reads 50 of these per request)."""
    root = None
    for _event, element in etree.iterparse(
        io.BytesIO(xml.encode("utf-8")),
        events=("start",),
        resolve_entities=False,
        no_network=True,
        huge_tree=True,
    ):
        if root is None:
            root = element
        if element.tag in _HEAD_STOP:
            break
    if root is None:
        raise ValueError("not an XML document")
    return root


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{CAP_NS}}}{name}")
    if text is not None:
        element.text = text
    return element


def _headline(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= HEADLINE_MAX else title[: HEADLINE_MAX - 1].rstrip() + "…"


def _mapping(event: Event, msg_type: str) -> tuple[str, str, str]:
    """(urgency, severity, certainty) for an event, adjusted for its kind and msgType."""
    urgency, severity, certainty = SEVERITY_MAP.get(event.severity, SEVERITY_MAP["info"])
    if event.kind == "ai" and certainty == "Observed":
        certainty = "Likely"  # a model's reading of a picture, not a measurement
    if event.kind in ("motion", "change", "capture_failed", "capture_recovered"):
        # Measured, not guessed: motion or a change in the pictures, or Glimpser's own capture
        # failing or working again. The rule's severity says how much it matters, not how sure.
        certainty = "Observed"
    if event.kind == "capture_recovered" or msg_type == "Cancel":
        urgency = "Past"  # responsive action is no longer required
    return urgency, severity, certainty


def _snapshot_stream_id(snapshot_id: int | None) -> int | None:
    if snapshot_id is None:
        return None
    snapshot = Snapshot.get_or_none(Snapshot.id == snapshot_id)
    return snapshot.stream_id if snapshot is not None else None


def _add_resource(info: etree._Element, event: Event, message: Message, settings: Settings):
    """The snapshot: a link when the install has a public URL, else the bytes inline.

    The digest is SHA-1 of the JPEG bytes (CAP 1.2 names SHA-1 for <digest>). A picture that
    is gone (retention, storage trouble) is left out rather than described without bytes.
    """
    if message.image is None:
        return
    resource = _sub(info, "resource")
    _sub(resource, "resourceDesc", "Snapshot")
    _sub(resource, "mimeType", "image/jpeg")
    _sub(resource, "size", str(len(message.image)))
    stream_id = _snapshot_stream_id(event.snapshot_id)
    if settings.public_url and stream_id is not None:
        base = settings.public_url.rstrip("/")
        _sub(resource, "uri", f"{base}/streams/{stream_id}/snapshots/{event.snapshot_id}.jpg")
    else:
        _sub(resource, "derefUri", base64.b64encode(message.image).decode("ascii"))
    # CAP 1.2 names SHA-1 for <digest>: an integrity check, not a security measure.
    _sub(resource, "digest", hashlib.sha1(message.image, usedforsecurity=False).hexdigest())


def build_alert(
    event: Event,
    msg_type: str,
    settings: Settings,
    *,
    references: Sequence[CapMessage] = (),
    sent: datetime | None = None,
    identifier: str | None = None,
    area_desc: str = "",
) -> str:
    """The CAP 1.2 `<alert>` for an event, as UTF-8 XML text (with its declaration).

    `references` are the earlier messages an Update or Cancel refers to (every one of them,
    oldest first); the identifier defaults to the next number after them. `area_desc` overrides
    the area (a CAP channel's configured area); otherwise the stream's name is the area, and a
    system-wide event (no stream) has no <area>.
    """
    if msg_type not in MSG_TYPES:
        raise ValueError(f"msgType must be one of {', '.join(MSG_TYPES)}, not {msg_type!r}")
    if msg_type != "Alert" and not references:
        raise ValueError(f"a {msg_type} must reference the earlier messages of the event")
    message = message_for(event, settings, get_storage(settings))
    sent_text = cap_time(sent or times.utcnow())
    identifier = identifier or make_identifier(event.id, len(references) + 1, settings)

    alert = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})
    _sub(alert, "identifier", identifier)
    _sub(alert, "sender", cap_sender(settings))
    _sub(alert, "sent", sent_text)
    # A "Send test" from Admin → Channels must never read as a real alert.
    _sub(alert, "status", "Test" if event.kind == "test" else "Actual")
    _sub(alert, "msgType", msg_type)
    _sub(alert, "scope", "Public")
    if msg_type == "Cancel":
        _sub(alert, "note", "Acknowledged by an operator in Glimpser: the alert is withdrawn.")
    if references:
        _sub(alert, "references", " ".join(reference_entry(m) for m in references))

    info = _sub(alert, "info")
    _sub(info, "language", "en-US")
    _sub(info, "category", CATEGORY_MAP.get(event.kind, "Other"))
    _sub(info, "event", EVENT_WORDS.get(event.kind, event.kind.replace("_", " ").capitalize()))
    if msg_type == "Cancel" or event.kind == "capture_recovered":
        _sub(info, "responseType", "AllClear")
    urgency, severity, certainty = _mapping(event, msg_type)
    _sub(info, "urgency", urgency)
    _sub(info, "severity", severity)
    _sub(info, "certainty", certainty)
    _sub(info, "onset", cap_time(event.created_at))
    _sub(info, "senderName", "Glimpser")
    _sub(info, "headline", _headline(message.title))
    _sub(info, "description", message.body)
    if message.url:
        _sub(info, "web", message.url)
    parameters = [
        ("stream", message.stream_name),
        ("eventId", str(event.id)),
        ("eventKind", event.kind),
        ("eventSeverity", event.severity),
        ("snapshotId", str(event.snapshot_id) if event.snapshot_id is not None else ""),
        # The rule matched again while cooling down (rules.py merges repeats into the event):
        # how often, and the latest picture. A change here makes the next message an Update.
        ("repeats", str((event.data or {}).get("repeats") or "")),
        ("lastSnapshotId", str((event.data or {}).get("last_snapshot_id") or "")),
    ]
    for name, value in parameters:
        if value:
            parameter = _sub(info, "parameter")
            _sub(parameter, "valueName", name)
            _sub(parameter, "value", value)
    _add_resource(info, event, message, settings)
    area_text = " ".join((area_desc or message.stream_name).split())
    if area_text:
        area = _sub(info, "area")
        _sub(area, "areaDesc", area_text)
    return etree.tostring(alert, xml_declaration=True, encoding="UTF-8").decode("utf-8")


def _content(xml: str) -> tuple:
    """What an Update would change: the info block without links, picture bytes or area."""
    info = alert_head(xml).find(f"{{{CAP_NS}}}info")
    if info is None:
        return ()
    fields = tuple(
        info.findtext(f"{{{CAP_NS}}}{name}") or ""
        for name in ("category", "event", "urgency", "severity", "certainty")
        + ("headline", "description")
    )
    params = tuple(
        (p.findtext(f"{{{CAP_NS}}}valueName"), p.findtext(f"{{{CAP_NS}}}value"))
        for p in info.findall(f"{{{CAP_NS}}}parameter")
    )
    return fields + params


def messages_of(event: Event) -> list[CapMessage]:
    """Every stored message of the event, oldest first."""
    return list(
        CapMessage.select()
        .where(CapMessage.event == event.id)
        .order_by(CapMessage.sent_at, CapMessage.id)
    )


def _existing(earlier: list[CapMessage], msg_type: str, candidate: str | None) -> CapMessage | None:
    """The stored message that already says this, if any (what makes issue() idempotent)."""
    if not earlier:
        return None
    if msg_type == "Alert":
        return earlier[0]
    if msg_type == "Cancel":
        return next((m for m in earlier if m.msg_type == "Cancel"), None)
    latest = earlier[-1]
    if latest.msg_type == "Cancel":
        raise ValueError("the event's alert was cancelled; a cancelled alert is not updated")
    if candidate is not None and _content(candidate) == _content(latest.xml):
        return latest
    return None


def issue(event: Event, msg_type: str, settings: Settings, *, area_desc: str = "") -> CapMessage:
    """Store (once) and return the CAP message of this type for the event's current state.

    - Alert: the event's first message; asked again, the stored Alert.
    - Update: a new message only when the content differs from the latest one; it references
      every earlier message. Refused (ValueError) before an Alert exists or after a Cancel.
    - Cancel: once per event, referencing every earlier message; refused (ValueError) when
      nothing was issued to withdraw.
    """
    if msg_type not in MSG_TYPES:
        raise ValueError(f"msgType must be one of {', '.join(MSG_TYPES)}, not {msg_type!r}")
    for _attempt in range(5):
        earlier = messages_of(event)
        if msg_type != "Alert" and not earlier:
            raise ValueError(f"no earlier CAP message of event {event.id} for a {msg_type}")
        found = _existing(earlier, msg_type, None)
        if found is not None:
            return found
        sent = times.utcnow().replace(microsecond=0)
        if earlier:
            sent = max(sent, times.to_utc(earlier[-1].sent_at))  # never earlier than before
        identifier = make_identifier(event.id, len(earlier) + 1, settings)
        xml = build_alert(
            event,
            msg_type,
            settings,
            references=earlier,
            sent=sent,
            identifier=identifier,
            area_desc=area_desc,
        )
        if msg_type == "Update":
            found = _existing(earlier, msg_type, xml)
            if found is not None:
                return found
        references = " ".join(reference_entry(m) for m in earlier)
        try:
            with write_transaction():
                return CapMessage.create(
                    event=event.id,
                    identifier=identifier,
                    msg_type=msg_type,
                    sent_at=sent,
                    references=references,
                    xml=xml,
                )
        except peewee.IntegrityError:
            # Another worker stored this number first: read again and answer with its row.
            log.info("CAP message raced; re-reading", extra={"event_id": event.id})
    raise RuntimeError(f"could not store a CAP message for event {event.id}")


def alert_for_event(event: Event, settings: Settings, *, area_desc: str = "") -> CapMessage:
    """The message to send for an event now: its latest one, made first if needed.

    No message yet → the Alert. The event changed since the latest message → an Update. The
    event was cancelled (acknowledged) → that Cancel, since the alert no longer stands.
    `area_desc` (a CAP channel's area) is used only when a message is made: messages are
    shared by every channel and the feed, so an identifier always names one content.
    """
    earlier = messages_of(event)
    if not earlier:
        return issue(event, "Alert", settings, area_desc=area_desc)
    if earlier[-1].msg_type == "Cancel":
        return earlier[-1]
    return issue(event, "Update", settings, area_desc=area_desc)


def cancel_for_event(event: Event, settings: Settings, *, area_desc: str = "") -> CapMessage | None:
    """The Cancel withdrawing an acknowledged event's alert; None when none was ever issued
    (nothing to withdraw, and a Cancel must reference what it cancels)."""
    if not messages_of(event):
        return None
    return issue(event, "Cancel", settings, area_desc=area_desc)


MESSAGE_KEY = "glimpser:cap:message:{delivery_id}"  # the CapMessage id a delivery sends
DELIVERY_STATE_SECONDS = 7 * 24 * 3600  # as long as a delivery can be retried


def _choose(event: Event, purpose: str, settings: Settings, area_desc: str) -> CapMessage | None:
    """The message a delivery with this purpose sends, decided at its first attempt.

    - "cancel": the event's Cancel (SendError when nothing was issued to cancel).
    - "alert": the message standing for the event (its Alert, or an Update when it changed
      since). Never a Cancel: when the event was acknowledged already, the latest message
      before the Cancel; the channel's own cancel delivery withdraws it afterwards.
    - "update-<n>": an Update for the event's content now; None (nothing to send) when the
      event was acknowledged already: its Cancel supersedes the Update.

    A retry does not come here: message_of_delivery returns the message chosen at the first.
    """
    if purpose == "cancel":
        message = cancel_for_event(event, settings, area_desc=area_desc)
        if message is None:
            raise SendError("no CAP alert was issued for this event to cancel", retryable=False)
        return message
    if purpose != "alert" and event.acknowledged:
        return None
    earlier = messages_of(event)
    if earlier and earlier[-1].msg_type == "Cancel":
        return next((m for m in reversed(earlier) if m.msg_type != "Cancel"), None)
    return alert_for_event(event, settings, area_desc=area_desc)


def message_of_delivery(
    event: Event,
    delivery: Delivery,
    settings: Settings,
    connection: redis.Redis,
    area_desc: str = "",
) -> CapMessage | None:
    """The one message this delivery sends, whatever its retries: chosen at the first attempt
    (see _choose) and remembered in Redis, so a retry never turns into a later message, such
    as the Cancel of an event acknowledged between two attempts. None: nothing to send.

    Should Redis have lost the choice, it is made again by the same rules.
    """
    key = MESSAGE_KEY.format(delivery_id=delivery.id)
    chosen = connection.get(key)
    if chosen is not None:
        message = CapMessage.get_or_none(
            (CapMessage.id == int(chosen)) & (CapMessage.event == event.id)
        )
        if message is not None:
            return message
    message = _choose(event, delivery.purpose, settings, area_desc)
    if message is not None:
        connection.set(key, message.id, ex=DELIVERY_STATE_SECONDS)
    return message


def deliver(
    channel: NotificationChannel,
    event: Event,
    delivery: Delivery,
    settings: Settings,
    connection: redis.Redis,
) -> SendResult:
    """POST the delivery's CAP message (message_of_delivery) as application/cap+xml to the
    channel's endpoints. Endpoints already reached by this delivery are remembered, so a retry
    after a partial failure posts nowhere twice, and every attempt posts the same message."""
    config = stored_config(channel)
    assert isinstance(config, CapConfig)
    message = message_of_delivery(event, delivery, settings, connection, config.area_desc)
    if message is None:
        return SendResult(
            skipped=True,
            detail="not sent: the event was acknowledged before this Update went out "
            "(its Cancel withdraws the alert)",
        )
    if not config.endpoints:
        return SendResult(detail=f"published in the CAP feed as {message.identifier}")

    ctx = SendContext(settings, delivery_id=delivery.id)
    headers = {**config.headers, "Content-Type": CAP_CONTENT_TYPE}
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
                check_target(url, ctx)
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
                failures.append(network_failure("the CAP endpoint", exc, config.timeout))
                continue
            code = response.status_code
            if not 200 <= code < 300:
                secrets = [config.secret_value("authorization")]
                failures.append(http_failure("the CAP endpoint", response, secrets))
                continue
            connection.sadd(done_key, url)
            connection.expire(done_key, DELIVERY_STATE_SECONDS)
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
