"""Software updates verified with The Update Framework (python-tuf): the publishing side
(glimpser.updates.release) and the checking side (glimpser.updates.client)."""

from __future__ import annotations

import re

_VERSION_RE = re.compile(r"^\d{1,6}(\.\d{1,6}){1,3}$")


def parse_version(text: str) -> tuple[int, ...]:
    """A release version such as 0.2.0 as a tuple of numbers, for comparing; ValueError when it
    is not 2 to 4 dot-separated whole numbers."""
    if not _VERSION_RE.match(text or ""):
        raise ValueError(f"{text!r} is not a release version (numbers and dots, e.g. 0.2.0)")
    return tuple(int(part) for part in text.split("."))
