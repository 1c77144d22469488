"""Write-only secrets stay with their destination and out of Redis and the logs.

A stored camera password (or channel secret) is kept for a blank form field only while the
URL points at the same origin; a test capture passes the stream id and sealed typed secrets to
the worker, never the password itself.
"""

from __future__ import annotations

import logging
import re

import pytest

from glimpser.db import database
from glimpser.models import NotificationChannel, Stream
from tests.conftest import run_queued_jobs
from tests.helpers import csrf_from, form_post, setup_admin
from tests.media_servers import CAMERA_PASSWORD, CAMERA_USER, jpeg, start_camera_server

PASSWORD = "correct horse battery"


@pytest.fixture
def admin(capture_app):
    client = capture_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


@pytest.fixture
def other_camera():
    server, state = start_camera_server()
    server.state = state
    yield server
    server.stop()


def _saved_camera(admin, camera) -> Stream:
    response = form_post(
        admin,
        "/streams/new",
        "/streams/new",
        data={
            "enabled": "1",
            "kind": "http_image",
            "name": "Door",
            "interval": "3600",
            "config.url": f"{camera.url}/basic.jpg",
            "config.auth": "basic",
            "config.username": CAMERA_USER,
            "config.password": CAMERA_PASSWORD,
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    with database.connection_context():
        stream = Stream.get(Stream.name == "Door")
    assert stream.config["password"] == CAMERA_PASSWORD
    return stream


def _test_capture(admin, data: dict[str, str]):
    token = csrf_from(admin.get("/streams/new").get_data(as_text=True))
    return admin.post("/streams/test-capture", headers={"X-CSRFToken": token}, data=data)


def _redis_holds(redis_client, text: str) -> list[str]:
    """Every Redis key whose value (string, hash, list, set, zset) contains `text`."""
    found = []
    needle = text.encode()
    for key in redis_client.scan_iter(count=1000):
        kind = redis_client.type(key).decode()
        if kind == "string":
            values = [redis_client.get(key) or b""]
        elif kind == "hash":
            values = [v for pair in redis_client.hgetall(key).items() for v in pair]
        elif kind == "list":
            values = redis_client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(redis_client.smembers(key))
        elif kind == "zset":
            values = redis_client.zrange(key, 0, -1)
        else:
            values = []
        if any(needle in v for v in values):
            found.append(key.decode())
    return found


def test_test_capture_of_a_saved_stream_puts_no_password_in_redis_or_logs(
    admin, capture_app, camera, redis_client, caplog
):
    stream = _saved_camera(admin, camera)
    camera.state.picture = jpeg((0, 90, 0), label="door")
    caplog.set_level(logging.DEBUG)
    started = _test_capture(
        admin,
        {
            "stream_id": str(stream.id),
            "kind": "http_image",
            "name": "Door",
            "config.url": f"{camera.url}/basic.jpg",
            "config.auth": "basic",
            "config.username": CAMERA_USER,
            "config.password": "",  # blank: keep the stored one
        },
    )
    assert started.status_code == 200, started.get_data(as_text=True)
    assert _redis_holds(redis_client, CAMERA_PASSWORD) == []
    poll = re.search(r'hx-get="([^"]+)"', started.get_data(as_text=True)).group(1)
    run_queued_jobs(capture_app)
    done = admin.get(poll).get_data(as_text=True)
    assert "data:image/jpeg;base64," in done, done  # the stored password was used
    assert _redis_holds(redis_client, CAMERA_PASSWORD) == []
    assert CAMERA_PASSWORD not in caplog.text


def test_a_typed_password_reaches_the_worker_sealed(admin, capture_app, camera, redis_client):
    typed = "typed-" + CAMERA_PASSWORD
    started = _test_capture(
        admin,
        {
            "kind": "http_image",
            "config.url": f"{camera.url}/basic.jpg",
            "config.auth": "basic",
            "config.username": CAMERA_USER,
            "config.password": typed,
        },
    )
    assert started.status_code == 200
    assert _redis_holds(redis_client, typed) == []
    poll = re.search(r'hx-get="([^"]+)"', started.get_data(as_text=True)).group(1)
    run_queued_jobs(capture_app)
    # The camera wants CAMERA_PASSWORD: a 401 proves the typed one was the one sent.
    assert "HTTP 401" in admin.get(poll).get_data(as_text=True)


def test_test_capture_to_a_new_host_needs_the_password_again(
    admin, capture_app, camera, other_camera
):
    stream = _saved_camera(admin, camera)
    response = _test_capture(
        admin,
        {
            "stream_id": str(stream.id),
            "kind": "http_image",
            "config.url": f"{other_camera.url}/basic.jpg",
            "config.auth": "basic",
            "config.username": CAMERA_USER,
            "config.password": "",
        },
    )
    assert response.status_code == 422
    assert "enter this again" in response.get_data(as_text=True)
    run_queued_jobs(capture_app)
    assert other_camera.state.requests == []


def test_the_worker_itself_keeps_stored_secrets_to_their_origin(capture_app, camera, other_camera):
    """Even a job that names a saved stream and another host gets no stored password."""
    from glimpser import jobs
    from glimpser.models import Stream as StreamModel

    with database.connection_context():
        stream = StreamModel.create(
            name="Door",
            kind="http_image",
            config={
                "kind": "http_image",
                "url": f"{camera.url}/basic.jpg",
                "auth": "basic",
                "username": CAMERA_USER,
                "password": CAMERA_PASSWORD,
                "timeout": 10,
            },
        )
        public = {
            "kind": "http_image",
            "url": f"{other_camera.url}/basic.jpg",
            "auth": "basic",
            "username": CAMERA_USER,
            "timeout": 10,
        }
    result = jobs.test_capture(public, stream.id, "")
    assert result["ok"] is False and "401" in result["error"]
    same = {**public, "url": f"{camera.url}/basic.jpg"}
    assert jobs.test_capture(same, stream.id, "")["ok"] is True


def test_saving_a_stream_with_a_new_host_needs_the_password_again(admin, camera, other_camera):
    stream = _saved_camera(admin, camera)
    edit = f"/streams/{stream.id}/edit"
    fields = {
        "enabled": "1",
        "kind": "http_image",
        "name": "Door",
        "interval": "3600",
        "config.auth": "basic",
        "config.username": CAMERA_USER,
        "config.password": "",
    }
    moved = form_post(admin, edit, edit, data={**fields, "config.url": f"{other_camera.url}/x.jpg"})
    assert moved.status_code == 422
    assert "enter this again" in moved.get_data(as_text=True)
    with database.connection_context():
        assert Stream.get_by_id(stream.id).config["url"] == f"{camera.url}/basic.jpg"
    # Another path on the same origin keeps it.
    same = form_post(admin, edit, edit, data={**fields, "config.url": f"{camera.url}/digest.jpg"})
    assert same.status_code == 302
    with database.connection_context():
        assert Stream.get_by_id(stream.id).config["password"] == CAMERA_PASSWORD
    # A new host with the password typed again is fine.
    typed = {**fields, "config.url": f"{other_camera.url}/x.jpg", "config.password": "new-pw"}
    assert form_post(admin, edit, edit, data=typed).status_code == 302
    with database.connection_context():
        assert Stream.get_by_id(stream.id).config["password"] == "new-pw"


def test_a_channel_pointed_elsewhere_needs_its_secrets_again(admin):
    fields = {
        "name": "Hook",
        "kind": "webhook",
        "enabled": "1",
        "min_severity": "info",
        "config.url": "https://hooks.example.com/glimpser",
        "config.method": "POST",
        "config.authorization": "Bearer tok-SECRET-auth",
        "config.timeout": "5",
    }
    new = "/admin/channels/new"
    assert form_post(admin, "/admin/channels/", new, data=fields).status_code == 302
    with database.connection_context():
        channel = NotificationChannel.get(NotificationChannel.name == "Hook")
    edit = f"/admin/channels/{channel.id}/edit"
    blank = {**fields, "config.authorization": ""}
    moved = form_post(admin, edit, edit, data={**blank, "config.url": "https://evil.example/x"})
    assert moved.status_code == 422, moved.status_code
    assert "enter this again" in moved.get_data(as_text=True)
    with database.connection_context():
        stored = NotificationChannel.get_by_id(channel.id).config
    assert stored["url"] == "https://hooks.example.com/glimpser"
    same = {**blank, "config.url": "https://hooks.example.com/other"}
    assert form_post(admin, edit, edit, data=same).status_code == 302
    with database.connection_context():
        stored = NotificationChannel.get_by_id(channel.id).config
    assert stored["authorization"] == "Bearer tok-SECRET-auth"
