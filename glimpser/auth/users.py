"""Creating users and closing first-run setup, shared by /setup, the CLI and the admin UI."""

from __future__ import annotations

import re

import peewee

from glimpser import times
from glimpser.auth.passwords import hash_password, password_problem
from glimpser.db import write_transaction
from glimpser.models import ROLES, AuditLog, Setting, User

MAX_USERNAME = 64
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
SETUP_DONE_KEY = "setup_completed_at"


class UserError(ValueError):
    """A user cannot be created as asked; the message is shown to the person."""


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


def create_user(
    username: str,
    password: str,
    role: str,
    *,
    first_run: bool = False,
    actor: User | None = None,
    ip: str = "",
) -> User:
    """Create a user; with first_run=True only while setup is still open."""
    username = username.strip()
    problem = username_problem(username) or password_problem(password)
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
        user = User.create(username=username, password_hash=hash_password(password), role=role)
        AuditLog.create(
            user=actor or user,
            action="user.create",
            target=f"user:{user.id}",
            detail={"username": username, "role": role, "first_run": first_run},
            ip=ip,
        )
    return user
