"""Import and export of streams: Glimpser's format, glimpser-rs exports, CLI and admin page."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import peewee
import pytest

from glimpser import db, transfer
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import AuditLog, Stream
from glimpser.sources.schemas import STREAM_FIELDS, StreamSpec, dump_config
from glimpser.transfer import importing
from tests.conftest import _new_postgres_database, make_env
from tests.helpers import csrf_from, login, setup_admin
from tests.media_servers import SHARED
from tests.test_cli import run_cli

# A real export made by glimpser-rs (the shared fixtures sit next to the repository).
RS_EXPORT = SHARED / "fixtures" / "glimpser-rs-streams-export.json"
PASSWORD = "correct horse battery"
CAMERA_PASSWORD = "cam-pw-0xdeadbeef"
SITE_PASSWORD = "site-pw-0xfeedface"
PAGE = "/admin/transfer/"


# --- helpers ----------------------------------------------------------------------------------


def add_stream(name: str, config: dict[str, Any], **fields: Any) -> Stream:
    """A stream saved exactly as the stream form saves one."""
    spec = StreamSpec.model_validate({"name": name, "config": config, **fields})
    return Stream.create(
        name=spec.name,
        description=spec.description,
        groups=spec.groups,
        interval=spec.interval,
        enabled=spec.enabled,
        retention_max_age_days=spec.retention_max_age_days,
        retention_max_count=spec.retention_max_count,
        retention_max_bytes=spec.retention_max_bytes,
        kind=spec.config.kind,
        config=dump_config(spec.config, include_secrets=True),
    )


def add_sample_streams() -> None:
    """One stream of every kind, with every stream field set somewhere."""
    add_stream(
        "Front door",
        {
            "kind": "rtsp",
            "url": "rtsp://192.168.1.20:554/stream1",
            "username": "viewer",
            "password": CAMERA_PASSWORD,
            "transport": "udp",
            "timeout": 20,
        },
        description="Porch camera",
        groups=["outdoor", "doors"],
        interval=10,
        retention_max_age_days=3,
        retention_max_count=500,
        retention_max_bytes=10**9,
    )
    add_stream(
        "Grafana",
        {
            "kind": "website",
            "url": "https://grafana.example.net/d/abc",
            "username": "ops",
            "password": SITE_PASSWORD,
            "viewport_width": 1600,
            "viewport_height": 900,
            "full_page": True,
            "wait": "selector",
            "wait_selector": "#panel-1",
            "wait_delay": 1.5,
            "selector_type": "xpath",
            "element_selector": '//*[@id="main"]',
            "hide_selectors": [".cookie-banner", "#ads"],
            "dark_mode": True,
        },
        enabled=False,
    )
    add_stream(
        "Garage still",
        {
            "kind": "http_image",
            "url": "http://192.168.1.21/snap.jpg",
            "auth": "digest",
            "username": "u",
            "password": "p",
        },
    )
    add_stream("Yard MJPEG", {"kind": "mjpeg", "url": "http://192.168.1.22/video.mjpg"})
    add_stream("Traffic HLS", {"kind": "video", "url": "https://cams.example.org/live.m3u8"})
    add_stream("Recorded", {"kind": "video", "path": "clips/test.mp4", "seek": 12.5})
    add_stream(
        "Harbour",
        {
            "kind": "youtube",
            "url": "https://www.youtube.com/watch?v=abc",
            "quality": "480",
            "seek": 3,
        },
    )


def streams_by_name() -> dict[str, dict[str, Any]]:
    """Every stream's definition (not its status), keyed by name."""
    out = {}
    for s in Stream.select():
        out[s.name] = {name: getattr(s, name) for name in STREAM_FIELDS}
        out[s.name].update(kind=s.kind, config=s.config)
    return out


def fresh_database_url(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> str:
    """A second, empty database of the same engine as `database_url`."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other.db'}"
    return _new_postgres_database(request.getfixturevalue("postgres_dsn"))


def upload(client, content: bytes, filename: str = "export.json", **fields: str):
    token = csrf_from(client.get(PAGE).get_data(as_text=True))
    data = {"csrf_token": token, "mode": "skip", **fields}
    data["file"] = (io.BytesIO(content), filename)
    return client.post(PAGE, data=data, content_type="multipart/form-data")


def rs_document(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"streams": list(entries), "export_date": "2025-09-05T19:34:19+00:00"}


def rs_entry(name: str, **config: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": None,
        "config": config,
        "is_default": False,
        "user_id": "01K4DHEJRRXENZM6CKXAADB9G8",
    }


def check_rs_fixture_streams() -> None:
    streams = streams_by_name()
    assert sorted(streams) == sorted(
        e["name"] for e in json.loads(RS_EXPORT.read_text())["streams"]
    )
    assert len(streams) == 5
    weather = streams["Weather Warnings and Advisories"]
    assert weather["kind"] == "website" and weather["interval"] == 5
    assert weather["description"] == ""
    assert weather["config"]["selector_type"] == "xpath"
    assert weather["config"]["element_selector"] == "/html/body/main/div"
    assert (weather["config"]["viewport_width"], weather["config"]["viewport_height"]) == (
        1920,
        1080,
    )
    assert weather["config"]["timeout"] == 30
    assert weather["config"]["url"].startswith("https://forecast.weather.gov/showsigwx.php?")
    radar = streams["NWS Radar"]["config"]
    assert radar["selector_type"] == "css" and radar["element_selector"] == ""
    midway = streams["Chicago Midway"]
    assert midway["kind"] == "youtube" and midway["config"]["quality"] == "720"
    assert midway["interval"] == 5
    assert midway["config"]["url"] == "https://www.youtube.com/watch?v=67BCsiW-1Io"
    npr = streams["NPR News Site"]
    assert npr["description"] == "NPR main page for news monitoring"
    assert npr["config"]["element_selector"] == '//*[@id="contentWrap"]'
    earthcam = streams["Wrigleyville EarthCam"]["config"]
    assert earthcam["element_selector"] == '//*[@id="ecnPlayer"]/div/div[1]'
    for stream in streams.values():
        # only Glimpser's own keys are stored; glimpser-rs keys never leak into a config
        assert not {
            "width",
            "height",
            "headless",
            "stealth",
            "duration",
            "format",
            "snapshot_interval",
            "is_live",
        } & set(stream["config"])
    assert Stream.select().where(Stream.state != "pending").count() == 0


# --- glimpser-rs ------------------------------------------------------------------------------


def test_glimpser_rs_export_imports_with_the_cli(tmp_path, redis_url, database_url):
    env = make_env(tmp_path, redis_url, database_url)
    dry = run_cli(["import", str(RS_EXPORT), "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and "5 imported" in dry.stdout

    result = run_cli(["import", str(RS_EXPORT)], env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "glimpser-rs export" in out and "5 imported, 0 invalid" in out
    assert "Ignored top-level keys: export_date, exported_by" in out
    weather = next(line for line in out.splitlines() if "Weather Warnings" in line)
    assert "imported" in weather
    for key in ("duration", "headless", "stealth", "is_default", "user_id"):
        assert key in weather
    midway = next(line for line in out.splitlines() if "Chicago Midway" in line)
    assert "is_live" in midway

    database_ = db.init_database(database_url)
    with database_.connection_context():
        check_rs_fixture_streams()
        assert AuditLog.select().where(AuditLog.action == "stream.import").count() == 1

    again = run_cli(["import", str(RS_EXPORT)], env)
    assert again.returncode == 0 and "5 skipped" in again.stdout
    assert "a stream with this name exists" in again.stdout
    with database_.connection_context():
        assert Stream.select().count() == 5


def test_glimpser_rs_export_imports_through_the_admin_page(db_app):
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    page = client.get(PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for control in ('for="file"', 'for="mode"', 'for="dry_run"'):
        assert control in html
    assert 'enctype="multipart/form-data"' in html
    assert "<script" not in html.split("</head>", 1)[1] and "style=" not in html

    dry = upload(client, RS_EXPORT.read_bytes(), dry_run="y")
    assert dry.status_code == 200
    assert "Dry run" in dry.get_data(as_text=True)
    with database.connection_context():
        assert Stream.select().count() == 0

    response = upload(client, RS_EXPORT.read_bytes(), "glimpser-rs.json")
    assert response.status_code == 200, response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    assert "Import report" in html and "5 imported" in html
    assert html.count(">imported</td>") == 5
    assert "Weather Warnings and Advisories" in html and "user_id" in html
    with database.connection_context():
        check_rs_fixture_streams()
        entry = AuditLog.get(AuditLog.action == "stream.import")
        assert entry.user.username == "alice"
        assert entry.detail["imported"] == 5 and entry.detail["source"] == "glimpser-rs.json"
        assert entry.detail["via"] == "web"


def test_glimpser_rs_keys_kinds_and_invalid_entries(db_app):
    document = rs_document(
        rs_entry(
            "Ok site",
            kind="website",
            url="https://example.com",
            width=800,
            height=600,
            basic_auth_username="me",
            basic_auth_password=SITE_PASSWORD,
            snapshot_interval_seconds=0,
            selector_type="css",
            element_selector="#x",
        ),
        rs_entry(
            "HLS",
            kind="ffmpeg",
            source="https://cams.example.org/a.m3u8",
            snapshot_interval=30,
            duration=10,
        ),
        rs_entry(
            "Camera via ffmpeg",
            kind="ffmpeg",
            source_url="rtsp://10.0.0.5/live",
            auth_username="admin",
            auth_password=CAMERA_PASSWORD,
        ),
        rs_entry("Clip", kind="file", path="clips/a.mp4"),
        rs_entry("Absolute clip", kind="file", path="/srv/videos/a.mp4"),
        rs_entry("Big", kind="yt", url="https://www.youtube.com/watch?v=x", format="1080p"),
        rs_entry(
            "Worst",
            kind="youtube",
            url="https://www.youtube.com/watch?v=y",
            format="worst",
            is_live=False,
        ),
        rs_entry("Tiny viewport", kind="website", url="https://example.com", width=50),
        rs_entry("GoPro", kind="gopro", url="http://10.0.0.9/"),
        rs_entry("Wrong scheme", kind="rtsp", url="http://10.0.0.6/"),
        "not an object",
        {"description": "no name", "config": {"kind": "website", "url": "https://a.example"}},
    )
    with database.connection_context():
        report = transfer.import_streams(document, "skip")
        outcomes = {e.name: e for e in report.entries}
        good = ["Ok site", "HLS", "Camera via ffmpeg", "Clip", "Big", "Worst"]
        assert [outcomes[n].outcome for n in good] == ["imported"] * 6
        assert outcomes["Absolute clip"].outcome == "error"
        assert "relative to the media directory" in outcomes["Absolute clip"].errors["config.path"]
        assert "'/srv/videos/a.mp4'" in outcomes["Absolute clip"].errors["config.path"]
        assert outcomes["Tiny viewport"].errors == {
            "config.viewport_width": "Input should be greater than or equal to 200"
        }
        assert "'gopro'" in outcomes["GoPro"].errors["config.kind"]
        assert "rtsp://" in outcomes["Wrong scheme"].errors["config.url"]
        assert report.entries[10].errors == {"": "not a JSON object"}
        assert "name" in report.entries[11].errors
        assert report.count("error") == 6 and report.count("imported") == 6
        assert "duration" in outcomes["HLS"].ignored and "is_live" in outcomes["Worst"].ignored

        streams = streams_by_name()
        assert sorted(streams) == sorted(good)
        site = streams["Ok site"]
        assert site["interval"] == 1  # snapshot_interval 0 means "as often as possible"
        assert site["config"]["viewport_width"] == 800 and site["config"]["viewport_height"] == 600
        assert site["config"]["username"] == "me"
        assert site["config"]["password"] == SITE_PASSWORD
        assert streams["HLS"]["kind"] == "video" and streams["HLS"]["interval"] == 30
        assert streams["HLS"]["config"]["url"] == "https://cams.example.org/a.m3u8"
        camera = streams["Camera via ffmpeg"]
        assert camera["kind"] == "rtsp" and camera["config"]["url"] == "rtsp://10.0.0.5/live"
        assert camera["config"]["password"] == CAMERA_PASSWORD
        assert streams["Clip"]["kind"] == "video"
        assert streams["Clip"]["config"]["path"] == "clips/a.mp4"
        assert streams["Big"]["config"]["quality"] == "1080"
        assert streams["Worst"]["config"]["quality"] == "worst"


# --- Glimpser's own format: round trips --------------------------------------------------------


@pytest.mark.parametrize("with_secrets", [True, False], ids=["with-secrets", "without-secrets"])
def test_export_then_import_into_a_fresh_database_gives_identical_streams(
    request, tmp_path, redis_url, database_url, with_secrets
):
    source = db.init_database(database_url)
    db.migrate(source)
    with source.connection_context():
        add_sample_streams()
        original = streams_by_name()
    env = make_env(tmp_path / "a", redis_url, database_url)
    export_file = tmp_path / "streams.json"
    args = ["export", str(export_file)] + (["--include-secrets"] if with_secrets else [])
    result = run_cli(args, env)
    assert result.returncode == 0, result.stderr
    assert "exported 7 streams" in result.stderr

    text = export_file.read_text()
    document = json.loads(text)
    assert document["format"] == "glimpser" and document["version"] == 1
    assert document["exported_at"].endswith("+00:00")
    assert document["channels"] == []  # channels travel too (tests/test_transfer_channels.py)
    assert [r["name"] for r in document["rules"]] == ["Motion or change"]  # the default rule
    assert len(document["streams"]) == 7
    has_passwords = CAMERA_PASSWORD in text and SITE_PASSWORD in text
    assert has_passwords is with_secrets
    if with_secrets:
        assert export_file.stat().st_mode & 0o077 == 0  # only the owner may read it
    else:
        assert all("password" not in s["config"] for s in document["streams"])

    target_url = fresh_database_url(request, database_url, tmp_path)
    imported = run_cli(
        ["import", str(export_file)], make_env(tmp_path / "b", redis_url, target_url)
    )
    assert imported.returncode == 0, imported.stderr
    assert "Glimpser export" in imported.stdout and "7 imported" in imported.stdout
    target = db.init_database(target_url)
    with target.connection_context():
        copy = streams_by_name()
    if not with_secrets:
        for stream in original.values():
            if "password" in stream["config"]:
                stream["config"]["password"] = ""
    assert copy == original

    source = db.init_database(database_url)  # the models follow the last database bound
    with source.connection_context():
        audits = list(AuditLog.select().where(AuditLog.action == "stream.export"))
        assert [a.detail["include_secrets"] for a in audits] == [with_secrets]


def test_stdout_export_without_secrets_and_unknown_sections(db_app, tmp_path, redis_url):
    with database.connection_context():
        add_sample_streams()
        document = transfer.export_streams()
    text = transfer.dumps_document(document)
    assert CAMERA_PASSWORD not in text and SITE_PASSWORD not in text and '"password"' not in text
    document["rules"] = [{"name": "incomplete"}]
    document["channels"] = []
    document["made_by"] = "someone"
    with database.connection_context():
        Stream.delete().execute()
        report = transfer.import_streams(document, "skip")
        assert report.count("imported") == 7
        [rule] = report.rules  # rules are imported now: this one lacks its conditions
        assert rule.outcome == "error" and "conditions" in rule.errors
        assert report.channels == []  # an empty channel list is read, not ignored
        assert "Ignored top-level keys: made_by." in report.notes
    with pytest.raises(transfer.TransferError, match="newer Glimpser"):
        transfer.import_streams({**document, "version": 2}, "skip")
    with pytest.raises(transfer.TransferError, match="Unknown export format"):
        transfer.import_streams({"format": "frigate", "streams": [{"name": "x"}]}, "skip")
    # An unfamiliar "format" key does not hide entries that are clearly glimpser-rs ones.
    rs_like = {
        "format": "v1",
        "streams": [rs_entry("Cam", kind="ffmpeg", source="https://a.example/x.m3u8")],
    }
    assert transfer.detect_format(rs_like) == "glimpser-rs"


# --- modes ------------------------------------------------------------------------------------


def _camera(name: str, interval: int, host: str = "192.168.1.20", **extra: Any) -> dict:
    config = {"kind": "rtsp", "url": f"rtsp://{host}/stream1", "username": "viewer", **extra}
    return {"name": name, "interval": interval, "config": config}


def _glimpser_doc(*streams: dict[str, Any]) -> dict[str, Any]:
    return {"format": "glimpser", "version": 1, "streams": list(streams)}


def _existing_camera() -> Stream:
    stream = add_stream(
        "Front door", _camera("x", 0, password=CAMERA_PASSWORD)["config"], interval=60
    )
    Stream.update(state="failing", consecutive_failures=4, last_error="timed out").where(
        Stream.id == stream.id
    ).execute()
    return stream


def test_mode_skip(db_app):
    with database.connection_context():
        existing = _existing_camera()
        report = transfer.import_streams(
            _glimpser_doc(
                _camera("Front door", 5), _camera("Back door", 5), _camera("back door", 7)
            ),
            "skip",
        )
        assert [e.outcome for e in report.entries] == ["skipped", "imported", "skipped"]
        assert report.entries[0].reason == "a stream with this name exists"
        assert report.entries[2].reason == "same name as entry 2 of this file"
        assert Stream.get_by_id(existing.id).interval == 60
        assert Stream.get(Stream.name == "Back door").interval == 5
        assert Stream.select().count() == 2


def test_mode_overwrite_keeps_id_status_and_the_stored_password(db_app):
    with database.connection_context():
        existing = _existing_camera()
        report = transfer.import_streams(
            _glimpser_doc(
                _camera("Front door", 5),  # exported without secrets: no password key
                _camera("Side door", 5),
                _camera("Side door", 9),  # the last one of a name wins
            ),
            "overwrite",
        )
        assert [e.outcome for e in report.entries] == ["overwritten", "skipped", "imported"]
        assert report.entries[0].notes == ["stored password kept"]
        assert "replaced by entry 3" in report.entries[1].reason
        stream = Stream.get_by_id(existing.id)
        assert stream.interval == 5
        assert stream.config["password"] == CAMERA_PASSWORD
        assert (stream.state, stream.consecutive_failures, stream.last_error) == (
            "failing",
            4,
            "timed out",
        )
        assert Stream.get(Stream.name == "Side door").interval == 9
        assert Stream.select().count() == 2

        # An explicit (even empty) password in the file replaces the stored one.
        transfer.import_streams(
            _glimpser_doc(_camera("Front door", 5, password="new-secret")), "overwrite"
        )
        assert Stream.get_by_id(existing.id).config["password"] == "new-secret"

        # A changed address never receives the stored password.
        report = transfer.import_streams(
            _glimpser_doc(_camera("Front door", 5, host="203.0.113.9")), "overwrite"
        )
        assert report.entries[0].notes == ["stored password not kept: the address changed"]
        assert Stream.get_by_id(existing.id).config["password"] == ""


def test_overwrite_keeps_a_stored_password_by_the_forms_rule_of_destination(db_app):
    # The stream form's rule (schema_helpers.may_keep_secrets): scheme, host and port, the
    # scheme's default port filled in. The same camera over plain http is another destination.
    def image(url: str, **extra: Any) -> dict[str, Any]:
        config = {"kind": "http_image", "url": url, "username": "viewer", "auth": "basic"}
        return {"name": "Porch", "interval": 30, "config": {**config, **extra}}

    with database.connection_context():
        stored = image("https://cam.example.net/snap.jpg", password=CAMERA_PASSWORD)
        porch = add_stream("Porch", stored["config"], interval=30)

        same = _glimpser_doc(image("https://cam.example.net:443/snap.jpg"))
        report = transfer.import_streams(same, "overwrite")
        assert report.entries[0].notes == ["stored password kept"]
        assert Stream.get_by_id(porch.id).config["password"] == CAMERA_PASSWORD

        plain = _glimpser_doc(image("http://cam.example.net/snap.jpg"))
        report = transfer.import_streams(plain, "overwrite")
        assert report.entries[0].notes == ["stored password not kept: the address changed"]
        assert Stream.get_by_id(porch.id).config["password"] == ""


def test_mode_rename(db_app):
    with database.connection_context():
        existing = _existing_camera()
        report = transfer.import_streams(
            _glimpser_doc(
                _camera("Front door", 5), _camera("front door", 6), _camera("Front door (2)", 7)
            ),
            "rename",
        )
        assert [(e.outcome, e.new_name) for e in report.entries] == [
            ("renamed", "Front door (2)"),
            ("renamed", "front door (3)"),
            ("renamed", "Front door (2) (2)"),
        ]
        assert Stream.get_by_id(existing.id).interval == 60
        assert Stream.get(Stream.name == "Front door (2)").interval == 5
        assert Stream.get(Stream.name == "front door (3)").interval == 6
        assert Stream.select().count() == 4


def test_invalid_mode_is_refused():
    with pytest.raises(transfer.TransferError, match="Unknown mode"):
        transfer.import_streams(_glimpser_doc(), "merge")


# --- all or nothing ---------------------------------------------------------------------------


def test_a_failing_write_writes_nothing(db_app, monkeypatch):
    real_write = importing._write
    calls: list[str] = []

    def write_then_collide(entry):
        real_write(entry)
        calls.append(entry.spec.name)
        if len(calls) == 2:
            # A real constraint violation from the database in the middle of the import.
            Stream.create(name=calls[0], kind="rtsp", config={})

    monkeypatch.setattr(importing, "_write", write_then_collide)
    with database.connection_context():
        existing = _existing_camera()
        report = transfer.import_streams(
            _glimpser_doc(
                _camera("Front door", 5), _camera("A", 5), _camera("B", 5), _camera("C", 5)
            ),
            "overwrite",
        )
        assert calls == ["Front door", "A"]
        assert "nothing was written" in report.failure
        assert [e.outcome for e in report.entries] == ["rolled back"] * 4
        assert "nothing was written" in report.summary()
        assert [s.name for s in Stream.select()] == ["Front door"]
        assert Stream.get_by_id(existing.id).interval == 60
        assert not AuditLog.select().where(AuditLog.action == "stream.import").exists()
        assert AuditLog.select().where(AuditLog.action == "stream.import_failed").exists()


def test_a_failing_write_on_the_admin_page_is_a_409(db_app, monkeypatch):
    def fail(entry):
        raise peewee.IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(importing, "_write", fail)
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    response = upload(client, RS_EXPORT.read_bytes())
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "nothing was written" in html and "rolled back" in html
    with database.connection_context():
        assert Stream.select().count() == 0


# --- bad files --------------------------------------------------------------------------------


def test_bad_uploads_get_a_clear_4xx_page(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    cases = [
        (b"x" * (transfer.MAX_IMPORT_BYTES + 1), 413, "larger than 5.0 MB"),
        (b"streams: [not json", 400, "not valid JSON"),
        (b"\x80\x81 not text", 400, "not text (JSON must be UTF-8)"),
        (b"[" * 100_000, 400, "nested too deeply"),
        (b"", 400, "The file is empty."),
        (b"[1, 2]", 400, "must hold a JSON object"),
        (b'{"name": "x"}', 400, "no &#34;streams&#34; list"),
        (b'{"format": "glimpser", "version": 1, "streams": {}}', 400, "no &#34;streams&#34;"),
    ]
    for content, status, message in cases:
        response = upload(client, content)
        assert response.status_code == status, (content[:20], response.status_code)
        html = response.get_data(as_text=True)
        assert message in html, (content[:20], html)
        assert 'role="alert"' in html

    token = csrf_from(client.get(PAGE).get_data(as_text=True))
    missing = client.post(
        PAGE, data={"csrf_token": token, "mode": "skip"}, content_type="multipart/form-data"
    )
    assert missing.status_code == 400
    assert "Choose an export file to import." in missing.get_data(as_text=True)
    bad_mode = upload(client, RS_EXPORT.read_bytes(), mode="merge")
    assert bad_mode.status_code == 400
    no_csrf = client.post(
        PAGE, data={"file": (io.BytesIO(b"{}"), "a.json")}, content_type="multipart/form-data"
    )
    assert no_csrf.status_code == 400
    # larger than the whole request limit: refused by Flask before the view, still a 4xx page
    huge = upload(client, b" " * (17 * 1024 * 1024))
    assert huge.status_code == 413
    with database.connection_context():
        assert Stream.select().count() == 0


def test_bad_files_on_the_cli_exit_2_with_the_reason(tmp_path, redis_url):
    env = make_env(tmp_path, redis_url)
    not_json = tmp_path / "notes.txt"
    not_json.write_text("hello")
    result = run_cli(["import", str(not_json)], env)
    assert result.returncode == 2 and "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (transfer.MAX_IMPORT_BYTES + 1))
    result = run_cli(["import", str(big)], env)
    assert result.returncode == 2 and "larger than 5.0 MB" in result.stderr
    result = run_cli(["import", str(tmp_path / "missing.json")], env)
    assert result.returncode == 2 and "cannot read" in result.stderr
    bad_entry = tmp_path / "bad.json"
    bad_entry.write_text(json.dumps(rs_document(rs_entry("X", kind="gopro"))))
    result = run_cli(["import", str(bad_entry)], env)
    assert result.returncode == 1 and "unknown kind 'gopro'" in result.stdout


# --- the admin export and access ----------------------------------------------------------------


def test_admin_export_download_and_secrets_only_on_request(db_app):
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    with database.connection_context():
        add_sample_streams()
    page = client.get(PAGE).get_data(as_text=True)
    assert 'href="/admin/transfer/export.json"' in page
    assert 'href="/admin/transfer/export.json?secrets=1"' in page
    assert "with passwords" in page
    assert 'href="/admin/transfer/"' in client.get("/admin/").get_data(as_text=True)

    plain = client.get("/admin/transfer/export.json")
    assert plain.status_code == 200 and plain.mimetype == "application/json"
    disposition = plain.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and ".json" in disposition
    assert plain.headers["Cache-Control"] == "no-store"
    text = plain.get_data(as_text=True)
    assert CAMERA_PASSWORD not in text and SITE_PASSWORD not in text and '"password"' not in text
    assert len(json.loads(text)["streams"]) == 7
    other = client.get("/admin/transfer/export.json?secrets=yes").get_data(as_text=True)
    assert CAMERA_PASSWORD not in other  # only secrets=1 asks for them
    with database.connection_context():  # every export is recorded, saying what it held
        plain_exports = list(AuditLog.select().where(AuditLog.action == "stream.export"))
        assert len(plain_exports) == 2
        assert {e.detail["include_secrets"] for e in plain_exports} == {False}
        assert plain_exports[0].detail["count"] == 7

    secret = client.get("/admin/transfer/export.json?secrets=1")
    assert secret.status_code == 200
    assert "with-passwords" in secret.headers["Content-Disposition"]
    secret_text = secret.get_data(as_text=True)
    assert CAMERA_PASSWORD in secret_text and SITE_PASSWORD in secret_text
    with database.connection_context():
        entry = (
            AuditLog.select()
            .where(AuditLog.action == "stream.export")
            .order_by(AuditLog.id.desc())
            .first()
        )
        assert entry.user.username == "alice" and entry.detail["include_secrets"] is True
        assert CAMERA_PASSWORD not in json.dumps(entry.detail)

    # Re-importing the secret export over the same streams never shows a password on the page.
    response = upload(client, secret.get_data(), mode="overwrite")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.count(">overwritten</td>") == 8  # 7 streams and the default rule
    assert CAMERA_PASSWORD not in html and SITE_PASSWORD not in html


def test_viewers_get_403_on_the_transfer_pages(app):
    setup_admin(app.test_client(), "alice", PASSWORD)
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    token = csrf_from(viewer.get("/").get_data(as_text=True))
    assert viewer.get(PAGE).status_code == 403
    assert viewer.get("/admin/transfer/export.json").status_code == 403
    assert viewer.get("/admin/transfer/export.json?secrets=1").status_code == 403
    response = viewer.post(
        PAGE,
        data={
            "csrf_token": token,
            "mode": "skip",
            "file": (io.BytesIO(RS_EXPORT.read_bytes()), "x.json"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 403
    with database.connection_context():
        assert Stream.select().count() == 0
        assert not AuditLog.select().where(AuditLog.action == "stream.export").exists()
    anonymous = app.test_client()
    assert anonymous.get("/admin/transfer/export.json").status_code == 302


def test_numbers_too_big_for_the_database_are_reported_per_entry(db_app):
    document = _glimpser_doc(
        {**_camera("Huge count", 5), "retention_max_count": 10**12},
        {**_camera("Huge bytes", 5), "retention_max_bytes": 10**30},
        {**_camera("Fine", 5), "retention_max_bytes": 10**12},
    )
    with database.connection_context():
        report = transfer.import_streams(document, "skip")
        assert not report.failure
        assert [e.outcome for e in report.entries] == ["error", "error", "imported"]
        assert "retention_max_count" in report.entries[0].errors
        assert "retention_max_bytes" in report.entries[1].errors
        assert Stream.get(Stream.name == "Fine").retention_max_bytes == 10**12


@pytest.mark.parametrize("ai_configured", [True, False])
def test_imported_streams_without_analysis_settings_get_a_new_streams_defaults(app, ai_configured):
    """As in the stream form: with AI configured, a new stream describes its changes."""
    data = transfer.load_document(RS_EXPORT.read_bytes())
    with database.connection_context():
        report = transfer.import_streams(data, ai_configured=ai_configured)
        assert report.count("imported") == 5
        assert {s.analysis.get("describe_on_change", False) for s in Stream.select()} == {
            ai_configured
        }
