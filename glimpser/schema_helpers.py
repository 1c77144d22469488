"""Helpers the pydantic schemas share (streams, analysis rules, notification channels).

Form input arrives as text: `split_lines` and `split_list` turn one-per-line and comma-separated
text into lists. Secret fields are SecretStr; `secret_text` reads one and `dump_config` stores
(or leaves out) all of a config's SECRET_FIELDS. `error_messages` turns pydantic errors into
{field path: message} for the forms and the import.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

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


# --- write-only secrets follow their destination ---------------------------------------------

# Config fields that say where a config's secrets are sent: URLs (sources, webhooks, CAP
# endpoints) and mail servers. A stored secret is kept for a blank form field only while these
# point where they pointed; otherwise an admin could send it to a host of their choosing.
_URL_FIELDS = ("url", "endpoints")
_DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935}

REENTER_MESSAGE = "The address changed: enter this again (a stored secret is not sent elsewhere)."


def url_origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, lower-cased, the scheme's default port filled in."""
    parts = urlsplit(str(url).strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def secret_destinations(config: Mapping[str, Any]) -> set[tuple[Any, ...]]:
    """Where a config (a dict, as stored or submitted) sends its secrets."""
    out: set[tuple[Any, ...]] = set()
    for name in _URL_FIELDS:
        value = config.get(name) or []
        for url in split_lines(value) if isinstance(value, str | list) else []:
            out.add(("url", *url_origin(url)))
    if config.get("host"):  # a mail server: the same host on another port or security is fine
        out.add(("host", str(config["host"]).strip().lower()))
    return out


def may_keep_secrets(stored: Mapping[str, Any] | None, submitted: Mapping[str, Any]) -> bool:
    """Whether blank secret fields may take the stored values: same kind, and every place the
    submitted config sends secrets to is one the stored config sent them to already."""
    if not stored or stored.get("kind") != submitted.get("kind"):
        return False
    return secret_destinations(submitted) <= secret_destinations(stored)


def secrets_to_reenter(
    stored: Mapping[str, Any] | None, submitted: Mapping[str, Any], names: Collection[str]
) -> list[str]:
    """The secret fields left blank whose stored value may not be kept because the destination
    changed: the form must ask for them again rather than drop them silently."""
    if not stored or stored.get("kind") != submitted.get("kind"):
        return []
    if may_keep_secrets(stored, submitted):
        return []
    return sorted(name for name in names if stored.get(name) and not _plain(submitted.get(name)))


def _plain(value: Any) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value or "")
