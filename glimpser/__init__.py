"""Glimpser: watch cameras, video streams and websites; detect, describe, notify."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from glimpser.config import Settings, load_settings

__version__ = "0.1.0"


def create_app(settings: Settings | None = None) -> Flask:
    """The application factory: configuration, database, Redis, extensions, blueprints."""
    from glimpser import db
    from glimpser.auth import init_auth, sessions
    from glimpser.extensions import csrf, limiter, server_sessions
    from glimpser.logs import configure_logging
    from glimpser.queues import connect_redis, limiter_storage_uri
    from glimpser.runtime_settings import SettingsSource
    from glimpser.web import init_web

    settings = settings or load_settings()
    configure_logging(settings.log_level)
    db.init_database(settings.database_url)
    db.migrate()
    redis_client = connect_redis(settings.redis_url)

    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    if settings.trusted_proxies:
        # Behind N reverse proxies: take the client address and scheme from their headers,
        # so login rate limits and Secure cookies see the real client.
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        # Server-side sessions: the cookie carries only an opaque id.
        SESSION_TYPE="redis",
        SESSION_REDIS=redis_client,
        SESSION_KEY_PREFIX="glimpser:session:",
        SESSION_PERMANENT=False,
        SESSION_COOKIE_NAME="glimpser_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        # Read per request from current_settings() by glimpser.auth.sessions; this is the start.
        PERMANENT_SESSION_LIFETIME=timedelta(days=settings.session_lifetime_days),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=settings.secure_cookies,
        RATELIMIT_STORAGE_URI=limiter_storage_uri(settings.redis_url),
        RATELIMIT_KEY_PREFIX="glimpser:ratelimit",
        # X-RateLimit-* and Retry-After on the limited routes (login), also on the 429 itself.
        RATELIMIT_HEADERS_ENABLED=True,
    )
    app.extensions["glimpser.settings"] = settings  # as started; views use current_settings()
    app.extensions["glimpser.settings_source"] = SettingsSource(settings, redis_client)
    app.extensions["glimpser.redis"] = redis_client

    server_sessions.init_app(app)
    sessions.install(app)  # anonymous sessions: short-lived
    csrf.init_app(app)
    limiter.init_app(app)
    init_auth(app)
    init_web(app)
    return app
