"""`/metrics` for Prometheus (docs/api.md, "Prometheus metrics")."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("metrics", __name__)
