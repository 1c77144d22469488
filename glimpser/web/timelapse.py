"""Timelapses of a stream: the panel (list + build form) the stream page loads with htmx, the
build request, a progress fragment polled until the MP4 is ready, the MP4 itself, delete.

Anyone who may see a stream may build its timelapses (a per-user cap on pending builds keeps
the workers free); only admins delete them. Every view loads the stream through
get_visible_stream(), so a stream the user may not see answers 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user
from werkzeug.datastructures import MultiDict
from werkzeug.utils import secure_filename

from glimpser import times
from glimpser.auth.access import get_visible_stream
from glimpser.db import write_transaction
from glimpser.media import timelapse as builder
from glimpser.media.storage import ObjectNotFound, get_storage
from glimpser.models import Stream, Timelapse
from glimpser.web.app_settings import current_settings
from glimpser.web.audit import audit
from glimpser.web.htmx import is_fragment_request as _is_htmx
from glimpser.web.humantime import localize
from glimpser.web.local_time import format_local, parse_local
from glimpser.web.params import parse_int

bp = Blueprint("timelapse", __name__)

PRESETS: dict[str, str] = {
    "hour": "Last hour",
    "day": "Last 24 hours",
    "today": "Today (since midnight)",
    "custom": "Custom range",
}
LIST_LIMIT = 50


@dataclass
class BuildRequest:
    """A validated build form."""

    start: datetime
    end: datetime
    fps: int


def _settings():  # noqa: ANN202
    return current_settings()


def _parse_field(form: MultiDict, name: str, errors: dict[str, str]) -> datetime | None:
    """A datetime-local field read in the viewer's zone; None (and a message) when it is blank
    or not a time there."""
    try:
        value = parse_local(form.get(name, ""))
    except ValueError as exc:
        errors[name] = f"Enter the {name} as a date and time: {exc}."
        return None
    if value is None:
        errors[name] = f"Enter the {name} as a date and time."
    return value


def parse_build_form(form: MultiDict, now: datetime) -> tuple[BuildRequest | None, dict]:
    """Validate the build form; returns the request or a dict of field → message."""
    errors: dict[str, str] = {}
    preset = form.get("preset", "")
    fps_text = form.get("fps", "")
    fps = parse_int(fps_text, minimum=0) or 0
    if fps not in builder.FPS_CHOICES:
        errors["fps"] = f"Choose one of {', '.join(map(str, builder.FPS_CHOICES))} fps."
    start = end = None
    if preset == "hour":
        start, end = now - timedelta(hours=1), now
    elif preset == "day":
        start, end = now - timedelta(hours=24), now
    elif preset == "today":
        start = times.to_utc(localize(now).replace(hour=0, minute=0, second=0, microsecond=0))
        end = now
    elif preset == "custom":
        start = _parse_field(form, "start", errors)
        end = _parse_field(form, "end", errors)
        if start is not None and end is not None and start >= end:
            errors["end"] = "The end must be after the start."
    else:
        errors["preset"] = "Choose a time range."
    if errors or start is None or end is None:
        return None, errors
    return BuildRequest(start, end, fps), {}


def _form_values(form: MultiDict | None, now: datetime) -> dict:
    form = form or MultiDict()
    return {
        "preset": form.get("preset", "hour"),
        "start": form.get("start") or format_local(now - timedelta(hours=1)),
        "end": form.get("end") or format_local(now),
        "fps": form.get("fps", str(builder.DEFAULT_FPS)),
    }


def _render_panel(stream: Stream, form: MultiDict | None = None, errors: dict | None = None):
    timelapses = (
        Timelapse.select()
        .where(Timelapse.stream == stream)
        .order_by(Timelapse.created_at.desc(), Timelapse.id.desc())
        .limit(LIST_LIMIT)
    )
    return render_template(
        "timelapse/_panel.html" if _is_htmx() else "timelapse/index.html",
        stream=stream,
        timelapses=list(timelapses),
        values=_form_values(form, times.utcnow()),
        errors=errors or {},
        presets=PRESETS,
        fps_choices=builder.FPS_CHOICES,
    )


def _get_timelapse(stream: Stream, timelapse_id: int) -> Timelapse:
    timelapse = Timelapse.get_or_none(
        (Timelapse.id == timelapse_id) & (Timelapse.stream == stream.id)
    )
    if timelapse is None:
        abort(404)
    return timelapse


@bp.get("/streams/<int:stream_id>/timelapses")
def panel(stream_id: int):
    """The list and the build form; a fragment for htmx, a page of its own otherwise."""
    return _render_panel(get_visible_stream(stream_id))


@bp.post("/streams/<int:stream_id>/timelapses")
def build(stream_id: int):
    stream = get_visible_stream(stream_id)
    spec, errors = parse_build_form(request.form, times.utcnow())
    status = 422
    timelapse = None
    if spec is not None:
        try:
            timelapse = builder.submit_build(
                stream,
                current_user,
                spec.start,
                spec.end,
                spec.fps,
                current_app.extensions["glimpser.redis"],
            )
        except builder.BuildRefused as exc:
            errors, status = {exc.field: exc.message}, exc.status
    if errors:
        if _is_htmx():
            response = make_response(
                render_template(
                    "timelapse/_form.html",
                    stream=stream,
                    values=_form_values(request.form, times.utcnow()),
                    errors=errors,
                    presets=PRESETS,
                    fps_choices=builder.FPS_CHOICES,
                ),
                status,
            )
            response.headers["HX-Retarget"] = "#timelapse-form"
            response.headers["HX-Reswap"] = "outerHTML"
            return response
        return _render_panel(stream, request.form, errors), status
    assert timelapse is not None
    if _is_htmx():
        return render_template("timelapse/_item.html", stream=stream, tl=timelapse)
    return redirect(url_for("timelapse.panel", stream_id=stream.id), 303)


@bp.get("/streams/<int:stream_id>/timelapses/<int:timelapse_id>")
def item(stream_id: int, timelapse_id: int):
    """One timelapse: polled every second while it is queued or running."""
    stream = get_visible_stream(stream_id)
    timelapse = _get_timelapse(stream, timelapse_id)
    if not _is_htmx():
        return redirect(url_for("timelapse.panel", stream_id=stream.id))
    return render_template("timelapse/_item.html", stream=stream, tl=timelapse)


@bp.get("/streams/<int:stream_id>/timelapses/<int:timelapse_id>.mp4")
def video(stream_id: int, timelapse_id: int):
    """The MP4, with Range support so that browsers can seek; ?download=1 saves it."""
    stream = get_visible_stream(stream_id)
    timelapse = _get_timelapse(stream, timelapse_id)
    if timelapse.status != "done" or not timelapse.storage_key:
        abort(404)
    return video_response(stream, timelapse, request.args.get("download") == "1")


def video_response(stream: Stream, timelapse: Timelapse, download: bool) -> Response:
    """A finished timelapse's MP4 (conditional, with Range support), as an attachment when
    `download`; 404 when its file is gone. Also `GET /api/v1/timelapses/<id>/download`."""
    storage = get_storage(_settings())
    name = secure_filename(f"{stream.name}-timelapse-{timelapse.id}.mp4") or "timelapse.mp4"
    etag = f"timelapse-{timelapse.id}-{timelapse.bytes}"
    path = storage.local_path(timelapse.storage_key)
    if path is not None:
        if not path.is_file():
            abort(404)
        response = send_file(
            path,
            mimetype="video/mp4",
            conditional=True,
            etag=etag,
            last_modified=timelapse.finished_at,
            as_attachment=download,
            download_name=name,
        )
    else:
        try:
            data = storage.get(timelapse.storage_key)
        except ObjectNotFound:
            abort(404)
        response = current_app.response_class(data, mimetype="video/mp4")
        response.set_etag(etag)
        response.last_modified = timelapse.finished_at
        if download:
            response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        response = response.make_conditional(request, accept_ranges=True, complete_length=len(data))
    response.headers["Cache-Control"] = "private, max-age=0, must-revalidate"
    return response


@bp.post("/streams/<int:stream_id>/timelapses/<int:timelapse_id>/delete")
def delete(stream_id: int, timelapse_id: int):
    """Admins only (the default for POST): remove the row, then the file."""
    stream = get_visible_stream(stream_id)
    timelapse = _get_timelapse(stream, timelapse_id)
    # The entry first, in the transaction that deletes the row: no entry, nothing deleted.
    with write_transaction():
        audit(
            "timelapse.delete",
            f"stream:{stream.id}",
            {"name": stream.name, "timelapse": timelapse.id},
        )
        builder.delete_timelapses([timelapse], get_storage(_settings()))
    if _is_htmx():
        return ""
    return redirect(url_for("timelapse.panel", stream_id=stream.id), 303)
