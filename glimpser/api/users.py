"""`/api/v1/users` and their grants (the admin scope)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("users", __name__, url_prefix="/users")
TAGS = ("users",)
