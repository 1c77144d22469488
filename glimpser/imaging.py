"""Picture handling shared by capture and analysis: JPEG normalisation and hashes."""

from __future__ import annotations

import hashlib
import io

import imagehash
from PIL import Image, UnidentifiedImageError

from glimpser.sources.base import CaptureError, Frame

# Quality steps tried, then downscaling, until a JPEG fits the configured maximum size.
_QUALITIES = (85, 70, 55, 40)


def to_jpeg(data: bytes, max_bytes: int) -> Frame:
    """Validate any image and return it as a JPEG no larger than max_bytes.

    A JPEG that already fits is kept byte for byte (no re-encoding cost, no quality loss).
    """
    if not data:
        raise CaptureError("the source returned no data")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise CaptureError(
            f"the source did not return a valid image ({exc.__class__.__name__})"
        ) from None
    width, height = image.size
    if image.format == "JPEG" and len(data) <= max_bytes:
        return Frame(jpeg=data, width=width, height=height)
    rgb = image.convert("RGB")
    while True:
        for quality in _QUALITIES:
            out = io.BytesIO()
            rgb.save(out, "JPEG", quality=quality, optimize=True)
            if out.tell() <= max_bytes:
                return Frame(jpeg=out.getvalue(), width=rgb.width, height=rgb.height)
        if rgb.width < 64 or rgb.height < 64:
            raise CaptureError("the picture cannot be made small enough for the JPEG size limit")
        rgb = rgb.resize((max(1, rgb.width * 3 // 4), max(1, rgb.height * 3 // 4)))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def perceptual_hash(jpeg: bytes) -> str:
    """64-bit DCT perceptual hash as 16 hex digits; JPEGs are decoded at reduced size."""
    image = Image.open(io.BytesIO(jpeg))
    image.draft("L", (64, 64))  # libjpeg DCT scaling: decode small, cheaply
    return str(imagehash.phash(image.convert("L")))
