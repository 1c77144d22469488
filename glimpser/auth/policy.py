"""Deny by default: one before-request hook decides who may reach each endpoint.

- Anonymous users reach only PUBLIC_ENDPOINTS.
- Signed-in viewers may read (GET/HEAD/OPTIONS) outside admin areas. They may change state
  only at endpoints listed in VIEWER_WRITE_ENDPOINTS.
- Endpoints in ADMIN_BLUEPRINTS, or marked with @admin_only, need the admin role for any method.
New endpoints are therefore login-only for reading and admin-only for writing until someone
deliberately opens them here. Per-stream access is checked by the views that load a stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, abort, redirect, request, url_for
from flask_login import current_user

from glimpser.auth.users import setup_open

F = TypeVar("F", bound=Callable)

PUBLIC_ENDPOINTS: frozenset[str] = frozenset(
    {
        "auth.login",
        "auth.setup",  # the view itself refuses once setup is done
        "health.healthz",
        "health.readyz",
        "static",
        "pwa.service_worker",
    }
)
VIEWER_WRITE_ENDPOINTS: frozenset[str] = frozenset(
    {
        "auth.logout",
        "timelapse.build",  # viewers may build timelapses of the streams they can see
    }
)
ADMIN_BLUEPRINTS: frozenset[str] = frozenset({"admin", "admin_transfer"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def admin_only(view: F) -> F:
    """Mark a view in a mixed blueprint as admin-only, even for reading."""
    view.glimpser_admin_only = True  # type: ignore[attr-defined]
    return view


def _is_admin_endpoint(app: Flask, endpoint: str) -> bool:
    blueprint = endpoint.rsplit(".", 1)[0] if "." in endpoint else ""
    if blueprint in ADMIN_BLUEPRINTS:
        return True
    view = app.view_functions.get(endpoint)
    return bool(getattr(view, "glimpser_admin_only", False))


def install(app: Flask) -> None:
    @app.before_request
    def enforce_access_policy():  # noqa: ANN202 - Flask hook
        endpoint = request.endpoint
        if endpoint is None:
            return None  # no route matched: Flask answers 404/405 itself
        if endpoint in PUBLIC_ENDPOINTS:
            return None
        if not current_user.is_authenticated:
            if request.method in SAFE_METHODS and not request.headers.get("HX-Request"):
                target = "auth.setup" if setup_open() else "auth.login"
                return redirect(url_for(target, next=request.full_path.rstrip("?")))
            abort(401)
        if current_user.is_admin:
            return None
        if _is_admin_endpoint(app, endpoint):
            abort(403)
        if request.method not in SAFE_METHODS and endpoint not in VIEWER_WRITE_ENDPOINTS:
            abort(403)
        return None
