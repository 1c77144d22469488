"""One notion of time: timezone-aware UTC, one text format."""

from __future__ import annotations

from datetime import UTC, datetime

# Fixed width so that text comparisons in SQLite order the same way as the times do.
_DB_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """Convert an aware datetime to UTC; naive ones are refused, not guessed."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: Glimpser only stores timezone-aware times")
    return value.astimezone(UTC)


def strftime(value: datetime, fmt: str) -> str:
    """`value.strftime(fmt)` with "%Y" always four digits: the C library writes the year 1 as
    "1", which no parser (nor a text comparison) reads back as the same time."""
    return value.strftime(fmt.replace("%Y", f"{value.year:04d}"))


def to_db_text(value: datetime) -> str:
    return strftime(to_utc(value), _DB_FORMAT)


def isoformat(value: datetime | None) -> str | None:
    """The one format shown to people and APIs: seconds precision with an explicit offset."""
    if value is None:
        return None
    return to_utc(value).isoformat(timespec="seconds")


def isoformat_precise(value: datetime) -> str:
    """Microsecond precision, for passing exact times between processes."""
    return to_utc(value).isoformat(timespec="microseconds")


def parse(value: str | None) -> datetime | None:
    """Parse an ISO time with an offset (as written by this module)."""
    return None if not value else to_utc(datetime.fromisoformat(value))
