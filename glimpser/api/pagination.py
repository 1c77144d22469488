"""Cursor pagination for API lists: `?limit=` and an opaque `?cursor=` from the previous page.

A page answers {"items": [...], "next_cursor": "…" | null} and, when there is more, a
`Link: <…?cursor=…>; rel="next"` header with the same query otherwise. Cursors are keyset
positions (glimpser.web.keyset), so pages stay stable while rows arrive or go.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request
from pydantic import BaseModel, Field

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class PageQuery(BaseModel):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page")
    cursor: str | None = Field(
        None, max_length=100, description="`next_cursor` of the previous page"
    )


def next_link(cursor: str) -> str:
    args = request.args.to_dict(flat=False)
    args["cursor"] = [cursor]
    from urllib.parse import urlencode

    return f'<{request.base_url}?{urlencode(args, doseq=True)}>; rel="next"'


def page_response(
    items: list[dict[str, Any]] | list[BaseModel], next_cursor: str | None
) -> Response:
    """The JSON page, with the Link header when there is a next page."""
    body = {
        "items": [i.model_dump(mode="json") if isinstance(i, BaseModel) else i for i in items],
        "next_cursor": next_cursor,
    }
    resp = current_app.json.response(body)
    if next_cursor is not None:
        resp.headers["Link"] = next_link(next_cursor)
    return resp
