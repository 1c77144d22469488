"""Account pages reached without signing in: setting a password from a one-time link.

An admin makes the link (Admin → Users); it carries a random secret of which only a hash is
stored, works once and expires (glimpser.auth.users). An unknown link answers 404, a used or
expired one 410, never more than that about the account.
"""

from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, logout_user

from glimpser.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from glimpser.auth.users import (
    LinkError,
    UserError,
    check_set_password_link,
    use_set_password_link,
)

bp = Blueprint("account", __name__, url_prefix="/account")


def _page(body: str, status: int):  # noqa: ANN202
    response = make_response(body, status)
    # The URL holds the secret: never cache the page, never send it on as a referrer.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _invalid(exc: LinkError):  # noqa: ANN202
    message = str(exc)
    status = 404 if "not valid" in message else 410
    return _page(render_template("account/link_invalid.html", message=message), status)


@bp.route("/set-password/<token>", methods=["GET", "POST"])
def set_password(token: str):
    try:
        link = check_set_password_link(token)
    except LinkError as exc:
        return _invalid(exc)
    errors: dict[str, str] = {}
    if request.method == "POST":
        password = request.form.get("password", "")
        confirm = request.form.get("confirm", "")
        if len(password) > MAX_PASSWORD_LENGTH + 1 or len(confirm) > MAX_PASSWORD_LENGTH + 1:
            errors["password"] = f"Password must be at most {MAX_PASSWORD_LENGTH} characters."
        elif password != confirm:
            errors["confirm"] = "Passwords do not match."
        else:
            try:
                user = use_set_password_link(token, password, ip=request.remote_addr or "")
            except LinkError as exc:
                return _invalid(exc)
            except UserError as exc:
                errors["password"] = str(exc)
            else:
                if current_user.is_authenticated:
                    logout_user()  # whoever was signed in here, the new password is theirs
                flash(f"Your password is set, {user.username}. Sign in with it.", "success")
                return redirect(url_for("auth.login"))
    page = render_template(
        "account/set_password.html",
        user=link.user,
        errors=errors,
        min_length=MIN_PASSWORD_LENGTH,
    )
    return _page(page, 422 if errors else 200)
