"""The difference between two pictures, as a picture: what the event page's "Difference" view
shows. The newer picture is dimmed to grey and every pixel that changed noticeably since the
older one is painted red, brighter the more it changed."""

from __future__ import annotations

import cv2
import numpy as np

THRESHOLD = 25  # grey levels (0-255) below which a change is noise (JPEG, sensor)
MAX_SIDE = 1920  # the difference is computed at most this large


class DifferenceError(ValueError):
    """One of the pictures cannot be decoded."""


def _decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DifferenceError("a picture cannot be decoded")
    height, width = image.shape
    scale = MAX_SIDE / max(height, width)
    if scale < 1:
        image = cv2.resize(image, (int(width * scale), int(height * scale)), cv2.INTER_AREA)
    return image


def difference_jpeg(before: bytes, after: bytes, quality: int = 80) -> bytes:
    """A JPEG of `after` (dimmed) with what changed since `before` in red.

    `before` is resized to `after`'s size when the two differ (a camera's resolution may
    change); blurred slightly first, so that JPEG noise does not light up every edge.
    """
    new = _decode(after)
    old = _decode(before)
    if old.shape != new.shape:
        old = cv2.resize(old, (new.shape[1], new.shape[0]), interpolation=cv2.INTER_AREA)
    diff = cv2.absdiff(cv2.GaussianBlur(new, (5, 5), 0), cv2.GaussianBlur(old, (5, 5), 0))
    base = (new.astype(np.float32) * 0.45).astype(np.uint8)
    out = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR)
    changed = diff >= THRESHOLD
    strength = np.clip(diff.astype(np.float32) * 3 + 80, 0, 255).astype(np.uint8)
    out[changed, 2] = strength[changed]  # red channel (BGR)
    out[changed, 1] = out[changed, 1] // 2
    out[changed, 0] = out[changed, 0] // 2
    ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any 8-bit image
        raise DifferenceError("the difference cannot be encoded")
    return encoded.tobytes()
