"""Server-side sessions in Redis (Flask-Session), kept only as long as they are worth keeping.

A signed-in session lives PERMANENT_SESSION_LIFETIME (14 days). An anonymous one holds at
most a sign-in form's CSRF token and a flash message, so it lives ANONYMOUS_LIFETIME: every
anonymous visit of /login stores one (the token must be checked when the form comes back),
and a 14-day life would let anyone fill Redis by asking for the page. Empty sessions are
never stored (Flask-Session's own rule); a visit that needs no form stores nothing.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask_session.base import ServerSideSession
from flask_session.defaults import Defaults
from flask_session.redis import RedisSessionInterface

# Long enough to fill in the sign-in form; a form older than that says "form expired".
ANONYMOUS_LIFETIME = timedelta(hours=1)


class SessionInterface(RedisSessionInterface):
    """Flask-Session's Redis sessions; anonymous ones expire after ANONYMOUS_LIFETIME."""

    def _upsert_session(
        self, session_lifetime: timedelta, session: ServerSideSession, store_id: str
    ) -> None:
        if "_user_id" not in session:  # flask-login's key: nobody is signed in
            session_lifetime = min(session_lifetime, ANONYMOUS_LIFETIME)
        super()._upsert_session(session_lifetime, session, store_id)


def install(app: Flask) -> None:
    """Use SessionInterface, configured from app.config as Flask-Session configures its own
    (call after Flask-Session's init_app)."""
    config = app.config
    app.session_interface = SessionInterface(
        app,
        client=config["SESSION_REDIS"],
        key_prefix=config.get("SESSION_KEY_PREFIX", Defaults.SESSION_KEY_PREFIX),
        permanent=config.get("SESSION_PERMANENT", Defaults.SESSION_PERMANENT),
        sid_length=config.get("SESSION_ID_LENGTH", Defaults.SESSION_ID_LENGTH),
        serialization_format=config.get(
            "SESSION_SERIALIZATION_FORMAT", Defaults.SESSION_SERIALIZATION_FORMAT
        ),
    )
