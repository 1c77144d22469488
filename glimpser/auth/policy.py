"""Deny by default: one before-request hook decides who may reach each endpoint.

- Anonymous users reach only PUBLIC_ENDPOINTS, plus (for reading) the endpoints in
  PUBLIC_IF_SETTING whose boolean setting the admin turned on, and SIGNED_ENDPOINTS, whose
  views refuse any request without a valid signature in the URL.
- Signed-in viewers may read (GET/HEAD/OPTIONS) outside admin areas. They may change state
  only at endpoints listed in VIEWER_WRITE_ENDPOINTS.
- Endpoints in ADMIN_BLUEPRINTS, or marked with @admin_only, need the admin role for any method.
New endpoints are therefore login-only for reading and admin-only for writing until someone
deliberately opens them here. Per-stream access is checked by the views that load a stream.

The JSON API (`api.*` endpoints) authenticates API keys instead of sessions and checks their
scopes: glimpser.api.auth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, abort, redirect, request, url_for
from flask_login import current_user

from glimpser.auth.users import setup_open
from glimpser.web.app_settings import current_settings

F = TypeVar("F", bound=Callable)

PUBLIC_ENDPOINTS: frozenset[str] = frozenset(
    {
        "auth.login",
        "auth.setup",  # the view itself refuses once setup is done
        "account.set_password",  # a one-time link an admin made; the view checks the token
        "health.healthz",
        "health.readyz",
        "static",
        "pwa.service_worker",
        "api.openapi",  # the API's description: no data of this install
        "metrics.metrics",  # Prometheus: the view checks a key's scope or the client address
    }
)
# Endpoints that need no session but a valid signature in the URL, which the view itself checks
# first (403 without one, 410 once expired): signed picture URLs (glimpser.web.pictures), issued
# only by pages that checked the user's access to the stream. GET only.
SIGNED_ENDPOINTS: frozenset[str] = frozenset({"pictures.picture"})
# Endpoints an admin may open to everyone for reading with one boolean Settings attribute, and
# only then: while the setting is off (the default) they are closed like any other endpoint.
# A public CAP warning feed is the admin's choice (GLIMPSER_CAP_FEED_PUBLIC, docs/cap.md).
PUBLIC_IF_SETTING: dict[str, str] = {
    "cap.feed": "cap_feed_public",
    "cap.alert": "cap_feed_public",
}
# Pages outside /api/ that feed readers fetch: they also take an API key (read scope) in
# `Authorization: Bearer`, and then show what the key's user may see (docs/cap.md).
KEY_READABLE_ENDPOINTS: frozenset[str] = frozenset({"cap.feed", "cap.alert"})
VIEWER_WRITE_ENDPOINTS: frozenset[str] = frozenset(
    {
        "auth.logout",
        "timelapse.build",  # viewers may build timelapses of the streams they can see
        "events.acknowledge",  # ... acknowledge events of the streams they can see
        "summaries.create",  # ... and ask for a summary of what they can see
        # Everyone manages their own browsers' Web Push subscriptions (the views check owner).
        "profile.subscribe",
        "profile.unsubscribe",
        "profile.remove",
        # Everyone changes their own password and ends their own other sessions.
        "profile.change_password",
        "profile.end_session",
        "profile.end_other_sessions",
        # ... and their own console preferences (time zone, wall columns, theme).
        "profile.save_preferences",
        # ... and their own API keys (the views look keys up among the user's own only).
        "profile.create_api_key",
        "profile.revoke_api_key",
        "dashboard.set_columns",  # ... and the columns of their own camera wall
    }
)
ADMIN_BLUEPRINTS: frozenset[str] = frozenset(
    {
        "admin",
        "admin_rules",
        "admin_transfer",
        "admin_channels",
        "admin_deliveries",
        "admin_users",
        "admin_sessions",
        "admin_settings",
        "admin_system",
        "admin_backups",
        "admin_updates",
        "admin_audit",
        "admin_api_keys",
    }
)
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


def _public_by_setting(app: Flask, endpoint: str) -> bool:
    """True only when the endpoint is in PUBLIC_IF_SETTING and its setting is exactly True."""
    name = PUBLIC_IF_SETTING.get(endpoint)
    if name is None or request.method not in SAFE_METHODS:
        return False
    return getattr(current_settings(), name, False) is True


def install(app: Flask) -> None:
    @app.before_request
    def enforce_access_policy():  # noqa: ANN202 - Flask hook
        endpoint = request.endpoint
        if endpoint is None:
            return None  # no route matched: Flask answers 404/405 itself
        if endpoint in PUBLIC_ENDPOINTS or _public_by_setting(app, endpoint):
            return None
        if endpoint in SIGNED_ENDPOINTS and request.method in SAFE_METHODS:
            return None  # the view checks the signature before anything else
        if endpoint.startswith("api.") or (
            endpoint in KEY_READABLE_ENDPOINTS
            and request.method in SAFE_METHODS
            and request.headers.get("Authorization", "").lower().startswith("bearer ")
        ):
            # The JSON API: an API key, never the cookie session (glimpser.api.auth).
            from glimpser.api.auth import enforce

            enforce(app, endpoint)
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
