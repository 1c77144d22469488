"""The API docs page, `/docs/api`, in Chromium with the app's CSP enforced: Swagger UI (vendored)
shows every operation of /api/v1/openapi.json, "Try it out" answers with a key pasted in its
Authorize dialog, and nothing logs a console error or violates the CSP, in light and dark.

Screenshots at 1920, 1280 and 390 px, light and dark, are written to the test's directory, and
to docs/screenshots/ when GLIMPSER_SCREENSHOTS=1."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Locator, Page, expect

from glimpser.config import load_settings
from glimpser.db import init_database
from glimpser.models import User
from tests.api_support import make_key
from tests.conftest import LiveServer
from tests.helpers import PASSWORD, add_stream, first_run_in_browser

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
WIDTHS = (1920, 1280, 390)
# Registered before any of the page's scripts run: CSP violations do not always reach the console.
WATCH_CSP = """
  window.__cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI || "inline"}`);
  });
"""


def operations(url: str) -> list[tuple[str, str]]:
    """(method, path) of every operation in the live OpenAPI document."""
    doc = requests.get(url + "/api/v1/openapi.json", timeout=30).json()
    return [
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    ]


def operation_block(page: Page, method: str, path: str) -> Locator:
    """Swagger UI's block of one operation (its element ids are CSS-escaped operationIds)."""
    return page.locator(f".opblock.opblock-{method}").filter(
        has=page.locator(f'.opblock-summary-path[data-path="{path}"]')
    )


def watch(page: Page, errors: list[str]) -> None:
    page.add_init_script(WATCH_CSP)
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))


def open_docs(page: Page, url: str, errors: list[str]) -> None:
    response = page.goto(url + "/docs/api")
    assert response is not None and response.status == 200
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    expect(page.locator("#swagger-ui .opblock").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    errors.extend(f"CSP {v}" for v in page.evaluate("window.__cspViolations"))


def test_the_docs_page_shows_every_operation_and_tries_one_with_a_key(
    live_server: LiveServer, browser: Browser, tmp_path: Path
):
    url = live_server.url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    watch(page, errors)
    first_run_in_browser(page, url)
    init_database(load_settings(live_server.env).database_url)
    add_stream("Garden", enabled=False, state="paused")
    from glimpser.db import database

    with database.connection_context():
        alice = User.get(User.username == "alice")
    token = make_key(alice, "read", name="docs page")

    # Reached from the admin page.
    page.goto(url + "/admin/")
    page.get_by_role("link", name="API docs").click()
    expect(page).to_have_url(url + "/docs/api")
    open_docs(page, url, errors)

    # Every operation of the document is on the page.
    wanted = operations(url)
    assert ("get", "/api/v1/streams") in wanted
    for method, path in wanted:
        expect(operation_block(page, method, path)).to_have_count(1)
    expect(page.locator(".opblock")).to_have_count(len(wanted))

    # Without a key, "Try it out" gets the API's 401 (the browser's session is not used).
    streams = operation_block(page, "get", "/api/v1/streams")
    streams.locator(".opblock-summary-control").click()
    streams.get_by_role("button", name="Try it out").click()
    # Chromium logs that expected 401 as a failed resource load: the one error allowed.
    with page.expect_console_message(lambda m: "status of 401" in m.text) as logged:
        streams.get_by_role("button", name="Execute").click()
    errors.remove(f"console: {logged.value.text}")
    expect(streams.locator(".live-responses-table tbody .response-col_status")).to_have_text("401")

    # With a key pasted in Authorize, the same request answers the stream list.
    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.locator("input[type=text], input[type=password]").first.fill(token)
    dialog.get_by_role("button", name="Apply credentials").click()
    expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
    dialog.locator("button.btn-done").click()
    streams.get_by_role("button", name="Execute").click()
    answer = streams.locator(".live-responses-table tbody")
    expect(answer.locator(".response-col_status")).to_have_text("200")
    expect(answer.locator(".response-col_description")).to_contain_text('"name": "Garden"')
    # The key stays in the tab's memory: not in storage, not in the URL.
    stored = page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
    assert token not in stored and token not in page.url
    errors.extend(f"CSP {v}" for v in page.evaluate("window.__cspViolations"))
    context.close()

    # Screenshots, light and dark, three widths; the dark page is the inverted light one.
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        watch(page, errors)
        page.goto(url + "/login")
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(url + "/")
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 1000 if width > 400 else 844})
            open_docs(page, url, errors)
            shot = tmp_path / f"api-docs-{width}-{scheme}.png"
            page.screenshot(path=str(shot))
            if os.environ.get("GLIMPSER_SCREENSHOTS") == "1":
                shutil.copy(shot, SHOTS / shot.name)
        context.close()
    assert not errors, "\n".join(errors)


def test_the_docs_page_needs_a_sign_in(live_server: LiveServer):
    response = requests.get(live_server.url + "/docs/api", allow_redirects=False, timeout=30)
    assert response.status_code == 302
    assert "/docs/api" in response.headers["Location"]
