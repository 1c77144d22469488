"""Screenshots of the real UI at desktop and phone widths, for docs/screenshots/.

Starts a private Redis, gunicorn, a worker, the readers process and the scheduler on a
temporary data directory, adds streams from loopback peers (the test camera, the RTSP test
server), lets them capture, and photographs the pages in Debian Chromium.

Run: .venv/bin/python docs/screenshots/take.py [GROUP ...]
With no group, every screenshot is taken. Groups: basic (dashboard, stream, events, rules,
channel form, summaries, system, admin, audit, live, stream form), sessions, users, settings,
local-time, streams (timeline, bulk actions, rules, deliveries), events (search, event page),
websites (element picker, change view), wall; "console" is the operator's console of issue 12:
local-time, streams, events, websites and wall. The streams every group needs are always set up.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from glimpser.sources.website import CHROMIUM_ARGS  # noqa: E402
from tests.conftest import start_live_server, stop_process  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from tests.media_servers import RtspServer, jpeg, make_media, start_camera_server  # noqa: E402

OUT = Path(__file__).resolve().parent
PASSWORD = "correct horse battery"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
GROUPS = ("basic", "sessions", "users", "api-keys", "settings", "local-time", "streams",
          "events", "websites", "wall", "system")  # fmt: skip
CONSOLE = ("local-time", "streams", "events", "websites", "wall")


def chosen_groups(argv: list[str] | None = None) -> set[str]:
    parser = argparse.ArgumentParser(description="Screenshots of the real UI for docs/.")
    parser.add_argument("groups", nargs="*", metavar="GROUP",
                        help=f"any of {', '.join(GROUPS)}, console (default: all)")  # fmt: skip
    groups = parser.parse_args(argv).groups
    unknown = set(groups) - {*GROUPS, "console"}
    if unknown:
        parser.error(f"unknown group {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}"
                     ", console")  # fmt: skip
    chosen = set(GROUPS) if not groups else set(groups)
    if "console" in chosen:
        chosen = (chosen - {"console"}) | set(CONSOLE)
    return chosen


def main(groups: set[str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="g-shots-", dir="/tmp"))
    media = work / "media"
    make_media(media)
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    camera, state = start_camera_server()
    state.picture = jpeg((40, 110, 170), size=(640, 360), label="front door")
    rtsp = RtspServer(media / "test.mp4")
    server = start_live_server(
        work / "data",
        f"redis://127.0.0.1:{redis_port}/0",
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_MEDIA_DIR=str(media),
    )
    others = [
        subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", role],
            env=server.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        for role in ("worker", "readers", "scheduler")
    ]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=SIZES["desktop"])
            page.goto(server.url + "/setup")
            page.get_by_label("Admin username").fill("alice")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_label("Repeat password").fill(PASSWORD)
            page.get_by_role("button", name="Create administrator").click()
            streams = [
                ("Front door", "http_image", {"Image URL": f"{camera.url}/snapshot.jpg"}),
                ("Driveway", "rtsp", {"RTSP URL": f"{rtsp.url}/test"}),
                ("Test clip", "video", {"Video URL": f"http://127.0.0.1:{camera.port}/nope.mp4"}),
            ]
            for name, kind, fields in streams:
                page.goto(server.url + "/streams/new")
                page.get_by_label("Kind of source").select_option(kind)
                page.get_by_label(next(iter(fields)), exact=True).wait_for()
                page.get_by_label("Name", exact=True).fill(name)
                # The RTSP stream runs at 2 s, through the readers: its moving ball makes events.
                page.get_by_label("Capture every (seconds)").fill("2" if kind == "rtsp" else "10")
                for label, value in fields.items():
                    page.get_by_label(label, exact=True).fill(value)
                if kind == "http_image" and "basic" in groups:
                    page.get_by_role("button", name="Test capture").click()
                    page.locator("#preview img").wait_for(timeout=30_000)
                    shoot(page, "stream-form")
                page.get_by_role("button", name="Create stream").click()
            time.sleep(12)  # first captures, and a failure for the broken one
            if "basic" in groups:
                for label, size in SIZES.items():
                    page.set_viewport_size(size)
                    page.goto(server.url + "/")
                    page.wait_for_load_state("networkidle")
                    shoot(page, f"dashboard-{label}")
                    page.goto(server.url + "/streams/")
                    page.get_by_role("link", name="Front door").click()
                    page.wait_for_load_state("networkidle")
                    shoot(page, f"stream-{label}")
                page.set_viewport_size(SIZES["desktop"])
                for path, name in (
                    ("/events", "events-desktop"),
                    ("/admin/rules/", "rules-desktop"),
                    ("/admin/channels/new?kind=webhook", "channel-form"),
                    ("/summaries/", "summaries-desktop"),
                    ("/admin/system/", "system-desktop"),
                    ("/admin/", "admin-desktop"),
                ):
                    page.goto(server.url + path)
                    page.wait_for_load_state("networkidle")
                    shoot(page, name)
                # Admin → Audit, with a failed sign-in and a stream edit among its entries.
                stranger = browser.new_page()
                stranger.goto(server.url + "/login")
                stranger.get_by_label("Username").fill("alice")
                stranger.get_by_label("Password").fill("not the password")
                stranger.get_by_role("button", name="Sign in").click()
                stranger.close()
                page.goto(server.url + "/streams/")
                page.get_by_role("link", name="Front door").click()
                page.goto(page.url.rstrip("/") + "/edit")
                page.get_by_label("Capture every (seconds)").fill("30")
                page.get_by_label("Groups").fill("outdoor, entrance")
                page.get_by_role("button", name="Save").click()
                for label, size in SIZES.items():
                    page.set_viewport_size(size)
                    page.goto(server.url + "/admin/audit/")
                    page.wait_for_load_state("networkidle")
                    shoot(page, f"audit-{label}")
                page.set_viewport_size(SIZES["desktop"])
                page.goto(server.url + "/streams/")
                page.get_by_role("link", name="Driveway").click()
                live = page.get_by_role("button", name="Live view")
                if live.count():
                    live.click()
                    time.sleep(4)
                    shoot(page, "live-desktop")
            if "sessions" in groups:
                shoot_sessions(browser, page, server.url)
            if "users" in groups:
                users_pages(browser, page, server.url)
            if "api-keys" in groups:
                shoot_api_keys(browser, server.url)
            if "settings" in groups:
                shoot_settings(browser, server.url)
            if "local-time" in groups:
                shoot_local_time(browser, server.url)
            if "streams" in groups:
                shoot_streams_console(browser, server)
            if "events" in groups:
                shoot_events(browser, server.url)
            if "websites" in groups:
                shoot_websites(browser, server.url)
            if "wall" in groups:
                shoot_wall(browser, page, server.url, camera, state)
            if "system" in groups:
                shoot_system(browser, server)
            browser.close()
    finally:
        for proc in [*others, server.proc]:
            stop_process(proc)
        rtsp.stop()
        camera.stop()
        redis.terminate()


def shoot_sessions(browser, page, url: str) -> None:  # noqa: ANN001
    """Profile (password, sessions) and Admin → Sessions, with alice also signed in on a phone."""
    phone = browser.new_context(
        viewport=SIZES["phone"],
        user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    )
    other = phone.new_page()
    sign_in(other, url)
    other.wait_for_url(url + "/")
    for label, size in SIZES.items():
        page.set_viewport_size(size)
        for path, name in (("/profile/", "profile"), ("/admin/sessions/", "sessions")):
            page.goto(url + path)
            page.wait_for_load_state("networkidle")
            shoot(page, f"{name}-{label}")
    phone.close()


def users_pages(browser, page, url: str) -> None:  # noqa: ANN001
    """Admin → Users: the create form, a viewer's page, the list, and the set-password page."""
    page.set_viewport_size(SIZES["desktop"])
    page.goto(url + "/admin/users/new")
    shoot(page, "user-new")
    page.get_by_label("Username").fill("bob")
    page.get_by_role("button", name="Create user").click()
    link = page.get_by_label("One-time link").input_value()
    page.get_by_role("button", name="Go to bob's page").click()
    page.get_by_label("Front door", exact=True).check()
    page.get_by_role("button", name="Save access").click()
    shoot(page, "user-page")
    page.goto(url + "/admin/users/")
    shoot(page, "users-list")
    context = browser.new_context(viewport=SIZES["phone"])
    visitor = context.new_page()
    visitor.goto(link)
    shoot(visitor, "set-password")
    context.close()


def shoot_api_keys(browser, url: str) -> None:  # noqa: ANN001
    """Profile → API keys (with a new key shown once) and Admin → API keys, at 1920, 1280 and
    390 px, light and dark. Makes two keys of alice's (one used once with the API, one
    revoked) and one of bob's (the viewer users_pages() made, if any) from the pages."""
    import requests

    context = browser.new_context(viewport=SIZES["desktop"])
    page = context.new_page()
    sign_in(page, url)
    tokens = []
    for name, scope, days in (("Home Assistant", "read", "90"), ("Old script", "write", "")):
        page.goto(url + "/profile/api-keys")
        page.get_by_label("Name").fill(name)
        page.locator(f"#key-scope-{scope}").check()
        page.get_by_label("Expires after (days)").fill(days)
        page.get_by_role("button", name="Create key").click()
        tokens.append(page.get_by_label("API key").input_value())
    requests.get(url + "/api/v1/streams", headers={"Authorization": f"Bearer {tokens[0]}"})
    page.goto(url + "/profile/api-keys")
    page.get_by_role("button", name=f"Revoke key {tokens[1][4:12]}").click()
    page.get_by_role("button", name=f"Revoke key {tokens[1][4:12]}").click()
    page.goto(url + "/admin/api-keys/")
    owner = page.locator("#key-user")
    if owner.locator("option", has_text="bob").count():
        owner.select_option(label="bob (viewer)")
        page.get_by_label("Name").fill("Node-RED")
        page.locator("#key-scope-read").check()
        page.get_by_role("button", name="Create key").click()
    context.close()
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme, viewport=SIZES["desktop"])
        page = context.new_page()
        sign_in(page, url)
        page.goto(url + "/profile/api-keys")
        page.get_by_label("Name").fill("Node-RED")
        page.locator("#key-scope-read").check()
        page.get_by_role("button", name="Create key").click()
        for width in (1920, 1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            shoot(page, f"api-key-new-{width}-{scheme}")
        for path, name in (
            ("/profile/api-keys", "api-keys-profile"),
            ("/admin/api-keys/", "api-keys-admin"),
        ):
            page.goto(url + path)
            page.wait_for_load_state("networkidle")
            for width in (1920, 1280, 390):
                page.set_viewport_size({"width": width, "height": 900})
                shoot(page, f"{name}-{width}-{scheme}")
        context.close()


def shoot_settings(browser, url: str) -> None:  # noqa: ANN001
    """Admin → Settings (loopback sources are set by the environment here, so one field shows
    "set by GLIMPSER_…") with a Test connection answered by the loopback OpenAI-protocol
    server, at three widths, light and dark."""
    from tests.openai_server import FakeOpenAI, Reply

    ai = FakeOpenAI().start()
    ai.handler = lambda _r: Reply.completion("Yes, I am here and ready to describe snapshots.")
    try:
        for scheme in ("light", "dark"):
            context = browser.new_context(color_scheme=scheme, viewport=SIZES["desktop"])
            page = context.new_page()
            sign_in(page, url)
            page.goto(url + "/admin/settings/")
            page.get_by_label("AI server URL").fill(ai.url)
            page.get_by_label("Model").fill("gpt-4o-mini")
            page.get_by_role("button", name="Test connection").click()
            page.locator("#ai-test-result article").wait_for()
            for width in (1920, 1280, 390):
                page.set_viewport_size({"width": width, "height": 900})
                shoot(page, f"settings-{width}-{scheme}")
            context.close()
    finally:
        ai.stop()


def shoot_local_time(browser, url: str) -> None:  # noqa: ANN001
    """The profile's time zone and theme, and the events list (many times) in Europe/Berlin
    (chosen on the profile: the zone detected at setup was this machine's), at three widths,
    light and dark."""
    for scheme in ("light", "dark"):
        context = browser.new_context(
            color_scheme=scheme, viewport=SIZES["desktop"], timezone_id="Europe/Berlin"
        )
        page = context.new_page()
        sign_in(page, url)
        page.goto(url + "/profile/")
        page.get_by_label("Time zone").select_option("Europe/Berlin")
        page.get_by_role("button", name="Save", exact=True).click()
        page.wait_for_load_state("networkidle")
        for path, name in (("/profile/", "profile-time"), ("/events", "events-time")):
            page.goto(url + path)
            page.wait_for_load_state("networkidle")
            for width in (1920, 1280, 390):
                page.set_viewport_size({"width": width, "height": 900})
                shoot(page, f"{name}-{width}-{scheme}")
        context.close()


def shoot_streams_console(browser, server) -> None:  # noqa: ANN001
    """Issue 12, streams: a stream page with its day timeline and the streams list with a
    selection at 1920, 1280 and 390 px; the Rules and Deliveries tables at 1400 and 390 px;
    light and dark. Adds a rule, a channel and a few deliveries to show in those tables."""
    from glimpser import create_app
    from glimpser.config import load_settings
    from glimpser.db import database
    from glimpser.models import Delivery, Event, NotificationChannel, Rule, Stream

    create_app(load_settings(server.env))
    with database.connection_context():
        if not NotificationChannel.select().exists():
            hook = NotificationChannel.create(
                name="Ops webhook", kind="webhook", config={"url": "http://192.0.2.1/hook"}
            )
            rule = Rule.create(
                name="Motion at the door",
                description="Anything moving in front of the door at night",
                conditions={"changed": True, "motion_above": 2.5},
                channels=[hook.id],
                severity="high",
            )
            stream = Stream.select().order_by(Stream.id).first()
            for i, status in enumerate(("sent", "failed", "retrying", "sent")):
                event = Event.create(
                    stream=stream, rule=rule, kind="motion", title=f"Motion on {stream.name} #{i}"
                )
                Delivery.create(
                    event=event,
                    channel=hook,
                    status=status,
                    attempts=1 if status == "sent" else 3,
                    response_code=200 if status == "sent" else 503,
                    error="" if status == "sent" else "HTTP 503 from the webhook: busy",
                )
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme, viewport={"width": 1920, "height": 900})
        page = context.new_page()
        sign_in(page, server.url)
        page.goto(server.url + "/streams/")
        page.get_by_role("link", name="Front door").click()
        stream_url = page.url
        for width in (1920, 1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(stream_url)
            page.locator("#timeline-img").wait_for()
            page.locator("#timeline-scrub").focus()
            page.keyboard.press("ArrowLeft")
            page.wait_for_load_state("networkidle")
            shoot(page, f"timeline-{width}-{scheme}")
            page.goto(server.url + "/streams/")
            for name in ("Front door", "Driveway"):
                page.get_by_label(f"Select {name}").check()
            page.get_by_label("With the selected streams").select_option("group")
            shoot(page, f"streams-bulk-{width}-{scheme}")
        for width in (1400, 390):
            page.set_viewport_size({"width": width, "height": 900})
            for path, name in (("/admin/rules/", "rules"), ("/admin/deliveries/", "deliveries")):
                page.goto(server.url + path)
                page.wait_for_load_state("networkidle")
                shoot(page, f"{name}-{width}-{scheme}")
        context.close()


def shoot_events(browser, url: str, words: str = "motion") -> None:  # noqa: ANN001
    """Events: a search (words highlighted) and the newest matching event's page (before |
    after, boxes, why), at three widths, light and dark."""
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme, viewport={"width": 1920, "height": 1000})
        page = context.new_page()
        sign_in(page, url)
        page.goto(f"{url}/events?q={words}")
        event_url = page.locator("#event-list .event-title a").first.get_attribute("href")
        for width in (1920, 1280, 390):
            page.set_viewport_size({"width": width, "height": 1000})
            page.goto(f"{url}/events?q={words}")
            page.wait_for_load_state("networkidle")
            shoot(page, f"events-search-{width}-{scheme}")
            page.goto(url + event_url)
            page.wait_for_load_state("networkidle")
            shoot(page, f"event-page-{width}-{scheme}")
        context.close()


def shoot_wall(browser, page, url: str, camera, state) -> None:  # noqa: ANN001
    """The camera wall with a dozen streams (a failing one, a website, a paused one) at three
    widths, light and dark, and in kiosk mode."""
    from playwright.sync_api import expect

    names = ["Back yard", "Garage", "Loading bay", "Lobby", "Parking north", "Parking south",
             "Reception", "Roof", "Side gate"]  # fmt: skip
    colours = [(70, 120, 60), (90, 90, 100), (150, 110, 60), (120, 70, 90), (60, 90, 140),
               (50, 110, 120), (140, 80, 60), (100, 130, 160), (80, 60, 120)]  # fmt: skip
    for name, colour in zip(names, colours, strict=True):
        state.picture = jpeg(colour, size=(640, 360), label=name.lower())
        page.goto(url + "/streams/new")
        page.get_by_label("Kind of source").select_option("http_image")
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_label("Capture every (seconds)").fill("3600")
        page.get_by_label("Image URL", exact=True).fill(f"{camera.url}/snapshot.jpg")
        page.get_by_role("button", name="Create stream").click()
        expect(page.get_by_alt_text(f"Latest snapshot of {name}")).to_be_visible(timeout=60_000)
    # The last one (Side gate) paused: its picture stays, dimmed, marked "paused".
    page.get_by_role("button", name="Pause").click()
    # A website (this very server's sign-in page), shown whole rather than cropped.
    page.goto(url + "/streams/new")
    page.get_by_label("Kind of source").select_option("website")
    # (Not "Status page": shoot_websites made that one, and names are unique.)
    page.get_by_label("Name", exact=True).fill("Sign-in page")
    page.get_by_label("Capture every (seconds)").fill("3600")
    page.get_by_label("Page URL", exact=True).fill(url + "/login")
    page.get_by_role("button", name="Create stream").click()
    expect(page.get_by_alt_text("Latest snapshot of Sign-in page")).to_be_visible(timeout=90_000)
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme, viewport={"width": 1920, "height": 1080})
        wall = context.new_page()
        sign_in(wall, url)
        for width, columns in ((1920, "6"), (1280, "4"), (390, "4")):
            wall.set_viewport_size({"width": width, "height": 1080 if width > 390 else 844})
            wall.goto(url + "/")
            wall.get_by_label("Columns").select_option(columns)
            wall.locator(f"ul.wall-grid.cols-{columns}").wait_for()
            wall.wait_for_load_state("networkidle")
            shoot(wall, f"wall-{width}-{scheme}")
        wall.set_viewport_size({"width": 1920, "height": 1080})
        wall.get_by_label("Columns").select_option("6")
        wall.locator("ul.wall-grid.cols-6").wait_for()
        wall.goto(url + "/?kiosk=1")
        wall.wait_for_load_state("networkidle")
        shoot(wall, f"wall-kiosk-1920-{scheme}")
        wall.locator("#dashboard-grid a.tile-link").nth(1).click()
        wall.locator("dialog#wall-viewer img").wait_for()
        wall.wait_for_timeout(1500)
        shoot(wall, f"wall-viewer-1920-{scheme}")
        context.close()


def shoot_websites(browser, url: str) -> None:  # noqa: ANN001
    """Website changes: the element picker of a test capture and the change view (a status page
    whose clock ticks, kept quiet by an ignore pattern, then its content changes), at three
    widths, light and dark."""
    from tests.test_console_websites import CLOCK, ClockSite

    site = ClockSite()
    try:
        for scheme in ("light", "dark"):
            context = browser.new_context(color_scheme=scheme, viewport=SIZES["desktop"])
            page = context.new_page()
            sign_in(page, url)
            if scheme == "light":
                site.content = "All systems normal"
                page.goto(url + "/streams/new")
                page.get_by_label("Kind of source").select_option("website")
                page.get_by_label("Page URL", exact=True).fill(site.url)
                page.get_by_label("Name", exact=True).fill("Status page")
                page.get_by_label("Capture every (seconds)").fill("3600")
                page.get_by_label("Keep the page's text").check()
                page.get_by_label("Judge changes by").select_option("text")
                page.get_by_label("Ignore text").fill(CLOCK)
                page.get_by_role("button", name="Create stream").click()
                page.wait_for_url(re.compile(r".*/streams/\d+$"), timeout=60_000)
                stream_url = page.url
                for _ in range(240):  # the first capture, however busy the machine
                    if page.locator("#history a.change-link").count():
                        break
                    time.sleep(0.5)
                    page.goto(stream_url)
                site.content = "Database DOWN since 09:12; failover running"
                page.get_by_role("button", name="Capture now").click()
                page.get_by_text("New picture stored").wait_for(timeout=120_000)
            page.goto(stream_url + "/edit")
            page.get_by_role("button", name="Test capture").click()
            picture = page.locator("#preview .picker img")
            picture.wait_for(timeout=60_000)
            box = picture.bounding_box()
            picture.click(position={"x": box["width"] * 0.1, "y": box["height"] * 130 / 720})
            for width in (1920, 1280, 390):
                page.set_viewport_size({"width": width, "height": 900})
                page.locator("#preview").scroll_into_view_if_needed()
                page.screenshot(path=str(OUT / f"website-picker-{width}-{scheme}.png"))
                print("wrote", f"website-picker-{width}-{scheme}.png")
            page.goto(stream_url)
            page.locator("#history a.change-link").first.click()
            page.wait_for_load_state("networkidle")
            for width in (1920, 1280, 390):
                page.set_viewport_size({"width": width, "height": 900})
                shoot(page, f"website-changes-{width}-{scheme}")
            context.close()
    finally:
        site.close()


def shoot_system(browser, server) -> None:  # noqa: ANN001
    """Admin → System as a cluster of two hosts: this machine (web, worker, scheduler, readers,
    from main()) and a second node (GLIMPSER_NODE_NAME=cam-host-2) with a `glimpser readers`
    sharing the streams and a `glimpser worker` for the browser and notify queues; at 1920,
    1280 and 390 px, light and dark."""
    second = {**server.env, "GLIMPSER_NODE_NAME": "cam-host-2"}
    others = [
        subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", *args],
            env=second,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        for args in (["readers"], ["worker", "--queues", "browser,notify"])
    ]
    try:
        time.sleep(10)  # both hosts' heartbeats, and the live leases settled
        for scheme in ("light", "dark"):
            context = browser.new_context(color_scheme=scheme, viewport=SIZES["desktop"])
            page = context.new_page()
            sign_in(page, server.url)
            page.goto(server.url + "/admin/system/")
            page.wait_for_load_state("networkidle")
            for width in (1920, 1280, 390):
                page.set_viewport_size({"width": width, "height": 900})
                shoot(page, f"system-{width}-{scheme}")
            context.close()
    finally:
        for proc in others:
            stop_process(proc)


def sign_in(page, url: str) -> None:  # noqa: ANN001
    """Sign in as alice, the admin main() sets up."""
    page.goto(url + "/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def shoot(page, name: str) -> None:  # noqa: ANN001
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    os.chdir(ROOT)
    main(chosen_groups())
