"""The signed-in user's own page: who they are, their password, the browsers they are signed
in with (glimpser.auth.sessions), and their browsers' Web Push subscriptions.

Everyone, viewers too, changes only their own password and ends only their own sessions here
(a session is named by its handle, which is looked up among the user's own sessions only).

Subscribing happens in the browser (static/push.js asks the Push API with the install's VAPID
public key and posts the subscription here as JSON). Every user, viewers too, manages only their
own subscriptions.

Preferences (`save_preferences`): the time zone times are shown in (static/time.js stores the
browser's once, when none is stored; the user may choose another here) and the theme.

API keys (`/profile/api-keys`): everyone makes and revokes their own keys for the JSON API
(glimpser.auth.api_keys; the form is glimpser.web.api_key_form, shared with Admin → API keys).
A new key is shown once, on the page that answers the form (never stored, never cached).
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import EqualTo, InputRequired, Length

from glimpser.auth import api_keys
from glimpser.auth import sessions as session_registry
from glimpser.auth.passwords import (
    MAX_PASSWORD_LENGTH,
    hash_password,
    password_problem,
    verify_password,
)
from glimpser.db import write_transaction
from glimpser.extensions import limiter
from glimpser.models import ApiKey, PushSubscription, User
from glimpser.notify import webpush
from glimpser.sources.base import CaptureContext
from glimpser.web import api_key_form
from glimpser.web.app_settings import current_settings
from glimpser.web.audit import audit
from glimpser.web.humantime import MAX_ZONE_NAME, known_zones, zone_named

bp = Blueprint("profile", __name__, url_prefix="/profile")

MAX_HANDLE = 64  # a session handle is 32 hex digits; anything longer is not one
THEMES = ("system", "light", "dark")  # "system" follows the browser (prefers-color-scheme)


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password",
        validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)],
        render_kw={"autocomplete": "current-password"},
    )
    new_password = PasswordField(
        "New password",
        validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)],
        render_kw={"autocomplete": "new-password"},
    )
    confirm = PasswordField(
        "Repeat the new password",
        validators=[
            InputRequired(),
            EqualTo("new_password", message="The two new passwords differ."),
        ],
        render_kw={"autocomplete": "new-password"},
    )


def own_sessions() -> list[session_registry.SignedInSession]:
    """The signed-in user's live sessions (this browser's first)."""
    return session_registry.list_sessions({current_user.id: current_user.session_epoch})


@bp.app_template_global()
def theme_preference() -> str:
    """The signed-in user's theme (one of THEMES); "" before sign-in (then the browser's
    localStorage decides, static/theme.js)."""
    if not current_user.is_authenticated:
        return ""
    prefs = current_user.preferences
    theme = prefs.get("theme") if isinstance(prefs, dict) else None
    return theme if theme in THEMES else "system"


def _render_index(form: ChangePasswordForm | None = None, status: int = 200):
    return render_template(
        "profile/index.html",
        password_form=form or ChangePasswordForm(formdata=None),
        sessions=own_sessions(),
        subscriptions=_own_subscriptions(),
        vapid_public_key=webpush.vapid_keys().public_key,
        push_problem=webpush.subject_problem(current_settings()),
        zones=known_zones(),
        themes=THEMES,
        default_timezone=current_settings().default_timezone,
    ), status


def _change_limit() -> str:
    return current_settings().login_rate_limit  # read per request: Admin → Settings may change it


def _failed(response) -> bool:  # noqa: ANN001 - flask Response
    return response.status_code != 302


def _own_subscriptions() -> list[PushSubscription]:
    return list(
        PushSubscription.select()
        .where(PushSubscription.user == current_user.id)
        .order_by(PushSubscription.created_at.desc())
    )


@bp.get("/")
def index():
    return _render_index()


# Wrong current passwords count against the sign-in limit: a borrowed session cannot be used
# to guess the password at leisure.
@bp.post("/password")
@limiter.limit(_change_limit, deduct_when=_failed)
def change_password():
    """Change my password; every OTHER session of mine ends, this one stays signed in."""
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        return _render_index(form, 400)
    user = User.get_by_id(current_user.id)
    if not verify_password(user.password_hash, form.current_password.data):
        form.current_password.errors.append("That is not your current password.")
        return _render_index(form, 400)
    new = form.new_password.data
    problem = password_problem(new, user.username)
    if problem is None and new == form.current_password.data:
        problem = "The new password is the same as the current one."
    if problem:
        form.new_password.errors.append(problem)
        return _render_index(form, 400)
    new_hash = hash_password(new)
    with write_transaction():
        User.update(password_hash=new_hash, session_epoch=User.session_epoch + 1).where(
            User.id == user.id
        ).execute()
        audit("user.password_change", f"user:{user.id}", {"username": user.username})
    # The bumped epoch ended every session of mine; sign this one in again with a new id.
    session_registry.restart_current(user.id)
    session_registry.end_all(user.id, keep_sid=session.sid)
    flash("Your password was changed. Your other sessions were signed out.", "success")
    return redirect(url_for("profile.index"))


def _preferences_from_form() -> tuple[str | None, str | None, bool]:
    """(time zone, theme, detected) from the form; 400 for anything else than a known zone
    ("" = detect again), a known theme, or neither."""
    zone = request.form.get("timezone")
    theme = request.form.get("theme")
    detected = request.form.get("detected") == "1"
    if zone is None and theme is None:
        abort(400, "Say which time zone or theme to use.")
    if zone is not None:
        zone = zone.strip()
        if len(zone) > MAX_ZONE_NAME or ((zone or detected) and zone_named(zone) is None):
            abort(400, "Choose a time zone from the list (an IANA name such as Europe/Berlin).")
    if theme is not None and theme not in THEMES:
        abort(400, f"Choose a theme: {', '.join(THEMES)}.")
    return zone, theme, detected


@bp.post("/preferences")
def save_preferences():
    """Store my time zone and/or theme. With detected=1 (static/time.js, once) the zone is the
    browser's and is stored only while I have none, so it never overrides my own choice."""
    zone, theme, detected = _preferences_from_form()
    stored = False
    with write_transaction():
        user = User.get_by_id(current_user.id)
        changes: dict = {}
        if zone is not None and not (detected and user.timezone):
            changes[User.timezone] = zone
        if theme is not None:
            changes[User.preferences] = {**(user.preferences or {}), "theme": theme}
        if changes:
            stored = User.update(changes).where(User.id == user.id).execute() > 0
    if detected or request.accept_mimetypes.best == "application/json":  # static/time.js
        return jsonify(stored=stored, timezone=zone, theme=theme)
    flash("Your preferences were saved.", "success")
    return redirect(url_for("profile.index", _anchor="preferences"))


def _handle_from_form() -> str:
    handle = request.form.get("session", "")
    if not handle or len(handle) > MAX_HANDLE:
        abort(400, "Say which session to end.")
    return handle


@bp.post("/sessions/end")
def end_session():
    """Sign one of my other browsers out (on its next request)."""
    handle = _handle_from_form()
    target = session_registry.find(own_sessions(), handle)
    if target is None:
        abort(404, "You have no such session (it may have ended already).")
    if target.current:
        abort(400, "That is this browser: use Sign out.")
    with write_transaction():
        audit(
            "session.end",
            f"user:{current_user.id}",
            {
                "username": current_user.username,
                "device": target.device,
                "address": target.address,
                "by_owner": True,
            },
        )
        session_registry.end(target)
    flash(f"Signed out {target.device} ({target.address or 'unknown address'}).", "success")
    return redirect(url_for("profile.index", _anchor="sessions"))


@bp.post("/sessions/end-others")
def end_other_sessions():
    """Sign out every browser of mine but this one (also any the list does not know)."""
    with write_transaction():
        User.update(session_epoch=User.session_epoch + 1).where(
            User.id == current_user.id
        ).execute()
        audit(
            "session.end",
            f"user:{current_user.id}",
            {"username": current_user.username, "all_but_current": True, "by_owner": True},
        )
    user_id = current_user.id
    session_registry.restart_current(user_id)
    ended = session_registry.end_all(user_id, keep_sid=session.sid)
    flash(f"Signed out your other sessions ({ended}).", "success")
    return redirect(url_for("profile.index", _anchor="sessions"))


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


# --- API keys ---------------------------------------------------------------------------------


def _render_api_keys(form: api_key_form.KeyForm | None = None, status: int = 200):  # noqa: ANN202
    me = User.get_by_id(current_user.id)
    return render_template(
        "profile/api_keys.html",
        rows=api_key_form.rows(api_keys.keys_of(me)),
        form=form or api_key_form.KeyForm(),
        scopes=api_key_form.offered_scopes(me),
        streams=api_key_form.streams_for(me),
        max_days=api_keys.MAX_EXPIRY_DAYS,
        max_name=api_keys.MAX_NAME_CHARS,
        api_docs_url=api_key_form.api_docs_url(),
    ), status


def shown_once(page: str):  # noqa: ANN201 - flask Response
    """A page that shows a new key: never cached, never kept by the browser."""
    response = make_response(page, 200)
    response.headers["Cache-Control"] = "no-store"
    return response


def _own_key(key_id: int) -> ApiKey:
    key = (
        ApiKey.select(ApiKey, User)
        .join(User, on=(ApiKey.user == User.id))
        .where(ApiKey.id == key_id, ApiKey.user == current_user.id)
        .first()
    )
    if key is None:
        abort(404)
    return key


@bp.get("/api-keys")
def api_keys_page():
    return _render_api_keys()


@bp.post("/api-keys")
def create_api_key():
    """Make a key of mine; the answer shows it, once."""
    me = User.get_by_id(current_user.id)
    form = api_key_form.read_form(me)
    new = None if form.errors else api_key_form.create_from(form, me, me)
    if new is None:
        return _render_api_keys(form, 422)
    page = render_template(
        "profile/api_key_created.html",
        new=new,
        row=api_key_form.rows([new.row])[0],
        back_url=url_for("profile.api_keys_page"),
        back_label="Your API keys",
    )
    return shown_once(page)


@bp.get("/api-keys/<int:key_id>/revoke")
def confirm_revoke_api_key(key_id: int):
    key = _own_key(key_id)
    return render_template(
        "profile/api_key_revoke.html",
        row=api_key_form.rows([key])[0],
        action=url_for("profile.revoke_api_key", key_id=key.id),
        cancel_url=url_for("profile.api_keys_page"),
    )


@bp.post("/api-keys/<int:key_id>/revoke")
def revoke_api_key(key_id: int):
    key = _own_key(key_id)
    if api_keys.revoke(key, actor=current_user, ip=request.remote_addr or ""):
        flash(f"Key {key.prefix} ({key.name or 'no name'}) is revoked.", "success")
    else:
        flash(f"Key {key.prefix} was already revoked.", "info")
    return redirect(url_for("profile.api_keys_page"))
