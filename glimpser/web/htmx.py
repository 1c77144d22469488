"""Whether a request is htmx asking for a fragment of a page."""

from __future__ import annotations

from flask import request


def is_fragment_request() -> bool:
    """htmx swaps a fragment in; a history restore (back button, cache miss) wants the page."""
    return bool(request.headers.get("HX-Request")) and not request.headers.get(
        "HX-History-Restore-Request"
    )
