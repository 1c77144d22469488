"""The events a user may see, filtered and paged, and acknowledging them: the one code behind
the events page (glimpser.web.events) and `/api/v1/events` (glimpser.api.events).

Per-stream access: every query starts from `visible_events()`, so a user (or a key limited to
some streams) never sees, counts or acknowledges an event of a stream not granted to them;
events without a stream are system-wide and shown to admins only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import peewee
from flask import current_app, g, has_request_context
from flask_login import current_user

from glimpser import queues, times
from glimpser.auth.access import visible_streams
from glimpser.db import write_transaction
from glimpser.models import AuditLog, Event, Rule, Snapshot, Stream
from glimpser.web import keyset, search
from glimpser.web.audit import audit, listed_ids

MAX_BULK = 500  # ids in one acknowledge request
MAX_CHOICES = 200  # values of one multi-select filter in a request
SYSTEM = "system"  # the stream filter's value for events without a stream (admins only)
ACK_ACTION = "events.acknowledge"  # the audit action, on the web and the API alike
RANGES: dict[str, tuple[str, timedelta | None]] = {
    "hour": ("Last hour", timedelta(hours=1)),
    "today": ("Today", None),  # since midnight in the user's time zone
    "day": ("Last 24 hours", timedelta(days=1)),
    "week": ("Last 7 days", timedelta(days=7)),
    "custom": ("Custom range", None),
}


@dataclass(frozen=True)
class Filters:
    """The timeline's filters, validated; defaults are left out of URLs.

    Streams, severities and kinds are multi-select: an event matches when it has any of the
    chosen values (none chosen: any). `words` is a full-text search (glimpser.web.search).
    """

    streams: tuple[str, ...] = ()  # stream ids, and SYSTEM for events without a stream
    severities: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    range: str = ""
    start: datetime | None = field(default=None)
    end: datetime | None = field(default=None)
    ack: str = ""
    q: str = ""
    words: tuple[str, ...] = ()

    def params(self) -> dict[str, Any]:
        """The non-default values, as query parameters (as the filter form names them)."""
        from glimpser.web.local_time import format_local

        out: dict[str, Any] = {}
        if self.q:
            out["q"] = self.q
        for name, values in (
            ("stream", self.streams),
            ("severity", self.severities),
            ("kind", self.kinds),
        ):
            if values:
                out[name] = list(values)
        for name in ("range", "ack"):
            if value := getattr(self, name):
                out[name] = value
        if self.range == "custom":
            if self.start is not None:
                out["from"] = format_local(self.start)
            if self.end is not None:
                out["to"] = format_local(self.end)
        return out

    @property
    def active(self) -> bool:
        return bool(self.params())

    @property
    def stream_ids(self) -> set[int]:
        from glimpser.web.params import parse_id

        return {i for s in self.streams if (i := parse_id(s)) is not None}


def all_visible(stream_ids: list[int]) -> bool:
    """Whether the user may see every one of these streams (else the filter answers 404,
    exactly like a stream that does not exist)."""
    if not stream_ids:
        return True
    return visible_streams().where(Stream.id.in_(stream_ids)).count() == len(set(stream_ids))


def _today_start(now: datetime) -> datetime:
    """Midnight today in the viewer's time zone (theirs, else the install's default), as UTC."""
    from glimpser.web.humantime import current_zone

    zone = current_zone()
    local = times.to_utc(now).astimezone(zone)
    midnight = datetime.combine(local.date(), datetime.min.time(), tzinfo=zone)
    return midnight.astimezone(UTC)


# --- queries --------------------------------------------------------------------------------


def visible_events(user: Any = None) -> peewee.ModelSelect:
    """Events the user may see: their streams' events; admins also see system-wide ones.

    Without `user`: the signed-in user's, and on an API request whose key is limited to some
    streams only those streams' events (no system-wide ones)."""
    signed_in = user is None
    streams = (visible_streams() if signed_in else visible_streams(user)).select(Stream.id)
    user = current_user if signed_in else user
    query = Event.select()
    key = g.get("api_key") if signed_in and has_request_context() else None
    limited = key is not None and key.stream_ids is not None
    if getattr(user, "is_admin", False) and not limited:
        # Not the events of a stream being deleted (Stream.select leaves those streams out).
        return query.where(Event.stream.is_null() | Event.stream.in_(streams))
    return query.where(Event.stream.in_(streams))


def with_related(query: peewee.ModelSelect) -> peewee.ModelSelect:
    """Join what an entry shows (stream name, rule name, picture size) in the same query."""
    return (
        query.select_extend(
            Stream.id, Stream.name, Rule.id, Rule.name, Snapshot.id, Snapshot.width, Snapshot.height
        )
        .join(Stream, peewee.JOIN.LEFT_OUTER, on=(Event.stream == Stream.id))
        .switch(Event)
        .join(Rule, peewee.JOIN.LEFT_OUTER, on=(Event.rule == Rule.id))
        .switch(Event)
        .join(Snapshot, peewee.JOIN.LEFT_OUTER, on=(Event.snapshot == Snapshot.id))
        .switch(Event)
    )


def filtered(filters: Filters, now: datetime) -> peewee.ModelSelect:
    """The visible events that match the filters (unordered)."""
    query = visible_events()
    if filters.streams:
        condition = Event.stream.in_(sorted(filters.stream_ids))
        if SYSTEM in filters.streams:
            condition = condition | Event.stream.is_null()
        query = query.where(condition)
    if filters.severities:
        query = query.where(Event.severity.in_(filters.severities))
    if filters.kinds:
        query = query.where(Event.kind.in_(filters.kinds))
    if filters.ack:
        query = query.where(Event.acknowledged == (filters.ack == "yes"))
    if filters.words:
        query = query.where(search.matches(list(filters.words)))
    preset = RANGES.get(filters.range, ("", None))[1]
    if filters.range == "today":
        start: datetime | None = _today_start(now)
    else:
        start = now - preset if preset is not None else filters.start
    if start is not None:
        query = query.where(Event.created_at >= start)
    if filters.end is not None and filters.range == "custom":
        query = query.where(Event.created_at <= filters.end)
    return query


def newest_first(query: peewee.ModelSelect) -> peewee.ModelSelect:
    return with_related(query).order_by(Event.created_at.desc(), Event.id.desc())


def event_cursor(event: Event) -> str:
    """Keyset cursor "<created time>_<id>": stable while new events arrive and old ones go."""
    return keyset.make_cursor(event.created_at, event.id)


def page(
    query: peewee.ModelSelect, cursor: tuple[datetime, int] | None, size: int
) -> tuple[list[Event], str | None]:
    """One page of events, newest first, and the cursor of the next (older) page."""
    if cursor is not None:
        query = keyset.older_than(query, Event.created_at, Event.id, cursor)
    rows = list(newest_first(query).limit(size + 1))
    return keyset.split_page(rows, size, event_cursor)


# --- acknowledge ----------------------------------------------------------------------------


def acknowledge(ids: list[int]) -> list[int]:
    """Acknowledge those of `ids` the user may see and that were not yet acknowledged, with
    their audit entry in the same transaction; CAP channels that received an alert get its
    Cancel (queued). Returns the ids acknowledged now (others are ignored)."""
    acknowledged: list[int] = []
    if not ids:
        return acknowledged
    with write_transaction():
        acknowledged = [
            e.id
            for e in visible_events()
            .select(Event.id)
            .where(Event.id.in_(ids) & (Event.acknowledged == False))  # noqa: E712
            .order_by(Event.id)
        ]
        if acknowledged:
            Event.update(acknowledged=True).where(Event.id.in_(acknowledged)).execute()
            audit(
                ACK_ACTION,
                f"event:{acknowledged[0]}" if len(acknowledged) == 1 else "events",
                listed_ids(acknowledged),
            )
    if acknowledged:
        queues.enqueue_cancellations(current_app.extensions["glimpser.redis"], acknowledged)
    return acknowledged


def acknowledgement(event: Event) -> AuditLog | None:
    """The audit entry that acknowledged this event (who and when), if the log still has it.

    Events keep only whether they are acknowledged; the log says by whom and when: an entry
    targets "event:<id>" when one event was acknowledged, else lists the ids in its detail.
    """
    if not event.acknowledged:
        return None
    entries = (
        AuditLog.select()
        .where(
            (AuditLog.action == ACK_ACTION)
            & (AuditLog.at >= event.created_at)
            & ((AuditLog.target == f"event:{event.id}") | (AuditLog.target == "events"))
        )
        .order_by(AuditLog.at, AuditLog.id)
    )
    for entry in entries.iterator():
        if entry.target == f"event:{event.id}":
            return entry
        detail = entry.detail if isinstance(entry.detail, dict) else {}
        listed = detail.get("ids")
        if isinstance(listed, list) and event.id in listed:
            return entry
    return None
