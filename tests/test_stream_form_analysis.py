"""The analysis settings in the stream form (Flask test client): fields from AnalysisSettings,
masks and region as JSON, validation at the field, AI fields with and without AI configured.

Forms are submitted the way a browser does: every enabled control as rendered (checked boxes
only, disabled controls not at all), with the test's changes on top."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from markupsafe import escape

from glimpser.analysis.schemas import AnalysisSettings
from glimpser.db import database
from glimpser.models import Stream
from tests.helpers import setup_admin

PASSWORD = "correct horse battery"
AI_NOTE = "AI not configured (set GLIMPSER_AI_BASE_URL and GLIMPSER_AI_MODEL)"
AI_FIELDS = (
    "describe_on_change",
    "describe_prompt",
    "describe_every_minutes",
    "daily_token_budget",
)


class _Form(HTMLParser):
    """The controls of the page's stream form as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self.disabled: set[str] = set()
        self.checkboxes: dict[str, bool] = {}
        self._textarea: tuple[str, list[str]] | None = None
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        a = dict(attrs)
        name = a.get("name")
        if tag == "textarea" and name:
            self._textarea = (name, []) if "disabled" not in a else None
            if "disabled" in a:
                self.disabled.add(name)
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in a:
            self.fields.append((self._select, a.get("value", "")))
        elif tag == "input" and name:
            if "disabled" in a:
                self.disabled.add(name)
                return
            kind = a.get("type", "text")
            if kind == "checkbox":
                self.checkboxes[name] = "checked" in a
                if "checked" in a:
                    self.fields.append((name, a.get("value", "on")))
            elif kind not in ("radio", "submit", "button"):
                self.fields.append((name, a.get("value", "")))

    def handle_data(self, data):  # noqa: ANN001
        if self._textarea is not None:
            self._textarea[1].append(data)

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag == "textarea" and self._textarea is not None:
            name, parts = self._textarea
            self.fields.append((name, "".join(parts).removeprefix("\n")))
            self._textarea = None
        elif tag == "select":
            self._select = None


def parse_form(html: str) -> _Form:
    form_html = re.search(r"<form method=\"post\" action=\"/streams/.*?</form>", html, re.S)
    assert form_html, "no stream form on the page"
    parser = _Form()
    parser.feed(form_html.group(0))
    return parser


def submit(client, page_url: str, post_url: str, changes: dict[str, str | None] | None = None):
    """Open the form page, change some controls (None unchecks/removes), submit it."""
    form = parse_form(client.get(page_url).get_data(as_text=True))
    data = dict(form.fields)
    for name, value in (changes or {}).items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return client.post(post_url, data=data)


def stream_named(name: str) -> Stream:
    with database.connection_context():
        return Stream.get(Stream.name == name)


def stream_count() -> int:
    with database.connection_context():
        return Stream.select().count()


def labelled(html: str) -> None:
    labels = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', html))
    for attrs in re.findall(r"<(?:input|select|textarea)\b([^>]*)>", html):
        if 'type="hidden"' in attrs:
            continue
        ident = re.search(r'\bid="([^"]+)"', attrs)
        assert ident and ident.group(1) in labels, attrs


@pytest.fixture
def admin(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


@pytest.fixture
def ai_admin(app_factory):
    """An admin on an app with AI configured (nothing is ever called at that address)."""
    app = app_factory(GLIMPSER_AI_BASE_URL="http://127.0.0.1:9/v1", GLIMPSER_AI_MODEL="m")
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


NEW = {"kind": "video", "name": "Yard", "config.path": "test.mp4"}


def create(client, **changes: str | None):
    return submit(client, "/streams/new?kind=video", "/streams/new", {**NEW, **changes})


def test_the_fieldset_comes_from_the_schema_with_labels(admin):
    html = admin.get("/streams/new").get_data(as_text=True)
    for name, info in AnalysisSettings.model_fields.items():
        assert f'name="analysis.{name}"' in html, name
        assert escape(info.title) in html, info.title
        assert escape(info.description) in html, info.description
    assert 'type="range"' in html and 'min="1"' in html and 'max="100"' in html
    assert '<svg class="shape-layer" viewBox="0 0 1 1" preserveAspectRatio="none"' in html
    assert "masks.js" in html and " style=" not in html and "None" not in html
    labelled(html)
    # The trigger's blank means the default of the kind: 0.5 % for motion, 0.1 % for websites.
    trigger = r'id="f-analysis-trigger-percent"[^>]*placeholder="([^"]+)"'
    assert re.search(trigger, html).group(1) == "0.5"
    website = admin.get("/streams/new?kind=website").get_data(as_text=True)
    assert re.search(trigger, website).group(1) == "0.1"


def test_saving_stores_the_settings_and_the_edit_form_shows_them(admin):
    masks = "[[[0, 0], [0.25, 0], [0.25, 0.1], [0, 0.1]], [[0.5, 0.5], [0.9, 0.6], [0.6, 0.9]]]"
    response = create(
        admin,
        **{
            "analysis.detect": None,  # unchecked
            "analysis.sensitivity": "80",
            "analysis.trigger_percent": "1.5",
            "analysis.masks": masks,
            "analysis.region": "[[0.1, 0.2], [0.9, 0.2], [0.9, 0.8], [0.1, 0.8]]",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    stored = stream_named("Yard").analysis
    assert stored["detect"] is False and stored["sensitivity"] == 80
    assert stored["trigger_percent"] == 1.5
    assert stored["masks"] == [
        [[0, 0], [0.25, 0], [0.25, 0.1], [0, 0.1]],
        [[0.5, 0.5], [0.9, 0.6], [0.6, 0.9]],
    ]
    assert stored["region"] == [[0.1, 0.2], [0.9, 0.2], [0.9, 0.8], [0.1, 0.8]]
    assert AnalysisSettings.model_validate(stored)  # the import/API schema reads it as is

    edit = admin.get(f"/streams/{stream_named('Yard').id}/edit").get_data(as_text=True)
    form = parse_form(edit)
    assert form.checkboxes["analysis.detect"] is False
    assert dict(form.fields)["analysis.sensitivity"] == "80"
    # Shapes drawn by the server, so they show without JavaScript.
    assert '<polygon class="shape-mask" points="0,0 0.25,0 0.25,0.1 0,0.1">' in edit
    assert '<polygon class="shape-mask" points="0.5,0.5 0.9,0.6 0.6,0.9">' in edit
    assert '<polygon class="shape-region" points="0.1,0.2 0.9,0.2 0.9,0.8 0.1,0.8">' in edit


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("analysis.sensitivity", "0", "greater than or equal to 1"),
        ("analysis.trigger_percent", "200", "less than or equal to 100"),
        ("analysis.masks", "not json", "Not valid JSON"),
        ("analysis.masks", "[[[0, 0], [1.5, 0], [1, 1]]]", "Mask 1, point 2: x and y must be"),
        ("analysis.masks", "[[[0, 0], [1, 1]]]", "Mask 1: a shape needs at least 3 points"),
        ("analysis.region", "[[0, 0], [0.5, 0.5]]", "A shape needs at least 3 points"),
        ("analysis.region", '{"x": 1}', "A shape is a list of [x, y] points"),
    ],
)
def test_bad_values_are_refused_at_the_field_and_nothing_is_saved(admin, field, value, message):
    response = create(admin, **{field: value})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    field_id = "f-" + field.replace(".", "-").replace("_", "-")
    error = re.search(rf'<small id="{field_id}-error" class="error">([^<]*)</small>', html)
    assert error and message in error.group(1), html
    assert re.search(rf'id="{field_id}"[^>]*aria-invalid="true"', html, re.S)
    if field in ("analysis.masks", "analysis.region"):
        assert value.replace('"', "&#34;") in html  # what was typed comes back to be corrected
    assert stream_count() == 0


def test_a_bad_edit_changes_nothing(admin):
    create(admin, **{"analysis.sensitivity": "70", "analysis.masks": "[[[0,0],[1,0],[1,1]]]"})
    stream = stream_named("Yard")
    url = f"/streams/{stream.id}/edit"
    response = submit(
        admin, url, url, {"analysis.sensitivity": "20", "analysis.region": "[[0, 0], [2, 2]]"}
    )
    assert response.status_code == 422
    after = stream_named("Yard").analysis
    assert after["sensitivity"] == 70 and after["region"] is None
    assert after["masks"] == [[[0, 0], [1, 0], [1, 1]]]


def test_editing_keeps_every_value(admin):
    create(
        admin,
        **{
            "analysis.sensitivity": "33",
            "analysis.trigger_percent": "2",
            "analysis.masks": "[[[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]]]",
            "analysis.region": "[[0, 0], [1, 0], [1, 0.5]]",
        },
    )
    before = stream_named("Yard")
    url = f"/streams/{before.id}/edit"
    assert submit(admin, url, url).status_code == 302
    assert stream_named("Yard").analysis == before.analysis
    # Unchecking the box is stored (an unchecked box posts nothing).
    submit(admin, url, url, {"analysis.detect": None})
    assert stream_named("Yard").analysis["detect"] is False
    # Clearing the shapes (blank text) removes them; the trigger blank means the default again.
    submit(
        admin,
        url,
        url,
        {"analysis.masks": "", "analysis.region": "", "analysis.trigger_percent": ""},
    )
    after = stream_named("Yard").analysis
    assert after["masks"] == [] and after["region"] is None and after["trigger_percent"] is None


def test_a_post_without_the_fieldset_keeps_the_settings(admin):
    """Clients that post only the stream fields (older forms, scripts) change no analysis."""
    create(admin, **{"analysis.sensitivity": "90"})
    stream = stream_named("Yard")
    from tests.helpers import form_post

    url = f"/streams/{stream.id}/edit"
    response = form_post(admin, url, data={**NEW, "interval": "45", "enabled": "1"})
    assert response.status_code == 302
    assert stream_named("Yard").interval == 45
    assert stream_named("Yard").analysis == stream.analysis


def test_without_ai_the_ai_fields_are_disabled_and_their_values_kept(admin):
    html = admin.get("/streams/new").get_data(as_text=True)
    assert AI_NOTE in html
    form = parse_form(html)
    assert {f"analysis.{n}" for n in AI_FIELDS} <= form.disabled
    assert form.checkboxes.get("analysis.describe_on_change") is None  # disabled, not offered
    assert create(admin).status_code == 302
    assert stream_named("Yard").analysis["describe_on_change"] is False
    # Values stored while AI was configured (or imported) survive a save without AI.
    stream = stream_named("Yard")
    kept = {
        "describe_on_change": True,
        "describe_prompt": "Note vehicles.",
        "describe_every_minutes": 30,
        "daily_token_budget": 5000,
    }
    with database.connection_context():
        Stream.update(analysis={**stream.analysis, **kept}).where(Stream.id == stream.id).execute()
    url = f"/streams/{stream.id}/edit"
    edit = admin.get(url).get_data(as_text=True)
    assert AI_NOTE in edit and "Note vehicles." in edit
    assert re.search(r'id="f-analysis-describe-on-change"[^>]*checked[^>]*disabled', edit, re.S)
    assert submit(admin, url, url, {"analysis.sensitivity": "10"}).status_code == 302
    after = stream_named("Yard").analysis
    assert after["sensitivity"] == 10
    assert {k: after[k] for k in kept} == kept


def test_with_ai_new_streams_describe_on_change_by_default(ai_admin):
    html = ai_admin.get("/streams/new").get_data(as_text=True)
    assert "AI not configured" not in html
    form = parse_form(html)
    assert form.checkboxes["analysis.describe_on_change"] is True
    assert not {f"analysis.{n}" for n in AI_FIELDS} & form.disabled
    response = create(
        ai_admin,
        **{"analysis.describe_prompt": "Count the cars.", "analysis.daily_token_budget": "1000"},
    )
    assert response.status_code == 302
    stored = stream_named("Yard").analysis
    assert stored["describe_on_change"] is True and stored["describe_prompt"] == "Count the cars."
    assert stored["daily_token_budget"] == 1000
    # Editing keeps the stored choice: switched off, it stays off.
    url = f"/streams/{stream_named('Yard').id}/edit"
    submit(ai_admin, url, url, {"analysis.describe_on_change": None})
    assert stream_named("Yard").analysis["describe_on_change"] is False
    assert (
        parse_form(ai_admin.get(url).get_data(as_text=True)).checkboxes[
            "analysis.describe_on_change"
        ]
        is False
    )
    # A budget left blank means the global one again.
    submit(ai_admin, url, url, {"analysis.daily_token_budget": ""})
    assert stream_named("Yard").analysis["daily_token_budget"] is None
