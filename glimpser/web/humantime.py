"""Times as people read them, in every page: one macro (templates/macros/time.html, `when`)
and the filters behind it. Every page renders a time through `when(value)`, never with
strftime/isoformat of its own, so the format and the time zone are decided here.

The zone is the viewer's: their stored User.timezone (detected once from the browser by
static/time.js, or chosen on the profile page); when they have none, the install's default
(Admin → Settings, GLIMPSER_TIMEZONE); UTC when that is unusable too. It is looked up once per
request (`current_zone()`, cached in flask.g).

Formats ("today 14:03", "yesterday 09:12", "Tue 1 Dec 09:12" this year, "1 Dec 2025 09:12"
other years) are written by hand: Babel is not installed, and the names are English whatever
the install's language.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flask import Flask, g, has_app_context, has_request_context

from glimpser import times

MAX_ZONE_NAME = 64  # User.timezone's column width; the longest IANA name is 32 characters

# Files of the tz database directory that are not zones a person would choose.
_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@lru_cache(maxsize=1)
def known_zones() -> tuple[str, ...]:
    """Every IANA zone name this system knows (the tz database), sorted, UTC included."""
    return tuple(sorted((available_timezones() - _NOT_ZONES) | {"UTC"}))


def zone_named(name: str | None) -> ZoneInfo | None:
    """The IANA zone of that name; None when it is blank, too long or no known zone."""
    if not isinstance(name, str) or not name or len(name) > MAX_ZONE_NAME:
        return None
    if name not in _known_set():  # only names of the tz database, never a file path
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


@lru_cache(maxsize=1)
def _known_set() -> frozenset[str]:
    return frozenset(known_zones())


def default_zone() -> ZoneInfo:
    """The install's default zone (Admin → Settings), UTC when there is none usable."""
    if has_app_context():
        from glimpser.web.app_settings import current_settings

        zone = zone_named(current_settings().default_timezone)
        if zone is not None:
            return zone
    return ZoneInfo("UTC")


def current_zone() -> ZoneInfo:
    """The zone this request's times are shown in: the signed-in user's, else the default."""
    if not has_request_context():
        return default_zone()
    cached = g.get("_glimpser_zone")
    if cached is None:
        from flask_login import current_user

        if getattr(current_user, "is_authenticated", False):
            cached = zone_named(getattr(current_user, "timezone", ""))
        if cached is None:
            cached = default_zone()
        g._glimpser_zone = cached
    return cached


def localize(value: datetime, zone: tzinfo | None = None) -> datetime:
    """An aware time in the zone (the request's by default). A time that the zone would push
    out of years 1-9999 (the year 1 west of Greenwich) stays in UTC."""
    utc = times.to_utc(value)
    try:
        return utc.astimezone(zone or current_zone())
    except OverflowError:
        return utc


def human_time(
    value: datetime | None,
    zone: tzinfo | None = None,
    now: datetime | None = None,
    seconds: bool = False,
) -> str:
    """The text of a time element: "today 14:03", "yesterday 09:12", "tomorrow 08:00",
    "Tue 1 Dec 09:12" (this year), "1 Dec 2025 09:12" (another year), in the zone."""
    if value is None:
        return ""
    local = localize(value, zone)
    today = localize(now or times.utcnow(), local.tzinfo).date()
    clock = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
    return f"{human_day(local.date(), today)} {clock}"


def human_day(day: date, today: date) -> str:
    """ "today", "yesterday", "tomorrow", "Tue 1 Dec" (this year) or "1 Dec 2025"."""
    if day == today:
        return "today"
    if day == today - timedelta(days=1):
        return "yesterday"
    if day == today + timedelta(days=1):
        return "tomorrow"
    month = _MONTHS[day.month - 1]
    if day.year == today.year:
        return f"{_DAYS[day.weekday()]} {day.day} {month}"
    return f"{day.day} {month} {day.year:04d}"


def relative_time(value: datetime | None, now: datetime | None = None) -> str:
    """An age as "12 s ago", "5 min ago", "3 h ago", "2 d ago" (static/time.js counts on the
    same way); a time ahead reads "in 5 min"."""
    if value is None:
        return ""
    delta = int(((now or times.utcnow()) - times.to_utc(value)).total_seconds())
    text = _span(abs(delta))
    return f"{text} ago" if delta >= 0 else f"in {text}"


def _span(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def iso_time(value: datetime | None, zone: tzinfo | None = None) -> str:
    """The exact time, ISO 8601 in the viewer's zone with its UTC offset (for datetime= and
    title=), e.g. 2026-12-02T14:03:05+13:00."""
    return "" if value is None else localize(value, zone).isoformat(timespec="seconds")


def zone_name(zone: tzinfo | None = None) -> str:
    """The name of the zone shown (e.g. Europe/Berlin), for labels such as "From (…)"."""
    zone = zone or current_zone()
    return getattr(zone, "key", None) or str(zone)


def parse_time(value: str | None) -> datetime | None:
    """A stored ISO time text (e.g. in an event's JSON data) as a datetime; None when it is
    none or not one, so the page shows nothing rather than failing."""
    try:
        return times.parse(value) if isinstance(value, str) else None
    except ValueError:
        return None


def local_input(value: datetime | None) -> str:
    """The value of a datetime-local input for a time, in the viewer's zone ("" for none)."""
    from glimpser.web.local_time import format_local

    return "" if value is None else format_local(value)


def server_now_ms() -> int:
    """Now in milliseconds since 1970, for static/time.js to correct the browser's clock."""
    return int(times.utcnow().timestamp() * 1000)


def install(app: Flask) -> None:
    app.add_template_global(server_now_ms, "server_now_ms")
    app.add_template_filter(parse_time, "parse_time")
    app.add_template_filter(local_input, "local_input")
    app.add_template_filter(human_time, "human_time")
    app.add_template_filter(relative_time, "relative_time")
    app.add_template_filter(iso_time, "iso_time")
    app.add_template_global(zone_name, "time_zone_name")
    app.add_template_global(current_zone, "current_time_zone")
