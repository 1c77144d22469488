"""`/api/v1/events`: the console's event list, search and acknowledgement."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("events", __name__, url_prefix="/events")
TAGS = ("events",)
