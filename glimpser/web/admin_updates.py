"""Admin → Updates: the version running, whether updates are configured, the last check (its
newest release, size and changelog, or its error) and "Check now".

The check runs as a job on the maintenance queue (queued through glimpser.queues), like Admin →
Backups' "Back up now"; the page shows the job as Redis has it and, once it ends, the result the
job stored (glimpser.updates.last_check). Applying an update is not built yet: the page shows
the commands an operator runs instead. "Check now" is recorded in the audit log.
"""

from __future__ import annotations

import redis
from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from rq.exceptions import NoSuchJobError
from rq.job import Job
from werkzeug.wrappers import Response

import glimpser
from glimpser import queues
from glimpser.db import write_transaction
from glimpser.updates import last_check
from glimpser.updates.client import _shown_url
from glimpser.web.admin_backups import PENDING, POLL_EVERY, _job_status
from glimpser.web.app_settings import current_settings
from glimpser.web.audit import audit
from glimpser.web.htmx import render_block

bp = Blueprint("admin_updates", __name__, url_prefix="/admin/updates")

TEMPLATE = "admin/updates.html"


def _redis() -> redis.Redis:
    return current_app.extensions["glimpser.redis"]


def _status_context() -> dict:
    return {
        "job": _job_status(queues.UPDATE_CHECK_JOB_ID),
        "last": last_check.load(),
        "poll_every": POLL_EVERY,
    }


@bp.get("/")
def index() -> str:
    settings = current_settings()
    return render_template(
        TEMPLATE,
        current_version=glimpser.__version__,
        missing=last_check.missing_settings(settings),
        # The URL without any user:password@ part.
        update_url=_shown_url(settings.update_url) if settings.update_url else "",
        root=str(settings.update_root) if settings.update_root else "",
        packaged_root=str(last_check.PACKAGED_ROOT),
        every_hours=int(last_check.CHECK_EVERY.total_seconds() // 3600),
        **_status_context(),
    )


@bp.get("/status")
def status() -> str:
    """The last check and its job, polled by the page while a check waits or runs."""
    return render_block(TEMPLATE, "status", **_status_context())


@bp.post("/check")
def check_now() -> Response:
    """Queue an update check on the maintenance queue (one at a time)."""
    missing = last_check.missing_settings(current_settings())
    if missing:
        names = " and ".join(name for name, _why in missing)
        abort(409, f"Updates are not configured: set {names} (see Admin → Updates).")
    connection = _redis()
    try:
        try:
            previous = Job.fetch(queues.UPDATE_CHECK_JOB_ID, connection=connection)
        except NoSuchJobError:
            previous = None
        if previous is not None and previous.get_status(refresh=False) in PENDING:
            flash("A check is already waiting or running; wait for it to end.", "info")
            return redirect(url_for("admin_updates.index"))
        with write_transaction():
            if previous is not None:
                previous.delete()  # its outcome was shown; a new check takes its place
            queues.enqueue_update_check(connection)
            audit("update.check", "updates", {})
    except redis.RedisError:
        abort(503, "Redis is not reachable; no check was started.")
    flash("The check is queued; this page shows its result when it is done.", "success")
    return redirect(url_for("admin_updates.index"))
