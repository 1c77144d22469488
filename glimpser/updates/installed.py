"""The releases installed side by side, and which one runs.

    <data dir>/releases/<version>-<attempt id>/src    the release's source (editable install)
    <data dir>/releases/<version>-<attempt id>/venv   its virtualenv, from its lock file
    <data dir>/releases/current -> <version>-<attempt id>

`glimpser serve` (glimpser.supervisor) starts its processes with the interpreter of the release
`current` names; without `current` it runs the installation it was itself started from (a
checkout after `make run`, say), called the base installation here. Switching is replacing the
`current` link in one rename, so a process starting at any moment sees one release or the other.

Only `glimpser serve` manages its processes: under a Procfile or systemd units written by the
operator nothing here is used, and Admin → Updates shows the commands instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from glimpser.config import Settings

CURRENT = "current"
# Set by `glimpser serve` in the environment of every process it starts.
SUPERVISOR_ENV = "GLIMPSER_SUPERVISOR_PID"


def releases_dir(settings: Settings) -> Path:
    path = settings.data_dir / "releases"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def python_of(release_dir: Path | None) -> str:
    """The interpreter a release's processes run with (None: the base installation's, which is
    the one running this code in the supervisor)."""
    return str(release_dir / "venv" / "bin" / "python") if release_dir else sys.executable


def glimpser_command(release_dir: Path | None, *args: str) -> list[str]:
    """`glimpser ARGS` run by a release's interpreter. `-P` keeps the working directory off
    sys.path, so a checkout it runs in (with its own glimpser/ folder) is never imported in
    place of the release; the working directory still matters for the `.env` file."""
    return [python_of(release_dir), "-P", "-m", "glimpser.cli", *args]


def active_release(settings: Settings) -> Path | None:
    """The release folder `current` names, or None for the base installation."""
    link = releases_dir(settings) / CURRENT
    if not link.is_symlink():
        return None
    target = link.resolve()
    if not Path(python_of(target)).exists():
        return None  # a link to a removed release: the base installation runs
    return target


def running_version(settings: Settings) -> str:
    """The version the processes run: the active release's, else this installation's."""
    import tomllib

    import glimpser

    release = active_release(settings)
    if release is None:
        return glimpser.__version__
    try:
        with (release / "src" / "pyproject.toml").open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, ValueError, KeyError):
        return glimpser.__version__


def switch_to(settings: Settings, release_dir: Path | None) -> None:
    """Make `release_dir` the one processes start from (None: the base installation), in one
    rename."""
    folder = releases_dir(settings)
    link = folder / CURRENT
    if release_dir is None:
        link.unlink(missing_ok=True)
        return
    part = folder / f".{CURRENT}.part"
    part.unlink(missing_ok=True)
    part.symlink_to(release_dir.name)  # relative: the data directory may move
    os.replace(part, link)


def pid_file(settings: Settings) -> Path:
    return settings.data_dir / "serve.pid"


def _serving(pid: int) -> bool:
    """Whether `pid` is a running `glimpser serve` (not another process that reused the pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in cmdline and any(b"glimpser" in part for part in cmdline)


def supervisor_pid(settings: Settings) -> int | None:
    """The pid of the `glimpser serve` running this data directory's processes, or None when
    none runs (a Procfile or systemd units run them, or nothing does)."""
    raw = os.environ.get(SUPERVISOR_ENV, "")
    if not raw:
        try:
            raw = pid_file(settings).read_text().strip()
        except OSError:
            return None
    if not (raw.isascii() and raw.isdigit()) or not _serving(int(raw)):
        return None
    return int(raw)


def child_environment(settings: Settings, release_dir: Path | None) -> dict[str, str]:
    """The environment a supervised process starts with."""
    env = dict(os.environ)
    env["GLIMPSER_DATA_DIR"] = str(settings.data_dir)
    env[SUPERVISOR_ENV] = str(os.getpid())
    if release_dir is not None:
        # A release imports its own code: nothing from the base installation's path.
        env.pop("PYTHONPATH", None)
        env["VIRTUAL_ENV"] = str(release_dir / "venv")
    return env


def prune(settings: Settings, keep: set[Path]) -> list[str]:
    """Delete installed releases other than `keep` (the running one and the one a rollback
    would return to); returns the folder names deleted."""
    import shutil

    deleted = []
    for folder in releases_dir(settings).iterdir():
        if folder.name.startswith(".") or folder.is_symlink() or not folder.is_dir():
            continue
        if any(folder.resolve() == k.resolve() for k in keep):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        deleted.append(folder.name)
    return deleted
