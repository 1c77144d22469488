"""Admin → Users: people, roles, activation, passwords and per-stream access (grants)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_users", __name__, url_prefix="/admin/users")
