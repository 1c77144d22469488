"""One structured log line per request (path without query string: it may carry secrets)."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

log = logging.getLogger("glimpser.request")


def install(app: Flask) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response: Response) -> Response:
        started = g.get("request_started")
        # The user this request loaded, if it did (Flask-Login keeps it in g): never a
        # database query here, which would turn a database outage into a 500 after the fact.
        user = g.get("_login_user")
        user_id = user.get_id().split(":")[0] if user and user.is_authenticated else None
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "ms": round((time.perf_counter() - started) * 1000, 1) if started else None,
                "user_id": user_id,
                "ip": request.remote_addr,
            },
        )
        return response
