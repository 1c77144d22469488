"""Admin → Updates in a real browser against gunicorn and a real `glimpser worker`, on a real TUF
repository served from loopback: "Check now" shows the check waiting, then the newer release and
its changelog (as text) without a reload (htmx); the admin home then notes the release; axe-core
finds no serious violation on the page. Screenshots go to docs/screenshots/ when
GLIMPSER_SCREENSHOTS=1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests import updates_support
from tests.conftest import start_live_server, stop_process
from tests.helpers import ROOT, first_run_in_browser, shoot_widths
from tests.updates_support import NEXT, ok, publish

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# The fixtures of the shared release repository.
artifacts = updates_support.artifacts
repo = updates_support.repo

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
EVIL = "<script>window.changelogRan = true</script>"


def test_check_now_shows_the_new_release(
    tmp_path: Path, redis_url: str, redis_client, repo, artifacts, browser: Browser
):
    repo["changelog"].write_text(
        repo["changelog"].read_text().replace("- Verified software updates.", f"- {EVIL}")
    )
    ok(publish(repo, artifacts[NEXT]))
    server = start_live_server(
        tmp_path / "live-data",
        redis_url,
        GLIMPSER_UPDATE_URL=repo["url"],
        GLIMPSER_UPDATE_ROOT=str(repo["root"]),
    )
    # axe is injected: this test-only context bypasses the CSP.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    worker = None
    try:
        first_run_in_browser(page, server.url)
        page.goto(server.url + "/admin/")
        page.get_by_role("link", name="Updates", exact=False).first.click()
        expect(page.get_by_role("heading", name="Updates", exact=True)).to_be_visible()
        status = page.locator("#update-status")
        expect(status).to_contain_text("No check has run yet")

        page.get_by_role("button", name="Check now").click()
        expect(status).to_contain_text("waiting for a worker")  # no worker runs yet
        worker = subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", "worker", "--queues", "maintenance"],
            env=server.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        # The status refreshes itself (htmx) until the check has ended.
        expect(status).to_contain_text(f"Glimpser {NEXT} is available", timeout=90_000)
        expect(page.locator("#changelog")).to_contain_text(EVIL)  # shown as text
        assert page.evaluate("window.changelogRan === undefined")

        page.add_script_tag(path=str(AXE))
        violations = page.evaluate(
            """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
                 .filter(v => ["serious", "critical"].includes(v.impact)).map(v => v.id)"""
        )
        assert violations == []
        page.reload()  # the manual steps name the new version once the page is rendered anew
        expect(page.locator("#manual-steps")).to_contain_text(f"/opt/glimpser/{NEXT}")
        shoot_widths(page, tmp_path, "updates", keep_in=SHOTS)

        page.goto(server.url + "/admin/")
        note = page.locator("#update-available")
        expect(note).to_contain_text(f"Glimpser {NEXT} is available")
        note.get_by_role("link").click()
        expect(page.locator("#manual-steps")).to_contain_text(f"/opt/glimpser/{NEXT}")
    finally:
        context.close()
        if worker is not None:
            stop_process(worker)
        stop_process(server.proc)
