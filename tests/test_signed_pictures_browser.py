"""Signed picture URLs in a real browser (GLIMPSER_SIGNED_PICTURES=1), against gunicorn, a
worker and the scheduler: the camera wall, the stream page's latest picture and its history
viewer all show pictures through /pictures/ URLs, which load (decoded by Chromium), carry no
session cookie back, and work with no cookie at all; no console error or CSP violation."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import start_live_stack, stop_live_stack
from tests.helpers import first_run_in_browser, s3_presigned_settings
from tests.media_servers import jpeg
from tests.test_console_wall_browser import add_stream

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def signed_stack(tmp_path, redis_url, redis_client, media_root):
    stack = start_live_stack(
        tmp_path / "signed-data", redis_url, media_root, GLIMPSER_SIGNED_PICTURES="1"
    )
    yield stack
    stop_live_stack(stack)


def _loaded(page: Page, selector: str) -> None:
    """Every <img> matching `selector` is a signed URL that the browser fetched and decoded."""
    images = page.locator(selector)
    expect(images.first).to_be_visible(timeout=60_000)
    for img in images.all():
        expect(img).to_have_attribute("src", re.compile(r"^/pictures/.+\?md5="))
        expect(img).to_have_js_property("complete", True)
        assert img.evaluate("i => i.naturalWidth") > 0


def test_pages_show_signed_pictures_in_a_browser(signed_stack, page: Page, camera):
    _check_pages(signed_stack, page, camera)


def test_on_s3_the_browser_fetches_presigned_pictures_from_the_bucket(
    tmp_path, redis_url, redis_client, media_root, request, page: Page, camera
):
    """With GLIMPSER_S3_PRESIGNED_PICTURES each signed URL redirects to the bucket, which the
    page's Content-Security-Policy allows; the pictures still load and show."""
    endpoint = request.getfixturevalue("moto_endpoint")  # moto's real server
    bucket = request.getfixturevalue("s3_bucket")  # and the AWS_* test credentials
    stack = start_live_stack(
        tmp_path / "s3-data",
        redis_url,
        media_root,
        **s3_presigned_settings(endpoint, bucket),
    )
    from_bucket: list[int] = []
    page.on(
        "response",
        lambda r: from_bucket.append(r.status) if r.url.startswith(endpoint) else None,
    )
    try:
        _check_pages(stack, page, camera, redirected=True)
    finally:
        stop_live_stack(stack)
    assert from_bucket and set(from_bucket) == {200}, from_bucket


def _check_pages(stack, page: Page, camera, redirected: bool = False) -> None:  # noqa: ANN001
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    pictures: list[tuple[int, dict, str]] = []
    page.on(
        "response",
        lambda r: pictures.append((r.status, r.headers, r.url)) if "/pictures/" in r.url else None,
    )
    camera.state.picture = jpeg((40, 120, 90), size=(640, 360), label="signed")
    url = stack.url
    first_run_in_browser(page, url)
    add_stream(page, url, "Gate", f"{camera.url}/snapshot.jpg", 300)

    # The stream page shows the first capture (its status block refreshes itself).
    expect(page.locator("#history img").first).to_be_visible(timeout=90_000)
    page.reload()
    _loaded(page, "#stream-status .snapshot-frame img")
    _loaded(page, "#history img")
    # The history viewer opens the full picture by the thumbnail's signed link.
    page.locator("#history a.thumb").first.click()
    viewer = page.locator("#viewer img")
    expect(viewer).to_be_visible()
    expect(viewer).to_have_js_property("complete", True)
    assert viewer.evaluate("i => i.naturalWidth") == 640

    page.goto(url + "/")
    _loaded(page, "#dashboard-grid img")

    statuses = {status for status, _, _ in pictures}
    if redirected:
        # Each picture is redirected to the bucket; Chromium may show a picture again from its
        # memory cache, which it reports as a 200 of the page's URL.
        assert 302 in statuses and statuses <= {200, 302}, pictures
    else:
        assert pictures and statuses == {200}, pictures
    assert not any("set-cookie" in headers for _, headers, _ in pictures)
    # The URL alone is the credential: no cookie, still the picture.
    src = page.locator("#dashboard-grid img").first.get_attribute("src")
    response = requests.get(url + src, timeout=30)  # follows a redirect to the bucket
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
    assert errors == [], errors


from tests.test_storage import aws_env, moto_endpoint, s3_bucket  # noqa: E402, F401
