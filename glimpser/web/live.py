"""The live view: a page per stream and its MJPEG feed, shared through one reader per stream.

Both routes load the stream through get_visible_stream (404 otherwise). Each open MJPEG
response holds a gunicorn thread; `LiveSlots` caps them per process so ordinary pages always
keep threads of their own (gunicorn_conf.py sizes the pool, docs/benchmarks.md measures it).
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, render_template

from glimpser.auth.access import get_visible_stream
from glimpser.capture import live
from glimpser.capture.readers import frame_key
from glimpser.media.snapshots import latest_snapshot
from glimpser.models import Stream
from glimpser.web.app_settings import current_settings
from glimpser.web.htmx import render_block

bp = Blueprint("live", __name__, url_prefix="/streams")


def _redis():  # noqa: ANN202
    return current_app.extensions["glimpser.redis"]


def _settings():  # noqa: ANN202
    return current_settings()


def _broker() -> live.FrameBroker:
    broker = current_app.extensions.get("glimpser.live_broker")
    if broker is None:
        broker = current_app.extensions.setdefault(
            "glimpser.live_broker", live.FrameBroker(_redis())
        )
    return broker


def _slots() -> live.LiveSlots:
    slots = current_app.extensions.get("glimpser.live_slots")
    if slots is None:
        slots = current_app.extensions.setdefault(
            "glimpser.live_slots", live.LiveSlots(live.max_live_responses(_settings().web_threads))
        )
    return slots


def _live_state(stream: Stream) -> dict:
    """What the page says about the feed: watching, starting, or the reader's real error."""
    connection = _redis()
    at = connection.hget(frame_key(stream.id), "at")
    age = time.time() - float(at) if at else None
    return {
        "error": live.reader_error(connection, stream.id),
        "fresh": age is not None and age < 10,
        "viewers": live.viewer_count(connection, stream.id),
    }


@bp.get("/<int:stream_id>/live")
def page(stream_id: int):
    stream = get_visible_stream(stream_id)
    if stream.kind in live.LIVE_KINDS:
        state = _live_state(stream)
        state["viewers"] += 1  # this page opens the feed too: count it before its first poll
        return render_template("streams/live.html", stream=stream, state=state)
    return render_template(
        "streams/live.html", stream=stream, latest=latest_snapshot(stream), state=None
    )


def _render_block(block: str, **context: object) -> str:
    """One block of the live page (the htmx fragment), rendered from the same template."""
    return render_block("streams/live.html", block, **context)


@bp.get("/<int:stream_id>/live/status")
def status(stream_id: int):
    """The feed's state (or the refreshed snapshot), polled by htmx while the page is open."""
    stream = get_visible_stream(stream_id)
    if stream.kind not in live.LIVE_KINDS:
        return _render_block("snapshot", stream=stream, latest=latest_snapshot(stream))
    return _render_block("status", stream=stream, state=_live_state(stream))


@bp.get("/<int:stream_id>/live.mjpg")
def feed(stream_id: int):
    stream = get_visible_stream(stream_id)
    if stream.kind not in live.LIVE_KINDS:
        return Response(
            "This kind of stream has no live feed; its latest snapshot refreshes instead.\n",
            status=404,
            mimetype="text/plain",
        )
    slots = _slots()
    if not slots.acquire():
        response = Response(
            "Too many live views are open on this server right now; try again shortly.\n",
            status=503,
            mimetype="text/plain",
        )
        response.headers["Retry-After"] = "10"
        return response
    connection = _redis()
    viewer = live.LiveViewer(connection, _broker(), stream.id, _settings().live_idle_seconds)
    try:
        jpeg, at = connection.hmget(frame_key(stream.id), "jpeg", "at")
        initial = jpeg if at and time.time() - float(at) < 10 else None
        viewer.open()
        # No stream_with_context: the request (and its database connection) ends now; the
        # parts need only Redis.
        response = Response(
            viewer.parts(initial),
            mimetype=f"multipart/x-mixed-replace; boundary={live.BOUNDARY}",
        )
    except BaseException:
        viewer.close()
        slots.release()
        raise
    closed = False

    def close() -> None:  # the client went away or the feed ended; may be called twice
        nonlocal closed
        if not closed:
            closed = True
            viewer.close()
            slots.release()

    response.call_on_close(close)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response
