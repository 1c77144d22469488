"""The settings a request runs with.

Every view reads settings through `current_settings()`, never from app.extensions directly, so
that settings changed at run time (Admin → Settings) reach every request in one place: the
app's SettingsSource (glimpser.runtime_settings) overlays the stored changes on the start-up
settings and notices a change made by any process within about a second.
"""

from __future__ import annotations

from flask import current_app

from glimpser.config import Settings


def current_settings() -> Settings:
    """The settings in effect for this request."""
    source = current_app.extensions.get("glimpser.settings_source")
    if source is None:
        return current_app.extensions["glimpser.settings"]
    return source.get()
