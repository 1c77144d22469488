"""Admin → Sessions: every user's signed-in sessions; end one, or all of a user's.

Sessions come from the registry in glimpser.auth.sessions and are addressed by their handle
(never their id). Ending one deletes its session key; ending all of a user's bumps the user's
session_epoch (which also ends sessions the registry does not know) in the same transaction as
the audit entry, then deletes the registered keys. Either takes effect on that browser's next
request.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user

from glimpser.auth import sessions as session_registry
from glimpser.db import write_transaction
from glimpser.models import User
from glimpser.web.audit import audit
from glimpser.web.params import parse_id
from glimpser.web.profile import MAX_HANDLE

bp = Blueprint("admin_sessions", __name__, url_prefix="/admin/sessions")


def _epochs(users: list[User]) -> dict[int, int]:
    # A deactivated user has no live session, whatever its epoch: list none, prune them all.
    return {u.id: u.session_epoch if u.active else -1 for u in users}


def _user_from(raw: str | None, *, required: bool) -> User | None:
    if raw is None or raw == "":
        if required:
            abort(400, "Say whose sessions.")
        return None
    user_id = parse_id(raw)
    if user_id is None:
        abort(400, "The user must be a user id.")
    user = User.get_or_none(User.id == user_id)
    if user is None:
        abort(404, "There is no such user.")
    return user


@bp.get("/")
def index():
    chosen = _user_from(request.args.get("user"), required=False)
    users = list(User.select().order_by(User.username))
    shown = [chosen] if chosen else users
    by_user: dict[int, list[session_registry.SignedInSession]] = {u.id: [] for u in shown}
    for signed_in in session_registry.list_sessions(_epochs(shown)):
        by_user[signed_in.user_id].append(signed_in)
    groups = [(u, by_user[u.id]) for u in shown if by_user[u.id] or chosen]
    return render_template(
        "admin/sessions/index.html",
        users=users,
        chosen=chosen,
        groups=groups,
        total=sum(len(found) for _user, found in groups),
    )


def _back(user: User):
    """Back to the list, filtered by the user when the form came from the filtered list."""
    if request.form.get("back_user") == "1":
        return redirect(url_for("admin_sessions.index", user=user.id))
    return redirect(url_for("admin_sessions.index"))


@bp.post("/end")
def end():
    """End one session of a user (form: user, session = its handle)."""
    user = _user_from(request.form.get("user"), required=True)
    assert user is not None
    handle = request.form.get("session", "")
    if not handle or len(handle) > MAX_HANDLE:
        abort(400, "Say which session to end.")
    target = session_registry.find(session_registry.list_sessions(_epochs([user])), handle)
    if target is None:
        abort(404, "That user has no such session (it may have ended already).")
    if target.current:
        abort(400, "That is this browser: use Sign out.")
    with write_transaction():
        audit(
            "session.end",
            f"user:{user.id}",
            {"username": user.username, "device": target.device, "address": target.address},
        )
        session_registry.end(target)
    flash(
        f"Ended {user.username}'s session on {target.device} "
        f"({target.address or 'unknown address'}).",
        "success",
    )
    return _back(user)


@bp.post("/end-all")
def end_all():
    """End every session of a user (for yourself: every one but this browser's)."""
    user = _user_from(request.form.get("user"), required=True)
    assert user is not None
    yourself = user.id == current_user.id
    with write_transaction():
        User.update(session_epoch=User.session_epoch + 1).where(User.id == user.id).execute()
        audit(
            "session.end",
            f"user:{user.id}",
            {"username": user.username, "all": True, "all_but_current": yourself},
        )
    if yourself:
        session_registry.restart_current(user.id)
    ended = session_registry.end_all(user.id, keep_sid=session.sid if yourself else None)
    whose = "your other" if yourself else f"{user.username}'s"
    flash(f"Ended {whose} sessions ({ended}).", "success")
    return _back(user)
