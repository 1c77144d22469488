"""`/api/v1/timelapses`: requested, followed and downloaded."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("timelapses", __name__, url_prefix="/timelapses")
TAGS = ("timelapses",)
