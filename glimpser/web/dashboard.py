"""The dashboard: the camera wall, every visible stream at a glance, refreshing itself for
almost nothing.

Tiles are picture-first (name, a state dot and the picture's age over the picture); failing
streams come first with their error; the number of columns is each user's own preference
(User.preferences["wall_columns"], set by `set_columns`). `?kiosk=1` hides the page's chrome
for a wall screen (static/wall.js adds the Fullscreen API, the idle cursor and the in-page
stream viewer).

The grid polls its own URL with the version it shows: a hash of the data it renders (stream
states, errors, names, latest snapshot ids, the columns), never of the time. Ages tick in the
browser, so while nothing changed the answer is an empty 204, which htmx ignores. Pictures are
per-snapshot thumbnail URLs that never change, so an unchanged picture is never downloaded again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user

from glimpser.auth.access import visible_streams
from glimpser.capture.live import LIVE_KINDS
from glimpser.db import write_transaction
from glimpser.models import STREAM_STATES, Snapshot, Stream, User
from glimpser.sources.schemas import KIND_LABELS
from glimpser.web import pictures
from glimpser.web.htmx import is_fragment_request

bp = Blueprint("dashboard", __name__)

COLUMNS = (2, 3, 4, 5, 6, 8, 10, 12)
DEFAULT_COLUMNS = 4
MAX_QUERY = 200
POLL_SECONDS = 5


@dataclass(frozen=True)
class Filters:
    """The dashboard's GET parameters, validated; defaults are left out of URLs."""

    q: str = ""
    group: str = ""
    state: str = ""

    def params(self) -> dict[str, str]:
        """The non-default values, as query parameters."""
        return {k: v for k, v in vars(self).items() if v}

    @property
    def active(self) -> bool:
        return bool(self.q or self.group or self.state)


def _filters(values: Mapping[str, str]) -> Filters:
    """Read the filters (query string or form); 400 with a clear message for bad values."""
    q = values.get("q", "").strip()
    if len(q) > MAX_QUERY:
        abort(400, f"The search is longer than {MAX_QUERY} characters.")
    state = values.get("state", "")
    if state and state not in STREAM_STATES:
        abort(400, f"Unknown state {state[:40]!r}: use one of {', '.join(STREAM_STATES)}.")
    group = values.get("group", "").strip()[:MAX_QUERY]
    return Filters(q=q, group=group, state=state)


def _kiosk() -> bool:
    """`?kiosk=1` (the wall-screen mode); anything but 1, 0 or nothing is a 400."""
    value = request.args.get("kiosk", "")
    if value not in ("", "0", "1"):
        abort(400, "kiosk is 1 (a wall screen without the page's chrome) or 0.")
    return value == "1"


def wall_columns(user: User) -> int:
    """The user's remembered column count (the default when unset or no longer offered)."""
    value = (user.preferences or {}).get("wall_columns")
    return value if isinstance(value, int) and value in COLUMNS else DEFAULT_COLUMNS


# What a tile shows; plain named tuples, not models: this runs on every poll. Deliberately
# not last_capture_at: it moves on every capture, also when the picture was unchanged and
# not stored, and the tile shows the age of its picture (the latest snapshot's time) instead.
_TILE_COLUMNS = (
    Stream.id,
    Stream.name,
    Stream.kind,
    Stream.state,
    Stream.enabled,
    Stream.last_error,
    Stream.ai_caption,  # the latest AI description, as the tile's tooltip
)


def _streams(filters: Filters) -> list:
    """Visible streams matching the filters, failing ones first, each with `latest_id`."""
    latest = Snapshot.alias("latest")
    latest_id = (
        latest.select(latest.id)
        .where(latest.stream == Stream.id)
        .order_by(latest.captured_at.desc(), latest.id.desc())
        .limit(1)
    )
    query = (
        visible_streams()
        .select(*_TILE_COLUMNS, Stream.groups, latest_id.alias("latest_id"))
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
    streams.sort(key=lambda s: s.state != "failing")  # stable: the rest keep their order
    return streams


def _version(streams: list, filters: Filters, any_streams: bool, columns: int) -> str:
    """A short hash of the data the grid renders (no clock in it), for the 204 poll."""
    shown = [
        (s.id, s.name, s.kind, s.state, s.last_error, s.ai_caption, s.latest_id) for s in streams
    ]
    # With signed picture URLs, also their renewal (glimpser.web.pictures.url_epoch).
    state = repr((shown, filters, any_streams, columns, pictures.url_epoch()))
    return hashlib.sha1(state.encode(), usedforsecurity=False).hexdigest()[:16]


def _groups() -> list[str]:
    """Every group name among the user's streams, for the filter menu."""
    names: dict[str, str] = {}
    for (groups,) in visible_streams().select(Stream.groups).tuples():
        for group in groups or ():
            names.setdefault(group.casefold(), group)
    return sorted(names.values(), key=str.casefold)


def _render_grid(
    streams: list, filters: Filters, version: str, columns: int, template: str, **extra: object
) -> str:
    ids = [s.latest_id for s in streams if s.latest_id]
    found = (
        Snapshot.select(
            Snapshot.id,
            Snapshot.captured_at,
            Snapshot.width,
            Snapshot.height,
            Snapshot.storage_key,  # for signed picture URLs (glimpser.web.pictures)
        )
        .where(Snapshot.id.in_(ids))
        .namedtuples()
        if ids
        else []
    )
    snapshots = {snap.id: snap for snap in found}
    tiles = [(s, snapshots.get(s.latest_id)) for s in streams]
    return render_template(
        template,
        tiles=tiles,
        filters=filters,
        columns=columns,
        version=version,
        poll_url=url_for("dashboard.index", **filters.params(), v=version),
        poll_seconds=POLL_SECONDS,
        kind_labels=KIND_LABELS,
        live_kinds=LIVE_KINDS,
        **extra,
    )


def _state(filters: Filters, columns: int) -> tuple[list, bool, str]:
    """The streams shown, whether the user has any at all, and the grid's version."""
    streams = _streams(filters)
    # Which empty state to show (none, or "no match") is part of what the grid renders.
    any_streams = bool(streams) or visible_streams().exists()
    return streams, any_streams, _version(streams, filters, any_streams, columns)


def _grid_response(filters: Filters, columns: int, state: tuple[list, bool, str], push_url: bool):
    streams, any_streams, version = state
    headers = {"Vary": "HX-Request"}
    if push_url:  # a filter change (not a poll): keep it in the URL
        headers["HX-Push-Url"] = url_for("dashboard.index", **filters.params())
    body = _render_grid(
        streams, filters, version, columns, "dashboard/_grid.html", any_streams=any_streams
    )
    return body, 200, headers


@bp.get("/")
def index():
    """The page, or for htmx the grid alone (204 when the client's version is current)."""
    filters = _filters(request.args)
    kiosk = _kiosk()
    columns = wall_columns(current_user)
    state = _state(filters, columns)
    streams, any_streams, version = state
    if is_fragment_request():
        if request.args.get("v") == version:
            return "", 204, {"Vary": "HX-Request"}
        return _grid_response(filters, columns, state, push_url="v" not in request.args)
    body = _render_grid(
        streams,
        filters,
        version,
        columns,
        "dashboard.html",
        any_streams=any_streams,
        groups=_groups() if any_streams else [],
        states=STREAM_STATES,
        column_choices=COLUMNS,
        kiosk=kiosk,
        kiosk_url=url_for("dashboard.index", **filters.params(), kiosk="1"),
        wall_url=url_for("dashboard.index", **filters.params()),
        is_admin=current_user.is_admin,
    )
    return body, 200, {"Vary": "HX-Request"}


@bp.post("/wall/columns")
def set_columns():
    """Remember the user's column count; htmx gets the re-rendered grid, a form a redirect."""
    raw = request.form.get("columns", "")
    if raw not in {str(n) for n in COLUMNS}:
        choices = ", ".join(str(n) for n in COLUMNS)
        abort(400, f"Choose a number of columns among {choices}.")
    filters = _filters(request.form)
    columns = int(raw)
    with write_transaction():
        user = User.get_by_id(current_user.id)
        preferences = dict(user.preferences or {})
        preferences["wall_columns"] = columns
        User.update(preferences=preferences).where(User.id == user.id).execute()
    if is_fragment_request():
        return _grid_response(filters, columns, _state(filters, columns), push_url=False)
    return redirect(url_for("dashboard.index", **filters.params()), 303)
