"""Admin → Backups in a real browser against gunicorn and a real `glimpser worker`: "Back up
now" shows the job waiting, then done without a reload (htmx), the archive is listed,
downloads as a readable backup and is deleted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from glimpser.backups import archive
from tests.conftest import stop_process
from tests.helpers import ROOT, first_run_in_browser

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_back_up_now_download_and_delete(live_server, page: Page, tmp_path: Path):
    first_run_in_browser(page, live_server.url)
    page.goto(live_server.url + "/admin/")
    page.get_by_role("link", name="Backups", exact=False).first.click()
    expect(page.get_by_role("heading", name="Backups", exact=True)).to_be_visible()
    expect(page.locator("#archives")).to_contain_text("No backups in the folder yet")

    page.get_by_label("Include the snapshot files").check()
    page.get_by_role("button", name="Back up now").click()
    status = page.locator("#backup-status")
    expect(status).to_contain_text("waiting for a worker")  # no worker runs yet

    worker = subprocess.Popen(
        [sys.executable, "-m", "glimpser.cli", "worker", "--queues", "maintenance"],
        env=live_server.env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    try:
        # The status refreshes itself (htmx) until the job is done.
        expect(status).to_contain_text("The last backup is done", timeout=90_000)
    finally:
        stop_process(worker)

    page.reload()
    row = page.locator("#archives tr[data-backup]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("with 0 snapshot files")
    with page.expect_download() as download_info:
        row.get_by_role("link", name="Download").click()
    saved = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(saved)
    manifest = archive.read_manifest(saved)
    assert manifest["database"] == "sqlite" and manifest["contents"]["secret_key"] is False

    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status").first).to_contain_text("deleted")
    expect(page.locator("#archives")).to_contain_text("No backups in the folder yet")
