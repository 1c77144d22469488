"""The settings a request runs with.

Every view reads settings through `current_settings()`, never from app.extensions directly, so
that settings changed at run time (Admin → Settings) reach every request in one place.
"""

from __future__ import annotations

from flask import current_app

from glimpser.config import Settings


def current_settings() -> Settings:
    """The settings in effect for this request."""
    return current_app.extensions["glimpser.settings"]
