"""`/api/v1/users` and their grants (the admin scope, an admin's key).

Every change goes through the functions Admin → Users uses: glimpser.auth.users (create with
the same password policy, role and activation with the last-active-admin protection, delete)
and glimpser.auth.access.set_grants (grants), which write the change and its audit entry in one
transaction (the entry names the API key). Password hashes are never answered; a password is
write-only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from flask import Blueprint, request
from flask_login import current_user
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from glimpser.api import problems
from glimpser.api.auth import needs_scope
from glimpser.api.spec import operation
from glimpser.auth.access import AccessError, grants_of, set_grants
from glimpser.auth.passwords import MAX_PASSWORD_LENGTH, NO_PASSWORD
from glimpser.auth.users import (
    MAX_USERNAME,
    LastAdminError,
    UserError,
    create_user,
    delete_user,
    update_user,
)
from glimpser.models import User

bp = Blueprint("users", __name__, url_prefix="/users")
TAGS = ("users",)
Role = Literal["admin", "viewer"]
MAX_GRANTS = 5000  # as many choices as the access form takes


class UserOut(BaseModel):
    id: int
    username: str
    role: Role
    active: bool
    has_password: bool = Field(description="False until a one-time link was used")
    created_at: datetime
    last_login_at: datetime | None


class UserList(BaseModel):
    items: list[UserOut]


class UserCreate(BaseModel):
    """A new user with a password (the password policy of Admin → Users applies)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    username: str = Field(min_length=1, max_length=MAX_USERNAME)
    role: Role = "viewer"
    password: SecretStr = Field(max_length=MAX_PASSWORD_LENGTH)


class UserChange(BaseModel):
    """What to change (fields left out stay). Demoting or deactivating ends the user's
    sessions; the last active admin cannot lose either (409)."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    active: bool | None = None


class GrantsBody(BaseModel):
    """A viewer's grants: these streams (ids) and these stream groups, exactly."""

    model_config = ConfigDict(extra="forbid")

    stream_ids: list[int] = Field(default_factory=list, max_length=MAX_GRANTS)
    groups: list[str] = Field(default_factory=list, max_length=MAX_GRANTS)


class GrantsOut(BaseModel):
    stream_ids: list[int]
    groups: list[str]


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        role=user.role,
        active=bool(user.active),
        has_password=user.password_hash != NO_PASSWORD,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def _get_user(user_id: int) -> User:
    user = User.get_or_none(User.id == user_id)
    if user is None:
        problems.problem(404, "Not found", "No user has this id.")
    return user


def _ip() -> str:
    return request.remote_addr or ""


def _grants_out(user: User) -> GrantsOut:
    grants = grants_of(user)
    return GrantsOut(
        stream_ids=sorted(grants.stream_ids), groups=sorted(grants.groups, key=str.lower)
    )


@bp.get("")
@needs_scope("admin")
@operation(tags=TAGS, ok=UserList)
def list_users():
    """Every user, by username."""
    return UserList(items=[user_out(u) for u in User.select().order_by(User.username)])


@bp.get("/<int:user_id>")
@needs_scope("admin")
@operation(tags=TAGS, ok=UserOut, errors=(404,))
def get_user(user_id: int):
    """One user."""
    return user_out(_get_user(user_id))


@bp.post("")
@needs_scope("admin")
@operation(tags=TAGS, json=UserCreate, ok=UserOut, status=201)
def create():
    """Create a user with a password (the password policy applies: 422 says why not)."""
    body: UserCreate = request.context.json  # type: ignore[attr-defined]
    try:
        user = create_user(
            body.username,
            body.password.get_secret_value(),
            body.role,
            actor=current_user,
            ip=_ip(),
        )
    except UserError as exc:
        message = str(exc)
        field = "password" if "assword" in message else "username"
        problems.invalid({field: message})
    return user_out(user), 201


@bp.patch("/<int:user_id>")
@needs_scope("admin")
@operation(tags=TAGS, json=UserChange, ok=UserOut, errors=(404, 409))
def change(user_id: int):
    """Change a user's role and/or activation."""
    user = _get_user(user_id)
    body: UserChange = request.context.json  # type: ignore[attr-defined]
    try:
        user = update_user(
            user.id, role=body.role, active=body.active, actor=current_user, ip=_ip()
        )
    except LastAdminError as exc:
        problems.problem(409, "Conflict", str(exc))
    except UserError as exc:  # deleted meanwhile
        problems.problem(404, "Not found", str(exc))
    return user_out(user)


@bp.delete("/<int:user_id>")
@needs_scope("admin")
@operation(tags=TAGS, ok=None, status=204, errors=(404, 409))
def delete(user_id: int):
    """Delete a user (their keys, sessions and grants go with them)."""
    user = _get_user(user_id)
    try:
        delete_user(user.id, actor=current_user, ip=_ip())
    except LastAdminError as exc:
        problems.problem(409, "Conflict", str(exc))
    except UserError as exc:
        problems.problem(404, "Not found", str(exc))
    return "", 204


@bp.get("/<int:user_id>/grants")
@needs_scope("admin")
@operation(tags=TAGS, ok=GrantsOut, errors=(404,))
def get_grants(user_id: int):
    """The streams and groups granted to a user (admins see every stream anyway)."""
    return _grants_out(_get_user(user_id))


@bp.put("/<int:user_id>/grants")
@needs_scope("admin")
@operation(tags=TAGS, json=GrantsBody, ok=GrantsOut, errors=(404, 409))
def put_grants(user_id: int):
    """Make a viewer's grants exactly these; 409 for an admin (they see every stream)."""
    user = _get_user(user_id)
    if user.is_admin:
        problems.problem(409, "Conflict", "Admins see every stream; nothing to grant.")
    body: GrantsBody = request.context.json  # type: ignore[attr-defined]
    try:
        set_grants(user, body.stream_ids, body.groups, actor=current_user, ip=_ip(), via="api")
    except AccessError as exc:
        problems.invalid({exc.field or "": str(exc)})
    return _grants_out(user)
