"""Admin → Updates: the version running, whether updates are configured, the last check (its
newest release, size and changelog, or its error) and "Check now"; "Apply" with its progress,
"Cancel" until the switch, "Roll back", and the history of attempts with their logs.

The check and the apply run as jobs on the maintenance queue (queued through glimpser.queues),
like Admin → Backups' "Back up now". An apply is an attempt (glimpser.updates.attempts) that
the worker prepares and `glimpser serve` switches over; the page shows the attempt's steps,
polling while it runs. Where `glimpser serve` does not run the processes (a Procfile, systemd
units), there is nothing to restart them, so the page shows the commands instead of "Apply".
Checking, applying, cancelling and rolling back are recorded in the audit log.
"""

from __future__ import annotations

import redis
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from rq.exceptions import NoSuchJobError
from rq.job import Job
from werkzeug.wrappers import Response

import glimpser
from glimpser import queues
from glimpser.config import Settings
from glimpser.db import write_transaction
from glimpser.updates import attempts, install, installed, last_check, switch
from glimpser.updates.attempts import Attempt, StepFailed
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


def _reconcile(settings: Settings, attempt: Attempt) -> Attempt:
    """An attempt a worker was preparing whose job failed or vanished (the worker was killed)
    is finished as failed, so it no longer blocks the next one."""
    if attempt.state != attempts.RUNNING or attempt.by == "command line":
        return attempt
    try:
        job = Job.fetch(f"update-apply-{attempt.id}", connection=_redis())
        status = job.get_status(refresh=False)
    except NoSuchJobError:
        status = None
    except redis.RedisError:
        return attempt
    if status in (None, "failed", "stopped", "canceled"):
        attempts.Recorder(settings, attempt).finish(
            attempts.FAILED, "The worker preparing the update stopped before it ended."
        )
        return attempts.load(settings, attempt.id) or attempt
    return attempt


def _attempts_context(settings: Settings) -> dict:
    history = [_reconcile(settings, a) for a in attempts.history(settings)]
    active = next((a for a in history if a.active), None)
    current = installed.active_release(settings)
    last_update = next(
        (a for a in history if a.kind == "update" and a.state == attempts.SUCCEEDED), None
    )
    can_roll_back = (
        current is not None
        and last_update is not None
        and last_update.release_dir == str(current)
        and active is None
    )
    return {
        "active": active,
        "history": history[:20],
        "rollback_from": last_update if can_roll_back else None,
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
        managed=installed.supervisor_pid(settings) is not None,
        **_status_context(),
        **_attempts_context(settings),
    )


@bp.get("/progress")
def progress() -> str:
    """The attempt running now (or the one that just ended), polled while one runs."""
    return render_block(
        TEMPLATE, "progress", poll_every=POLL_EVERY, **_attempts_context(current_settings())
    )


@bp.get("/attempts/<attempt_id>")
def attempt(attempt_id: str) -> str:
    """One attempt: its steps and its whole log."""
    settings = current_settings()
    found = attempts.load(settings, attempt_id)
    if found is None:
        abort(404)
    return render_template(
        "admin/update_attempt.html",
        attempt=_reconcile(settings, found),
        log=attempts.read_log(settings, attempt_id),
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


@bp.post("/apply")
def apply() -> Response:
    """Start an update to the newest release the last check found (the version the admin saw,
    sent with the form, must still be it)."""
    settings = current_settings()
    last = last_check.load()
    if last is None or not last.update_available or last.newest is None:
        abort(409, "There is no newer release to apply: check for updates first.")
    if request.form.get("version") != last.newest.version:
        abort(409, "The newest release changed since this page was shown: reload it.")
    if installed.supervisor_pid(settings) is None:
        abort(409, "Glimpser's processes are not run by glimpser serve here: see the commands.")
    if attempts.active(settings) is not None:
        flash("An update is already running; its progress is below.", "info")
        return redirect(url_for("admin_updates.index"))
    attempt = attempts.new(
        settings, "update", last.newest.version, glimpser.__version__, current_user.username
    )
    try:
        queues.enqueue_update_apply(_redis(), attempt.id)
    except redis.RedisError:
        attempts.Recorder(settings, attempt).finish(attempts.FAILED, "Redis is not reachable.")
        abort(503, "Redis is not reachable; the update was not started.")
    with write_transaction():
        audit("update.apply", "updates", {"version": attempt.version, "attempt": attempt.id})
    flash(f"Updating to {attempt.version}: the progress is below.", "success")
    return redirect(url_for("admin_updates.index"))


@bp.post("/attempts/<attempt_id>/cancel")
def cancel(attempt_id: str) -> Response:
    settings = current_settings()
    if attempts.load(settings, attempt_id) is None:
        abort(404)
    if not attempts.request_cancel(settings, attempt_id):
        abort(409, "This update can no longer be cancelled: it is switching over or has ended.")
    with write_transaction():
        audit("update.cancel", "updates", {"attempt": attempt_id})
    flash("Cancelling: the update stops at its next step.", "info")
    return redirect(url_for("admin_updates.index"))


@bp.post("/rollback")
def rollback() -> Response:
    """Go back to the release the last update replaced (glimpser.updates.switch)."""
    settings = current_settings()
    supervisor = installed.supervisor_pid(settings)
    if supervisor is None:
        abort(409, "Glimpser's processes are not run by glimpser serve here: see the commands.")
    if attempts.active(settings) is not None:
        abort(409, "An update is running; wait for it to end.")
    try:
        planned = switch.plan_rollback(settings, current_user.username)
    except StepFailed as exc:
        abort(409, str(exc))
    install.request_switch(settings, planned.id, supervisor)
    with write_transaction():
        audit("update.rollback", "updates", {"to": planned.version, "attempt": planned.id})
    flash(f"Rolling back to {planned.version}: the progress is below.", "success")
    return redirect(url_for("admin_updates.index"))
