"""Job entry points: the only code RQ workers import and the scheduler registers.

Each job opens its own database connection and logs one line when it ends.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from glimpser import times
from glimpser.db import database

log = logging.getLogger("glimpser.job")

F = TypeVar("F", bound=Callable[..., Any])

AUDIT_RETENTION = timedelta(days=365)


def job(func: F) -> F:
    """Run with a database connection; one structured log line per run."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "failed"
        try:
            with database.connection_context():
                result = func(*args, **kwargs)
            outcome = "ok"
            return result
        finally:
            log.info(
                "job",
                extra={
                    "job": func.__name__,
                    "outcome": outcome,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )

    return wrapper  # type: ignore[return-value]


@job
def prune_audit_log() -> int:
    """Drop audit entries older than a year; returns how many went."""
    from glimpser.models import AuditLog

    cutoff = times.utcnow() - AUDIT_RETENTION
    return AuditLog.delete().where(AuditLog.at < cutoff).execute()


# (function, queue, interval in seconds) registered with RQ's cron scheduler.
CRON_JOBS: list[tuple[Callable[..., Any], str, int]] = [
    (prune_audit_log, "maintenance", 24 * 3600),
]
