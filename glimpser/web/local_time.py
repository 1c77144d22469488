"""The times typed into `<input type="datetime-local">` fields, which are read as UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from glimpser import times

LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


def parse_local(value: str) -> datetime | None:
    """A datetime-local value (an offset, when given, is honoured) as UTC; None when blank,
    ValueError when it is not a time (or, with its offset, lies outside years 1-9999)."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value[:40])
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else times.to_utc(parsed)
    except OverflowError as exc:
        raise ValueError(str(exc)) from exc
