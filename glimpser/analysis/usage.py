"""What the AI cost: token usage per stream from the AICall records, for the admin page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import peewee

from glimpser import times
from glimpser.models import AICall, Stream


@dataclass(frozen=True)
class StreamUsage:
    stream_id: int | None
    stream_name: str
    calls: int
    cached: int
    failed: int
    tokens: int
    last_error: str


def usage_last_day() -> list[StreamUsage]:
    """AI calls of the last 24 hours per stream (None = summaries across streams), most first."""
    since = times.utcnow() - timedelta(days=1)
    rows = (
        AICall.select(
            AICall.stream,
            peewee.fn.COUNT(AICall.id).alias("calls"),
            peewee.fn.SUM(peewee.Case(None, [(AICall.cached == True, 1)], 0)).alias("cached"),  # noqa: E712
            peewee.fn.SUM(peewee.Case(None, [(AICall.ok == False, 1)], 0)).alias("failed"),  # noqa: E712
            peewee.fn.SUM(AICall.total_tokens).alias("tokens"),
        )
        .where(AICall.at >= since)
        .group_by(AICall.stream)
        .dicts()
    )
    names = {s.id: s.name for s in Stream.select(Stream.id, Stream.name)}
    out = []
    for row in rows:
        stream_id = row["stream"]
        last = (
            AICall.select(AICall.error)
            .where((AICall.at >= since) & (AICall.ok == False) & (AICall.stream == stream_id))  # noqa: E712
            .order_by(AICall.at.desc())
            .first()
        )
        out.append(
            StreamUsage(
                stream_id=stream_id,
                stream_name=names.get(stream_id, "all streams") if stream_id else "all streams",
                calls=int(row["calls"] or 0),
                cached=int(row["cached"] or 0),
                failed=int(row["failed"] or 0),
                tokens=int(row["tokens"] or 0),
                last_error=last.error if last else "",
            )
        )
    return sorted(out, key=lambda u: u.tokens, reverse=True)
