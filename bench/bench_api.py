"""JSON API benchmarks (issue 13), written to docs/benchmarks.md between the api markers.

Requests per second through gunicorn as `glimpser web` runs it, with an API key
(`Authorization: Bearer glp_…`), measured with wrk beside `/healthz` (the gunicorn + Flask floor:
no key, no query) in the same run:
- `GET /api/v1/events?limit=100`: a 100-event page of the few hundred events seeded;
- `GET /api/v1/streams/{id}/image`: the stream's latest picture, sent, and revalidated (304);
- `GET /api/v1/streams?limit=100`: the stream list, for comparison.
An endpoint this build does not have yet (404 or 405 to the probe) is skipped and reported as
not measured, never estimated.

Run: `make bench` (or `.venv/bin/python bench/bench_api.py [--quick]`).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_web import Gunicorn, env_for, seed, start_redis, wrk  # noqa: E402
from results import markers, write_section  # noqa: E402

from tests.helpers import free_port  # noqa: E402

MARK_BEGIN, MARK_END = markers("api")
EVENTS = 400
STREAMS = 5
# The per-key limit (600 a minute by default) would answer most of a wrk run with 429s: the
# bench measures the views, so its server allows far more.
RATE_LIMIT = "10000000/minute"


def seed_api(env: dict[str, str]) -> str:
    """Streams with snapshots (bench_web.seed, with the admin), EVENTS events, and a read key of
    the admin; returns the key."""
    from glimpser import db, times
    from glimpser.auth import api_keys
    from glimpser.models import Event, Stream, User

    seed(env, 1, STREAMS, 3)
    db.init_database(env_database_url(env))
    now = times.utcnow()
    kinds = ("motion", "change", "ai", "capture_failed")
    severities = ("info", "low", "medium", "high")
    with db.database.connection_context():
        streams = list(Stream.select().order_by(Stream.id))
        Event.insert_many(
            [
                {
                    "stream": streams[i % len(streams)].id,
                    "kind": kinds[i % len(kinds)],
                    "severity": severities[i % len(severities)],
                    "title": f"Something moved near the gate ({i})",
                    "description": "A person walks from the left to the door and stops.",
                    "data": {"score": (i % 97) / 100},
                    "acknowledged": i % 3 == 0,
                    "created_at": now - timedelta(seconds=30 * i),
                }
                for i in range(EVENTS)
            ]
        ).execute()
        admin = User.get(User.username == "admin")
        token = api_keys.create_key(admin, ("read",), name="bench").token
    db.database.close()
    return token


def env_database_url(env: dict[str, str]) -> str:
    from glimpser.config import load_settings

    return load_settings(env).database_url


def probe(session: requests.Session, url: str, check) -> tuple[str | None, requests.Response]:  # noqa: ANN001
    """None when the endpoint answers as expected, else why it is skipped."""
    response = session.get(url)
    if response.status_code in (404, 405):
        return f"not in this build (HTTP {response.status_code})", response
    problem = check(response)
    return problem, response


def events_page(response: requests.Response) -> str | None:
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    items = response.json().get("items", [])
    return None if len(items) == 100 else f"a page of {len(items)} events, not 100"


def streams_page(response: requests.Response) -> str | None:
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    items = response.json().get("items", [])
    return None if len(items) == STREAMS else f"{len(items)} streams, not {STREAMS}"


def picture(response: requests.Response) -> str | None:
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if not response.headers.get("Content-Type", "").startswith("image/"):
        return f"answered {response.headers.get('Content-Type')}, not an image"
    return None if response.headers.get("ETag") else "no ETag to revalidate with"


def report(results: dict, skipped: dict, picture_bytes: int | None, seconds: int, load) -> str:  # noqa: ANN001
    floor = results["healthz"]["rate"]
    labels = {
        "healthz": "`/healthz`, no key (the floor)",
        "streams": f"`GET /api/v1/streams?limit=100` ({STREAMS} streams)",
        "events": f"`GET /api/v1/events?limit=100` (100 of {EVENTS} events)",
        "image": "`GET /api/v1/streams/1/image`, latest picture sent",
        "image_304": "`GET /api/v1/streams/1/image`, `If-None-Match` (304)",
    }
    lines = [
        MARK_BEGIN,
        "## JSON API (issue 13)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        "by `bench/bench_api.py`: gunicorn as `glimpser web` runs it (SQLite, request log on), "
        f"wrk with 16 connections for {seconds} s per row, every API request with a `read` key "
        "in `Authorization: Bearer` (each one looks its key up, and the per-key rate limit "
        "counts it in Redis). That limit is raised for the run, so the views are measured, not "
        "the 429s.",
        "",
        "| request | requests/s | latency p50 | p99 | non-2xx | share of `/healthz` |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in labels.items():
        if key in results:
            r = results[key]
            lines.append(
                f"| {label} | {r['rate']:.0f} | {r['p50']:.2f} ms | {r['p99']:.2f} ms | "
                f"{r['errors']} | {r['rate'] / floor * 100:.0f} % |"
            )
        else:
            lines.append(f"| {label} | not measured: {skipped[key]} | | | | |")
    lines.append("")
    if skipped:
        lines.append(
            "A row not measured is an endpoint the server this ran against did not have (it "
            "answered the probe with 404 or 405, or not as the API documents); no number is "
            "estimated for it. Rerun `bench/bench_api.py` once it exists."
        )
        lines.append("")
    if picture_bytes:
        lines.append(f"The latest picture is a {picture_bytes / 1024:.0f} KiB 1280×720 JPEG.")
        lines.append("")
    lines += [
        "wrk, gunicorn and Redis share the same cores; compare rows of one run, never across "
        f"machines. Load average when the run started: {load[0]:.2f}.",
        MARK_END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter wrk runs")
    args = parser.parse_args()
    seconds = 5 if args.quick else 15
    load = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="g-bench-api-"))
    redis_proc, redis_url = start_redis(tmp)
    env = env_for(tmp / "data", redis_url, free_port(), GLIMPSER_API_RATE_LIMIT=RATE_LIMIT)
    server = None
    results: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    picture_bytes = None
    try:
        token = seed_api(env)
        server = Gunicorn(env, tmp / "gunicorn.log")
        key = f"Authorization: Bearer {token}"
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        api = server.url + "/api/v1"
        results["healthz"] = wrk(server.url + "/healthz", seconds, None)
        cases = {
            "streams": (f"{api}/streams?limit=100", streams_page),
            "events": (f"{api}/events?limit=100", events_page),
            "image": (f"{api}/streams/1/image", picture),
        }
        for name, (url, check) in cases.items():
            why, response = probe(session, url, check)
            if why is not None:
                skipped[name] = why
                if name == "image":
                    skipped["image_304"] = why
                print(f"skipping {url}: {why}")
                continue
            results[name] = wrk(url, seconds, None, key)
            if name == "image":
                picture_bytes = len(response.content)
                etag = response.headers["ETag"]
                revalidated = session.get(url, headers={"If-None-Match": etag})
                if revalidated.status_code == 304:
                    results["image_304"] = wrk(url, seconds, None, key, f"If-None-Match: {etag}")
                else:
                    skipped["image_304"] = f"HTTP {revalidated.status_code} to If-None-Match"
    finally:
        if server is not None:
            server.stop()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    section = report(results, skipped, picture_bytes, seconds, load)
    write_section("api", section)
    print(section)


if __name__ == "__main__":
    main()
