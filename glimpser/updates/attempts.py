"""Update attempts: what each "Apply" (or rollback) did, step by step, with its log.

An attempt is a JSON file and a log file in <data dir>/updates/attempts/, not a database row:
a failed update may restore the database from the backup it took, and the record of that very
attempt must survive the restore. Two processes write an attempt, one after the other: the
worker that prepares the release (download, backup, install, check) and then `glimpser serve`'s
supervisor that switches over (stop, migrate, switch, start, verify, and rolling back). Each
write replaces the file whole (write, then rename), so a reader never sees half a record.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from glimpser import times
from glimpser.config import Settings

log = logging.getLogger(__name__)

# An attempt's state while it runs, and how it ended.
RUNNING = "running"  # preparing: download, backup, install, check (cancel works)
SWITCHING = "switching"  # handed to the supervisor: no cancel from here on
SUCCEEDED = "succeeded"
FAILED = "failed"  # ended before the switch: the installation is as it was
ROLLED_BACK = "rolled back"  # the new release did not come up: the old one runs again
CANCELLED = "cancelled"
ACTIVE = (RUNNING, SWITCHING)
# The newest attempts shown and kept; older ones' files are deleted.
KEEP = 50


class Cancelled(Exception):
    """An admin cancelled the attempt before the switch."""


class StepFailed(Exception):
    """A step failed; the message says what, in one sentence for the admin."""


@dataclass
class Step:
    name: str
    state: str = "running"  # running, done, failed, skipped
    started_at: str = ""
    ended_at: str = ""
    detail: str = ""


@dataclass
class Attempt:
    id: str
    kind: str  # "update" or "rollback"
    version: str  # the version being installed (or rolled back to)
    from_version: str
    by: str  # who asked: a user name or "command line"
    started_at: str
    state: str = RUNNING
    ended_at: str = ""
    message: str = ""  # how it ended, in one sentence
    release_dir: str = ""  # the folder being switched to ("" = the base installation)
    from_release_dir: str = ""  # the folder switched away from ("" = the base installation)
    backup: str = ""  # the backup taken before the switch
    migrations_ran: bool = False
    steps: list[Step] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def cancellable(self) -> bool:
        return self.state == RUNNING

    @property
    def started(self) -> datetime:
        return times.parse(self.started_at)  # type: ignore[return-value]

    @property
    def ended(self) -> datetime | None:
        return times.parse(self.ended_at) if self.ended_at else None


def attempts_dir(settings: Settings) -> Path:
    path = settings.data_dir / "updates" / "attempts"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _now() -> str:
    return times.to_db_text(times.utcnow())


def _valid_id(attempt_id: str) -> bool:
    return len(attempt_id) < 64 and attempt_id.replace("-", "").isalnum() and attempt_id.isascii()


def new(settings: Settings, kind: str, version: str, from_version: str, by: str) -> Attempt:
    stamp = times.utcnow().strftime("%Y%m%dT%H%M%SZ")
    attempt = Attempt(
        id=f"{stamp}-{secrets.token_hex(3)}",
        kind=kind,
        version=version,
        from_version=from_version,
        by=by,
        started_at=_now(),
    )
    save(settings, attempt)
    _prune(settings)
    return attempt


def save(settings: Settings, attempt: Attempt) -> None:
    path = attempts_dir(settings) / f"{attempt.id}.json"
    part = path.with_name(f".{path.name}.part")
    part.write_text(json.dumps(asdict(attempt), indent=2))
    os.replace(part, path)


def _from_json(data: dict) -> Attempt:
    steps = [Step(**step) for step in data.pop("steps", [])]
    known = set(Attempt.__dataclass_fields__)
    return Attempt(**{k: v for k, v in data.items() if k in known}, steps=steps)


def load(settings: Settings, attempt_id: str) -> Attempt | None:
    if not _valid_id(attempt_id):
        return None
    path = attempts_dir(settings) / f"{attempt_id}.json"
    try:
        return _from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.warning("unreadable update attempt %s: %s", path, exc)
        return None


def history(settings: Settings) -> list[Attempt]:
    """Every kept attempt, newest first."""
    found = []
    for path in sorted(attempts_dir(settings).glob("*.json"), reverse=True):
        attempt = load(settings, path.stem)
        if attempt is not None:
            found.append(attempt)
    return found


def active(settings: Settings) -> Attempt | None:
    """The attempt that runs now, if any (there is at most one)."""
    return next((a for a in history(settings) if a.active), None)


def read_log(settings: Settings, attempt_id: str) -> str:
    if not _valid_id(attempt_id):
        return ""
    try:
        return (attempts_dir(settings) / f"{attempt_id}.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _prune(settings: Settings) -> None:
    for path in sorted(attempts_dir(settings).glob("*.json"), reverse=True)[KEEP:]:
        for suffix in (".json", ".log", ".cancel"):
            path.with_suffix(suffix).unlink(missing_ok=True)


def request_cancel(settings: Settings, attempt_id: str) -> bool:
    """Ask a running attempt to stop at its next check; False when it can no longer be
    cancelled (not running, or already switching over)."""
    attempt = load(settings, attempt_id)
    if attempt is None or not attempt.cancellable:
        return False
    (attempts_dir(settings) / f"{attempt_id}.cancel").touch()
    return True


class Recorder:
    """Writes one attempt's steps and log as it goes."""

    def __init__(self, settings: Settings, attempt: Attempt) -> None:
        self.settings = settings
        self.attempt = attempt
        self._log_path = attempts_dir(settings) / f"{attempt.id}.log"

    def log(self, line: str) -> None:
        with self._log_path.open("a") as handle:
            handle.write(f"{_now()} {line.rstrip()}\n")

    def save(self) -> None:
        save(self.settings, self.attempt)

    def cancel_requested(self) -> bool:
        return (attempts_dir(self.settings) / f"{self.attempt.id}.cancel").exists()

    def check_cancel(self) -> None:
        if self.attempt.state == RUNNING and self.cancel_requested():
            raise Cancelled("cancelled by an admin")

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        """Record a step: running, then done, or failed with the exception's message."""
        self.check_cancel()
        step = Step(name=name, started_at=_now())
        self.attempt.steps.append(step)
        self.save()
        self.log(f"{name}: started")
        try:
            yield step
        except BaseException as exc:
            step.state = "failed"
            step.detail = step.detail or str(exc) or type(exc).__name__
            step.ended_at = _now()
            self.save()
            self.log(f"{name}: failed: {step.detail}")
            raise
        step.state = "done" if step.state == "running" else step.state
        step.ended_at = _now()
        self.save()
        self.log(f"{name}: {step.state}" + (f" ({step.detail})" if step.detail else ""))

    def finish(self, state: str, message: str) -> None:
        self.attempt.state = state
        self.attempt.message = message
        self.attempt.ended_at = _now()
        self.save()
        self.log(f"{state}: {message}")
        (attempts_dir(self.settings) / f"{self.attempt.id}.cancel").unlink(missing_ok=True)
