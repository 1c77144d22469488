"""Stream pages through the Flask test client: forms from the kind schemas, write-only
secrets, test capture on a real worker, delete, pause/resume and per-stream access."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from glimpser.auth.users import create_user
from glimpser.capture import scheduling
from glimpser.db import database
from glimpser.models import Snapshot, Stream, StreamAccess, User
from glimpser.sources.schemas import KINDS
from tests.conftest import run_queued_jobs
from tests.helpers import csrf_from, form_post, login, setup_admin
from tests.media_servers import CAMERA_PASSWORD, CAMERA_USER, jpeg

PASSWORD = "correct horse battery"


@pytest.fixture
def admin(capture_app):
    client = capture_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def post_stream(client, url: str, **fields):
    """Post the stream form as a browser does (the Enabled box is checked by default)."""
    return form_post(client, "/streams/new", url, data={"enabled": "1", **fields})


def stream_named(name: str) -> Stream:
    with database.connection_context():
        return Stream.get(Stream.name == name)


def labelled(html: str) -> None:
    labels = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', html))
    for attrs in re.findall(r"<(?:input|select|textarea)\b([^>]*)>", html):
        if 'type="hidden"' in attrs:
            continue
        ident = re.search(r'\bid="([^"]+)"', attrs)
        assert ident and ident.group(1) in labels, attrs


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_renders_its_schema_fields_with_labels(admin, kind):
    page = admin.get(f"/streams/new?kind={kind}").get_data(as_text=True)
    fragment = admin.get(f"/streams/kind-fields?kind={kind}").get_data(as_text=True)
    from glimpser.sources.schemas import CONFIG_BY_KIND

    for name in CONFIG_BY_KIND[kind].model_fields:
        if name != "kind":
            assert f'name="config.{name}"' in fragment, name
            assert f'name="config.{name}"' in page, name
    labelled(page)
    labelled(fragment)


def test_create_http_image_stream_and_first_capture(admin, capture_app, camera):
    response = post_stream(
        admin,
        "/streams/new",
        kind="http_image",
        name="Front door",
        interval="30",
        groups="outdoor, door",
        **{
            "config.url": f"{camera.url}/basic.jpg",
            "config.auth": "basic",
            "config.username": CAMERA_USER,
            "config.password": CAMERA_PASSWORD,
            "config.timeout": "5",
        },
    )
    assert response.status_code == 302
    stream = stream_named("Front door")
    assert stream.groups == ["outdoor", "door"] and stream.interval == 30
    assert stream.config["password"] == CAMERA_PASSWORD
    redis = capture_app.extensions["glimpser.redis"]
    assert scheduling.is_claimed(redis, stream.id), "the first capture was not enqueued"
    run_queued_jobs(capture_app)
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "Latest snapshot of Front door" in page and "state-ok" in page
    assert CAMERA_PASSWORD not in page


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("rtsp", {"config.url": "rtsp://192.168.1.20:554/stream1", "config.transport": "udp"}),
        ("mjpeg", {"config.url": "http://192.168.1.22/video.mjpg", "config.auth": "digest"}),
        ("video", {"config.path": "test.mp4", "config.seek": "2.5"}),
        ("youtube", {"config.url": "https://www.youtube.com/watch?v=abc", "config.quality": "480"}),
        (
            "website",
            {
                "config.url": "https://example.org/",
                "config.full_page": "1",
                "config.hide_selectors": "#cookie\n.ad",
                "config.selector_type": "xpath",
                "config.element_selector": "//main",
                "config.dark_mode": "1",
            },
        ),
    ],
)
def test_create_every_kind_stores_what_the_schema_says(admin, kind, config):
    response = post_stream(
        admin, "/streams/new", kind=kind, name=f"{kind} one", interval="10", **config
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    stored = stream_named(f"{kind} one").config
    assert stored["kind"] == kind
    for key, value in config.items():
        field = key.removeprefix("config.")
        if field == "hide_selectors":
            assert stored[field] == ["#cookie", ".ad"]
        elif value == "1" and isinstance(stored[field], bool):
            assert stored[field] is True
        else:
            assert str(stored[field]) == value


def test_invalid_input_shows_inline_errors_and_writes_nothing(admin):
    response = post_stream(
        admin,
        "/streams/new",
        kind="rtsp",
        name="",
        interval="0",
        **{"config.url": "http://not-rtsp/"},
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "must start with rtsp://" in html
    assert "Enter a number of seconds, at least 1" in html
    assert 'aria-invalid="true"' in html
    with database.connection_context():
        assert Stream.select().count() == 0


def test_unknown_kind_is_a_clear_error(admin):
    response = post_stream(admin, "/streams/new", kind="telepathy", name="x")
    assert response.status_code == 422
    assert "Choose what kind of source" in response.get_data(as_text=True)


def test_duplicate_names_are_refused(admin):
    data = {"kind": "video", "name": "Same", "config.path": "test.mp4"}
    assert post_stream(admin, "/streams/new", **data).status_code == 302
    again = post_stream(admin, "/streams/new", **{**data, "name": "same"})
    assert again.status_code == 422 and "already has this name" in again.get_data(as_text=True)


def test_passwords_are_write_only(admin):
    post_stream(
        admin,
        "/streams/new",
        kind="rtsp",
        name="Cam",
        **{
            "config.url": "rtsp://192.168.1.20/s",
            "config.username": "admin",
            "config.password": "hunter22",
        },
    )
    stream = stream_named("Cam")
    edit = admin.get(f"/streams/{stream.id}/edit").get_data(as_text=True)
    assert "hunter22" not in edit and "stored — leave empty to keep" in edit
    fragment = admin.get(f"/streams/kind-fields?kind=rtsp&stream_id={stream.id}")
    assert "hunter22" not in fragment.get_data(as_text=True)
    # Saving with the password left empty keeps it.
    form_post(
        admin,
        f"/streams/{stream.id}/edit",
        data={
            "kind": "rtsp",
            "name": "Cam",
            "interval": "20",
            "config.url": "rtsp://192.168.1.20/s",
            "config.username": "admin",
            "config.password": "",
        },
    )
    assert stream_named("Cam").config["password"] == "hunter22"
    assert stream_named("Cam").interval == 20
    form_post(
        admin,
        f"/streams/{stream.id}/edit",
        data={
            "kind": "rtsp",
            "name": "Cam",
            "interval": "20",
            "config.url": "rtsp://192.168.1.20/s",
            "config.username": "admin",
            "config.password": "new-secret",
        },
    )
    assert stream_named("Cam").config["password"] == "new-secret"
    for page in ("/streams/", f"/streams/{stream.id}", f"/streams/{stream.id}/edit"):
        assert "new-secret" not in admin.get(page).get_data(as_text=True)


def test_credentials_typed_into_the_url_are_moved_out_of_it(admin):
    post_stream(
        admin,
        "/streams/new",
        kind="rtsp",
        name="Inline",
        **{"config.url": "rtsp://admin:hunter22@192.168.1.20/s"},
    )
    stored = stream_named("Inline").config
    assert stored["url"] == "rtsp://192.168.1.20/s" and stored["password"] == "hunter22"
    edit = admin.get(f"/streams/{stream_named('Inline').id}/edit").get_data(as_text=True)
    assert "hunter22" not in edit


def test_test_capture_runs_on_a_worker_and_shows_the_picture(admin, capture_app, camera):
    camera.state.picture = jpeg((0, 120, 0), label="preview")
    token = csrf_from(admin.get("/streams/new").get_data(as_text=True))
    started = admin.post(
        "/streams/test-capture",
        headers={"X-CSRFToken": token},
        data={"kind": "http_image", "name": "", "config.url": f"{camera.url}/snapshot.jpg"},
    )
    assert started.status_code == 200
    poll = re.search(r'hx-get="([^"]+)"', started.get_data(as_text=True)).group(1)
    assert "Waiting for a worker" in admin.get(poll).get_data(as_text=True)  # none runs yet
    run_queued_jobs(capture_app)
    done = admin.get(poll).get_data(as_text=True)
    assert "data:image/jpeg;base64," in done and "320×240" in done
    with database.connection_context():
        assert Stream.select().count() == 0 and Snapshot.select().count() == 0


def test_test_capture_shows_the_real_error(admin, capture_app, camera):
    token = csrf_from(admin.get("/streams/new").get_data(as_text=True))
    started = admin.post(
        "/streams/test-capture",
        headers={"X-CSRFToken": token},
        data={"kind": "http_image", "config.url": f"{camera.url}/missing.jpg"},
    )
    poll = re.search(r'hx-get="([^"]+)"', started.get_data(as_text=True)).group(1)
    run_queued_jobs(capture_app)
    assert "HTTP 404" in admin.get(poll).get_data(as_text=True)


def test_test_capture_validates_first(admin):
    token = csrf_from(admin.get("/streams/new").get_data(as_text=True))
    response = admin.post(
        "/streams/test-capture",
        headers={"X-CSRFToken": token},
        data={"kind": "http_image", "config.url": "file:///etc/passwd"},
    )
    assert response.status_code == 422
    assert "must start with http://" in response.get_data(as_text=True)


def test_test_capture_results_belong_to_the_session_that_asked(admin, capture_app, camera):
    token = csrf_from(admin.get("/streams/new").get_data(as_text=True))
    started = admin.post(
        "/streams/test-capture",
        headers={"X-CSRFToken": token},
        data={"kind": "http_image", "config.url": f"{camera.url}/snapshot.jpg"},
    )
    poll = re.search(r'hx-get="([^"]+)"', started.get_data(as_text=True)).group(1)
    other = capture_app.test_client()
    login(other, "alice", PASSWORD)
    assert other.get(poll).status_code == 404


def test_delete_needs_the_name_and_removes_files_and_rows(admin, capture_app, camera):
    post_stream(
        admin,
        "/streams/new",
        kind="http_image",
        name="Temp",
        **{"config.url": f"{camera.url}/snapshot.jpg"},
    )
    run_queued_jobs(capture_app)
    stream = stream_named("Temp")
    with database.connection_context():
        snap = Snapshot.get(Snapshot.stream == stream.id)
    path = Path(capture_app.extensions["glimpser.settings"].snapshot_dir, snap.storage_key)
    assert path.exists()
    assert "Type the stream" in admin.get(f"/streams/{stream.id}/delete").get_data(as_text=True)
    form_post(admin, f"/streams/{stream.id}/delete", data={"confirm": "wrong"})
    assert stream_named("Temp")
    response = form_post(admin, f"/streams/{stream.id}/delete", data={"confirm": "Temp"})
    assert response.status_code == 302
    # Hidden at once; the files and rows go in the job on the maintenance queue.
    assert admin.get(f"/streams/{stream.id}").status_code == 404
    run_queued_jobs(capture_app, ("maintenance",))
    with database.connection_context():
        assert not Stream.select_including_deleting().where(Stream.id == stream.id).exists()
        assert not Snapshot.select().where(Snapshot.stream == stream.id).exists()
    assert not path.exists()


def test_pause_and_resume(admin):
    post_stream(admin, "/streams/new", kind="video", name="Clip", **{"config.path": "test.mp4"})
    stream = stream_named("Clip")
    form_post(admin, f"/streams/{stream.id}", f"/streams/{stream.id}/pause")
    assert stream_named("Clip").state == "paused" and not stream_named("Clip").enabled
    form_post(admin, f"/streams/{stream.id}", f"/streams/{stream.id}/resume")
    assert stream_named("Clip").enabled and stream_named("Clip").state == "pending"


def test_snapshot_images_support_conditional_requests(admin, capture_app, camera):
    camera.state.picture = jpeg((50, 50, 220), label="etag")
    post_stream(
        admin,
        "/streams/new",
        kind="http_image",
        name="Img",
        **{"config.url": f"{camera.url}/snapshot.jpg"},
    )
    run_queued_jobs(capture_app)
    stream = stream_named("Img")
    first = admin.get(f"/streams/{stream.id}/snapshot.jpg")
    assert first.status_code == 200 and first.data == camera.state.picture
    assert first.headers["Cache-Control"].startswith("private")
    again = admin.get(
        f"/streams/{stream.id}/snapshot.jpg", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304


def test_viewers_see_only_granted_streams_and_change_nothing(admin, capture_app, camera):
    for name in ("Granted", "Hidden"):
        post_stream(
            admin,
            "/streams/new",
            kind="http_image",
            name=name,
            **{"config.url": f"{camera.url}/snapshot.jpg"},
        )
    run_queued_jobs(capture_app)
    granted, hidden = stream_named("Granted"), stream_named("Hidden")
    with database.connection_context():
        bob = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=bob, stream=granted.id)
        hidden_snap = Snapshot.get(Snapshot.stream == hidden.id)
    viewer = capture_app.test_client()
    login(viewer, "bob", PASSWORD)
    listing = viewer.get("/streams/").get_data(as_text=True)
    assert "Granted" in listing and "Hidden" not in listing
    assert viewer.get(f"/streams/{granted.id}").status_code == 200
    assert viewer.get(f"/streams/{granted.id}/snapshot.jpg").status_code == 200
    for url in (
        f"/streams/{hidden.id}",
        f"/streams/{hidden.id}/status",
        f"/streams/{hidden.id}/snapshot.jpg",
        f"/streams/{hidden.id}/snapshots/{hidden_snap.id}.jpg",
        f"/streams/{granted.id}/snapshots/{hidden_snap.id}.jpg",
    ):
        assert viewer.get(url).status_code == 404, url
    token = csrf_from(viewer.get("/").get_data(as_text=True))
    for url in (
        f"/streams/{granted.id}/edit",
        "/streams/new",
        "/streams/kind-fields?kind=rtsp",
        f"/streams/{granted.id}/delete",
    ):
        assert viewer.get(url).status_code == 403, url
    for url in (
        f"/streams/{granted.id}/capture",
        f"/streams/{granted.id}/pause",
        f"/streams/{granted.id}/delete",
        f"/streams/{granted.id}/edit",
        "/streams/new",
        "/streams/test-capture",
    ):
        assert viewer.post(url, headers={"X-CSRFToken": token}).status_code == 403, url
    with database.connection_context():
        assert User.get(User.username == "bob").role == "viewer"


@pytest.mark.parametrize(
    "url",
    [
        "/streams/{huge}",
        "/streams/{huge}/edit",
        "/streams/1/snapshots/{huge}.jpg",
        "/admin/rules/{huge}/edit",
        "/admin/channels/{huge}/edit",
        "/admin/deliveries/{huge}/card",
        "/events/{huge}",
        "/summaries/{huge}",
    ],
)
@pytest.mark.parametrize("huge", [2**31, 2**63, 10**30])
def test_ids_beyond_any_row_are_not_found(admin, url, huge):
    """Every <int:…> in a URL is a row id: too large for the database is a plain 404."""
    assert admin.get(url.format(huge=huge)).status_code == 404


def test_a_new_form_has_no_placeholder_values(admin):
    html = admin.get("/streams/new").get_data(as_text=True)
    assert "Undefined" not in html and "None" not in html


def test_dashboard_shows_the_visible_streams_or_says_how_to_start(admin, capture_app, camera):
    assert "Add a camera, video or website" in admin.get("/").get_data(as_text=True)
    post_stream(
        admin,
        "/streams/new",
        kind="http_image",
        name="Porch",
        **{"config.url": f"{camera.url}/snapshot.jpg"},
    )
    run_queued_jobs(capture_app)
    html = admin.get("/").get_data(as_text=True)
    assert "Latest snapshot of Porch" in html and "No streams yet" not in html
