"""What changed between two snapshots of a stream (made for websites, like changedetection.io):
the previous and this picture side by side, their pixel difference highlighted (computed here
with OpenCV, served by an access-checked route), and a text diff of the pages' text when the
stream keeps it (WebsiteConfig.extract_text). Linked from the stream's history and from change
events. A viewer reaches only the streams granted to them; any other stream is a 404.
"""

from __future__ import annotations

import hashlib
import json
import logging

import cv2
import numpy as np
from flask import Blueprint, Response, abort, current_app, render_template, request

from glimpser.analysis.motion import pixel_threshold
from glimpser.analysis.schemas import analysis_settings
from glimpser.analysis.textchange import diff_counts, diff_lines, previous_snapshot, text_changed
from glimpser.auth.access import get_visible_stream
from glimpser.media.storage import ObjectNotFound, StorageError, get_storage
from glimpser.models import Snapshot, Stream
from glimpser.sources.schemas import WebsiteConfig
from glimpser.web.app_settings import current_settings

log = logging.getLogger(__name__)

bp = Blueprint("changes", __name__, url_prefix="/streams")

# The difference picture is made at most this wide (a full-page screenshot can be very tall).
DIFF_MAX_WIDTH = 1600
DIFF_MAX_PIXELS = 1600 * 8000
_CACHE = "private, max-age=3600"


def _snapshot(stream: Stream, snapshot_id: int) -> Snapshot:
    snapshot = Snapshot.get_or_none((Snapshot.id == snapshot_id) & (Snapshot.stream == stream.id))
    if snapshot is None:
        abort(404)
    return snapshot


def _next_snapshot(snapshot: Snapshot) -> Snapshot | None:
    return (
        Snapshot.select(Snapshot.id)
        .where(
            (Snapshot.stream == snapshot.stream_id)
            & (
                (Snapshot.captured_at > snapshot.captured_at)
                | ((Snapshot.captured_at == snapshot.captured_at) & (Snapshot.id > snapshot.id))
            )
        )
        .order_by(Snapshot.captured_at.asc(), Snapshot.id.asc())
        .first()
    )


def _website_config(stream: Stream) -> WebsiteConfig | None:
    if stream.kind != "website":
        return None
    try:
        return WebsiteConfig.model_validate(stream.config or {})
    except ValueError:
        return None


@bp.get("/<int:stream_id>/changes/<int:snapshot_id>")
def view(stream_id: int, snapshot_id: int):
    """The change view of one snapshot against the one before it."""
    stream = get_visible_stream(stream_id)
    snapshot = _snapshot(stream, snapshot_id)
    before = previous_snapshot(snapshot)
    config = _website_config(stream)
    patterns = config.ignore_text if config else []
    lines: list = []
    cut = False
    text_verdict = None
    if before is not None and before.text is not None and snapshot.text is not None:
        lines, cut = diff_lines(before.text, snapshot.text, patterns)
        text_verdict = text_changed(before.text, snapshot.text, patterns)
    return render_template(
        "streams/changes.html",
        stream=stream,
        snapshot=snapshot,
        before=before,
        after=_next_snapshot(snapshot),
        lines=lines,
        cut=cut,
        counts=diff_counts(lines),
        text_verdict=text_verdict,
        patterns=patterns,
        keeps_text=bool(config and config.extract_text),
    )


def _decode(snapshot: Snapshot) -> np.ndarray:
    try:
        data = get_storage(current_settings()).get(snapshot.storage_key)
    except (FileNotFoundError, ObjectNotFound):
        abort(404)
    except (OSError, StorageError) as exc:
        log.warning("snapshot not readable", extra={"snapshot_id": snapshot.id, "error": str(exc)})
        abort(503)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        abort(404)
    return image


def difference_picture(
    before: np.ndarray,
    after: np.ndarray,
    threshold: int,
    masks: list[list[list[float]]],
) -> np.ndarray:
    """`after`, faded, with the pixels that differ from `before` in red and the masked
    (ignored) areas shaded blue. `before` is scaled to `after`'s size when they differ."""
    height, width = after.shape[:2]
    if width > DIFF_MAX_WIDTH or width * height > DIFF_MAX_PIXELS:
        scale = min(DIFF_MAX_WIDTH / width, (DIFF_MAX_PIXELS / (width * height)) ** 0.5)
        width, height = max(1, int(width * scale)), max(1, int(height * scale))
        after = cv2.resize(after, (width, height), interpolation=cv2.INTER_AREA)
    if before.shape[:2] != (height, width):
        before = cv2.resize(before, (width, height), interpolation=cv2.INTER_AREA)
    grey_a = cv2.GaussianBlur(cv2.cvtColor(after, cv2.COLOR_BGR2GRAY), (3, 3), 0)
    grey_b = cv2.GaussianBlur(cv2.cvtColor(before, cv2.COLOR_BGR2GRAY), (3, 3), 0)
    changed = cv2.absdiff(grey_a, grey_b) > threshold
    changed = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    faded = cv2.cvtColor(cv2.cvtColor(after, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    out = (faded.astype(np.float32) * 0.35 + 150).astype(np.uint8)
    if masks:
        shade = np.zeros((height, width), np.uint8)
        for polygon in masks:
            points = np.array([[x * width, y * height] for x, y in polygon], np.int32)
            cv2.fillPoly(shade, [points], 1)
        out[shade > 0] = (out[shade > 0] * 0.5 + np.array([200, 120, 40]) * 0.5).astype(np.uint8)
    out[changed] = (0, 0, 230)  # BGR red
    return out


@bp.get("/<int:stream_id>/changes/<int:snapshot_id>/diff.png")
def diff_image(stream_id: int, snapshot_id: int):
    """The highlighted difference between this snapshot and the one before it (PNG)."""
    stream = get_visible_stream(stream_id)
    snapshot = _snapshot(stream, snapshot_id)
    before = previous_snapshot(snapshot)
    if before is None:
        abort(404)
    settings = analysis_settings(stream.analysis) if stream.analysis else None
    masks = [list(map(list, m)) for m in settings.masks] if settings else []
    threshold = pixel_threshold("change", settings.sensitivity if settings else 50)
    etag = hashlib.sha256(
        json.dumps([before.sha256, snapshot.sha256, masks, threshold]).encode()
    ).hexdigest()[:40]
    if request.if_none_match and etag in request.if_none_match:
        response: Response = current_app.response_class(status=304)
    else:
        picture = difference_picture(_decode(before), _decode(snapshot), threshold, masks)
        ok, png = cv2.imencode(".png", picture, [cv2.IMWRITE_PNG_COMPRESSION, 6])
        if not ok:
            abort(500)
        response = current_app.response_class(png.tobytes(), mimetype="image/png")
    response.set_etag(etag)
    response.headers["Cache-Control"] = _CACHE
    return response
