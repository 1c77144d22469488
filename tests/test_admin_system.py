"""Admin → System with the test client, against real Redis, RQ, SQLite and PostgreSQL: queue
depth and age, worker rows from a real `glimpser worker`, the readers' heartbeat from a real
ReaderHub, storage numbers from real snapshots, failed jobs (a real failure, retried; delete;
retry all; secrets redacted), the access policy and bad input, and the admin home."""

from __future__ import annotations

import html as html_lib
import io
import re
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from PIL import Image
from rq.job import Job
from rq.results import Result

from glimpser import queues, system_status, times
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.media import timelapse
from glimpser.models import AuditLog, Stream, Timelapse, User
from tests.conftest import run_queued_jobs, stop_process
from tests.helpers import (
    PASSWORD,
    ROOT,
    add_snapshot,
    add_stream,
    csrf_from,
    jobs_configured,
    login,
    paused_stream,
    setup_admin,
)
from tests.test_storage import aws_env, moto_endpoint, s3_bucket  # noqa: F401 - fixtures

PAGE = "/admin/system/"


def picture(shade: int, size: tuple[int, int] = (64, 48)) -> bytes:
    data = io.BytesIO()
    Image.new("RGB", size, (shade, 255 - shade, 90)).save(data, "JPEG")
    return data.getvalue()


@pytest.fixture
def admin(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def text(response) -> str:  # noqa: ANN001
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def post(client, url: str, **kwargs):  # noqa: ANN001
    token = csrf_from(client.get(PAGE).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token}, **kwargs)


def failed_ids(redis_client, queue: str = "maintenance") -> list[str]:
    return queues.get_queue(queue, redis_client).failed_job_registry.get_job_ids()


def add_failed(redis_client, func: str, args: tuple, exc_string: str, queue: str = "maintenance"):
    """A job of a real entry point, recorded as failed through RQ's own API (result and
    registry, as a worker records a failure)."""
    job = Job.create(func, args=args, connection=redis_client, origin=queue, description=func)
    job.save()
    Result.create_failure(job, 3600, exc_string)
    queues.get_queue(queue, redis_client).failed_job_registry.add(job, exc_string=exc_string)
    return job


def queued_timelapse(app, redis_client):  # noqa: ANN001
    """A paused stream with five snapshots and a timelapse of them, queued for building."""
    with database.connection_context():
        stream = paused_stream("Garden")
        alice = User.get(User.username == "alice")
    start = times.utcnow() - timedelta(minutes=5)
    for i in range(5):
        add_snapshot(app, stream, picture(i * 40), seconds_ago=200 - i * 10)
    with database.connection_context():
        lapse = timelapse.request_build(stream, alice, start, times.utcnow(), 10, redis_client)
    return stream, lapse


def lock_database(settings) -> sqlite3.Connection:  # noqa: ANN001
    """Another process's write lock on the SQLite database (writers wait, then give up)."""
    holder = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), timeout=1)
    holder.isolation_level = None
    holder.execute("BEGIN IMMEDIATE")
    return holder


# --- access ------------------------------------------------------------------------------------


def test_viewers_get_403_and_anonymous_callers_the_sign_in_page(app, admin):
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    token = csrf_from(viewer.get("/").get_data(as_text=True))
    for url in (PAGE, PAGE + "live", PAGE + "storage"):
        assert viewer.get(url).status_code == 403
        assert app.test_client().get(url).status_code == 302
    for url in (PAGE + "jobs/x/retry", PAGE + "jobs/x/delete", PAGE + "jobs/retry-all"):
        assert viewer.post(url, headers={"X-CSRFToken": token}).status_code == 403


def test_bad_job_ids_missing_csrf_and_wrong_methods_are_4xx(admin, redis_client):
    job = add_failed(redis_client, "glimpser.jobs.build_timelapse", (1,), "Traceback\nValueError")
    assert admin.post(f"{PAGE}jobs/{job.id}/retry").status_code == 400  # no CSRF token
    assert admin.post(f"{PAGE}jobs/{job.id}/delete").status_code == 400
    assert admin.post(f"{PAGE}jobs/retry-all").status_code == 400
    assert failed_ids(redis_client) == [job.id]  # nothing happened
    for bad in ("no-such-job", str(2**63), "٣", "x" * 300, "a%00b", "..", "a b"):
        for action in ("retry", "delete"):
            assert post(admin, f"{PAGE}jobs/{bad}/{action}").status_code == 404, (bad, action)
    assert admin.get(f"{PAGE}jobs/{job.id}/retry").status_code == 405
    assert failed_ids(redis_client) == [job.id]
    with database.connection_context():
        assert not AuditLog.select().where(AuditLog.action.startswith("job.")).exists()


def test_readyz_details_only_for_admins_not_viewers(app, admin):
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    assert viewer.get("/readyz").get_json() == {"status": "ready"}
    assert app.test_client().get("/readyz").get_json() == {"status": "ready"}
    assert admin.get("/readyz").get_json() == {"status": "ready", "database": "ok", "redis": "ok"}


# --- processes ---------------------------------------------------------------------------------


def test_queue_depth_and_the_age_of_the_first_job_in_line(admin, redis_client):
    queues.enqueue_timelapse_build(redis_client, 12345, 60)
    queues.enqueue_timelapse_build(redis_client, 12346, 60)
    time.sleep(2.1)
    html = text(admin.get(PAGE + "live"))
    row = re.search(r'<tr data-queue="maintenance">(.*?)</tr>', html, re.S).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row, re.S)
    assert cells[1] == "2"  # waiting
    waited = int(cells[2].split()[0])
    assert waited >= 2 and cells[2].endswith(" s")
    empty = re.search(r'<tr data-queue="capture">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r"<td>(.*?)</td>", empty, re.S)[1:3] == ["0", "—"]
    # No worker, no scheduler, no readers: said plainly.
    assert "No worker is running" in html
    assert "No scheduler is running" in html
    assert "No readers process is running" in html
    home = text(admin.get("/admin/"))
    assert "Needs attention" in home and "no worker is running" in home


@pytest.mark.slow
def test_a_real_worker_and_its_current_job_are_listed(app, admin, redis_client):
    settings = app.extensions["glimpser.settings"]
    env = {
        "GLIMPSER_DATA_DIR": str(settings.data_dir),
        "GLIMPSER_REDIS_URL": settings.redis_url,
        "GLIMPSER_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "GLIMPSER_LOG_LEVEL": "WARNING",
        "PATH": "/usr/bin:/bin",
    }
    stream, lapse = queued_timelapse(app, redis_client)
    # The build waits for the database's write lock, held here: the worker is busy with it.
    holder = lock_database(settings)
    worker = subprocess.Popen(
        [sys.executable, "-m", "glimpser.cli", "worker", "--queues", "capture,maintenance"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        row = None
        threads: list[str] = []
        while time.monotonic() < deadline and (row is None or len(threads) < 8):
            html = text(admin.get(PAGE + "live"))
            # One row per RQ worker of the process (its PID), under its host.
            rows = re.findall(rf'<tr data-pid="{worker.pid}">(.*?)</tr>', html, re.S)
            row = next((r for r in rows if "timelapse" in r), None)
            threads = [r for r in rows if 'data-label="Queues">capture</td>' in r]
            time.sleep(0.2)
        assert row, html
        # The main thread serves maintenance; GLIMPSER_CAPTURE_THREADS (8) threads, each an RQ
        # worker of its own, serve capture (glimpser/workers.py): one row each.
        assert 'data-label="Queues">maintenance</td>' in row
        assert len(threads) == 8, html
        assert f'href="/streams/{stream.id}/timelapses/{lapse.id}">timelapse {lapse.id}' in row
        assert re.search(r'"Running for">\d+ s</td>', row), row
        assert re.search(r'"RQ heartbeat">\d+ s ago</td>', row), row
        assert "No worker is running" not in html
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        stop_process(worker)
    deadline = time.monotonic() + 30
    while f'data-pid="{worker.pid}"' in text(admin.get(PAGE + "live")):
        assert time.monotonic() < deadline, "a stopped worker stays listed"
        time.sleep(0.3)


def test_cron_runs_are_recorded_with_their_outcome(app, admin, redis_client):
    from glimpser import jobs

    with jobs_configured(app):
        jobs.prune_history()
    html = text(admin.get(PAGE + "live"))
    row = re.search(r"<tr><td>prune_history</td>(.*?)</tr>", html, re.S)
    assert row, html
    assert "<time datetime=" in row.group(1) and '<span class="good">ok</span>' in row.group(1)
    assert "not scheduled" in row.group(1)  # no scheduler has registered it (none runs)


# --- storage -----------------------------------------------------------------------------------


def test_storage_per_stream_from_real_snapshots_biggest_first(app_factory, database_url):
    app = app_factory(database_url, GLIMPSER_RETENTION_MAX_COUNT="2")
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    small = add_stream("Small")
    big = add_stream("Big")
    sizes = {"Small": 0, "Big": 0}
    for i in range(2):
        sizes["Small"] += add_snapshot(app, small, picture(i * 40), seconds_ago=100 - i).bytes
    for i in range(4):
        snap = add_snapshot(app, big, picture(i * 30, (320, 240)), seconds_ago=100 - i)
        sizes["Big"] += snap.bytes
    html = text(admin.get(PAGE + "storage"))
    rows = re.findall(
        r"<tr><td><a href=\"/streams/\d+\">(\w+)</a></td><td>([\d,]+)</td>"
        r"<td data-bytes=\"(\d+)\">",
        html,
    )
    assert rows == [("Big", "4", str(sizes["Big"])), ("Small", "2", str(sizes["Small"]))]
    assert "Free disk" in html and "free of" in html
    # Two of Big's four snapshots are beyond the newest 2.
    assert "count limit: 2 (" in html, re.search(
        r"<ul id=\"retention-next\">.*?</ul>", html, re.S
    ).group(0)
    assert re.search(r"Database</th><td>[\d.]+ (kB|MB|Bytes)", html)
    assert re.search(r"Redis memory</th><td>[\d.]+ (kB|MB)", html)
    for name in ("Glimpser", "Python", "ffmpeg", "Chromium", "yt-dlp"):
        assert f'<th scope="row">{name}</th>' in html
    assert "ffmpeg version" in html


def test_bucket_usage_on_s3_is_the_orphan_sweeps_count(app_factory, request):
    from glimpser import jobs

    # S3 is moto's real HTTP server (the fixtures of tests/test_storage.py).
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")  # with AWS credentials for moto

    app = app_factory(
        GLIMPSER_STORAGE="s3",
        GLIMPSER_S3_BUCKET=bucket,
        GLIMPSER_S3_ENDPOINT_URL=endpoint,
        GLIMPSER_S3_REGION="us-east-1",
    )
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    stream = add_stream("Garden")
    size = sum(add_snapshot(app, stream, picture(i * 50), 10 - i).bytes for i in range(3))
    html = text(admin.get(PAGE + "storage"))
    assert "not counted yet" in html and f"s3://{bucket}" in html
    assert "Free disk" not in html
    with jobs_configured(app):
        jobs.sweep_orphans()
    html = text(admin.get(PAGE + "storage"))
    usage = re.search(r"Bucket usage</th><td>(.*?)</td>", html, re.S).group(1)
    assert usage.startswith(f"3 objects, {size / 1000:.1f} kB (counted ")


# --- failed jobs -------------------------------------------------------------------------------


def test_a_really_failed_job_is_shown_retried_and_succeeds(app, admin, redis_client):
    """A timelapse build fails because the database is locked by another process (SQLite's
    busy timeout runs out); once the lock is gone, "Retry" builds it."""
    stream, lapse = queued_timelapse(app, redis_client)
    holder = lock_database(app.extensions["glimpser.settings"])
    try:
        with jobs_configured(app):
            run_queued_jobs(app, ("maintenance",))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    [job_id] = failed_ids(redis_client)
    html = text(admin.get(PAGE))
    article = re.search(
        rf'<article class="failed-job" id="job-{job_id}">(.*?)</article>', html, re.S
    )
    assert article, html
    body = article.group(1)
    assert "database is locked" in body and "Traceback" in body
    assert f'href="/streams/{stream.id}/timelapses/{lapse.id}"' in body
    assert "1 failed" in html

    response = post(admin, f"{PAGE}jobs/{job_id}/retry")
    assert response.status_code == 302 and response.headers["Location"].endswith("#failed")
    assert failed_ids(redis_client) == []
    assert queues.get_queue("maintenance", redis_client).count == 1
    with jobs_configured(app):
        run_queued_jobs(app, ("maintenance",))
    with database.connection_context():
        assert Timelapse.get_by_id(lapse.id).status == "done"
        entry = AuditLog.get(AuditLog.action == "job.retry")
    assert entry.target == f"job:{job_id}" and entry.user.username == "alice"
    assert entry.detail == {"queue": "maintenance"}
    assert "No failed jobs." in text(admin.get(PAGE))
    # Retried already: a second retry finds nothing.
    assert post(admin, f"{PAGE}jobs/{job_id}/retry").status_code == 404


def test_delete_and_retry_all(admin, redis_client):
    one = add_failed(redis_client, "glimpser.jobs.build_timelapse", (1,), "Traceback\nE1")
    two = add_failed(redis_client, "glimpser.jobs.build_timelapse", (2,), "Traceback\nE2")
    three = add_failed(
        redis_client, "glimpser.jobs.deliver_notification", (3,), "Traceback\nE3", "notify"
    )
    html = text(admin.get(PAGE))
    assert "timelapse 1 (deleted)" in html and "delivery 3 (deleted)" in html
    assert post(admin, f"{PAGE}jobs/{one.id}/delete").status_code == 302
    assert set(failed_ids(redis_client)) == {two.id}
    assert not redis_client.exists(one.key)  # the job's data went too
    response = post(admin, f"{PAGE}jobs/retry-all", follow_redirects=True)
    assert "2 failed jobs queued again." in response.get_data(as_text=True)
    assert failed_ids(redis_client) == [] and failed_ids(redis_client, "notify") == []
    assert queues.get_queue("maintenance", redis_client).get_job_ids() == [two.id]
    assert queues.get_queue("notify", redis_client).get_job_ids() == [three.id]
    with database.connection_context():
        actions = [(a.action, a.target) for a in AuditLog.select().order_by(AuditLog.id)]
    assert ("job.delete", f"job:{one.id}") in actions
    assert ("job.retry", "jobs:all-failed") in actions
    again = post(admin, f"{PAGE}jobs/retry-all", follow_redirects=True)
    assert "There were no failed jobs to retry." in again.get_data(as_text=True)


def test_secrets_are_redacted_in_tracebacks(app_factory, redis_client):
    app = app_factory(
        GLIMPSER_AI_BASE_URL="http://127.0.0.1:9/v1",
        GLIMPSER_AI_MODEL="m",
        GLIMPSER_AI_API_KEY="sk-the-ai-key-4242",
    )
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    with database.connection_context():
        stream = Stream.create(
            name="Cam",
            kind="rtsp",
            config={
                "kind": "rtsp",
                "url": "rtsp://192.0.2.7/live",
                "username": "cam",
                "password": "cam-pass-9876",
            },
        )
        from glimpser.models import NotificationChannel

        NotificationChannel.create(
            name="Hook",
            kind="webhook",
            config={"kind": "webhook", "url": "https://192.0.2.1/", "secret": "hook-secret-55"},
        )
    trace = (
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in run\n'
        "ConnectionError: rtsp://cam:cam-pass-9876@192.0.2.7/live refused; "
        "key sk-the-ai-key-4242, signed with hook-secret-55, "
        "http://u:url-pass@example.com/?token=tok123 and test-secret-key-0123456789abcdef\n"
    )
    add_failed(redis_client, "glimpser.jobs.capture_stream", (stream.id,), trace, "capture")
    # RQ's default description is the call with its arguments: URLs redacted, kept short.
    config = {"kind": "rtsp", "url": "rtsp://cam:cam-pass-9876@192.0.2.7/live", "x": "y" * 300}
    long = Job.create(
        "glimpser.jobs.test_capture", args=(config, None, ""), connection=redis_client
    )
    long.origin = "capture"
    long.save()
    Result.create_failure(long, 3600, "Traceback\nCaptureError: refused")
    queues.get_queue("capture", redis_client).failed_job_registry.add(long)
    html = text(admin.get(PAGE))
    for secret in (
        "cam-pass-9876",
        "sk-the-ai-key-4242",
        "hook-secret-55",
        "url-pass",
        "tok123",
        "test-secret-key-0123456789abcdef",
    ):
        assert secret not in html, secret
    assert "rtsp://cam:***@192.0.2.7/live" in html
    described = re.search(r"<strong>(glimpser\.jobs\.test_capture\(.*?)</strong>", html).group(1)
    assert "rtsp://cam:***@192.0.2.7/live" in described
    assert len(html_lib.unescape(described)) <= system_status.DESCRIPTION_MAX
    assert f'<a href="/streams/{stream.id}">stream Cam</a>' in html


# --- the admin home ----------------------------------------------------------------------------


def test_the_admin_home_is_an_overview_with_links(admin):
    html = text(admin.get("/admin/"))
    for href in (
        "/admin/rules/",
        "/admin/channels/",
        "/admin/deliveries/",
        "/admin/transfer/",
        "/admin/system/",
    ):
        assert f'href="{href}"' in html
    assert "System status" in html and "Vision AI" in html
    assert "<h3>Queues</h3>" not in html  # the details moved to Admin → System


# --- readers -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_readers_heartbeat_lists_the_streams_a_real_hub_reads(capture_app, rtsp):
    import threading

    from glimpser.capture.readers import ReaderHub

    admin = capture_app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    with database.connection_context():
        stream = Stream.create(
            name="Driveway",
            kind="rtsp",
            interval=2,
            config={
                "kind": "rtsp",
                "url": f"{rtsp.url}/test",
                "transport": "tcp",
                "timeout": 10,
                "username": "",
                "password": "",
            },
            next_due_at=times.utcnow(),
        )
    assert "No readers process is running" in text(admin.get(PAGE + "live"))
    hub = ReaderHub(
        capture_app.extensions["glimpser.settings"], capture_app.extensions["glimpser.redis"]
    )
    thread = threading.Thread(target=hub.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        html = ""
        while time.monotonic() < deadline:
            html = text(admin.get(PAGE + "live"))
            if '<span class="good">reading</span>' in html:
                break
            time.sleep(0.3)
        table = re.search(r'<table class="readers">(.*?)</table>', html, re.S)
        assert table, html
        assert f'<a href="/streams/{stream.id}">Driveway</a></td><td>snapshots</td>' in table.group(
            1
        )
        assert '<span class="good">reading</span>' in table.group(1)
        assert "No readers process is running" not in html
    finally:
        hub.stopping = True
        thread.join(timeout=30)
    assert "No readers process is running" in text(admin.get(PAGE + "live"))
