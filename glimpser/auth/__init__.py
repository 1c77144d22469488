"""Authentication: flask-login over server-side sessions, and the access policy."""

from __future__ import annotations

from flask import Flask
from flask_login import LoginManager

from glimpser.auth import policy
from glimpser.auth.views import bp
from glimpser.models import User

login_manager = LoginManager()
login_manager.session_protection = "basic"
login_manager.login_view = "auth.login"


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Sessions hold "id:epoch"; a deactivated user or a bumped epoch ends the session."""
    try:
        raw_id, raw_epoch = user_id.split(":", 1)
        uid, epoch = int(raw_id), int(raw_epoch)
    except ValueError:
        return None
    user = User.get_or_none(User.id == uid)
    if user is None or not user.active or user.session_epoch != epoch:
        return None
    return user


def init_auth(app: Flask) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)
    policy.install(app)
