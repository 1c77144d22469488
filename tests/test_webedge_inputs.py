"""Input that costs linear time and stays within bounds: the log redactor, split_list, list
fields, and the one parser of request numbers and times (glimpser/web/params.py).

No test here measures time. The regression guards use inputs big enough that the old,
quadratic code would run into the test's timeout (pytest-timeout) by orders of magnitude.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from glimpser import times
from glimpser.logs import MAX_LOG_CHARS, JSONFormatter, redact
from glimpser.schema_helpers import MAX_LIST_ITEMS, split_list
from glimpser.sources.schemas import StreamSpec
from glimpser.web.params import MAX_INT, parse_id, parse_ids, parse_int, parse_local_time

# Each of these took the old redactor quadratic time (2.8 s for 32 KB of the first kind).
PATHOLOGICAL = [
    "a" * 1_000_000,
    "x" * 500_000 + "://",
    "a://" + ":" * 1_000_000,
    "a://x" * 200_000,
    ("x" * 50 + "://") * 20_000,
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", PATHOLOGICAL, ids=lambda t: repr(t[:8]))
def test_the_redactor_is_linear_on_hostile_text(text):
    assert redact(text) == text  # nothing to mask, and it finishes
    assert len(redact(text, 500)) < 600


def test_the_redactor_masks_credentials_also_where_a_cut_falls():
    assert redact("see rtsp://admin:hunter2@cam/x and http://u:p@h/") == (
        "see rtsp://admin:***@cam/x and http://u:***@h/"
    )
    assert redact("http://host:8080/path") == "http://host:8080/path"  # a port is no password
    cut = redact("rtsp://admin:hunter2@camera/stream", 19)  # the cut falls inside "hunter2"
    assert "hunt" not in cut and cut.startswith("rtsp://admin:***")
    assert "more characters" in cut


def test_log_entries_are_bounded_whatever_the_message():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("glimpser.test_webedge")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        huge = "refused http://u:secret@" + "h" * 1_000_000
        logger.warning(huge, extra={"url": huge})
    finally:
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert len(entry["msg"]) < MAX_LOG_CHARS + 100
    assert len(entry["url"]) < MAX_LOG_CHARS + 100
    assert "secret" not in stream.getvalue()


@pytest.mark.timeout(60)
def test_split_list_is_linear_and_keeps_each_item_once_in_order():
    many = ",".join(f"group-{i}" for i in range(200_000))  # ~2.4 MB, all distinct
    assert len(split_list(many)) == 200_000
    assert split_list(" b, a ,b,,A, a ", lower=True) == ["b", "a"]
    # Cut first, then de-duplicated: two items that cut to the same text are kept once.
    assert split_list(["abcdef", "abcxyz", "q"], max_chars=3) == ["abc", "q"]


@pytest.mark.timeout(60)
def test_list_fields_are_bounded():
    base = {"name": "Garden", "config": {"kind": "http_image", "url": "http://192.0.2.1/x"}}
    groups = ",".join(f"g{i}" for i in range(200_000))
    with pytest.raises(ValidationError, match="at most"):
        StreamSpec.model_validate({**base, "groups": groups})
    ok = StreamSpec.model_validate({**base, "groups": ",".join(["g"] * 10_000 + ["h"])})
    assert ok.groups == ["g", "h"]
    website = {"kind": "website", "url": "https://example.com/"}
    with pytest.raises(ValidationError):
        StreamSpec.model_validate(
            {**base, "config": {**website, "hide_selectors": "\n".join(["#a"] * 2 + ["x" * 1001])}}
        )
    too_many = "\n".join(f".ad{i}" for i in range(MAX_LIST_ITEMS + 1))
    with pytest.raises(ValidationError):
        StreamSpec.model_validate({**base, "config": {**website, "hide_selectors": too_many}})


# --- the request parameter parser -----------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["²", "٣", "１", "1²", "", " ", "-", "+1", "1.0", "1e3", "0x10", "1_000", None, "\x00"]
)
def test_only_ascii_digits_are_integers(raw):
    assert parse_int(raw) is None


def test_integers_are_bounded_to_signed_64_bits():
    assert parse_int(str(MAX_INT)) == MAX_INT
    assert parse_int(str(MAX_INT + 1)) is None
    assert parse_int(str(-(2**63))) == -(2**63)
    assert parse_int(str(-(2**63) - 1)) is None
    assert parse_int("9" * 5000) is None
    assert parse_int(" 42 ") == 42
    assert parse_int("-1", minimum=0) is None


def test_row_ids():
    assert parse_id("1") == 1
    assert parse_id(str(2**31 - 1)) == 2**31 - 1
    for raw in ("0", "-1", str(2**31), str(2**63), str(2**64), "²"):
        assert parse_id(raw) is None
    assert parse_ids(["3", "1", "3"]) == [3, 1]
    assert parse_ids(["1", "²"]) is None


def test_times_of_years_1_to_9999():
    assert parse_local_time("0001-01-01T00:00") == datetime(1, 1, 1, tzinfo=UTC)
    assert parse_local_time("9999-12-31T23:59") == datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    assert parse_local_time("2024-05-01T10:00+02:00") == datetime(2024, 5, 1, 8, tzinfo=UTC)
    assert parse_local_time("  ") is None
    for raw in (
        "10000-01-01T00:00",
        "1-01-01T00:00",
        "0001-01-01T00:00+01:00",  # before the year 1 in UTC
        "9999-12-31T23:59-01:00",  # after the year 9999 in UTC
        "２０２４-01-01T00:00",
        "2024-13-01T00:00",
        "2024-01-01",
        "2024-01-01T00:00" + "0" * 100,
    ):
        with pytest.raises(ValueError):
            parse_local_time(raw)


def test_years_below_1000_are_written_with_four_digits():
    year_one = datetime(1, 1, 1, tzinfo=UTC)
    text = times.to_db_text(year_one)
    assert text == "0001-01-01T00:00:00.000000+00:00"
    assert datetime.fromisoformat(text) == year_one
    assert times.strftime(datetime(999, 2, 3, tzinfo=UTC), "%Y-%m-%d") == "0999-02-03"


@pytest.mark.parametrize("id_text", [str(2**64), str(2**31), "-1", "٣", "²", "1x"])
def test_cursor_ids_are_checked_on_every_list(id_text):
    from werkzeug.exceptions import BadRequest

    from glimpser.web.keyset import parse_cursor

    with pytest.raises(BadRequest):
        parse_cursor(f"20240101T000000.000000Z_{id_text}", "bad position")
    assert parse_cursor("00010101T000000.000000Z_7", "bad")[1] == 7
