"""Admin → Audit: who changed what, when and from where."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_audit", __name__, url_prefix="/admin/audit")
