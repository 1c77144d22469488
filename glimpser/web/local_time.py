"""The times typed into `<input type="datetime-local">` fields, which are read as UTC."""

from __future__ import annotations

from datetime import datetime

from glimpser import times
from glimpser.web.params import parse_local_time

LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


def parse_local(value: str) -> datetime | None:
    """A datetime-local value (an offset, when given, is honoured) as UTC; None when blank,
    ValueError when it is not a time (or, with its offset, lies outside years 1-9999)."""
    return parse_local_time(value)


def format_local(value: datetime) -> str:
    """A time as a datetime-local value (four-digit year, also before the year 1000)."""
    return times.strftime(times.to_utc(value), LOCAL_FORMAT)
