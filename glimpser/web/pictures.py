"""Signed picture URLs: pictures served without a session or a database query per picture.

Serving a snapshot through the authenticated routes costs a session read (Redis), the user and
an access-checked snapshot query per picture, which keeps gunicorn at about 1 % of nginx's rate
on the same file (docs/benchmarks.md). With GLIMPSER_SIGNED_PICTURES on, pages carry
``/pictures/<storage key>?md5=…&expires=…`` instead: the page that renders the URL has already
checked the user's access to the stream, and the signature proves the URL came from such a page.

The signature is nginx's ``secure_link`` scheme, so nginx can check it and send the file itself
(docs/deploy.md, "Pictures served by nginx"):

    md5 = base64url(MD5(f"{expires}{uri} {secret}")) without padding

where ``secret`` is derived from GLIMPSER_SECRET_KEY (an HMAC with a label, so the key itself
never goes into nginx's configuration; ``glimpser picture-url-secret`` prints it). Expiry is
rounded up to the next minute, so every URL a page renders within one minute is the same
(cache-friendly, stable across htmx polls). A user who loses access to a stream keeps working
URLs only until they expire: at most lifetime + one minute.

Without nginx the app answers the same URLs here (``pictures.picture``): signature and expiry
only, no session, no user, no database (except once, to make a thumbnail the analysis job has
not made yet). With S3 storage the app sends the bytes from the bucket on this same cheap path.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import os
import time
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    request,
    send_file,
    url_for,
)
from flask_login import current_user
from PIL import Image

from glimpser.config import Settings
from glimpser.db import database
from glimpser.media import thumbnails
from glimpser.media.storage import (
    ObjectNotFound,
    Storage,
    StorageError,
    get_storage,
    validate_key,
)
from glimpser.models import Snapshot
from glimpser.web.app_settings import current_settings

log = logging.getLogger(__name__)

bp = Blueprint("pictures", __name__, url_prefix="/pictures")

# The label of the HMAC that derives the picture secret from GLIMPSER_SECRET_KEY: changing it
# (or the key) invalidates every issued URL and nginx's configured secret.
_SECRET_LABEL = b"glimpser signed picture URLs v1"
EXPIRY_BUCKET_SECONDS = 60


@functools.lru_cache(maxsize=4)
def picture_secret(secret_key: str) -> str:
    """The secret picture URLs are signed with: an HMAC of a fixed label under the install's
    secret key, so nginx's configuration never holds the key that signs sessions."""
    return hmac.new(secret_key.encode(), _SECRET_LABEL, hashlib.sha256).hexdigest()


def expiry(now: float, lifetime: int, bucket: int = EXPIRY_BUCKET_SECONDS) -> int:
    """When a URL issued at `now` expires: `lifetime` seconds later, rounded up to the next
    `bucket` so URLs issued within one bucket are identical."""
    return -(-int(now + lifetime) // bucket) * bucket


def signature(uri: str, expires: int, secret: str) -> str:
    """nginx secure_link's value for `uri` (the path, no query) and `expires` (Unix time)."""
    digest = hashlib.md5(f"{expires}{uri} {secret}".encode(), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_path(uri: str, secret: str, lifetime: int, now: float) -> str:
    """`uri` with its md5 and expires arguments appended."""
    expires = expiry(now, lifetime)
    return f"{uri}?md5={signature(uri, expires, secret)}&expires={expires}"


def check(uri: str, md5: str | None, expires: str | None, secret: str, now: float) -> int | None:
    """None when the URL is valid at `now`; else the status nginx would answer: 403 for a
    missing or wrong signature, 410 for a correct one that has expired (nginx: `expires < now`).
    """
    if not md5 or not expires or not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        return 403
    if not hmac.compare_digest(md5.encode(), signature(uri, int(expires), secret).encode()):
        return 403
    if int(expires) < now:
        return 410
    return None


def picture_key(snapshot: object, thumb: bool) -> str:
    """The storage key a page shows for `snapshot`: its thumbnail's (which may not be made
    yet: the app makes it on first request) or, for pictures no wider than a thumbnail and for
    full pictures, its own."""
    key = snapshot.storage_key  # type: ignore[attr-defined]
    if thumb and (getattr(snapshot, "width", None) or 0) > thumbnails.THUMB_WIDTH:
        return thumbnails.thumbnail_key(key)
    return key


def _visible_stream_ids() -> frozenset[int] | None:
    """The streams this request's user may see, once per request (None: all, for admins)."""
    if "_picture_streams" not in g:
        from glimpser.auth.access import visible_streams
        from glimpser.models import Stream

        if not current_user.is_authenticated:
            g._picture_streams = frozenset()
        elif current_user.is_admin:
            g._picture_streams = None
        else:
            g._picture_streams = frozenset(s.id for s in visible_streams().select(Stream.id))
    return g._picture_streams


def picture_url(
    stream_id: int, snapshot: object, thumb: bool = False, now: float | None = None
) -> str:
    """The URL a page puts in <img> for a snapshot (a template global).

    With GLIMPSER_SIGNED_PICTURES off, or for a stream the user may not see, it is the
    authenticated route as before; otherwise a signed URL, issued only to a user who may see
    the stream, valid GLIMPSER_SIGNED_PICTURE_LIFETIME seconds (rounded up to the minute)."""
    settings = current_settings()
    endpoint = "streams.snapshot_thumbnail" if thumb else "streams.snapshot_image"
    plain = url_for(endpoint, stream_id=stream_id, snapshot_id=snapshot.id)  # type: ignore[attr-defined]
    if not settings.signed_pictures or not getattr(snapshot, "storage_key", None):
        return plain
    visible = _visible_stream_ids()
    if visible is not None and stream_id not in visible:
        return plain
    uri = url_for("pictures.picture", key=picture_key(snapshot, thumb))
    return sign_path(
        uri,
        picture_secret(settings.secret_key),
        settings.signed_picture_lifetime,
        time.time() if now is None else now,
    )


def url_epoch(now: float | None = None) -> int | None:
    """A number that changes every half lifetime while signed pictures are on (None when off).

    Self-refreshing blocks (the wall, a stream's status) answer 204 while their data is
    unchanged, so the URLs in an open page would otherwise outlive their expiry; with this in
    their version they re-render every half lifetime and always hold URLs valid for at least
    that long more."""
    settings = current_settings()
    if not settings.signed_pictures:
        return None
    step = max(EXPIRY_BUCKET_SECONDS, settings.signed_picture_lifetime // 2)
    return int(time.time() if now is None else now) // step


def install(app: object) -> None:
    """Make `picture_url` available to every template."""
    app.add_template_global(picture_url, "picture_url")  # type: ignore[attr-defined]


def redirect_origin(settings: Settings) -> str | None:
    """The origin (scheme://host[:port]) signed picture URLs redirect browsers to, for the
    Content-Security-Policy's img-src: the S3 endpoint with GLIMPSER_S3_PRESIGNED_PICTURES on,
    else None. Presigning is computed locally, so this makes no request."""
    if not (settings.signed_pictures and settings.s3_presigned_pictures):
        return None
    try:
        url = get_storage(settings).presigned_get("origin-probe.jpg", 60)  # type: ignore[attr-defined]
    except StorageError as exc:
        log.warning("S3 presigned pictures unavailable", extra={"error": str(exc)})
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def stored_body(key: str, content_type: str, settings: Settings) -> Response:
    """A response carrying a stored picture: handed to nginx (X-Accel-Redirect), sent from
    local storage (sendfile, Last-Modified), or the bytes from object storage. Raises
    ObjectNotFound when it is not stored; a storage that fails is a 503."""
    if settings.accel_redirect_prefix:
        response = current_app.response_class(mimetype=content_type)
        response.headers["X-Accel-Redirect"] = settings.accel_redirect_prefix + key
        return response
    storage = get_storage(settings)
    path = storage.local_path(key)
    try:
        if path is not None:
            return send_file(path, mimetype=content_type, conditional=True, etag=False)
        return current_app.response_class(storage.get(key), mimetype=content_type)
    except ObjectNotFound:
        raise
    except FileNotFoundError:
        raise ObjectNotFound(key) from None
    except (OSError, StorageError) as exc:
        log.warning("picture not readable", extra={"key": key, "error": str(exc)})
        abort(503)


def thumbnail_or_original(snapshot: Snapshot, storage: Storage) -> str:
    """The key to show for a snapshot's thumbnail, made now if no job made it yet; the
    original's when the picture cannot be decoded. 404 when the snapshot's picture is gone,
    503 when the thumbnail cannot be stored."""
    try:
        return thumbnails.ensure_thumbnail(snapshot, storage)
    except ObjectNotFound:
        abort(404)
    except StorageError as exc:
        log.warning("thumbnail not stored", extra={"snapshot_id": snapshot.id, "error": str(exc)})
        abort(503)
    except (OSError, Image.DecompressionBombError) as exc:  # undecodable: show the original
        log.warning("thumbnail not made", extra={"snapshot_id": snapshot.id, "error": str(exc)})
        return snapshot.storage_key


def _make_thumbnail(key: str, settings: Settings) -> str:
    """A thumbnail that is not stored yet, made for its snapshot (the one query here)."""
    original = key[: -len(thumbnails.THUMB_SUFFIX)] + ".jpg"
    with database.connection_context():
        snapshot = Snapshot.get_or_none(Snapshot.storage_key == original)
        if snapshot is None:
            abort(404)
        return thumbnail_or_original(snapshot, get_storage(settings))


def _presigned(key: str, settings: Settings, seconds: int) -> Response:
    """A redirect to the bucket: the browser fetches the bytes itself."""
    try:
        location = get_storage(settings).presigned_get(key, seconds)  # type: ignore[attr-defined]
    except StorageError as exc:
        log.warning("picture not presigned", extra={"key": key, "error": str(exc)})
        abort(503)
    return redirect(location, 302)


@bp.get("/<path:key>")
def picture(key: str):
    """A picture by its storage key, for whoever holds a valid, unexpired signed URL."""
    settings = current_settings()
    now = time.time()
    uri = request.script_root + request.path
    status = check(
        uri,
        request.args.get("md5"),
        request.args.get("expires"),
        picture_secret(settings.secret_key),
        now,
    )
    if status is not None:
        abort(status)
    try:
        validate_key(key)
    except StorageError:
        abort(404)
    lifetime = max(0, int(request.args["expires"]) - int(now))
    thumb = key.endswith(thumbnails.THUMB_SUFFIX)
    if settings.s3_presigned_pictures or settings.accel_redirect_prefix:
        # Someone else reads the bytes: a thumbnail not made yet must be made first.
        if thumb and not _stored(key, settings):
            key = _make_thumbnail(key, settings)
        if settings.s3_presigned_pictures:
            response = _presigned(key, settings, lifetime)
        else:
            response = stored_body(key, "image/jpeg", settings)
    else:
        try:
            response = stored_body(key, "image/jpeg", settings)
        except ObjectNotFound:
            if not thumb:
                abort(404)
            try:  # a thumbnail no job has made yet
                response = stored_body(_make_thumbnail(key, settings), "image/jpeg", settings)
            except ObjectNotFound:
                abort(404)
    # The URL changes at the latest when it expires; the bytes under a key never change.
    response.headers["Cache-Control"] = f"private, max-age={lifetime}"
    return response


def _stored(key: str, settings: Settings) -> bool:
    try:
        return get_storage(settings).exists(key)
    except StorageError as exc:
        log.warning("picture not readable", extra={"key": key, "error": str(exc)})
        abort(503)


def write_nginx_include(path: str, secret: str) -> None:
    """Write the two secure_link lines nginx needs, readable by the owner only (0600): the
    file holds the picture secret."""
    body = (
        "# Written by `glimpser picture-url-secret --nginx-include`; holds a secret (mode 0600).\n"
        "secure_link $arg_md5,$arg_expires;\n"
        f'secure_link_md5 "$secure_link_expires$uri {secret}";\n'
    )
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, body.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
