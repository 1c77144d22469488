"""Liveness and readiness probes (public, no session)."""

from __future__ import annotations

import peewee
import redis
from flask import Blueprint, current_app, jsonify

from glimpser.db import database

bp = Blueprint("health", __name__)


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


@bp.get("/readyz")
def readyz():
    problems = {
        name: reason
        for name, reason in (("database", check_database()), ("redis", check_redis()))
        if reason
    }
    body = {
        "status": "ready" if not problems else "not ready",
        "database": problems.get("database", "ok"),
        "redis": problems.get("redis", "ok"),
    }
    return jsonify(body), 200 if not problems else 503
