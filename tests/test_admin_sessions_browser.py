"""Two browsers signed in as the same user: one signs the other out from Profile, and the
other's next navigation lands on the sign-in page (Chromium against a live gunicorn)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.helpers import PASSWORD, first_run_in_browser

pytestmark = [pytest.mark.slow, pytest.mark.browser]

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def test_one_browser_signs_the_other_out_from_the_profile(live_server, browser: Browser):
    url = live_server.url
    desk = browser.new_context()
    phone = browser.new_context(user_agent=IPHONE, viewport={"width": 390, "height": 844})
    try:
        mine = desk.new_page()
        first_run_in_browser(mine, url, "alice")
        other = phone.new_page()
        other.goto(url + "/login")
        other.get_by_label("Username").fill("alice")
        other.get_by_label("Password").fill(PASSWORD)
        other.get_by_role("button", name="Sign in").click()
        expect(other).to_have_url(url + "/")

        mine.goto(url + "/profile/")
        sessions = mine.locator("#sessions")
        expect(sessions.locator("mark", has_text="this browser")).to_have_count(1)
        expect(sessions).to_contain_text("Safari on iOS")
        sessions.get_by_role("button", name="Sign out Safari on iOS").click()
        expect(mine).to_have_url(url + "/profile/#sessions")
        expect(mine.get_by_text("Signed out Safari on iOS")).to_be_visible()
        expect(sessions).not_to_contain_text("Safari on iOS")

        other.goto(url + "/events")
        expect(other).to_have_url(url + "/login?next=/events")
        expect(other.get_by_role("button", name="Sign in")).to_be_visible()
        # The browser that did it is still signed in.
        mine.goto(url + "/")
        expect(mine).to_have_url(url + "/")
    finally:
        desk.close()
        phone.close()
