"""Picture handling shared by capture and analysis: JPEG normalisation and hashes."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator

import imagehash
from PIL import Image, UnidentifiedImageError

from glimpser.sources.base import CaptureError, Frame

# Quality steps tried, then downscaling, until a JPEG fits the configured maximum size.
_QUALITIES = (85, 70, 55, 40)


def to_jpeg(data: bytes, max_bytes: int) -> Frame:
    """Validate any image and return it as a JPEG no larger than max_bytes.

    A JPEG that already fits is kept byte for byte (no re-encoding, no quality loss) and is
    validated by a 1/8-scale decode: libjpeg still parses the whole bitstream, so truncated or
    corrupt data is caught, at a sixth of the cost of a full decode.
    """
    if not data:
        raise CaptureError("the source returned no data")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if image.format == "JPEG" and len(data) <= max_bytes:
            image.draft("L", (max(1, width // 8), max(1, height // 8)))
            image.load()
            return Frame(jpeg=data, width=width, height=height)
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise CaptureError(
            f"the source did not return a valid image ({exc.__class__.__name__})"
        ) from None
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


SOI, EOI = b"\xff\xd8", b"\xff\xd9"
MAX_JPEG_SCAN = 16 * 1024 * 1024  # give up if no whole frame arrives in this many bytes


def split_jpegs(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole JPEGs (SOI … EOI) cut from a byte stream: MJPEG parts or ffmpeg's image2pipe."""
    buffer = bytearray()
    start, scan = -1, 0
    for chunk in chunks:
        buffer += chunk
        while True:
            if start < 0:
                start = buffer.find(SOI, scan)
                if start < 0:
                    del buffer[:-1]  # keep a byte: a marker may straddle two chunks
                    scan = 0
                    break
                scan = start + 2
            end = buffer.find(EOI, scan)
            if end < 0:
                if len(buffer) - start > MAX_JPEG_SCAN:
                    raise CaptureError("no whole JPEG frame within 16 MB of stream")
                scan = max(start + 2, len(buffer) - 1)
                break
            yield bytes(buffer[start : end + 2])
            del buffer[: end + 2]
            start, scan = -1, 0


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def perceptual_hash(jpeg: bytes) -> str:
    """64-bit DCT perceptual hash as 16 hex digits; JPEGs are decoded at reduced size."""
    image = Image.open(io.BytesIO(jpeg))
    image.draft("L", (64, 64))  # libjpeg DCT scaling: decode small, cheaply
    return str(imagehash.phash(image.convert("L")))
