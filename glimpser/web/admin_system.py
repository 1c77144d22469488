"""Admin → System: queues, workers, scheduler, readers, failed jobs, storage and versions."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_system", __name__, url_prefix="/admin/system")
