"""Signed picture URLs (glimpser.web.pictures): nginx's secure_link scheme, issued only to
users who may see the stream, served without a session by the app and by a real nginx, and
dead after their expiry once access is taken away."""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import stat
import time
from pathlib import Path

import pytest
import requests

from glimpser.auth.users import create_user
from glimpser.config import ConfigError, load_settings
from glimpser.db import database
from glimpser.media.storage import get_storage
from glimpser.media.thumbnails import thumbnail_key
from glimpser.models import StreamAccess
from glimpser.web import pictures
from tests.conftest import make_env, start_live_server, stop_process
from tests.helpers import (
    add_snapshot,
    add_stream,
    free_port,
    login,
    pictures_nginx_block,
    run_cli,
    s3_presigned_settings,
    setup_admin,
    start_nginx,
)
from tests.media_servers import jpeg

PASSWORD = "correct horse battery"
SECRET_KEY = "test-secret-key-0123456789abcdef"  # tests/conftest.py make_env
PICTURE_URL = re.compile(r'"(/pictures/[^"]+)"')


def signed_urls(page: str) -> list[str]:
    return [html.unescape(u) for u in PICTURE_URL.findall(page)]


# --- the scheme ------------------------------------------------------------------------------


def test_the_signature_is_nginx_secure_link_md5_in_base64url_without_padding():
    secret = pictures.picture_secret(SECRET_KEY)
    uri = "/pictures/3/2026/12/03/101500.123456-0a1b2c3d4e5f.jpg"
    digest = hashlib.md5(f"1764756000{uri} {secret}".encode()).digest()  # noqa: S324 - nginx's
    expected = base64.b64encode(digest).decode().replace("+", "-").replace("/", "_").rstrip("=")
    assert pictures.signature(uri, 1764756000, secret) == expected
    assert len(expected) == 22 and "=" not in expected


def test_the_secret_is_derived_from_the_secret_key_and_is_not_the_key():
    one = pictures.picture_secret(SECRET_KEY)
    assert one == pictures.picture_secret(SECRET_KEY)
    assert one != pictures.picture_secret(SECRET_KEY + "x")
    assert SECRET_KEY not in one and len(one) == 64


def test_expiry_is_rounded_up_to_the_minute_so_urls_are_stable_across_polls():
    base = 60 * 16_666_666  # a whole minute
    issued = {pictures.expiry(base + s, 300) for s in range(1, 61)}
    assert issued == {base + 360}  # one URL for a whole minute of polls
    assert pictures.expiry(base, 300) == base + 300
    assert pictures.expiry(base + 61, 300) == base + 420


def test_check_answers_like_nginx_403_for_bad_410_for_expired():
    secret = pictures.picture_secret(SECRET_KEY)
    now = 1_000_000_000
    url = pictures.sign_path("/pictures/1/a.jpg", secret, 300, now)
    md5, expires = re.search(r"md5=([^&]+)&expires=(\d+)", url).groups()
    assert pictures.check("/pictures/1/a.jpg", md5, expires, secret, now) is None
    assert pictures.check("/pictures/1/a.jpg", md5, expires, secret, int(expires)) is None
    assert pictures.check("/pictures/1/a.jpg", md5, expires, secret, int(expires) + 1) == 410
    assert pictures.check("/pictures/2/a.jpg", md5, expires, secret, now) == 403
    assert pictures.check("/pictures/1/a.jpg", md5, str(int(expires) + 60), secret, now) == 403
    other = pictures.picture_secret("another key")
    assert pictures.check("/pictures/1/a.jpg", md5, expires, other, now) == 403
    malformed = [(None, expires), (md5, None), ("", ""), (md5, "-5"), (md5, "1e9")]
    malformed.append((md5, "\u0661\u0662"))  # digits, but not ASCII ones
    for bad_md5, bad_expires in malformed:
        assert pictures.check("/pictures/1/a.jpg", bad_md5, bad_expires, secret, now) == 403


def test_open_pages_renew_their_urls_before_they_expire(app_factory):
    # The wall and a stream's status answer 204 while unchanged; url_epoch is in their version,
    # so they re-render (with fresh URLs) while the URLs they hold still have a half lifetime.
    app = app_factory(GLIMPSER_SIGNED_PICTURES="1")
    lifetime = app.extensions["glimpser.settings"].signed_picture_lifetime
    with app.app_context():
        step = lifetime // 2
        for t in range(1_000_000_000, 1_000_000_000 + 2 * lifetime, 7):
            next_render = (pictures.url_epoch(t) + 1) * step  # the version changes then
            assert pictures.expiry(t, lifetime) - next_render >= step
        assert pictures.url_epoch(1_000_000_000) != pictures.url_epoch(1_000_000_000 + step)


def test_with_signed_pictures_off_the_versions_do_not_tick(app_factory):
    with app_factory().app_context():
        assert pictures.url_epoch(0) is None and pictures.url_epoch(10**9) is None


# --- the app ---------------------------------------------------------------------------------


@pytest.fixture
def signed_app(app_factory, database_url):
    """Signed pictures on, on SQLite and on PostgreSQL."""
    return app_factory(database_url, GLIMPSER_SIGNED_PICTURES="1")


def _viewer_with_stream(app):
    """An admin, a viewer granted 'Granted' (a 640×480 picture) but not 'Hidden'."""
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    granted, hidden = add_stream("Granted"), add_stream("Hidden")
    snap = add_snapshot(app, granted, jpeg((200, 30, 30), (640, 480)))
    hidden_snap = add_snapshot(app, hidden, jpeg((30, 30, 200), (640, 480)))
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=granted)
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    return admin, viewer, bob, granted, hidden, snap, hidden_snap


def test_pages_carry_signed_urls_that_work_without_a_session(signed_app):
    app = signed_app
    _admin, viewer, _bob, granted, _hidden, snap, _ = _viewer_with_stream(app)
    page = viewer.get(f"/streams/{granted.id}").get_data(as_text=True)
    urls = signed_urls(page)
    picture = next(u for u in urls if u.startswith(f"/pictures/{snap.storage_key}?"))
    thumb = next(u for u in urls if u.startswith(f"/pictures/{thumbnail_key(snap.storage_key)}?"))
    anonymous = app.test_client()  # no cookie at all: the signature is the only credential
    response = anonymous.get(picture)
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "image/jpeg"
    storage = get_storage(app.extensions["glimpser.settings"])
    assert response.data == storage.get(snap.storage_key)
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"].startswith("private, max-age=")
    # The thumbnail is made on first request (nginx would hand this one to the app).
    assert not storage.exists(thumbnail_key(snap.storage_key))
    response = anonymous.get(thumb)
    assert response.status_code == 200
    assert storage.exists(thumbnail_key(snap.storage_key))
    assert response.data == storage.get(thumbnail_key(snap.storage_key))
    # The camera wall carries them too.
    wall = viewer.get("/").get_data(as_text=True)
    assert any(
        u.startswith(f"/pictures/{thumbnail_key(snap.storage_key)}?") for u in signed_urls(wall)
    )


def test_no_signed_url_for_a_stream_the_user_may_not_see(signed_app):
    app = signed_app
    _admin, viewer, _bob, _granted, hidden, _snap, hidden_snap = _viewer_with_stream(app)
    with app.test_request_context("/"):
        from flask_login import login_user

        with database.connection_context():
            from glimpser.models import User

            login_user(User.get(User.username == "bob"))
            url = pictures.picture_url(hidden.id, hidden_snap)
    assert url == f"/streams/{hidden.id}/snapshots/{hidden_snap.id}.jpg"  # the checked route
    assert viewer.get(url).status_code == 404
    assert viewer.get(f"/streams/{hidden.id}").status_code == 404


def _issue(app, username: str, stream_id: int, snap, now: float) -> str:
    """What a page rendered for `username` at `now` puts in <img> for the snapshot."""
    from flask_login import login_user

    from glimpser.models import User

    with app.test_request_context("/"), database.connection_context():
        login_user(User.get(User.username == username))
        return pictures.picture_url(stream_id, snap, now=now)


def test_a_revoked_user_keeps_a_url_until_it_expires_and_not_after(signed_app):
    app = signed_app
    _admin, viewer, bob, granted, _hidden, snap, _ = _viewer_with_stream(app)
    lifetime = app.extensions["glimpser.settings"].signed_picture_lifetime
    now = time.time()
    fresh = _issue(app, "bob", granted.id, snap, now)
    # Issued as long ago as its lifetime and two buckets: the same URL, already expired.
    stale = _issue(app, "bob", granted.id, snap, now - lifetime - 2 * 60)
    assert fresh.startswith("/pictures/") and stale.startswith("/pictures/")
    with database.connection_context():
        StreamAccess.delete().where(StreamAccess.user == bob).execute()
    anonymous = app.test_client()
    # Access taken away: the URL issued before still works within its lifetime ...
    assert anonymous.get(fresh).status_code == 200
    # ... and not once it has expired (what `fresh` becomes at its expiry + 1 s).
    assert anonymous.get(stale).status_code == 410
    expires = int(re.search(r"expires=(\d+)", fresh).group(1))
    md5 = re.search(r"md5=([^&]+)", fresh).group(1)
    uri = fresh.split("?")[0]
    secret = pictures.picture_secret(SECRET_KEY)
    assert pictures.check(uri, md5, str(expires), secret, expires) is None
    assert pictures.check(uri, md5, str(expires), secret, expires + 1) == 410
    # No new URL is issued to the revoked user, and the pages are gone.
    assert not _issue(app, "bob", granted.id, snap, time.time()).startswith("/pictures/")
    assert viewer.get(f"/streams/{granted.id}").status_code == 404


def test_tampered_missing_or_malformed_signatures_are_403_never_500(signed_app):
    app = signed_app
    _admin, _viewer, _bob, granted, hidden, snap, hidden_snap = _viewer_with_stream(app)
    good = _issue(app, "bob", granted.id, snap, time.time())
    uri, query = good.split("?")
    client = app.test_client()
    hidden_uri = f"/pictures/{hidden_snap.storage_key}"
    for url in [
        uri,  # no signature
        f"{hidden_uri}?{query}",  # another stream's picture with this signature
        good.replace("md5=", "md5=A"),
        re.sub(r"expires=(\d+)", lambda m: f"expires={int(m.group(1)) + 60}", good),
        f"{uri}?md5=&expires=",
        f"{uri}?md5=x&expires=99999999999999999999",
        f"{uri}?md5=%00&expires=1",
        "/pictures/../secret_key?md5=x&expires=1",
        "/pictures/?md5=x&expires=1",
    ]:
        response = client.get(url)
        assert response.status_code in (400, 403, 404), (url, response.status_code)
        assert response.status_code != 200
    assert client.get(f"{uri}?md5=x&expires=1").status_code == 403
    assert client.post(good).status_code in (400, 401, 403, 405)


def test_a_validly_signed_but_unsafe_key_is_a_404(signed_app):
    app = signed_app
    setup_admin(app.test_client(), "alice", PASSWORD)
    secret = pictures.picture_secret(SECRET_KEY)
    for key in (".hidden/x.jpg", "a//b.jpg", "1/missing.jpg"):
        uri = f"/pictures/{key}"
        url = pictures.sign_path(uri, secret, 300, time.time())
        assert app.test_client().get(url).status_code == 404, key


def test_with_the_setting_off_pages_keep_the_authenticated_routes(app_factory):
    app = app_factory()
    _admin, viewer, _bob, granted, _hidden, snap, _ = _viewer_with_stream(app)
    page = viewer.get(f"/streams/{granted.id}").get_data(as_text=True)
    assert "/pictures/" not in page
    assert f"/streams/{granted.id}/snapshots/{snap.id}/thumb.jpg" in page
    # The signed route still checks signatures (a URL signed elsewhere is not refused for the
    # setting: only the pages stop issuing them).
    assert app.test_client().get(f"/pictures/{snap.storage_key}").status_code == 403


def test_on_s3_the_app_serves_signed_urls_from_the_bucket(app_factory, request):
    endpoint = request.getfixturevalue("moto_endpoint")  # moto's real server (test_storage.py)
    bucket = request.getfixturevalue("s3_bucket")
    app = app_factory(
        GLIMPSER_SIGNED_PICTURES="1",
        GLIMPSER_STORAGE="s3",
        GLIMPSER_S3_BUCKET=bucket,
        GLIMPSER_S3_ENDPOINT_URL=endpoint,
        GLIMPSER_S3_REGION="us-east-1",
    )
    _admin, viewer, _bob, granted, _hidden, snap, _ = _viewer_with_stream(app)
    urls = signed_urls(viewer.get(f"/streams/{granted.id}").get_data(as_text=True))
    picture = next(u for u in urls if u.startswith(f"/pictures/{snap.storage_key}?"))
    response = app.test_client().get(picture)
    assert response.status_code == 200
    assert response.data == get_storage(app.extensions["glimpser.settings"]).get(snap.storage_key)


from tests.test_storage import aws_env, moto_endpoint, s3_bucket  # noqa: E402, F401


def test_on_s3_with_presigned_pictures_the_browser_is_sent_to_the_bucket(app_factory, request):
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    app = app_factory(**s3_presigned_settings(endpoint, bucket))
    storage = get_storage(app.extensions["glimpser.settings"])
    _admin, viewer, _bob, granted, _hidden, snap, _ = _viewer_with_stream(app)
    page = viewer.get(f"/streams/{granted.id}")
    # Pages may show pictures from the bucket's endpoint, and from nowhere else new.
    assert f"img-src 'self' data: blob: {endpoint};" in page.headers["Content-Security-Policy"]
    urls = signed_urls(page.get_data(as_text=True))
    anonymous = app.test_client()
    for key in (snap.storage_key, thumbnail_key(snap.storage_key)):
        signed = next(u for u in urls if u.startswith(f"/pictures/{key}?"))
        response = anonymous.get(signed)
        assert response.status_code == 302, response.status_code
        location = response.headers["Location"]
        assert location.startswith(f"{endpoint}/{bucket}/") and "X-Amz-Signature=" in location
        assert response.headers["Cache-Control"].startswith("private, max-age=")
        # No credentials needed: the presigned URL is the permission (the thumbnail was made
        # before the redirect). moto does not check S3 signatures, so what is checked here is
        # that it is SigV4, names the object, and lives no longer than the page's URL.
        query = dict(part.split("=", 1) for part in location.split("?", 1)[1].split("&"))
        assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
        assert (
            0
            < int(query["X-Amz-Expires"])
            <= int(signed.rsplit("expires=", 1)[1]) - time.time() + 1
        )
        fetched = requests.get(location, timeout=30)
        assert fetched.status_code == 200
        assert fetched.content == storage.get(key)
    # The signature of the page's URL is still checked first.
    forged = f"/pictures/{snap.storage_key}?md5=x&expires=99999999999"
    assert anonymous.get(forged).status_code == 403


def test_presigned_pictures_need_s3_storage_and_signed_pictures():
    key = {"GLIMPSER_SECRET_KEY": "k" * 40, "GLIMPSER_S3_PRESIGNED_PICTURES": "1"}
    with pytest.raises(ConfigError, match="needs GLIMPSER_STORAGE=s3"):
        load_settings({**key, "GLIMPSER_SIGNED_PICTURES": "1"})
    s3 = {"GLIMPSER_STORAGE": "s3", "GLIMPSER_S3_BUCKET": "b"}
    with pytest.raises(ConfigError, match="needs GLIMPSER_SIGNED_PICTURES=1"):
        load_settings({**key, **s3})
    assert load_settings({**key, **s3, "GLIMPSER_SIGNED_PICTURES": "1"}).s3_presigned_pictures


# --- the command -----------------------------------------------------------------------------


def test_the_command_prints_the_secret_and_writes_a_private_nginx_include(
    tmp_path: Path, redis_url
):
    env = {**os.environ, **make_env(tmp_path / "data", redis_url)}
    result = run_cli(["picture-url-secret"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == pictures.picture_secret(SECRET_KEY)
    include = tmp_path / "glimpser-pictures.conf"
    result = run_cli(["picture-url-secret", "--nginx-include", str(include)], env)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(include.stat().st_mode) == 0o600
    text = include.read_text()
    assert "secure_link $arg_md5,$arg_expires;" in text
    assert (
        f'secure_link_md5 "$secure_link_expires$uri {pictures.picture_secret(SECRET_KEY)}";' in text
    )


# --- a real nginx in front of gunicorn -----------------------------------------------------


NGINX_HTTP = """
    access_log {tmp}/access.log;
    upstream glimpser {{ server 127.0.0.1:{app_port}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://glimpser; }}
{pictures}
    }}
"""


@pytest.mark.slow
def test_nginx_serves_signed_urls_itself_and_refuses_tampered_and_expired(
    tmp_path: Path, redis_url: str, redis_client
):
    data_dir = tmp_path / "data"
    env = make_env(data_dir, redis_url, GLIMPSER_SIGNED_PICTURES="1")
    settings = load_settings(env)
    from glimpser import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    setup_admin(app.test_client(), "alice", PASSWORD)
    stream = add_stream("Garden")
    snap = add_snapshot(app, stream, jpeg((10, 120, 10), (640, 480)))
    server = start_live_server(data_dir, redis_url, GLIMPSER_SIGNED_PICTURES="1")
    nginx = None
    try:
        include = tmp_path / "glimpser-pictures.conf"
        result = run_cli(["picture-url-secret", "--nginx-include", str(include)], server.env)
        assert result.returncode == 0, result.stderr
        port = free_port()
        http = NGINX_HTTP.format(
            tmp=tmp_path,
            app_port=server.url.rsplit(":", 1)[1],
            port=port,
            pictures=pictures_nginx_block(include, settings.snapshot_dir),
        )
        base = f"http://127.0.0.1:{port}"
        # nginx -t checks docs/deploy.md's block first; start_nginx fails with its words.
        nginx = start_nginx(tmp_path, http, base + "/healthz", worker_connections=256)

        secret = pictures.picture_secret(settings.secret_key)
        now = time.time()
        good = pictures.sign_path(f"/pictures/{snap.storage_key}", secret, 300, now)
        expired = pictures.sign_path(f"/pictures/{snap.storage_key}", secret, 300, now - 600)
        thumb = pictures.sign_path(f"/pictures/{thumbnail_key(snap.storage_key)}", secret, 300, now)
        original = (settings.snapshot_dir / snap.storage_key).read_bytes()

        # A thumbnail not made yet: nginx finds no file and hands the URL to Glimpser.
        response = requests.get(base + thumb, timeout=30)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
        assert (settings.snapshot_dir / thumbnail_key(snap.storage_key)).exists()

        tampered = requests.get(base + good.replace("md5=", "md5=A"), timeout=30)
        assert tampered.status_code == 403 and "nginx" in tampered.text
        too_late = requests.get(base + expired, timeout=30)
        assert too_late.status_code == 410 and "nginx" in too_late.text

        # Glimpser stopped: a signed picture still comes, so nginx sent it with no Python.
        stop_process(server.proc)
        assert requests.get(base + "/healthz", timeout=30).status_code == 502
        response = requests.get(base + good, timeout=30)
        assert response.status_code == 200
        assert response.content == original
        assert response.headers["Cache-Control"] == "private, max-age=300"
        assert requests.get(base + thumb, timeout=30).status_code == 200  # made before: a file
        assert requests.get(base + f"/pictures/{snap.storage_key}", timeout=30).status_code == 403
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=30)
        stop_process(server.proc)
