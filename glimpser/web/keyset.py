"""Keyset paging, newest first, for long lists (a stream's snapshots, the events timeline).

A cursor is "<time>_<id>" of the last row shown: the next page is the rows before it, which
stays stable while new rows arrive and old ones are deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import peewee
from flask import abort

from glimpser import times
from glimpser.web.params import MAX_ID, parse_int

__all__ = ["MAX_ID", "make_cursor", "older_than", "parse_cursor", "split_page"]

_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def make_cursor(at: datetime, row_id: int) -> str:
    """The cursor "<time>_<id>" of a row."""
    return f"{times.strftime(times.to_utc(at), _TIME_FORMAT)}_{row_id}"


def parse_cursor(raw: str, invalid: str, max_id: int = MAX_ID) -> tuple[datetime, int]:
    """(time, id) from a cursor; a 400 with the message `invalid` when it is not one (or the
    id is not an ASCII number from 0 to `max_id`)."""
    try:
        at_text, id_text = raw.split("_", 1)
        at = datetime.strptime(at_text, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        abort(400, invalid)
    row_id = parse_int(id_text, minimum=0, maximum=max_id)
    if row_id is None:
        abort(400, invalid)
    return at, row_id


def older_than(
    query: peewee.ModelSelect,
    at_field: peewee.Field,
    id_field: peewee.Field,
    cursor: tuple[datetime, int],
) -> peewee.ModelSelect:
    """The rows of `query` that come after the cursor's row, newest first."""
    at, row_id = cursor
    return query.where((at_field < at) | ((at_field == at) & (id_field < row_id)))


def split_page(
    rows: list[Any], size: int, cursor_of: Callable[[Any], str]
) -> tuple[list[Any], str | None]:
    """`rows` fetched with a limit of size + 1: the page, and the next page's cursor (None
    when there is no more)."""
    page = rows[:size]
    more = len(rows) > size
    return page, (cursor_of(page[-1]) if more and page else None)
