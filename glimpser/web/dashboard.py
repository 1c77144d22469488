"""The dashboard: every visible stream at a glance, refreshing itself for almost nothing.

The grid polls its own URL with the version it shows (a hash of what it renders); while
nothing changed the answer is an empty 204, which htmx ignores. Pictures are per-snapshot
thumbnail URLs that never change, so an unchanged picture is never downloaded again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, render_template, request, url_for
from flask_login import current_user

from glimpser import times
from glimpser.auth.access import visible_streams
from glimpser.models import STREAM_STATES, Snapshot, Stream
from glimpser.sources.schemas import KIND_LABELS
from glimpser.web.htmx import is_fragment_request

bp = Blueprint("dashboard", __name__)

SIZES = ("small", "medium", "large")
MAX_QUERY = 200
POLL_SECONDS = 5


@dataclass(frozen=True)
class Filters:
    """The dashboard's GET parameters, validated; defaults are left out of URLs."""

    q: str = ""
    group: str = ""
    state: str = ""
    size: str = "medium"

    def params(self) -> dict[str, str]:
        """The non-default values, as query parameters."""
        defaults = vars(Filters())
        return {k: v for k, v in vars(self).items() if v != defaults[k]}

    @property
    def active(self) -> bool:
        return bool(self.q or self.group or self.state)


def _filters() -> Filters:
    """Read the filters from the query string; 400 with a clear message for bad values."""
    args = request.args
    q = args.get("q", "").strip()
    if len(q) > MAX_QUERY:
        abort(400, f"The search is longer than {MAX_QUERY} characters.")
    state = args.get("state", "")
    if state and state not in STREAM_STATES:
        abort(400, f"Unknown state {state[:40]!r}: use one of {', '.join(STREAM_STATES)}.")
    size = args.get("size", "") or "medium"
    if size not in SIZES:
        abort(400, f"Unknown grid size {size[:40]!r}: use small, medium or large.")
    group = args.get("group", "").strip()[:MAX_QUERY]
    return Filters(q=q, group=group, state=state, size=size)


# What a card shows; plain named tuples, not models: this runs on every poll.
_CARD_COLUMNS = (
    Stream.id,
    Stream.name,
    Stream.kind,
    Stream.state,
    Stream.enabled,
    Stream.last_error,
    Stream.last_capture_at,
    Stream.groups,
    Stream.ai_caption,  # the latest AI description (short), with its age
    Stream.ai_caption_at,
)


def _streams(filters: Filters) -> list:
    """Visible streams matching the filters, each with `latest_id` (its newest snapshot)."""
    latest = Snapshot.alias("latest")
    latest_id = (
        latest.select(latest.id)
        .where(latest.stream == Stream.id)
        .order_by(latest.captured_at.desc(), latest.id.desc())
        .limit(1)
    )
    query = (
        visible_streams()
        .select(*_CARD_COLUMNS, latest_id.alias("latest_id"))
        .order_by(Stream.name)
        .namedtuples()
    )
    if filters.state:
        query = query.where(Stream.state == filters.state)
    if filters.q:
        query = query.where(Stream.name.contains(filters.q))
    streams = list(query)
    if filters.group:
        wanted = filters.group.casefold()
        streams = [s for s in streams if any(g.casefold() == wanted for g in s.groups or ())]
    return streams


def _version(streams: list, filters: Filters, any_streams: bool) -> str:
    """A short hash of everything the grid renders, for the 204-when-unchanged poll."""
    digest = hashlib.sha1(repr((streams, filters, any_streams)).encode(), usedforsecurity=False)
    return digest.hexdigest()[:16]


def _groups() -> list[str]:
    """Every group name among the user's streams, for the filter menu."""
    names: dict[str, str] = {}
    for (groups,) in visible_streams().select(Stream.groups).tuples():
        for group in groups or ():
            names.setdefault(group.casefold(), group)
    return sorted(names.values(), key=str.casefold)


def _render_grid(streams: list, filters: Filters, version: str, template: str, **extra):
    ids = [s.latest_id for s in streams if s.latest_id]
    found = Snapshot.select().where(Snapshot.id.in_(ids)) if ids else []
    snapshots = {snap.id: snap for snap in found}
    cards = [(s, snapshots.get(s.latest_id)) for s in streams]
    return render_template(
        template,
        cards=cards,
        filters=filters,
        version=version,
        poll_url=url_for("dashboard.index", **filters.params(), v=version),
        poll_seconds=POLL_SECONDS,
        kind_labels=KIND_LABELS,
        **extra,
    )


@bp.get("/")
def index():
    """The page, or for htmx the grid alone (204 when the client's version is current)."""
    filters = _filters()
    streams = _streams(filters)
    # Which empty state to show (none, or "no match") is part of what the grid renders.
    any_streams = bool(streams) or visible_streams().exists()
    version = _version(streams, filters, any_streams)
    fragment = is_fragment_request()
    if fragment and request.args.get("v") == version:
        return "", 204, {"Vary": "HX-Request"}
    if fragment:
        body = _render_grid(
            streams, filters, version, "dashboard/_grid.html", any_streams=any_streams
        )
        headers = {"Vary": "HX-Request"}
        if "v" not in request.args:  # a filter change (not a poll): keep it in the URL
            headers["HX-Push-Url"] = url_for("dashboard.index", **filters.params())
        return body, 200, headers
    body = _render_grid(
        streams,
        filters,
        version,
        "dashboard.html",
        any_streams=any_streams,
        groups=_groups() if any_streams else [],
        states=STREAM_STATES,
        sizes=SIZES,
        is_admin=current_user.is_admin,
    )
    return body, 200, {"Vary": "HX-Request"}


# --- ages, shown on the dashboard and the stream page -------------------------------------


@bp.app_template_global()
def age_seconds(moment: datetime | None) -> int:
    """Whole seconds since a moment, for the client-side ticker (static/app.js)."""
    if moment is None:
        return 0
    return max(0, int((times.utcnow() - times.to_utc(moment)).total_seconds()))


@bp.app_template_global()
def time_ago(moment: datetime | None) -> str:
    """Ages as "12 s ago", "5 min ago", "3 h ago" or "2 d ago"; app.js formats the same way."""
    if moment is None:
        return "never"
    seconds = age_seconds(moment)
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"
