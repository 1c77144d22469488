"""`/api/v1/channels`: notification channels, secrets write-only (admins)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("channels", __name__, url_prefix="/channels")
TAGS = ("channels",)
