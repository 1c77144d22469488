"""`/api/v1/system`: the status Admin → System shows (the admin scope)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("system", __name__, url_prefix="/system")
TAGS = ("system",)
