"""Admin → Deliveries: the notification delivery log (issue 6).

Newest first, keyset-paginated by id (a new delivery never shifts the page being read), filtered
by channel, status, event and purpose. A failed or skipped delivery can be retried by hand: it
is queued once more on the notify queue (dispatch.retry_by_hand), never sent by the web process.
While rows in view are still queued, sending or retrying, the log refreshes itself over htmx;
a row retried by hand refreshes itself until it has an outcome (also in a view filtered to
"failed", which it no longer matches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)

from glimpser import queues
from glimpser.models import DELIVERY_STATES, Delivery, Event, NotificationChannel
from glimpser.notify.dispatch import retry_by_hand
from glimpser.web.audit import audit
from glimpser.web.htmx import is_fragment_request as _is_htmx
from glimpser.web.params import parse_id

bp = Blueprint("admin_deliveries", __name__, url_prefix="/admin/deliveries")

PAGE_SIZE = 50
PURPOSES = ("alert", "cancel")
PENDING_STATES = frozenset({"queued", "sending", "retrying"})
RETRYABLE_STATES = frozenset({"failed", "skipped"})


def _redis() -> redis.Redis:
    return current_app.extensions["glimpser.redis"]


def _positive_int(raw: str | None) -> int | None:
    return parse_id(raw)


@dataclass
class Filters:
    channel: int | None = None
    status: str = ""
    event: int | None = None
    purpose: str = ""
    invalid: str = ""

    def args(self) -> dict[str, Any]:
        """The filters as query arguments (empty ones left out)."""
        out: dict[str, Any] = {}
        if self.channel:
            out["channel"] = self.channel
        if self.status:
            out["status"] = self.status
        if self.event:
            out["event"] = self.event
        if self.purpose:
            out["purpose"] = self.purpose
        return out

    @property
    def active(self) -> bool:
        return bool(self.args())


def parse_filters(args: Any) -> Filters:
    """Filters from the query string; a value that cannot be one is ignored and named."""
    filters = Filters()
    wrong = []
    for name in ("channel", "event"):
        raw = args.get(name, "").strip()
        value = _positive_int(raw)
        if raw and value is None:
            wrong.append(name)
        setattr(filters, name, value)
    status = args.get("status", "").strip()
    if status in DELIVERY_STATES:
        filters.status = status
    elif status:
        wrong.append("status")
    purpose = args.get("purpose", "").strip()
    if purpose in PURPOSES:
        filters.purpose = purpose
    elif purpose:
        wrong.append("purpose")
    if wrong:
        filters.invalid = "Ignored a filter that is not valid: " + ", ".join(wrong) + "."
    return filters


def _query(filters: Filters):  # noqa: ANN202 - a peewee select
    query = (
        Delivery.select(Delivery, Event, NotificationChannel)
        .join(Event)
        .switch(Delivery)
        .join(NotificationChannel)
        .switch(Delivery)
    )
    if filters.channel:
        query = query.where(Delivery.channel == filters.channel)
    if filters.status:
        query = query.where(Delivery.status == filters.status)
    if filters.event:
        query = query.where(Delivery.event == filters.event)
    if filters.purpose:
        query = query.where(Delivery.purpose == filters.purpose)
    return query


def _page(filters: Filters, before: int | None) -> tuple[list[Delivery], int | None]:
    """One page, newest first, and the cursor (an id) of the next older page."""
    query = _query(filters)
    if before is not None:
        query = query.where(Delivery.id < before)
    rows = list(query.order_by(Delivery.id.desc()).limit(PAGE_SIZE + 1))
    page = rows[:PAGE_SIZE]
    return page, (page[-1].id if len(rows) > PAGE_SIZE and page else None)


def _context(filters: Filters, before: int | None) -> dict[str, Any]:
    deliveries, next_before = _page(filters, before)
    args = filters.args()
    if before is not None:
        args["before"] = before
    return {
        "deliveries": deliveries,
        "filters": filters,
        "before": before,
        "next_before": next_before,
        "pending": any(d.status in PENDING_STATES for d in deliveries),
        "log_url": url_for("admin_deliveries.index", **args),
        "page_args": args,
        "states": DELIVERY_STATES,
        "purposes": PURPOSES,
        "retryable": RETRYABLE_STATES,
    }


@bp.get("/")
def index():
    filters = parse_filters(request.args)
    before = _positive_int(request.args.get("before"))
    context = _context(filters, before)
    if _is_htmx() and request.headers.get("HX-Target") == "delivery-log":
        return render_template("admin/deliveries/_log.html", **context)
    channels = list(
        NotificationChannel.select(NotificationChannel.id, NotificationChannel.name).order_by(
            NotificationChannel.name
        )
    )
    return render_template("admin/deliveries/list.html", channels=channels, **context)


def _get_delivery(delivery_id: int) -> Delivery:
    delivery = (
        Delivery.select(Delivery, Event, NotificationChannel)
        .join(Event)
        .switch(Delivery)
        .join(NotificationChannel)
        .where(Delivery.id == delivery_id)
        .first()
    )
    if delivery is None:
        abort(404)
    return delivery


@bp.get("/<int:delivery_id>/card")
def card(delivery_id: int):
    """One delivery as a card (the channels page shows a test send with it); polled by htmx
    until the delivery is sent, failed or skipped."""
    delivery = _get_delivery(delivery_id)
    return render_template(
        "admin/deliveries/_card.html", d=delivery, channel=delivery.channel, event=delivery.event
    )


def _render_row(delivery: Delivery, filters: Filters) -> str:
    return render_template(
        "admin/deliveries/_row.html",
        d=delivery,
        retryable=RETRYABLE_STATES,
        page_args=filters.args(),
        poll=delivery.status in PENDING_STATES,
    )


@bp.get("/<int:delivery_id>/row")
def row(delivery_id: int):
    """One table row, polled by a row retried by hand until the delivery has an outcome."""
    return _render_row(_get_delivery(delivery_id), parse_filters(request.args))


@bp.post("/<int:delivery_id>/retry")
def retry(delivery_id: int):
    """Queue a failed or skipped delivery once more (the worker sends it, at most once)."""
    delivery = _get_delivery(delivery_id)
    connection = _redis()

    def record() -> None:
        audit(
            "delivery.retry",
            f"delivery:{delivery.id}",
            {"channel": delivery.channel.name, "event_id": delivery.event_id},
        )

    try:
        queued = retry_by_hand(
            delivery, lambda i, d: queues.enqueue_delivery(connection, i, d), record
        )
    except redis.RedisError:
        abort(503, "Redis is not reachable; the delivery was not queued.")
    filters = parse_filters(request.args)
    if _is_htmx():
        return _render_row(_get_delivery(delivery.id), filters)
    if queued:
        flash(f"Delivery {delivery.id} queued again.", "success")
    else:
        flash(f"Delivery {delivery.id} is not failed or skipped: nothing to retry.", "info")
    return redirect(url_for("admin_deliveries.index", **filters.args()))
