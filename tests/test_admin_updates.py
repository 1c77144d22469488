"""Admin → Updates and the update-check jobs, on a real TUF repository built from this checkout
at a bumped version and served from loopback (tests/updates_support.py), checked by a real RQ
worker; the result as the page, its htmx fragment and the admin home show it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from securesystemslib.signer import CryptoSigner

import glimpser
from glimpser import jobs
from glimpser.db import database
from glimpser.models import AuditLog
from glimpser.updates import last_check
from tests import updates_support
from tests.conftest import run_queued_jobs
from tests.helpers import (
    PASSWORD,
    csrf_from,
    free_port,
    jobs_configured,
    labelled,
    login,
    setup_admin,
)
from tests.updates_support import NEXT, publish, resign_timestamp

# The fixtures of the shared release repository.
artifacts = updates_support.artifacts
repo = updates_support.repo

PAGE = "/admin/updates/"
EVIL = "<script>alert('changelog')</script>"


def _post(client, url: str):  # noqa: ANN001, ANN202
    token = csrf_from(client.get(PAGE).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token})


@pytest.fixture
def published(repo, artifacts):  # noqa: ANN001, ANN201
    """The repository with NEXT published; its changelog carries markup that must stay text."""
    repo["changelog"].write_text(
        repo["changelog"].read_text().replace("- Verified software updates.", f"- {EVIL}")
    )
    updates_support.ok(publish(repo, artifacts[NEXT]))
    return repo


def test_the_page_says_what_to_set_when_updates_are_not_configured(app, redis_client):
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    page = admin.get(PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    labelled(html)
    assert f'Glimpser <strong id="current-version">{glimpser.__version__}</strong>' in html
    assert "Updates are not configured" in html and "<code>GLIMPSER_UPDATE_URL</code>" in html
    if not last_check.PACKAGED_ROOT.exists():
        assert "<code>GLIMPSER_UPDATE_ROOT</code>" in html
    assert "Check now" not in html  # no button that cannot work
    assert "No check has run yet" in html
    # The test app's processes are not run by `glimpser serve`: no Apply button, the commands.
    assert "not run by <code>glimpser serve</code> here" in html
    assert 'id="apply-update"' not in html
    for command in (
        "glimpser update download --to",
        "glimpser backup",
        "pip install --require-hashes -r requirements.lock",
        "glimpser migrate",
        "glimpser restore FILE",
    ):
        assert command in html, command
    # A POST anyway is a clear 409, and queues nothing.
    refused = _post(admin, PAGE + "check")
    assert refused.status_code == 409
    assert "GLIMPSER_UPDATE_URL" in refused.get_data(as_text=True)
    index = admin.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/updates/"' in index and "is available" not in index
    with jobs_configured(app):
        assert jobs.scheduled_update_check() == {"skipped": "updates are not configured"}
    with app.app_context(), database.connection_context():
        assert last_check.load() is None


def test_check_now_finds_the_new_version_through_a_worker(
    app_factory, database_url, redis_client, published
):
    app = app_factory(
        database_url,
        GLIMPSER_UPDATE_URL=published["url"],
        GLIMPSER_UPDATE_ROOT=str(published["root"]),
    )
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    html = admin.get(PAGE).get_data(as_text=True)
    assert "Updates are not configured" not in html
    assert f"<code>{published['url']}</code>" in html and "No check has run yet" in html

    assert _post(admin, PAGE + "check").status_code == 302
    waiting = admin.get(PAGE).get_data(as_text=True)
    assert "waiting for a worker" in waiting and 'hx-get="/admin/updates/status"' in waiting
    _post(admin, PAGE + "check")  # a second click while it waits queues nothing more
    assert "already waiting or running" in admin.get(PAGE).get_data(as_text=True)

    with jobs_configured(app):
        run_queued_jobs(app, ("maintenance",))
    status = admin.get(PAGE + "status").get_data(as_text=True)
    assert "hx-get" not in status  # done: the fragment stops polling
    assert f"Glimpser {NEXT} is available" in status
    size = published["dir"].joinpath("targets").iterdir().__next__().stat().st_size
    assert f"glimpser-{NEXT}.tar.gz" in status
    with app.test_request_context():
        from flask import render_template_string

        shown_size = render_template_string("{{ n|filesizeformat }}", n=size)
    assert shown_size in status
    # The changelog is text: the markup in it is escaped, never rendered.
    assert EVIL not in status
    assert "&lt;script&gt;alert(" in status and 'id="changelog"' in status
    page = admin.get(PAGE).get_data(as_text=True)
    assert f"/opt/glimpser/{NEXT}" in page and EVIL not in page
    index = admin.get("/admin/").get_data(as_text=True)
    assert f"Glimpser {NEXT} is available" in index
    with database.connection_context():
        actions = [a.action for a in AuditLog.select().order_by(AuditLog.id)]
    assert actions.count("update.check") == 1

    # Metadata re-signed by a key the root does not trust: the check fails, in words, and the
    # release the last good check found stays on the page.
    resign_timestamp(
        published, CryptoSigner.generate_ed25519(), datetime.now(UTC) + timedelta(days=7)
    )
    assert _post(admin, PAGE + "check").status_code == 302
    with jobs_configured(app):
        run_queued_jobs(app, ("maintenance",))
    status = admin.get(PAGE + "status").get_data(as_text=True)
    assert "The last check failed" in status and "not signed by the trusted keys" in status
    assert f"Glimpser {NEXT} is available" in status and "last successful check" in status
    with database.connection_context():
        actions = [a.action for a in AuditLog.select().order_by(AuditLog.id)]
    assert actions.count("update.check") == 2


def test_the_scheduled_check_runs_when_due_and_reports_an_unreachable_server(
    app_factory, redis_client, published
):
    port = free_port()  # nothing listens there
    app = app_factory(
        GLIMPSER_UPDATE_URL=f"http://127.0.0.1:{port}",
        GLIMPSER_UPDATE_ROOT=str(published["root"]),
    )
    assert any(func is jobs.scheduled_update_check for func, _q, _every in jobs.CRON_JOBS)
    with jobs_configured(app):
        result = jobs.scheduled_update_check()
        assert result["newest"] is None and "Cannot reach the update server" in result["error"]
        assert jobs.scheduled_update_check() == {"skipped": "not due"}
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    html = admin.get(PAGE).get_data(as_text=True)
    assert "The last check failed" in html
    assert f"Cannot reach the update server at http://127.0.0.1:{port}" in html
    assert "is available" not in admin.get("/admin/").get_data(as_text=True)

    # Due again (the last check is CHECK_EVERY old) against the real repository.
    good = app_factory(
        GLIMPSER_UPDATE_URL=published["url"], GLIMPSER_UPDATE_ROOT=str(published["root"])
    )
    with good.app_context(), database.connection_context():
        later = last_check.load().checked_at + last_check.CHECK_EVERY
        assert last_check.due(good.extensions["glimpser.settings"], now=later)
    with jobs_configured(good), good.app_context(), database.connection_context():
        stored = last_check.check_and_store(good.extensions["glimpser.settings"])
    assert stored.error == "" and stored.newest.version == NEXT and stored.update_available
    assert f"Glimpser {NEXT} is available" in admin.get("/admin/").get_data(as_text=True)


def test_viewers_get_nothing_and_posts_need_the_csrf_token(app_factory, redis_client, published):
    from glimpser.auth.users import create_user

    app = app_factory(
        GLIMPSER_UPDATE_URL=published["url"], GLIMPSER_UPDATE_ROOT=str(published["root"])
    )
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    with database.connection_context():
        create_user("victor", PASSWORD, "viewer")
    viewer = app.test_client()
    login(viewer, "victor", PASSWORD)
    token = csrf_from(viewer.get("/").get_data(as_text=True))
    assert viewer.get(PAGE).status_code == 403
    assert viewer.get(PAGE + "status").status_code == 403
    assert viewer.post(PAGE + "check", data={"csrf_token": token}).status_code == 403
    stranger = app.test_client()
    assert stranger.get(PAGE).status_code in (302, 401)
    # Without a CSRF token nothing is queued.
    assert admin.post(PAGE + "check").status_code == 400
    assert "waiting for a worker" not in admin.get(PAGE).get_data(as_text=True)
