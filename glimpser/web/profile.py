"""The signed-in user's own page: who they are, and their browsers' Web Push subscriptions.

Subscribing happens in the browser (static/push.js asks the Push API with the install's VAPID
public key and posts the subscription here as JSON). Every user, viewers too, manages only their
own subscriptions.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from glimpser.db import write_transaction
from glimpser.models import PushSubscription
from glimpser.notify import webpush
from glimpser.sources.base import CaptureContext
from glimpser.web.app_settings import current_settings

bp = Blueprint("profile", __name__, url_prefix="/profile")


def _own_subscriptions() -> list[PushSubscription]:
    return list(
        PushSubscription.select()
        .where(PushSubscription.user == current_user.id)
        .order_by(PushSubscription.created_at.desc())
    )


@bp.get("/")
def index():
    return render_template(
        "profile/index.html",
        subscriptions=_own_subscriptions(),
        vapid_public_key=webpush.vapid_keys().public_key,
        push_problem=webpush.subject_problem(current_settings()),
    )


@bp.post("/push/subscriptions")
def subscribe():
    """Store the PushSubscription JSON a browser made (PushSubscription.toJSON())."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error="expected the subscription as JSON"), 400
    try:
        sub = webpush.save_subscription(
            current_user,
            data,
            request.headers.get("User-Agent", ""),
            CaptureContext.from_settings(current_settings()),
        )
    except webpush.SubscriptionTaken as exc:
        return jsonify(error=str(exc)), 409
    except ValueError as exc:
        return jsonify(error=str(exc)), 422
    return jsonify(id=sub.id), 201


@bp.post("/push/unsubscribe")
def unsubscribe():
    """A browser unsubscribed (JSON {endpoint}): forget its subscription, if it is ours."""
    data = request.get_json(silent=True)
    endpoint = data.get("endpoint") if isinstance(data, dict) else None
    if not isinstance(endpoint, str):
        return jsonify(error='expected {"endpoint": ...}'), 400
    with write_transaction():
        removed = (
            PushSubscription.delete()
            .where(
                (PushSubscription.endpoint == endpoint) & (PushSubscription.user == current_user.id)
            )
            .execute()
        )
    return jsonify(removed=removed)


@bp.post("/push/subscriptions/<int:subscription_id>/delete")
def remove(subscription_id: int):
    """Remove one of my subscriptions from the list (works without JavaScript)."""
    with write_transaction():
        removed = (
            PushSubscription.delete()
            .where(
                (PushSubscription.id == subscription_id)
                & (PushSubscription.user == current_user.id)
            )
            .execute()
        )
    if not removed:
        abort(404)
    return redirect(url_for("profile.index"))
