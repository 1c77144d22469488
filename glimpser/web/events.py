"""The event timeline: /events (filters, acknowledge, new events without reloading).

One route, three answers (Hypermedia Systems style, from the blocks of one template):
- a normal request gets the whole page;
- an htmx request gets only the part it asked for: the results (a filter change), the next
  page of entries (`before=<cursor>`, infinite scroll), or the events newer than the newest
  shown (`after=<id>`, polled every few seconds; 204 while there is nothing new).

Per-stream access: every query starts from `visible_events()`, so a viewer never sees, counts
or acknowledges an event of a stream not granted to them; events without a stream are
system-wide and shown to admins only. The queries and the acknowledgement are
glimpser.analysis.event_store's, shared with `/api/v1/events`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import peewee
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from markupsafe import Markup
from werkzeug.datastructures import MultiDict
from werkzeug.http import is_resource_modified

from glimpser import times
from glimpser.analysis import event_store
from glimpser.analysis.summaries import visible_summaries
from glimpser.auth.access import visible_streams
from glimpser.auth.views import safe_next
from glimpser.media.difference import DifferenceError, difference_jpeg
from glimpser.media.storage import ObjectNotFound, StorageError, get_storage
from glimpser.models import (
    EVENT_KINDS,
    SEVERITIES,
    Delivery,
    Event,
    NotificationChannel,
    Snapshot,
    Stream,
    Summary,
)
from glimpser.web import keyset, search
from glimpser.web.app_settings import current_settings
from glimpser.web.htmx import is_fragment_request as _is_fragment_request
from glimpser.web.htmx import render_block
from glimpser.web.keyset import MAX_ID
from glimpser.web.local_time import parse_local
from glimpser.web.params import parse_id, parse_ids, parse_int

bp = Blueprint("events", __name__, url_prefix="/events")

PAGE_SIZE = 25
POLL_SECONDS = 5
MAX_BULK = event_store.MAX_BULK  # ids in one acknowledge request
KIND_LABELS: dict[str, str] = {
    "motion": "Motion",
    "change": "Change",
    "ai": "AI rule",
    "capture_failed": "Capture failed",
    "capture_recovered": "Capture recovered",
    "test": "Test notification",
}
RANGES = event_store.RANGES
ACK_CHOICES: dict[str, str] = {"no": "Not acknowledged", "yes": "Acknowledged"}
SYSTEM = event_store.SYSTEM  # the stream filter's value for events without a stream
THREAT_LABELS = ("normal", "unusual", "threat")
MAX_CHOICES = event_store.MAX_CHOICES  # values of one multi-select filter in a request
Filters = event_store.Filters


# --- filters --------------------------------------------------------------------------------


def _parse_local(value: str, name: str) -> datetime | None:
    """A datetime-local value read in the viewer's zone; 400 when it is not a time there."""
    try:
        return parse_local(value)
    except ValueError as exc:
        abort(400, f"“{name}”: {exc}.")


def _choice(args: MultiDict, name: str, allowed: object, label: str) -> str:
    value = args.get(name, "").strip()
    if value and value not in allowed:  # type: ignore[operator]
        abort(400, f"Unknown {label} {value[:40]!r}: use one of {', '.join(allowed)}.")  # type: ignore[arg-type]
    return value


def _choices(args: MultiDict, name: str, allowed: Any, label: str) -> tuple[str, ...]:
    """A multi-select filter's values (blanks ignored, repeats dropped, order kept)."""
    raw = args.getlist(name)
    if len(raw) > MAX_CHOICES:
        abort(400, f"Choose at most {MAX_CHOICES} values for {label}.")
    out: list[str] = []
    for value in (v.strip() for v in raw):
        if not value or value in out:
            continue
        if allowed is not None and value not in allowed:
            abort(400, f"Unknown {label} {value[:40]!r}: use one of {', '.join(allowed)}.")
        out.append(value)
    return tuple(out)


def parse_filters(args: MultiDict) -> Filters:
    """Read the filters from the query string; 400 with a clear message for bad values.

    A stream the user may not see answers 404, exactly like a stream that does not exist.
    """
    streams = _choices(args, "stream", None, "stream")
    ids: list[int] = []
    for stream in streams:
        if stream == SYSTEM:
            if not current_user.is_admin:
                abort(404)
            continue
        stream_id = parse_id(stream)
        if stream_id is None:
            abort(400, "The stream filter must be a stream id.")
        ids.append(stream_id)
    if not event_store.all_visible(ids):
        abort(404)
    severities = _choices(args, "severity", SEVERITIES, "severity")
    kinds = _choices(args, "kind", EVENT_KINDS, "kind")
    ack = _choice(args, "ack", ACK_CHOICES, "acknowledged state")
    range_ = _choice(args, "range", RANGES, "time range")
    q = args.get("q", "")
    try:
        words = search.parse_query(q)
    except search.QueryError as exc:
        abort(400, str(exc))
    start = end = None
    if range_ == "custom":  # from/to apply to a custom range only (presets are relative)
        start = _parse_local(args.get("from", ""), "From")
        end = _parse_local(args.get("to", ""), "To")
        if start and end and start > end:
            abort(400, "The time range ends before it starts.")
    return Filters(
        streams=streams,
        severities=severities,
        kinds=kinds,
        range=range_,
        start=start,
        end=end,
        ack=ack,
        q=q.strip() if words else "",
        words=tuple(words),
    )


# --- queries --------------------------------------------------------------------------------


visible_events = event_store.visible_events
_filtered = event_store.filtered
_newest_first = event_store.newest_first
event_cursor = event_store.event_cursor


def _parse_cursor(raw: str) -> tuple[datetime, int]:
    return keyset.parse_cursor(
        raw, "The timeline position is not valid; reload the events page.", MAX_ID
    )


def _page(
    query: peewee.ModelSelect, cursor: tuple[datetime, int] | None
) -> tuple[list[Event], str | None]:
    """One page of events, newest first, and the cursor of the next (older) page."""
    return event_store.page(query, cursor, PAGE_SIZE)


def recent_events(stream: Stream, limit: int = 10) -> list[Event]:
    """A stream's newest events, for its page (the caller has already checked access)."""
    return list(_newest_first(Event.select().where(Event.stream == stream.id)).limit(limit))


# --- rendering ------------------------------------------------------------------------------


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    value = parse_int(raw, minimum=0, maximum=MAX_ID)
    if value is None:
        abort(400, f"“{name}” must be an event id.")
    return value


def _newest_id() -> int:
    """The newest event id the user may see now: the poll asks for anything after it.

    Not the newest *shown*: an older-dated event inserted earlier but beyond the first page
    must not pop up at the top as if new.
    """
    return visible_events().select(peewee.fn.MAX(Event.id)).scalar() or 0


MAX_SUMMARIES = 5  # summaries shown above the events a search found


def _matching_summaries(filters: Filters) -> list[Summary]:
    """The newest finished summaries the user may see that contain the searched words."""
    if not filters.words:
        return []
    return list(
        visible_summaries(current_user)
        .where((Summary.status == "done") & search.summary_matches(list(filters.words)))
        .order_by(Summary.window_end.desc(), Summary.id.desc())
        .limit(MAX_SUMMARIES)
    )


def _context(filters: Filters, events: list[Event], next_cursor: str | None, **extra: Any):
    newest = extra.pop("newest_id")
    return {
        "filters": filters,
        "events": events,
        "next_cursor": next_cursor,
        "poll_url": url_for("events.index", **filters.params(), after=newest),
        "poll_seconds": POLL_SECONDS,
        "kind_labels": KIND_LABELS,
        "selectable": True,
        "search_words": list(filters.words),
        "ack_next": url_for("events.index", **filters.params()),
        "more_url": url_for("events.index", **filters.params(), before=next_cursor)
        if next_cursor
        else "",
        **extra,
    }


@bp.get("")
def index():
    """The timeline, or for htmx the results, the next page or the newer events."""
    filters = parse_filters(request.args)
    now = times.utcnow()
    query = _filtered(filters, now)
    headers = {"Vary": "HX-Request"}
    after = _int_arg("after")
    before = request.args.get("before", "")
    cursor = _parse_cursor(before) if before else None
    fragment = _is_fragment_request()

    if fragment and after is not None:
        # The poll: only events newer than the newest shown, prepended by htmx.
        newer = list(_newest_first(query.where(Event.id > after)).limit(PAGE_SIZE * 4))
        if not newer:
            return "", 204, headers
        newest = max(after, *(e.id for e in newer))
        context = _context(filters, newer, None, newest_id=newest, poll_oob=True)
        return render_block("events/index.html", "newer", **context), 200, headers

    newest = _newest_id()  # before the page: what arrives meanwhile comes with the next poll
    events, next_cursor = _page(query, cursor)
    newest = max([newest, *(e.id for e in events)])  # nor twice, if it is already shown
    context = _context(
        filters,
        events,
        next_cursor,
        newest_id=newest,
        paged=cursor is not None,
        summaries=_matching_summaries(filters) if cursor is None else [],
    )
    if fragment and cursor is not None:
        return render_block("events/index.html", "entries", **context), 200, headers
    if fragment:
        # A filter change: the results, and the filtered URL in the address bar.
        headers["HX-Push-Url"] = url_for("events.index", **filters.params())
        return render_block("events/index.html", "results", **context), 200, headers
    streams = list(visible_streams().select(Stream.id, Stream.name).order_by(Stream.name))
    body = render_template(
        "events/index.html",
        streams=streams,
        severities=SEVERITIES,
        kinds=EVENT_KINDS,
        ranges=RANGES,
        ack_choices=ACK_CHOICES,
        system_value=SYSTEM,
        max_query=search.MAX_QUERY_CHARS,
        **context,
    )
    return body, 200, headers


# --- acknowledge ----------------------------------------------------------------------------


def _bulk_ids() -> list[int]:
    """The selected ids ("ids"), or with "Acknowledge all shown" every shown id ("shown")."""
    name = "shown" if request.form.get("scope") == "shown" else "ids"
    raw = request.form.getlist(name)
    if len(raw) > MAX_BULK:
        abort(400, f"Acknowledge at most {MAX_BULK} events at once.")
    ids = parse_ids(raw)
    if ids is None:
        abort(400, "Event ids must be numbers.")
    return sorted(ids)


STRIP_SIDE = 4  # pictures before and after the event's picture in the strip


def _visible_event(event_id: int) -> Event:
    event = _newest_first(visible_events().where(Event.id == event_id)).first()
    if event is None:
        abort(404)
    return event


def _event_snapshot(event: Event) -> Snapshot | None:
    """The event's picture (full row), if it has one and it still exists."""
    if not (event.snapshot_id and event.stream_id):
        return None
    return Snapshot.get_or_none(
        (Snapshot.id == event.snapshot_id) & (Snapshot.stream == event.stream_id)
    )


def _before(snapshot: Snapshot) -> peewee.ModelSelect:
    """The stream's pictures taken before `snapshot`, newest first."""
    return (
        Snapshot.select()
        .where(
            (Snapshot.stream == snapshot.stream_id)
            & (
                (Snapshot.captured_at < snapshot.captured_at)
                | ((Snapshot.captured_at == snapshot.captured_at) & (Snapshot.id < snapshot.id))
            )
        )
        .order_by(Snapshot.captured_at.desc(), Snapshot.id.desc())
    )


def _after(snapshot: Snapshot) -> peewee.ModelSelect:
    """The stream's pictures taken after `snapshot`, oldest first."""
    return (
        Snapshot.select()
        .where(
            (Snapshot.stream == snapshot.stream_id)
            & (
                (Snapshot.captured_at > snapshot.captured_at)
                | ((Snapshot.captured_at == snapshot.captured_at) & (Snapshot.id > snapshot.id))
            )
        )
        .order_by(Snapshot.captured_at, Snapshot.id)
    )


def _neighbour_event(event: Event, older: bool) -> int | None:
    """The id of the next older (j) or newer (k) event the user may see, in timeline order."""
    query = visible_events().select(Event.id)
    at, eid = event.created_at, event.id
    if older:
        query = query.where(
            (Event.created_at < at) | ((Event.created_at == at) & (Event.id < eid))
        ).order_by(Event.created_at.desc(), Event.id.desc())
    else:
        query = query.where(
            (Event.created_at > at) | ((Event.created_at == at) & (Event.id > eid))
        ).order_by(Event.created_at, Event.id)
    row = query.first()
    return row.id if row else None


def _why(event: Event) -> list[tuple[str, str]]:
    """Why the rule matched, in words, from what Event.data recorded (nothing invented)."""
    data = event.data if isinstance(event.data, dict) else {}
    out: list[tuple[str, str]] = []
    conditions = data.get("conditions")
    if isinstance(conditions, dict) and conditions:
        parts = [f"{k.replace('_', ' ')}: {v}" for k, v in sorted(conditions.items())]
        out.append(("Conditions", "; ".join(parts)))
    if isinstance(data.get("score"), int | float):
        out.append(("Motion score", f"{data['score'] * 100:.1f} %"))
    if isinstance(data.get("changed_fraction"), int | float):
        out.append(("Changed area", f"{data['changed_fraction'] * 100:.1f} % of the picture"))
    if isinstance(data.get("matched_objects"), list) and data["matched_objects"]:
        out.append(("Objects that matched", ", ".join(map(str, data["matched_objects"]))))
    if data.get("question"):
        out.append(("Question to the AI", str(data["question"])))
    answer = data.get("answer")
    if isinstance(answer, dict):
        said = "yes" if answer.get("match") else "no"
        if isinstance(answer.get("confidence"), int | float):
            said += f" ({round(answer['confidence'] * 100)} % sure)"
        if answer.get("reason"):
            said += f": {answer['reason']}"
        out.append(("The AI answered", said))
    if data.get("ai_error"):
        out.append(("AI error", str(data["ai_error"])))
    if data.get("repeats"):
        out.append(("Repeats during the cooldown", str(data["repeats"])))
    return out


@bp.get("/<int:event_id>")
def detail(event_id: int):
    """One event on its own page (where notifications link to): the large picture with its
    motion boxes, the picture before it and their difference, the AI description, why the
    rule matched, the deliveries, and the stream's pictures around that moment."""
    event = _visible_event(event_id)
    snapshot = _event_snapshot(event)
    before = strip_before = strip_after = None
    if snapshot is not None:
        strip_before = list(_before(snapshot).limit(STRIP_SIDE))
        before = strip_before[0] if strip_before else None
        strip_after = list(_after(snapshot).limit(STRIP_SIDE))
    strip = [*reversed(strip_before or []), *([snapshot] if snapshot else []), *(strip_after or [])]
    deliveries = []
    if current_user.is_admin:  # channel errors may name endpoints: admins only
        deliveries = list(
            Delivery.select(Delivery, NotificationChannel.name, NotificationChannel.kind)
            .join(NotificationChannel)
            .where(Delivery.event == event.id)
            .order_by(Delivery.created_at, Delivery.id)
        )
    older = _neighbour_event(event, older=True)
    newer = _neighbour_event(event, older=False)
    return render_template(
        "events/detail.html",
        e=event,
        snapshot=snapshot,
        before=before,
        strip=strip,
        boxes=motion_boxes(snapshot.boxes) if snapshot is not None else [],
        ai=ai_view(snapshot.ai) if snapshot is not None else None,
        why=_why(event),
        deliveries=deliveries,
        older_url=url_for("events.detail", event_id=older) if older else "",
        newer_url=url_for("events.detail", event_id=newer) if newer else "",
        selectable=False,
        ack_next=url_for("events.detail", event_id=event.id),
    )


@bp.get("/<int:event_id>/difference.jpg")
def difference(event_id: int):
    """What changed between the event's picture and the stream's picture before it (red on
    the dimmed picture), computed here with OpenCV; 404 when there is no pair to compare."""
    event = _visible_event(event_id)
    snapshot = _event_snapshot(event)
    before = _before(snapshot).first() if snapshot is not None else None
    if snapshot is None or before is None:
        abort(404)
    etag = f"diff-{before.sha256[:20]}-{snapshot.sha256[:20]}"
    if not is_resource_modified(request.environ, etag=etag):
        response = current_app.response_class(status=304)
    else:
        storage = get_storage(current_settings())
        try:
            body = difference_jpeg(
                storage.get(before.storage_key), storage.get(snapshot.storage_key)
            )
        except ObjectNotFound:
            abort(404)
        except DifferenceError:
            abort(422, "One of the two pictures cannot be decoded.")
        except (OSError, StorageError) as exc:
            current_app.logger.warning("difference not made: %s", exc.__class__.__name__)
            abort(503)
        response = current_app.response_class(body, mimetype="image/jpeg")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


@bp.post("/acknowledge")  # many: ids in the form
@bp.post("/<int:event_id>/acknowledge")  # one (url_for picks this rule when given event_id)
def acknowledge(event_id: int | None = None):
    """Acknowledge one event (404 unless the user may see it) or many (unseen ids are ignored).

    Viewers may do this (auth.policy), so access is checked here, event by event.
    """
    single = event_id is not None
    if single:
        if not visible_events().where(Event.id == event_id).exists():
            abort(404)
        ids = [event_id]
    else:
        ids = _bulk_ids()
    acknowledged = event_store.acknowledge(ids)
    # What the user may see of what they asked for, now (acknowledged before or just now).
    shown = list(_newest_first(visible_events().where(Event.id.in_(ids)))) if ids else []
    count = len(acknowledged)
    if single:
        message = "Event acknowledged."
    elif not ids and request.form.get("scope") == "shown":
        message = "No event shown needs acknowledging."
    elif not ids:
        message = "Select the events to acknowledge first."
    else:
        message = f"{count} event{'s' if count != 1 else ''} acknowledged."
    if not _is_fragment_request():
        flash(message, "success" if ids else "info")
        return redirect(safe_next(request.form.get("next"), url_for("events.index")))
    context = {"selectable": True}
    if single:
        return render_template("events/_entry.html", e=shown[0], **context)
    body = render_template("events/_acknowledged.html", events=shown, message=message, **context)
    return body, (200 if ids else 422)


# --- analysis results shown on other pages --------------------------------------------------


@bp.app_template_global()
def event_kind_label(kind: str) -> str:
    """How a kind of event is named in the UI (the stream page includes the entry too)."""
    return KIND_LABELS.get(kind, kind)


@bp.app_template_global()
def ai_configured() -> bool:
    """Whether an AI server is configured: without one the UI says so instead of describing."""
    settings = current_settings()
    return bool(settings is not None and settings.ai_configured)


@bp.app_template_global()
def ai_view(ai: Any) -> dict | None:
    """A snapshot's stored AI result made safe to show: the description, or its error.

    Only what the model really returned is shown; malformed parts are left out, not guessed.
    """
    if not isinstance(ai, dict) or not ai:
        return None
    if ai.get("error"):
        return {"error": str(ai["error"])}
    objects = ai.get("objects")
    threat = ai.get("threat")
    confidence = ai.get("confidence")
    return {
        "title": str(ai.get("title") or ""),
        "description": str(ai.get("description") or ""),
        "objects": [str(o) for o in objects] if isinstance(objects, list) else [],
        "threat": THREAT_LABELS[threat]
        if isinstance(threat, int) and 0 <= threat < len(THREAT_LABELS)
        else None,
        "confidence": round(confidence * 100)
        if isinstance(confidence, int | float) and 0 <= confidence <= 1
        else None,
    }


@bp.app_template_global()
def motion_summary(snapshot: Snapshot) -> str:
    """The detection result in words: score, changed or not, changed area, the detector's note."""
    if snapshot.analysed_at is None:
        return "not analysed yet"
    parts = []
    if snapshot.motion_score is not None:
        parts.append(f"score {snapshot.motion_score * 100:.1f} %")
    if snapshot.changed is not None:
        parts.append("changed" if snapshot.changed else "no change")
    if snapshot.changed_fraction is not None:
        parts.append(f"{snapshot.changed_fraction * 100:.1f} % of the picture differs")
    if snapshot.analysis_note:
        parts.append(snapshot.analysis_note)
    return " · ".join(parts) or "no detection result"


@bp.app_template_global()
def motion_boxes(boxes: Any) -> list[tuple[float, float, float, float]]:
    """Valid [x, y, w, h] fractions of a snapshot's boxes, clipped to the picture."""
    out: list[tuple[float, float, float, float]] = []
    if not isinstance(boxes, list):
        return out
    for box in boxes:
        if (
            isinstance(box, list | tuple)
            and len(box) == 4
            and all(isinstance(v, int | float) for v in box)
        ):
            x, y, w, h = (min(max(float(v), 0.0), 1.0) for v in box)
            out.append((x, y, min(w, 1.0 - x), min(h, 1.0 - y)))
    return out


@bp.app_template_filter("highlight")
def highlight(text: Any, words: Any = None) -> Markup:
    """Text escaped, the searched words marked (glimpser.web.search.highlight)."""
    return search.highlight(text, words if isinstance(words, list | tuple) else None)


@bp.app_template_filter("fraction")
def fraction(value: float) -> str:
    """4 decimals are plenty for a box edge; the SVG stays short."""
    return f"{value:.4f}".rstrip("0").rstrip(".") or "0"
