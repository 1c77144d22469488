"""First-run setup, login and logout."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user

from glimpser import times
from glimpser.auth import sessions as session_registry
from glimpser.auth.forms import LoginForm, SetupForm
from glimpser.auth.passwords import hash_password, needs_rehash, verify_password
from glimpser.auth.users import MAX_USERNAME, UserError, create_user, setup_open
from glimpser.db import write_transaction
from glimpser.extensions import limiter
from glimpser.models import AuditLog, User
from glimpser.web.app_settings import current_settings

bp = Blueprint("auth", __name__)


# What a `next` may hold: printable ASCII except the backslash (browsers read "\\" as "/").
_PATH_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {"\\"}
MAX_NEXT_CHARS = 2048


def safe_next(target: str | None, default: str | None = None) -> str:
    """`target` when it is a plain same-site path, else `default` (the dashboard when not
    given): the one check of every `next` a request carries (login, acknowledge, ...).

    Browsers forgive a lot in a Location: they drop tabs and line breaks, read backslashes as
    slashes and "//host" as another site. So the target must start with a single "/" and
    hold nothing but printable ASCII without backslashes (no spaces, control or non-ASCII
    characters: our own links are percent-encoded), no scheme and no host.
    """
    fallback = default if default is not None else url_for("dashboard.index")
    if not target or len(target) > MAX_NEXT_CHARS or not set(target) <= _PATH_CHARS:
        return fallback
    if not target.startswith("/") or target.startswith("//"):
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return fallback
    return target


def _login_limit() -> str:
    return current_settings().login_rate_limit  # read per request: Admin → Settings may change it


def _user_backstop_limit() -> str:
    return current_settings().login_user_rate_limit


def _username_key() -> str:
    # Bounded: the key is stored in Redis, the username is whatever the request sent.
    return "login-user:" + (request.form.get("username") or "").strip().lower()[:MAX_USERNAME]


def _failed(response) -> bool:  # noqa: ANN001 - flask Response
    """Only failed attempts count against the limits (a success redirects)."""
    return response.status_code != 302


def _start_session(user: User) -> None:
    # A fresh session id at login: an id planted before login is worthless afterwards.
    # (regenerate() skips empty sessions, so put something in it first.)
    session["signed_in_at"] = times.isoformat(times.utcnow())
    current_app.session_interface.regenerate(session)
    session.permanent = True
    login_user(user)
    session_registry.record_sign_in(user.id, user.session_epoch)


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    if not setup_open():
        abort(404)
    form = SetupForm()
    if form.validate_on_submit():
        try:
            user = create_user(
                form.username.data,
                form.password.data,
                "admin",
                first_run=True,
                ip=request.remote_addr or "",
            )
        except UserError as exc:
            form.username.errors.append(str(exc))
        else:
            _start_session(user)
            flash(f"Welcome, {user.username}. Glimpser is ready.", "success")
            return redirect(url_for("dashboard.index"))
    return render_template("auth/setup.html", form=form), 400 if form.errors else 200


# Failed sign-ins are limited twice (a 429 with Retry-After once a limit is reached):
# - per address, at GLIMPSER_LOGIN_RATE_LIMIT, whatever usernames it tries: an attacker's
#   address locks itself out, not the user, who signs in from elsewhere;
# - per username from all addresses, at the much higher GLIMPSER_LOGIN_USER_RATE_LIMIT: a
#   backstop against guessing one password from many addresses.
@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], deduct_when=_failed)
@limiter.limit(_user_backstop_limit, methods=["POST"], key_func=_username_key, deduct_when=_failed)
def login():
    if setup_open():
        return redirect(url_for("auth.setup"))
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm()
    if form.validate_on_submit():
        username = form.username.data.strip()
        user = User.get_or_none(User.username == username)
        if (
            verify_password(user.password_hash if user else None, form.password.data)
            and user
            and user.active
        ):
            if needs_rehash(user.password_hash):
                user.password_hash = hash_password(form.password.data)
            user.last_login_at = times.utcnow()
            with write_transaction():
                user.save()
                AuditLog.create(user=user, action="auth.login", ip=request.remote_addr or "")
            _start_session(user)
            return redirect(safe_next(request.args.get("next")))
        current_app.logger.info(
            "login failed", extra={"username": username[:64], "ip": request.remote_addr}
        )
        # The username as typed (cut); the user only when that account exists.
        AuditLog.create(
            user=user,
            action="auth.login_failed",
            target=f"user:{user.id}" if user else "",
            detail={"username": username[:64]},
            ip=request.remote_addr or "",
        )
        form.password.errors.append("Wrong username or password.")
    status = 401 if form.is_submitted() and form.errors else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        session_registry.forget(current_user.id, session.sid)
        AuditLog.create(user=current_user.id, action="auth.logout", ip=request.remote_addr or "")
    logout_user()
    # The server-side record of the old id is deleted, so the old cookie is dead; the
    # "signed out" message travels in a session with a new id.
    session.clear()
    flash("You are signed out.", "info")
    current_app.session_interface.regenerate(session)
    return redirect(url_for("auth.login"))
