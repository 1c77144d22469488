"""Source URLs with secrets in them stay out of what viewers and exports see: the last error
of a stream and an export without secrets show the URL with its password and query tokens
masked (glimpser.sources.redaction)."""

from __future__ import annotations

import json

import pytest

from glimpser import transfer
from glimpser.capture.run import run_capture
from glimpser.db import database
from glimpser.models import NotificationChannel, Stream
from glimpser.sources.redaction import redact_url, redact_urls

TOKEN = "tok-SECRET-7f3a9c"


def test_redact_url_masks_userinfo_and_token_like_query_values():
    assert redact_url(f"http://u:pw@cam/s.jpg?token={TOKEN}&size=2") == (
        "http://u:***@cam/s.jpg?token=***&size=2"
    )
    assert redact_url(f"https://x/y?api_key={TOKEN}&Signature={TOKEN}&a=1") == (
        "https://x/y?api_key=***&Signature=***&a=1"
    )
    assert redact_url("http://cam/s.jpg?size=2") == "http://cam/s.jpg?size=2"
    text = f"http://h/a.m3u8?auth={TOKEN}: Server returned 404 Not Found"
    assert redact_urls(text) == "http://h/a.m3u8?auth=***: Server returned 404 Not Found"


def test_redact_urls_is_linear_on_huge_input():
    # 150,000 characters of one "URL" and of many: done at once, no catastrophic backtracking.
    assert redact_urls("http://" + "a" * 150_000).startswith("http://a")
    assert "key=1" not in redact_urls("http://x/?key=1 " * 10_000)


@pytest.mark.slow
def test_last_error_holds_no_query_token(capture_app, media_server):
    url = f"{media_server.url}/hls/missing.m3u8?token={TOKEN}"
    with database.connection_context():
        stream = Stream.create(
            name="Tokened",
            kind="video",
            config={"kind": "video", "url": url, "timeout": 10},
        )
        outcome = run_capture(stream.id, capture_app.extensions["glimpser.settings"])
        stored = Stream.get_by_id(stream.id)
    assert not outcome.ok
    assert stored.last_error, "the capture should have failed with a message"
    assert TOKEN not in stored.last_error and TOKEN not in outcome.error
    assert "404" in stored.last_error


def test_export_without_secrets_holds_no_token_and_imports_back(app):
    url = f"http://192.168.1.20/snapshot.jpg?token={TOKEN}&size=2"
    hook = f"https://hooks.example.com/in?key={TOKEN}"
    with database.connection_context():
        Stream.create(name="Cam", kind="http_image", config={"kind": "http_image", "url": url})
        NotificationChannel.create(
            name="Hook", kind="webhook", config={"kind": "webhook", "url": hook}
        )
        plain = transfer.dumps_document(transfer.export_streams())
        full = transfer.dumps_document(transfer.export_streams(include_secrets=True))
        assert TOKEN not in plain
        assert TOKEN in full
        exported = json.loads(plain)["streams"][0]["config"]["url"]
        assert exported == "http://192.168.1.20/snapshot.jpg?token=***&size=2"
        # Importing the export back over the same stream keeps the real URL.
        report = transfer.import_streams(json.loads(plain), "overwrite")
        assert report.entries[0].outcome in ("updated", "overwritten"), report.entries[0]
        assert Stream.get(Stream.name == "Cam").config["url"] == url
        assert NotificationChannel.get(NotificationChannel.name == "Hook").config["url"] == hook
