"""In a real browser against gunicorn and a real `glimpser worker`: a timelapse build fails for
a real reason (another process holds the SQLite database's write lock longer than the busy
timeout), Admin → System shows the failure with its traceback, and once the lock is gone the
"Retry" button queues it again and the build succeeds."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from glimpser import times
from glimpser.config import load_settings
from glimpser.db import database, init_database
from glimpser.media import timelapse
from glimpser.media.snapshots import save_snapshot
from glimpser.media.storage import LocalStorage
from glimpser.models import Timelapse, User
from glimpser.queues import connect_redis, get_queue
from glimpser.sources.base import Frame
from tests.conftest import stop_process
from tests.helpers import ROOT, first_run_in_browser, paused_stream

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def queue_a_timelapse(settings, connection) -> tuple[int, int]:  # noqa: ANN001
    """A paused stream with ten snapshots, and the build of their timelapse queued."""
    storage = LocalStorage(settings.snapshot_dir)
    start = times.utcnow() - timedelta(minutes=10)
    with database.connection_context():
        stream = paused_stream("Garden")
        for i in range(10):
            data = io.BytesIO()
            Image.new("RGB", (160, 120), (i * 20, 255 - i * 20, 90)).save(data, "JPEG")
            frame = Frame(jpeg=data.getvalue(), width=160, height=120)
            at = start + timedelta(seconds=10 * i)
            save_snapshot(stream, frame, at, storage, store_identical=True)
        alice = User.get(User.username == "alice")
        lapse = timelapse.request_build(stream, alice, start, times.utcnow(), 10, connection)
    return stream.id, lapse.id


def wait_until(check, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_a_failed_job_is_shown_and_retried_from_the_page(live_server, page: Page):
    first_run_in_browser(page, live_server.url)
    settings = load_settings(live_server.env)
    init_database(settings.database_url)
    connection = connect_redis(settings.redis_url)
    failed = get_queue("maintenance", connection).failed_job_registry
    stream_id, lapse_id = queue_a_timelapse(settings, connection)

    # Another process holds the write lock: the build cannot mark itself running and fails.
    holder = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), timeout=1)
    holder.isolation_level = None
    holder.execute("BEGIN IMMEDIATE")
    worker = subprocess.Popen(
        [sys.executable, "-m", "glimpser.cli", "worker", "--queues", "maintenance"],
        env=live_server.env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: failed.count == 1, 90, "the build failed")
        holder.execute("ROLLBACK")
        holder.close()
        holder = None

        page.goto(live_server.url + "/admin/system/")
        job = page.locator("article.failed-job")
        expect(job).to_have_count(1)
        expect(job).to_contain_text("database is locked")
        expect(job.get_by_role("link", name=f"timelapse {lapse_id}")).to_have_attribute(
            "href", f"/streams/{stream_id}/timelapses/{lapse_id}"
        )
        trace = job.locator("pre.traceback")
        expect(trace).to_be_hidden()
        job.get_by_text("Traceback (secrets masked)").click()
        expect(trace).to_be_visible()
        expect(trace).to_contain_text("OperationalError")
        expect(page.locator("#queues tr[data-queue=maintenance] td").nth(5)).to_have_text("1")

        job.get_by_role("button", name="Retry").click()
        expect(page.get_by_role("status")).to_contain_text("is queued again on maintenance")

        def built() -> bool:
            with database.connection_context():
                return Timelapse.get_by_id(lapse_id).status == "done"

        wait_until(built, 90, "the retried build succeeded")
        page.reload()
        expect(page.locator("#failed")).to_contain_text("No failed jobs.")
        expect(page.locator("#queues tr[data-queue=maintenance] td").nth(5)).to_have_text("0")
    finally:
        if holder is not None:
            holder.close()
        stop_process(worker)
