"""An admin sets up a webhook channel in a real browser (the kind switch swaps the fields in),
presses "Send test" and sees "sent" appear without a reload — web, RQ worker and scheduler run as
separate processes and the webhook receiver is a real server on loopback. The channel and
delivery pages fit a 375 px phone screen without horizontal scrolling."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from glimpser.notify.schemas import KIND_LABELS
from tests.helpers import first_run_in_browser
from tests.notify.receivers import HttpReceiver, Reply

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SECRET = "browser-SECRET-signing"


def test_create_a_webhook_channel_and_send_a_test(live_stack, page: Page):
    url = live_stack.url
    with HttpReceiver() as receiver:
        first_run_in_browser(page, url)
        page.goto(url + "/admin/")
        page.get_by_role("link", name="Channels: where notifications go").click()
        page.get_by_role("button", name="New channel").click()
        # htmx wires the kind select when the page has loaded; a change before that (a busy
        # machine) would go unheard.
        page.wait_for_load_state("load")

        kind = page.get_by_label("Kind of channel")
        kind.select_option(label=KIND_LABELS["pushover"])
        expect(page.get_by_label("Application token")).to_be_visible()
        expect(page.get_by_label("URL", exact=True)).to_have_count(0)
        kind.select_option(label=KIND_LABELS["webhook"])
        expect(page.get_by_label("URL", exact=True)).to_be_visible()
        expect(page.get_by_label("Application token")).to_have_count(0)

        page.get_by_label("Name", exact=True).fill("Door hook")
        page.get_by_label("URL", exact=True).fill(receiver.url("/hook"))
        page.get_by_label("Extra headers").fill("X-Team: ops")
        page.get_by_label("Signing secret").fill(SECRET)
        page.get_by_role("button", name="Create channel").click()
        expect(page).to_have_url(url + "/admin/channels/")
        expect(page.get_by_role("link", name="Door hook")).to_be_visible()

        page.evaluate("window.__noReload = 'still here'")
        page.get_by_role("button", name="Send test to Door hook").click()
        result = page.locator("#test-result .delivery-card")
        expect(result).to_have_attribute("data-status", "sent", timeout=30_000)
        expect(result.locator(".badge")).to_have_text("sent")
        expect(result).to_contain_text("HTTP 200")
        assert page.evaluate("window.__noReload") == "still here"  # no reload happened

        (request,) = receiver.requests
        assert request.json()["title"] == "Test notification from Glimpser"
        assert request.header("X-Team") == "ops"
        assert request.header("X-Glimpser-Signature").startswith("sha256=")
        assert SECRET not in page.content()

    edit_href = page.get_by_role("link", name="Door hook").get_attribute("href")
    page.goto(url + edit_href)
    expect(page.get_by_label("Signing secret")).to_have_value("")
    expect(page.get_by_label("Signing secret")).to_have_attribute(
        "placeholder", "stored — leave blank to keep"
    )
    assert SECRET not in page.content()

    page.set_viewport_size({"width": 375, "height": 740})
    for path in ("/admin/channels/", "/admin/channels/new", edit_href, "/admin/deliveries/"):
        page.goto(url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{path} is {width}px wide on a 375px screen"
    expect(page.locator("#delivery-log .delivery-sent").first).to_be_visible()


def test_retry_a_failed_delivery_from_the_log(live_stack, page: Page):
    url = live_stack.url
    with HttpReceiver() as receiver:
        receiver.script(Reply(400, "bad request: missing field"))  # a 4xx is not retried
        first_run_in_browser(page, url)
        page.goto(url + "/admin/channels/new")
        page.get_by_label("Name", exact=True).fill("Flaky hook")
        page.get_by_label("URL", exact=True).fill(receiver.url("/hook"))
        page.get_by_role("button", name="Create channel").click()
        page.get_by_role("button", name="Send test to Flaky hook").click()
        result = page.locator("#test-result .delivery-card")
        expect(result).to_have_attribute("data-status", "failed", timeout=30_000)
        expect(result).to_contain_text("missing field")

        page.goto(url + "/admin/deliveries/?status=failed")
        row = page.locator("#delivery-log tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("HTTP 400")
        page.evaluate("window.__noReload = 'still here'")
        page.get_by_role("button", name="Retry delivery").click()
        # The row refreshes itself until the worker has sent it (the receiver now says 200),
        # and stays in view although it no longer matches the "failed" filter.
        expect(row.locator(".badge")).to_have_text("sent", timeout=30_000)
        expect(row).to_contain_text("HTTP 200")
        assert page.evaluate("window.__noReload") == "still here"
        assert len(receiver.requests) == 2
