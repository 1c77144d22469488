"""Blueprints of the web UI, plus the hooks every request passes through."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.routing import IntegerConverter

from glimpser import __version__
from glimpser.db import database
from glimpser.web.app_settings import current_settings
from glimpser.web.keyset import MAX_ID

# Health probes: a database that cannot be opened is what /readyz reports, not a 500.
_PROBES = frozenset({"health.healthz", "health.readyz"})
# No connection per request: signed pictures need none (glimpser.web.pictures opens one only to
# make a missing thumbnail), and opening one is most of their cost on PostgreSQL.
_NO_DATABASE = _PROBES | {"pictures.picture"}


def _at_most(limit: int) -> str:
    """A regular expression of the ASCII numbers from 0 to `limit` (no leading zeros)."""
    digits = str(limit)
    options = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    for i, digit in enumerate(digits):
        if digit != "0":
            rest = len(digits) - i - 1
            options.append(
                f"{digits[:i]}[0-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else "")
            )
    options.append(digits)
    return "(?:" + "|".join(options) + ")"


class RowIdConverter(IntegerConverter):
    """`<int:…>` in every URL is a row id: above MAX_ID nothing matches (a 404), so no view
    needs its own check and no query gets an id the database refuses to compare.

    The limit is in the rule's regular expression, not only in `to_python`: otherwise a PUT
    to /api/v1/streams/<2**63> would match the GET rule's pattern first and answer 405."""

    regex = _at_most(MAX_ID)

    def __init__(self, map, *args, **kwargs) -> None:  # noqa: A002, ANN001, ANN003 - werkzeug's
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def init_web(app: Flask) -> None:
    from glimpser.web import (
        access_log,
        account,
        admin,
        admin_api_keys,
        admin_audit,
        admin_backups,
        admin_channels,
        admin_deliveries,
        admin_rules,
        admin_sessions,
        admin_settings,
        admin_system,
        admin_transfer,
        admin_updates,
        admin_users,
        api_docs,
        cap,
        changes,
        dashboard,
        errors,
        events,
        headers,
        health,
        humantime,
        live,
        metrics,
        params,
        pictures,
        profile,
        pwa,
        streams,
        summaries,
        timelapse,
    )

    @app.before_request
    def _open_db() -> None:
        if request.endpoint in _NO_DATABASE:
            return  # they connect when they query, and report a failure rather than raise
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close_db(_exc: BaseException | None) -> None:
        if not database.is_closed():
            database.close()

    @app.context_processor
    def _globals() -> dict:
        # <html lang>: the default language of Admin → Settings (GLIMPSER_LOCALE).
        return {"glimpser_version": __version__, "html_lang": current_settings().default_locale}

    app.url_map.converters["int"] = RowIdConverter  # before the blueprints add their rules
    params.install(app)
    humantime.install(app)
    pictures.install(app)
    for module in (
        health,
        dashboard,
        streams,
        live,
        events,
        summaries,
        admin,
        admin_rules,
        admin_channels,
        admin_deliveries,
        admin_transfer,
        admin_users,
        admin_sessions,
        admin_settings,
        admin_system,
        admin_backups,
        admin_updates,
        admin_audit,
        admin_api_keys,
        account,
        profile,
        pwa,
        timelapse,
        cap,
        changes,
        api_docs,
        metrics,
        pictures,
    ):
        app.register_blueprint(module.bp)
    from glimpser.api import init_api

    init_api(app)
    errors.install(app)
    headers.install(app, pictures.redirect_origin(app.extensions["glimpser.settings"]))
    access_log.install(app)
