"""Who is calling `/api/v1`: an API key in `Authorization: Bearer …`, and what it may do.

Called by the access policy (glimpser.auth.policy) for every API endpoint, before the view:
- no key, or a key that is unknown, revoked, expired or whose user is deactivated → 401;
- the scope the endpoint needs: `operation(... )` views say nothing and need `read` for GET and
  `write` otherwise; `@needs_scope("admin")` marks the admin resources (users, grants, system);
- the user's role as on the web pages: writes are for admins, except endpoints marked
  `@viewer_may_write` (acknowledging events, requesting summaries and timelapses), and the
  views load streams through `visible_streams()`, which also honours a key's stream list.

Keys are accepted only here (and by /metrics, see glimpser.web.metrics), never in a query
string, and API requests carry no cookie session (glimpser.auth.sessions), so there is no CSRF
to defend against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, g, request
from flask_login import current_user

from glimpser.api import problems
from glimpser.auth import api_keys
from glimpser.models import ApiKey

F = TypeVar("F", bound=Callable)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def needs_scope(scope: str) -> Callable[[F], F]:
    if scope not in api_keys.SCOPES:
        raise ValueError(scope)

    def mark(view: F) -> F:
        view.glimpser_api_scope = scope  # type: ignore[attr-defined]
        return view

    return mark


def viewer_may_write(view: F) -> F:
    """A write a viewer's key may make (the view checks the stream is theirs)."""
    view.glimpser_viewer_write = True  # type: ignore[attr-defined]
    return view


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def rate_key() -> str:
    """The rate-limit bucket: the key presented (hashed), else the client address."""
    token = bearer_token()
    if token is None:
        return "addr:" + (request.remote_addr or "")
    return "key:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _unauthorized(detail: str) -> None:
    resp = problems.response(401, "Unauthorized", detail)
    resp.headers["WWW-Authenticate"] = 'Bearer realm="glimpser"'
    from flask import abort

    abort(resp)


def current_key() -> ApiKey | None:
    return g.get("api_key")


def enforce(app: Flask, endpoint: str) -> None:
    """Authenticate the request's key and check its scope and its user's role (or abort)."""
    token = bearer_token()
    if token is None:
        _unauthorized("Send an API key as `Authorization: Bearer glp_…` (Profile → API keys).")
    key = api_keys.authenticate(token)  # type: ignore[arg-type]
    if key is None:
        _unauthorized("This API key is unknown, revoked or expired, or its user is deactivated.")
    assert key is not None
    g.api_key = key
    g._login_user = key.user  # flask-login's current_user for this request; no session
    view = app.view_functions.get(endpoint)
    needed = getattr(view, "glimpser_api_scope", None) or (
        "read" if request.method in SAFE_METHODS else "write"
    )
    if not api_keys.has_scope(key, needed):
        problems.problem(403, "Forbidden", f"This key does not have the {needed} scope.")
    user = current_user
    if needed == "admin" and not user.is_admin:
        problems.problem(403, "Forbidden", "Only an admin's key may do this.")
    if (
        needed == "write"
        and not user.is_admin
        and not getattr(view, "glimpser_viewer_write", False)
    ):
        problems.problem(403, "Forbidden", "This needs an admin's key.")
    api_keys.note_use(key, request.remote_addr or "")
