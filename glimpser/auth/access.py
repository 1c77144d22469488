"""Per-stream access: admins see every stream, viewers only the streams granted to them.

Every view that touches a stream, snapshot, event or live view loads the stream through
`get_visible_stream()` (or filters with `visible_streams()`), so a guessed id answers 404.
"""

from __future__ import annotations

import peewee
from flask import abort
from flask_login import current_user

from glimpser.models import Stream, StreamAccess, User


def visible_streams(user: User | None = None) -> peewee.ModelSelect:
    user = user or current_user
    query = Stream.select()
    if getattr(user, "is_admin", False):
        return query
    granted = StreamAccess.select(StreamAccess.stream).where(StreamAccess.user == user.id)
    return query.where(Stream.id.in_(granted))


def get_visible_stream(stream_id: int) -> Stream:
    """The stream, or 404 when it does not exist *or* the user may not see it."""
    stream = visible_streams().where(Stream.id == stream_id).first()
    if stream is None:
        abort(404)
    return stream
