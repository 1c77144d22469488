"""Friendly error pages (problem+json for clients that ask for JSON) instead of tracebacks."""

from __future__ import annotations

import logging

import peewee
from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

MESSAGES = {
    400: ("Bad request", "The request could not be understood."),
    401: ("Sign in required", "Please sign in to continue."),
    403: ("Not allowed", "Your account may not do this."),
    404: ("Not found", "There is nothing here."),
    405: ("Method not allowed", "This address does not accept that kind of request."),
    409: ("Not saved", "The change could not be saved; nothing was changed."),
    413: ("Too large", "The upload or request is larger than this server accepts."),
    429: ("Too many attempts", "Too many attempts in a short time. Wait a minute and try again."),
    500: ("Something went wrong", "The error was logged. Please try again."),
    503: ("Unavailable for a moment", "The database is not reachable. Try again in a few seconds."),
}
# Seconds a client is asked to wait (Retry-After) while the database is unreachable.
DATABASE_RETRY_AFTER = 5


def _render(code: int, detail: str | None = None):
    title, message = MESSAGES.get(code, (f"Error {code}", ""))
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        body = {"type": "about:blank", "title": title, "status": code, "detail": detail or message}
        return body, code, {"Content-Type": "application/problem+json"}
    return render_template(
        "error.html", code=code, title=title, message=message, detail=detail
    ), code


def install(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return _render(400, "The form expired or was not sent from this site. Reload and retry.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if exc.code is None or exc.code < 400:
            return exc
        detail = (
            exc.description
            if exc.code in (400, 404, 409, 422) and exc.description != type(exc).description
            else None
        )
        return _render(exc.code, detail)

    @app.errorhandler(peewee.IntegrityError)
    def _refused(exc: peewee.IntegrityError):
        # A constraint (or trigger) the view did not expect refused a write: its transaction
        # rolled back, so nothing (not even the audit entry) was saved.
        log.warning("database refused a write", extra={"path": request.path})
        return _render(409, "The database refused the change, so nothing was saved. Try again.")

    @app.errorhandler(peewee.OperationalError)
    @app.errorhandler(peewee.InterfaceError)
    def _database_unavailable(exc: peewee.PeeweeException):
        # The database restarts or is unreachable: say so (503, Retry-After), one log line
        # per request instead of a traceback, and every request works again once it is back.
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("database unavailable", extra={"path": request.path, "error": detail})
        title, message = MESSAGES[503]
        headers = {"Retry-After": str(DATABASE_RETRY_AFTER)}
        if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
            body = {"type": "about:blank", "title": title, "status": 503, "detail": message}
            return body, 503, {**headers, "Content-Type": "application/problem+json"}
        # Not the site's error template: its layout asks the database who is signed in.
        page = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{message}</p>"
        return page, 503, {**headers, "Content-Type": "text/html; charset=utf-8"}

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, HTTPException):
            return _http(exc)
        log.exception("unhandled error", extra={"path": request.path})
        return _render(InternalServerError.code)
