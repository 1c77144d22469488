"""`/api/v1/timelapses`: request a timelapse of a stream, follow its progress, download it.

A request goes through the stream page's own `submit_build` (same checks: fps, range, at most
50 000 frames, at most 3 builds per user; same queue). Anyone whose key may see a stream may
ask (viewers' keys with the `write` scope too, as on the page); every timelapse is reached
through its stream, so another stream's answers 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from flask import Blueprint, current_app, request, url_for
from flask_login import current_user
from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from glimpser.api.auth import viewer_may_write
from glimpser.api.events import RowId, utc_time
from glimpser.api.pagination import PageQuery, page_response
from glimpser.api.problems import invalid, problem
from glimpser.api.spec import operation
from glimpser.auth.access import get_visible_stream, visible_streams
from glimpser.media import timelapse as builder
from glimpser.models import TIMELAPSE_STATES, Stream, Timelapse
from glimpser.web import keyset
from glimpser.web.params import MAX_ID
from glimpser.web.timelapse import video_response

bp = Blueprint("timelapses", __name__, url_prefix="/timelapses")
TAGS = ("timelapses",)

Fps = Literal[builder.FPS_CHOICES]  # type: ignore[valid-type]


class TimelapseOut(BaseModel):
    id: int
    stream_id: int
    stream_name: str
    range_start: datetime
    range_end: datetime
    fps: int
    status: str = Field(description="queued, running, done or failed")
    progress: int = Field(description="Percent built, 0-100")
    frames: int
    bytes: int
    width: int | None
    height: int | None
    error: str = Field(description="Why it failed")
    created_at: datetime
    finished_at: datetime | None
    url: str = Field(description="This timelapse in the API (poll it until done or failed)")
    download: str | None = Field(description="The MP4, once done")


class TimelapseList(BaseModel):
    items: list[TimelapseOut]
    next_cursor: str | None


class TimelapseQuery(PageQuery):
    stream: RowId | None = Field(None, description="Only timelapses of this stream")
    status: Literal[TIMELAPSE_STATES] | None = None  # type: ignore[valid-type]


class TimelapseRequest(BaseModel):
    """A timelapse of one stream's snapshots from `start` to `end`."""

    stream_id: RowId
    start: AwareDatetime = Field(description="ISO 8601 with an offset")
    end: AwareDatetime = Field(description="ISO 8601 with an offset; after `start`")
    fps: Fps = Field(builder.DEFAULT_FPS, description="Frames per second of the video")  # type: ignore[valid-type]

    _to_utc = field_validator("start", "end")(utc_time)

    @model_validator(mode="after")
    def _range(self) -> TimelapseRequest:
        if self.start >= self.end:
            raise ValueError("`end` must be after `start`")
        return self


def timelapse_out(timelapse: Timelapse, stream: Stream) -> TimelapseOut:
    done = timelapse.status == "done" and bool(timelapse.storage_key)
    return TimelapseOut(
        id=timelapse.id,
        stream_id=stream.id,
        stream_name=stream.name,
        range_start=timelapse.range_start,
        range_end=timelapse.range_end,
        fps=timelapse.fps,
        status=timelapse.status,
        progress=timelapse.progress,
        frames=timelapse.frames,
        bytes=timelapse.bytes,
        width=timelapse.width,
        height=timelapse.height,
        error=timelapse.error,
        created_at=timelapse.created_at,
        finished_at=timelapse.finished_at,
        url=url_for("api.timelapses.get_timelapse", timelapse_id=timelapse.id),
        download=url_for("api.timelapses.download", timelapse_id=timelapse.id) if done else None,
    )


def _visible(timelapse_id: int) -> tuple[Timelapse, Stream]:
    row = (
        Timelapse.select(Timelapse, Stream)
        .join(Stream)
        .where(
            (Timelapse.id == timelapse_id)
            & Timelapse.stream.in_(visible_streams().select(Stream.id))
        )
        .first()
    )
    if row is None:
        problem(404, "Not found", "No such timelapse, or it is not visible to this key.")
    return row, row.stream


@bp.get("")
@operation(tags=TAGS, query=TimelapseQuery, ok=TimelapseList, errors=(400, 404, 422))
def list_timelapses():
    """Timelapses of the streams this key may see, newest first."""
    args: TimelapseQuery = request.context.query  # type: ignore[attr-defined]
    query = (
        Timelapse.select(Timelapse, Stream)
        .join(Stream)
        .where(Timelapse.stream.in_(visible_streams().select(Stream.id)))
    )
    if args.stream is not None:
        query = query.where(Timelapse.stream == get_visible_stream(args.stream).id)
    if args.status is not None:
        query = query.where(Timelapse.status == args.status)
    if args.cursor is not None:
        cursor = keyset.parse_cursor(args.cursor, "This cursor is not one a page gave.", MAX_ID)
        query = keyset.older_than(query, Timelapse.created_at, Timelapse.id, cursor)
    rows = list(
        query.order_by(Timelapse.created_at.desc(), Timelapse.id.desc()).limit(args.limit + 1)
    )
    page, next_cursor = keyset.split_page(
        rows, args.limit, lambda t: keyset.make_cursor(t.created_at, t.id)
    )
    return page_response([timelapse_out(t, t.stream) for t in page], next_cursor)


@bp.get("/<int:timelapse_id>")
@operation(tags=TAGS, ok=TimelapseOut, errors=(404,))
def get_timelapse(timelapse_id: int):
    """One timelapse: its state and progress (poll it while queued or running)."""
    return timelapse_out(*_visible(timelapse_id))


@bp.get("/<int:timelapse_id>/download")
@operation(tags=TAGS, errors=(404, 409), binary=("video/mp4",))
def download(timelapse_id: int):
    """The MP4 (Range requests work). 409 while it is queued or running; 404 when it failed
    or its file is gone."""
    timelapse, stream = _visible(timelapse_id)
    if timelapse.status in builder.ACTIVE_STATES:
        problem(409, "Not ready", f"The timelapse is {timelapse.status} ({timelapse.progress} %).")
    if timelapse.status != "done" or not timelapse.storage_key:
        problem(404, "Not found", f"The timelapse has no video: {timelapse.error or 'failed'}.")
    return video_response(stream, timelapse, download=True)


@bp.post("")
@operation(
    tags=TAGS, json=TimelapseRequest, ok=TimelapseOut, status=202, errors=(400, 404, 415, 429)
)
@viewer_may_write
def request_timelapse():
    """Build a timelapse, as the stream page does: queued (202); poll its `url`, then fetch
    `download`. 429 while the user has 3 timelapses being built."""
    body: TimelapseRequest = request.context.json  # type: ignore[attr-defined]
    stream = get_visible_stream(body.stream_id)
    try:
        timelapse = builder.submit_build(
            stream,
            current_user,
            body.start,
            body.end,
            body.fps,
            current_app.extensions["glimpser.redis"],
        )
    except builder.BuildRefused as exc:
        if exc.status == 422:
            invalid({"fps" if exc.field == "fps" else "end": exc.message})
        problem(exc.status, "Too many requests", exc.message)
    response = current_app.json.response(timelapse_out(timelapse, stream).model_dump(mode="json"))
    response.status_code = 202
    response.headers["Location"] = url_for(
        "api.timelapses.get_timelapse", timelapse_id=timelapse.id
    )
    return response
