"""Motion and change detection (glimpser/analysis/motion.py) on real JPEGs.

Synthetic pictures are drawn with numpy/OpenCV and encoded as JPEG exactly as a camera or a
website capture would deliver them; the last tests read the RTSP test server's moving and
static mounts through the same ffmpeg reader the product uses.
"""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from glimpser.analysis.motion import (
    KEY,
    DetectionResult,
    DetectorConfig,
    background_alpha,
    detect,
    load_state,
    save_state,
)
from glimpser.analysis.schemas import AnalysisSettings

W, H = 1280, 720


def scene(seed: int = 1, width: int = W, height: int = H) -> np.ndarray:
    """A textured, colourful still scene (smooth noise plus blocks), float32 BGR."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    for octave in range(1, 6):
        grid = rng.normal(0, 1, (2 + 2**octave, 2 + 2**octave * 16 // 9, 3)).astype(np.float32)
        img += cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC) * (40 / octave)
    img += 120
    for _ in range(30):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = (
            int(rng.integers(width // 30, width // 6)),
            int(rng.integers(height // 30, height // 6)),
        )
        cv2.rectangle(img, (x, y), (x + w, y + h), [float(c) for c in rng.integers(0, 256, 3)], -1)
    return img


def encode(img: np.ndarray, noise: float = 2.0, seed: int = 0, quality: int = 85) -> bytes:
    """The picture with fresh sensor noise, as a camera JPEG."""
    rng = np.random.default_rng(seed)
    noisy = img + rng.normal(0, noise, img.shape[:2]).astype(np.float32)[..., None]
    ok, data = cv2.imencode(
        ".jpg", np.clip(noisy, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return data.tobytes()


def with_square(
    img: np.ndarray, box: tuple[float, float, float, float], colour: tuple | None = None
) -> np.ndarray:
    """An object at box = (x, y, w, h) in fractions of the picture: light above, dark below
    (it stands out on any part of the scene), or of one colour."""
    out = img.copy()
    height, width = img.shape[:2]
    x, y, w, h = box
    x1, y1 = int(x * width), int(y * height)
    x2, y2 = int((x + w) * width), int((y + h) * height)
    if colour is None:
        cv2.rectangle(out, (x1, y1), (x2, (y1 + y2) // 2), (235, 235, 235), -1)
        cv2.rectangle(out, (x1, (y1 + y2) // 2), (x2, y2), (20, 20, 20), -1)
    else:
        cv2.rectangle(out, (x1, y1), (x2, y2), [float(c) for c in colour], -1)
    return out


def camera(**settings) -> DetectorConfig:
    return DetectorConfig.for_stream(AnalysisSettings(**settings), "rtsp", 5)


def run(config: DetectorConfig, *frames: bytes) -> list[DetectionResult]:
    """Feed frames in order through one stream's state; the results after the first."""
    results, state = [], None
    for frame in frames:
        result, state = detect(frame, state, config)
        results.append(result)
    assert results[0].note == "first"
    return results[1:]


def rect(points: tuple[float, float, float, float]) -> list[list[float]]:
    x, y, w, h = points
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]


def overlaps(box: list[float], target: tuple[float, float, float, float]) -> bool:
    bx, by, bw, bh = box
    tx, ty, tw, th = target
    return bx < tx + tw and tx < bx + bw and by < ty + th and ty < by + bh


SQUARE = (0.55, 0.5, 0.08, 0.12)


# --- cameras: motion ---------------------------------------------------------------------------


def test_first_frame_becomes_the_background():
    result, state = detect(encode(scene()), None, camera())
    assert result == DetectionResult(0.0, 0.0, [], False, "first")
    assert state.startswith(b"GLMS")


def test_a_moving_square_is_motion_and_its_box_lands_on_it():
    base = scene()
    (still, moved) = run(
        camera(),
        encode(base, seed=1),
        encode(base, seed=2),
        encode(with_square(base, SQUARE), seed=3),
    )
    assert still.note == "quiet" and not still.changed and still.score == 0
    assert moved.changed and moved.note == "motion"
    assert moved.score >= 0.005
    assert moved.changed_fraction > 0
    assert moved.boxes and overlaps(moved.boxes[0], SQUARE)
    x, y, w, h = moved.boxes[0]
    # The box is the square, give or take the blur and dilation: not the whole picture.
    assert w < 0.2 and h < 0.25
    assert x <= SQUARE[0] + 0.01 and x + w >= SQUARE[0] + SQUARE[2] - 0.01


def test_sensor_noise_and_jpeg_quality_changes_stay_quiet():
    base = scene(seed=4)
    frames = [encode(base, noise=3.0, seed=i, quality=70 + 5 * i) for i in range(6)]
    results = run(camera(sensitivity=80), *frames)
    assert all(not r.changed and r.note == "quiet" for r in results), results


def test_motion_inside_a_mask_is_ignored():
    base = scene(seed=5)
    frames = (encode(base, seed=1), encode(with_square(base, SQUARE), seed=2))
    (unmasked,) = run(camera(), *frames)
    assert unmasked.changed
    mask = rect((0.5, 0.45, 0.2, 0.25))  # around the square
    (masked,) = run(camera(masks=[mask]), *frames)
    assert not masked.changed and masked.score == 0 and masked.boxes == []


def test_a_region_of_interest_ignores_motion_outside_it():
    base = scene(seed=6)
    left = rect((0.0, 0.0, 0.45, 1.0))
    outside = (encode(base, seed=1), encode(with_square(base, SQUARE), seed=2))
    (result,) = run(camera(region=left), *outside)
    assert not result.changed and result.boxes == []
    inside_square = (0.15, 0.3, 0.08, 0.12)
    inside = (encode(base, seed=1), encode(with_square(base, inside_square), seed=2))
    (result,) = run(camera(region=left), *inside)
    assert result.changed and overlaps(result.boxes[0], inside_square)
    # The score is a share of the region, so the same square scores more than in the full view.
    (full,) = run(camera(), *inside)
    assert result.score > full.score


def ir_night(img: np.ndarray) -> np.ndarray:
    """The IR cut filter switching: grey from near-infrared (mostly the red channel), darker
    and with another contrast, so each colour changes its own way."""
    ir = 0.15 * img[..., 0] + 0.15 * img[..., 1] + 0.9 * img[..., 2]
    ir = 255 * (np.clip(ir, 0, 255) / 255) ** 1.8
    return np.repeat(ir[..., None], 3, axis=2).astype(np.float32)


def test_a_lighting_switch_recalibrates_without_an_event():
    base = scene(seed=7)
    night = ir_night(base)
    switch, after = run(
        camera(), encode(base, seed=1), encode(night, seed=2), encode(night, seed=3)
    )
    assert switch.note == "lighting" and not switch.changed
    assert switch.score == 0 and switch.boxes == [] and switch.changed_fraction > 0.5
    assert after.note == "quiet" and not after.changed


def test_an_exposure_change_is_normalised_away():
    base = scene(seed=8)
    darker = base * 0.6 + 10  # the camera's auto exposure stepping down
    (result,) = run(camera(), encode(base, seed=1), encode(darker, seed=2))
    assert not result.changed and result.note == "quiet"


def test_sensitivity_decides_about_a_small_faint_object():
    base = with_square(scene(seed=9), (0.2, 0.1, 0.25, 0.25), colour=(128, 128, 128))  # a wall
    faint = with_square(base, (0.3, 0.2, 0.025, 0.04), colour=(153, 153, 153))
    frames = (encode(base, seed=1), encode(faint, seed=2))
    (low,) = run(camera(sensitivity=10, trigger_percent=0.01), *frames)
    (high,) = run(camera(sensitivity=90, trigger_percent=0.01), *frames)
    assert not low.changed
    assert high.changed and overlaps(high.boxes[0], (0.3, 0.2, 0.025, 0.04))


def test_the_trigger_decides_how_much_motion_counts():
    base = scene(seed=10)
    frames = (encode(base, seed=1), encode(with_square(base, SQUARE), seed=2))
    (default,) = run(camera(), *frames)
    (strict,) = run(camera(trigger_percent=default.score * 100 * 2), *frames)
    assert default.changed
    assert not strict.changed and strict.note == "quiet" and strict.score == default.score


def test_a_new_resolution_starts_a_new_background():
    big = encode(scene(seed=11), seed=1)
    small = encode(scene(seed=11, width=640, height=360), seed=2)
    _, state = detect(big, None, camera())
    result, _ = detect(small, state, camera())
    assert result.note == "first"


def test_something_that_is_not_a_jpeg_is_an_error():
    with pytest.raises(ValueError):
        detect(b"\xff\xd8 not really a picture", None, camera())
    with pytest.raises(ValueError):
        detect(b"<html>", None, camera())


def test_config_follows_the_stream_settings():
    cam = DetectorConfig.for_stream(AnalysisSettings(), "rtsp", 10)
    site = DetectorConfig.for_stream(AnalysisSettings(trigger_percent=2), "website", 300)
    assert (cam.mode, cam.trigger, cam.interval) == ("motion", 0.005, 10.0)
    assert (site.mode, site.trigger) == ("change", 0.02)
    # Frigate's 20 s background time constant, clamped for fast and slow snapshots.
    assert background_alpha(1) == 0.05  # 1 - exp(-1 / 20) = 0.049, clamped
    assert background_alpha(5) == pytest.approx(0.221, abs=1e-3)
    assert background_alpha(0.1) == 0.05 and background_alpha(3600) == 0.5


# --- state in Redis ----------------------------------------------------------------------------


def test_state_round_trips_through_redis_per_stream(redis_client):
    base = scene(seed=12)
    config = camera()
    _, state = detect(encode(base, seed=1), None, config)
    save_state(redis_client, 7, state)
    assert load_state(redis_client, 7) == state
    assert load_state(redis_client, 8) is None  # another stream has its own state
    assert redis_client.ttl(KEY.format(7)) >= 24 * 3600 - 5
    # A worker that loads the state sees what the first one saw.
    moved, new_state = detect(
        encode(with_square(base, SQUARE), seed=2), load_state(redis_client, 7), config
    )
    assert moved.changed
    save_state(redis_client, 7, new_state)
    quiet, _ = detect(encode(base, seed=3), load_state(redis_client, 7), config)
    assert quiet.note != "first"


def test_a_long_interval_keeps_the_state_for_ten_intervals(redis_client):
    config = DetectorConfig.for_stream(AnalysisSettings(), "rtsp", 86400)
    _, state = detect(encode(scene(seed=13), seed=1), None, config)
    save_state(redis_client, 9, state)
    assert redis_client.ttl(KEY.format(9)) > 9 * 86400


def test_changing_the_masks_resets_the_state(redis_client):
    base = scene(seed=14)
    _, state = detect(encode(base, seed=1), None, camera())
    save_state(redis_client, 3, state)
    masked = camera(masks=[rect((0.0, 0.0, 0.2, 0.1))])
    result, _ = detect(
        encode(with_square(base, SQUARE), seed=2), load_state(redis_client, 3), masked
    )
    assert result.note == "first" and not result.changed
    # A corrupt or foreign state is treated the same way, never as an error.
    result, _ = detect(encode(base, seed=3), b"garbage", camera())
    assert result.note == "first"


# --- websites: change --------------------------------------------------------------------------

LINES = [
    "Service status",
    "API: operational",
    "Database: operational",
    "Queue depth: 42 jobs",
    "Last deploy: 2026-11-24 07:58 UTC",
    "Errors in the last hour: 3",
    "Visitors online: 128",
]


def page(lines: list[str], quality: int = 85) -> bytes:
    img = np.full((H, W, 3), 255, np.uint8)
    cv2.rectangle(img, (0, 0), (W, 60), (40, 40, 40), -1)
    cv2.putText(img, "Example Corp", (20, 42), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255,) * 3, 2)
    for i, line in enumerate(lines):
        cv2.putText(
            img, line, (40, 110 + 34 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (30,) * 3, 1, cv2.LINE_AA
        )
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def website(**settings) -> DetectorConfig:
    return DetectorConfig.for_stream(AnalysisSettings(**settings), "website", 300)


def test_a_changed_line_of_text_is_a_change_at_the_default_trigger():
    edited = LINES[:4] + ["Last deploy: 2026-11-24 09:12 UTC (rollback)"] + LINES[5:]
    (result,) = run(website(), page(LINES), page(edited))
    assert website().trigger == 0.001
    assert result.changed and result.note == "change"
    assert result.score >= 0.001 and result.changed_fraction == result.score
    # One box around the changed part of that line (row 5, y = 110 + 4 * 34 px).
    x, y, w, h = result.boxes[0]
    assert y * H <= 246 <= (y + h) * H and h < 0.1
    assert len(result.boxes) <= 3


def test_an_identical_page_is_not_a_change():
    (same, requantised) = run(website(), page(LINES), page(LINES), page(LINES, quality=70))
    assert not same.changed and same.score == 0 and same.note == "quiet"
    assert not requantised.changed


def test_a_region_of_interest_limits_a_website_to_one_panel():
    edited = LINES[:4] + ["Last deploy: 2026-11-24 09:12 UTC (rollback)"] + LINES[5:]
    top = rect((0.0, 0.0, 1.0, 0.25))  # header and the first lines only
    (result,) = run(website(region=top), page(LINES), page(edited))
    assert not result.changed and result.score == 0
    panel = rect((0.0, 0.3, 1.0, 0.1))  # the line that changes
    (result,) = run(website(region=panel), page(LINES), page(edited))
    assert result.changed and result.score > 0.01  # a share of the panel, not of the page


# --- the RTSP test server: real video ------------------------------------------------------------


def read_frames(url: str, count: int, media_root) -> list[bytes]:
    """`count` JPEGs at 2 frames a second from the reader that short-interval RTSP streams use."""
    from glimpser.capture.readers import reader_command
    from glimpser.media.imaging import split_jpegs
    from glimpser.sources.base import CaptureContext
    from glimpser.sources.schemas import parse_config

    ctx = CaptureContext(
        max_jpeg_bytes=2_000_000,
        allow_loopback=True,
        deny_cidrs=(),
        media_dir=media_root,
        chromium="/usr/bin/chromium",
    )
    command = reader_command(parse_config({"kind": "rtsp", "url": url}), ctx, fps=2)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        stdout = proc.stdout
        frames = []
        for jpeg in split_jpegs(iter(lambda: stdout.read1(65536), b"")):
            frames.append(jpeg)
            if len(frames) == count:
                break
        return frames
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_the_moving_test_mount_changes_and_the_still_mount_does_not(rtsp, media_root):
    config = DetectorConfig.for_stream(AnalysisSettings(), "rtsp", 0.5)
    moving = run(config, *read_frames(f"{rtsp.url}/test", 6, media_root))
    still = run(config, *read_frames(f"{rtsp.url}/still", 6, media_root))
    assert sum(r.changed for r in moving) >= 3, moving
    assert all(r.boxes for r in moving if r.changed)
    # /still is SMPTE bars with a patch of snow (per-pixel noise) in a corner: no motion.
    assert not any(r.changed for r in still), still


# --- issue 10: no false events, boxes where something is now ------------------------------------


def washed_top(img: np.ndarray) -> np.ndarray:
    """What a decoder joining a live stream mid-way showed on the RTSP test camera: the top
    half of the picture washed out towards grey."""
    out = img.copy()
    top = out[: img.shape[0] // 2]
    out[: img.shape[0] // 2] = top * 0.45 + 128 * 0.55
    return out


@pytest.mark.parametrize("damaged_at", [0, 1])
def test_a_damaged_picture_at_start_never_becomes_the_background(damaged_at):
    base = scene(seed=21)
    frames = [encode(base, seed=i) for i in range(8)]
    frames[damaged_at] = encode(washed_top(base), seed=99)
    results, state = [], None
    for frame in frames:
        result, state = detect(frame, state, camera())
        results.append(result)
    assert not any(r.changed for r in results), results
    assert results[-1].note == "quiet"
    # Once settled, the background is the whole picture: a damaged one now is real change.
    late, _ = detect(encode(washed_top(base), seed=100), state, camera())
    assert late.changed


def test_motion_at_start_is_reported_at_once():
    base = scene(seed=22)
    (moved,) = run(camera(), encode(base, seed=1), encode(with_square(base, SQUARE), seed=2))
    assert moved.changed and overlaps(moved.boxes[0], SQUARE)


@pytest.mark.parametrize("interval", [1, 5, 60])
def test_boxes_show_where_the_object_is_now_not_where_it_was(interval):
    """A square crossing the picture, one snapshot per step: the running average keeps a
    fading trace of every earlier position; no box may sit there."""
    config = DetectorConfig.for_stream(AnalysisSettings(), "rtsp", interval)
    base = scene(seed=23)
    size = (0.06, 0.1)
    positions = [(0.05 + 0.1 * i, 0.45, *size) for i in range(9)]
    _, state = detect(encode(base, seed=0), None, config)
    _, state = detect(encode(base, seed=1), state, config)  # settled on the empty scene
    for i, position in enumerate(positions):
        result, state = detect(encode(with_square(base, position), seed=10 + i), state, config)
        assert result.changed and result.boxes, (i, result)
        assert any(overlaps(box, position) for box in result.boxes), (i, result.boxes)
        for before in positions[max(0, i - 2) : i]:  # one and two steps ago
            assert not any(overlaps(box, before) for box in result.boxes), (i, result.boxes)


@pytest.mark.slow
def test_boxes_sit_on_the_moving_ball_not_on_the_empty_background(rtsp, media_root):
    """Issue 10: on the /test mount (a white ball on black) most boxes sat on empty black areas:
    where the ball was in the first frame (the seed of the background) and where it passed."""
    frames = read_frames(f"{rtsp.url}/test", 10, media_root)
    results = run(DetectorConfig.for_stream(AnalysisSettings(), "rtsp", 1), *frames)
    # The background is seeded with the ball in it: while the ball still overlaps that first
    # place (two comparisons at 2 fps), nothing tells where it came from and where it went.
    # After that every box must hold part of the ball (the old code kept a box on the seed's
    # place for ~30 s, and on the trail the ball left in the running average).
    for frame, result in list(zip(frames[1:], results, strict=True))[2:]:
        assert result.changed and result.boxes, result
        picture = cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_GRAYSCALE)
        h, w = picture.shape
        for x, y, bw, bh in result.boxes:
            inside = picture[int(y * h) : int((y + bh) * h) + 1, int(x * w) : int((x + bw) * w) + 1]
            assert (inside > 200).mean() > 0.05, (result.boxes, (x, y, bw, bh))
