"""Per-stream access, route by route: a viewer reaches only the streams granted to them.

The walk covers every rule in the URL map that takes a stream (or snapshot) id, so a route
added later is checked without anyone remembering to add it here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from werkzeug.routing import IntegerConverter

from glimpser.auth import api_keys
from glimpser.auth.policy import VIEWER_WRITE_ENDPOINTS
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import Snapshot, Stream, StreamAccess, User
from tests.conftest import ROOT, make_env, run_queued_jobs
from tests.helpers import csrf_from, form_post, login, setup_admin

PASSWORD = "correct horse battery"


@pytest.fixture
def two_streams(capture_app, camera):
    admin = capture_app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    for name in ("Granted", "Hidden"):
        form_post(
            admin,
            "/streams/new",
            data={
                "kind": "http_image",
                "name": name,
                "enabled": "1",
                "config.url": f"{camera.url}/snapshot.jpg",
            },
        )
    run_queued_jobs(capture_app)
    with database.connection_context():
        granted = Stream.get(Stream.name == "Granted")
        hidden = Stream.get(Stream.name == "Hidden")
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=granted)
        snaps = {s.stream_id: s.id for s in Snapshot.select()}
        api_token = api_keys.create_key(bob, ["write"]).token
    viewer = capture_app.test_client()
    login(viewer, "bob", PASSWORD)
    viewer.api_headers = {"Authorization": f"Bearer {api_token}"}  # for the /api/ routes
    return granted, hidden, snaps, viewer


def _headers(viewer, url: str, token: str) -> dict[str, str]:
    """The browser's CSRF header on pages; the viewer's own API key (write scope) on /api/."""
    return viewer.api_headers if url.startswith("/api/") else {"X-CSRFToken": token}


def stream_routes(app, stream_id: int, snapshot_id: int) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) of every rule that names a stream, filled with these ids."""
    out = []
    for rule in app.url_map.iter_rules():
        if "stream_id" not in rule.arguments:
            continue
        values = {}
        for arg in rule.arguments:
            if arg == "stream_id":
                values[arg] = stream_id
            elif arg == "snapshot_id":
                values[arg] = snapshot_id
            else:
                values[arg] = 1 if isinstance(rule._converters[arg], IntegerConverter) else "x"
        url = rule.build(values, append_unknown=False)[1]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, url))
    return out


def test_every_stream_route_hides_ungranted_streams(two_streams, capture_app):
    granted, hidden, snaps, viewer = two_streams
    token = csrf_from(viewer.get("/").get_data(as_text=True))
    routes = stream_routes(capture_app, hidden.id, snaps[hidden.id])
    assert len(routes) >= 10
    assert any(url.startswith("/api/") for _e, _m, url in routes)
    for endpoint, method, url in routes:
        response = viewer.open(url, method=method, headers=_headers(viewer, url, token))
        assert response.status_code in (403, 404), (endpoint, method, url, response.status_code)
        assert b"Hidden" not in response.get_data(), (endpoint, url)


def test_a_granted_streams_snapshot_ids_cannot_reach_another_stream(two_streams, capture_app):
    granted, hidden, snaps, viewer = two_streams
    # The granted stream's id with the hidden stream's snapshot id: still nothing.
    rules = [
        r
        for r in capture_app.url_map.iter_rules()
        if {"stream_id", "snapshot_id"} <= set(r.arguments) and "GET" in (r.methods or ())
    ]
    assert rules
    for rule in rules:
        url = rule.build(
            {"stream_id": granted.id, "snapshot_id": snaps[hidden.id]}, append_unknown=False
        )[1]
        assert viewer.get(url, headers=_headers(viewer, url, "")).status_code == 404, url


def test_api_lists_never_show_an_ungranted_stream(two_streams, capture_app):
    """Every API list (a GET rule without arguments) answers the viewer's key without a trace
    of the hidden stream."""
    granted, hidden, snaps, viewer = two_streams
    lists = [
        r.rule
        for r in capture_app.url_map.iter_rules()
        if r.rule.startswith("/api/") and not r.arguments and "GET" in (r.methods or ())
    ]
    assert "/api/v1/streams" in lists
    for url in lists:
        response = viewer.get(url, headers=viewer.api_headers)
        assert response.status_code in (200, 403), (url, response.status_code)
        assert b"Hidden" not in response.get_data(), url
    assert b"Granted" in viewer.get("/api/v1/streams", headers=viewer.api_headers).get_data()


def test_granted_streams_are_readable(two_streams):
    granted, hidden, snaps, viewer = two_streams
    assert viewer.get(f"/streams/{granted.id}").status_code == 200
    assert viewer.get(f"/streams/{granted.id}/snapshot.jpg").status_code == 200
    listing = viewer.get("/streams/").get_data(as_text=True)
    assert "Granted" in listing and "Hidden" not in listing
    dashboard = viewer.get("/").get_data(as_text=True)
    assert "Granted" in dashboard and "Hidden" not in dashboard


def test_viewers_never_change_a_granted_stream(two_streams, capture_app):
    granted, hidden, snaps, viewer = two_streams
    token = csrf_from(viewer.get("/").get_data(as_text=True))
    for endpoint, method, url in stream_routes(capture_app, granted.id, snaps[granted.id]):
        view = capture_app.view_functions[endpoint]
        if (
            method == "GET"
            or endpoint in VIEWER_WRITE_ENDPOINTS
            or getattr(view, "glimpser_viewer_write", False)
        ):
            continue  # reading, or deliberately open to viewers (e.g. building a timelapse)
        response = viewer.open(url, method=method, headers=_headers(viewer, url, token))
        assert response.status_code == 403, (endpoint, method, url)
    with database.connection_context():
        assert Stream.get_by_id(granted.id).enabled


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "glimpser.cli", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_grant_and_revoke_from_the_command_line(tmp_path, redis_url, app_factory):
    env = make_env(tmp_path / "data", redis_url)
    app = app_factory()
    with database.connection_context():
        create_user("carol", PASSWORD, "viewer")
        stream = Stream.create(
            name="Yard", kind="video", interval=60, config={"kind": "video", "path": "a.mp4"}
        )
    granted = run_cli(["grant", "carol", "Yard"], env)
    assert granted.returncode == 0, granted.stderr
    assert "carol may see: Yard" in granted.stdout
    assert run_cli(["grant", "carol", str(stream.id)], env).returncode == 0  # idempotent
    with database.connection_context():
        user = User.get(User.username == "carol")
        assert StreamAccess.select().where(StreamAccess.user == user).count() == 1
    client = app.test_client()
    login(client, "carol", PASSWORD)
    assert client.get(f"/streams/{stream.id}").status_code == 200
    assert run_cli(["revoke", "carol", "Yard"], env).returncode == 0
    assert client.get(f"/streams/{stream.id}").status_code == 404
    missing = run_cli(["grant", "carol", "Nope"], env)
    assert missing.returncode == 2 and "no stream 'Nope'" in missing.stderr
    nobody = run_cli(["grant", "dave", "Yard"], env)
    assert nobody.returncode == 2 and "no user named 'dave'" in nobody.stderr


def test_viewers_find_the_live_view_on_the_stream_page(two_streams):
    granted, hidden, snaps, viewer = two_streams
    page = viewer.get(f"/streams/{granted.id}").get_data(as_text=True)
    assert f'href="/streams/{granted.id}/live"' in page
    assert "Capture now" not in page  # admin controls stay hidden


def test_api_objects_of_an_ungranted_stream_stay_hidden(two_streams, capture_app):
    """Every API rule that names an object (event, snapshot, timelapse, summary) of the hidden
    stream answers the viewer's key 403 or 404, whatever the method, without a trace of it."""
    from datetime import timedelta

    from glimpser import times
    from glimpser.models import Event, Summary, Timelapse

    granted, hidden, snaps, viewer = two_streams
    now = times.utcnow()
    with database.connection_context():
        ids = {
            "stream_id": hidden.id,
            "snapshot_id": snaps[hidden.id],
            "event_id": Event.create(stream=hidden, kind="motion", title="Hidden event").id,
            "timelapse_id": Timelapse.create(
                stream=hidden, range_start=now - timedelta(hours=1), range_end=now
            ).id,
            "summary_id": Summary.create(
                stream=hidden,
                stream_ids=[hidden.id],
                period="hour",
                window_start=now - timedelta(hours=1),
                window_end=now,
                text="Hidden summary",
            ).id,
        }
    rules = [
        r
        for r in capture_app.url_map.iter_rules()
        if r.rule.startswith("/api/") and r.arguments and set(r.arguments) <= set(ids)
    ]
    named = {arg for r in rules for arg in r.arguments}
    assert named == set(ids), named  # every kind of object is reached by some rule
    for rule in rules:
        url = rule.build({a: ids[a] for a in rule.arguments}, append_unknown=False)[1]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            response = viewer.open(url, method=method, headers=viewer.api_headers, json={})
            assert response.status_code in (403, 404), (method, url, response.status_code)
            assert b"Hidden" not in response.get_data(), (method, url)
