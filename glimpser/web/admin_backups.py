"""Admin → Backups: the archives of the backups folder, "Back up now", download and delete.

The backup itself runs as a job on the maintenance queue (queued through glimpser.queues); the
page shows that job as it is in Redis: waiting, running, done or failed (with its error). An
archive is named in URLs by its file name, which is only ever matched against the folder's
listing (glimpser.backups.archive.find_backup), never joined into a path as given. Starting,
downloading and deleting are recorded in the audit log.
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
    send_file,
    url_for,
)
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from werkzeug.wrappers import Response

from glimpser import queues, system_status
from glimpser.backups import archive
from glimpser.db import write_transaction
from glimpser.web.app_settings import current_settings
from glimpser.web.audit import audit
from glimpser.web.htmx import render_block

bp = Blueprint("admin_backups", __name__, url_prefix="/admin/backups")

TEMPLATE = "admin/backups.html"
# How often the page asks about a backup job that is waiting or running (seconds).
POLL_EVERY = 3
PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def _redis() -> redis.Redis:
    return current_app.extensions["glimpser.redis"]


def _job_status(job_id: str = queues.BACKUP_JOB_ID) -> dict:
    """The last "Back up now" (or scheduled) backup job as Redis has it: {} when none."""
    try:
        job = Job.fetch(job_id, connection=_redis())
    except NoSuchJobError:
        return {}
    except redis.RedisError as exc:
        return {"state": "unknown", "error": f"Redis is not reachable: {exc}"}
    status = job.get_status(refresh=False)
    state = {
        JobStatus.QUEUED: "waiting for a worker",
        JobStatus.SCHEDULED: "waiting for a worker",
        JobStatus.DEFERRED: "waiting for a worker",
        JobStatus.STARTED: "running",
        JobStatus.FINISHED: "done",
        JobStatus.FAILED: "failed",
        JobStatus.STOPPED: "stopped",
        JobStatus.CANCELED: "cancelled",
    }.get(status, str(status))
    info: dict = {"state": state, "pending": status in PENDING, "job": job}
    info["at"] = job.ended_at or job.started_at or job.enqueued_at
    if status == JobStatus.FINISHED and isinstance(job.return_value(), dict):
        info["archive"] = job.return_value().get("archive", "")
    if status == JobStatus.FAILED:
        result = job.latest_result()
        trace = (result.exc_string if result is not None else "") or ""
        trace = system_status.redact(trace, system_status.secrets_of(current_settings()))
        lines = [line for line in trace.strip().splitlines() if line.strip()]
        info["error"] = lines[-1] if lines else "no error recorded"
    return info


def _context() -> dict:
    settings = current_settings()
    folder = settings.data_dir / "backups"
    try:
        backups, folder_error = archive.list_backups(settings), ""
    except OSError as exc:
        backups, folder_error = [], f"The backups folder cannot be read: {exc.strerror or exc}"
    return {
        "backups": backups,
        "folder": folder,
        "folder_error": folder_error,
        "settings": settings,
        "job": _job_status(),
        "scheduled": _job_status(queues.SCHEDULED_BACKUP_JOB_ID),
        "poll_every": POLL_EVERY,
        "s3_note": archive.S3_NOTE,
    }


@bp.get("/")
def index() -> str:
    return render_template(TEMPLATE, **_context())


@bp.get("/status")
def status() -> str:
    """The job fragment, polled by the page while a backup waits or runs."""
    return render_block(TEMPLATE, "status", job=_job_status(), poll_every=POLL_EVERY)


def _back() -> Response:
    return redirect(url_for("admin_backups.index"))


@bp.post("/run")
def run() -> Response:
    """Queue a backup on the maintenance queue (one at a time)."""
    with_snapshots = request.form.get("with_snapshots") in ("1", "on", "y", "true")
    connection = _redis()
    try:
        try:
            previous = Job.fetch(queues.BACKUP_JOB_ID, connection=connection)
        except NoSuchJobError:
            previous = None
        if previous is not None and previous.get_status(refresh=False) in PENDING:
            flash("A backup is already waiting or running; wait for it to end.", "info")
            return _back()
        with write_transaction():
            if previous is not None:
                previous.delete()  # its outcome was shown; a new run takes its place
            queues.enqueue_backup(connection, with_snapshots)
            audit("backup.start", "backups", {"with_snapshots": with_snapshots})
    except redis.RedisError:
        abort(503, "Redis is not reachable; no backup was started.")
    flash("The backup is queued; this page shows when it is done.", "success")
    return _back()


def _archive_or_404(name: str):  # noqa: ANN202 - a Path
    try:
        path = archive.find_backup(current_settings(), name)
    except OSError:  # no readable folder: no archive of that name either
        path = None
    if path is None:
        abort(404, "There is no backup of this name in the backups folder.")
    return path


@bp.get("/<name>/download")
def download(name: str) -> Response:
    """The archive itself (it holds every secret of the installation: admins only)."""
    path = _archive_or_404(name)
    with write_transaction():
        audit("backup.download", f"backup:{path.name}", {"bytes": path.stat().st_size})
    return send_file(path, mimetype="application/gzip", as_attachment=True, download_name=path.name)


@bp.post("/<name>/delete")
def delete(name: str) -> Response:
    path = _archive_or_404(name)
    with write_transaction():
        audit("backup.delete", f"backup:{path.name}", {"bytes": path.stat().st_size})
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # the audit row goes with the transaction
            abort(409, f"The backup cannot be deleted: {exc.strerror or exc}")
    flash(f"Backup {path.name} deleted.", "success")
    return _back()
