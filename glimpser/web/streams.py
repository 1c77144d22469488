"""Streams: list with bulk actions, detail with paginated history (updating itself) and a
day timeline, create/edit with per-kind fields and a test capture, delete, capture now,
pause/resume, and the snapshot images and thumbnails. The web process only enqueues work."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import peewee
import redis
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user
from werkzeug.http import is_resource_modified

from glimpser import times
from glimpser.auth.access import get_visible_stream, known_groups, visible_streams, who_can_see
from glimpser.auth.policy import admin_only
from glimpser.capture import scheduling
from glimpser.db import write_transaction
from glimpser.media import deletion, thumbnails
from glimpser.media.snapshots import latest_snapshot
from glimpser.media.storage import ObjectNotFound, get_storage
from glimpser.models import Event, Snapshot, Stream
from glimpser.sources.schemas import (
    CONFIG_BY_KIND,
    KIND_LABELS,
    parse_config,
)
from glimpser.transfer import stream_actions
from glimpser.transfer.stream_store import NAME_TAKEN, name_taken
from glimpser.web import audit as audit_log
from glimpser.web import humantime, keyset, pictures, stream_form
from glimpser.web.app_settings import current_settings
from glimpser.web.events import recent_events
from glimpser.web.htmx import is_fragment_request as _is_fragment_request
from glimpser.web.humantime import current_zone
from glimpser.web.params import parse_date, parse_id, parse_ids

log = logging.getLogger(__name__)

bp = Blueprint("streams", __name__, url_prefix="/streams")

TEST_JOBS_KEY = "test_capture_jobs"
CAPTURE_JOBS_KEY = "capture_now_jobs"  # the "Capture now" jobs this session may follow


def _redis():  # noqa: ANN202
    return current_app.extensions["glimpser.redis"]


def _settings():  # noqa: ANN202
    return current_settings()


_audit = stream_actions.audit_stream


@bp.get("/")
def index():
    streams = visible_streams().order_by(Stream.name)
    return render_template(
        "streams/list.html",
        streams=streams,
        kind_labels=KIND_LABELS,
        # The bulk form's group suggestions: admins only (only they see the form).
        groups=known_groups() if getattr(current_user, "is_admin", False) else [],
    )


HISTORY_PAGE = 24
IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"


def _status_version(stream: Stream, latest: Snapshot | None) -> str:
    """What the status block shows, hashed: an unchanged block is answered with 204."""
    parts = (
        stream.state,
        stream.enabled,
        stream.last_error,
        stream.consecutive_failures,
        stream.last_capture_at,
        stream.last_success_at,
        stream.next_due_at,
        latest.id if latest else None,
        latest.analysed_at if latest else None,  # its motion result and AI description
        stream.ai_caption_at,
        pictures.url_epoch(),  # signed picture URLs are renewed before they expire
    )
    return hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()[:16]


def _history_page(stream: Stream, cursor: tuple[datetime, int] | None):
    """One page of the stream's snapshots, newest first, and the cursor of the next page."""
    query = Snapshot.select().where(Snapshot.stream == stream)
    if cursor is not None:
        query = keyset.older_than(query, Snapshot.captured_at, Snapshot.id, cursor)
    rows = list(
        query.order_by(Snapshot.captured_at.desc(), Snapshot.id.desc()).limit(HISTORY_PAGE + 1)
    )
    return keyset.split_page(rows, HISTORY_PAGE, history_cursor)


def history_cursor(snapshot: Snapshot) -> str:
    """Keyset cursor "<capture time>_<id>": stable while retention deletes older pictures."""
    return keyset.make_cursor(snapshot.captured_at, snapshot.id)


def _parse_cursor(raw: str) -> tuple[datetime, int]:
    return keyset.parse_cursor(raw, "The history position is not valid; reload the stream page.")


def _newest_id(stream: Stream) -> int:
    """The highest snapshot id of the stream (0 when none): the history poll's position."""
    return (
        Snapshot.select(peewee.fn.MAX(Snapshot.id)).where(Snapshot.stream == stream).scalar() or 0
    )


def _render_detail(stream: Stream, cursor: tuple[datetime, int] | None):
    zone = current_zone()
    day = _requested_day(zone)
    today = datetime.now(zone).date()
    page, next_cursor = _history_page(stream, cursor)
    latest = page[0] if cursor is None and page else latest_snapshot(stream)
    events = recent_events(stream)
    return render_template(
        "streams/detail.html",
        stream=stream,
        latest=latest,
        status_version=_status_version(stream, latest),
        snapshots=page,
        next_cursor=next_cursor,
        paged=cursor is not None,
        newest_id=_newest_id(stream),
        day=day,
        today=today,
        prev_day=day - timedelta(days=1) if day > date(TIMELINE_FIRST_YEAR, 1, 1) else None,
        next_day=day + timedelta(days=1) if day < today else None,
        zone_name=zone.key,
        events=events,
        kind_labels=KIND_LABELS,
        capture_pending=scheduling.is_claimed(_redis(), stream.id),
        # "Who can see this", for admins only (glimpser.auth.access, Admin → Users).
        who=who_can_see(stream) if getattr(current_user, "is_admin", False) else None,
    )


@bp.get("/<int:stream_id>")
def detail(stream_id: int):
    return _render_detail(get_visible_stream(stream_id), None)


@bp.get("/<int:stream_id>/history")
def history(stream_id: int):
    """Older snapshots: the next page of thumbnails for htmx, or the stream page at that point."""
    stream = get_visible_stream(stream_id)
    cursor = _parse_cursor(request.args.get("before", ""))
    if not _is_fragment_request():
        return _render_detail(stream, cursor)
    page, next_cursor = _history_page(stream, cursor)
    return render_template(
        "streams/_history.html", stream=stream, snapshots=page, next_cursor=next_cursor
    )


@bp.get("/<int:stream_id>/status")
def status(stream_id: int):
    """The status block alone, polled by htmx; 204 when the client's version is current."""
    stream = get_visible_stream(stream_id)
    latest = latest_snapshot(stream)
    version = _status_version(stream, latest)
    if request.args.get("v") == version:
        return "", 204
    return render_template(
        "streams/_status.html", stream=stream, latest=latest, status_version=version
    )


@bp.get("/<int:stream_id>/history/newer")
def history_newer(stream_id: int):
    """Pictures newer than `after` (a snapshot id) for the history grid's poll: 204 when there
    are none; else the new items (prepended out of band) and the poll element with its new
    position. More than a page of new pictures replaces the grid with the newest page."""
    stream = get_visible_stream(stream_id)
    raw = request.args.get("after", "")
    after = 0 if raw.strip() == "0" else parse_id(raw)
    if after is None:
        abort(400, "The history position is not valid; reload the stream page.")
    newer = list(
        Snapshot.select()
        .where((Snapshot.stream == stream) & (Snapshot.id > after))
        .order_by(Snapshot.captured_at.desc(), Snapshot.id.desc())
        .limit(HISTORY_PAGE + 1)
    )
    if not newer:
        return "", 204
    replace = len(newer) > HISTORY_PAGE
    page, next_cursor = _history_page(stream, None) if replace else (newer, None)
    return render_template(
        "streams/_history_newer.html",
        stream=stream,
        snapshots=page,
        next_cursor=next_cursor,
        replace=replace,
        newest_id=max(s.id for s in newer) if not replace else _newest_id(stream),
    )


# --- the day timeline ----------------------------------------------------------------------

# Days the timeline may show: outside them no picture can exist (and the day's bounds in a
# time zone could fall outside what datetime represents).
TIMELINE_FIRST_YEAR = 1970
TIMELINE_LAST_YEAR = 9998
# At most this many pictures of one day go to the browser (evenly sampled beyond it); the
# activity marks always cover every picture of the day.
TIMELINE_MAX_SNAPSHOTS = 2000
TIMELINE_BINS = 288  # activity marks: one per 5 minutes of a 24 h day
TIMELINE_MAX_EVENTS = 500


def _requested_day(zone: ZoneInfo) -> date:
    """The `day` parameter (YYYY-MM-DD, in the user's zone); today when absent. 400 when it
    is not a date, or one on which no picture can exist."""
    try:
        day = parse_date(request.args.get("day"))
    except ValueError:
        abort(400, "Pick a day as YYYY-MM-DD.")
    if day is None:
        return datetime.now(zone).date()
    if not TIMELINE_FIRST_YEAR <= day.year <= TIMELINE_LAST_YEAR:
        abort(400, f"Pick a day between {TIMELINE_FIRST_YEAR} and {TIMELINE_LAST_YEAR}.")
    return day


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC start and end of `day` in `zone` (23 or 25 hours long on DST changes)."""
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return start, end


def _activity(rows: list[tuple], start: datetime, length: float) -> list[float | None]:
    """Per bin of the day: the highest motion score of its pictures (0 when none was
    analysed), None when the bin holds no picture."""
    bins: list[float | None] = [None] * TIMELINE_BINS
    for _id, at, motion, _changed in rows:
        index = min(TIMELINE_BINS - 1, int((at - start).total_seconds() / length * TIMELINE_BINS))
        bins[index] = max(bins[index] or 0.0, motion or 0.0)
    return bins


@bp.get("/<int:stream_id>/timeline")
def timeline(stream_id: int):
    """One day of the stream as JSON for the timeline strip (static/timeline.js): the day's
    pictures (id, seconds since the day's start, local time, motion score), activity marks
    and events. The day is in the user's time zone."""
    stream = get_visible_stream(stream_id)
    zone = current_zone()
    day = _requested_day(zone)
    start, end = day_bounds(day, zone)
    length = (end - start).total_seconds()
    rows = list(
        Snapshot.select(Snapshot.id, Snapshot.captured_at, Snapshot.motion_score, Snapshot.changed)
        .where(
            (Snapshot.stream == stream)
            & (Snapshot.captured_at >= start)
            & (Snapshot.captured_at < end)
        )
        .order_by(Snapshot.captured_at, Snapshot.id)
        .tuples()
    )
    step = -(-len(rows) // TIMELINE_MAX_SNAPSHOTS) or 1
    shown = rows[::step]
    if rows and shown[-1] is not rows[-1]:
        shown.append(rows[-1])  # the day's last picture is always reachable
    events = (
        Event.select(Event.id, Event.created_at, Event.severity, Event.title)
        .where((Event.stream == stream) & (Event.created_at >= start) & (Event.created_at < end))
        .order_by(Event.created_at, Event.id)
        .limit(TIMELINE_MAX_EVENTS)
    )
    image = url_for("streams.snapshot_image", stream_id=stream.id, snapshot_id=0)
    return jsonify(
        day=day.isoformat(),
        day_label=humantime.human_day(day, times.utcnow().astimezone(zone).date()),
        zone=zone.key,
        start=times.isoformat(start),
        end=times.isoformat(end),
        seconds=int(length),
        total=len(rows),
        sampled=step > 1,
        image=image.replace("/0.jpg", "/{id}.jpg"),
        snapshots=[
            [
                snap_id,
                int((at - start).total_seconds()),
                times.strftime(times.to_utc(at).astimezone(zone), "%H:%M:%S"),
                motion,
            ]
            for snap_id, at, motion, _changed in shown
        ],
        activity=_activity(rows, start, length),
        events=[
            {
                "id": e.id,
                "at": int((e.created_at - start).total_seconds()),
                "time": times.strftime(times.to_utc(e.created_at).astimezone(zone), "%H:%M"),
                "severity": e.severity,
                "title": e.title,
                "url": url_for("events.detail", event_id=e.id),
            }
            for e in events
        ],
    )


# --- images --------------------------------------------------------------------------------


def _send_stored(
    key: str, etag: str, last_modified: datetime, content_type: str, cache_control: str
) -> Response:
    """Serve one stored picture: 304 when the client has it, else X-Accel-Redirect, sendfile
    from local storage, or the bytes from object storage."""
    settings = _settings()
    if not is_resource_modified(request.environ, etag=etag, last_modified=last_modified):
        response = current_app.response_class(status=304)
    else:
        try:
            response = pictures.stored_body(key, content_type, settings)
        except ObjectNotFound:
            abort(404)
    response.set_etag(etag)
    response.last_modified = last_modified
    response.headers["Cache-Control"] = cache_control
    return response


# The columns an image response needs; fewer columns, cheaper hot path.
_IMAGE_COLUMNS = (
    Snapshot.id,
    Snapshot.storage_key,
    Snapshot.content_type,
    Snapshot.sha256,
    Snapshot.captured_at,
    Snapshot.width,
)


def _visible_snapshots(stream_id: int) -> peewee.ModelSelect:
    """Snapshots of one stream, empty unless the user may see that stream."""
    visible = visible_streams().where(Stream.id == stream_id).select(Stream.id)
    return Snapshot.select(*_IMAGE_COLUMNS).where(
        (Snapshot.stream == stream_id) & Snapshot.stream.in_(visible)
    )


def _visible_snapshot(stream_id: int, snapshot_id: int) -> Snapshot:
    snapshot = _visible_snapshots(stream_id).where(Snapshot.id == snapshot_id).first()
    if snapshot is None:
        abort(404)
    return snapshot


@bp.get("/<int:stream_id>/snapshot.jpg")
def latest_image(stream_id: int):
    """The newest picture under a stable URL: revalidated on every use."""
    snapshot = (
        _visible_snapshots(stream_id)
        .order_by(Snapshot.captured_at.desc(), Snapshot.id.desc())
        .first()
    )
    if snapshot is None:
        abort(404)
    return send_snapshot(snapshot, REVALIDATE)


@bp.get("/<int:stream_id>/snapshots/<int:snapshot_id>.jpg")
def snapshot_image(stream_id: int, snapshot_id: int):
    """One snapshot under its own URL: it never changes, so browsers keep it."""
    return send_snapshot(_visible_snapshot(stream_id, snapshot_id), IMMUTABLE)


@bp.get("/<int:stream_id>/snapshots/<int:snapshot_id>/thumb.jpg")
def snapshot_thumbnail(stream_id: int, snapshot_id: int):
    """A snapshot's thumbnail, generated on first request and stored beside the snapshot."""
    return send_thumbnail(_visible_snapshot(stream_id, snapshot_id))


def send_snapshot(snapshot: Snapshot, cache_control: str) -> Response:
    """A snapshot's picture (the web pages and the JSON API): 304 when the client has it."""
    return _send_stored(
        snapshot.storage_key,
        snapshot.sha256,
        snapshot.captured_at,
        snapshot.content_type,
        cache_control,
    )


def send_thumbnail(snapshot: Snapshot) -> Response:
    """A snapshot's thumbnail (JPEG), made on first request and stored beside the snapshot; the
    original when the picture cannot be decoded."""
    etag = f"{snapshot.sha256[:40]}-t{thumbnails.THUMB_WIDTH}"
    if not is_resource_modified(request.environ, etag=etag, last_modified=snapshot.captured_at):
        return _send_stored("", etag, snapshot.captured_at, "image/jpeg", IMMUTABLE)
    key = pictures.thumbnail_or_original(snapshot, get_storage(_settings()))
    return _send_stored(key, etag, snapshot.captured_at, "image/jpeg", IMMUTABLE)


# --- create and edit -----------------------------------------------------------------------


def _render_form(
    stream: Stream | None,
    kind: str,
    stream_values: dict,
    config_values: dict,
    errors: dict,
    status: int = 200,
    analysis_values: dict | None = None,
):
    stored = frozenset(
        name
        for name in CONFIG_BY_KIND[kind].SECRET_FIELDS
        if stream is not None and stream.kind == kind and stream.config.get(name)
    )
    ai_configured = _settings().ai_configured
    if analysis_values is None:
        analysis_values = (
            stream_form.stored_analysis(stream.analysis)
            if stream is not None
            else stream_form.new_stream_analysis(ai_configured)
        )
    return render_template(
        "streams/form.html",
        stream=stream,
        kind=kind,
        kinds=stream_form.kind_options(),
        common=stream_form.stream_fields(stream_values, errors),
        fields=stream_form.kind_fields(kind, config_values, errors, stored),
        analysis=stream_form.analysis_view(
            kind, analysis_values, errors, ai_configured=ai_configured
        ),
        # The picture to draw masks on: the latest snapshot (a new stream: the test capture).
        snapshot_url=(
            url_for("streams.latest_image", stream_id=stream.id)
            if stream is not None and latest_snapshot(stream) is not None
            else ""
        ),
        errors=errors,
    ), status


@bp.get("/new")
@admin_only
def new():
    kind = request.args.get("kind", "rtsp")
    if kind not in CONFIG_BY_KIND:
        kind = "rtsp"
    # A new stream starts with the default interval of Admin → Settings.
    return _render_form(None, kind, {"interval": _settings().default_interval}, {}, {})


@bp.get("/kind-fields")
@admin_only
def kind_fields():
    """The fields of one kind, swapped into the form by htmx when the kind changes."""
    kind = request.args.get("kind", "")
    if kind not in CONFIG_BY_KIND:
        abort(400, "unknown kind")
    stream = None
    if (stream_id := parse_id(request.args.get("stream_id"))) is not None:
        stream = Stream.get_or_none(Stream.id == stream_id)
    values = stream.config if stream is not None and stream.kind == kind else {}
    stored = frozenset(n for n in CONFIG_BY_KIND[kind].SECRET_FIELDS if values.get(n))
    return render_template(
        "streams/_kind_fields.html",
        kind=kind,
        fields=stream_form.kind_fields(kind, values, {}, stored),
    )


def _save(stream: Stream | None):  # noqa: ANN202
    existing = stream.config if stream is not None else None
    spec, stream_values, config_values, analysis_values, errors = stream_form.parse_form(
        request.form,
        existing,
        stream.analysis if stream is not None else None,
        ai_configured=_settings().ai_configured,
    )
    kind = request.form.get("kind", "")
    if kind not in CONFIG_BY_KIND:
        kind = stream.kind if stream is not None else "rtsp"
    if spec is not None and name_taken(spec.name, stream):
        errors = {"name": NAME_TAKEN}
    if spec is None or errors:
        return _render_form(
            stream, kind, stream_values, config_values, errors, 422, analysis_values
        )
    created = stream is None
    try:
        stream = stream_actions.save_stream(stream, spec)
    except stream_actions.NameTaken:  # the same name saved concurrently
        errors = {"name": NAME_TAKEN}
        return _render_form(
            stream, kind, stream_values, config_values, errors, 422, analysis_values
        )
    flash(
        f"Stream “{stream.name}” created; the first capture is on its way."
        if created
        else f"Stream “{stream.name}” saved.",
        "success",
    )
    stream_actions.capture_if_enabled(_redis(), stream)
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
    stream = None
    if (stream_id := parse_id(request.form.get("stream_id"))) is not None:
        stream = Stream.get_or_none(Stream.id == stream_id)
    existing = stream.config if stream is not None else None
    spec, _sv, _cv, _av, errors = stream_form.parse_form(request.form, existing)
    config_errors = {k: v for k, v in errors.items() if k == "kind" or k.startswith("config")}
    if spec is None and config_errors:
        return render_template(
            "streams/_test_capture.html", state="invalid", errors=config_errors
        ), 422
    # When only stream-level fields are wrong, the source can still be tried.
    config = parse_config(_cv) if spec is None else spec.config
    # No secret in the job's arguments (Redis, redis.rdb, the worker's log): see sources.sealed.
    job = stream_actions.queue_test_capture(_redis(), config, stream, _settings().secret_key)
    session[TEST_JOBS_KEY] = ([*session.get(TEST_JOBS_KEY, [])][-9:]) + [job.id]
    return render_template("streams/_test_capture.html", state="pending", job_id=job.id)


@bp.get("/test-capture/<job_id>")
@admin_only
def test_capture_result(job_id: str):
    if job_id not in session.get(TEST_JOBS_KEY, []):
        abort(404)
    outcome = stream_actions.job_outcome(_redis(), job_id)
    if outcome.state == "expired":
        return render_template(
            "streams/_test_capture.html",
            state="error",
            error="The test capture expired; try again.",
        )
    if outcome.state == "done":
        result = outcome.result
        if result.get("ok"):
            return render_template("streams/_test_capture.html", state="done", result=result)
        return render_template(
            "streams/_test_capture.html", state="error", error=result.get("error", "capture failed")
        )
    if outcome.state == "failed":
        return render_template(
            "streams/_test_capture.html",
            state="error",
            error="The worker could not finish the capture (see the logs).",
        )
    return render_template(
        "streams/_test_capture.html", state="pending", job_id=job_id, queued=outcome.queued
    )


# --- actions -------------------------------------------------------------------------------


@bp.post("/<int:stream_id>/capture")
def capture_now(stream_id: int):
    """Queue a capture. From the page (htmx) the answer then follows what happened: a new
    picture, "unchanged, not stored", or the error (capture_result)."""
    stream = get_visible_stream(stream_id)
    job_id = stream_actions.request_capture(_redis(), stream)
    if _is_fragment_request():
        if job_id is None:
            return render_template("streams/_capture_result.html", state="busy")
        session[CAPTURE_JOBS_KEY] = [*session.get(CAPTURE_JOBS_KEY, [])][-9:] + [job_id]
        return render_template(
            "streams/_capture_result.html", state="pending", stream=stream, job_id=job_id
        )
    if job_id is not None:
        flash("Capture queued.", "success")
    else:
        flash("A capture of this stream is already running.", "info")
    return redirect(url_for("streams.detail", stream_id=stream.id))


@bp.get("/<int:stream_id>/capture/<job_id>")
def capture_result(stream_id: int, job_id: str):
    """What one "Capture now" did (only for the session that asked for it)."""
    stream = get_visible_stream(stream_id)
    if job_id not in session.get(CAPTURE_JOBS_KEY, []) or not job_id.startswith(
        f"capture-{stream.id}-"
    ):
        abort(404)
    outcome = stream_actions.job_outcome(_redis(), job_id)
    if outcome.state == "expired":
        return render_template("streams/_capture_result.html", state="expired")
    if outcome.state == "done":
        return render_template(
            "streams/_capture_result.html", state="done", stream=stream, result=outcome.result
        )
    if outcome.state == "failed":
        return render_template("streams/_capture_result.html", state="crashed")
    return render_template(
        "streams/_capture_result.html", state="pending", stream=stream, job_id=job_id
    )


@bp.post("/<int:stream_id>/pause")
def pause(stream_id: int):
    stream = stream_actions.pause_stream(get_visible_stream(stream_id))
    flash(f"“{stream.name}” is paused.", "info")
    return redirect(url_for("streams.detail", stream_id=stream.id))


@bp.post("/<int:stream_id>/resume")
def resume(stream_id: int):
    stream = stream_actions.resume_stream(_redis(), get_visible_stream(stream_id))
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
    # Hidden at once; the files and rows go in a job on the maintenance queue (media.deletion).
    try:
        snapshots = stream_actions.delete_stream(_redis(), stream)
    except deletion.DeletionError:
        abort(404)
    flash(
        f"Stream “{stream.name}” deleted; its {snapshots} snapshots are being removed "
        "(progress under Admin).",
        "info",
    )
    return redirect(url_for("streams.index"))


# --- bulk actions on the streams list ------------------------------------------------------

BULK_ACTIONS = ("pause", "resume", "group", "delete")
MAX_BULK = 1000  # streams in one bulk request
MAX_GROUP_CHARS = 64


def _bulk_selection() -> list[Stream]:
    """The selected streams (form field `ids`), all of them or a 4xx: none selected, an id
    that is not one, or a stream that does not exist (or is being deleted)."""
    raw = request.form.getlist("ids")
    if not raw:
        abort(400, "Select at least one stream.")
    if len(raw) > MAX_BULK:
        abort(400, f"Select at most {MAX_BULK} streams at once.")
    ids = parse_ids(raw)
    if ids is None:
        abort(400, "A selected stream is not valid; reload the list.")
    streams = list(visible_streams().where(Stream.id.in_(ids)).order_by(Stream.name))
    if len(streams) != len(ids):
        abort(404, "A selected stream no longer exists; reload the list.")
    return streams


def _bulk_group() -> list[str]:
    """The group the selection is put in ([] for "no group"), or a 400."""
    group = request.form.get("group", "").strip()
    if len(group) > MAX_GROUP_CHARS:
        abort(400, f"A group name has at most {MAX_GROUP_CHARS} characters.")
    if "," in group or any(c in group for c in "\r\n"):
        abort(400, "Enter one group name, without commas.")
    return [group] if group else []


def _bulk_set_enabled(streams: list[Stream], enabled: bool) -> None:
    now = times.utcnow()
    with write_transaction():
        for stream in streams:
            if stream.enabled == enabled:
                continue
            fields = (
                {"enabled": True, "state": "pending", "next_due_at": now}
                if enabled
                else {"enabled": False, "state": "paused"}
            )
            Stream.update(updated_at=now, **fields).where(Stream.id == stream.id).execute()
            _audit(
                "stream.resume" if enabled else "stream.pause",
                stream,
                changes=audit_log.field_changes({"enabled": stream.enabled}, {"enabled": enabled}),
                bulk=True,
            )


def _bulk_delete(streams: list[Stream]) -> None:
    """Mark every selected stream for deletion in one transaction (all or none), then queue
    their deletion jobs (media.deletion; the cron queues what Redis refused)."""
    counts = {}
    try:
        with write_transaction():
            for stream in streams:
                counts[stream.id] = Snapshot.select().where(Snapshot.stream == stream).count()
                _audit("stream.delete", stream, snapshots=counts[stream.id], bulk=True)
                deletion.mark_for_deletion(stream)
    except deletion.DeletionError:
        abort(409, "A selected stream is already being deleted; nothing was deleted.")
    for stream in streams:
        try:
            deletion.queue_deletion(_redis(), stream.id, stream.name)
        except redis.RedisError:
            log.warning("stream deletion not queued yet", extra={"stream_id": stream.id})
        scheduling.release(_redis(), stream.id)


@bp.post("/bulk")
def bulk():
    """One action on the streams selected in the list: pause, resume, set group, or delete
    (which first shows a confirmation listing them). Admin only (the access policy)."""
    action = request.form.get("action", "")
    if action not in BULK_ACTIONS:
        abort(400, "Choose what to do with the selected streams.")
    streams = _bulk_selection()
    names = ", ".join(f"“{s.name}”" for s in streams[:5]) + (
        f" and {len(streams) - 5} more" if len(streams) > 5 else ""
    )
    if action == "delete":
        if request.form.get("confirm") != "yes":
            counts = dict(
                Snapshot.select(Snapshot.stream, peewee.fn.COUNT(Snapshot.id))
                .where(Snapshot.stream.in_([s.id for s in streams]))
                .group_by(Snapshot.stream)
                .tuples()
            )
            return render_template(
                "streams/bulk_delete.html", streams=streams, snapshot_counts=counts
            )
        _bulk_delete(streams)
        flash(f"Deleted {names}; their snapshots are being removed (progress under Admin).", "info")
    elif action == "group":
        groups = _bulk_group()
        with write_transaction():
            for stream in streams:
                if stream.groups == groups:
                    continue
                Stream.update(groups=groups, updated_at=times.utcnow()).where(
                    Stream.id == stream.id
                ).execute()
                _audit(
                    "stream.update",
                    stream,
                    changes=audit_log.field_changes({"groups": stream.groups}, {"groups": groups}),
                    bulk=True,
                )
        flash(
            f"{names}: group set to “{groups[0]}”." if groups else f"{names}: no group now.",
            "success",
        )
    else:
        enabled = action == "resume"
        _bulk_set_enabled(streams, enabled)
        if enabled:
            for stream in streams:
                scheduling.capture_now(_redis(), Stream.get_by_id(stream.id))
        flash(f"{names}: {'capturing again' if enabled else 'paused'}.", "success")
    return redirect(url_for("streams.index"))
