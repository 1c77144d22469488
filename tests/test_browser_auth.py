"""First-run setup, sign-in and sign-out in a real browser against a live gunicorn server."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.helpers import PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def collect_console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def test_setup_login_logout_in_a_browser(live_server, page: Page):
    errors = collect_console_errors(page)
    page.goto(live_server.url + "/")
    expect(page).to_have_url(f"{live_server.url}/setup?next=/")
    expect(page.get_by_role("heading", name="Welcome to Glimpser")).to_be_visible()

    page.get_by_label("Admin username").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create administrator").click()
    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.get_by_text("Welcome, alice.")).to_be_visible()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    # The session cookie is not readable from JavaScript.
    assert "glimpser_session" not in page.evaluate("document.cookie")
    cookie = next(c for c in page.context.cookies() if c["name"] == "glimpser_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_server.url}/login")
    expect(page.get_by_text("You are signed out.")).to_be_visible()

    # Setup is closed for good now.
    response = page.goto(live_server.url + "/setup")
    assert response is not None and response.status == 404

    page.goto(live_server.url + "/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong username or password.")).to_be_visible()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/")
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="System status")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_server.url}/login")
    page.goto(live_server.url + "/admin/")
    expect(page).to_have_url(f"{live_server.url}/login?next=/admin/")

    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors


def test_layout_fits_a_phone_screen(live_server, browser):
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    page.goto(live_server.url + "/setup")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"page is {width}px wide on a 375px screen"
    expect(page.get_by_role("button", name="Create administrator")).to_be_visible()
    context.close()
