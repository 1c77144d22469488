"""Thumbnails: a small JPEG per snapshot, made once on first request and stored beside it.

The thumbnail of ``12/2026/11/24/101500.123456-0a1b2c3d4e5f.jpg`` is
``12/2026/11/24/101500.123456-0a1b2c3d4e5f.t320.jpg`` in the same storage backend, so it
lives and dies with its snapshot: `glimpser.media.snapshots` deletes `thumbnail_key(key)` together
with every snapshot file (a missing thumbnail is not an error there).
"""

from __future__ import annotations

import io
import logging

from PIL import Image

from glimpser.media.storage import ObjectNotFound, Storage
from glimpser.models import Snapshot

log = logging.getLogger(__name__)

THUMB_WIDTH = 320
_QUALITY = 75
_SUFFIX = f".t{THUMB_WIDTH}.jpg"
THUMB_SUFFIX = _SUFFIX


def thumbnail_key(storage_key: str) -> str:
    """The derived key of a snapshot's thumbnail (same directory, so deletion prunes it too)."""
    stem = storage_key[:-4] if storage_key.endswith(".jpg") else storage_key
    return stem + _SUFFIX


def needs_thumbnail(snapshot: Snapshot) -> bool:
    """Pictures no wider than a thumbnail are served as they are: nothing to store."""
    return snapshot.width > THUMB_WIDTH


def render_thumbnail(jpeg: bytes, width: int = THUMB_WIDTH) -> bytes:
    """Scale a picture down to `width` pixels wide; libjpeg's DCT scaling keeps this cheap."""
    image = Image.open(io.BytesIO(jpeg))
    w, h = image.size
    height = max(1, round(h * width / w))
    image.draft("RGB", (width, height))  # decode at 1/2, 1/4 or 1/8 scale when possible
    image = image.convert("RGB")
    image.thumbnail((width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=_QUALITY, optimize=True, progressive=True)
    return out.getvalue()


def ensure_thumbnail(snapshot: Snapshot, storage: Storage, jpeg: bytes | None = None) -> str:
    """The key of the snapshot's thumbnail, generating and storing it the first time only.

    The analysis job makes it from the picture it already holds (`jpeg`), so the web process
    normally finds it made; a request only renders one the job has not reached yet."""
    if not needs_thumbnail(snapshot):
        return snapshot.storage_key
    key = thumbnail_key(snapshot.storage_key)
    if storage.exists(key):
        return key
    data = render_thumbnail(jpeg if jpeg is not None else storage.get(snapshot.storage_key))
    storage.put(key, data, "image/jpeg")
    log.info(
        "thumbnail generated",
        extra={"snapshot_id": snapshot.id, "key": key, "bytes": len(data)},
    )
    # The snapshot may have been deleted while we worked: leave no orphan behind.
    if not Snapshot.select(Snapshot.id).where(Snapshot.id == snapshot.id).exists():
        storage.delete(key)
        raise ObjectNotFound(f"{snapshot.storage_key} was deleted")
    return key
