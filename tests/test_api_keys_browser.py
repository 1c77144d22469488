"""Profile → API keys in a real browser against the live server: make a key, copy it from the
page (the Copy button, through the clipboard), use it with `requests` on /api/v1/streams,
revoke it, and get 401; Admin → API keys lists it. No console error or CSP violation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from glimpser.config import load_settings
from glimpser.db import database, init_database
from glimpser.models import Stream
from tests.conftest import LiveServer, start_live_server, stop_process
from tests.helpers import PASSWORD, first_run_in_browser

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def server(tmp_path: Path, redis_url: str, redis_client) -> Iterator[LiveServer]:
    live = start_live_server(tmp_path / "data", redis_url)
    yield live
    stop_process(live.proc)


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


def test_make_copy_use_and_revoke_a_key(server, browser: Browser):
    url = server.url
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    errors = watch_errors(page)
    first_run_in_browser(page, url, "alice", PASSWORD)
    init_database(load_settings(server.env).database_url)
    with database.connection_context():
        Stream.create(
            name="Porch",
            kind="http_image",
            config={"kind": "http_image", "url": "http://192.0.2.1/x.jpg"},
            enabled=False,
            state="paused",
        )

    page.goto(url + "/profile/")
    page.get_by_role("link", name="Your API keys").click()
    expect(page.get_by_role("heading", name="Your API keys")).to_be_visible()
    page.get_by_label("Name").fill("Home Assistant")
    page.get_by_label("Read: everything the user may see").check()
    page.get_by_label("Limit to these streams").select_option(label="Porch")
    page.get_by_label("Expires after (days)").fill("7")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name="New API key “Home Assistant”")).to_be_visible()
    expect(page.get_by_text("You will not see it again")).to_be_visible()

    page.get_by_role("button", name="Copy to the clipboard").click()
    expect(page.get_by_role("status").filter(has_text="Copied.")).to_be_visible()
    token = page.evaluate("navigator.clipboard.readText()")
    assert token.startswith("glp_")
    assert token == page.get_by_label("API key").input_value()

    listed = requests.get(
        url + "/api/v1/streams", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert listed.status_code == 200, listed.text
    assert [s["name"] for s in listed.json()["items"]] == ["Porch"]

    page.get_by_role("button", name="Done").click()
    prefix = token[4:12]
    row = page.locator(f"#key-{prefix}")
    expect(row).to_contain_text("Home Assistant")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("from 127.0.0.1")
    expect(page.get_by_text(token)).to_have_count(0)
    page.get_by_role("button", name=f"Revoke key {prefix}").click()
    expect(page.get_by_role("heading", name=re.compile(f"^Revoke key {prefix}"))).to_be_visible()
    page.get_by_role("button", name=f"Revoke key {prefix}").click()
    expect(page.get_by_text(f"Key {prefix} (Home Assistant) is revoked.")).to_be_visible()
    expect(page.locator(f"#key-{prefix}")).to_contain_text("revoked")

    refused = requests.get(
        url + "/api/v1/streams", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert refused.status_code == 401
    assert refused.headers["Content-Type"].startswith("application/problem+json")

    page.goto(url + "/admin/")
    page.get_by_role("link", name="API keys: scripts and home automation").click()
    expect(page.locator(f"#key-{prefix}")).to_contain_text("alice")
    expect(page.locator(f"#key-{prefix}")).to_contain_text("revoked")
    page.wait_for_load_state("networkidle")
    assert not errors, errors
    context.close()
