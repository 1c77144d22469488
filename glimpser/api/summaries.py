"""`/api/v1/summaries`: the AI summaries a key may see, and "Summarise now".

Visibility is the Summaries page's (glimpser.analysis.summaries.visible_summaries), narrowed for
a key limited to some streams to the summaries of those streams only. A request goes through
the page's own `submit_request` (same checks, same queue); viewers' keys with the `write`
scope may ask, as viewers may on the page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import peewee
from flask import Blueprint, current_app, g, request, url_for
from flask_login import current_user
from pydantic import BaseModel, Field

from glimpser.analysis import summaries as service
from glimpser.api.auth import viewer_may_write
from glimpser.api.events import RowId
from glimpser.api.pagination import PageQuery, page_response
from glimpser.api.problems import invalid, problem
from glimpser.api.spec import operation
from glimpser.auth.access import get_visible_stream
from glimpser.models import Summary
from glimpser.web import keyset
from glimpser.web.app_settings import current_settings
from glimpser.web.params import MAX_ID

bp = Blueprint("summaries", __name__, url_prefix="/summaries")
TAGS = ("summaries",)

Window = Literal[tuple(service.CUSTOM_WINDOWS)]  # type: ignore[valid-type]


class SummaryOut(BaseModel):
    id: int
    scope: str = Field(description="What it covers, as the Summaries page names it")
    stream_id: int | None = Field(description="The stream of a one-stream summary")
    stream_ids: list[int] = Field(description="Every stream it covers")
    requested: bool = Field(description="Asked for with “Summarise now” (not scheduled)")
    period: str = Field(description="hour, day (scheduled) or custom (asked for)")
    window_start: datetime
    window_end: datetime
    status: str = Field(description="queued, running, done or failed")
    text: str = Field(description="The summary, once done")
    error: str = Field(description="Why it failed")
    model: str
    total_tokens: int
    created_at: datetime
    finished_at: datetime | None
    url: str = Field(description="This summary in the API (poll it until done or failed)")


class SummaryList(BaseModel):
    items: list[SummaryOut]
    next_cursor: str | None


class SummaryQuery(PageQuery):
    stream: RowId | None = Field(None, description="Only summaries of this one stream")
    period: Literal["hour", "day", "custom"] | None = None
    status: Literal["queued", "running", "done", "failed"] | None = None


class SummaryRequest(BaseModel):
    """Summarise now: one stream, or (without `stream_id`) every stream the user may see."""

    stream_id: RowId | None = None
    window: Window = Field(description="The window ending now: last hour, day or week")  # type: ignore[valid-type]


def summary_out(summary: Summary) -> SummaryOut:
    return SummaryOut(
        id=summary.id,
        scope=service.scope_label(summary),
        stream_id=summary.stream_id,
        stream_ids=[int(i) for i in summary.stream_ids or []],
        requested=summary.requested_by_id is not None,
        period=summary.period,
        window_start=summary.window_start,
        window_end=summary.window_end,
        status=summary.status,
        text=summary.text,
        error=summary.error,
        model=summary.model,
        total_tokens=summary.total_tokens,
        created_at=summary.created_at,
        finished_at=summary.finished_at,
        url=url_for("api.summaries.get_summary", summary_id=summary.id),
    )


def visible() -> peewee.ModelSelect:
    """The summaries this key may see: its user's, and for a key limited to some streams only
    those that cover none but them."""
    query = service.visible_summaries(current_user)
    key = g.get("api_key")
    if key is None or key.stream_ids is None:
        return query
    allowed_ids = set(key.stream_ids)
    sets = Summary.select(Summary.stream_ids).where(Summary.stream.is_null()).distinct()
    allowed = [
        Summary.stream_ids.db_value(ids)
        for (ids,) in sets.tuples()
        if ids and set(ids) <= allowed_ids
    ]
    condition = Summary.stream.in_(sorted(allowed_ids)) if allowed_ids else Summary.id.is_null()
    if allowed:
        condition |= Summary.stream.is_null() & Summary.stream_ids.in_(
            peewee.Value(allowed, converter=False)
        )
    return query.where(condition)


@bp.get("")
@operation(tags=TAGS, query=SummaryQuery, ok=SummaryList, errors=(400, 404, 422))
def list_summaries():
    """Summaries this key may see, newest window first."""
    args: SummaryQuery = request.context.query  # type: ignore[attr-defined]
    query = visible()
    if args.stream is not None:
        query = query.where(Summary.stream == get_visible_stream(args.stream).id)
    if args.period is not None:
        query = query.where(Summary.period == args.period)
    if args.status is not None:
        query = query.where(Summary.status == args.status)
    if args.cursor is not None:
        cursor = keyset.parse_cursor(args.cursor, "This cursor is not one a page gave.", MAX_ID)
        query = keyset.older_than(query, Summary.window_end, Summary.id, cursor)
    rows = list(query.order_by(Summary.window_end.desc(), Summary.id.desc()).limit(args.limit + 1))
    page, next_cursor = keyset.split_page(
        rows, args.limit, lambda s: keyset.make_cursor(s.window_end, s.id)
    )
    return page_response([summary_out(s) for s in page], next_cursor)


@bp.get("/<int:summary_id>")
@operation(tags=TAGS, ok=SummaryOut, errors=(404,))
def get_summary(summary_id: int):
    """One summary (poll it while it is queued or running)."""
    summary = visible().where(Summary.id == summary_id).first()
    if summary is None:
        problem(404, "Not found", "No such summary, or it is not visible to this key.")
    return summary_out(summary)


@bp.post("")
@operation(
    tags=TAGS, json=SummaryRequest, ok=SummaryOut, status=202, errors=(400, 404, 409, 415, 429)
)
@viewer_may_write
def request_summary():
    """Summarise now, as the Summaries page does: the build is queued (202); poll its `url`.
    409 without an AI server, 429 while the user has 3 summaries being built."""
    body: SummaryRequest = request.context.json  # type: ignore[attr-defined]
    stream = get_visible_stream(body.stream_id) if body.stream_id is not None else None
    key = g.get("api_key")
    if stream is None and key is not None and key.stream_ids is not None:
        invalid({"stream_id": "This key is limited to some streams: choose one of them."})
    try:
        summary = service.submit_request(
            current_user,
            stream,
            body.window,
            current_app.extensions["glimpser.redis"],
            ai_configured=current_settings().ai_configured,
        )
    except service.RequestRefused as exc:
        if exc.status == 422:
            invalid({exc.field if exc.field == "window" else "stream_id": exc.message})
        problem(exc.status, "Conflict" if exc.status == 409 else "Too many requests", exc.message)
    response = current_app.json.response(summary_out(summary).model_dump(mode="json"))
    response.status_code = 202
    response.headers["Location"] = url_for("api.summaries.get_summary", summary_id=summary.id)
    return response
