"""Masks and the region of interest drawn on a stream's snapshot in a real browser (Debian
Chromium against gunicorn): drag a rectangle mask, click a polygon region, save, and the stored
settings hold the shapes as fractions of the picture where they were drawn. A new stream is
drawn on its test capture."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from glimpser import create_app
from glimpser.config import load_settings
from glimpser.db import database
from glimpser.models import Stream
from tests.helpers import add_snapshot, add_stream, first_run_in_browser
from tests.media_servers import jpeg

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# Geometry, not time: a pixel of the drawn picture is well under this share of it.
TOLERANCE = 0.01


@pytest.fixture
def site(live_server):
    """The live server, and an app on the same database and storage to insert data with."""
    app = create_app(load_settings(live_server.env))
    return live_server, app


def assert_shape(actual: list[list[float]], expected: list[tuple[float, float]]) -> None:
    assert len(actual) == len(expected), actual
    for (x, y), (ex, ey) in zip(actual, expected, strict=True):
        assert x == pytest.approx(ex, abs=TOLERANCE) and y == pytest.approx(ey, abs=TOLERANCE), (
            actual
        )


def at(page: Page, image, fx: float, fy: float) -> tuple[float, float]:  # noqa: ANN001
    """A point of the picture as page coordinates (a click on a button may scroll the page)."""
    image.evaluate("img => img.scrollIntoView({block: 'center'})")
    box = image.bounding_box()
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def drag(page: Page, image, start: tuple[float, float], end: tuple[float, float]) -> None:  # noqa: ANN001
    page.mouse.move(*at(page, image, *start))
    page.mouse.down()
    page.mouse.move(*at(page, image, *end), steps=8)
    page.mouse.up()


def stored_analysis(stream_id: int) -> dict:
    with database.connection_context():
        return Stream.get_by_id(stream_id).analysis


def test_draw_a_mask_and_a_region_on_the_snapshot(site, page: Page):
    server, app = site
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    first_run_in_browser(page, server.url)
    stream = add_stream("Driveway", enabled=False, state="paused")  # nothing captures meanwhile
    add_snapshot(app, stream, jpeg((30, 90, 160), size=(640, 360)))
    edit_url = f"{server.url}/streams/{stream.id}/edit"
    page.goto(edit_url)

    image = page.locator("[data-shape-surface] img")
    expect(image).to_be_visible()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    # With JavaScript the JSON text is folded away and the drawing tools are there instead.
    expect(page.get_by_label("Masks", exact=True)).to_be_hidden()
    expect(page.get_by_role("button", name="Finish polygon")).to_be_disabled()

    shapes = page.locator("[data-shape-list]")
    drag(page, image, (0.1, 0.2), (0.4, 0.5))
    expect(shapes).to_contain_text("Mask 1 (rectangle)")
    drag(page, image, (0.7, 0.7), (0.8, 0.9))  # a second one, removed again
    page.get_by_role("button", name="Remove mask 2").click()
    expect(page.locator("[data-shape-layer] polygon.shape-mask")).to_have_count(1)

    page.get_by_role("button", name="Draw the region of interest").click()
    for point in ((0.5, 0.1), (0.9, 0.1), (0.9, 0.6)):
        page.mouse.click(*at(page, image, *point))
    page.mouse.dblclick(*at(page, image, 0.6, 0.7))  # the last point, and the polygon is closed
    expect(shapes).to_contain_text("Region of interest (polygon, 4 points)")
    expect(page.locator("[data-shape-layer] polygon.shape-region")).to_have_count(1)

    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Driveway")).to_be_visible()
    analysis = stored_analysis(stream.id)
    assert len(analysis["masks"]) == 1
    assert_shape(analysis["masks"][0], [(0.1, 0.2), (0.4, 0.2), (0.4, 0.5), (0.1, 0.5)])
    assert_shape(analysis["region"], [(0.5, 0.1), (0.9, 0.1), (0.9, 0.6), (0.6, 0.7)])

    # Reloaded, the form shows them again (drawn by the server, listed by the script).
    page.goto(edit_url)
    expect(page.locator("[data-shape-layer] polygon.shape-mask")).to_have_count(1)
    expect(page.locator("[data-shape-layer] polygon.shape-region")).to_have_count(1)
    expect(shapes).to_contain_text("Mask 1 (rectangle)")
    expect(shapes).to_contain_text("Region of interest (polygon, 4 points)")
    assert not errors, errors


def test_a_new_stream_is_drawn_on_its_test_capture(live_stack, page: Page, camera):
    first_run_in_browser(page, live_stack.url)
    page.goto(live_stack.url + "/streams/new")
    # A blank trigger means the kind's default, shown as the placeholder: websites 0.1 %.
    trigger = page.get_by_label("Changed when at least (% of the picture)")
    page.get_by_label("Kind of source").select_option("website")
    expect(trigger).to_have_attribute("placeholder", "0.1")
    page.get_by_label("Kind of source").select_option("http_image")
    expect(trigger).to_have_attribute("placeholder", "0.5")
    page.get_by_label("Name", exact=True).fill("Gate")
    page.get_by_label("Image URL", exact=True).fill(f"{camera.url}/snapshot.jpg")
    surface = page.locator("[data-shape-surface]")
    expect(surface).to_contain_text("Test capture")  # nothing to draw on yet
    page.get_by_role("button", name="Test capture").click()
    image = surface.get_by_role("img", name="Test capture, to draw masks and the region on")
    expect(image).to_be_visible(timeout=45_000)
    drag(page, image, (0.6, 0.1), (0.9, 0.3))
    expect(page.locator("[data-shape-list]")).to_contain_text("Mask 1 (rectangle)")
    page.get_by_role("button", name="Create stream").click()
    expect(page.get_by_role("heading", name="Gate")).to_be_visible()
    stream_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    create_app(load_settings(live_stack.env))  # binds the database of the stack
    analysis = stored_analysis(stream_id)
    assert_shape(analysis["masks"][0], [(0.6, 0.1), (0.9, 0.1), (0.9, 0.3), (0.6, 0.3)])
    assert analysis["region"] is None
