"""The CAP 1.2 messages on the web: an Atom feed and each alert's XML.

- /cap/alerts.atom: Atom 1.0, the latest FEED_SIZE messages, newest first; each entry links
  (rel="alternate", type="application/cap+xml") to its alert.
- /cap/alerts/<id>.xml: the stored CAP XML exactly as it was issued (the bytes a receiver got),
  served as application/cap+xml.

Access: like every page, a signed-in user; a viewer sees only messages of events of streams
granted to them (system-wide events, with no stream, are for admins), and a guessed id answers
404. With GLIMPSER_CAP_FEED_PUBLIC=1 the admin has chosen a public warning feed: both URLs are
open to anyone and show every message (see auth/policy.py PUBLIC_IF_SETTING, docs/cap.md).
"""

from __future__ import annotations

import uuid

import peewee
from flask import Blueprint, Response, abort, url_for
from flask_login import current_user
from lxml import etree

from glimpser import times
from glimpser.auth.access import visible_streams
from glimpser.config import Settings
from glimpser.models import CapMessage, Event, Stream
from glimpser.notify.cap import CAP_CONTENT_TYPE, CAP_NS, alert_head, cap_sender, cap_time
from glimpser.web.app_settings import current_settings

bp = Blueprint("cap", __name__, url_prefix="/cap")

ATOM_NS = "http://www.w3.org/2005/Atom"
ATOM_CONTENT_TYPE = "application/atom+xml"
FEED_SIZE = 50
TITLE_PREFIX = {"Alert": "", "Update": "Update: ", "Cancel": "Cancelled: "}


def _settings() -> Settings:
    return current_settings()


def _visible_messages() -> peewee.ModelSelect:
    """The CAP messages this request may see (everything when the feed is public)."""
    query = CapMessage.select(CapMessage).join(Event)
    if _settings().cap_feed_public or getattr(current_user, "is_admin", False):
        return query
    if not current_user.is_authenticated:  # the policy lets nobody else get here
        abort(401)
    return query.where(Event.stream.in_(visible_streams().select(Stream.id)))


def _absolute(endpoint: str, **values: object) -> str:
    """An absolute URL: under GLIMPSER_PUBLIC_URL when set, else as this request reached us."""
    public_url = _settings().public_url
    if public_url:
        return public_url.rstrip("/") + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


def _atom(parent: etree._Element, name: str, text: str | None = None, **attrs: str):
    element = etree.SubElement(parent, f"{{{ATOM_NS}}}{name}", attrs)
    if text is not None:
        element.text = text
    return element


def _summary_of(xml: str) -> tuple[str, str, str]:
    """(sender, headline, description) of a stored alert."""
    root = alert_head(xml)
    info = root.find(f"{{{CAP_NS}}}info")
    headline = description = ""
    if info is not None:
        headline = info.findtext(f"{{{CAP_NS}}}headline") or ""
        description = info.findtext(f"{{{CAP_NS}}}description") or ""
    return root.findtext(f"{{{CAP_NS}}}sender") or "", headline, description


def _entry_id(identifier: str) -> str:
    """A permanent Atom id (an IRI) for a CAP identifier, which is not one itself."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"urn:glimpser:cap:{identifier}").urn


@bp.get("/alerts.atom")
def feed() -> Response:
    """The latest CAP messages the requester may see, as Atom 1.0."""
    settings = _settings()
    messages = list(
        _visible_messages()
        .order_by(CapMessage.sent_at.desc(), CapMessage.id.desc())
        .limit(FEED_SIZE)
    )
    root = etree.Element(f"{{{ATOM_NS}}}feed", nsmap={None: ATOM_NS})
    self_url = _absolute("cap.feed")
    _atom(root, "id", uuid.uuid5(uuid.NAMESPACE_URL, f"urn:glimpser:cap-feed:{self_url}").urn)
    _atom(root, "title", "Glimpser CAP alerts")
    newest = messages[0].sent_at if messages else times.utcnow()
    _atom(root, "updated", cap_time(newest))
    author = _atom(root, "author")
    _atom(author, "name", cap_sender(settings))
    _atom(root, "generator", "Glimpser")
    _atom(root, "link", rel="self", type=ATOM_CONTENT_TYPE, href=self_url)
    for message in messages:
        sender, headline, description = _summary_of(message.xml)
        sent = cap_time(message.sent_at)
        entry = _atom(root, "entry")
        _atom(entry, "id", _entry_id(message.identifier))
        _atom(entry, "title", TITLE_PREFIX.get(message.msg_type, "") + headline)
        _atom(entry, "updated", sent)
        _atom(entry, "published", sent)
        entry_author = _atom(entry, "author")
        _atom(entry_author, "name", sender)
        _atom(entry, "summary", description)
        _atom(entry, "category", term=message.msg_type)
        _atom(
            entry,
            "link",
            rel="alternate",
            type=CAP_CONTENT_TYPE,
            href=_absolute("cap.alert", message_id=message.id),
        )
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    response = Response(body, content_type=f"{ATOM_CONTENT_TYPE}; charset=utf-8")
    response.headers["Cache-Control"] = (
        "no-cache" if settings.cap_feed_public else "private, no-cache"
    )
    return response


@bp.get("/alerts/<int:message_id>.xml")
def alert(message_id: int) -> Response:
    """One stored CAP message; 404 when it does not exist or its stream is not visible."""
    message = _visible_messages().where(CapMessage.id == message_id).first()
    if message is None:
        abort(404)
    response = Response(
        message.xml.encode("utf-8"), content_type=f"{CAP_CONTENT_TYPE}; charset=utf-8"
    )
    response.headers["Cache-Control"] = (
        "no-cache" if _settings().cap_feed_public else "private, no-cache"
    )
    return response
