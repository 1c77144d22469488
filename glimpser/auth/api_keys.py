"""API keys: how scripts and home automation act on the JSON API (`/api/v1`) without a browser.

A key belongs to a user and acts with at most that user's rights, narrowed further by
- its scopes: `read` (GET), `write` (changes, where the user's role allows them), `admin`
  (the admin resources: users, grants, system; only an admin's key may hold it), and `metrics`
  (`/metrics` only). `write` includes `read`; `admin` includes both and `metrics`;
- optionally a list of streams: the key then sees only those (of the ones its user sees);
- optionally an expiry.

The key is shown once, at creation: `glp_` + an 8-character public prefix + `_` + a 43-character
secret. Only the SHA-256 of the whole key is stored (the key is random, 256 bits: a slow
password hash would add nothing), and the prefix finds the row. A revoked or expired key, or a
key of a deactivated or deleted user, is refused like an unknown one (401).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from glimpser import times
from glimpser.db import write_transaction
from glimpser.models import ApiKey, AuditLog, Stream, User

TOKEN_PREFIX = "glp_"  # noqa: S105 - the public start of every key
PREFIX_CHARS = 8
SCOPES: tuple[str, ...] = ("read", "write", "admin", "metrics")
SCOPE_LABELS = {
    "read": "Read: everything the user may see",
    "write": "Write: changes the user may make (includes read)",
    "admin": "Admin: users, grants and system status (admins only; includes write)",
    "metrics": "Metrics: /metrics for Prometheus (admins only: it covers every stream)",
}
# Which scopes satisfy a requirement: `write` includes `read`; `admin` includes everything.
_SATISFIED_BY = {
    "read": {"read", "write", "admin"},
    "write": {"write", "admin"},
    "admin": {"admin"},
    "metrics": {"metrics", "admin"},
}
# Scopes only an admin's key may hold: `admin`, and `metrics` (the metrics cover every stream,
# whoever may see it). Checked when a key is made and, against the role, on every request.
ADMIN_SCOPES = frozenset({"admin", "metrics"})
MAX_EXPIRY_DAYS = 3650
MAX_NAME_CHARS = 100
# "Last used" is written at most this often per key (not on every request).
LAST_USED_EVERY = timedelta(minutes=1)


class ApiKeyError(ValueError):
    """A key that cannot be made as asked; the message says why, in words for a person."""


@dataclass(frozen=True)
class NewKey:
    row: ApiKey
    token: str  # the whole key: shown once, never stored


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def request_key_detail() -> dict[str, str]:
    """{"api_key": prefix} inside a JSON API request, else {}: audit entries written outside
    glimpser.web.audit.audit() (users, grants) name the key with it too."""
    from flask import g, has_request_context

    key = g.get("api_key") if has_request_context() else None
    return {"api_key": key.prefix} if key is not None else {}


def has_scope(key: ApiKey, needed: str) -> bool:
    return bool(set(key.scopes or ()) & _SATISFIED_BY[needed])


def create_key(
    user: User,
    scopes: Iterable[str],
    *,
    name: str = "",
    expires_days: int | None = None,
    stream_ids: Iterable[int] | None = None,
    actor: User | None = None,
    ip: str = "",
    via: str = "",
) -> NewKey:
    """Make a key for `user` (audited as `api_key.create`; `via="cli"` for the command line);
    the token is in the result only."""
    chosen = sorted(set(scopes), key=SCOPES.index) if set(scopes) <= set(SCOPES) else None
    if not chosen:
        raise ApiKeyError(f"Choose at least one scope of: {', '.join(SCOPES)}.")
    if ADMIN_SCOPES & set(chosen) and not user.is_admin:
        raise ApiKeyError("Only an admin's key may have the admin or metrics scope.")
    if not user.active:
        raise ApiKeyError("This user is deactivated.")
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        raise ApiKeyError(f"Use at most {MAX_NAME_CHARS} characters for the name.")
    expires_at = None
    if expires_days is not None:
        if not 1 <= expires_days <= MAX_EXPIRY_DAYS:
            raise ApiKeyError(f"Expiry must be between 1 and {MAX_EXPIRY_DAYS} days.")
        expires_at = times.utcnow() + timedelta(days=expires_days)
    restricted = None
    if stream_ids is not None:
        restricted = sorted(set(stream_ids))
        found = Stream.select(Stream.id).where(Stream.id.in_(restricted)).count()
        if not restricted or found != len(restricted):
            raise ApiKeyError("A chosen stream does not exist.")
    with write_transaction():
        while True:
            prefix = secrets.token_hex(PREFIX_CHARS // 2)
            if not ApiKey.select().where(ApiKey.prefix == prefix).exists():
                break
        token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        row = ApiKey.create(
            user=user,
            name=name,
            prefix=prefix,
            secret_hash=hash_token(token),
            scopes=chosen,
            stream_ids=restricted,
            created_by=actor,
            expires_at=expires_at,
        )
        AuditLog.create(
            user=actor.id if actor is not None else None,
            action="api_key.create",
            target=f"api_key:{row.id}",
            detail={
                "prefix": prefix,
                "owner": user.username,
                "scopes": chosen,
                "streams": restricted,
                "expires_at": times.isoformat(expires_at) if expires_at else None,
                **({"via": via} if via else {}),
            },
            ip=ip,
        )
    return NewKey(row=row, token=token)


def parse_prefix(token: str) -> str | None:
    """The public prefix of a well-formed key, else None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    rest = token[len(TOKEN_PREFIX) :]
    prefix, sep, secret = rest.partition("_")
    if not sep or len(prefix) != PREFIX_CHARS or not secret:
        return None
    return prefix


def usable(key: ApiKey, now: datetime | None = None) -> bool:
    """Not revoked, not expired, and its user is active."""
    now = now or times.utcnow()
    if key.revoked_at is not None:
        return False
    if key.expires_at is not None and key.expires_at <= now:
        return False
    return bool(key.user.active)


def authenticate(token: str) -> ApiKey | None:
    """The usable key this token is, else None (unknown, wrong secret, revoked, expired, or
    its user deactivated: all the same to the caller)."""
    prefix = parse_prefix(token)
    if prefix is None:
        return None
    key = (
        ApiKey.select(ApiKey, User)
        .join(User, on=(ApiKey.user == User.id))
        .where(ApiKey.prefix == prefix)
        .first()
    )
    if key is None or not hmac.compare_digest(key.secret_hash, hash_token(token)):
        return None
    return key if usable(key) else None


def note_use(key: ApiKey, address: str) -> None:
    """Record when and from where the key was last used, at most once per LAST_USED_EVERY."""
    now = times.utcnow()
    if (
        key.last_used_at is not None
        and now - key.last_used_at < LAST_USED_EVERY
        and key.last_used_from == address[:64]
    ):
        return
    ApiKey.update(last_used_at=now, last_used_from=address[:64]).where(
        ApiKey.id == key.id
    ).execute()


def revoke(key: ApiKey, *, actor: User | None = None, ip: str = "", via: str = "") -> bool:
    """Revoke the key (audited as `api_key.revoke`; `via="cli"` for the command line); False
    when it already was."""
    with write_transaction():
        changed = (
            ApiKey.update(revoked_at=times.utcnow())
            .where(ApiKey.id == key.id, ApiKey.revoked_at.is_null())
            .execute()
        )
        if changed:
            AuditLog.create(
                user=actor.id if actor is not None else None,
                action="api_key.revoke",
                target=f"api_key:{key.id}",
                detail={
                    "prefix": key.prefix,
                    "owner": key.user.username,
                    **({"via": via} if via else {}),
                },
                ip=ip,
            )
    return bool(changed)


def keys_of(user: User | None = None) -> list[ApiKey]:
    """Keys, newest first: one user's, or everyone's (user=None)."""
    query = ApiKey.select(ApiKey, User).join(User, on=(ApiKey.user == User.id))
    if user is not None:
        query = query.where(ApiKey.user == user.id)
    return list(query.order_by(ApiKey.created_at.desc(), ApiKey.id.desc()))


def state(key: ApiKey, now: datetime | None = None) -> str:
    """ "active", "revoked", "expired" or "user deactivated", for lists."""
    now = now or times.utcnow()
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    if not key.user.active:
        return "user deactivated"
    return "active"
