"""`/api/v1/streams/<id>/snapshots` and `/api/v1/streams/<id>/image`: a stream's pictures, their
metadata (size, analysis) and the images themselves, served by the same code as the web pages
(glimpser.web.streams: local files, X-Accel-Redirect or object storage; ETag and 304)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import peewee
from flask import Blueprint, request, url_for
from pydantic import BaseModel, Field, field_validator

from glimpser.api.pagination import PageQuery, page_response
from glimpser.api.problems import problem
from glimpser.api.spec import operation
from glimpser.auth.access import get_visible_stream
from glimpser.models import Snapshot
from glimpser.web import keyset
from glimpser.web.streams import IMMUTABLE, REVALIDATE, send_snapshot, send_thumbnail

bp = Blueprint("snapshots", __name__, url_prefix="")
TAGS = ("snapshots",)
IMAGE_TYPES = ("image/jpeg",)  # what the capture pipeline stores (sources.base.Frame)
INVALID_CURSOR = "This cursor is not one a page gave."


class SnapshotOut(BaseModel):
    """One picture of a stream. The analysis fields are null until the analysis job has run."""

    id: int
    stream_id: int
    captured_at: datetime
    width: int
    height: int
    bytes: int
    content_type: str
    sha256: str
    motion_score: float | None = Field(description="Share of the unmasked area in motion, 0–1")
    changed_fraction: float | None = Field(description="Share of pixels that changed, 0–1")
    changed: bool | None = Field(description="Whether it counted as a change")
    boxes: list[Any] | None = Field(
        description="Where it moved: [[x, y, w, h], …] as fractions of the picture"
    )
    analysis_note: str = Field(description="motion, identical, lighting, … ('' until analysed)")
    analysed_at: datetime | None
    ai: dict[str, Any] | None = Field(
        description="The AI description {title, description, objects, threat, confidence}, "
        "or {error}"
    )
    has_text: bool = Field(description="A website's text was kept with it")
    image_url: str
    thumbnail_url: str


class SnapshotList(BaseModel):
    items: list[SnapshotOut]
    next_cursor: str | None


class SnapshotQuery(PageQuery):
    since: datetime | None = Field(
        None, description="Captured at or after (ISO 8601; without an offset: UTC)"
    )
    until: datetime | None = Field(
        None, description="Captured before (ISO 8601; without an offset: UTC)"
    )

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValueError("is outside the years 0001 to 9999 in UTC") from None


# Every column but the page text (up to 100 000 characters), which only `has_text` needs.
_COLUMNS = (
    Snapshot.id,
    Snapshot.stream,
    Snapshot.captured_at,
    Snapshot.storage_key,
    Snapshot.content_type,
    Snapshot.width,
    Snapshot.height,
    Snapshot.bytes,
    Snapshot.sha256,
    Snapshot.motion_score,
    Snapshot.changed_fraction,
    Snapshot.changed,
    Snapshot.boxes,
    Snapshot.analysis_note,
    Snapshot.ai,
    Snapshot.analysed_at,
    Snapshot.text.is_null(False).alias("has_text"),
)


def snapshot_out(snapshot: Snapshot) -> SnapshotOut:
    ids = {"stream_id": snapshot.stream_id, "snapshot_id": snapshot.id}
    return SnapshotOut(
        id=snapshot.id,
        stream_id=snapshot.stream_id,
        captured_at=snapshot.captured_at,
        width=snapshot.width,
        height=snapshot.height,
        bytes=snapshot.bytes,
        content_type=snapshot.content_type,
        sha256=snapshot.sha256,
        motion_score=snapshot.motion_score,
        changed_fraction=snapshot.changed_fraction,
        changed=snapshot.changed,
        boxes=snapshot.boxes,
        analysis_note=snapshot.analysis_note,
        analysed_at=snapshot.analysed_at,
        ai=snapshot.ai,
        has_text=bool(getattr(snapshot, "has_text", False)),
        image_url=url_for("api.snapshots.snapshot_image", **ids),
        thumbnail_url=url_for("api.snapshots.snapshot_thumbnail", **ids),
    )


def _snapshots(stream_id: int) -> peewee.ModelSelect:
    stream = get_visible_stream(stream_id)
    return Snapshot.select(*_COLUMNS).where(Snapshot.stream == stream.id)


def _snapshot(stream_id: int, snapshot_id: int) -> Snapshot:
    snapshot = _snapshots(stream_id).where(Snapshot.id == snapshot_id).first()
    if snapshot is None:
        problem(404, "Not found", "This stream has no snapshot with this id.")
    return snapshot


@bp.get("/streams/<int:stream_id>/snapshots")
@operation(tags=TAGS, query=SnapshotQuery, ok=SnapshotList, errors=(400, 404))
def list_snapshots(stream_id: int):
    """A stream's snapshots, newest first, optionally within [since, until)."""
    args: SnapshotQuery = request.context.query  # type: ignore[attr-defined]
    query = _snapshots(stream_id)
    if args.since is not None:
        query = query.where(Snapshot.captured_at >= args.since)
    if args.until is not None:
        query = query.where(Snapshot.captured_at < args.until)
    if args.cursor is not None:
        cursor = keyset.parse_cursor(args.cursor, INVALID_CURSOR)
        query = keyset.older_than(query, Snapshot.captured_at, Snapshot.id, cursor)
    rows = list(
        query.order_by(Snapshot.captured_at.desc(), Snapshot.id.desc()).limit(args.limit + 1)
    )
    page, next_cursor = keyset.split_page(
        rows, args.limit, lambda s: keyset.make_cursor(s.captured_at, s.id)
    )
    return page_response([snapshot_out(s) for s in page], next_cursor)


@bp.get("/streams/<int:stream_id>/snapshots/<int:snapshot_id>")
@operation(tags=TAGS, ok=SnapshotOut, errors=(404,))
def get_snapshot(stream_id: int, snapshot_id: int):
    """One snapshot's metadata, with the addresses of its picture and thumbnail."""
    return snapshot_out(_snapshot(stream_id, snapshot_id))


@bp.get("/streams/<int:stream_id>/snapshots/<int:snapshot_id>/image")
@operation(tags=TAGS, binary=IMAGE_TYPES, errors=(404, 503))
def snapshot_image(stream_id: int, snapshot_id: int):
    """One snapshot's picture. It never changes: clients may keep it (ETag, immutable)."""
    return send_snapshot(_snapshot(stream_id, snapshot_id), IMMUTABLE)


@bp.get("/streams/<int:stream_id>/snapshots/<int:snapshot_id>/thumbnail")
@operation(tags=TAGS, binary=IMAGE_TYPES, errors=(404, 503))
def snapshot_thumbnail(stream_id: int, snapshot_id: int):
    """One snapshot's thumbnail (JPEG), made on first request."""
    return send_thumbnail(_snapshot(stream_id, snapshot_id))


@bp.get("/streams/<int:stream_id>/image")
@operation(tags=TAGS, binary=IMAGE_TYPES, errors=(404, 503))
def latest_image(stream_id: int):
    """The stream's newest picture. Send its ETag back as If-None-Match: 304 while it is
    still the newest. 404 while the stream has none."""
    snapshot = _snapshots(stream_id).order_by(Snapshot.captured_at.desc(), Snapshot.id.desc())
    latest = snapshot.first()
    if latest is None:
        problem(404, "Not found", "This stream has no snapshot yet.")
    return send_snapshot(latest, REVALIDATE)
