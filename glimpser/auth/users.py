"""Users: creating them, changing role and activation, passwords, one-time set-password links
and deletion; shared by /setup, the CLI and Admin → Users.

Every change here runs in one write transaction together with its audit entry. Changes that
take something away from a user (role, activation, password, deletion) bump the user's
session_epoch in the same transaction, which ends every session they have at once (the
session loader in glimpser.auth rejects older epochs).

The last active admin can never be demoted, deactivated or deleted: `_lock_active_admins()`
reads the active admins inside the write transaction, with their rows locked on PostgreSQL
(SELECT … FOR UPDATE; SQLite's IMMEDIATE transaction already lets one writer in at a time),
so two admins demoting each other at the same moment cannot both succeed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

import peewee

from glimpser import times
from glimpser.auth.api_keys import request_key_detail
from glimpser.auth.passwords import NO_PASSWORD, hash_password, password_problem
from glimpser.db import database, write_transaction
from glimpser.models import ROLES, AuditLog, SetPasswordToken, Setting, User

MAX_USERNAME = 64
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
SETUP_DONE_KEY = "setup_completed_at"
# How long a one-time set-password link works.
SET_PASSWORD_LINK_HOURS = 72
LAST_ADMIN_MESSAGE = (
    "This is the last active admin: someone must be able to administer Glimpser. "
    "Make another user an admin (or reactivate one) first."
)


class UserError(ValueError):
    """A user cannot be created or changed as asked; the message is shown to the person."""


class LastAdminError(UserError):
    """The change would leave no active admin."""

    def __init__(self) -> None:
        super().__init__(LAST_ADMIN_MESSAGE)


def username_problem(username: str) -> str | None:
    if not USERNAME_RE.match(username):
        return "Username must be 1–64 letters, digits or . _ @ -"
    return None


def setup_open() -> bool:
    """First-run setup is possible only until the first user was ever created."""
    return not Setting.select().where(Setting.key == SETUP_DONE_KEY).exists()


def _close_setup() -> None:
    """Mark setup done; the primary key makes a second, concurrent setup fail."""
    Setting.insert(key=SETUP_DONE_KEY, value=times.isoformat(times.utcnow())).execute()


def _audit(actor: User | None, action: str, user: User, ip: str, **detail: object) -> None:
    AuditLog.create(
        user=actor,
        action=action,
        target=f"user:{user.id}",
        detail={"username": user.username, **detail, **request_key_detail()},
        ip=ip,
    )


def create_user(
    username: str,
    password: str | None,
    role: str,
    *,
    first_run: bool = False,
    actor: User | None = None,
    ip: str = "",
) -> User:
    """Create a user; with first_run=True only while setup is still open.

    password=None makes a user without a password (they set one with a one-time link, see
    `make_set_password_link`). The first-run admin is signed in by /setup at once, so their
    last sign-in is now.
    """
    username = username.strip()
    problem = username_problem(username)
    if not problem and password is not None:
        problem = password_problem(password, username)
    if problem:
        raise UserError(problem)
    if role not in ROLES:
        raise UserError(f"Role must be one of: {', '.join(ROLES)}.")
    with write_transaction():
        if first_run:
            try:
                _close_setup()
            except peewee.IntegrityError:
                raise UserError("Setup has already been completed.") from None
        elif setup_open():
            _close_setup()
        if User.select().where(peewee.fn.LOWER(User.username) == username.lower()).exists():
            raise UserError("That username is taken.")
        user = User.create(
            username=username,
            password_hash=hash_password(password) if password is not None else NO_PASSWORD,
            role=role,
            last_login_at=times.utcnow() if first_run else None,
        )
        _audit(
            actor or user,
            "user.create",
            user,
            ip,
            role=role,
            first_run=first_run,
            password="set" if password is not None else "one-time link",
        )
    return user


# --- changes ----------------------------------------------------------------------------------


def _lock_active_admins() -> list[int]:
    """The ids of the active admins, read (and on PostgreSQL locked) in this transaction."""
    query = User.select(User.id).where((User.role == "admin") & (User.active == True))  # noqa: E712
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        query = query.order_by(User.id).for_update()
    return [row.id for row in query]


def _fresh(user_id: int) -> User:
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise UserError("That user no longer exists.")
    return user


def _bump_epoch(user_id: int) -> None:
    User.update(session_epoch=User.session_epoch + 1).where(User.id == user_id).execute()


def is_last_active_admin(user: User) -> bool:
    """For the UI: whether this user is the only active admin (the writes check again)."""
    if not (user.is_admin and user.active):
        return False
    admins = User.select().where((User.role == "admin") & (User.active == True))  # noqa: E712
    return admins.count() <= 1


def update_user(
    user_id: int,
    *,
    role: str | None = None,
    active: bool | None = None,
    actor: User | None = None,
    ip: str = "",
) -> User:
    """Change a user's role and/or activation; ends their sessions when anything changed."""
    if role is not None and role not in ROLES:
        raise UserError(f"Role must be one of: {', '.join(ROLES)}.")
    with write_transaction():
        admins = _lock_active_admins()
        user = _fresh(user_id)
        before = {"role": user.role, "active": bool(user.active)}
        after = {
            "role": role if role is not None else user.role,
            "active": active if active is not None else bool(user.active),
        }
        if before == after:
            return user
        stays_active_admin = after["role"] == "admin" and after["active"]
        if user.id in admins and not stays_active_admin and len(admins) <= 1:
            raise LastAdminError()
        User.update(role=after["role"], active=after["active"]).where(User.id == user.id).execute()
        _bump_epoch(user.id)
        # What changed, in glimpser.web.audit.field_changes' format (imported here lazily:
        # this module is used outside Flask too).
        from glimpser.web.audit import field_changes

        changes = field_changes(before, after)
        if "active" in changes and len(changes) == 1:
            action = "user.reactivate" if after["active"] else "user.deactivate"
        else:
            action = "user.update"
        _audit(actor, action, user, ip, changes=changes)
    return _fresh(user_id)


def set_password(user_id: int, password: str, *, actor: User | None = None, ip: str = "") -> User:
    """An admin sets (resets) a user's password; ends the user's sessions and open links."""
    user = _fresh(user_id)
    problem = password_problem(password, user.username)
    if problem:
        raise UserError(problem)
    password_hash = hash_password(password)
    with write_transaction():
        user = _fresh(user_id)
        User.update(password_hash=password_hash).where(User.id == user.id).execute()
        _bump_epoch(user.id)
        _end_links(user.id)
        _audit(actor, "user.password_reset", user, ip, how="typed by an admin")
    return _fresh(user_id)


def delete_user(user_id: int, *, actor: User | None = None, ip: str = "") -> str:
    """Delete a user (what goes with them: see models' on_delete and docs/admin.md).

    Returns the deleted username."""
    with write_transaction():
        admins = _lock_active_admins()
        user = _fresh(user_id)
        if user.id in admins and len(admins) <= 1:
            raise LastAdminError()
        # The audit entry is written first: it names the user in its detail, and its `user`
        # column is the actor (set to NULL by the database if the actor deletes themselves).
        _audit(actor, "user.delete", user, ip, role=user.role)
        _bump_epoch(user.id)
        user.delete_instance()
    return user.username


# --- one-time set-password links --------------------------------------------------------------


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _end_links(user_id: int) -> None:
    """Unused links of the user stop working (a new link or password replaces them)."""
    SetPasswordToken.delete().where(
        (SetPasswordToken.user == user_id) & SetPasswordToken.used_at.is_null()
    ).execute()


def make_set_password_link(
    user_id: int, *, actor: User | None = None, ip: str = "", reset: bool = False
) -> str:
    """A new one-time token for the user (earlier unused ones stop working); returned once,
    stored only as a hash. With reset=True the user's current password and sessions end too
    (a password reset by link); a new user's first link leaves both alone."""
    secret = secrets.token_urlsafe(32)
    now = times.utcnow()
    with write_transaction():
        user = _fresh(user_id)
        _end_links(user.id)
        token = SetPasswordToken.create(
            user=user.id,
            token_hash=_token_hash(secret),
            created_by=actor.id if actor is not None else None,
            created_at=now,
            expires_at=now + timedelta(hours=SET_PASSWORD_LINK_HOURS),
        )
        if reset:
            User.update(password_hash=NO_PASSWORD).where(User.id == user.id).execute()
            _bump_epoch(user.id)
        _audit(
            actor,
            "user.password_reset" if reset else "user.password_link",
            user,
            ip,
            how="one-time link",
            expires_at=times.isoformat(token.expires_at),
        )
    return f"{token.id}.{secret}"


@dataclass
class LinkUser:
    """The user a valid link is for (what the set-password page shows)."""

    token_id: int
    user: User


class LinkError(Exception):
    """The link is unknown, used or expired (the message says which, in general terms)."""


def _parse_token(token: str) -> tuple[int, str] | None:
    raw_id, _, secret = token.partition(".")
    if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 10 or not secret:
        return None
    if len(secret) > 100:
        return None
    token_id = int(raw_id)
    return (token_id, secret) if 0 < token_id <= 2**31 - 1 else None


def check_set_password_link(token: str) -> LinkUser:
    """The user a link is for; LinkError when it is unknown, used or expired."""
    parsed = _parse_token(token)
    if parsed is None:
        raise LinkError("This link is not valid.")
    token_id, secret = parsed
    row = SetPasswordToken.get_or_none(SetPasswordToken.id == token_id)
    # Compared in constant time, by hash; a wrong secret looks exactly like an unknown link.
    if row is None or not hmac.compare_digest(row.token_hash, _token_hash(secret)):
        raise LinkError("This link is not valid.")
    if row.used_at is not None:
        raise LinkError("This link has already been used.")
    if row.expires_at <= times.utcnow():
        raise LinkError("This link has expired.")
    user = User.get_or_none(User.id == row.user_id)
    if user is None or not user.active:
        raise LinkError("This link is not valid.")
    return LinkUser(token_id, user)


def use_set_password_link(token: str, password: str, *, ip: str = "") -> User:
    """Set the password from a one-time link: the link is used up, other sessions end.

    UserError when the password breaks the policy (the link stays valid), LinkError when the
    link is not (or no longer) valid."""
    link = check_set_password_link(token)
    problem = password_problem(password, link.user.username)
    if problem:
        raise UserError(problem)
    password_hash = hash_password(password)
    with write_transaction():
        now = times.utcnow()
        # Marking it used is the guard: of two requests with the same link, one wins.
        used = (
            SetPasswordToken.update(used_at=now)
            .where(
                (SetPasswordToken.id == link.token_id)
                & SetPasswordToken.used_at.is_null()
                & (SetPasswordToken.expires_at > now)
            )
            .execute()
        )
        if not used:
            raise LinkError("This link has already been used.")
        user = _fresh(link.user.id)
        User.update(password_hash=password_hash).where(User.id == user.id).execute()
        _bump_epoch(user.id)
        _audit(user, "user.password_set", user, ip, how="one-time link")
    return _fresh(link.user.id)


def pending_link(user: User) -> SetPasswordToken | None:
    """The user's unused, unexpired link, if any (for the admin's user page)."""
    return (
        SetPasswordToken.select()
        .where(
            (SetPasswordToken.user == user.id)
            & SetPasswordToken.used_at.is_null()
            & (SetPasswordToken.expires_at > times.utcnow())
        )
        .order_by(SetPasswordToken.id.desc())
        .first()
    )
