"""Admin → Settings: the runtime settings, rendered from their one schema."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_settings", __name__, url_prefix="/admin/settings")
