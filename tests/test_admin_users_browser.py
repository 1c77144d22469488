"""Admin → Users in a real browser: a viewer made with a one-time link sets a password, sees
only their group's streams (also one added to the group later), and is signed out on their
next request once the admin deactivates them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from glimpser.config import load_settings
from glimpser.db import database, init_database
from glimpser.models import Stream
from tests.conftest import LiveServer, start_live_server, stop_process
from tests.helpers import PASSWORD, first_run_in_browser

pytestmark = [pytest.mark.slow, pytest.mark.browser]

VIEWER_PASSWORD = "a lantern in the shed"


@pytest.fixture
def server(tmp_path: Path, redis_url: str, redis_client) -> Iterator[LiveServer]:
    # Loopback sources allowed: the stream the admin adds points at a closed local port.
    live = start_live_server(tmp_path / "data", redis_url, GLIMPSER_ALLOW_LOOPBACK_SOURCES="1")
    yield live
    stop_process(live.proc)


def seed(env: dict[str, str]) -> None:
    init_database(load_settings(env).database_url)
    with database.connection_context():
        for name, groups in (("Garden", ["yard"]), ("Gate", ["front"])):
            Stream.create(
                name=name,
                kind="http_image",
                config={"kind": "http_image", "url": "http://127.0.0.1:9/x.jpg"},
                groups=groups,
                enabled=False,
                state="paused",
            )


def test_a_viewer_with_a_one_time_link_sees_their_group(server, page: Page, browser: Browser):
    url = server.url
    first_run_in_browser(page, url, "alice", PASSWORD)
    seed(server.env)

    # The admin creates a viewer with a one-time link and grants them the group "yard".
    page.goto(url + "/admin/users/")
    page.get_by_role("button", name="New user").click()
    page.get_by_label("Username").fill("vera")
    page.get_by_label("Viewer — granted streams").check()
    page.get_by_label("Make a one-time link").check()
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("heading", name="User “vera” created")).to_be_visible()
    link = page.get_by_label("One-time link").input_value()
    assert "/account/set-password/" in link
    page.get_by_role("button", name="Go to vera's page").click()
    page.get_by_label("yard", exact=True).check()
    page.get_by_role("button", name="Save access").click()
    expect(page.get_by_text("granted group yard")).to_be_visible()

    # The viewer, in another browser, sets a password with the link and signs in.
    context = browser.new_context()
    viewer = context.new_page()
    viewer.goto(link)
    expect(viewer.get_by_label("Username")).to_have_value("vera")
    viewer.get_by_label("Password", exact=True).fill(VIEWER_PASSWORD)
    viewer.get_by_label("Repeat password").fill(VIEWER_PASSWORD)
    viewer.get_by_role("button", name="Set password").click()
    expect(viewer).to_have_url(url + "/login")
    expect(viewer.get_by_text("Your password is set, vera.")).to_be_visible()
    viewer.get_by_label("Username").fill("vera")
    viewer.get_by_label("Password").fill(VIEWER_PASSWORD)
    viewer.get_by_role("button", name="Sign in").click()
    expect(viewer).to_have_url(url + "/")
    viewer.goto(url + "/streams/")
    expect(viewer.get_by_role("link", name="Garden")).to_be_visible()
    expect(viewer.get_by_role("link", name="Gate")).to_have_count(0)
    # The link is used up.
    response = context.request.get(link)
    assert response.status == 410

    # The admin adds a stream to the group: the viewer sees it too.
    page.goto(url + "/streams/new")
    page.get_by_label("Kind of source").select_option("http_image")
    page.get_by_label("Image URL", exact=True).wait_for()
    page.get_by_label("Name", exact=True).fill("Shed")
    page.get_by_label("Groups").fill("yard")
    page.get_by_label("Image URL", exact=True).fill("http://127.0.0.1:9/shed.jpg")
    page.get_by_role("button", name="Create stream").click()
    expect(page.get_by_role("heading", name="Shed")).to_be_visible()
    expect(page.get_by_role("heading", name="Who can see this")).to_be_visible()
    expect(page.locator("#who-can-see").get_by_role("link", name="vera")).to_be_visible()
    viewer.reload()
    expect(viewer.get_by_role("link", name="Shed")).to_be_visible()
    expect(viewer.get_by_role("link", name="Gate")).to_have_count(0)

    # The admin deactivates the viewer: the viewer's open page is signed out on its next request.
    page.goto(url + "/admin/users/")
    page.get_by_role("link", name="vera").click()
    page.get_by_role("button", name="Deactivate").click()
    expect(page.get_by_text("vera is deactivated")).to_be_visible()
    viewer.get_by_role("link", name="Garden").click()
    expect(viewer).to_have_url(url + "/login?next=/streams/1")
    viewer.get_by_label("Username").fill("vera")
    viewer.get_by_label("Password").fill(VIEWER_PASSWORD)
    viewer.get_by_role("button", name="Sign in").click()
    expect(viewer.get_by_text("Wrong username or password.")).to_be_visible()
    context.close()
