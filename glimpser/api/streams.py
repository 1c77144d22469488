"""`/api/v1/streams`: the streams a key may see, and (admins) creating and changing them."""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from typing import Any, Literal

from flask import Blueprint, current_app, g, request, url_for
from pydantic import BaseModel, ConfigDict, Field

from glimpser.analysis.schemas import AnalysisSettings
from glimpser.api.pagination import PageQuery, page_response
from glimpser.api.problems import invalid, problem
from glimpser.api.spec import operation
from glimpser.auth.access import get_visible_stream, visible_streams
from glimpser.media import deletion
from glimpser.models import Stream
from glimpser.schema_helpers import REENTER_MESSAGE
from glimpser.sources.schemas import (
    KINDS,
    SourceConfigUnion,
    StreamSpec,
    dump_config,
    parse_config,
)
from glimpser.transfer import stream_actions
from glimpser.transfer.stream_store import NAME_TAKEN, keep_stored_secrets, name_taken
from glimpser.web.app_settings import current_settings
from glimpser.web.params import MAX_ID, parse_int

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


# --- shared helpers ------------------------------------------------------------------------

# A test capture's job id is remembered for the key that asked, this long (its result lives
# 300 s in RQ, see queues.enqueue_test_capture).
TEST_JOBS_TTL = 600
# What RQ job ids look like (uuid4 hex with dashes; "capture-<stream>-<hex>" for captures).
_JOB_ID = re.compile(r"[A-Za-z0-9-]{1,80}")
WORKER_FAILED = "The worker could not finish the capture (see the logs)."


def _redis():  # noqa: ANN202
    return current_app.extensions["glimpser.redis"]


def _answer(model: BaseModel, status: int, location: str) -> tuple[BaseModel, int, dict]:
    return model, status, {"Location": location}


# --- create, replace, delete ---------------------------------------------------------------


@bp.post("")
@operation(tags=TAGS, json=StreamSpec, ok=StreamOut, status=201, errors=(400,))
def create_stream():
    """Create a stream (the stream form's fields; admins). Its first capture is queued at once
    when it is enabled. Without `analysis`, a new stream gets the form's defaults (it
    describes changes when AI is configured). A taken name is a 422 on `name`."""
    spec: StreamSpec = request.context.json  # type: ignore[attr-defined]
    if "analysis" not in spec.model_fields_set:
        ai = current_settings().ai_configured
        spec = spec.model_copy(update={"analysis": AnalysisSettings(describe_on_change=ai)})
    try:
        stream = stream_actions.save_stream(None, spec)
    except stream_actions.NameTaken:
        invalid({"name": NAME_TAKEN})
    stream_actions.capture_if_enabled(_redis(), stream)
    return _answer(stream_out(stream), 201, url_for("api.streams.get_stream", stream_id=stream.id))


@bp.put("/<int:stream_id>")
@operation(tags=TAGS, json=StreamSpec, ok=StreamOut, errors=(400, 404))
def replace_stream(stream_id: int):
    """Replace a stream's definition (the whole StreamSpec; admins). Secrets are write-only: a
    secret left out or blank keeps the stored one while the address points to the same host;
    when the host changed it must be sent again (422). Snapshots and events stay."""
    stream = get_visible_stream(stream_id)
    spec: StreamSpec = request.context.json  # type: ignore[attr-defined]
    submitted = dump_config(spec.config, include_secrets=True)
    names = type(spec.config).SECRET_FIELDS
    kept, reenter = keep_stored_secrets(stream.config, submitted, names)
    errors = {f"config.{name}": REENTER_MESSAGE for name in reenter}
    if name_taken(spec.name, stream):
        errors["name"] = NAME_TAKEN
    if errors:
        invalid(errors)
    try:
        stream = stream_actions.save_stream(stream, spec, kept)
    except stream_actions.NameTaken:
        invalid({"name": NAME_TAKEN})
    stream_actions.capture_if_enabled(_redis(), stream)
    return stream_out(stream)


class DeletionOut(BaseModel):
    id: int
    name: str
    snapshots: int = Field(description="How many snapshots are being removed")


@bp.delete("/<int:stream_id>")
@operation(tags=TAGS, ok=DeletionOut, status=202, errors=(404,))
def delete_stream(stream_id: int):
    """Delete a stream (admins): it disappears at once, and a job removes its snapshots,
    events and timelapses (progress under Admin)."""
    stream = get_visible_stream(stream_id)
    try:
        snapshots = stream_actions.delete_stream(_redis(), stream)
    except deletion.DeletionError:
        problem(404, "Not found", "This stream is being deleted.")
    return DeletionOut(id=stream.id, name=stream.name, snapshots=snapshots), 202


# --- pause, resume --------------------------------------------------------------------------


@bp.post("/<int:stream_id>/pause")
@operation(tags=TAGS, ok=StreamOut, errors=(404,))
def pause_stream(stream_id: int):
    """Stop capturing (admins); the stream keeps its snapshots."""
    return stream_out(stream_actions.pause_stream(get_visible_stream(stream_id)))


@bp.post("/<int:stream_id>/resume")
@operation(tags=TAGS, ok=StreamOut, errors=(404,))
def resume_stream(stream_id: int):
    """Capture again (admins), starting with a capture right away."""
    return stream_out(stream_actions.resume_stream(_redis(), get_visible_stream(stream_id)))


# --- capture now ----------------------------------------------------------------------------


class CaptureJobOut(BaseModel):
    """A "capture now" job: `pending` until a worker has run it; `done` with what happened
    (`ok`: the source answered; `stored`: a new picture, else it equalled the last one;
    `error` when it failed); `failed` when the worker could not finish it."""

    job_id: str
    state: Literal["pending", "done", "failed"]
    queued: bool = Field(False, description="Pending and still waiting for a worker")
    ok: bool | None = None
    stored: bool | None = None
    snapshot_id: int | None = None
    error: str | None = None
    url: str = Field(description="Where this job's result is (GET)")


def _capture_out(stream: Stream, job_id: str, outcome: stream_actions.JobOutcome) -> CaptureJobOut:
    url = url_for("api.streams.capture_result", stream_id=stream.id, job_id=job_id)
    if outcome.state == "done":
        result = outcome.result
        return CaptureJobOut(
            job_id=job_id,
            state="done",
            ok=bool(result.get("ok")),
            stored=bool(result.get("stored")),
            snapshot_id=result.get("snapshot_id"),
            error=result.get("error") or None,
            url=url,
        )
    if outcome.state == "failed":
        return CaptureJobOut(job_id=job_id, state="failed", error=WORKER_FAILED, url=url)
    return CaptureJobOut(job_id=job_id, state="pending", queued=outcome.queued, url=url)


@bp.post("/<int:stream_id>/capture")
@operation(tags=TAGS, ok=CaptureJobOut, status=202, errors=(404, 409))
def capture_now(stream_id: int):
    """Queue a capture now (admins); 409 when one of this stream is already queued or
    running. Follow `url` for what it did."""
    stream = get_visible_stream(stream_id)
    job_id = stream_actions.request_capture(_redis(), stream)
    if job_id is None:
        problem(409, "Conflict", "A capture of this stream is already queued or running.")
    out = _capture_out(stream, job_id, stream_actions.JobOutcome("pending", queued=True))
    return _answer(out, 202, out.url)


@bp.get("/<int:stream_id>/capture/<job_id>")
@operation(tags=TAGS, ok=CaptureJobOut, errors=(404,))
def capture_result(stream_id: int, job_id: str):
    """What a "capture now" job did (404 once its result has expired, after a few minutes)."""
    stream = get_visible_stream(stream_id)
    if not _JOB_ID.fullmatch(job_id) or not job_id.startswith(f"capture-{stream.id}-"):
        problem(404, "Not found", "No capture of this stream has this job id.")
    outcome = stream_actions.job_outcome(_redis(), job_id)
    if outcome.state == "expired":
        problem(404, "Not found", "This capture is unknown or its result has expired.")
    return _capture_out(stream, job_id, outcome)


# --- test capture ---------------------------------------------------------------------------


class TestCaptureIn(BaseModel):
    """A source configuration to try once, without saving it."""

    model_config = ConfigDict(extra="forbid")

    config: SourceConfigUnion
    stream_id: int | None = Field(
        None,
        ge=1,
        le=MAX_ID,
        description="A saved stream whose stored secrets a blank secret field uses (while "
        "the address points to the same host)",
    )


class TestCaptureOut(BaseModel):
    """A test capture: `pending`, `done` (`ok` with the picture, or `error`), or `failed`
    (the worker could not finish it)."""

    job_id: str
    state: Literal["pending", "done", "failed"]
    queued: bool = Field(False, description="Pending and still waiting for a worker")
    ok: bool | None = None
    error: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    jpeg_base64: str | None = Field(None, description="The picture (JPEG, base64)")
    text: str | None = Field(None, description="The page's text (websites keeping it)")
    elements: dict[str, Any] | None = Field(
        None, description="A website's elements and their boxes, to pick one to crop to"
    )
    url: str = Field(description="Where this test capture's result is (GET)")


def _test_jobs_key() -> str:
    return f"glimpser:api:test-captures:{g.api_key.id}"


@bp.post("/test-capture")
@operation(tags=TAGS, json=TestCaptureIn, ok=TestCaptureOut, status=202, errors=(400, 404))
def test_capture():
    """Capture once from a configuration without saving it (admins), as the stream form's
    "Test capture" does. Secrets typed in never reach Redis in clear. Only the key that asked
    may read the result (`url`), for ten minutes."""
    body: TestCaptureIn = request.context.json  # type: ignore[attr-defined]
    stream = get_visible_stream(body.stream_id) if body.stream_id is not None else None
    if stream is not None:
        submitted = dump_config(body.config, include_secrets=True)
        names = type(body.config).SECRET_FIELDS
        _kept, reenter = keep_stored_secrets(stream.config, submitted, names)
        if reenter:
            invalid({f"config.{name}": REENTER_MESSAGE for name in reenter})
    connection = _redis()
    job = stream_actions.queue_test_capture(
        connection, body.config, stream, current_settings().secret_key
    )
    with connection.pipeline() as pipe:
        pipe.sadd(_test_jobs_key(), job.id)
        pipe.expire(_test_jobs_key(), TEST_JOBS_TTL)
        pipe.execute()
    url = url_for("api.streams.test_capture_result", job_id=job.id)
    return _answer(TestCaptureOut(job_id=job.id, state="pending", queued=True, url=url), 202, url)


@bp.get("/test-capture/<job_id>")
@operation(tags=TAGS, ok=TestCaptureOut, errors=(404,))
def test_capture_result(job_id: str):
    """A test capture's result, for the key that asked for it (404 otherwise, and once it
    has expired)."""
    if not _JOB_ID.fullmatch(job_id) or not _redis().sismember(_test_jobs_key(), job_id):
        problem(404, "Not found", "This key asked for no test capture with this job id.")
    outcome = stream_actions.job_outcome(_redis(), job_id)
    url = url_for("api.streams.test_capture_result", job_id=job_id)
    if outcome.state == "expired":
        problem(404, "Not found", "This test capture's result has expired; try again.")
    if outcome.state == "failed":
        return TestCaptureOut(job_id=job_id, state="failed", error=WORKER_FAILED, url=url)
    if outcome.state == "pending":
        return TestCaptureOut(job_id=job_id, state="pending", queued=outcome.queued, url=url)
    result = outcome.result
    if not result.get("ok"):
        error = result.get("error") or "capture failed"
        return TestCaptureOut(job_id=job_id, state="done", ok=False, error=error, url=url)
    return TestCaptureOut(
        job_id=job_id,
        state="done",
        ok=True,
        width=result.get("width"),
        height=result.get("height"),
        bytes=result.get("bytes"),
        jpeg_base64=result.get("jpeg_b64"),
        text=result.get("text"),
        elements=result.get("elements") or None,
        url=url,
    )
