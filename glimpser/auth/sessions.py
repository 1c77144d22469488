"""Server-side sessions in Redis (Flask-Session), and the registry of who is signed in where.

Lifetimes: a signed-in session lives `session_lifetime_days` (read per request through
`current_settings()`, so a change made at run time applies to every session saved from then
on). An anonymous one holds at most a sign-in form's CSRF token and a flash message, so it
lives ANONYMOUS_LIFETIME: every anonymous visit of /login stores one (the token must be
checked when the form comes back), and a long life would let anyone fill Redis by asking for
the page. Empty sessions are never stored (Flask-Session's own rule).

The registry: every signed-in session is recorded in the Redis hash
`glimpser:sessions:user:<user id>` (field: the session id, value: JSON with the device, the
address, when it started and was last seen, and the user's session_epoch at sign-in). Pages
never show a session id: they show a short `fingerprint` and address a session by its
`handle`, an HMAC of the id that cannot be turned back into a usable cookie. An entry whose
session key is gone (expired, ended) or whose epoch is no longer the user's (an admin ended
all of the user's sessions) is pruned, and its session key deleted, whenever the list is read.

Ending a session deletes its key; the browser's next request finds no session and is signed
out. A request of that session still in flight cannot bring it back: a session read from
Redis is written back only while its key still exists (SET XX).

Redis unreachable: the session cannot be read, so the request is answered 503 with
Retry-After (as glimpser/web/errors.py does for the database) instead of a 500 — and the
browser keeps its cookie, so it is still signed in once Redis is back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from flask import Flask, Request, Response, current_app, request, session
from flask_session.base import ServerSideSession
from flask_session.defaults import Defaults
from flask_session.redis import RedisSessionInterface

from glimpser import times

log = logging.getLogger(__name__)

# Long enough to fill in the sign-in form; a form older than that says "form expired".
ANONYMOUS_LIFETIME = timedelta(hours=1)
# A session's "last seen" is written at most this often (not on every request).
SEEN_EVERY = timedelta(seconds=60)
# Seconds a client is asked to wait (Retry-After) while Redis is unreachable.
STORE_RETRY_AFTER = 5
MAX_USER_AGENT = 256  # characters of the raw User-Agent kept in the registry
MAX_ADDRESS = 64

REGISTRY_PREFIX = "glimpser:sessions:user:"
# A user's registry outlives any session in it (lifetimes are at most 365 days); entries of
# ended sessions are pruned when the list is read, this only clears a forgotten user's away.
REGISTRY_LIFETIME = timedelta(days=366)
USER_ID_KEY = "_user_id"  # flask-login's session key: "<user id>:<session epoch>"
SEEN_KEY = "_glimpser_seen"  # when this session's "last seen" was last written

_UNAVAILABLE_TITLE = "Unavailable for a moment"
_UNAVAILABLE_MESSAGE = "The session store is not reachable. Try again in a few seconds."


# --- the session interface --------------------------------------------------------------------


def _signed_in(data: dict) -> bool:
    return USER_ID_KEY in data


def _user_and_epoch(data: dict) -> tuple[int, int] | None:
    """(user id, session epoch) from flask-login's "<id>:<epoch>", None when malformed."""
    parts = str(data.get(USER_ID_KEY, "")).split(":")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def session_lifetime(data: dict) -> timedelta:
    """How long a session with this content is kept: the setting when signed in, else 1 h."""
    if not _signed_in(data):
        return ANONYMOUS_LIFETIME
    from glimpser.web.app_settings import current_settings

    return timedelta(days=current_settings().session_lifetime_days)


# Paths that never have a cookie session: the JSON API and the Prometheus scrape.
# /pictures/: signed picture URLs (glimpser.web.pictures), checked by signature, not by user.
SESSIONLESS_PATHS = ("/api/", "/metrics", "/pictures/")


class SessionInterface(RedisSessionInterface):
    """Flask-Session's Redis sessions, with per-request lifetimes, the registry of signed-in
    sessions, no resurrection of an ended session, and a 503 while Redis is unreachable."""

    def open_session(self, app: Flask, request: Request) -> ServerSideSession:
        if request.path.startswith(SESSIONLESS_PATHS):
            # API keys authenticate these (glimpser.api.auth): no cookie is read or set, so a
            # browser's session can never act on the API (and no CSRF is possible there).
            empty = self.session_class(sid=None, permanent=self.permanent)
            empty.glimpser_sessionless = True  # type: ignore[attr-defined]
            return empty
        try:
            opened = super().open_session(app, request)
            if _signed_in(opened):
                self._touch(opened)
        except redis.RedisError as exc:
            log.warning(
                "session store unavailable", extra={"path": request.path, "error": str(exc)}
            )
            opened = self.session_class(sid=None, permanent=self.permanent)
            opened.glimpser_unavailable = True  # type: ignore[attr-defined]
            return opened
        if request.cookies.get(app.config["SESSION_COOKIE_NAME"]) == opened.sid:
            opened.glimpser_stored_sid = opened.sid  # type: ignore[attr-defined]
        return opened

    def _touch(self, opened: ServerSideSession) -> None:
        """Write the registry's "last seen" of this session, at most once per SEEN_EVERY.

        A signed-in session the registry does not know (one started before the registry
        existed) is recorded then, with its epoch: a stale one is pruned like any other."""
        now = times.utcnow()
        seen = _parse_time(opened.get(SEEN_KEY))
        if seen is not None and now - seen < SEEN_EVERY:
            return
        owner = _user_and_epoch(opened)
        if owner is not None:
            key = REGISTRY_PREFIX + str(owner[0])
            raw = self.client.hget(key, opened.sid)
            record = _decode(raw) if raw is not None else _new_record(owner[1], started=None)
            record["seen"] = times.isoformat(now)
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(key, opened.sid, json.dumps(record))
            pipe.expire(key, REGISTRY_LIFETIME)
            pipe.execute()
        opened[SEEN_KEY] = times.isoformat(now)

    def save_session(self, app: Flask, session: ServerSideSession, response: Response) -> None:
        if getattr(session, "glimpser_sessionless", False):
            return
        if getattr(session, "glimpser_unavailable", False):
            return  # nothing was read; keep the browser's cookie for when Redis is back
        try:
            super().save_session(app, session, response)
        except redis.RedisError as exc:
            log.warning(
                "session store unavailable", extra={"path": request.path, "error": str(exc)}
            )
            _make_unavailable(response)

    def get_expiration_time(self, app: Flask, session: ServerSideSession) -> datetime | None:
        if session.permanent:
            return times.utcnow() + session_lifetime(session)
        return None

    def _upsert_session(
        self, _app_lifetime: timedelta, session: ServerSideSession, store_id: str
    ) -> None:
        lifetime = session_lifetime(session)
        data = self.serializer.encode(session)
        sign_in = getattr(session, "glimpser_sign_in", None)
        if getattr(session, "glimpser_stored_sid", None) == session.sid and sign_in is None:
            # Read from Redis: write back only while it exists (an ended session stays ended).
            self.client.set(store_id, data, ex=lifetime, xx=True)
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.set(store_id, data, ex=lifetime)
        if sign_in is not None:
            user_id, record = sign_in
            key = REGISTRY_PREFIX + str(user_id)
            pipe.hset(key, session.sid, json.dumps(record))
            pipe.expire(key, REGISTRY_LIFETIME)
        pipe.execute()


def _make_unavailable(response: Response) -> Response:
    """Turn `response` into the 503 "session store unavailable" answer."""
    response.status_code = 503
    response.headers["Retry-After"] = str(STORE_RETRY_AFTER)
    response.headers.pop("Set-Cookie", None)
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        body = {
            "type": "about:blank",
            "title": _UNAVAILABLE_TITLE,
            "status": 503,
            "detail": _UNAVAILABLE_MESSAGE,
        }
        response.set_data(json.dumps(body))
        response.headers["Content-Type"] = "application/problem+json"
    else:
        # Not the site's error template: its layout asks the session who is signed in.
        page = (
            f"<!doctype html><title>{_UNAVAILABLE_TITLE}</title>"
            f"<h1>{_UNAVAILABLE_TITLE}</h1><p>{_UNAVAILABLE_MESSAGE}</p>"
        )
        response.set_data(page)
        response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response


def install(app: Flask) -> None:
    """Use SessionInterface, configured from app.config as Flask-Session configures its own
    (call after Flask-Session's init_app, and before any other before_request hook: a request
    whose session could not be read is answered 503 before anything asks who is signed in)."""
    config = app.config
    app.session_interface = SessionInterface(
        app,
        client=config["SESSION_REDIS"],
        key_prefix=config.get("SESSION_KEY_PREFIX", Defaults.SESSION_KEY_PREFIX),
        permanent=config.get("SESSION_PERMANENT", Defaults.SESSION_PERMANENT),
        sid_length=config.get("SESSION_ID_LENGTH", Defaults.SESSION_ID_LENGTH),
        serialization_format=config.get(
            "SESSION_SERIALIZATION_FORMAT", Defaults.SESSION_SERIALIZATION_FORMAT
        ),
    )

    @app.before_request
    def _session_store_unavailable() -> Response | None:
        if getattr(session, "glimpser_unavailable", False):
            return _make_unavailable(app.response_class())
        return None


# --- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedInSession:
    """One signed-in session of a user, as the pages show it (never its id)."""

    user_id: int
    handle: str  # addresses the session in forms; not the session id
    fingerprint: str  # a short label to tell sessions apart
    device: str
    user_agent: str
    address: str
    started_at: datetime | None
    last_seen_at: datetime | None
    current: bool  # the session of this request
    sid: str = field(repr=False)  # only for ending it; never render this


def _interface() -> SessionInterface:
    interface = current_app.session_interface
    assert isinstance(interface, SessionInterface)
    return interface


def _keyed(label: str, sid: str) -> str:
    key = current_app.secret_key
    secret = key.encode() if isinstance(key, str) else bytes(key or b"")
    return hmac.new(secret, f"glimpser-session-{label}:{sid}".encode(), hashlib.sha256).hexdigest()


def handle_of(sid: str) -> str:
    """The opaque handle of a session in pages and forms (an HMAC of its id)."""
    return _keyed("handle", sid)[:32]


def fingerprint_of(sid: str) -> str:
    """A short label to tell a user's sessions apart (not the id, not the handle)."""
    return _keyed("fingerprint", sid)[:8]


def _parse_time(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return times.to_utc(datetime.fromisoformat(raw))
    except ValueError:
        return None


def _decode(raw: bytes | str) -> dict:
    try:
        record = json.loads(raw)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


_BROWSERS = [  # the order matters: Edge and Opera also say "Chrome", Chrome also "Safari"
    (re.compile(r"Edg(?:e|A|iOS)?/"), "Edge"),
    (re.compile(r"OPR/|Opera"), "Opera"),
    (re.compile(r"SamsungBrowser/"), "Samsung Internet"),
    (re.compile(r"Firefox/|FxiOS/"), "Firefox"),
    (re.compile(r"Chromium/"), "Chromium"),
    (re.compile(r"Chrome/|CriOS/"), "Chrome"),
    (re.compile(r"Version/[0-9.]+.*Safari/"), "Safari"),
    (re.compile(r"curl/"), "curl"),
    (re.compile(r"python-requests/|python-httpx/"), "Python"),
]
_SYSTEMS = [
    (re.compile(r"Android"), "Android"),
    (re.compile(r"iPhone|iPad|iPod"), "iOS"),
    (re.compile(r"CrOS"), "ChromeOS"),
    (re.compile(r"Windows"), "Windows"),
    (re.compile(r"Mac OS X|Macintosh"), "macOS"),
    (re.compile(r"Linux|X11"), "Linux"),
]


def device_label(user_agent: str) -> str:
    """A readable label from a User-Agent, e.g. "Firefox on Linux" ("Unknown browser")."""
    browser = next((name for pattern, name in _BROWSERS if pattern.search(user_agent)), None)
    system = next((name for pattern, name in _SYSTEMS if pattern.search(user_agent)), None)
    if browser and system:
        return f"{browser} on {system}"
    if browser or system:
        return f"{browser or 'A browser'}{f' on {system}' if system else ''}"
    return "Unknown browser"


def record_sign_in(user_id: int, epoch: int, started_at: str | None = None) -> None:
    """Register the session of this request as signed in as `user_id` at `epoch`.

    Call after the session got its fresh id; the entry is written with the session itself
    (one Redis transaction) when the response is saved."""
    now = times.isoformat(times.utcnow())
    record = _new_record(epoch, started=started_at or now)
    session[SEEN_KEY] = now
    session.glimpser_sign_in = (user_id, record)  # type: ignore[attr-defined]


def _new_record(epoch: int, started: str | None) -> dict:
    """A registry entry for this request's browser (device and address from the request)."""
    user_agent = request.headers.get("User-Agent", "")[:MAX_USER_AGENT]
    return {
        "epoch": epoch,
        "device": device_label(user_agent),
        "ua": user_agent,
        "ip": (request.remote_addr or "")[:MAX_ADDRESS],
        "started": started,
        "seen": times.isoformat(times.utcnow()),
    }


def restart_current(user_id: int) -> None:
    """Sign this browser in again as the user (after their session_epoch was bumped, which
    ended every session of theirs), with a fresh session id; it keeps its "started" time."""
    from flask_login import login_user

    from glimpser.models import User

    user = User.get_by_id(user_id)
    started = current_record(user_id).get("started")
    forget(user_id, session.sid)
    _interface().regenerate(session)
    session.permanent = True
    login_user(user)
    record_sign_in(user.id, user.session_epoch, started_at=started)


def current_record(user_id: int) -> dict:
    """The registry entry of this request's session ({} when it has none)."""
    raw = _interface().client.hget(REGISTRY_PREFIX + str(user_id), session.sid)
    return _decode(raw) if raw is not None else {}


def forget(user_id: int, sid: str) -> None:
    """Drop one session from the registry (its key is deleted by whoever ends it)."""
    _interface().client.hdel(REGISTRY_PREFIX + str(user_id), sid)


def list_sessions(epochs: dict[int, int]) -> list[SignedInSession]:
    """The live signed-in sessions of the users in `epochs` (user id -> current
    session_epoch), most recently seen first. Entries of ended or expired sessions, and of an
    older epoch, are removed from the registry (and their session keys deleted) on the way."""
    interface = _interface()
    client = interface.client
    user_ids = list(epochs)
    pipe = client.pipeline(transaction=False)
    for user_id in user_ids:
        pipe.hgetall(REGISTRY_PREFIX + str(user_id))
    entries: list[tuple[int, str, dict]] = []
    for user_id, found in zip(user_ids, pipe.execute(), strict=True):
        for raw_sid, raw in found.items():
            sid = raw_sid.decode() if isinstance(raw_sid, bytes) else raw_sid
            entries.append((user_id, sid, _decode(raw)))
    pipe = client.pipeline(transaction=False)
    for _user_id, sid, _record in entries:
        pipe.exists(interface._get_store_id(sid))
    alive = pipe.execute()
    current_sid = session.sid if session else None
    live: list[SignedInSession] = []
    stale = client.pipeline(transaction=False)
    for (user_id, sid, record), exists in zip(entries, alive, strict=True):
        if not exists or record.get("epoch") != epochs[user_id]:
            stale.hdel(REGISTRY_PREFIX + str(user_id), sid)
            stale.delete(interface._get_store_id(sid))
            continue
        live.append(
            SignedInSession(
                user_id=user_id,
                handle=handle_of(sid),
                fingerprint=fingerprint_of(sid),
                device=str(record.get("device") or "Unknown browser"),
                user_agent=str(record.get("ua") or ""),
                address=str(record.get("ip") or ""),
                started_at=_parse_time(record.get("started")),
                last_seen_at=_parse_time(record.get("seen")),
                current=sid == current_sid,
                sid=sid,
            )
        )
    if len(stale):
        stale.execute()
    oldest = datetime.min.replace(tzinfo=times.utcnow().tzinfo)
    live.sort(key=lambda s: (s.current, s.last_seen_at or oldest), reverse=True)
    return live


def find(sessions: list[SignedInSession], handle: str) -> SignedInSession | None:
    """The session with this handle among `sessions` (compared in constant time)."""
    for candidate in sessions:
        if hmac.compare_digest(candidate.handle.encode(), handle.encode()):
            return candidate
    return None


def end(target: SignedInSession) -> None:
    """End one session: delete its key (its browser is signed out on its next request)."""
    client = _interface().client
    pipe = client.pipeline(transaction=True)
    pipe.delete(_interface()._get_store_id(target.sid))
    pipe.hdel(REGISTRY_PREFIX + str(target.user_id), target.sid)
    pipe.execute()


def end_all(user_id: int, keep_sid: str | None = None) -> int:
    """End every registered session of the user except `keep_sid`; returns how many.

    Sessions the registry does not know (started before it existed) are ended by bumping the
    user's session_epoch, which the caller does first."""
    interface = _interface()
    key = REGISTRY_PREFIX + str(user_id)
    sids = [s.decode() if isinstance(s, bytes) else s for s in interface.client.hkeys(key)]
    doomed = [sid for sid in sids if sid != keep_sid]
    if not doomed:
        return 0
    pipe = interface.client.pipeline(transaction=True)
    pipe.delete(*(interface._get_store_id(sid) for sid in doomed))
    pipe.hdel(key, *doomed)
    pipe.execute()
    return len(doomed)
