"""`/api/v1/events`: the console's event list, search and acknowledgement.

The filters, the full-text search, the paging and the acknowledgement are the events page's
own (glimpser.analysis.event_store, glimpser.web.search): only events of streams visible to the
key ever appear or can be acknowledged, anything else answers 404. Acknowledging is open to
viewers' keys with the `write` scope, as the page's button is open to viewers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from flask import Blueprint, request, url_for
from flask_login import current_user
from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from glimpser import times
from glimpser.analysis import event_store
from glimpser.api.auth import viewer_may_write
from glimpser.api.pagination import PageQuery, page_response
from glimpser.api.problems import invalid, problem
from glimpser.api.spec import operation
from glimpser.models import (
    EVENT_KINDS,
    SEVERITIES,
    Delivery,
    Event,
    NotificationChannel,
    User,
)
from glimpser.web import keyset, search
from glimpser.web.params import MAX_ID

bp = Blueprint("events", __name__, url_prefix="/events")
TAGS = ("events",)

RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
Severity = Literal[SEVERITIES]  # type: ignore[valid-type]
Kind = Literal[EVENT_KINDS]  # type: ignore[valid-type]


def utc_time(value: datetime | None) -> datetime | None:
    """An aware time as UTC; a time that is not one in UTC (past year 9999) is refused."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None


class EventFilters(BaseModel):
    """The events page's filters: several values of one filter match any of them, different
    filters all apply."""

    stream: list[RowId] = Field(
        default_factory=list,
        max_length=event_store.MAX_CHOICES,
        description="Only events of these streams (repeat the parameter for several)",
    )
    system: bool = Field(
        False,
        description="Also (with `stream`) or only system-wide events, which have no stream "
        "(admins' keys only)",
    )
    severity: list[Severity] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=len(SEVERITIES),
        description="Only events of these severities",
    )
    kind: list[Kind] = Field(  # type: ignore[valid-type]
        default_factory=list, max_length=len(EVENT_KINDS), description="Only events of these kinds"
    )
    since: AwareDatetime | None = Field(
        None, description="Created at or after this time (ISO 8601 with an offset)"
    )
    until: AwareDatetime | None = Field(
        None, description="Created at or before this time (ISO 8601 with an offset)"
    )
    q: str | None = Field(
        None,
        max_length=search.MAX_QUERY_CHARS,
        description="Full-text search: every word must start a word of the title, description "
        "or objects (the events page's search)",
    )

    _to_utc = field_validator("since", "until")(utc_time)

    @model_validator(mode="after")
    def _range(self) -> EventFilters:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("`until` is before `since`")
        return self


class EventQuery(PageQuery, EventFilters):
    acknowledged: bool | None = Field(None, description="Only acknowledged (true) or not (false)")


class StreamRef(BaseModel):
    id: int
    name: str


class RuleRef(BaseModel):
    id: int
    name: str


class EventLinks(BaseModel):
    self: str = Field(description="This event in the API")
    page: str = Field(description="The event's page in the web console (signed-in browsers)")
    image: str | None = Field(
        None, description="The event's picture through the API; null without a picture"
    )


class EventOut(BaseModel):
    """An event as the timeline shows it."""

    id: int
    kind: str = Field(description="One of " + ", ".join(EVENT_KINDS))
    severity: str = Field(description="One of " + ", ".join(SEVERITIES))
    title: str
    description: str
    objects: list[str] = Field(description="What the AI saw or the rule matched")
    stream: StreamRef | None = Field(description="null for a system-wide event")
    rule: RuleRef | None = Field(description="null when no rule raised it (or it was deleted)")
    snapshot_id: int | None = Field(description="The picture of the event, if it still exists")
    acknowledged: bool
    created_at: datetime
    links: EventLinks


class AcknowledgedBy(BaseModel):
    user: str | None = Field(description="Who acknowledged it (null: a deleted user)")
    at: datetime
    api_key: str | None = Field(description="The prefix of the API key used, if one was")


class DeliveryOut(BaseModel):
    """One notification of this event to one channel. The channel's name, the response code
    and the error are shown to admins' keys only (errors may name endpoints); null otherwise."""

    id: int
    channel_id: int
    channel_kind: str
    channel_name: str | None
    purpose: str = Field(description="alert, or cancel (a CAP alert withdrawn)")
    status: str
    attempts: int
    response_code: int | None
    error: str | None
    created_at: datetime
    sent_at: datetime | None


class EventDetail(EventOut):
    data: dict[str, Any] = Field(
        description="What the rule recorded: conditions, scores, the AI's answer …"
    )
    acknowledgement: AcknowledgedBy | None = Field(
        description="Who acknowledged it and when, from the audit log; null when it is not "
        "acknowledged or the log no longer holds the entry"
    )
    deliveries: list[DeliveryOut]


class EventList(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


class AcknowledgeRequest(BaseModel):
    """Either `ids` (events this key cannot see are ignored) or `filters` (the list's filters;
    at most 500 events are acknowledged per request, newest first: repeat while `more`)."""

    ids: list[RowId] | None = Field(None, min_length=1, max_length=event_store.MAX_BULK)
    filters: EventFilters | None = None

    @model_validator(mode="after")
    def _one(self) -> AcknowledgeRequest:
        if (self.ids is None) == (self.filters is None):
            raise ValueError("Send either `ids` or `filters`.")
        return self


class AcknowledgeResult(BaseModel):
    acknowledged: list[int] = Field(description="The events acknowledged by this request")
    count: int
    more: bool = Field(description="With filters: more matching events are still not acknowledged")


# --- helpers --------------------------------------------------------------------------------


def _objects(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return []
    out: list[str] = []
    for name in ("objects", "matched_objects"):
        values = data.get(name)
        if isinstance(values, list):
            out += [str(v) for v in values if str(v) not in out]
    return out


def event_out(event: Event, model: type[EventOut] = EventOut, **extra: Any) -> EventOut:
    """An event loaded with event_store.with_related (stream, rule and snapshot joined)."""
    stream = event.stream if event.stream_id is not None else None
    rule = event.rule if event.rule_id is not None else None
    snapshot = event.snapshot if event.snapshot_id is not None else None
    snapshot_id = getattr(snapshot, "id", None) if snapshot is not None else None
    image = None
    if snapshot_id is not None and stream is not None:
        image = url_for(
            "api.snapshots.snapshot_image", stream_id=stream.id, snapshot_id=snapshot_id
        )
    return model(
        id=event.id,
        kind=event.kind,
        severity=event.severity,
        title=event.title,
        description=event.description,
        objects=_objects(event.data),
        stream=StreamRef(id=stream.id, name=stream.name) if stream and stream.id else None,
        rule=RuleRef(id=rule.id, name=rule.name) if rule and rule.id else None,
        snapshot_id=snapshot_id,
        acknowledged=event.acknowledged,
        created_at=event.created_at,
        links=EventLinks(
            self=url_for("api.events.get_event", event_id=event.id),
            page=url_for("events.detail", event_id=event.id),
            image=image,
        ),
        **extra,
    )


def _filters(args: EventFilters, acknowledged: bool | None = None) -> event_store.Filters:
    """The events page's Filters from the API's; 404 for a stream this key may not see."""
    if args.system and not current_user.is_admin:
        problem(404, "Not found", "Only admins' keys see system-wide events.")
    if not event_store.all_visible(list(args.stream)):
        problem(404, "Not found", "A stream of the filter does not exist or is not visible.")
    try:
        words = search.parse_query(args.q or "")
    except search.QueryError as exc:
        invalid({"q": str(exc)})
    streams = tuple(dict.fromkeys(str(i) for i in args.stream))
    return event_store.Filters(
        streams=streams + ((event_store.SYSTEM,) if args.system else ()),
        severities=tuple(dict.fromkeys(args.severity)),
        kinds=tuple(dict.fromkeys(args.kind)),
        range="custom" if args.since or args.until else "",
        start=args.since,
        end=args.until,
        ack="" if acknowledged is None else ("yes" if acknowledged else "no"),
        q=(args.q or "").strip() if words else "",
        words=tuple(words),
    )


def _visible_event(event_id: int) -> Event:
    event = event_store.newest_first(
        event_store.visible_events().where(Event.id == event_id)
    ).first()
    if event is None:
        problem(404, "Not found", "No such event, or it is not visible to this key.")
    return event


def _deliveries(event: Event) -> list[DeliveryOut]:
    admin = current_user.is_admin
    rows = (
        Delivery.select(
            Delivery, NotificationChannel.id, NotificationChannel.name, NotificationChannel.kind
        )
        .join(NotificationChannel)
        .where(Delivery.event == event.id)
        .order_by(Delivery.created_at, Delivery.id)
    )
    return [
        DeliveryOut(
            id=d.id,
            channel_id=d.channel.id,
            channel_kind=d.channel.kind,
            channel_name=d.channel.name if admin else None,
            purpose=d.purpose,
            status=d.status,
            attempts=d.attempts,
            response_code=d.response_code if admin else None,
            error=d.error if admin else None,
            created_at=d.created_at,
            sent_at=d.sent_at,
        )
        for d in rows
    ]


def _acknowledgement(event: Event) -> AcknowledgedBy | None:
    entry = event_store.acknowledgement(event)
    if entry is None:
        return None
    user = User.get_or_none(User.id == entry.user_id) if entry.user_id else None
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    key = detail.get("api_key")
    return AcknowledgedBy(
        user=user.username if user else None,
        at=entry.at,
        api_key=key if isinstance(key, str) else None,
    )


def event_detail(event: Event) -> EventDetail:
    return event_out(  # type: ignore[return-value]
        event,
        EventDetail,
        data=event.data if isinstance(event.data, dict) else {},
        acknowledgement=_acknowledgement(event),
        deliveries=_deliveries(event),
    )


# --- views ----------------------------------------------------------------------------------


@bp.get("")
@operation(tags=TAGS, query=EventQuery, ok=EventList, errors=(400, 404, 422))
def list_events():
    """Events this key may see, newest first, with the events page's filters and search."""
    args: EventQuery = request.context.query  # type: ignore[attr-defined]
    filters = _filters(args, args.acknowledged)
    query = event_store.filtered(filters, times.utcnow())
    cursor = None
    if args.cursor is not None:
        cursor = keyset.parse_cursor(args.cursor, "This cursor is not one a page gave.", MAX_ID)
    events, next_cursor = event_store.page(query, cursor, args.limit)
    return page_response([event_out(e) for e in events], next_cursor)


@bp.get("/<int:event_id>")
@operation(tags=TAGS, ok=EventDetail, errors=(404,))
def get_event(event_id: int):
    """One event: its stream, rule, picture, what the rule recorded, who acknowledged it and
    its notifications."""
    return event_detail(_visible_event(event_id))


@bp.post("/<int:event_id>/acknowledge")
@operation(tags=TAGS, ok=EventDetail, errors=(400, 404, 415))
@viewer_may_write
def acknowledge_event(event_id: int):
    """Acknowledge one event (done already: nothing changes). Viewers' keys with the `write`
    scope may, for the streams they see."""
    _visible_event(event_id)
    event_store.acknowledge([event_id])
    return event_detail(_visible_event(event_id))


@bp.post("/acknowledge")
@operation(tags=TAGS, json=AcknowledgeRequest, ok=AcknowledgeResult, errors=(400, 404, 415))
@viewer_may_write
def acknowledge_events():
    """Acknowledge many events: by id (those this key cannot see are ignored), or every event
    matching the filters (at most 500 per request, newest first; repeat while `more`)."""
    body: AcknowledgeRequest = request.context.json  # type: ignore[attr-defined]
    more = False
    if body.ids is not None:
        ids = sorted(set(body.ids))
    else:
        assert body.filters is not None
        query = event_store.filtered(_filters(body.filters, False), times.utcnow())
        rows = list(
            query.select(Event.id)
            .order_by(Event.created_at.desc(), Event.id.desc())
            .limit(event_store.MAX_BULK + 1)
            .tuples()
        )
        more = len(rows) > event_store.MAX_BULK
        ids = sorted(row[0] for row in rows[: event_store.MAX_BULK])
    done = event_store.acknowledge(ids)
    return AcknowledgeResult(acknowledged=done, count=len(done), more=more)
