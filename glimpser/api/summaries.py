"""`/api/v1/summaries`: AI summaries, listed and requested."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("summaries", __name__, url_prefix="/summaries")
TAGS = ("summaries",)
