"""`/docs/api`: the API's OpenAPI document, browsable for signed-in users (vendored assets)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api_docs", __name__, url_prefix="/docs/api")
