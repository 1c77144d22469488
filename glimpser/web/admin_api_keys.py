"""Admin → API keys: everyone's keys, with their scopes, streams, expiry and last use.

An admin revokes any key here (after a confirmation page), and may make a key for any active
user (the same form as Profile → API keys, glimpser.web.api_key_form, plus the owner). The
new key is shown once, on the page that answers the form.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from glimpser.auth import api_keys
from glimpser.models import ApiKey, User
from glimpser.web import api_key_form
from glimpser.web.params import parse_id
from glimpser.web.profile import shown_once

bp = Blueprint("admin_api_keys", __name__, url_prefix="/admin/api-keys")

STATES = ("active", "revoked", "expired", "user deactivated")


def _owner_choices() -> list[User]:
    return list(User.select().where(User.active == True).order_by(User.username))  # noqa: E712


def _render(
    form: api_key_form.KeyForm | None = None,
    owner: User | None = None,
    status: int = 200,
):  # noqa: ANN202
    owners = _owner_choices()
    shown_user = None
    user_id = parse_id(request.args.get("user")) if request.method == "GET" else None
    if user_id is not None:
        shown_user = User.get_or_none(User.id == user_id)
    keys = api_keys.keys_of(shown_user) if shown_user else api_keys.keys_of()
    state = request.args.get("state", "") if request.method == "GET" else ""
    rows = api_key_form.rows(keys)
    if state in STATES:
        rows = [r for r in rows if r.state == state]
    else:
        state = ""
    # The form offers what an admin's key may have; the owner's role is checked on submit.
    me = User.get_by_id(current_user.id)
    return render_template(
        "admin/api_keys.html",
        rows=rows,
        users=list(User.select().order_by(User.username)),
        shown_user=shown_user,
        state=state,
        states=STATES,
        owners=owners,
        owner_id=(owner or me).id,
        form=form or api_key_form.KeyForm(),
        scopes=api_key_form.offered_scopes(me),
        streams=api_key_form.streams_for(me),
        max_days=api_keys.MAX_EXPIRY_DAYS,
        max_name=api_keys.MAX_NAME_CHARS,
    ), status


@bp.get("/")
def index():
    return _render()


@bp.post("/")
def create():
    """Make a key for a user (an active one); the answer shows it, once."""
    user_id = parse_id(request.form.get("user"))
    owner = User.get_or_none(User.id == user_id) if user_id is not None else None
    if owner is None or not owner.active:
        form = api_key_form.KeyForm()
        form.errors["user"] = "Choose an active user."
        return _render(form, None, 422)
    form = api_key_form.read_form(owner)
    new = None if form.errors else api_key_form.create_from(form, owner, current_user)
    if new is None:
        return _render(form, owner, 422)
    page = render_template(
        "profile/api_key_created.html",
        new=new,
        row=api_key_form.rows([new.row])[0],
        back_url=url_for("admin_api_keys.index"),
        back_label="API keys",
    )
    return shown_once(page)


def _key(key_id: int) -> ApiKey:
    key = (
        ApiKey.select(ApiKey, User)
        .join(User, on=(ApiKey.user == User.id))
        .where(ApiKey.id == key_id)
        .first()
    )
    if key is None:
        abort(404)
    return key


@bp.get("/<int:key_id>/revoke")
def confirm_revoke(key_id: int):
    key = _key(key_id)
    return render_template(
        "profile/api_key_revoke.html",
        row=api_key_form.rows([key])[0],
        action=url_for("admin_api_keys.revoke", key_id=key.id),
        cancel_url=url_for("admin_api_keys.index"),
    )


@bp.post("/<int:key_id>/revoke")
def revoke(key_id: int):
    key = _key(key_id)
    if api_keys.revoke(key, actor=current_user, ip=request.remote_addr or ""):
        flash(f"{key.user.username}'s key {key.prefix} is revoked.", "success")
    else:
        flash(f"Key {key.prefix} was already revoked.", "info")
    return redirect(url_for("admin_api_keys.index"))
