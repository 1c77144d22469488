"""Admin → System: queues, the hosts and their processes, failed jobs, storage and versions.

The page is read from the real parts (glimpser.system_status): RQ's registries and workers in
Redis, the cron scheduler's heartbeat, the process heartbeats of web and worker processes
(glimpser.heartbeats), the readers processes' heartbeats, the per-host Chromium slots, the
Snapshot rows and the disk. Processes are grouped by host (glimpser.node); a host none of whose
processes beats any more is shown as gone, not dropped. Two fragments refresh themselves over
htmx: the processes every few seconds, storage (heavier queries) every minute. Failed jobs
can be retried (queued again through glimpser.queues) or deleted; each action is recorded in
the audit log ("job.retry", "job.delete"), written in a transaction around the Redis change:
when Redis fails, no audit row is left claiming a change that did not happen.
"""

from __future__ import annotations

import redis
from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from glimpser import system_status
from glimpser.db import write_transaction
from glimpser.web.app_settings import current_settings
from glimpser.web.audit import audit
from glimpser.web.htmx import render_block

bp = Blueprint("admin_system", __name__, url_prefix="/admin/system")

TEMPLATE = "admin/system/index.html"
# How often the fragments refresh (seconds); the template reads them.
LIVE_EVERY = 5
STORAGE_EVERY = 60


def _redis() -> redis.Redis:
    return current_app.extensions["glimpser.redis"]


@bp.app_template_filter("seconds")
def seconds(value: float | None) -> str:
    """A duration for people: "4 s", "3 min", "2 h 5 min", "3 d 4 h"."""
    if value is None:
        return "—"
    value = int(value)
    if value < 120:
        return f"{value} s"
    if value < 7200:
        return f"{value // 60} min"
    if value < 2 * 86400:
        return f"{value // 3600} h {value % 3600 // 60} min"
    return f"{value // 86400} d {value % 86400 // 3600} h"


def _context() -> dict:
    settings = current_settings()
    connection = _redis()
    status = system_status.collect(connection)
    failed = []
    if not status.redis_error:
        failed = system_status.failed_jobs(connection, system_status.secrets_of(settings))
    return {
        "status": status,
        "failed": failed,
        "storage": _storage(),
        "live_every": LIVE_EVERY,
        "storage_every": STORAGE_EVERY,
    }


def _storage() -> dict:
    settings = current_settings()
    try:
        usage = system_status.storage(settings, _redis())
    except redis.RedisError as exc:
        return {"error": f"Redis is not reachable: {exc}"}
    return {"usage": usage, "versions": system_status.versions(settings.chromium)}


@bp.get("/")
def index() -> str:
    return render_template(TEMPLATE, **_context())


@bp.get("/live")
def live() -> str:
    """The processes fragment (queues, workers, scheduler, readers), polled by the page."""
    return render_block(
        TEMPLATE,
        "live",
        status=system_status.collect(_redis()),
        live_every=LIVE_EVERY,
    )


@bp.get("/storage")
def storage() -> str:
    """The storage and versions fragment, polled by the page (less often: heavier queries)."""
    return render_block(TEMPLATE, "storage", storage=_storage(), storage_every=STORAGE_EVERY)


def _back() -> Response:
    return redirect(url_for("admin_system.index") + "#failed")


@bp.post("/jobs/<job_id>/retry")
def retry(job_id: str) -> Response:
    """Queue a failed job again, at the end of its queue."""
    with write_transaction():
        queue = _or_404(system_status.retry_failed, job_id)
        audit("job.retry", f"job:{job_id}", {"queue": queue})
    flash(f"Job {job_id} is queued again on {queue}.", "success")
    return _back()


@bp.post("/jobs/<job_id>/delete")
def delete(job_id: str) -> Response:
    """Forget a failed job (its data and its place in the failed registry)."""
    with write_transaction():
        queue = _or_404(system_status.delete_failed, job_id)
        audit("job.delete", f"job:{job_id}", {"queue": queue})
    flash(f"Failed job {job_id} deleted.", "success")
    return _back()


@bp.post("/jobs/retry-all")
def retry_all() -> Response:
    """Queue every failed job again."""
    connection = _redis()
    retried: list[str] = []
    lost_redis = False
    try:
        for job_id in system_status.all_failed_ids(connection):
            if system_status.retry_failed(connection, job_id):
                retried.append(job_id)
    except redis.RedisError:
        lost_redis = True  # those queued before stay queued, and are audited below
    if retried:
        with write_transaction():
            audit("job.retry", "jobs:all-failed", {"jobs": retried[:1000], "count": len(retried)})
    if lost_redis:
        abort(503, f"Redis stopped answering; {len(retried)} job(s) were queued again first.")
    flash(
        f"{len(retried)} failed job{'s' if len(retried) != 1 else ''} queued again."
        if retried
        else "There were no failed jobs to retry.",
        "success" if retried else "info",
    )
    return _back()


def _or_404(action, job_id: str) -> str:  # noqa: ANN001 - retry_failed or delete_failed
    try:
        queue = action(_redis(), job_id)
    except redis.RedisError:
        abort(503, "Redis is not reachable; nothing was changed.")
    if queue is None:
        abort(404, "No failed job has this id (it may have been retried or deleted already).")
    return queue
