"""`/api/v1/streams/<id>/snapshots` and `/api/v1/snapshots`: pictures, metadata and images."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("snapshots", __name__, url_prefix="")
TAGS = ("snapshots",)
