"""Account pages reached without signing in: setting a password from a one-time link."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("account", __name__, url_prefix="/account")
