"""Streams: list, detail, create/edit with per-kind fields and a test capture, delete,
capture now, pause/resume, and the snapshot images. The web process only enqueues work."""

from __future__ import annotations

import peewee
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from flask_login import current_user
from rq.exceptions import NoSuchJobError
from rq.job import Job

from glimpser import scheduling, times
from glimpser.auth.access import get_visible_stream, visible_streams
from glimpser.auth.policy import admin_only
from glimpser.db import write_transaction
from glimpser.models import AuditLog, Event, Snapshot, Stream
from glimpser.queues import get_queue
from glimpser.snapshots import delete_snapshots
from glimpser.sources.schemas import CONFIG_BY_KIND, KIND_LABELS, KIND_QUEUE, dump_config
from glimpser.storage import get_storage
from glimpser.stream_store import create_stream, update_stream
from glimpser.web import stream_form

bp = Blueprint("streams", __name__, url_prefix="/streams")

TEST_JOBS_KEY = "test_capture_jobs"


def _redis():  # noqa: ANN202
    return current_app.extensions["glimpser.redis"]


def _settings():  # noqa: ANN202
    return current_app.extensions["glimpser.settings"]


def _audit(action: str, stream: Stream, **detail: object) -> None:
    AuditLog.create(
        user=current_user.id,
        action=action,
        target=f"stream:{stream.id}",
        detail={"name": stream.name, **detail},
        ip=request.remote_addr or "",
    )


@bp.get("/")
def index():
    streams = visible_streams().order_by(Stream.name)
    return render_template("streams/list.html", streams=streams, kind_labels=KIND_LABELS)


@bp.get("/<int:stream_id>")
def detail(stream_id: int):
    stream = get_visible_stream(stream_id)
    snapshots = (
        Snapshot.select()
        .where(Snapshot.stream == stream)
        .order_by(Snapshot.captured_at.desc())
        .limit(24)
    )
    events = (
        Event.select().where(Event.stream == stream).order_by(Event.created_at.desc()).limit(20)
    )
    return render_template(
        "streams/detail.html",
        stream=stream,
        snapshots=list(snapshots),
        events=events,
        kind_labels=KIND_LABELS,
        capture_pending=scheduling.is_claimed(_redis(), stream.id),
    )


@bp.get("/<int:stream_id>/status")
def status(stream_id: int):
    """The status block alone, polled by htmx while the page is open."""
    stream = get_visible_stream(stream_id)
    latest = (
        Snapshot.select()
        .where(Snapshot.stream == stream)
        .order_by(Snapshot.captured_at.desc())
        .first()
    )
    return render_template("streams/_status.html", stream=stream, latest=latest)


# --- images --------------------------------------------------------------------------------


def _send_snapshot(snapshot: Snapshot):  # noqa: ANN202
    storage = get_storage(_settings())
    path = storage.local_path(snapshot.storage_key)
    if path is not None:
        response = send_file(
            path,
            mimetype=snapshot.content_type,
            conditional=True,
            etag=snapshot.sha256,
            last_modified=snapshot.captured_at,
        )
    else:
        data = storage.get(snapshot.storage_key)
        response = current_app.response_class(data, mimetype=snapshot.content_type)
        response.set_etag(snapshot.sha256)
        response.last_modified = snapshot.captured_at
        response = response.make_conditional(request)
    response.headers["Cache-Control"] = "private, max-age=0, must-revalidate"
    return response


@bp.get("/<int:stream_id>/snapshot.jpg")
def latest_image(stream_id: int):
    stream = get_visible_stream(stream_id)
    snapshot = (
        Snapshot.select()
        .where(Snapshot.stream == stream)
        .order_by(Snapshot.captured_at.desc())
        .first()
    )
    if snapshot is None:
        abort(404)
    return _send_snapshot(snapshot)


@bp.get("/<int:stream_id>/snapshots/<int:snapshot_id>.jpg")
def snapshot_image(stream_id: int, snapshot_id: int):
    stream = get_visible_stream(stream_id)
    snapshot = Snapshot.get_or_none((Snapshot.id == snapshot_id) & (Snapshot.stream == stream))
    if snapshot is None:
        abort(404)
    return _send_snapshot(snapshot)


# --- create and edit -----------------------------------------------------------------------


def _render_form(
    stream: Stream | None,
    kind: str,
    stream_values: dict,
    config_values: dict,
    errors: dict,
    status: int = 200,
):
    stored = frozenset(
        name
        for name in CONFIG_BY_KIND[kind].SECRET_FIELDS
        if stream is not None and stream.kind == kind and stream.config.get(name)
    )
    return render_template(
        "streams/form.html",
        stream=stream,
        kind=kind,
        kinds=stream_form.kind_options(),
        common=stream_form.stream_fields(stream_values, errors),
        fields=stream_form.kind_fields(kind, config_values, errors, stored),
        errors=errors,
    ), status


@bp.get("/new")
@admin_only
def new():
    kind = request.args.get("kind", "rtsp")
    if kind not in CONFIG_BY_KIND:
        kind = "rtsp"
    return _render_form(None, kind, {}, {}, {})


@bp.get("/kind-fields")
@admin_only
def kind_fields():
    """The fields of one kind, swapped into the form by htmx when the kind changes."""
    kind = request.args.get("kind", "")
    if kind not in CONFIG_BY_KIND:
        abort(400, "unknown kind")
    stream = None
    if request.args.get("stream_id", "").isdigit():
        stream = Stream.get_or_none(Stream.id == int(request.args["stream_id"]))
    values = stream.config if stream is not None and stream.kind == kind else {}
    stored = frozenset(n for n in CONFIG_BY_KIND[kind].SECRET_FIELDS if values.get(n))
    return render_template(
        "streams/_kind_fields.html",
        kind=kind,
        fields=stream_form.kind_fields(kind, values, {}, stored),
    )


def _save(stream: Stream | None):  # noqa: ANN202
    existing = stream.config if stream is not None else None
    spec, stream_values, config_values, errors = stream_form.parse_form(request.form, existing)
    kind = request.form.get("kind", "")
    if kind not in CONFIG_BY_KIND:
        kind = stream.kind if stream is not None else "rtsp"
    if spec is not None:
        clash = Stream.select().where(peewee.fn.LOWER(Stream.name) == spec.name.lower())
        if stream is not None:
            clash = clash.where(Stream.id != stream.id)
        if clash.exists():
            errors = {"name": "Another stream already has this name."}
    if spec is None or errors:
        return _render_form(stream, kind, stream_values, config_values, errors, 400)
    try:
        with write_transaction():
            created = stream is None
            stream = create_stream(spec) if created else update_stream(stream, spec)
            _audit("stream.create" if created else "stream.update", stream, kind=stream.kind)
    except peewee.IntegrityError:  # the same name saved concurrently
        errors = {"name": "Another stream already has this name."}
        return _render_form(stream, kind, stream_values, config_values, errors, 400)
    flash(
        f"Stream “{stream.name}” created; the first capture is on its way."
        if created
        else f"Stream “{stream.name}” saved.",
        "success",
    )
    if stream.enabled:
        scheduling.capture_now(_redis(), stream)
    return redirect(url_for("streams.detail", stream_id=stream.id))


@bp.post("/new")
def create():
    return _save(None)


@bp.get("/<int:stream_id>/edit")
@admin_only
def edit(stream_id: int):
    stream = get_visible_stream(stream_id)
    values = {name: getattr(stream, name) for name in stream_form.STREAM_FIELDS}
    return _render_form(stream, stream.kind, values, stream.config, {})


@bp.post("/<int:stream_id>/edit")
def update(stream_id: int):
    return _save(get_visible_stream(stream_id))


# --- test capture --------------------------------------------------------------------------


@bp.post("/test-capture")
def test_capture():
    """Validate the form as it stands and capture once on a worker, without saving."""
    from glimpser.jobs import test_capture as test_capture_job

    existing = None
    if request.form.get("stream_id", "").isdigit():
        stream = Stream.get_or_none(Stream.id == int(request.form["stream_id"]))
        existing = stream.config if stream is not None else None
    spec, _sv, _cv, errors = stream_form.parse_form(request.form, existing)
    config_errors = {k: v for k, v in errors.items() if k == "kind" or k.startswith("config")}
    if spec is None and config_errors:
        return render_template(
            "streams/_test_capture.html", state="invalid", errors=config_errors
        ), 422
    if spec is None:  # only stream-level fields are wrong: the source can still be tried
        from glimpser.sources.schemas import parse_config

        config = parse_config(_cv)
    else:
        config = spec.config
    queue = get_queue(KIND_QUEUE[config.kind], _redis())
    job = queue.enqueue(
        test_capture_job,
        dump_config(config, include_secrets=True),
        job_timeout=config.timeout + 30,
        result_ttl=300,
        ttl=120,
        failure_ttl=300,
    )
    session[TEST_JOBS_KEY] = ([*session.get(TEST_JOBS_KEY, [])][-9:]) + [job.id]
    return render_template("streams/_test_capture.html", state="pending", job_id=job.id)


@bp.get("/test-capture/<job_id>")
@admin_only
def test_capture_result(job_id: str):
    if job_id not in session.get(TEST_JOBS_KEY, []):
        abort(404)
    try:
        job = Job.fetch(job_id, connection=_redis())
    except NoSuchJobError:
        return render_template(
            "streams/_test_capture.html",
            state="error",
            error="The test capture expired; try again.",
        )
    status = job.get_status()
    if status == "finished":
        result = job.return_value() or {}
        if result.get("ok"):
            return render_template("streams/_test_capture.html", state="done", result=result)
        return render_template(
            "streams/_test_capture.html", state="error", error=result.get("error", "capture failed")
        )
    if status in ("failed", "stopped", "canceled"):
        return render_template(
            "streams/_test_capture.html",
            state="error",
            error="The worker could not finish the capture (see the logs).",
        )
    return render_template(
        "streams/_test_capture.html", state="pending", job_id=job_id, queued=status == "queued"
    )


# --- actions -------------------------------------------------------------------------------


@bp.post("/<int:stream_id>/capture")
def capture_now(stream_id: int):
    stream = get_visible_stream(stream_id)
    if scheduling.capture_now(_redis(), stream):
        flash("Capture queued.", "success")
    else:
        flash("A capture of this stream is already running.", "info")
    return redirect(url_for("streams.detail", stream_id=stream.id))


@bp.post("/<int:stream_id>/pause")
def pause(stream_id: int):
    stream = get_visible_stream(stream_id)
    Stream.update(enabled=False, state="paused", updated_at=times.utcnow()).where(
        Stream.id == stream.id
    ).execute()
    _audit("stream.pause", stream)
    flash(f"“{stream.name}” is paused.", "info")
    return redirect(url_for("streams.detail", stream_id=stream.id))


@bp.post("/<int:stream_id>/resume")
def resume(stream_id: int):
    stream = get_visible_stream(stream_id)
    Stream.update(
        enabled=True, state="pending", next_due_at=times.utcnow(), updated_at=times.utcnow()
    ).where(Stream.id == stream.id).execute()
    _audit("stream.resume", stream)
    scheduling.capture_now(_redis(), Stream.get_by_id(stream.id))
    flash(f"“{stream.name}” is capturing again.", "success")
    return redirect(url_for("streams.detail", stream_id=stream.id))


@bp.get("/<int:stream_id>/delete")
@admin_only
def confirm_delete(stream_id: int):
    stream = get_visible_stream(stream_id)
    count = Snapshot.select().where(Snapshot.stream == stream).count()
    return render_template("streams/confirm_delete.html", stream=stream, snapshot_count=count)


@bp.post("/<int:stream_id>/delete")
def delete(stream_id: int):
    stream = get_visible_stream(stream_id)
    if request.form.get("confirm") != stream.name:
        flash("Type the stream's name to confirm.", "error")
        return redirect(url_for("streams.confirm_delete", stream_id=stream.id))
    removed = delete_snapshots(
        Snapshot.select().where(Snapshot.stream == stream), get_storage(_settings())
    )
    _audit("stream.delete", stream, snapshots=removed)
    stream.delete_instance()
    scheduling.release(_redis(), stream_id)
    flash(f"Stream “{stream.name}” and {removed} snapshots deleted.", "info")
    return redirect(url_for("streams.index"))
