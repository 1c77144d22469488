"""AI summaries of a time window: what the analysis recorded, told in a few paragraphs.

Scopes (see models.Summary):
- one stream: `stream` set, `stream_ids` = [its id];
- all streams (scheduled): `stream` and `requested_by` NULL, `stream_ids` = every stream;
- on demand for a user: `requested_by` set, `stream_ids` = the streams that user may see
  (or one stream, with `stream` set).

Periods: "hour" and "day" are scheduled for the whole UTC hour/day that just ended
(`schedule_due`, run by the cron job every few minutes); "custom" windows are asked for on the
Summaries page. Each summary is given the text of the previous one of its scope and period, so
the model can say what continued and what changed instead of starting from nothing.

The material sent to the model is real data only: the events of the window, the AI descriptions
stored on snapshots, capture problems and snapshot counts. It is capped in characters, and says
so when it was cut. A window in which nothing happened is not sent to the model at all.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import peewee
import redis
from redis.exceptions import RedisError

from glimpser import queues, times
from glimpser.db import write_transaction
from glimpser.models import AICall, Event, Snapshot, Stream, StreamAccess, Summary, User

if TYPE_CHECKING:
    from glimpser.analysis.ai import AIClient

log = logging.getLogger(__name__)

SCHEDULED_PERIODS: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
# What the "Summarise now" form offers: value → (label, length of the window ending now).
CUSTOM_WINDOWS: dict[str, tuple[str, timedelta]] = {
    "hour": ("Last hour", timedelta(hours=1)),
    "day": ("Last 24 hours", timedelta(hours=24)),
    "week": ("Last 7 days", timedelta(days=7)),
}
ACTIVE_STATES = ("queued", "running")
MAX_PENDING_PER_USER = 3  # queued or running summaries one user may have asked for at a time

MAX_MATERIAL_CHARS = 24_000  # about 6 000 tokens: a busy day cannot blow the context
MAX_PREVIOUS_CHARS = 3_000
MAX_EVENTS = 400
MAX_DESCRIPTIONS = 200
MAX_DESCRIPTION_ROWS = 5_000  # snapshot rows read for descriptions (then deduplicated, capped)
MAX_FIELD_CHARS = 300  # one title or description in the material

NOTHING_HAPPENED = "Nothing happened: no events and no changes."
AI_NOT_CONFIGURED = "AI not configured"
JOB_TIMEOUT_SECONDS = 15 * 60
SCHEDULE_LOCK_SECONDS = 120

INSTRUCTIONS = """\
You write short summaries for the operator of Glimpser, a system that watches cameras, video
streams and websites. You are given what the system recorded in one time window: events raised
by rules, AI descriptions of snapshots that changed, capture problems and snapshot counts.
Summaries are built on the previous ones: the text of the previous summary of the same scope is
included. Use it for context and say what continued, what is new and what stopped, but do not
repeat it.
Rules:
- Use only the material. Never invent people, objects or events that are not in it.
- Mention the most important things first (higher severity, threats, failures).
- Name streams and give times (UTC) where it helps.
- If the material says it was cut, say the summary is based on part of the window.
- Plain text, two to five short paragraphs, no headings, no Markdown.
"""


class SummaryError(Exception):
    """A summary could not be requested (shown to the user as is)."""


# --- scopes and visibility -------------------------------------------------------------------


def scope_label(summary: Summary) -> str:
    """How the page names what a summary covers."""
    if summary.stream_id is not None:
        # Not summary.stream: a stream being deleted is left out of every query (models.Stream).
        stream = Stream.select(Stream.name).where(Stream.id == summary.stream_id).first()
        return stream.name if stream is not None else "A deleted stream"
    count = len(summary.stream_ids or [])
    noun = "stream" if count == 1 else "streams"
    if summary.requested_by_id is None:
        return f"All streams ({count} {noun})"
    return f"Streams on request ({count} {noun})"


def _visible_ids(user: User) -> set[int]:
    granted = StreamAccess.select(StreamAccess.stream).where(StreamAccess.user == user.id)
    return {row[0] for row in granted.tuples()}


def visible_summaries(user: User) -> peewee.ModelSelect:
    """The summaries this user may see: all for admins; for viewers those of their streams,
    their own requests, and multi-stream ones that cover only streams they may see."""
    query = Summary.select()
    if user.is_admin:
        return query
    visible = _visible_ids(user)
    existing = {row[0] for row in Stream.select(Stream.id).tuples()}
    # Few distinct stream sets exist (they change only when streams come and go): check each
    # once here instead of every summary row.
    sets = Summary.select(Summary.stream_ids).where(Summary.stream.is_null()).distinct()
    allowed = [
        Summary.stream_ids.db_value(ids)
        for (ids,) in sets.tuples()
        if ids and set(ids) <= (visible & existing)
    ]
    # Their own requests too, but only while they may still see every stream that still
    # exists in it: a revoked grant hides what was written about that stream.
    own_sets = (
        Summary.select(Summary.stream_ids)
        .where(Summary.stream.is_null() & (Summary.requested_by == user.id))
        .distinct()
    )
    own_allowed = [
        Summary.stream_ids.db_value(ids)
        for (ids,) in own_sets.tuples()
        if set(ids or []) & existing <= visible
    ]
    condition = Summary.id.is_null()  # nothing, then widened below
    if own_allowed:
        condition |= (Summary.requested_by == user.id) & Summary.stream_ids.in_(
            peewee.Value(own_allowed, converter=False)
        )
    if visible:
        condition |= Summary.stream.in_(list(visible))
    if allowed:
        multi = Summary.stream.is_null() & Summary.stream_ids.in_(
            peewee.Value(allowed, converter=False)
        )
        condition |= multi
    return query.where(condition)


def may_see(summary: Summary, user: User) -> bool:
    """Whether `user` may see this one summary (the rule of visible_summaries)."""
    return visible_summaries(user).where(Summary.id == summary.id).exists()


# --- requesting ------------------------------------------------------------------------------


def pending_count(user_id: int) -> int:
    """Queued or running summaries this user asked for (a per-user cap keeps workers free)."""
    return (
        Summary.select()
        .where((Summary.requested_by == user_id) & Summary.status.in_(ACTIVE_STATES))
        .count()
    )


def enqueue_build(summary_id: int, connection: redis.Redis) -> bool:
    """Put the build on the analysis queue; on a Redis failure the row says so (failed)."""
    try:
        queues.enqueue_summary_build(connection, summary_id, JOB_TIMEOUT_SECONDS)
    except RedisError:
        _set(
            summary_id,
            status="failed",
            error="The job queue is unavailable; try again.",
            finished_at=times.utcnow(),
        )
        return False
    return True


def request_summary(
    user: User,
    stream: Stream | None,
    window: str,
    connection: redis.Redis,
    now: datetime | None = None,
) -> Summary:
    """Record an on-demand summary of `stream` (or every stream the user may see) for the
    window ending now, and enqueue its build."""
    if window not in CUSTOM_WINDOWS:
        raise SummaryError("Choose a time window.")
    now = now or times.utcnow()
    if stream is not None:
        ids = [stream.id]
    elif user.is_admin:
        ids = sorted(row[0] for row in Stream.select(Stream.id).tuples())
    else:
        ids = sorted(_visible_ids(user))
    if not ids:
        raise SummaryError("There are no streams to summarise.")
    with write_transaction():
        summary = Summary.create(
            stream=stream.id if stream is not None else None,
            stream_ids=ids,
            requested_by=user.id,
            period="custom",
            window_start=now - CUSTOM_WINDOWS[window][1],
            window_end=now,
        )
    enqueue_build(summary.id, connection)
    return Summary.get_by_id(summary.id)


class RequestRefused(SummaryError):
    """A "Summarise now" request refused: the HTTP status, the field it is about, the reason."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


def submit_request(
    user: User,
    stream: Stream | None,
    window: str,
    connection: redis.Redis,
    *,
    ai_configured: bool,
) -> Summary:
    """ "Summarise now", as the Summaries page and `POST /api/v1/summaries` ask for it: the
    stream (None: every stream the user may see) is already checked visible. Raises
    RequestRefused: 409 without an AI server, 422 for a bad window or nothing to summarise,
    429 when the user already has MAX_PENDING_PER_USER summaries being built."""
    if not ai_configured:
        raise RequestRefused(409, "scope", f"{AI_NOT_CONFIGURED}: summaries need the AI.")
    if window not in CUSTOM_WINDOWS:
        raise RequestRefused(422, "window", "Choose a time window.")
    if pending_count(user.id) >= MAX_PENDING_PER_USER:
        raise RequestRefused(
            429,
            "scope",
            f"You already have {MAX_PENDING_PER_USER} summaries being built; wait for one to "
            "finish.",
        )
    try:
        return request_summary(user, stream, window, connection)
    except SummaryError as exc:
        raise RequestRefused(422, "scope", str(exc)) from exc


# --- scheduling ------------------------------------------------------------------------------


def window_that_ended(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The whole UTC hour or day that ended last before `now`."""
    now = times.to_utc(now)
    if period == "hour":
        end = now.replace(minute=0, second=0, microsecond=0)
    elif period == "day":
        end = now.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        raise ValueError(f"unknown period {period!r}")
    return end - SCHEDULED_PERIODS[period], end


def active_stream_ids(start: datetime, end: datetime) -> set[int]:
    """Streams that captured a snapshot or raised an event in [start, end)."""
    events = (
        Event.select(Event.stream)
        .where((Event.created_at >= start) & (Event.created_at < end) & Event.stream.is_null(False))
        .distinct()
    )
    active = {row[0] for row in events.tuples()}
    # One indexed (stream, captured_at) probe per stream, instead of scanning a day of rows.
    for (stream_id,) in Stream.select(Stream.id).tuples():
        if stream_id not in active and (
            Snapshot.select(Snapshot.id)
            .where(
                (Snapshot.stream == stream_id)
                & (Snapshot.captured_at >= start)
                & (Snapshot.captured_at < end)
            )
            .exists()
        ):
            active.add(stream_id)
    return active


def _create_scheduled(
    stream_id: int | None, ids: list[int], period: str, start: datetime, end: datetime
) -> int | None:
    """Create the row unless this scope already has one for this window (checked while
    holding the write transaction); returns the new id or None."""
    with write_transaction():
        same = Summary.select(Summary.id).where(
            (Summary.period == period)
            & (Summary.window_start == start)
            & Summary.requested_by.is_null()
            & (Summary.stream.is_null() if stream_id is None else Summary.stream == stream_id)
        )
        if same.exists():
            return None
        return Summary.create(
            stream=stream_id,
            stream_ids=ids,
            period=period,
            window_start=start,
            window_end=end,
        ).id


def schedule_due(
    now: datetime, connection: redis.Redis, periods: Iterable[str] = ("hour", "day")
) -> list[int]:
    """Create and enqueue the summaries of the windows that just ended: one per stream that
    was active in the window and one across all streams. Idempotent, also when two schedulers
    run at once (a Redis lock serialises runs; each row is checked before it is created)."""
    lock = connection.lock(
        "glimpser:summaries:schedule", timeout=SCHEDULE_LOCK_SECONDS, blocking=False
    )
    if not lock.acquire(blocking=False):
        return []
    created: list[int] = []
    try:
        all_ids = sorted(row[0] for row in Stream.select(Stream.id).tuples())
        for period in periods:
            if period not in SCHEDULED_PERIODS:
                continue
            start, end = window_that_ended(period, now)
            active = sorted(active_stream_ids(start, end) & set(all_ids))
            if not active:
                continue
            for stream_id in active:
                new = _create_scheduled(stream_id, [stream_id], period, start, end)
                if new is not None:
                    created.append(new)
            new = _create_scheduled(None, all_ids, period, start, end)
            if new is not None:
                created.append(new)
    finally:
        with contextlib.suppress(RedisError):  # expired meanwhile: rows are checked anyway
            lock.release()
    for summary_id in created:
        enqueue_build(summary_id, connection)
    return created


# --- material --------------------------------------------------------------------------------


@dataclass
class Material:
    """What one summary is built from, as text, and whether anything happened at all."""

    text: str
    happened: bool
    snapshots: int = 0
    cut: bool = False
    counts: dict[str, int] = field(default_factory=dict)


def _clip(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(value: datetime) -> str:
    return times.to_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def previous_summary(summary: Summary) -> Summary | None:
    """The latest finished summary of the same scope and period before this one."""
    query = Summary.select().where(
        (Summary.id != summary.id)
        & (Summary.period == summary.period)
        & (Summary.status == "done")
        & (Summary.window_end <= summary.window_end)
        & (Summary.created_at <= summary.created_at)
    )
    if summary.stream_id is not None:
        query = query.where(Summary.stream == summary.stream_id)
    elif summary.requested_by_id is None:
        query = query.where(Summary.stream.is_null() & Summary.requested_by.is_null())
    else:
        query = query.where(
            Summary.stream.is_null() & (Summary.requested_by == summary.requested_by_id)
        )
    if summary.period in SCHEDULED_PERIODS:  # the window right before, or an earlier one
        query = query.where(Summary.window_end <= summary.window_start)
    return query.order_by(Summary.window_end.desc(), Summary.id.desc()).first()


def _hourly_of_day(summary: Summary) -> list[Summary]:
    """For a day summary: the finished hourly summaries of the same scope inside the day."""
    if summary.period != "day":
        return []
    query = Summary.select().where(
        (Summary.period == "hour")
        & (Summary.status == "done")
        & (Summary.window_start >= summary.window_start)
        & (Summary.window_end <= summary.window_end)
    )
    if summary.stream_id is not None:
        query = query.where(Summary.stream == summary.stream_id)
    else:
        query = query.where(Summary.stream.is_null() & Summary.requested_by.is_null())
    return list(query.order_by(Summary.window_start))


class _Writer:
    """Appends lines until the character cap, then counts what was left out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines: list[str] = []
        self.size = 0
        self.left_out = 0

    def add(self, line: str) -> bool:
        if self.left_out or self.size + len(line) + 1 > self.limit:
            self.left_out += 1
            return False
        self.lines.append(line)
        self.size += len(line) + 1
        return True


def _event_line(event: Event, name: dict[int, str], with_severity: bool) -> str:
    parts = [_when(event.created_at), name.get(event.stream_id, "?")]
    if with_severity:
        parts.append(event.severity)
    parts += [event.kind, _clip(event.title, 200)]
    line = "- " + " · ".join(parts)
    return line + (f": {_clip(event.description)}" if event.description else "")


def build_material(summary: Summary, previous: Summary | None) -> Material:
    """The text the model summarises; real rows only, capped at MAX_MATERIAL_CHARS."""
    start, end = summary.window_start, summary.window_end
    ids = list(summary.stream_ids or ([summary.stream_id] if summary.stream_id else []))
    streams = {s.id: s for s in Stream.select().where(Stream.id.in_(ids))} if ids else {}
    name = {sid: s.name for sid, s in streams.items()}
    in_window_snap = (
        Snapshot.stream.in_(list(streams))
        & (Snapshot.captured_at >= start)
        & (Snapshot.captured_at < end)
    )

    # Snapshot counts per stream: captured, changed.
    changed_case = peewee.Case(None, [(Snapshot.changed == True, 1)], 0)  # noqa: E712
    counts = (
        {
            sid: (total, int(changed or 0))
            for sid, total, changed in Snapshot.select(
                Snapshot.stream, peewee.fn.COUNT(Snapshot.id), peewee.fn.SUM(changed_case)
            )
            .where(in_window_snap)
            .group_by(Snapshot.stream)
            .tuples()
        }
        if streams
        else {}
    )
    total_snapshots = sum(c[0] for c in counts.values())
    total_changed = sum(c[1] for c in counts.values())

    events = (
        list(
            Event.select()
            .where(
                Event.stream.in_(list(streams))
                & (Event.created_at >= start)
                & (Event.created_at < end)
            )
            .order_by(Event.created_at, Event.id)
            .limit(MAX_EVENTS + 1)
        )
        if streams
        else []
    )
    events_cut = len(events) > MAX_EVENTS
    events = events[:MAX_EVENTS]
    capture_kinds = ("capture_failed", "capture_recovered")

    # AI descriptions: consecutive identical ones (per stream) are told once, with a count.
    descriptions: list[list] = []  # [at, stream_id, title, description, repeats, threat]
    ai_errors = 0
    desc_rows = 0
    last_by_stream: dict[int, list] = {}
    if streams:
        rows = (
            Snapshot.select(Snapshot.stream, Snapshot.captured_at, Snapshot.ai)
            .where(in_window_snap & Snapshot.ai.is_null(False))
            .order_by(Snapshot.captured_at, Snapshot.id)
            .limit(MAX_DESCRIPTION_ROWS + 1)
            .tuples()
        )
        for sid, at, ai in rows:
            desc_rows += 1
            if desc_rows > MAX_DESCRIPTION_ROWS:
                break
            if not isinstance(ai, dict) or "error" in ai:
                ai_errors += 1
                continue
            title = _clip(str(ai.get("title", "")), 120)
            text = _clip(str(ai.get("description", "")))
            if not title and not text:
                continue
            last = last_by_stream.get(sid)
            if last is not None and last[2] == title and last[3] == text:
                last[4] += 1
                continue
            item = [at, sid, title, text, 1, ai.get("threat")]
            descriptions.append(item)
            last_by_stream[sid] = item
    descriptions_cut = len(descriptions) > MAX_DESCRIPTIONS or desc_rows > MAX_DESCRIPTION_ROWS
    descriptions = descriptions[:MAX_DESCRIPTIONS]

    failing_now = [
        s for s in streams.values() if s.state == "failing" and counts.get(s.id, (0, 0))[0] == 0
    ]
    happened = bool(events or descriptions or total_changed or failing_now)

    out = _Writer(MAX_MATERIAL_CHARS)
    out.add(f"Window: {_when(start)} to {_when(end)} ({summary.period}).")
    out.add(_clip(f"Scope: {len(streams)} stream(s): " + ", ".join(sorted(name.values())), 2000))
    out.add("")
    if previous is not None and previous.text:
        out.add(
            f"Previous summary ({_when(previous.window_start)} to {_when(previous.window_end)}):"
        )
        prev = previous.text.strip()
        if len(prev) > MAX_PREVIOUS_CHARS:
            prev = prev[:MAX_PREVIOUS_CHARS] + " … (previous summary cut)"
        out.add(prev)
        out.add("")
    else:
        out.add("Previous summary: none (this is the first of its kind).")
        out.add("")
    hourly = _hourly_of_day(summary)
    if hourly:
        out.add("Hourly summaries of this day:")
        for h in hourly:
            out.add(f"- {_when(h.window_start)}: {_clip(h.text, 400)}")
        out.add("")

    out.add("Snapshots per stream (captured, changed):")
    for sid in sorted(streams, key=lambda i: name[i]):
        total, changed = counts.get(sid, (0, 0))
        line = f"- {name[sid]} ({streams[sid].kind}): {total} captured, {changed} changed"
        if streams[sid] in failing_now:
            error = _clip(streams[sid].last_error, 200)
            line += f"; no snapshot in this window, currently failing: {error}"
        out.add(line)
    out.add("")

    capture_events = [e for e in events if e.kind in capture_kinds]
    other_events = [e for e in events if e.kind not in capture_kinds]
    out.add(f"Events ({len(other_events)}{'+' if events_cut else ''}):")
    if not other_events:
        out.add("- none")
    for e in other_events:
        out.add(_event_line(e, name, with_severity=True))
    if events_cut:
        out.add(f"- … more events in this window than the {MAX_EVENTS} listed (material cut)")
    out.add("")

    out.add("Capture problems:")
    if not capture_events and not failing_now:
        out.add("- none")
    for e in capture_events:
        out.add(_event_line(e, name, with_severity=False))
    out.add("")

    out.add("AI descriptions of changed snapshots (consecutive repeats counted once):")
    if not descriptions:
        out.add("- none")
    for at, sid, title, text, repeats, threat in descriptions:
        line = f"- {_when(at)} · {name.get(sid, '?')} · {title}"
        if text:
            line += f": {text}"
        if threat in (1, 2):
            line += f" (threat level {threat})"
        if repeats > 1:
            line += f" (seen {repeats} times in a row)"
        out.add(line)
    if descriptions_cut:
        out.add("- … more descriptions in this window than listed (material cut)")
    if ai_errors:
        out.add(f"- the AI could not describe {ai_errors} snapshot(s)")

    cut = bool(out.left_out or events_cut or descriptions_cut)
    text = "\n".join(out.lines)
    if out.left_out:
        text += (
            f"\n\n[Material cut: {out.left_out} more line(s) did not fit in "
            f"{MAX_MATERIAL_CHARS} characters.]"
        )
    return Material(
        text=text,
        happened=happened,
        snapshots=total_snapshots,
        cut=cut,
        counts={
            "events": len(events),
            "descriptions": len(descriptions),
            "changed": total_changed,
        },
    )


# --- building --------------------------------------------------------------------------------


def _set(summary_id: int, **values: object) -> int:
    with write_transaction():
        return Summary.update(**values).where(Summary.id == summary_id).execute()


def _tokens_since(stream_id: int | None, since: datetime, until: datetime) -> int:
    """Tokens of the summary calls this build made (AICall rows recorded by ai.py)."""
    query = AICall.select(peewee.fn.COALESCE(peewee.fn.SUM(AICall.total_tokens), 0)).where(
        (AICall.purpose == "summary") & (AICall.at >= since) & (AICall.at <= until)
    )
    query = query.where(
        AICall.stream.is_null() if stream_id is None else AICall.stream == stream_id
    )
    return int(query.scalar() or 0)


@contextlib.contextmanager
def _call_lock(connection: redis.Redis | None, stream_id: int | None) -> Iterator[None]:
    """Builds that share an AICall scope (one stream, or none) call the model one at a time,
    so that the AICall rows between start and end are this build's own (its token count).
    Without Redis (or after waiting a whole job timeout) the build goes ahead unserialised."""
    lock = None
    if connection is not None:
        scope = "all" if stream_id is None else str(int(stream_id))
        candidate = connection.lock(
            f"glimpser:summaries:call:{scope}",
            timeout=JOB_TIMEOUT_SECONDS,
            blocking_timeout=JOB_TIMEOUT_SECONDS,
        )
        with contextlib.suppress(RedisError):
            if candidate.acquire():
                lock = candidate
    try:
        yield
    finally:
        if lock is not None:
            with contextlib.suppress(RedisError):
                lock.release()


def build(
    summary_id: int, ai_client: AIClient | None, connection: redis.Redis | None = None
) -> dict:
    """The job body: gather the material, ask the model (unless nothing happened), and record
    the text or the reason it failed on the row. With `connection`, builds of one stream (or
    of several streams) call the model one after another, which keeps token counts exact."""
    from glimpser.analysis.ai import AIError  # lazy: the web process never loads the AI SDK

    summary = Summary.get_or_none(Summary.id == summary_id)
    if summary is None or summary.status not in ACTIVE_STATES:
        return {"ok": False, "skipped": True}
    if summary.stream_id is None and summary.requested_by_id is None:
        # All streams: the streams that exist when it is built.
        ids = sorted(row[0] for row in Stream.select(Stream.id).tuples())
        _set(summary.id, stream_ids=ids)
        summary.stream_ids = ids
    _set(summary.id, status="running", error="")
    if ai_client is None:
        _set(summary.id, status="failed", error=AI_NOT_CONFIGURED, finished_at=times.utcnow())
        return {"ok": False, "error": AI_NOT_CONFIGURED}
    try:
        previous = previous_summary(summary)
        material = build_material(summary, previous)
        values: dict[str, object] = {"previous": previous.id if previous else None}
        if not material.happened:
            text = NOTHING_HAPPENED
            if material.snapshots == 0:
                text += " No snapshots were captured in this window."
            _set(summary.id, status="done", text=text, finished_at=times.utcnow(), **values)
            return {"ok": True, "ai": False}
        try:
            with _call_lock(connection, summary.stream_id):
                started = times.utcnow()
                try:
                    text = ai_client.summarise(
                        INSTRUCTIONS, material.text, stream_id=summary.stream_id
                    )
                finally:
                    finished = times.utcnow()
                    tokens = _tokens_since(summary.stream_id, started, finished)
        except AIError as exc:
            _set(
                summary.id,
                status="failed",
                error=str(exc) or exc.__class__.__name__,
                model=ai_client.model,
                total_tokens=tokens,
                finished_at=finished,
                **values,
            )
            log.warning("summary failed", extra={"summary_id": summary.id, "error": str(exc)})
            return {"ok": False, "error": str(exc)}
        text = (text or "").strip()
        if not text:
            _set(
                summary.id,
                status="failed",
                error="The model returned an empty summary.",
                finished_at=finished,
                **values,
            )
            return {"ok": False, "error": "empty"}
        _set(
            summary.id,
            status="done",
            text=text,
            model=ai_client.model,
            total_tokens=tokens,
            finished_at=finished,
            **values,
        )
        return {"ok": True, "ai": True}
    except BaseException:  # a bug or the job's timeout: record it, then let RQ see it
        _set(
            summary.id,
            status="failed",
            error="The summary stopped unexpectedly; see the worker log.",
            finished_at=times.utcnow(),
        )
        raise


def paragraphs(text: str) -> list[list[str]]:
    """The text as paragraphs of lines, for the page (which escapes every line)."""
    blocks = [b.strip() for b in (text or "").replace("\r\n", "\n").split("\n\n")]
    return [[ln for ln in b.split("\n")] for b in blocks if b]
