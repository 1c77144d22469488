"""First-run setup, login and logout."""

from __future__ import annotations

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
from glimpser.auth.forms import LoginForm, SetupForm
from glimpser.auth.passwords import hash_password, needs_rehash, verify_password
from glimpser.auth.users import UserError, create_user, setup_open
from glimpser.extensions import limiter
from glimpser.models import AuditLog, User

bp = Blueprint("auth", __name__)


def safe_next(target: str | None, default: str | None = None) -> str:
    """Only same-site paths; anything else goes to `default` (the dashboard when not given)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default if default is not None else url_for("dashboard.index")


def _login_limit() -> str:
    return current_app.config["GLIMPSER_LOGIN_RATE_LIMIT"]


def _username_key() -> str:
    return "login-user:" + (request.form.get("username") or "").strip().lower()


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


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], deduct_when=_failed)
@limiter.limit(_login_limit, methods=["POST"], key_func=_username_key, deduct_when=_failed)
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
            user.save()
            AuditLog.create(user=user, action="auth.login", ip=request.remote_addr or "")
            _start_session(user)
            return redirect(safe_next(request.args.get("next")))
        current_app.logger.info(
            "login failed", extra={"username": username[:64], "ip": request.remote_addr}
        )
        form.password.errors.append("Wrong username or password.")
    status = 401 if form.is_submitted() and form.errors else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()
    # The server-side record of the old id is deleted, so the old cookie is dead; the
    # "signed out" message travels in a session with a new id.
    session.clear()
    flash("You are signed out.", "info")
    current_app.session_interface.regenerate(session)
    return redirect(url_for("auth.login"))
