"""The times typed into `<input type="datetime-local">` fields (events and audit filters,
timelapse ranges), read and written in the viewer's time zone (glimpser.web.humantime).

A wall-clock time that does not exist in the zone (the hour skipped when clocks go forward)
is refused with a clear message; one that happens twice (clocks going back) means the first.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from glimpser import times
from glimpser.web.humantime import current_zone
from glimpser.web.params import parse_local_time

LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


def parse_local(value: str | None, zone: tzinfo | None = None) -> datetime | None:
    """A datetime-local value read in the zone (the request's by default; an offset, when
    given, is honoured) as UTC; None when blank. ValueError, with a message for people, when
    it is not a time, lies outside years 1-9999 in UTC, or does not exist in the zone."""
    parsed = parse_local_time(value)  # checks the form; naive values come back as UTC
    if parsed is None:
        return None
    text = (value or "").strip()
    if datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None:
        return parsed  # an explicit offset
    zone = zone or current_zone()
    wall = parsed.replace(tzinfo=None)
    aware = wall.replace(tzinfo=zone, fold=0)
    try:
        utc = aware.astimezone(UTC)
        back = utc.astimezone(zone)
    except OverflowError:
        raise ValueError("the date is out of range") from None
    if back.replace(tzinfo=None) != wall:
        raise ValueError(
            f"{text} does not exist in {getattr(zone, 'key', zone)} "
            "(the clocks skip that hour); choose another time"
        )
    return utc


def format_local(value: datetime, zone: tzinfo | None = None) -> str:
    """A time as a datetime-local value in the zone (the request's by default); four-digit
    years, also before the year 1000. A time the zone would push out of years 1-9999 is
    written in UTC."""
    utc = times.to_utc(value)
    try:
        local = utc.astimezone(zone or current_zone())
    except OverflowError:
        local = utc
    return times.strftime(local, LOCAL_FORMAT)
