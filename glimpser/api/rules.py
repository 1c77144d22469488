"""`/api/v1/rules`: event rules (admins write)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("rules", __name__, url_prefix="/rules")
TAGS = ("rules",)
