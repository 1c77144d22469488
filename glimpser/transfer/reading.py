"""Reading an import file: size limit, JSON, which format it is, and its top-level parts."""

from __future__ import annotations

import json
from typing import Any

from glimpser.transfer.export import (
    FORMAT,
    VERSION,
)
from glimpser.transfer.glimpser_rs import (
    looks_like_glimpser_rs,
)

MAX_IMPORT_BYTES = 5 * 1024 * 1024

_TOP_LEVEL_KEYS = frozenset({"format", "version", "exported_at", "streams", "rules", "channels"})
# Parts of a Glimpser export this version does not import yet; named in the report.
_LATER_SECTIONS: tuple[str, ...] = ()


class TransferError(ValueError):
    """The whole file is refused; the message is shown to the person (status for the web)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def load_document(raw: bytes) -> dict[str, Any]:
    """Parse an uploaded or given file: size limit, JSON, and an object at the top."""
    if len(raw) > MAX_IMPORT_BYTES:
        raise TransferError(
            f"The file is larger than {_megabytes(MAX_IMPORT_BYTES)}, the import limit.", 413
        )
    if not raw.strip():
        raise TransferError("The file is empty.")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise TransferError("The file is not text (JSON must be UTF-8).") from None
    except json.JSONDecodeError as exc:
        raise TransferError(
            f"The file is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except RecursionError:
        raise TransferError("The file is not valid JSON: it is nested too deeply.") from None
    if not isinstance(data, dict):
        raise TransferError(
            'The file must hold a JSON object with a "streams" list '
            "(a Glimpser or glimpser-rs export)."
        )
    return data


def detect_format(data: dict[str, Any]) -> str:
    """'glimpser' or 'glimpser-rs' (which has no "format" key); anything else is refused."""
    if "format" not in data:
        return "glimpser-rs"
    if data["format"] != FORMAT:
        if looks_like_glimpser_rs(data):
            return "glimpser-rs"
        raise TransferError(f"Unknown export format {str(data['format'])[:50]!r}.")
    version = data.get("version", VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TransferError(f"Unknown export version {str(version)[:20]!r}.")
    if version > VERSION:
        raise TransferError(
            f"This file was made by a newer Glimpser (format version {version}); "
            f"this one reads version {VERSION}."
        )
    return FORMAT


def stream_list(data: dict[str, Any]) -> list[Any]:
    streams = data.get("streams")
    if not isinstance(streams, list):
        raise TransferError(
            'The file has no "streams" list, so it is not a Glimpser or glimpser-rs export.'
        )
    return streams


def document_notes(data: dict[str, Any], fmt: str) -> list[str]:
    notes = []
    if fmt == FORMAT:
        for section in _LATER_SECTIONS:
            if section in data:
                count = len(data[section]) if isinstance(data[section], list) else 0
                notes.append(f"{section} are not imported yet ({count} ignored).")
        unknown = sorted(set(data) - _TOP_LEVEL_KEYS - set(_LATER_SECTIONS))
    else:
        unknown = sorted(set(data) - {"streams"})
    if unknown:
        notes.append(f"Ignored top-level keys: {', '.join(k[:50] for k in unknown)}.")
    return notes


def optional_section(data: dict[str, Any], fmt: str, key: str, what: str) -> list[Any]:
    """The entries of an optional list beside the streams (Glimpser's format only)."""
    if fmt != FORMAT or key not in data:
        return []
    entries = data[key]
    if not isinstance(entries, list):
        raise TransferError(f'"{key}" must be a list of {what}.')
    return entries
