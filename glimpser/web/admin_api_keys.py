"""Admin → API keys: everyone's keys, with their scopes, streams, expiry and last use."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_api_keys", __name__, url_prefix="/admin/api-keys")
