"""Local time in real browsers (Chromium, live server): two people in zones far apart see the
same event at their own local time once their browser's zone has been detected and stored
(once); the theme toggle survives a reload; the skip link is the first thing Tab reaches; and
no page logs a console error or a CSP violation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect

from glimpser import create_app
from glimpser.auth.users import create_user
from glimpser.config import load_settings
from glimpser.db import database
from glimpser.models import Event, StreamAccess, User
from tests.conftest import start_live_server, stop_process
from tests.helpers import PASSWORD, add_stream, first_run_in_browser

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ZONES = {"alice": "Pacific/Auckland", "bob": "America/Los_Angeles"}


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_url):
    """One live server for the module, an app on its database, and an event 2 days old."""
    server = start_live_server(tmp_path_factory.mktemp("time") / "data", redis_url)
    app = create_app(load_settings(server.env))
    yield server, app
    stop_process(server.proc)


def watch_errors(page: Page) -> list[str]:
    """Console errors and CSP violations of the page, collected as they happen."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => "
        "console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    return errors


def stored_zone(username: str) -> str:
    with database.connection_context():
        return User.get(User.username == username).timezone


def sign_in(page: Page, url: str, username: str) -> None:
    page.goto(url + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(url + "/")


def test_the_same_event_in_two_zones(site, browser: Browser):
    server, app = site
    contexts = {
        name: browser.new_context(timezone_id=zone, color_scheme="light")
        for name, zone in ZONES.items()
    }
    pages = {name: ctx.new_page() for name, ctx in contexts.items()}
    errors = {name: watch_errors(page) for name, page in pages.items()}
    first_run_in_browser(pages["alice"], server.url)
    stream = add_stream("Porch")
    at = (datetime.now(UTC) - timedelta(days=40)).replace(microsecond=0)
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=stream)
        Event.create(stream=stream, kind="motion", title="Fox at the door", created_at=at)
    sign_in(pages["bob"], server.url, "bob")

    for name, page in pages.items():
        # The first page after sign-in posts the browser's zone; poll until it is stored.
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while stored_zone(name) != ZONES[name]:
            assert datetime.now(UTC) < deadline, f"{name}'s zone was never stored"
            page.wait_for_timeout(200)
        page.goto(server.url + "/events")
        local = at.astimezone(ZoneInfo(ZONES[name]))
        exact = page.locator("#event-list .event-meta small time")
        expect(exact).to_have_attribute("datetime", local.isoformat(timespec="seconds"))
        day = f"{local:%a} {local.day} {local:%b}" if local.year == datetime.now().year else ""
        expect(exact).to_contain_text(f"{local:%H:%M:%S}")
        if day:
            expect(exact).to_contain_text(day)
        expect(page.locator(".event-meta time[data-relative]")).to_have_text("40 d ago")
        expect(page.locator("label[for=ev-from]")).to_contain_text(ZONES[name])
        expect(page.locator("body")).not_to_have_attribute("data-timezone-unknown", "")

    # Detected once: a later page (another zone now, e.g. travelling) does not change it.
    contexts["alice"].close()
    travelling = browser.new_context(timezone_id="Europe/Berlin")
    page = travelling.new_page()
    errors["travel"] = watch_errors(page)
    sign_in(page, server.url, "alice")
    page.goto(server.url + "/profile/")
    expect(page.locator("#pref-timezone")).to_have_value("Pacific/Auckland")
    page.wait_for_timeout(500)
    assert stored_zone("alice") == "Pacific/Auckland"
    travelling.close()
    contexts["bob"].close()
    assert not any(errors.values()), errors


def test_theme_toggle_survives_a_reload_and_the_skip_link_comes_first(site, browser: Browser):
    server, _app = site
    with database.connection_context():
        if not User.select().where(User.username == "carol").exists():
            create_user("carol", PASSWORD, "viewer")
    context = browser.new_context(color_scheme="light", timezone_id="Asia/Tokyo")
    page = context.new_page()
    errors = watch_errors(page)
    sign_in(page, server.url, "carol")
    page.goto(server.url + "/profile/")
    html = page.locator("html")
    toggle = page.locator("[data-theme-toggle]")
    expect(html).not_to_have_attribute("data-theme", "dark")
    expect(toggle).to_contain_text("Auto")
    toggle.click()  # system → light
    expect(html).to_have_attribute("data-theme", "light")
    toggle.click()  # light → dark
    expect(html).to_have_attribute("data-theme", "dark")
    expect(toggle).to_contain_text("Dark")
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while True:
        with database.connection_context():
            if User.get(User.username == "carol").preferences.get("theme") == "dark":
                break
        assert datetime.now(UTC) < deadline, "the theme was never stored"
        page.wait_for_timeout(200)
    page.reload()
    expect(html).to_have_attribute("data-theme", "dark")
    expect(page.locator("#pref-timezone")).to_have_value("Asia/Tokyo")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)"

    page.goto(server.url + "/events")
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    expect(page.locator(".skip-link")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page).to_have_url(server.url + "/events#main")

    # The sign-in page (no user) follows the theme remembered in this browser.
    page.get_by_role("button", name="Sign out").first.click()
    page.goto(server.url + "/login")
    expect(html).to_have_attribute("data-theme", "dark")
    sign_in(page, server.url, "carol")

    # The profile form (no JavaScript needed) sets it back to the system's.
    page.goto(server.url + "/profile/")
    page.get_by_label("As the device (system)").check()
    page.get_by_role("button", name="Save").click()
    expect(html).not_to_have_attribute("data-theme", "dark")
    expect(page.locator(".flash")).to_contain_text("saved")
    context.close()
    assert not errors, errors
