"""The data directory and the files in it that hold secrets are the owner's alone.

glimpser.db holds camera, SMTP, Pushover and webhook secrets; redis.rdb holds queued jobs and
sessions. Both live in GLIMPSER_DATA_DIR, which is made 0700; the files are made 0600 (existing
ones are tightened on start: earlier versions left them 0644).
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create the directory (parents as usual) readable by its owner only; tighten it if it
    exists and is ours."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _tighten(path)


def private_file(path: Path) -> None:
    """Create the file empty with mode 0600 if it is missing; tighten it if it exists."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        _tighten(path)


def _tighten(path: Path) -> None:
    """Remove group and other permissions (only on what this user owns)."""
    try:
        st = path.stat()
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            path.chmod(st.st_mode & 0o700)
    except FileNotFoundError:
        pass
