"""Per-stream access: admins see every stream, viewers only the streams granted to them.

A viewer is granted streams directly (StreamAccess) or by group (GroupAccess): a group grant
covers every stream whose groups hold that group, also streams that join it later, and stops
covering a stream that leaves it. Groups match case-insensitively, as rules match them.

Every view that touches a stream, snapshot, event or live view loads the stream through
`get_visible_stream()` (or filters with `visible_streams()`), so a guessed id answers 404.
The admin UI and the `glimpser grant`/`revoke` commands change grants only through
`change_access()`, so both write the same rows and the same audit entries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import peewee
from flask import abort, g, has_request_context
from flask_login import current_user

from glimpser.auth.api_keys import request_key_detail
from glimpser.db import database, write_transaction
from glimpser.models import AuditLog, GroupAccess, Stream, StreamAccess, User


def _streams_in_granted_groups(user_id: int) -> peewee.Node:
    """A subquery of the ids of the streams one of whose groups is granted to the user.

    Stream.groups is a JSON list stored as text: it is taken apart with the database's JSON
    functions and compared element by element (a LIKE on the text would let group "a" match
    "ab", or a quote inside a name match another element).
    """
    granted = GroupAccess.select(peewee.fn.LOWER(GroupAccess.group)).where(
        GroupAccess.user == user_id
    )
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        elements = (
            "SELECT s.id FROM stream AS s, jsonb_array_elements_text(CASE WHEN "
            "jsonb_typeof(s.groups::jsonb) = 'array' THEN s.groups::jsonb ELSE '[]'::jsonb END)"
            " AS g(value) WHERE LOWER(g.value) IN"
        )
    else:
        elements = (
            "SELECT s.id FROM stream AS s, json_each(CASE WHEN json_valid(s.groups) AND "
            "json_type(s.groups) = 'array' THEN s.groups ELSE '[]' END) AS g "
            "WHERE g.type = 'text' AND LOWER(g.value) IN"
        )
    return peewee.NodeList((peewee.SQL("(" + elements), granted, peewee.SQL(")")))


def visible_streams(user: User | None = None) -> peewee.ModelSelect:
    """The streams `user` may see (the signed-in user's by default).

    For the signed-in user on an API request whose key is limited to some streams, only those
    of them (glimpser.auth.api_keys): every view that loads streams through here obeys it."""
    query = Stream.select()
    if user is None:
        user = current_user
        key = g.get("api_key") if has_request_context() else None
        if key is not None and key.stream_ids is not None:
            query = query.where(Stream.id.in_(key.stream_ids))
    if getattr(user, "is_admin", False):
        return query
    direct = StreamAccess.select(StreamAccess.stream).where(StreamAccess.user == user.id)
    return query.where(Stream.id.in_(direct) | Stream.id.in_(_streams_in_granted_groups(user.id)))


def get_visible_stream(stream_id: int) -> Stream:
    """The stream, or 404 when it does not exist *or* the user may not see it."""
    stream = visible_streams().where(Stream.id == stream_id).first()
    if stream is None:
        abort(404)
    return stream


# --- groups and grants ------------------------------------------------------------------------


def known_groups() -> list[str]:
    """Every group some stream is in, once each (case-insensitively), sorted."""
    seen: dict[str, str] = {}
    for (groups,) in Stream.select(Stream.groups).tuples():
        for group in groups or []:
            if isinstance(group, str) and group.strip():
                seen.setdefault(group.lower(), group)
    return sorted(seen.values(), key=str.lower)


@dataclass
class Grants:
    """What one user is granted: stream ids and group names."""

    stream_ids: set[int] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)


def grants_of(user: User) -> Grants:
    stream_ids = {
        row.stream_id for row in StreamAccess.select().where(StreamAccess.user == user.id)
    }
    groups = {row.group for row in GroupAccess.select().where(GroupAccess.user == user.id)}
    return Grants(stream_ids, groups)


def streams_granted_count(user_ids: Iterable[int]) -> dict[int, int]:
    """For each viewer, how many (existing) streams they may see, direct and by group."""
    counts = {}
    for user_id in user_ids:
        counts[user_id] = visible_streams(_Viewer(user_id)).count()
    return counts


@dataclass
class _Viewer:
    """Enough of a user for visible_streams(): a viewer's id."""

    id: int
    is_admin: bool = False


class AccessError(ValueError):
    """A grant or revoke cannot be done as asked; the message is shown to the person, and
    `field` names what was wrong ("stream_ids" or "groups"; "" when no one field)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


MAX_GROUP_CHARS = 64
GROUP_NAME_MESSAGE = "A group name is 1–64 characters."
STREAM_GONE_MESSAGE = "A chosen stream no longer exists; reload."


def change_access(
    user: User,
    *,
    grant_streams: Iterable[Stream] = (),
    revoke_streams: Iterable[Stream] = (),
    grant_groups: Iterable[str] = (),
    revoke_groups: Iterable[str] = (),
    actor: User | None = None,
    ip: str = "",
    via: str = "web",
) -> tuple[list[str], list[str]]:
    """Grant and revoke streams and groups of one user, audited, in one transaction.

    Returns what was granted and what was revoked, in words (e.g. ["stream Garden",
    "group yard"]); a grant that already exists or a revoke of nothing is left out (no row,
    no audit entry). Call inside a write_transaction() to make it part of a larger change.
    """
    granted: list[str] = []
    revoked: list[str] = []

    def record(action: str, target: str, detail: dict) -> None:
        AuditLog.create(
            user=actor,
            action=action,
            target=target,
            detail={
                "user": user.username,
                "user_id": user.id,
                "via": via,
                **detail,
                **request_key_detail(),
            },
            ip=ip,
        )

    with write_transaction():
        for stream in grant_streams:
            added = (
                StreamAccess.insert(user=user.id, stream=stream.id)
                .on_conflict_ignore()
                .as_rowcount()
                .execute()
            )
            if added:
                record("access.grant", f"stream:{stream.id}", {"stream": stream.name})
                granted.append(f"stream {stream.name}")
        for stream in revoke_streams:
            removed = (
                StreamAccess.delete()
                .where((StreamAccess.user == user.id) & (StreamAccess.stream == stream.id))
                .execute()
            )
            if removed:
                record("access.revoke", f"stream:{stream.id}", {"stream": stream.name})
                revoked.append(f"stream {stream.name}")
        for group in grant_groups:
            group = group.strip()
            if not group or len(group) > MAX_GROUP_CHARS:
                raise AccessError(GROUP_NAME_MESSAGE, "groups")
            exists = (
                GroupAccess.select()
                .where(
                    (GroupAccess.user == user.id)
                    & (peewee.fn.LOWER(GroupAccess.group) == group.lower())
                )
                .exists()
            )
            if not exists:
                GroupAccess.insert(user=user.id, group=group).on_conflict_ignore().execute()
                record("access.grant", f"group:{group}", {"group": group})
                granted.append(f"group {group}")
        for group in revoke_groups:
            removed = (
                GroupAccess.delete()
                .where(
                    (GroupAccess.user == user.id)
                    & (peewee.fn.LOWER(GroupAccess.group) == group.strip().lower())
                )
                .execute()
            )
            if removed:
                record("access.revoke", f"group:{group.strip()}", {"group": group.strip()})
                revoked.append(f"group {group.strip()}")
    return granted, revoked


def set_grants(
    user: User,
    stream_ids: Iterable[int],
    groups: Iterable[str],
    *,
    actor: User | None = None,
    ip: str = "",
    via: str = "web",
) -> tuple[list[str], list[str]]:
    """Make a viewer's grants exactly these streams and groups (Admin → Users' access form and
    `PUT /api/v1/users/{id}/grants`): what is new is granted, what is missing revoked, through
    `change_access` (audited, one transaction). Groups compare case-insensitively.

    Raises AccessError for a group name that is empty or too long, or a stream that does not
    exist (nothing is changed then)."""
    groups = [g.strip() for g in groups]
    if any(not g or len(g) > MAX_GROUP_CHARS for g in groups):
        raise AccessError(GROUP_NAME_MESSAGE, "groups")
    wanted_ids = set(stream_ids)
    # Compared in Python: a huge id never reaches SQL.
    chosen = [s for s in Stream.select(Stream.id, Stream.name) if s.id in wanted_ids]
    if len(chosen) != len(wanted_ids):
        raise AccessError(STREAM_GONE_MESSAGE, "stream_ids")
    with write_transaction():
        current = grants_of(user)
        wanted_groups = {g.lower(): g for g in groups}
        current_groups = {g.lower(): g for g in current.groups}
        chosen_ids = {s.id for s in chosen}
        revoke = list(Stream.select().where(Stream.id.in_(list(current.stream_ids - chosen_ids))))
        return change_access(
            user,
            grant_streams=[s for s in chosen if s.id not in current.stream_ids],
            revoke_streams=revoke,
            grant_groups=[g for k, g in wanted_groups.items() if k not in current_groups],
            revoke_groups=[g for k, g in current_groups.items() if k not in wanted_groups],
            actor=actor,
            ip=ip,
            via=via,
        )


@dataclass
class WhoCanSee:
    """Who can see one stream: admins, viewers granted it directly, viewers by group."""

    admins: list[User]
    direct: list[User]
    by_group: list[tuple[User, list[str]]]  # (viewer, the stream's groups granted to them)
    others: list[User]  # viewers who cannot see it (to grant it to)


def who_can_see(stream: Stream) -> WhoCanSee:
    users = list(User.select().order_by(peewee.fn.LOWER(User.username)))
    direct_ids = {
        row.user_id for row in StreamAccess.select().where(StreamAccess.stream == stream.id)
    }
    stream_groups = {str(g).lower() for g in stream.groups or []}
    group_grants: dict[int, list[str]] = {}
    if stream_groups:
        for row in GroupAccess.select():
            if row.group.lower() in stream_groups:
                group_grants.setdefault(row.user_id, []).append(row.group)
    admins, direct, by_group, others = [], [], [], []
    for user in users:
        if user.is_admin:
            admins.append(user)
            continue
        if user.id in direct_ids:
            direct.append(user)
        if user.id in group_grants:
            by_group.append((user, sorted(group_grants[user.id], key=str.lower)))
        if user.id not in direct_ids:
            others.append(user)
    return WhoCanSee(admins, direct, by_group, others)
