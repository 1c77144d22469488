"""The dashboard: what a signed-in user sees first."""

from __future__ import annotations

from flask import Blueprint, render_template

from glimpser.auth.access import visible_streams
from glimpser.models import Stream
from glimpser.snapshots import latest_snapshot

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index():
    streams = list(visible_streams().order_by(Stream.name))
    cards = [(stream, latest_snapshot(stream)) for stream in streams]
    return render_template("dashboard.html", cards=cards)
