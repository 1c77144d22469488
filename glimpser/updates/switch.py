"""Applying an update, second half, run by `glimpser serve`'s supervisor once the release is
installed (glimpser.updates.install): stop every process → run the new release's migrations →
switch the `current` link → start the processes on the new release → verify (/readyz answers,
no process exits, and a stream that captured before captures again). If any step fails, it
switches back, restores the pre-update backup when migrations ran, starts the old release again
and records exactly what failed.

The same procedure rolls back a good update on request (`glimpser update rollback`): the
"new" release is then the previous one, and the backup is restored before it starts.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Protocol

from glimpser import db, queues
from glimpser.backups import archive
from glimpser.config import Settings
from glimpser.models import Stream
from glimpser.updates import attempts, install, installed
from glimpser.updates.attempts import Attempt, Recorder, StepFailed

log = logging.getLogger(__name__)

# Bounds that only end a hung step: the web process must answer /readyz within READY_SECONDS
# of starting, a capture must end within CAPTURE_SECONDS.
READY_SECONDS = 180
CAPTURE_SECONDS = 180
MIGRATE_SECONDS = 30 * 60


class Processes(Protocol):
    """What the switch needs from the supervisor."""

    def stop_all(self) -> None: ...

    def start_all(self, release_dir: Path | None) -> None: ...

    def exited(self) -> str:
        """'' while every process runs, else which one exited and how."""

    def web_ready(self) -> bool: ...


def take_request(settings: Settings) -> Attempt | None:
    """The attempt the worker handed over (the request file is removed), if any."""
    path = install.request_path(settings)
    try:
        attempt_id = path.read_text().strip()
    except FileNotFoundError:
        return None
    path.unlink(missing_ok=True)
    attempt = attempts.load(settings, attempt_id)
    if attempt is None or attempt.state != attempts.SWITCHING:
        log.warning("ignoring a switch request for attempt %r: not switching", attempt_id)
        return None
    return attempt


def _release(path: str) -> Path | None:
    return Path(path) if path else None


def _cli(rec: Recorder, release_dir: Path | None, *args: str, timeout: float) -> str:
    env = installed.child_environment(rec.settings, release_dir)
    return install.run_logged(
        rec, installed.glimpser_command(release_dir, *args), timeout=timeout,
        env=env,
    )  # fmt: skip


def _migrations(settings: Settings) -> list[int]:
    database = db.open_database(settings.database_url)
    try:
        return archive.applied_migrations(database)
    finally:
        database.close()


def _wait_ready(procs: Processes, what: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while not procs.web_ready():
        exited = procs.exited()
        if exited:
            raise StepFailed(f"{exited} while {what} started")
        if time.monotonic() > deadline:
            raise StepFailed(f"the web process did not answer /readyz within {READY_SECONDS} s")
        time.sleep(0.5)


def _capture_check(settings: Settings, procs: Processes) -> str:
    """Capture a stream that captured well before the update, and wait for its result."""
    with db.database.connection_context():
        stream = (
            Stream.select()
            .where(Stream.enabled & Stream.last_success_at.is_null(False))
            .where(Stream.deleting_since.is_null())
            .order_by(Stream.last_success_at.desc())
            .first()
        )
        if stream is None:
            return "no stream had captured successfully before; capture check skipped"
        since = stream.last_capture_at
        connection = queues.connect_redis(settings.redis_url)
        from glimpser.capture import scheduling

        scheduling.capture_now(connection, stream)
    deadline = time.monotonic() + CAPTURE_SECONDS
    while time.monotonic() < deadline:
        exited = procs.exited()
        if exited:
            raise StepFailed(f"{exited} while the capture check ran")
        with db.database.connection_context():
            now = Stream.get_or_none(Stream.id == stream.id)
        if now is None:
            return "the stream checked was deleted meanwhile; capture check skipped"
        if now.last_capture_at and (since is None or now.last_capture_at > since):
            if now.last_success_at and now.last_success_at >= now.last_capture_at:
                return f"stream {stream.name!r} captured"
            raise StepFailed(
                f"stream {stream.name!r}, which captured before the update, failed to capture "
                f"on the new release: {now.last_error or 'no error given'}"
            )
        time.sleep(0.5)
    raise StepFailed(f"stream {stream.name!r} was not captured within {CAPTURE_SECONDS} s")


def run(settings: Settings, attempt: Attempt, procs: Processes | None) -> bool:
    """Switch to the attempt's release; roll back if anything fails. `procs` None: no process
    runs (the command line applies an update while Glimpser is stopped), so there is nothing
    to stop, start or verify. True when the new release runs."""
    rec = Recorder(settings, attempt)
    old, new = installed.active_release(settings), _release(attempt.release_dir)
    attempt.from_release_dir = attempt.from_release_dir or (str(old) if old else "")
    restore_first = attempt.kind == "rollback" and bool(attempt.backup)
    before = _migrations(settings)
    stopped = restored = False
    try:
        with rec.step("stop") as step:
            if procs is not None:
                procs.stop_all()
                stopped = True
            else:
                step.detail = "no process was running"
        if restore_first:
            with rec.step("restore backup") as step:
                restored = True
                _cli(rec, new, "restore", "--replace", attempt.backup, timeout=MIGRATE_SECONDS)
                step.detail = Path(attempt.backup).name
        with rec.step("migrate") as step:
            try:
                _cli(rec, new, "migrate", timeout=MIGRATE_SECONDS)
            finally:
                attempt.migrations_ran = _migrations(settings) != before
            after = _migrations(settings)
            added = sorted(set(after) - set(before))
            step.detail = f"applied {', '.join(map(str, added))}" if added else "none to apply"
        with rec.step("switch") as step:
            installed.switch_to(settings, new)
            step.detail = f"now {attempt.version}"
        if procs is None:
            rec.finish(
                attempts.SUCCEEDED,
                f"Glimpser {attempt.version} is installed; `glimpser serve` starts it.",
            )
            return True
        with rec.step("start"):
            procs.start_all(new)
            stopped = False
        with rec.step("verify") as step:
            _wait_ready(procs, "the new release")
            step.detail = "/readyz answers; " + _capture_check(settings, procs)
            exited = procs.exited()
            if exited:
                raise StepFailed(exited)
        _tidy(rec, old, new)
        rec.finish(attempts.SUCCEEDED, f"Glimpser {attempt.version} runs.")
        return True
    except Exception as exc:
        failed = attempt.steps[-1].name if attempt.steps else "switch"
        why = f"The {failed} step failed: {exc}"
        log.error("update to %s failed: %s; rolling back", attempt.version, why)
        _roll_back(rec, old, procs, stopped, restored, why)
        return False


def _tidy(rec: Recorder, old: Path | None, new: Path | None) -> None:
    """Keep the release running and the one a rollback returns to; delete older ones and
    downloaded archives (a release folder holds a whole virtualenv)."""
    try:
        keep = {p for p in (old, new) if p is not None}
        deleted = installed.prune(rec.settings, keep)
        for archive_file in install.downloads_dir(rec.settings).glob("*.tar.gz"):
            archive_file.unlink(missing_ok=True)
        if deleted:
            rec.log(f"deleted older releases: {', '.join(deleted)}")
    except OSError as exc:  # tidying is no reason to fail an update that runs
        rec.log(f"could not delete older releases: {exc}")


def _roll_back(
    rec: Recorder,
    old: Path | None,
    procs: Processes | None,
    stopped: bool,
    restored: bool,
    why: str,
) -> None:
    attempt, settings = rec.attempt, rec.settings
    try:
        with rec.step("switch back") as step:
            if procs is not None and not stopped:
                procs.stop_all()
            installed.switch_to(settings, old)
            step.detail = f"back to {attempt.from_version}"
        note = ""
        if attempt.kind == "update" and attempt.migrations_ran:
            with rec.step("restore backup") as step:
                if not attempt.backup:
                    raise StepFailed("there is no backup to restore")
                _cli(rec, old, "restore", "--replace", attempt.backup, timeout=MIGRATE_SECONDS)
                step.detail = Path(attempt.backup).name
                note = f"; the database was restored from {Path(attempt.backup).name}"
        elif restored:  # a rollback that restored the backup: bring its schema forward again
            with rec.step("migrate back"):
                _cli(rec, old, "migrate", timeout=MIGRATE_SECONDS)
            note = f"; the database holds the backup {Path(attempt.backup).name}"
        if procs is not None:
            with rec.step("start previous"):
                procs.start_all(old)
                _wait_ready(procs, "the previous release")
        rec.finish(attempts.ROLLED_BACK, f"{why}. Glimpser {attempt.from_version} runs again"
                   f"{note}.")  # fmt: skip
    except Exception as exc:  # the operator must step in: say so as plainly as possible
        log.critical("rolling back the update to %s failed: %s", attempt.version, exc)
        rec.finish(
            attempts.FAILED,
            f"{why}. Rolling back failed too ({exc}): see this attempt's log and "
            "docs/updates.md, “When a rollback fails”.",
        )


def interrupted(settings: Settings) -> None:
    """At start: an attempt still switching was cut off (glimpser serve stopped meanwhile)."""
    for attempt in attempts.history(settings):
        if attempt.state == attempts.SWITCHING:
            Recorder(settings, attempt).finish(
                attempts.FAILED,
                "Interrupted: glimpser serve stopped during the switch. The release in "
                f"{os.path.basename(str(installed.active_release(settings) or 'base'))} runs; "
                "check it, and roll back with `glimpser update rollback` if needed.",
            )


def plan_rollback(settings: Settings, by: str) -> Attempt:
    """A rollback attempt back to the release the last update replaced (StepFailed when there
    is none). It restores that update's backup only when the update ran migrations: the old
    release cannot run on the new schema, and everything recorded since is then lost."""
    active = installed.active_release(settings)
    last = next(
        (
            a
            for a in attempts.history(settings)
            if a.kind == "update"
            and a.state == attempts.SUCCEEDED
            and _release(a.release_dir) == active
        ),
        None,
    )
    if active is None or last is None:
        raise StepFailed("no update to roll back: the installation Glimpser started from runs")
    attempt = attempts.new(settings, "rollback", last.from_version, last.version, by)
    attempt.release_dir = last.from_release_dir
    attempt.from_release_dir = str(active)
    attempt.backup = last.backup if last.migrations_ran else ""
    attempt.state = attempts.SWITCHING
    attempts.save(settings, attempt)
    return attempt
