"""The notification message: what every channel says about one event.

Senders never read Event rows themselves: `message_for` turns an event into one immutable
Message (text, link, snapshot bytes) so that every channel tells the same story and sender tests
can run without a database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from glimpser import times
from glimpser.config import Settings
from glimpser.media.storage import ObjectNotFound, Storage, StorageError
from glimpser.models import Event, Snapshot, Stream

log = logging.getLogger(__name__)

# The sentence a message carries when the event has no description of its own.
_KIND_SENTENCES = {
    "motion": "Motion was detected on {stream}.",
    "change": "A change was detected on {stream}.",
    "ai": "The AI description of {stream} matched a rule.",
    "capture_failed": "{stream} stopped capturing.",
    "capture_recovered": "{stream} is capturing again.",
    "test": "A test notification from Glimpser: this channel works.",
}


def kind_sentence(kind: str, stream_name: str) -> str:
    """A plain sentence for events without a description (every channel needs a body)."""
    stream = stream_name or "A stream"
    template = _KIND_SENTENCES.get(kind, "Event ({kind}) on {stream}.")
    text = template.format(stream=stream, kind=kind)
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class Message:
    """One event as channels send it. `image` is the snapshot's JPEG, or None when there is
    none (no snapshot, or its file is gone): a missing picture is left out, never faked."""

    event_id: int
    title: str
    body: str
    severity: str
    kind: str
    stream_name: str
    stream_id: int | None
    created_at: datetime  # aware, UTC
    url: str  # link to the event page; "" when GLIMPSER_PUBLIC_URL is unset
    image: bytes | None = field(default=None, repr=False)
    image_name: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    acknowledged: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", times.to_utc(self.created_at))

    @property
    def timestamp(self) -> int:
        """created_at as unix seconds (Pushover, webhook receivers)."""
        return int(self.created_at.timestamp())

    def as_template_fields(self) -> dict[str, Any]:
        """Plain, JSON-serialisable fields for templates and the default webhook body.

        The image bytes are left out (`has_image` and `image_name` say whether there is one).
        """
        return {
            "event_id": self.event_id,
            "title": self.title,
            "body": self.body,
            "severity": self.severity,
            "kind": self.kind,
            "stream_name": self.stream_name,
            "stream_id": self.stream_id,
            "created_at": times.isoformat(self.created_at),
            "timestamp": self.timestamp,
            "url": self.url,
            "has_image": self.image is not None,
            "image_name": self.image_name if self.image is not None else "",
            "data": self.data,
            "acknowledged": self.acknowledged,
        }


# The names a webhook body template may use (see schemas.WebhookConfig.body_template).
TEMPLATE_FIELDS: tuple[str, ...] = (
    "event_id",
    "title",
    "body",
    "severity",
    "kind",
    "stream_name",
    "stream_id",
    "created_at",
    "timestamp",
    "url",
    "has_image",
    "image_name",
    "data",
    "acknowledged",
)


def _snapshot_image(snapshot_id: int | None, storage: Storage) -> bytes | None:
    """The snapshot's JPEG; None when there is no snapshot or its file cannot be read.

    A notification without its picture is still worth sending, so storage trouble is logged
    and the image left out rather than failing the delivery.
    """
    if snapshot_id is None:
        return None
    snapshot = Snapshot.get_or_none(Snapshot.id == snapshot_id)
    if snapshot is None:
        return None
    try:
        return storage.get(snapshot.storage_key)
    except ObjectNotFound:
        return None
    except StorageError as exc:
        log.warning(
            "snapshot for a notification could not be read",
            extra={"snapshot_id": snapshot_id, "error": str(exc)},
        )
        return None


def message_for(event: Event, settings: Settings, storage: Storage) -> Message:
    """Build the Message for an event (reads its stream name and snapshot file)."""
    stream_name = ""
    if event.stream_id is not None:
        stream = Stream.get_or_none(Stream.id == event.stream_id)
        stream_name = stream.name if stream is not None else ""
    image = _snapshot_image(event.snapshot_id, storage)
    image_name = f"glimpser-event-{event.id}.jpg" if image is not None else ""
    url = f"{settings.public_url.rstrip('/')}/events/{event.id}" if settings.public_url else ""
    return Message(
        event_id=event.id,
        title=event.title or kind_sentence(event.kind, stream_name),
        body=event.description or kind_sentence(event.kind, stream_name),
        severity=event.severity,
        kind=event.kind,
        stream_name=stream_name,
        stream_id=event.stream_id,
        created_at=times.to_utc(event.created_at),
        url=url,
        image=image,
        image_name=image_name,
        data=dict(event.data or {}),
        acknowledged=bool(event.acknowledged),
    )
