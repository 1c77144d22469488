"""Admin → Users: people, roles, activation, passwords and per-stream access (grants).

Every change goes through glimpser.auth.users (users, passwords, links) or
glimpser.auth.access.change_access (grants), which write the change and its audit entry in one
transaction; the views only read the form and say what happened. Forms:

- create (`/new`): username, role, how = "link" | "password", password, confirm;
- a user's page: role; deactivate / reactivate; password (typed: password, confirm) or a new
  one-time link; access (`stream_ids` and `groups` checkboxes); delete (a confirmation page);
- a stream's page ("Who can see this"): grant to / revoke from one viewer (`user`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from glimpser.auth.access import (
    AccessError,
    change_access,
    grants_of,
    known_groups,
    set_grants,
    streams_granted_count,
)
from glimpser.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from glimpser.auth.users import (
    MAX_USERNAME,
    SET_PASSWORD_LINK_HOURS,
    UserError,
    create_user,
    delete_user,
    is_last_active_admin,
    make_set_password_link,
    pending_link,
    set_password,
    update_user,
)
from glimpser.db import write_transaction
from glimpser.models import ROLES, PushSubscription, Stream, Summary, Timelapse, User
from glimpser.web.app_settings import current_settings
from glimpser.web.params import parse_id, parse_ids

bp = Blueprint("admin_users", __name__, url_prefix="/admin/users")

ROLE_LABELS = {"admin": "Admin — everything, all streams", "viewer": "Viewer — granted streams"}
# Checkboxes one access form may send (far more than streams anyone has; keeps queries bounded).
MAX_CHOICES = 5000


def _ip() -> str:
    return request.remote_addr or ""


def _get_user(user_id: int) -> User:
    user = User.get_or_none(User.id == user_id)
    if user is None:
        abort(404)
    return user


def _field(name: str, limit: int = MAX_PASSWORD_LENGTH + 1) -> str:
    """A text field of the form; 400 when it is longer than any valid value could be."""
    value = request.form.get(name, "")
    if len(value) > limit:
        abort(400, f"The field “{name}” is too long.")
    return value


def _no_store(response: Any) -> Any:
    """Pages that show a one-time link: never cached, never kept by the browser."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _link_page(user: User, token: str, created: bool):  # noqa: ANN202
    # GLIMPSER_PUBLIC_URL when set (how people reach this install), else this request's host.
    public_url = current_settings().public_url
    path = url_for("account.set_password", token=token)
    link = (
        public_url.rstrip("/") + path
        if public_url
        else url_for("account.set_password", token=token, _external=True)
    )
    page = render_template(
        "admin/users/link.html",
        user=user,
        link=link,
        created=created,
        hours=SET_PASSWORD_LINK_HOURS,
    )
    return _no_store(make_response(page, 200))


# --- list -------------------------------------------------------------------------------------


@dataclass
class UserRow:
    user: User
    streams: int | None  # None for admins: every stream
    last_admin: bool
    pending_link: bool


@bp.get("/")
def index():
    users = list(User.select().order_by(User.username))
    viewers = [u.id for u in users if not u.is_admin]
    counts = streams_granted_count(viewers)
    rows = [
        UserRow(
            user=u,
            streams=None if u.is_admin else counts.get(u.id, 0),
            last_admin=is_last_active_admin(u),
            pending_link=pending_link(u) is not None,
        )
        for u in users
    ]
    return render_template("admin/users/list.html", rows=rows)


# --- create -----------------------------------------------------------------------------------


def _render_new(values: dict[str, str], errors: dict[str, str], status: int):  # noqa: ANN202
    return render_template(
        "admin/users/new.html",
        values=values,
        errors=errors,
        roles=ROLE_LABELS,
        min_length=MIN_PASSWORD_LENGTH,
        hours=SET_PASSWORD_LINK_HOURS,
    ), status


@bp.get("/new")
def new():
    return _render_new({"username": "", "role": "viewer", "how": "link"}, {}, 200)


@bp.post("/new")
def create():
    values = {
        "username": _field("username", MAX_USERNAME * 4).strip(),
        "role": _field("role", 16),
        "how": _field("how", 16) or "link",
    }
    errors: dict[str, str] = {}
    if values["role"] not in ROLES:
        errors["role"] = "Choose admin or viewer."
    if values["how"] not in ("link", "password"):
        errors["how"] = "Choose how the password is set."
    password = None
    if values["how"] == "password":
        password = _field("password")
        if password != _field("confirm"):
            errors["confirm"] = "Passwords do not match."
    if errors:
        return _render_new(values, errors, 422)
    try:
        with write_transaction():
            user = create_user(
                values["username"], password, values["role"], actor=current_user, ip=_ip()
            )
            token = (
                make_set_password_link(user.id, actor=current_user, ip=_ip())
                if password is None
                else None
            )
    except UserError as exc:
        message = str(exc)
        key = "password" if message.startswith("Password") or "password" in message else "username"
        return _render_new(values, {key: message}, 422)
    if token is not None:
        return _link_page(user, token, created=True)
    flash(f"User “{user.username}” created.", "success")
    return redirect(url_for("admin_users.detail", user_id=user.id))


# --- one user ---------------------------------------------------------------------------------


def _render_detail(user: User, errors: dict[str, str] | None = None, status: int = 200):  # noqa: ANN202
    grants = grants_of(user)
    streams = list(Stream.select(Stream.id, Stream.name, Stream.groups).order_by(Stream.name))
    groups = known_groups()
    # Granted groups that no stream is in (any more) are listed too, so they can be revoked.
    lower = {g.lower() for g in groups}
    groups += sorted((g for g in grants.groups if g.lower() not in lower), key=str.lower)
    granted_groups = {g.lower() for g in grants.groups}
    return render_template(
        "admin/users/detail.html",
        user=user,
        errors=errors or {},
        roles=ROLE_LABELS,
        last_admin=is_last_active_admin(user),
        is_self=user.id == current_user.id,
        link=pending_link(user),
        streams=streams,
        granted_streams=grants.stream_ids,
        groups=[(g, g.lower() in granted_groups) for g in groups],
        visible_count=None if user.is_admin else streams_granted_count([user.id])[user.id],
        min_length=MIN_PASSWORD_LENGTH,
        hours=SET_PASSWORD_LINK_HOURS,
    ), status


@bp.get("/<int:user_id>")
def detail(user_id: int):
    return _render_detail(_get_user(user_id))


def _change(user: User, message: str, **change: Any):  # noqa: ANN202
    """Apply `change` to the user (409 with the reason when refused), say `message` ("" =
    nothing to say) and go back to their page."""
    try:
        update_user(user.id, actor=current_user, ip=_ip(), **change)
    except UserError as exc:
        return _render_detail(user, {"account": str(exc)}, 409)
    if message:
        flash(message, "success")
    return redirect(url_for("admin_users.detail", user_id=user.id))


@bp.post("/<int:user_id>/role")
def change_role(user_id: int):
    user = _get_user(user_id)
    role = _field("role", 16)
    if role not in ROLES:
        return _render_detail(user, {"role": "Choose admin or viewer."}, 422)
    message = (
        f"{user.username} is now {'an admin' if role == 'admin' else 'a viewer'}; "
        "their sessions were ended."
        if role != user.role
        else ""
    )
    return _change(user, message, role=role)


@bp.post("/<int:user_id>/deactivate")
def deactivate(user_id: int):
    user = _get_user(user_id)
    return _change(user, f"{user.username} is deactivated and signed out everywhere.", active=False)


@bp.post("/<int:user_id>/reactivate")
def reactivate(user_id: int):
    user = _get_user(user_id)
    return _change(user, f"{user.username} may sign in again.", active=True)


@bp.post("/<int:user_id>/password")
def reset_password(user_id: int):
    user = _get_user(user_id)
    password = _field("password")
    if password != _field("confirm"):
        return _render_detail(user, {"confirm": "Passwords do not match."}, 422)
    try:
        set_password(user.id, password, actor=current_user, ip=_ip())
    except UserError as exc:
        return _render_detail(user, {"password": str(exc)}, 422)
    flash(f"{user.username}'s password was changed; their sessions were ended.", "success")
    return redirect(url_for("admin_users.detail", user_id=user.id))


@bp.post("/<int:user_id>/link")
def new_link(user_id: int):
    user = _get_user(user_id)
    try:
        token = make_set_password_link(user.id, actor=current_user, ip=_ip(), reset=True)
    except UserError:
        abort(404)
    return _link_page(user, token, created=False)


@bp.post("/<int:user_id>/access")
def set_access(user_id: int):
    """Grants from the user's page: exactly the ticked streams and groups."""
    user = _get_user(user_id)
    if user.is_admin:
        return _render_detail(user, {"access": "Admins see every stream; nothing to grant."}, 409)
    raw_ids = request.form.getlist("stream_ids")
    groups = [g.strip() for g in request.form.getlist("groups")]
    if len(raw_ids) > MAX_CHOICES or len(groups) > MAX_CHOICES:
        return _render_detail(user, {"access": "Too many choices in one form."}, 422)
    stream_ids = parse_ids(raw_ids)
    if stream_ids is None:
        return _render_detail(user, {"access": "A chosen stream does not exist; reload."}, 422)
    try:
        granted, revoked = set_grants(
            user, stream_ids, groups, actor=current_user, ip=_ip(), via="web"
        )
    except AccessError as exc:
        return _render_detail(user, {"access": str(exc)}, 422)
    if granted or revoked:
        parts = []
        if granted:
            parts.append("granted " + ", ".join(granted))
        if revoked:
            parts.append("revoked " + ", ".join(revoked))
        flash(f"Access of {user.username}: " + "; ".join(parts) + ".", "success")
    else:
        flash("Nothing changed.", "info")
    return redirect(url_for("admin_users.detail", user_id=user.id) + "#access")


# --- delete -----------------------------------------------------------------------------------


@bp.get("/<int:user_id>/delete")
def confirm_delete(user_id: int):
    user = _get_user(user_id)
    grants = grants_of(user)
    return render_template(
        "admin/users/confirm_delete.html",
        user=user,
        last_admin=is_last_active_admin(user),
        is_self=user.id == current_user.id,
        subscriptions=PushSubscription.select().where(PushSubscription.user == user.id).count(),
        stream_grants=len(grants.stream_ids),
        group_grants=len(grants.groups),
        summaries=Summary.select().where(Summary.requested_by == user.id).count(),
        timelapses=Timelapse.select().where(Timelapse.requested_by == user.id).count(),
    )


@bp.post("/<int:user_id>/delete")
def delete(user_id: int):
    user = _get_user(user_id)
    is_self = user.id == current_user.id
    try:
        username = delete_user(user.id, actor=current_user, ip=_ip())
    except UserError as exc:
        return _render_detail(user, {"account": str(exc)}, 409)
    if is_self:
        return redirect(url_for("auth.login"))
    flash(f"User “{username}” deleted.", "info")
    return redirect(url_for("admin_users.index"))


# --- a stream's page: who can see it ----------------------------------------------------------


def _stream_and_viewer(stream_id: int) -> tuple[Stream, User]:
    stream = Stream.get_or_none(Stream.id == stream_id)
    if stream is None:
        abort(404)
    user_id = parse_id(request.form.get("user"))
    if user_id is None:
        abort(400, "Choose a viewer.")
    user = User.get_or_none(User.id == user_id)
    if user is None:
        abort(404)
    if user.is_admin:
        abort(409, "Admins see every stream; nothing to grant.")
    return stream, user


@bp.post("/streams/<int:stream_id>/grant")
def stream_grant(stream_id: int):
    stream, user = _stream_and_viewer(stream_id)
    change_access(user, grant_streams=[stream], actor=current_user, ip=_ip())
    flash(f"{user.username} may see {stream.name}.", "success")
    return redirect(url_for("streams.detail", stream_id=stream.id) + "#who-can-see")


@bp.post("/streams/<int:stream_id>/revoke")
def stream_revoke(stream_id: int):
    stream, user = _stream_and_viewer(stream_id)
    change_access(user, revoke_streams=[stream], actor=current_user, ip=_ip())
    flash(f"{user.username}'s direct access to {stream.name} was taken back.", "info")
    return redirect(url_for("streams.detail", stream_id=stream.id) + "#who-can-see")
