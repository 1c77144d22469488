"""Admin: see and end any user's signed-in sessions."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_sessions", __name__, url_prefix="/admin/sessions")
