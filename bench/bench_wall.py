"""The camera wall (issue 12), written to docs/benchmarks.md between the wall markers.

With 100 and 500 streams (real rows and snapshot files, one failing in ten), through the Flask
test client in this process (server time, no network): the wall's first render (the whole
page), the grid re-rendered after a change (what a poll costs when something changed), the
unchanged poll (an empty 204), and the page's weight in bytes (HTML, and the thumbnails it
shows, each downloaded once). The floor, measured in the same run, is `/healthz` through the
same signed-in client: a request through every middleware with nothing rendered.

Run: `make bench` (or `.venv/bin/python bench/bench_wall.py [--quick]`).
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_web import PASSWORD, env_for, seed, start_redis  # noqa: E402
from results import markers, write_section  # noqa: E402

from tests.helpers import csrf_from, free_port  # noqa: E402

MARK_BEGIN, MARK_END = markers("wall")
HTMX = {"HX-Request": "true"}


def timed(client, path: str, headers: dict | None = None) -> tuple[float, object]:  # noqa: ANN001
    start = time.perf_counter()
    response = client.get(path, headers=headers or {})
    return (time.perf_counter() - start) * 1000, response


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def measure(client, rounds: int) -> dict[str, object]:  # noqa: ANN001
    page = client.get("/")
    html = page.get_data(as_text=True)
    poll = re.search(r'id="dashboard-grid"[^>]*hx-get="([^"]+)"', html).group(1)
    poll = poll.replace("&amp;", "&")
    changed = re.sub(r"v=[0-9a-f]+", "v=0", poll)  # a stale version: the grid is re-rendered
    thumbs = sorted(set(re.findall(r'src="(/streams/\d+/snapshots/\d+/thumb\.jpg)"', html)))
    thumb_bytes = sum(len(client.get(src).data) for src in thumbs)
    times: dict[str, list[float]] = {"floor": [], "page": [], "grid": [], "poll": []}
    for _ in range(rounds):
        for name, path, headers, status in (
            ("floor", "/healthz", None, 200),
            ("page", "/", None, 200),
            ("grid", changed, HTMX, 200),
            ("poll", poll, HTMX, 204),
        ):
            ms, response = timed(client, path, headers)
            assert response.status_code == status, (name, response.status_code)
            times[name].append(ms)
    grid = client.get(changed, headers=HTMX).data
    return {
        "times": times,
        "page_bytes": len(page.data),
        "grid_bytes": len(grid),
        "thumbs": len(thumbs),
        "thumb_bytes": thumb_bytes,
    }


def row(label: str, values: list[float], floor: float) -> str:
    p50 = statistics.median(values)
    return f"| {label} | {p50:.1f} | {percentile(values, 0.95):.1f} | {p50 / floor:.1f}× |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds = 5 if args.quick else 30
    work = Path(tempfile.mkdtemp(prefix="g-bench-wall-"))
    redis_proc, redis_url = start_redis(work)
    sections = []
    try:
        env = env_for(work / "data", redis_url, free_port(), GLIMPSER_LOG_LEVEL="WARNING")
        from glimpser import create_app
        from glimpser.config import load_settings

        seeded = 0
        for count in (100, 500):
            seed(env, seeded + 1, count - seeded, snaps_per_stream=1)
            seeded = count
            app = create_app(load_settings(env))
            client = app.test_client()
            token = csrf_from(client.get("/login").get_data(as_text=True))
            client.post(
                "/login", data={"csrf_token": token, "username": "admin", "password": PASSWORD}
            )
            result = measure(client, rounds)
            times = result["times"]
            floor = statistics.median(times["floor"])
            sections.append(
                f"**{count} streams** ({rounds} rounds)\n\n"
                "| request | p50 ms | p95 ms | p50 / floor |\n|---|---:|---:|---:|\n"
                + "\n".join(
                    [
                        row("floor: `/healthz`", times["floor"], floor),
                        row("wall, first render (whole page)", times["page"], floor),
                        row("grid after a change (htmx, 200)", times["grid"], floor),
                        row("unchanged poll (htmx, 204)", times["poll"], floor),
                    ]
                )
                + f"\n\nPage weight: the page {result['page_bytes']:,} bytes of HTML, the grid "
                f"fragment {result['grid_bytes']:,} bytes, the unchanged poll 0 bytes; "
                f"{result['thumbs']} thumbnails, {result['thumb_bytes']:,} bytes in all "
                "(each downloaded once: a thumbnail's URL names its snapshot and never changes)."
            )
            print(sections[-1], "\n")
    finally:
        redis_proc.terminate()
        redis_proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    machine = f"{platform.machine()}, Python {platform.python_version()}"
    section = (
        f"{MARK_BEGIN}\n## Camera wall (issue 12)\n\n"
        f"Measured {date.today().isoformat()} ({machine}) by `bench/bench_wall.py`: server time "
        "through the Flask test client (SQLite, no network), real rows and snapshot files, one "
        "stream in ten failing. The floor is `/healthz` through the same signed-in client, "
        "measured in the same run. The unchanged poll is what an open wall costs every 5 s.\n\n"
        + "\n\n".join(sections)
        + f"\n{MARK_END}"
    )
    write_section("wall", section)


if __name__ == "__main__":
    main()
