"""The service worker must be served from the site root so that its scope is the whole app."""

from __future__ import annotations

from flask import Blueprint, current_app, send_from_directory

bp = Blueprint("pwa", __name__)


@bp.get("/sw.js")
def service_worker():
    response = send_from_directory(current_app.static_folder, "sw.js", max_age=0)
    response.headers["Service-Worker-Allowed"] = "/"
    return response
