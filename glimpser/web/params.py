"""Reading numbers, row ids and times from requests: the one place that does it.

Browsers send text; these helpers turn it into values a query can use, or into None (the
caller then answers a 4xx with its own message). The rules, the same everywhere:

- Integers are ASCII digits only, with an optional leading "-" where negatives make sense.
  `str.isdigit()` is not enough: it accepts "²" and "٣", which `int()` then refuses or reads
  as some other number.
- Integers are bounded to signed 64 bits (what the databases store); row ids to MAX_ID.
- Times are `YYYY-MM-DDTHH:MM` (what `<input type="datetime-local">` sends, read as UTC, an
  offset honoured when given) with a four-digit year from 0001 to 9999; pages read them in the
  viewer's time zone through glimpser.web.local_time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime

from flask import Flask, abort, request

from glimpser import times

# The largest row id: larger ids cannot exist (and the databases refuse to compare them), so
# ids from URLs, forms and cursors are checked against it before they reach a query.
MAX_ID = 2**31 - 1
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)

# ASCII only: [0-9], not \d (which matches every Unicode decimal digit).
_INT = re.compile(r"-?[0-9]{1,19}")
_DIGITS = re.compile(r"[0-9]+")
# YYYY-MM-DDTHH:MM[:SS[.ffffff]][offset]; the year has exactly four digits.
_LOCAL_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?"
)
_MAX_TIME_CHARS = 40
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_int(raw: str | None, *, minimum: int = MIN_INT, maximum: int = MAX_INT) -> int | None:
    """`raw` (surrounding spaces ignored) as an int within [minimum, maximum]; None when it is
    blank, not plain ASCII digits, or out of range."""
    text = (raw or "").strip()
    if not _INT.fullmatch(text):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None


def is_number(raw: str | None) -> bool:
    """True for ASCII digits of any length: an id that cannot exist (404), not malformed
    input (400)."""
    return bool(_DIGITS.fullmatch((raw or "").strip()))


def parse_id(raw: str | None) -> int | None:
    """A row id (1..MAX_ID) from text; None when it is not one."""
    return parse_int(raw, minimum=1, maximum=MAX_ID)


def parse_ids(values: Iterable[str]) -> list[int] | None:
    """Several row ids (e.g. a form's checkboxes), each once, in order; None when any is not
    a row id (a hand-made request: refuse it rather than drop values silently)."""
    out: dict[int, None] = {}
    for raw in values:
        row_id = parse_id(raw)
        if row_id is None:
            return None
        out[row_id] = None
    return list(out)


def parse_local_time(raw: str | None) -> datetime | None:
    """A datetime-local value as an aware UTC datetime; None when blank.

    ValueError when it is not a time of years 0001-9999 (also after applying its offset).
    """
    text = (raw or "").strip()
    if not text:
        return None
    if len(text) > _MAX_TIME_CHARS or not _LOCAL_TIME.fullmatch(text):
        raise ValueError("not a date and time (use YYYY-MM-DDTHH:MM)")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else times.to_utc(parsed)
    except OverflowError as exc:  # an offset that moves the time out of years 1-9999
        raise ValueError("the date is out of range") from exc


def parse_date(raw: str | None) -> date | None:
    """A `YYYY-MM-DD` value (what `<input type="date">` sends); None when blank.

    ValueError when it is not a calendar date of years 0001-9999."""
    text = (raw or "").strip()
    if not text:
        return None
    if not _DATE.fullmatch(text):
        raise ValueError("not a date (use YYYY-MM-DD)")
    return date.fromisoformat(text)


def _has_nul(values: Iterable[tuple[str, str]]) -> bool:
    return any("\x00" in key or "\x00" in value for key, value in values)


def install(app: Flask) -> None:
    """Refuse NUL characters in any query or form parameter, for every route, with a 400.

    No field has a use for one, PostgreSQL refuses them in text, and they cut strings short
    in the C libraries below (ffmpeg, the browser): a 400 here rather than a 500 there.
    """

    @app.before_request
    def _refuse_nul() -> None:
        if _has_nul(request.args.items(multi=True)) or _has_nul(request.form.items(multi=True)):
            abort(400, "A field holds a NUL character.")
