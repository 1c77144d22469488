"""Helpers the pydantic schemas share (streams, analysis rules, notification channels).

Form input arrives as text: `split_lines` and `split_list` turn one-per-line and comma-separated
text into lists. Secret fields are SecretStr; `secret_text` reads one and `dump_config` stores
(or leaves out) all of a config's SECRET_FIELDS. `error_messages` turns pydantic errors into
{field path: message} for the forms, the import and the API.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

# The most items a list field (groups, hide selectors) may hold: the schemas refuse more.
MAX_LIST_ITEMS = 50


def split_lines(value: Any) -> Any:
    """Form text with one item per line → the stripped, non-blank lines; other values as given."""
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    return value


def split_list(value: Any, *, lower: bool = False, max_chars: int | None = None) -> Any:
    """Comma-separated text (or a list) → stripped, non-blank items, each once, in order.

    `lower` lower-cases the items; `max_chars` cuts each item to that length (before the
    de-duplication, so that two items cut to the same text are kept once). Linear time: a
    dict remembers what was kept (the schemas then refuse more than MAX_LIST_ITEMS).
    """
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list):
        out: dict[str, None] = {}
        for item in value:
            item = str(item).strip()
            if lower:
                item = item.lower()
            if item:
                out.setdefault(item[:max_chars], None)
        return list(out)
    return value


def check_one_line(text: str) -> None:
    """Refuse line breaks and NUL (header values, subjects)."""
    if any(c in text for c in "\r\n\x00"):
        raise ValueError("must be one line")


def secret_text(model: BaseModel, name: str) -> str:
    """The plain value of a (secret) field; "" when unset."""
    value = getattr(model, name)
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value or "")


def dump_config(config: BaseModel, *, include_secrets: bool) -> dict[str, Any]:
    """The dict stored in the database (with the config's SECRET_FIELDS in plain text) or
    exported/shown (without them)."""
    data = config.model_dump(mode="python")
    for name in type(config).SECRET_FIELDS:  # type: ignore[attr-defined]
        if include_secrets:
            data[name] = secret_text(config, name)
        else:
            data.pop(name, None)
    return data


def error_messages(exc: ValidationError, tags: Collection[str]) -> dict[str, str]:
    """Pydantic errors as {field path: message}, e.g. {"config.url": "must start with …"}.

    A union's tags (`tags`, the kinds) are dropped from paths, so `config.rtsp.url` reads
    `config.url`; errors that belong to no single field are under "config" or "" (the whole
    entry).
    """
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if p not in tags and not str(p).startswith("function-")]
        key = ".".join(loc)
        message = err["msg"].removeprefix("Value error, ")
        out.setdefault(key, message)
    return out
