"""Applying an update, first half: everything that happens while the old release keeps running.

download (through TUF: signed hashes and length, expiry, rollback and freeze protection) →
backup (glimpser.backups.archive) → install (the archive unpacked into a folder of its own, a
virtualenv made by uv from the release's own lock file, hashes required) → check (the new
interpreter imports the release and reports the expected version) → hand over to the
supervisor, which stops the processes, migrates, switches and verifies (glimpser.updates.switch).

Until the hand-over an admin can cancel: every step checks for it, and a running install is
stopped. A failed or cancelled attempt removes its half-installed folder and changes nothing
else (its backup stays, as any backup does).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from glimpser.backups import archive
from glimpser.config import Settings
from glimpser.updates import attempts, client, installed
from glimpser.updates.attempts import Attempt, Cancelled, Recorder, StepFailed

log = logging.getLogger(__name__)

# The file the worker leaves for the supervisor, naming the attempt to switch to.
REQUEST = "switch-request.json"
# Bounds that only end a hung step (each is far beyond what the step takes).
INSTALL_SECONDS = 30 * 60
CHECK_SECONDS = 120


def downloads_dir(settings: Settings) -> Path:
    return settings.data_dir / "updates" / "downloads"


def request_path(settings: Settings) -> Path:
    return settings.data_dir / "updates" / REQUEST


def uv_binary() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def run_logged(
    rec: Recorder, args: list[str], *, timeout: float, env: dict[str, str] | None = None
) -> str:
    """Run a command, its output into the attempt's log; stop it when the attempt is
    cancelled. Raises StepFailed when it fails."""
    rec.log("$ " + " ".join(args))
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(
            args, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if rec.attempt.state == attempts.RUNNING and rec.cancel_requested():
                    proc.terminate()
                    proc.wait(timeout=30)
                    raise Cancelled("cancelled by an admin")
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    raise StepFailed(f"{Path(args[0]).name} did not finish in {timeout:.0f} s")
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        output.seek(0)
        text = output.read().decode(errors="replace")
    for line in text.splitlines()[-200:]:
        rec.log("  " + line)
    if proc.returncode != 0:
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
        raise StepFailed(f"{Path(args[0]).name} {args[1]} failed (exit {proc.returncode}): {last}")
    return text


def _unpack(artifact: Path, release_dir: Path) -> Path:
    """The archive's one top folder, unpacked as release_dir/src (tarfile's "data" filter
    refuses absolute paths, links out of the folder, devices)."""
    work = release_dir / ".unpack"
    work.mkdir(parents=True)
    try:
        with tarfile.open(artifact, "r:gz") as tar:
            tar.extractall(work, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise StepFailed(f"cannot unpack {artifact.name}: {exc}") from None
    tops = list(work.iterdir())
    if len(tops) != 1 or not (tops[0] / "requirements.lock").is_file():
        raise StepFailed(f"{artifact.name} is not a release archive (one folder with a lock file)")
    src = release_dir / "src"
    tops[0].rename(src)
    work.rmdir()
    return src


def _install(rec: Recorder, settings: Settings, artifact: Path) -> Path:
    attempt = rec.attempt
    release_dir = installed.releases_dir(settings) / f"{attempt.version}-{attempt.id}"
    attempt.release_dir = str(release_dir)
    rec.save()
    src = _unpack(artifact, release_dir)
    venv, uv = release_dir / "venv", uv_binary()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    run_logged(rec, [uv, "venv", "--quiet", "--python", _base_python(), str(venv)],
               timeout=INSTALL_SECONDS, env=env)  # fmt: skip
    python = installed.python_of(release_dir)
    lock = str(src / "requirements.lock")
    run_logged(rec, [uv, "pip", "install", "--python", python, "--require-hashes", "-r", lock],
               timeout=INSTALL_SECONDS, env=env)  # fmt: skip
    run_logged(rec, [uv, "pip", "install", "--python", python, "--no-deps", "-e", str(src)],
               timeout=INSTALL_SECONDS, env=env)  # fmt: skip
    return release_dir


def _base_python() -> str:
    """The interpreter the virtualenvs are made from (this venv's base, not the venv's)."""
    return getattr(sys, "_base_executable", "") or sys.executable


def _check(rec: Recorder, release_dir: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = run_logged(
        rec,
        installed.glimpser_command(release_dir, "--version"),
        timeout=CHECK_SECONDS,
        env=env,
    )
    if rec.attempt.version not in out.split():
        raise StepFailed(
            f"the installed release reports {out.strip()!r}, not version {rec.attempt.version}"
        )
    return out.strip()


def request_switch(settings: Settings, attempt_id: str, supervisor: int) -> None:
    """Ask the supervisor (pid) to switch to a SWITCHING attempt: a request file, then
    SIGUSR1."""
    path = request_path(settings)
    part = path.with_name(f".{path.name}.part")
    part.write_text(attempt_id)
    os.replace(part, path)
    os.kill(supervisor, signal.SIGUSR1)


def hand_over(settings: Settings, rec: Recorder, supervisor: int | None) -> None:
    """Leave the attempt to the supervisor (no cancel from here on) and wake it; without a
    supervisor the caller switches itself."""
    rec.attempt.state = attempts.SWITCHING
    rec.save()
    if supervisor is not None:
        rec.log(f"handed over to glimpser serve (pid {supervisor})")
        request_switch(settings, rec.attempt.id, supervisor)


def prepare(settings: Settings, attempt: Attempt, *, supervisor: int | None) -> bool:
    """Download, back up, install and check the attempt's release, then hand it over to the
    supervisor (pid `supervisor`; None: the caller switches itself). False when the attempt
    failed or was cancelled (it is then finished, with its reason)."""
    rec = Recorder(settings, attempt)
    try:
        with rec.step("download") as step:
            found = client.check(settings)
            if found.error:
                raise StepFailed(found.error)
            if found.newest is None or found.newest.version != attempt.version:
                newest = found.newest.version if found.newest else "none"
                raise StepFailed(
                    f"the repository's newest release is now {newest}, not {attempt.version}: "
                    "check again, then apply"
                )
            artifact = client.download(settings, found.newest, downloads_dir(settings))
            step.detail = (
                f"{artifact.name}, {artifact.stat().st_size} bytes, verified against the "
                "signed metadata"
            )
        with rec.step("backup") as step:
            backup = archive.create_backup(settings)
            attempt.backup = str(backup)
            step.detail = backup.name
        with rec.step("install") as step:
            release_dir = _install(rec, settings, artifact)
            step.detail = f"into {release_dir}"
        with rec.step("check") as step:
            step.detail = _check(rec, release_dir)
        rec.check_cancel()
        hand_over(settings, rec, supervisor)
        return True
    except Cancelled:
        _discard(attempt)
        rec.finish(attempts.CANCELLED, "Cancelled before the switch; nothing was changed.")
    except (StepFailed, client.UpdateError, archive.BackupError, OSError) as exc:
        _discard(attempt)
        failed = attempt.steps[-1].name if attempt.steps else "start"
        rec.finish(attempts.FAILED, f"The {failed} step failed: {exc}. Nothing was changed.")
    return False


def _discard(attempt: Attempt) -> None:
    if attempt.release_dir:
        shutil.rmtree(attempt.release_dir, ignore_errors=True)
