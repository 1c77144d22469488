"""Liveness and readiness probes (public; details of a failure only for signed-in admins)."""

from __future__ import annotations

import logging

import peewee
import redis
from flask import Blueprint, current_app, g, jsonify
from flask_login import current_user

from glimpser.db import database

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


def check_database() -> str | None:
    """None when the database answers, else the reason."""
    try:
        database.execute_sql("SELECT 1")
    except peewee.PeeweeException as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    return None


def check_redis() -> str | None:
    try:
        current_app.extensions["glimpser.redis"].ping()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@bp.before_request
def _user_or_anonymous() -> None:
    """Load the caller's account now; when that fails (the database or Redis being down is
    what the probes report, not a reason for a 500), treat them as anonymous."""
    try:
        _ = current_user.is_authenticated
    except (peewee.PeeweeException, redis.RedisError, OSError):
        g._login_user = current_app.login_manager.anonymous_user()  # flask-login's slot


@bp.get("/readyz")
def readyz():
    """200 or 503 for everyone; what is wrong (error text) only for signed-in admins, never
    viewers or anonymous callers (while
    their session and account can still be read) and in the log: the text of a database or
    Redis error tells an anonymous caller about the setup behind."""
    problems = {
        name: reason
        for name, reason in (("database", check_database()), ("redis", check_redis()))
        if reason
    }
    body = {"status": "ready" if not problems else "not ready"}
    if problems:
        log.warning("not ready", extra=problems)  # for the operator, whoever asked
    if current_user.is_authenticated and current_user.is_admin:
        body["database"] = problems.get("database", "ok")
        body["redis"] = problems.get("redis", "ok")
    return jsonify(body), 200 if not problems else 503
