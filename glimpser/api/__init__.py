"""The JSON API, `/api/v1`: one blueprint per resource, nested under `api`.

Authentication and scopes: glimpser.api.auth (called by the access policy). Errors:
glimpser.api.problems. The OpenAPI document: glimpser.api.spec. docs/api.md is the guide.
"""

from __future__ import annotations

import json
import re

from flask import Blueprint, Flask, current_app, request

from glimpser.api import problems
from glimpser.api.spec import document

API_PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=API_PREFIX)
# JSON bodies nested deeper than this are refused (400) before any view parses them.
MAX_JSON_DEPTH = 32


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document (public: it describes the software, not this install's data)."""
    return current_app.json.response(document(current_app))


@bp.before_request
def _json_body() -> None:
    """Refuse a body that is not JSON, or is nested absurdly deep, with a clear 400."""
    if request.method in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return
    # A body: a Content-Length, or chunked (no length, but a body all the same).
    if (
        not request.content_length
        and "chunked" not in request.headers.get("Transfer-Encoding", "").lower()
    ):
        return
    if not request.is_json:
        problems.problem(415, "Unsupported media type", "Send the body as application/json.")
    raw = request.get_data(cache=True)
    if _depth(raw) > MAX_JSON_DEPTH:
        problems.problem(400, "Bad request", f"The JSON is nested deeper than {MAX_JSON_DEPTH}.")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        problems.problem(400, "Bad request", "The body is not valid JSON.")
    where = _unstorable_at(body)
    if where is not None:  # the databases refuse them in text (a 409 or a 500): a clear 422
        problems.invalid({where: "must not contain a NUL character or a lone surrogate"})


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable(text: str) -> bool:
    """NUL (PostgreSQL refuses it in text) or a lone UTF-16 surrogate, which JSON's \\ud800
    escapes can carry but no database can store as UTF-8."""
    return _UNSTORABLE.search(text) is not None


def _unstorable_at(value: object, path: str = "") -> str | None:
    """The dotted path of the first string (or key) no database can store, else None."""
    if isinstance(value, str):
        return path if _unstorable(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if _unstorable(key):
                return path
            found = _unstorable_at(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable_at(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def _depth(raw: bytes) -> int:
    """How deep brackets nest in a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def init_api(app: Flask) -> None:
    """Register the API's blueprints: no CSRF (no cookie session reaches them), and the
    per-key rate limit."""
    from glimpser.api import (
        channels,
        events,
        rules,
        snapshots,
        streams,
        summaries,
        system,
        timelapses,
        users,
    )
    from glimpser.api.auth import rate_key
    from glimpser.extensions import csrf, limiter
    from glimpser.web.app_settings import current_settings

    children = tuple(
        module.bp
        for module in (
            streams,
            snapshots,
            events,
            rules,
            channels,
            summaries,
            timelapses,
            users,
            system,
        )
    )
    if not bp._got_registered_once:  # the blueprints are module-level: nest them once
        for child in children:
            bp.register_blueprint(child)
        # One limit per key over the whole API (nested blueprints inherit it).
        limiter.limit(lambda: current_settings().api_rate_limit, key_func=rate_key)(bp)
    app.register_blueprint(bp)
    csrf.exempt(bp)
    for child in children:
        csrf.exempt(child)
