"""Motion and change detection on snapshots: pure functions over JPEG bytes and a state blob.

Each stream has its own state (a background for cameras, the previous frame for websites),
kept in Redis under `glimpser:motion:<stream_id>` so that any worker can analyse the next
snapshot. Nothing here touches the database. The recipe and its numbers are explained in
docs/motion.md; the costs are in docs/benchmarks.md (bench/bench_motion.py).

Cameras and video ("motion"): decode small and grey straight from the JPEG (libjpeg DCT
scaling), shrink to a fixed short side, stretch the contrast, blur, difference against a
running-average background, threshold, dilate, keep contours above a minimum area. A new
background is provisional until a frame agrees with it (a damaged first picture must not
become the reference), and boxes are drawn only where something is now (not the trail the
object left in the running average).
Websites and dashboards ("change"): the share of pixels that differ from the previous
snapshot after a light blur (changedetection.io's measure), with boxes around the changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from glimpser.analysis.schemas import AnalysisSettings, detection_mode

if TYPE_CHECKING:
    import redis

Mode = Literal["motion", "change"]

# --- the numbers (why: docs/motion.md, measured by bench/bench_motion.py) ---------------------

# Short side of the small grey picture. Cameras: 90 px (Frigate works at 100). libjpeg then
# decodes 720p and 1080p at its cheapest 1/8 scale (90 and 135 px) and 360p at 1/4; 120 px
# would force 1/4 at 720p, which costs more than the whole analysis and breaks the 0.5x goal
# (docs/benchmarks.md). Websites: 360 px. A replaced line of small text (13 px capitals) on a
# 1280x720 page scores about 0.17 % at 180-360 px (over the 0.1 % trigger); at 180 px a
# single changed digit vanishes, at 360 px it still scores 0.01 %.
SMALL_SIDE: dict[str, int] = {"motion": 90, "change": 360}

# Background time constant (seconds of wall clock). Frigate blends alpha 0.01 per frame at
# 5 fps, i.e. tau = 1 / (0.01 * 5) = 20 s. A snapshot every `interval` s gets
# alpha = 1 - exp(-interval / tau), clamped so the background neither freezes nor becomes
# just the previous frame.
BACKGROUND_TAU = 20.0
ALPHA_MIN, ALPHA_MAX = 0.05, 0.5

# Contrast stretch: the 1st..99th percentile of the considered pixels maps to 0..255, but the
# gain never exceeds 255 / MIN_RANGE (x4), so a flat, dark or foggy picture is not turned into
# amplified noise.
STRETCH_PERCENT = 0.01
MIN_RANGE = 64

# More than this share of the considered area over the threshold (dilated, as Frigate's
# lightning_threshold) is a lighting or IR switch, not motion.
LIGHTING_FRACTION = 0.8

# Gaussian blur of the small camera picture. Frigate uses 3x3 (sigma ~0.8) at 100 px; sigma 1.5
# keeps per-pixel flicker (sensor noise at night, rain, the RTSP test server's snow patch)
# under the threshold, while a 3 px object keeps about half its contrast.
MOTION_BLUR = ((7, 7), 1.5)

# A new background is provisional: a next frame that differs from it over this share of the
# considered area (but is no lighting switch) replaces it, note "first", no event; at most
# SEED_TRIES times, then the background stays whatever comes. A damaged first picture (a
# decoder joining a live stream, the top half washed out) scores about 0.41 against a whole
# one; ordinary motion at start-up (a passer-by) scores a few per cent and is reported at once.
SEED_MISMATCH = 0.1
SEED_TRIES = 3

MAX_BOXES = 32
STATE_TTL_MIN = 24 * 3600
KEY = "glimpser:motion:{}"
_MAGIC = b"GLMS"
_VERSION = 2


def pixel_threshold(mode: Mode, sensitivity: int) -> int:
    """Grey-level difference that counts as changed. Sensitivity 50 gives Frigate's 30 (after
    the contrast stretch) for cameras and 16 for websites; each 30 points halve or double it."""
    base = 30.0 if mode == "motion" else 16.0
    return max(2, round(base * 2 ** ((50 - sensitivity) / 30)))


def min_area_fraction(sensitivity: int) -> float:
    """Smallest contour (share of the picture) that counts as motion. Sensitivity 50 gives
    Frigate's 10 px at 100x178 px; each 20 points halve or double it."""
    return 10 / (100 * 178) * 2 ** ((50 - sensitivity) / 20)


def background_alpha(interval: float) -> float:
    """Blend rate of the running average for snapshots every `interval` seconds."""
    alpha = 1 - math.exp(-max(interval, 0.0) / BACKGROUND_TAU)
    return min(ALPHA_MAX, max(ALPHA_MIN, alpha))


@dataclass(frozen=True)
class DetectorConfig:
    """How one stream's snapshots are compared (from its AnalysisSettings)."""

    mode: Mode
    sensitivity: int
    trigger: float  # 0..1 share of the considered area from which a snapshot counts as changed
    masks: list[list[list[float]]]
    region: list[list[float]] | None
    interval: float

    @classmethod
    def for_stream(cls, settings: AnalysisSettings, kind: str, interval: float) -> DetectorConfig:
        """The detector for a stream of this kind, captured every `interval` seconds."""
        return cls(
            mode=detection_mode(kind),
            sensitivity=settings.sensitivity,
            trigger=settings.trigger_for(kind),
            masks=[[[float(x), float(y)] for x, y in polygon] for polygon in settings.masks],
            region=(
                [[float(x), float(y)] for x, y in settings.region] if settings.region else None
            ),
            interval=float(interval),
        )

    def fingerprint(self, source: tuple[int, int]) -> bytes:
        """What the stored state depends on: mode, picture size, masks and region. A change to
        any of them makes the next snapshot start a new background ("first")."""
        key = json.dumps(
            [_VERSION, self.mode, SMALL_SIDE[self.mode], list(source), self.masks, self.region],
            separators=(",", ":"),
        )
        return hashlib.blake2b(key.encode(), digest_size=16).digest()


@dataclass(frozen=True)
class DetectionResult:
    """What one snapshot showed compared with the stream's earlier ones."""

    score: float  # 0..1 share of the considered area in motion (change mode: changed share)
    changed_fraction: float  # 0..1 share of considered pixels over the pixel threshold
    boxes: list[list[float]]  # [x, y, w, h] as fractions of the picture, largest first
    changed: bool
    note: str  # "first", "motion", "change", "quiet", "lighting"


# --- decoding ---------------------------------------------------------------------------------

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_REDUCED = ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4))
_REDUCED += ((2, cv2.IMREAD_REDUCED_GRAYSCALE_2), (1, cv2.IMREAD_GRAYSCALE))


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the JPEG's frame header, without decoding; None if not found."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            if i + 9 > n:
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return (width, height) if width and height else None
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def small_grey(data: bytes, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The picture as a grey uint8 array whose short side is `side` px (never enlarged), and
    the JPEG's own (width, height).

    libjpeg scales by 1/2, 1/4 or 1/8 while decoding (only the DC or a few coefficients of each
    block go through the inverse DCT, and colour is never converted): the largest factor that
    keeps the short side >= `side` is used, then INTER_AREA shrinks it the rest of the way.
    """
    size = jpeg_size(data)
    buffer = np.frombuffer(data, np.uint8)
    grey = None
    if size is not None:
        short = min(size)
        for factor, flag in _REDUCED:
            if math.ceil(short / factor) >= side or factor == 1:
                grey = cv2.imdecode(buffer, flag)
                break
    else:
        grey = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)
    if grey is None or grey.size == 0:
        raise ValueError("the snapshot is not a decodable JPEG")
    if size is None:
        size = (grey.shape[1], grey.shape[0])
    h, w = grey.shape
    short = min(h, w)
    if short > side:
        scale = side / short
        target = (max(1, round(w * scale)), max(1, round(h * scale)))
        grey = cv2.resize(grey, target, interpolation=cv2.INTER_AREA)
    return grey, size


# --- masks and contrast -----------------------------------------------------------------------

_SHIFT = 4  # fillPoly's fixed-point bits: polygons land within 1/16 px at the small size


def _polygon(points: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    scale = np.array([w, h], np.float64) * (1 << _SHIFT)
    return np.round(np.asarray(points, np.float64) * scale).astype(np.int32)


def considered_area(config: DetectorConfig, shape: tuple[int, int]) -> np.ndarray | None:
    """255 where pixels count (inside the region, outside every mask); None = everywhere."""
    if not config.masks and not config.region:
        return None
    if config.region:
        area = np.zeros(shape, np.uint8)
        cv2.fillPoly(area, [_polygon(config.region, shape)], 255, cv2.LINE_8, _SHIFT)
    else:
        area = np.full(shape, 255, np.uint8)
    if config.masks:
        polygons = [_polygon(mask, shape) for mask in config.masks]
        cv2.fillPoly(area, polygons, 0, cv2.LINE_8, _SHIFT)
    return area


def stretch_contrast(grey: np.ndarray, area: np.ndarray | None) -> np.ndarray:
    """Map the 1st..99th percentile of the considered pixels to 0..255 (gain at most x4), so a
    camera's exposure changes and dusk matter less than what moves."""
    hist = cv2.calcHist([grey], [0], area, [256], [0, 256]).ravel()
    total = hist.sum()
    if total <= 0:
        return grey
    cdf = np.cumsum(hist)
    lo = int(np.searchsorted(cdf, total * STRETCH_PERCENT))
    hi = int(np.searchsorted(cdf, total * (1 - STRETCH_PERCENT)))
    if hi - lo < MIN_RANGE:
        middle = (hi + lo) / 2
        lo, hi = middle - MIN_RANGE / 2, middle + MIN_RANGE / 2
    lut = np.clip((np.arange(256, dtype=np.float32) - lo) * (255.0 / (hi - lo)), 0, 255)
    return cv2.LUT(grey, lut.astype(np.uint8))


# --- state ------------------------------------------------------------------------------------

# magic, version, fingerprint, h, w, dtype, interval, seeding (tries left while provisional)
_HEADER = struct.Struct(">4sB16sHHBfB")
_DTYPES = {0: np.uint8, 1: np.float32}


@dataclass
class _State:
    """What a stream's detector remembers: the reference frame (motion: the float32 running
    average; change: the previous page), for motion the previous frame (uint8), and how many
    times a provisional background may still be replaced (0: settled)."""

    reference: np.ndarray
    previous: np.ndarray | None = None
    seeding: int = 0


def _pack(
    fingerprint: bytes,
    frame: np.ndarray,
    interval: float,
    previous: np.ndarray | None = None,
    seeding: int = 0,
) -> bytes:
    code = 1 if frame.dtype == np.float32 else 0
    h, w = frame.shape
    header = _HEADER.pack(_MAGIC, _VERSION, fingerprint, h, w, code, interval, seeding)
    body = np.ascontiguousarray(frame).tobytes()
    if previous is not None:
        body += np.ascontiguousarray(previous, np.uint8).tobytes()
    return header + body


def _unpack(state: bytes | None, fingerprint: bytes) -> _State | None:
    """The stored state if it is intact and was made with the same fingerprint."""
    if not state or len(state) < _HEADER.size:
        return None
    magic, version, stored, h, w, code, _, seeding = _HEADER.unpack_from(state)
    if magic != _MAGIC or version != _VERSION or stored != fingerprint or code not in _DTYPES:
        return None
    dtype = _DTYPES[code]
    body = state[_HEADER.size :]
    size = h * w * np.dtype(dtype).itemsize
    if len(body) not in (size, size + h * w):
        return None
    reference = np.frombuffer(body[:size], dtype).reshape(h, w).copy()
    previous = None
    if len(body) > size:
        previous = np.frombuffer(body[size:], np.uint8).reshape(h, w).copy()
    return _State(reference, previous, seeding)


def state_interval(state: bytes) -> float | None:
    """The snapshot interval recorded in a state (for its TTL), if the state is readable."""
    if len(state) < _HEADER.size or state[:4] != _MAGIC:
        return None
    return float(_HEADER.unpack_from(state)[6])


def load_state(connection: redis.Redis, stream_id: int) -> bytes | None:
    """The stream's detector state, shared by all workers (None: start afresh)."""
    return connection.get(KEY.format(stream_id))


def save_state(connection: redis.Redis, stream_id: int, state: bytes) -> None:
    """Keep the state for max(1 day, 10 intervals): a stream paused for longer starts afresh
    rather than comparing with a scene from long ago."""
    interval = state_interval(state) or 0.0
    ttl = max(STATE_TTL_MIN, math.ceil(10 * interval))
    connection.set(KEY.format(stream_id), state, ex=ttl)


# --- detection --------------------------------------------------------------------------------


def _boxes(contours: list[np.ndarray], shape: tuple[int, int]) -> list[list[float]]:
    h, w = shape
    rects = sorted((cv2.boundingRect(c) for c in contours), key=lambda r: -r[2] * r[3])
    return [
        [round(x / w, 4), round(y / h, 4), round(bw / w, 4), round(bh / h, 4)]
        for x, y, bw, bh in rects[:MAX_BOXES]
    ]


def _share(mask: np.ndarray, area: np.ndarray | None, considered: int) -> float:
    if area is not None:
        mask = cv2.bitwise_and(mask, area)
    return cv2.countNonZero(mask) / considered if considered else 0.0


_DILATE = np.ones((3, 3), np.uint8)


def detect(
    jpeg: bytes, state: bytes | None, config: DetectorConfig
) -> tuple[DetectionResult, bytes]:
    """Compare one snapshot with the stream's state; return the result and the new state.

    Raises ValueError if the bytes are not a decodable JPEG (the state is then unchanged).
    """
    grey, source = small_grey(jpeg, SMALL_SIDE[config.mode])
    return analyse(grey, source, state, config)


def analyse(
    grey: np.ndarray, source: tuple[int, int], state: bytes | None, config: DetectorConfig
) -> tuple[DetectionResult, bytes]:
    """Everything after decoding: `grey` from small_grey(), `source` the JPEG's own size.
    Separate from detect() so the benchmark can time decoding and analysis apart."""
    shape = grey.shape
    fingerprint = config.fingerprint(source)
    area = considered_area(config, shape)
    considered = cv2.countNonZero(area) if area is not None else grey.size
    stored = _unpack(state, fingerprint)
    if config.mode == "change":
        previous = stored.reference if stored is not None else None
        return _detect_change(grey, previous, area, considered, fingerprint, config)
    return _detect_motion(grey, stored, area, considered, fingerprint, config)


def _detect_motion(
    grey: np.ndarray,
    stored: _State | None,
    area: np.ndarray | None,
    considered: int,
    fingerprint: bytes,
    config: DetectorConfig,
) -> tuple[DetectionResult, bytes]:
    frame = cv2.GaussianBlur(stretch_contrast(grey, area), *MOTION_BLUR)
    background = stored.reference if stored is not None else None
    if background is None or background.dtype != np.float32 or background.shape != frame.shape:
        state = _pack(fingerprint, frame.astype(np.float32), config.interval, frame, SEED_TRIES)
        return _quiet("first"), state
    assert stored is not None
    previous = stored.previous

    reference = cv2.convertScaleAbs(background)
    diff = cv2.absdiff(frame, reference)
    threshold = pixel_threshold("motion", config.sensitivity)
    _, over = cv2.threshold(diff, threshold, 255, cv2.THRESH_BINARY)
    if area is not None:
        over = cv2.bitwise_and(over, area)
    changed_fraction = cv2.countNonZero(over) / considered if considered else 0.0
    dilated = cv2.dilate(over, _DILATE, iterations=1)
    if area is not None:
        dilated = cv2.bitwise_and(dilated, area)
    covered = cv2.countNonZero(dilated) / considered if considered else 0.0

    if max(changed_fraction, covered) > LIGHTING_FRACTION:
        # Lights or the IR cut filter switched (or the camera moved): no event, and a new
        # background from this frame. Like Frigate, the dilated area counts: an IR switch
        # leaves mid-grey surfaces alone, so fewer single pixels pass the threshold.
        result = DetectionResult(0.0, round(changed_fraction, 6), [], False, "lighting")
        state = _pack(fingerprint, frame.astype(np.float32), config.interval, frame, stored.seeding)
        return result, state

    contours, _ = cv2.findContours(dilated, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    min_area = min_area_fraction(config.sensitivity) * frame.size
    kept = [c for c in contours if cv2.contourArea(c) >= min_area]
    score = 0.0
    if kept:
        filled = np.zeros_like(dilated)
        cv2.drawContours(filled, kept, -1, 255, cv2.FILLED)
        score = _share(filled, area, considered)

    if stored.seeding and score >= SEED_MISMATCH:
        # The provisional background and this frame disagree over a large area: one of them
        # may be a damaged picture. This frame becomes the provisional background instead.
        state = _pack(
            fingerprint, frame.astype(np.float32), config.interval, frame, stored.seeding - 1
        )
        return DetectionResult(0.0, round(changed_fraction, 6), [], False, "first"), state

    cv2.accumulateWeighted(frame, background, background_alpha(config.interval))
    state = _pack(fingerprint, background, config.interval, frame)  # settled (seeding 0)
    if not kept:
        return DetectionResult(0.0, round(changed_fraction, 6), [], False, "quiet"), state
    changed = score > 0 and score >= config.trigger
    result = DetectionResult(
        round(score, 6),
        round(changed_fraction, 6),
        _boxes(_where_now(frame, previous, reference, over, threshold, min_area), frame.shape),
        changed,
        "motion" if changed else "quiet",
    )
    return result, state


def _where_now(
    frame: np.ndarray,
    previous: np.ndarray | None,
    reference: np.ndarray,
    over: np.ndarray,
    threshold: int,
    min_area: float,
) -> list[np.ndarray]:
    """Contours of what is in motion *now*, for the boxes.

    The running average keeps a fading trace of every place a moving object passed, so the
    difference to the background (`over`) also covers where the object was. A pixel counts
    here only if it differs from the background, differs from the previous frame (the trace
    two or more frames old is gone: the previous frame there was empty too) and differs from
    the background by more than the threshold more than the previous frame did (where the
    object was one frame ago, the previous frame differed more)."""
    if previous is None:
        now = over
    else:
        _, moved = cv2.threshold(cv2.absdiff(frame, previous), threshold, 255, cv2.THRESH_BINARY)
        # Saturating: 0 where the previous frame differed more. The margin (a whole threshold)
        # settles the tie of a background that took half of the previous frame (alpha 0.5) and
        # the trace an object leaves where it lingered for a few snapshots.
        gain = cv2.subtract(cv2.absdiff(frame, reference), cv2.absdiff(previous, reference))
        _, arrived = cv2.threshold(gain, threshold, 255, cv2.THRESH_BINARY)
        now = cv2.bitwise_and(over, cv2.bitwise_and(moved, arrived))
    now = cv2.dilate(now, _DILATE, iterations=1)
    contours, _ = cv2.findContours(now, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c for c in contours if cv2.contourArea(c) >= min_area]


# Change mode: letters of a changed line merge into one box (wide, flat kernel).
_TEXT_KERNEL = cv2.getStructuringElement(cv2.MORPH_RECT, (15, 5))


def _detect_change(
    grey: np.ndarray,
    previous: np.ndarray | None,
    area: np.ndarray | None,
    considered: int,
    fingerprint: bytes,
    config: DetectorConfig,
) -> tuple[DetectionResult, bytes]:
    frame = cv2.GaussianBlur(grey, (0, 0), 0.8)
    state = _pack(fingerprint, frame, config.interval)
    if previous is None or previous.dtype != np.uint8 or previous.shape != frame.shape:
        return _quiet("first"), state
    diff = cv2.absdiff(frame, previous)
    _, over = cv2.threshold(
        diff, pixel_threshold("change", config.sensitivity), 255, cv2.THRESH_BINARY
    )
    if area is not None:
        over = cv2.bitwise_and(over, area)
    share = cv2.countNonZero(over) / considered if considered else 0.0
    if share == 0:
        return DetectionResult(0.0, 0.0, [], False, "quiet"), state
    grouped = cv2.dilate(over, _TEXT_KERNEL)
    if area is not None:
        grouped = cv2.bitwise_and(grouped, area)
    contours, _ = cv2.findContours(grouped, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    changed = share >= config.trigger
    result = DetectionResult(
        round(share, 6),
        round(share, 6),
        _boxes(list(contours), frame.shape),
        changed,
        "change" if changed else "quiet",
    )
    return result, state


def _quiet(note: str) -> DetectionResult:
    return DetectionResult(0.0, 0.0, [], False, note)
