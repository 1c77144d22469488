"""The admin home: links to every admin page, a one-line health summary (the details are on
Admin → System), streams being deleted, and AI usage. Admin role only (the access policy)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, render_template

from glimpser import system_status
from glimpser.analysis.usage import usage_last_day
from glimpser.config import Settings
from glimpser.media.deletion import deletions_in_progress
from glimpser.updates import last_check
from glimpser.web.app_settings import current_settings

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or "")


@bp.get("/")
def index():
    status = system_status.collect(current_app.extensions["glimpser.redis"])
    settings = current_settings()
    return render_template(
        "admin/index.html",
        status=status,
        # Only what the page shows: never the Settings object, which holds the secrets.
        ai=(
            {"ai_model": settings.ai_model, "ai_daily_token_budget": settings.ai_daily_token_budget}
            if settings.ai_configured
            else None
        ),
        # Host and port only: a URL may carry user:password@ (never shown).
        ai_host=_host_port(settings.ai_base_url) if settings.ai_configured else "",
        ai_usage=usage_last_day(),
        deletions=deletions_in_progress(current_app.extensions["glimpser.redis"]),
        update=_available_update(settings),
    )


def _available_update(settings: Settings) -> last_check.LastCheck | None:
    """The last check, when updates are configured and it found a newer release."""
    if last_check.missing_settings(settings):
        return None
    last = last_check.load()
    return last if last is not None and last.update_available else None
