"""Admin → Audit: who changed what, when and from where.

The audit log (glimpser.web.audit writes it, in the same transaction as each change), newest
first, keyset-paginated by (time, id), filtered by user, action (exact, or a prefix such as
"stream.*"), object ("stream:3", or "stream:*") and time range. The same filters export the
rows as CSV, streamed. Bad filter values answer 400 with a message saying which one.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import peewee
from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from werkzeug.routing import BuildError

from glimpser import times
from glimpser.db import database
from glimpser.models import AuditLog, Event, NotificationChannel, Rule, Stream, User
from glimpser.web import keyset
from glimpser.web.app_settings import current_settings
from glimpser.web.audit import as_text, describe
from glimpser.web.local_time import parse_local
from glimpser.web.params import is_number, parse_id

bp = Blueprint("admin_audit", __name__, url_prefix="/admin/audit")

PAGE_SIZE = 50
EXPORT_BATCH = 500
# Actions are "<object>.<verb>"; a filter may end in "*" (every action that starts so).
_ACTION = re.compile(r"[a-z0-9_.]{1,64}\*?|\*")
_TARGET_MAX = 200
# What a CSV cell may not start with (a spreadsheet would run it as a formula).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Filters:
    user: int | None = None
    action: str = ""
    target: str = ""
    since: datetime | None = None
    until: datetime | None = None
    raw: dict[str, str] = field(default_factory=dict)  # as typed, for the form and links

    def args(self) -> dict[str, str]:
        """The filters as query arguments (empty ones left out)."""
        return {k: v for k, v in self.raw.items() if v}

    @property
    def active(self) -> bool:
        return bool(self.args())


def parse_filters(args: Any) -> Filters:
    """The filters from the query string; 400 with a message for a value that cannot be one."""
    raw = {name: (args.get(name) or "").strip() for name in ("user", "action", "object")}
    raw["from"] = (args.get("from") or "").strip()
    raw["to"] = (args.get("to") or "").strip()
    filters = Filters(raw=raw)
    if raw["user"]:
        filters.user = parse_id(raw["user"])
        if filters.user is None and not is_number(raw["user"]):
            abort(400, "The user filter must be a user's id (choose one from the list).")
        if filters.user is None:
            filters.user = 0  # a number, but no user's id: nothing matches
    if raw["action"]:
        if not _ACTION.fullmatch(raw["action"]):
            abort(
                400,
                'The action filter must be an action such as "stream.update", or the start of '
                'one followed by "*", such as "stream.*".',
            )
        filters.action = raw["action"]
    if raw["object"]:
        if len(raw["object"]) > _TARGET_MAX or not raw["object"].isprintable():
            abort(400, f"The object filter must be at most {_TARGET_MAX} printable characters.")
        filters.target = raw["object"]
    for name, label in (("from", "From"), ("to", "To")):
        try:
            value = parse_local(raw[name])
        except ValueError as exc:
            abort(400, f"{label}: {exc}.")
        setattr(filters, "since" if name == "from" else "until", value)
    if filters.since and filters.until and filters.since > filters.until:
        abort(400, "From must not be after To.")
    return filters


def _query(filters: Filters) -> peewee.ModelSelect:
    query = AuditLog.select(AuditLog, User).join(User, peewee.JOIN.LEFT_OUTER).switch(AuditLog)
    if filters.user is not None:
        query = query.where(AuditLog.user == filters.user)
    if filters.action and filters.action != "*":
        if filters.action.endswith("*"):
            query = query.where(AuditLog.action.startswith(filters.action[:-1]))
        else:
            query = query.where(AuditLog.action == filters.action)
    if filters.target:
        if filters.target.endswith("*"):
            query = query.where(AuditLog.target.startswith(filters.target[:-1]))
        else:
            query = query.where(AuditLog.target == filters.target)
    if filters.since is not None:
        query = query.where(AuditLog.at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditLog.at < _end_of_minute(filters.until))
    return query


def _end_of_minute(until: datetime) -> datetime:
    """The first moment after the To filter: "To 14:00" (the form has no seconds) includes
    the whole of that minute; a time with seconds includes just that moment."""
    whole_minute = until.second == 0 and until.microsecond == 0
    try:
        return until + (timedelta(minutes=1) if whole_minute else timedelta(microseconds=1))
    except OverflowError:  # the very end of the year 9999
        return until.replace(second=59, microsecond=999999)


def _newest_first(query: peewee.ModelSelect) -> peewee.ModelSelect:
    return query.order_by(AuditLog.at.desc(), AuditLog.id.desc())


def entry_cursor(entry: AuditLog) -> str:
    return keyset.make_cursor(entry.at, entry.id)


def _page(
    filters: Filters, cursor: tuple[datetime, int] | None
) -> tuple[list[AuditLog], str | None]:
    query = _query(filters)
    if cursor is not None:
        query = keyset.older_than(query, AuditLog.at, AuditLog.id, cursor)
    rows = list(_newest_first(query).limit(PAGE_SIZE + 1))
    return keyset.split_page(rows, PAGE_SIZE, entry_cursor)


# --- links to the objects that still exist ----------------------------------------------------

# object kind → (model, the endpoints that show one (the first registered is used), the
# endpoint's id argument)
_OBJECTS: dict[str, tuple[type[peewee.Model], tuple[str, ...], str]] = {
    "stream": (Stream, ("streams.detail",), "stream_id"),
    "rule": (Rule, ("admin_rules.edit",), "rule_id"),
    "channel": (NotificationChannel, ("admin_channels.edit",), "channel_id"),
    "event": (Event, ("events.detail",), "event_id"),
    "user": (User, ("admin_users.detail", "admin_users.edit", "admin_users.show"), "user_id"),
}


def _split_target(target: str) -> tuple[str, int | None]:
    kind, _, raw_id = target.partition(":")
    return kind, parse_id(raw_id)


def _object_links(entries: list[AuditLog]) -> dict[str, str]:
    """target → URL of the object, for the targets on the page whose object still exists
    (one query per kind of object)."""
    wanted: dict[str, set[int]] = {}
    for entry in entries:
        kind, row_id = _split_target(entry.target or "")
        if kind in _OBJECTS and row_id is not None:
            wanted.setdefault(kind, set()).add(row_id)
    links: dict[str, str] = {}
    for kind, ids in wanted.items():
        model, endpoints, arg = _OBJECTS[kind]
        endpoint = next((e for e in endpoints if e in current_app.view_functions), None)
        if endpoint is None:
            continue
        for (row_id,) in model.select(model.id).where(model.id.in_(sorted(ids))).tuples():
            try:
                links[f"{kind}:{row_id}"] = url_for(endpoint, **{arg: row_id})
            except BuildError:
                break
    return links


# --- views ------------------------------------------------------------------------------------


@bp.get("/")
def index():
    filters = parse_filters(request.args)
    raw_cursor = (request.args.get("before") or "").strip()
    cursor = (
        keyset.parse_cursor(raw_cursor, "The page position is not valid; start from the newest.")
        if raw_cursor
        else None
    )
    entries, next_cursor = _page(filters, cursor)
    users = list(User.select(User.id, User.username).order_by(User.username))
    actions = [
        a for (a,) in AuditLog.select(AuditLog.action).distinct().order_by(AuditLog.action).tuples()
    ]
    prefixes = sorted({a.split(".", 1)[0] + ".*" for a in actions if "." in a})
    return render_template(
        "admin/audit/list.html",
        entries=[(e, describe(e.detail)) for e in entries],
        links=_object_links(entries),
        filters=filters,
        cursor=raw_cursor if cursor else "",
        next_cursor=next_cursor,
        users=users,
        action_choices=prefixes + actions,
        retention_days=current_settings().audit_retention_days,
    )


def csv_cell(value: Any) -> str:
    """A value as a CSV cell that a spreadsheet shows as text, never runs as a formula."""
    text = value if isinstance(value, str) else as_text(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


CSV_COLUMNS = ("id", "time_utc", "user", "action", "object", "address", "changes", "details")


def _csv_row(entry: AuditLog) -> list[str]:
    described = describe(entry.detail)
    changes = "; ".join(f"{name}: {old} → {new}" for name, old, new in described.changes)
    details = "; ".join(f"{name}: {value}" for name, value in described.facts)
    return [
        csv_cell(str(entry.id)),
        csv_cell(times.isoformat(entry.at) or ""),
        csv_cell(entry.user.username if entry.user_id and entry.user else ""),
        csv_cell(entry.action),
        csv_cell(entry.target or ""),
        csv_cell(entry.ip or ""),
        csv_cell(changes),
        csv_cell(details),
    ]


def _csv_lines(filters: Filters) -> Iterator[str]:
    """The header, then the filtered rows newest first, read in batches (keyset): memory
    stays flat however long the log is."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    cursor: tuple[datetime, int] | None = None
    # The request (and its connection) has ended when the body is sent: open one for it.
    with database.connection_context():
        while True:
            query = _query(filters)
            if cursor is not None:
                query = keyset.older_than(query, AuditLog.at, AuditLog.id, cursor)
            batch = list(_newest_first(query).limit(EXPORT_BATCH))
            for entry in batch:
                writer.writerow(_csv_row(entry))
            if batch:
                yield flush()
            if len(batch) < EXPORT_BATCH:
                return
            cursor = (batch[-1].at, batch[-1].id)


@bp.get("/export.csv")
def export_csv():
    filters = parse_filters(request.args)
    stamp = times.strftime(times.utcnow(), "%Y%m%d-%H%M%S")
    return Response(
        _csv_lines(filters),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="glimpser-audit-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
