"""Times as people read them, in every page: one macro (templates/macros/time.html, `when`)
and the filters behind it. Every page renders a time through `when(value)`, never with
strftime/isoformat of its own, so the format and the time zone are decided here."""

from __future__ import annotations

from datetime import datetime

from flask import Flask

from glimpser import times


def human_time(value: datetime | None) -> str:
    """The text of a time element (the exact ISO time goes in its title)."""
    if value is None:
        return ""
    return times.strftime(times.to_utc(value), "%Y-%m-%d %H:%M UTC")


def iso_time(value: datetime | None) -> str:
    """The exact time, ISO 8601 in UTC (for datetime= and title=)."""
    return "" if value is None else times.isoformat(times.to_utc(value))


def install(app: Flask) -> None:
    app.add_template_filter(human_time, "human_time")
    app.add_template_filter(iso_time, "iso_time")
