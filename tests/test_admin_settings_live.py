"""Admin → Settings reaches processes that were already running, without a restart.

One stack for the module: gunicorn (two worker processes) and a `glimpser worker` (every
queue), both started before any setting is changed. Each test changes settings of one group
through the admin form over HTTP and proves that a separately running process — the RQ worker,
the other gunicorn worker, the readers process — behaves by the new value. The browser test
does the same from Chromium.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import requests
from playwright.sync_api import Page, expect

from glimpser import runtime_settings as rs
from glimpser import times
from glimpser.capture import live, scheduling
from glimpser.config import Settings, load_settings
from glimpser.db import database, init_database
from glimpser.models import Delivery, Event, NotificationChannel, Snapshot, Stream, Summary
from glimpser.queues import enqueue_delivery, get_queue
from tests.conftest import LiveServer, start_live_server, stop_process
from tests.helpers import PASSWORD, ROOT, csrf_from
from tests.notify.receivers import HttpReceiver
from tests.openai_server import Reply

pytestmark = pytest.mark.slow

DEADLINE = 90  # seconds: generous, the machine may be busy


@dataclass
class Stack:
    server: LiveServer
    worker: subprocess.Popen[bytes]
    http: requests.Session
    redis: redis_lib.Redis
    base: Settings

    @property
    def url(self) -> str:
        return self.server.url


def wait_for(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with database.connection_context():
            result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_url: str) -> Iterator[Stack]:
    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    data = Path(tmp_path_factory.mktemp("settings-stack")) / "data"
    # Plain http to 127.0.0.1: requests would not send a Secure cookie back.
    server = start_live_server(data, redis_url, GLIMPSER_SECURE_COOKIES="0")
    worker = subprocess.Popen(
        [sys.executable, "-m", "glimpser.cli", "worker"],
        env=server.env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    base = load_settings(server.env)
    init_database(base.database_url)
    http = requests.Session()
    page = http.get(f"{server.url}/setup")
    answer = http.post(
        f"{server.url}/setup",
        data={
            "csrf_token": csrf_from(page.text),
            "username": "admin",
            "password": PASSWORD,
            "confirm": PASSWORD,
        },
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text
    yield Stack(server, worker, http, client, base)
    stop_process(worker)
    stop_process(server.proc)
    http.close()


def form_data(stack: Stack, **changes: Any) -> dict[str, str]:
    """The settings form as the page would post it, with `changes` applied."""
    with database.connection_context():
        stored = rs.load_stored()
    values = rs.values_of(rs.overlay(stack.base, stored), stored)
    values.update(changes)
    data: dict[str, str] = {}
    for name, value in values.items():
        if rs.env_set(stack.base, name):
            continue
        if name in rs.SECRET_FIELDS:
            data[name] = str(changes.get(name, ""))
        elif isinstance(value, bool):
            if value:
                data[name] = "1"
        elif isinstance(value, list | tuple):
            data[name] = "\n".join(value)
        else:
            data[name] = str(value)
    return data


def save_settings(stack: Stack, **changes: Any) -> None:
    """Change settings through the admin form (HTTP), as an admin would."""
    page = stack.http.get(f"{stack.url}/admin/settings/")
    data = {"csrf_token": csrf_from(page.text), **form_data(stack, **changes)}
    answer = stack.http.post(f"{stack.url}/admin/settings/", data=data, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    # Each process asks for the settings version when CHECK_SECONDS have passed since it last
    # asked: after that long, its next read of the settings is sure to see this change.
    time.sleep(rs.CHECK_SECONDS + 0.2)


def camera_stream(camera, name: str) -> Stream:
    with database.connection_context():
        return Stream.create(
            name=name,
            kind="http_image",
            interval=3600,
            config={"kind": "http_image", "url": f"{camera.url}/snapshot.jpg", "timeout": 5},
        )


def capture(stack: Stack, stream: Stream) -> None:
    with database.connection_context():
        stream = Stream.get_by_id(stream.id)
        assert scheduling.capture_now(stack.redis, stream)


@pytest.mark.browser
def test_browser_a_setting_changed_in_the_ui_changes_the_running_worker(
    stack: Stack, camera, page: Page
):
    """Loopback sources are refused by default; ticking the box in the browser makes the
    worker (started before) capture the loopback camera, without a restart."""
    stream = camera_stream(camera, "Porch")
    capture(stack, stream)
    wait_for(
        lambda: "loopback" in Stream.get_by_id(stream.id).last_error,
        "the worker to refuse the loopback camera",
    )

    page.goto(f"{stack.url}/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{stack.url}/admin/settings/")
    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
    page.get_by_label("Allow loopback sources").check()
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved")).to_be_visible()
    expect(page.get_by_label("Allow loopback sources")).to_be_checked()

    # The worker re-checks the settings version before the capture: no wait, no restart.
    capture(stack, stream)
    wait_for(
        lambda: Snapshot.select().where(Snapshot.stream == stream.id).exists(),
        "a snapshot of the loopback camera",
    )
    assert stack.worker.poll() is None  # the same worker process did it


def test_capture_a_new_deny_list_reaches_the_running_worker(stack: Stack, camera):
    save_settings(stack, allow_loopback_sources=True, source_deny_cidrs=[])
    stream = camera_stream(camera, "Yard")
    capture(stack, stream)
    wait_for(
        lambda: Snapshot.select().where(Snapshot.stream == stream.id).exists(),
        "a first snapshot",
    )
    save_settings(stack, source_deny_cidrs=["10.0.0.0/8", "127.0.0.0/8"])
    capture(stack, stream)
    error = wait_for(
        lambda: Stream.get_by_id(stream.id).last_error, "the capture to be refused by the list"
    )
    assert "127.0.0.1" in error or "denied" in error.lower(), error
    save_settings(stack, source_deny_cidrs=[])


def test_retention_the_running_worker_prunes_by_the_new_event_retention(stack: Stack):
    with database.connection_context():
        old = Event.create(
            kind="motion",
            severity="low",
            title="Ten days ago",
            created_at=times.utcnow() - timedelta(days=10),
        )
    queue = get_queue("maintenance", stack.redis)
    job = queue.enqueue("glimpser.jobs.apply_retention")
    wait_for(lambda: job.get_status(refresh=True) == "finished", "retention with 30 days")
    with database.connection_context():
        assert Event.select().where(Event.id == old.id).exists()  # 10 < 30 days: kept

    save_settings(stack, event_retention_days=5)
    job = queue.enqueue("glimpser.jobs.apply_retention")
    wait_for(lambda: job.get_status(refresh=True) == "finished", "retention with 5 days")
    with database.connection_context():
        assert not Event.select().where(Event.id == old.id).exists()
    save_settings(stack, event_retention_days=30)


def test_ai_the_running_worker_talks_to_the_new_server(stack: Stack, openai_server):
    openai_server.handler = lambda _r: Reply.completion("A quiet hour on the porch.")
    with database.connection_context():
        stream = Stream.create(name="Summed", kind="http_image", enabled=False, config={})
        Event.create(
            stream=stream.id,
            kind="motion",
            severity="low",
            title="Cat",
            created_at=times.utcnow() - timedelta(minutes=5),
        )
    page = stack.http.get(f"{stack.url}/summaries/")
    ask = {"csrf_token": csrf_from(page.text), "scope": str(stream.id), "window": "hour"}
    refused = stack.http.post(f"{stack.url}/summaries/", data=ask, allow_redirects=False)
    assert refused.status_code == 409  # AI not configured yet

    save_settings(stack, ai_base_url=openai_server.url, ai_model="settings-model")

    def ask_again() -> tuple[requests.Response] | None:  # 409 until the web sees AI
        answer = stack.http.post(f"{stack.url}/summaries/", data=ask, allow_redirects=False)
        return None if answer.status_code == 409 else (answer,)

    (answer,) = wait_for(ask_again, "the web to accept a summary")
    assert answer.status_code == 303, answer.text
    summary = wait_for(
        lambda: Summary.select().where(Summary.status.in_(["done", "failed"])).first(),
        "the summary",
    )
    assert summary.status == "done", summary.error
    assert summary.text.startswith("A quiet hour")
    assert openai_server.requests and openai_server.requests[-1].body["model"] == "settings-model"
    save_settings(stack, ai_base_url="", ai_model="")


def test_notifications_the_running_worker_links_to_the_new_public_url(stack: Stack):
    save_settings(stack, allow_loopback_sources=True, public_url="https://cams.example.org")
    with HttpReceiver() as hook, database.connection_context():
        channel = NotificationChannel.create(
            name="Hook", kind="webhook", config={"kind": "webhook", "url": hook.url("/in")}
        )
        event = Event.create(kind="motion", severity="high", title="Gate opened")
        delivery = Delivery.create(
            event=event.id, channel=channel.id, purpose="alert", status="queued"
        )
        enqueue_delivery(stack.redis, delivery.id)
        wait_for(lambda: hook.requests, "the webhook")
        body = hook.requests[0].json()
    assert f"https://cams.example.org/events/{event.id}" in str(body)


def test_locale_every_web_process_declares_the_new_language(stack: Stack):
    save_settings(stack, default_locale="de-CH", default_timezone="Europe/Berlin")
    fresh = requests.Session()

    def declared() -> bool:  # ten pages in a row: both gunicorn workers took it up
        pages = (fresh.get(f"{stack.url}/login").text for _ in range(10))
        return all(re.search(r'<html lang="de-CH"[ >]', page) for page in pages)

    wait_for(declared, "the new <html lang>")
    page = stack.http.get(f"{stack.url}/admin/rules/new").text
    assert 'value="Europe/Berlin"' in page or ">Europe/Berlin<" in page
    save_settings(stack, default_locale="en", default_timezone="UTC")


def test_security_the_login_limit_follows_the_setting(stack: Stack):
    save_settings(stack, login_rate_limit="2 per minute")
    fresh = requests.Session()

    def failed_login() -> requests.Response:
        page = fresh.get(f"{stack.url}/login")
        return fresh.post(
            f"{stack.url}/login",
            data={"csrf_token": csrf_from(page.text), "username": "nobody", "password": "wrong"},
            allow_redirects=False,
        )

    def limit_of_429() -> str | None:  # (a Response is falsy for a 4xx: return its header)
        answer = failed_login()
        return answer.headers.get("X-RateLimit-Limit") if answer.status_code == 429 else None

    limit = wait_for(limit_of_429, "a 429 after failed sign-ins")
    assert limit == "2"  # the new limit, not the default 10 per minute
    save_settings(stack, login_rate_limit="1000 per minute")


def test_readers_the_running_readers_process_follows_reader_max_interval(stack: Stack, rtsp):
    save_settings(stack, allow_loopback_sources=True)
    with database.connection_context():
        stream = Stream.create(
            name="Cam",
            kind="rtsp",
            interval=10,
            config={"kind": "rtsp", "url": f"{rtsp.url}/test"},
        )
    readers = subprocess.Popen(
        [sys.executable, "-m", "glimpser.cli", "readers"],
        env=stack.server.env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)  # a few passes of the hub: interval 10 > 5, so no reader yet
        assert not stack.redis.exists(live.frame_key(stream.id))
        save_settings(stack, reader_max_interval=30)
        wait_for(lambda: stack.redis.exists(live.frame_key(stream.id)), "a reader's frame")
        assert readers.poll() is None
    finally:
        stop_process(readers)
    save_settings(stack, reader_max_interval=5)
