"""Whether a request is htmx asking for a fragment of a page, and rendering one."""

from __future__ import annotations

from typing import Any

from flask import current_app, request


def is_fragment_request() -> bool:
    """htmx swaps a fragment in; a history restore (back button, cache miss) wants the page."""
    return bool(request.headers.get("HX-Request")) and not request.headers.get(
        "HX-History-Restore-Request"
    )


def render_block(template_name: str, block: str, **context: Any) -> str:
    """Render one block of a template: the fragment and the page come from the same source."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    app.update_template_context(context)
    template = app.jinja_env.get_template(template_name)
    return "".join(template.blocks[block](template.new_context(context)))
