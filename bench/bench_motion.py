"""Motion and change detection benchmark (issue 5), written to docs/benchmarks.md.

Per snapshot at 640x360, 1280x720 and 1920x1080 JPEG input, beside the floor measured in
the same run (decoding the JPEG alone at full size in colour, cv2.imdecode IMREAD_COLOR):
- our decode: glimpser.analysis.motion.small_grey (reduced greyscale decode by libjpeg's DCT
  scaling, then INTER_AREA to the small size);
- our analysis: glimpser.analysis.motion.analyse (everything after decoding, state included);
- the total: glimpser.analysis.motion.detect, end to end.

Frames: a synthetic camera scene drawn with numpy/OpenCV (smooth multi-scale texture, solid
blocks, a two-tone object crossing the view, fresh sensor noise per frame), JPEG quality 85.
"typical" has the detail of an ordinary outdoor camera; "busy" adds fine texture (foliage,
gravel), which makes the JPEG larger and its entropy decoding, which no decoder can skip,
dearer. Website rows decode a rendered text page in change mode.

CPU time (time.process_time) and wall time per frame, single thread (cv2.setNumThreads(1)),
median of rounds that interleave floor and ours so both see the same machine state.

Run: `make bench` (or `.venv/bin/python bench/bench_motion.py [--quick]`).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import markers, write_section  # noqa: E402

from glimpser.analysis import motion  # noqa: E402
from glimpser.analysis.schemas import AnalysisSettings  # noqa: E402
from tests.helpers import free_port  # noqa: E402

MARK_BEGIN, MARK_END = markers("motion")
SIZES = [(640, 360), (1280, 720), (1920, 1080)]
FRAMES = 24


# --- frames -----------------------------------------------------------------------------------


def scene(width: int, height: int, busy: bool, seed: int = 1) -> np.ndarray:
    """A still camera scene, float32 BGR: texture whose amplitude falls with detail (as in
    photographs), plus solid blocks; `busy` keeps the fine detail strong."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    octaves = 9 if busy else 6
    for octave in range(1, octaves):
        grid_h = min(height, 2 + 2**octave)
        grid_w = min(width, 2 + 2**octave * 16 // 9)
        layer = rng.normal(0, 1, (grid_h, grid_w, 3)).astype(np.float32)
        amplitude = 60 / octave**0.9 if busy else 40 / octave
        img += cv2.resize(layer, (width, height), interpolation=cv2.INTER_CUBIC) * amplitude
    img += 120
    for _ in range(30):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = (
            int(rng.integers(width // 30, width // 6)),
            int(rng.integers(height // 30, height // 6)),
        )
        colour = [float(c) for c in rng.integers(0, 256, 3)]
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
    return img


def camera_frames(width: int, height: int, busy: bool) -> list[bytes]:
    """FRAMES JPEGs of the scene with an object crossing it and fresh sensor noise."""
    base = scene(width, height, busy)
    frames = []
    for i in range(FRAMES):
        rng = np.random.default_rng(100 + i)
        img = base.copy()
        x = int(width * (0.1 + 0.7 * i / FRAMES))
        y, w, h = int(height * 0.5), width // 14, height // 5
        cv2.rectangle(img, (x, y), (x + w, y + h // 2), (230, 230, 230), -1)
        cv2.rectangle(img, (x, y + h // 2), (x + w, y + h), (25, 25, 25), -1)
        img += rng.normal(0, 2.0, (height, width)).astype(np.float32)[..., None]
        pixels = np.clip(img, 0, 255).astype(np.uint8)
        ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        frames.append(data.tobytes())
    return frames


def page_frames(width: int, height: int) -> list[bytes]:
    """A text page (a status dashboard) whose numbers change from frame to frame."""
    frames = []
    for i in range(FRAMES):
        img = np.full((height, width, 3), 255, np.uint8)
        cv2.rectangle(img, (0, 0), (width, 60), (40, 40, 40), -1)
        cv2.putText(img, "Example Corp", (20, 42), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255,) * 3, 2)
        for row in range(height // 34 - 3):
            text = f"Row {row}: queue depth {(row * 7 + (i if row % 5 == 0 else 0)) % 97} jobs"
            cv2.putText(
                img,
                text,
                (40 + 640 * (row % 2), 110 + 34 * (row // 2)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.6,
                (30,) * 3,
                1,
                cv2.LINE_AA,
            )
        frames.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    return frames


# --- timing -----------------------------------------------------------------------------------


def per_frame(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of fn(i) for i in 0..n-1."""
    fn(0)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.process_time() - cpu) * 1000 / n, (time.perf_counter() - wall) * 1000 / n


def measure(frames: list[bytes], config: motion.DetectorConfig, n: int, rounds: int) -> dict:
    side = motion.SMALL_SIDE[config.mode]
    buffers = [np.frombuffer(f, np.uint8) for f in frames]
    decoded = [motion.small_grey(f, side) for f in frames]
    state: dict[str, bytes | None] = {"analysis": None, "total": None}
    for grey, source in decoded:  # warm the background up past "first"
        _, state["analysis"] = motion.analyse(grey, source, state["analysis"], config)
        state["total"] = state["analysis"]

    def floor(i: int) -> object:
        return cv2.imdecode(buffers[i % FRAMES], cv2.IMREAD_COLOR)

    def bare(i: int) -> object:
        return cv2.imdecode(buffers[i % FRAMES], cv2.IMREAD_REDUCED_GRAYSCALE_8)

    def decode(i: int) -> object:
        return motion.small_grey(frames[i % FRAMES], side)

    def analysis(i: int) -> object:
        grey, source = decoded[i % FRAMES]
        result, state["analysis"] = motion.analyse(grey, source, state["analysis"], config)
        return result

    def total(i: int) -> object:
        result, state["total"] = motion.detect(frames[i % FRAMES], state["total"], config)
        return result

    parts = {"floor": floor, "bare": bare, "decode": decode, "analysis": analysis, "total": total}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in parts}
    for _ in range(rounds):
        for name, fn in parts.items():
            samples[name].append(per_frame(fn, n))
    out = {
        name: (
            statistics.median(s[0] for s in values),
            statistics.median(s[1] for s in values),
        )
        for name, values in samples.items()
    }
    # What the detector said about the sequence, from a fresh state: a sanity check that the
    # timed work is the real work (the object crossing the view is seen in every frame).
    changed, st = 0, None
    for frame in frames:
        result, st = motion.detect(frame, st, config)
        changed += result.changed
    grey, _ = decoded[0]
    return {
        **out,
        "kb": statistics.mean(len(f) for f in frames) / 1024,
        "small": f"{grey.shape[1]}×{grey.shape[0]}",
        "changed": changed,
        "state_kb": len(st or b"") / 1024,
    }


def redis_round_trip(states: list[bytes], n: int) -> tuple[float, float] | None:
    """(CPU ms, wall ms) of this process for save_state + load_state against a local Redis."""
    if shutil.which("redis-server") is None:
        return None
    import redis

    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)

        def trip(i: int) -> object:
            motion.save_state(client, i % 10, states[i % len(states)])
            return motion.load_state(client, i % 10)

        return per_frame(trip, n)
    finally:
        server.terminate()
        server.wait()


# --- report -----------------------------------------------------------------------------------


def cell(value: tuple[float, float]) -> str:
    return f"{value[0]:.2f} ({value[1]:.2f})"


def report(rows: list[dict], redis_cost: tuple[float, float] | None, n: int, rounds: int) -> str:
    cam_side, page_side = motion.SMALL_SIDE["motion"], motion.SMALL_SIDE["change"]
    lines = [
        MARK_BEGIN,
        "## Motion and change detection (issue 5)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        f"OpenCV {cv2.__version__}, by `bench/bench_motion.py`. Single thread "
        "(`cv2.setNumThreads(1)`); per frame, median of "
        f"{rounds} rounds of {n} frames; **CPU ms (wall ms)**. Floor: `cv2.imdecode(..., "
        "IMREAD_COLOR)` of the same JPEG, measured in the same rounds. Ours: decode = reduced "
        f"greyscale decode (libjpeg DCT scaling) + INTER_AREA to a {cam_side} px short side "
        f"(websites {page_side} px); analysis = everything after decoding (contrast, blur, "
        "background, threshold, dilate, contours, state in/out); total = `detect()` end to end.",
        "",
        "Frames: a synthetic camera scene drawn with numpy/OpenCV (multi-scale texture, solid "
        "blocks, a two-tone object crossing the view, fresh sensor noise per frame), JPEG "
        "quality 85. *typical*: the detail of an ordinary outdoor view; *busy*: strong fine "
        "texture (foliage, gravel), a larger JPEG. *website*: a rendered text page in change "
        "mode. No real camera footage was used: rerun with your own frames if in doubt.",
        "",
        "| input | content | JPEG | small | floor: colour decode | our decode "
        "| our analysis | decode + analysis | `detect()` | ratio to floor | analysis ≤ 1 ms "
        "| ≤ 0.5× floor | bare 1/8 grey decode |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for row in rows:
        ours = (
            row["decode"][0] + row["analysis"][0],
            row["decode"][1] + row["analysis"][1],
        )
        ratio = ours[0] / row["floor"][0]
        row["ratio"] = ratio
        lines.append(
            f"| {row['size']} | {row['content']} | {row['kb']:.0f} KB | {row['small']} | "
            f"{cell(row['floor'])} | {cell(row['decode'])} | {cell(row['analysis'])} | "
            f"{cell(ours)} | {cell(row['total'])} | {ratio:.2f}× | "
            f"{'yes' if row['analysis'][0] <= 1 else 'no'} | {'yes' if ratio <= 0.5 else 'no'} | "
            f"{cell(row['bare'])} = {row['bare'][0] / row['floor'][0]:.2f}× |"
        )
    cams = [r for r in rows if r["content"] != "website"]
    worst_analysis = max(r["analysis"][0] for r in rows)
    met = [f"{r['size']} {r['content']}" for r in cams if r["ratio"] <= 0.5]
    missed = [f"{r['size']} {r['content']} ({r['ratio']:.2f}×)" for r in cams if r["ratio"] > 0.5]
    lines += [
        "",
        f"Goal 1, analysis ≤ 1 ms per frame at any input size: "
        f"**{'met' if worst_analysis <= 1 else 'missed'}** (at most {worst_analysis:.2f} ms "
        "CPU; the analysis works on the small picture, so input size barely matters).",
        "",
        "Goal 2, decode + analysis ≤ 0.5× the full colour decode (cameras): "
        + (f"**met** for {', '.join(met)}" if met else "**met for none**")
        + (f"; **missed** for {', '.join(missed)}." if missed else "."),
        "Why: a reduced decode still has to entropy-decode (Huffman) every coefficient of every "
        "block, colour included; only the inverse DCT, upsampling and colour conversion are "
        "saved. Entropy decoding is a larger share of the work in detailed JPEGs (more bits "
        "per pixel), and `imdecode`'s fixed cost per call weighs most on small ones. The last "
        "column is the floor of any reduced decode: libjpeg's 1/8 greyscale decode alone, "
        "with nothing else; where it is near or above 0.5× the goal cannot be met by "
        "decoding this way. The camera frames of the object crossing the view were flagged "
        f"as changed in {', '.join(str(r['changed']) for r in cams)} of {FRAMES - 1} frames "
        "(the timed work is the real work). The website frames change one or two digits each "
        "time, under the 0.1 % trigger, so they are mostly not flagged: those rows show the "
        "cost. Wall times are noisy on a shared machine; CPU times are the measure.",
    ]
    if redis_cost is not None:
        lines += [
            "",
            f"State in Redis (`save_state` + `load_state`, {rows[0]['state_kb']:.0f} KB per "
            f"camera stream, loopback): {cell(redis_cost)} ms per snapshot in this process "
            "(the Redis server's own CPU not counted).",
        ]
    lines.append(MARK_END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer frames per round")
    args = parser.parse_args()
    n, rounds = (48, 3) if args.quick else (240, 7)
    cv2.setNumThreads(1)
    cam = motion.DetectorConfig.for_stream(AnalysisSettings(), "rtsp", 5)
    site = motion.DetectorConfig.for_stream(AnalysisSettings(), "website", 300)
    rows = []
    for busy in (False, True):
        for width, height in SIZES:
            row = measure(camera_frames(width, height, busy), cam, n, rounds)
            row.update(size=f"{width}×{height}", content="busy" if busy else "typical")
            rows.append(row)
            print(row, flush=True)
    for width, height in SIZES[1:]:
        row = measure(page_frames(width, height), site, n, rounds)
        row.update(size=f"{width}×{height}", content="website")
        rows.append(row)
        print(row, flush=True)
    states = [motion.detect(f, None, cam)[1] for f in camera_frames(640, 360, False)[:4]]
    redis_cost = redis_round_trip(states, n * 4)
    section = report(rows, redis_cost, n, rounds)
    write_section("motion", section)
    print(section)


if __name__ == "__main__":
    main()
