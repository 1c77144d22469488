"""`/api/v1/streams`: the streams a key may see, and (admins) creating and changing them."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from flask import Blueprint, request
from pydantic import BaseModel, Field

from glimpser.api.pagination import PageQuery, page_response
from glimpser.api.spec import operation
from glimpser.auth.access import get_visible_stream, visible_streams
from glimpser.models import Stream
from glimpser.sources.schemas import KINDS, parse_config
from glimpser.web.params import parse_int

bp = Blueprint("streams", __name__, url_prefix="/streams")
TAGS = ("streams",)


class StreamOut(BaseModel):
    """A stream as the API shows it: its config without secrets (`secrets_set` names the
    secret fields that hold a value)."""

    id: int
    name: str
    description: str
    kind: str
    groups: list[str]
    interval: int
    enabled: bool
    state: str = Field(description="pending, ok, failing, paused or deleting")
    last_capture_at: datetime | None
    last_success_at: datetime | None
    last_error: str
    consecutive_failures: int
    retention_max_age_days: int | None
    retention_max_count: int | None
    retention_max_bytes: int | None
    config: dict[str, Any]
    secrets_set: list[str]
    analysis: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class StreamList(BaseModel):
    items: list[StreamOut]
    next_cursor: str | None


class StreamQuery(PageQuery):
    kind: str | None = Field(None, description="Only streams of this kind", max_length=32)
    group: str | None = Field(None, max_length=64, description="Only streams in this group")
    state: str | None = Field(None, max_length=16, description="Only streams in this state")
    enabled: bool | None = None
    q: str | None = Field(None, max_length=200, description="Name contains (any case)")


def stream_out(stream: Stream) -> StreamOut:
    stored = dict(stream.config or {})
    secret_names: tuple[str, ...] = ()
    with contextlib.suppress(ValueError):  # a stored config no schema reads: no secrets known
        secret_names = type(parse_config(stored)).SECRET_FIELDS
    config = {k: v for k, v in stored.items() if k not in secret_names}
    return StreamOut(
        id=stream.id,
        name=stream.name,
        description=stream.description,
        kind=stream.kind,
        groups=list(stream.groups or []),
        interval=stream.interval,
        enabled=stream.enabled,
        state=stream.state,
        last_capture_at=stream.last_capture_at,
        last_success_at=stream.last_success_at,
        last_error=stream.last_error,
        consecutive_failures=stream.consecutive_failures,
        retention_max_age_days=stream.retention_max_age_days,
        retention_max_count=stream.retention_max_count,
        retention_max_bytes=stream.retention_max_bytes,
        config=config,
        secrets_set=[n for n in secret_names if stored.get(n)],
        analysis=dict(stream.analysis or {}),
        created_at=stream.created_at,
        updated_at=stream.updated_at,
    )


@bp.get("")
@operation(tags=TAGS, query=StreamQuery, ok=StreamList)
def list_streams():
    """List the streams this key may see, by id; filters combine."""
    args: StreamQuery = request.context.query  # type: ignore[attr-defined]
    query = visible_streams().where(Stream.deleting_since.is_null())
    if args.kind is not None:
        query = query.where(Stream.kind == args.kind) if args.kind in KINDS else query.where(False)
    if args.state is not None:
        query = query.where(Stream.state == args.state)
    if args.enabled is not None:
        query = query.where(Stream.enabled == args.enabled)
    if args.q:
        query = query.where(Stream.name.contains(args.q))
    if args.cursor is not None:
        after = parse_int(args.cursor, minimum=0)
        if after is None:
            from glimpser.api.problems import problem

            problem(400, "Bad request", "This cursor is not one a page gave.")
        query = query.where(Stream.id > after)
    rows = list(query.order_by(Stream.id).limit(args.limit + 1 if not args.group else None))
    if args.group:
        wanted = args.group.lower()
        rows = [s for s in rows if any(str(g).lower() == wanted for g in s.groups or [])]
    page = rows[: args.limit]
    more = len(rows) > args.limit
    return page_response([stream_out(s) for s in page], str(page[-1].id) if more else None)


@bp.get("/<int:stream_id>")
@operation(tags=TAGS, ok=StreamOut, errors=(404,))
def get_stream(stream_id: int):
    """One stream."""
    return stream_out(get_visible_stream(stream_id))
