"""The "new API key" form shared by Profile → API keys and Admin → API keys.

The form posts `name`, `scopes` (checkboxes of glimpser.auth.api_keys.SCOPES), `stream_ids`
(a multi-select; none chosen = every stream the user sees) and `expires_days` (blank = never).
`read_form()` turns it into the arguments of `api_keys.create_key()`, or into field errors
(the page is then shown again with them, 422, and nothing is created). The checks are the
form's; create_key() checks again what it must (scopes, role, expiry range, name length).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import request, url_for
from werkzeug.routing import BuildError

from glimpser.auth import api_keys
from glimpser.auth.access import visible_streams
from glimpser.models import ApiKey, Stream, User
from glimpser.web.params import parse_ids, parse_int

# More choices than anyone has streams; keeps a hand-made form's query bounded.
MAX_CHOICES = 5000


@dataclass
class KeyForm:
    """What the form said (to show it again) and what is wrong with it."""

    name: str = ""
    scopes: list[str] = field(default_factory=lambda: ["read"])
    stream_ids: list[int] = field(default_factory=list)
    expires_days: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def expiry(self) -> int | None:
        return int(self.expires_days) if self.expires_days else None


def offered_scopes(user: User) -> dict[str, str]:
    """The scopes the form offers for `user`'s key, with their labels (`admin` and `metrics`
    to admins only)."""
    return {
        scope: label
        for scope, label in api_keys.SCOPE_LABELS.items()
        if scope not in api_keys.ADMIN_SCOPES or user.is_admin
    }


def streams_for(user: User) -> list[Stream]:
    """The streams `user` sees, by name: what a key of theirs may be limited to."""
    return list(visible_streams(user).select(Stream.id, Stream.name).order_by(Stream.name))


def api_docs_url() -> str | None:
    """The API docs page, when this install has one."""
    try:
        return url_for("api_docs.index")
    except BuildError:
        return None


def read_form(user: User) -> KeyForm:
    """The posted form for a key of `user`, with an error per field that is not valid."""
    form = KeyForm(scopes=[], expires_days=request.form.get("expires_days", "").strip()[:40])
    raw_name = request.form.get("name", "")
    form.name = raw_name.strip()[: api_keys.MAX_NAME_CHARS * 2]
    if len(raw_name.strip()) > api_keys.MAX_NAME_CHARS:
        form.errors["name"] = f"Use at most {api_keys.MAX_NAME_CHARS} characters."
    elif any(not ch.isprintable() for ch in raw_name.strip()):
        form.errors["name"] = "Use letters, digits, spaces and punctuation only."

    raw_scopes = request.form.getlist("scopes")
    offered = offered_scopes(user)
    form.scopes = [s for s in api_keys.SCOPES if s in raw_scopes]
    if not raw_scopes:
        form.errors["scopes"] = "Choose at least one scope."
    elif len(raw_scopes) > len(api_keys.SCOPES) or not set(raw_scopes) <= set(api_keys.SCOPES):
        form.errors["scopes"] = f"Choose scopes among: {', '.join(offered)}."
    elif any(s not in offered for s in raw_scopes):
        form.errors["scopes"] = "Only an admin's key may have the admin or metrics scope."

    raw_ids = [raw for raw in request.form.getlist("stream_ids") if raw != ""]
    ids = parse_ids(raw_ids) if len(raw_ids) <= MAX_CHOICES else None
    if ids is None:
        form.errors["stream_ids"] = "A chosen stream does not exist; reload the page."
    elif ids:
        seen = {s.id for s in visible_streams(user).where(Stream.id.in_(ids)).select(Stream.id)}
        form.stream_ids = [i for i in ids if i in seen]
        if len(seen) != len(ids):
            form.errors["stream_ids"] = (
                f"A chosen stream does not exist or {user.username} cannot see it."
            )

    if form.expires_days:
        days = parse_int(form.expires_days, minimum=1, maximum=api_keys.MAX_EXPIRY_DAYS)
        if days is None:
            form.errors["expires_days"] = (
                f"Give a whole number of days from 1 to {api_keys.MAX_EXPIRY_DAYS}, "
                "or leave it empty for a key that does not expire."
            )
        else:
            form.expires_days = str(days)
    return form


def create_from(form: KeyForm, user: User, actor: User) -> api_keys.NewKey | None:
    """Make the key the valid form describes (audited); None, with the reason in
    form.errors, when create_key refuses it."""
    try:
        return api_keys.create_key(
            user,
            form.scopes,
            name=form.name,
            expires_days=form.expiry,
            stream_ids=form.stream_ids or None,
            actor=actor,
            ip=request.remote_addr or "",
        )
    except api_keys.ApiKeyError as exc:
        form.errors["form"] = str(exc)
        return None


@dataclass
class KeyRow:
    """One key as the lists show it."""

    key: ApiKey
    state: str
    streams: list[str] | None  # None: every stream its user sees


def rows(keys: list[ApiKey]) -> list[KeyRow]:
    """The keys with their state and the names of the streams they are limited to."""
    wanted = {i for k in keys for i in (k.stream_ids or [])}
    names = (
        dict(Stream.select(Stream.id, Stream.name).where(Stream.id.in_(list(wanted))).tuples())
        if wanted
        else {}
    )
    out = []
    for key in keys:
        streams = None
        if key.stream_ids is not None:
            streams = [names.get(i, f"deleted stream #{i}") for i in key.stream_ids]
        out.append(KeyRow(key=key, state=api_keys.state(key), streams=streams))
    return out
