"""Errors of the JSON API as RFC 9457 `application/problem+json`.

Every error under `/api/` is a problem document: {type, title, status, detail}, and for a 422
also `errors`, one entry per wrong field ({"field": "config.url", "message": "…"}). The app's
error handlers (glimpser.web.errors) answer API paths this way; views raise `problem()`.
"""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Response, abort, jsonify
from pydantic import BaseModel, Field, ValidationError

from glimpser import schema_helpers
from glimpser.notify.schemas import KINDS as CHANNEL_KINDS
from glimpser.sources.schemas import KINDS as SOURCE_KINDS

MEDIA_TYPE = "application/problem+json"
_UNION_TAGS = frozenset(SOURCE_KINDS) | frozenset(CHANNEL_KINDS)


class FieldError(BaseModel):
    field: str = Field(
        description='The field, as a dotted path ("config.url"); "" is the whole body'
    )
    message: str


class Problem(BaseModel):
    """An error (RFC 9457)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    errors: list[FieldError] | None = Field(None, description="On a 422: what is wrong, by field")


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    messages = schema_helpers.error_messages(exc, _UNION_TAGS)
    return [{"field": k, "message": v} for k, v in messages.items()]


def response(status: int, title: str, detail: str = "", **extra: Any) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    resp = jsonify(body)
    resp.status_code = status
    resp.mimetype = MEDIA_TYPE
    return resp


def problem(status: int, title: str, detail: str = "", **extra: Any) -> NoReturn:
    """Stop the request with this problem (a 4xx the view chose)."""
    abort(response(status, title, detail, **extra))


def invalid(errors: dict[str, str] | list[dict[str, str]], detail: str = "") -> NoReturn:
    """422 with the field errors ({field: message} or the list form)."""
    if isinstance(errors, dict):
        errors = [{"field": k, "message": v} for k, v in errors.items()]
    problem(
        422, "Invalid request", detail or "Some fields are not valid; see errors.", errors=errors
    )
