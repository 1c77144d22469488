"""Hostile values in every form and query parameter of every route: never a 5xx.

Two sweeps, as an admin and as a viewer:
- every route and method (from app.url_map) with every parameter name the app knows (read
  from its source, its templates and its rendered forms) set to one hostile value at once;
- every form the app renders, filled as rendered, with one field at a time set to a hostile
  value (so the value gets past the other fields' checks to the code that reads it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lxml.html
import pytest
from rq.job import Job
from werkzeug.datastructures import MultiDict
from werkzeug.routing import IntegerConverter

from glimpser.auth.users import create_user, make_set_password_link
from glimpser.db import database
from glimpser.models import (
    Delivery,
    Event,
    NotificationChannel,
    Rule,
    StreamAccess,
    Summary,
    Timelapse,
    User,
)
from glimpser.queues import get_queue
from tests.helpers import PASSWORD, add_stream, csrf_from, login, setup_admin

ROOT = Path(__file__).resolve().parent.parent
NESTED_JSON = "[" * 50_000 + "]" * 50_000
HOSTILE = [
    "²",
    "٣",
    "１",
    str(2**63),
    str(2**64 + 1),
    "-1",
    "0",
    "0001-01-01T00:00",
    "9999-12-31T23:59",
    "10000-01-01T00:00",
    "0001-01-01T00:00+01:00",
    "\r\n",
    "a\x00b",
    "/%09/evil.example/",
    "1e400",
    "nan",
    f"20240101T000000.000000Z_{2**64}",  # a cursor with an id beyond 64 bits
    "00010101T000000.000000Z_1",
    "20240101T000000.000000Z_٣",
]
BIG = ["x" * 100_000, NESTED_JSON]
SKIP = {"auth.logout", "live.feed", "static"}  # sign-out ends the sweep; the feed never ends
# A new password or set-password link for user 1 (the sweeping admin) would sign them out, as
# sign-out does; both forms get hostile values in tests/test_admin_users.py.
SKIP |= {"admin_users.reset_password", "admin_users.new_link"}
LAST = ("delete", "remove", "unsubscribe")  # destructive: after everything else


def known_names(app, pages: list[str]) -> set[str]:
    """Every parameter name the source reads or a template or rendered page posts."""
    names: set[str] = set()
    for path in (ROOT / "glimpser").rglob("*.py"):
        text = path.read_text()
        names |= set(re.findall(r"(?:args|form)\.(?:get|getlist)\(\s*\"([^\"]+)\"", text))
        names |= set(re.findall(r"(?:args|form)\[\"([^\"]+)\"\]", text))
        # helpers that take the name: _int_arg("after"), _choice(args, "kind", ...)
        names |= set(re.findall(r"_(?:int_arg|choice)\((?:args, )?\"([^\"]+)\"", text))
    for path in (ROOT / "templates").rglob("*.html"):
        names |= set(re.findall(r'name="([^"{}]+)"', path.read_text()))
    names |= {name for page in pages for name in re.findall(r'name="([^"]+)"', page)}
    return names - {"csrf_token"}


@pytest.fixture
def world(app):
    """An admin and a viewer, with one of everything (a timelapse starting in year 1, too)."""
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    stream = add_stream("Garden", groups=["yard"])
    with database.connection_context():
        viewer_user = create_user("bob", PASSWORD, "viewer")
        StreamAccess.create(user=viewer_user, stream=stream)
        alice = User.get(User.username == "alice")
        event = Event.create(stream=stream, kind="motion", title="Motion")
        Rule.create(name="Rule")
        channel = NotificationChannel.create(
            name="Hook", kind="webhook", config={"kind": "webhook", "url": "https://192.0.2.1/"}
        )
        Delivery.create(event=event, channel=channel)
        now = datetime.now(UTC)
        Summary.create(
            stream=stream, period="hour", window_start=now - timedelta(hours=1), window_end=now
        )
        Timelapse.create(
            stream=stream,
            requested_by=alice,
            range_start=datetime(1, 1, 1, tzinfo=UTC),
            range_end=datetime(1, 1, 2, tzinfo=UTC),
        )
        token = make_set_password_link(viewer_user.id)
    # A failed job, so that Admin → System renders its retry and delete forms.
    connection = app.extensions["glimpser.redis"]
    failed = Job.create("glimpser.jobs.build_timelapse", args=(1,), connection=connection)
    failed.origin = "maintenance"
    failed.save()
    get_queue("maintenance", connection).failed_job_registry.add(failed, exc_string="E")
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    return {"admin": admin, "viewer": viewer, "pages": [f"/account/set-password/{token}"]}


def routes(app) -> list[tuple[str, str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SKIP:
            continue
        values = {
            arg: 1 if isinstance(rule._converters[arg], IntegerConverter) else "x"
            for arg in rule.arguments
        }
        url = rule.build(values, append_unknown=False)[1]
        for method in sorted((rule.methods or set()) - {"OPTIONS", "HEAD"}):
            out.append((rule.endpoint, method, url))
    return sorted(out, key=lambda r: any(word in r[0] for word in LAST))


FORM_PAGES = [
    "/streams/new?kind=rtsp",
    "/streams/new?kind=http_image",
    "/streams/new?kind=website",
    "/streams/1/edit",
    "/streams/1/delete",
    "/streams/1",
    "/events",
    "/summaries/",
    "/streams/1/timelapses",
    "/admin/rules/new",
    "/admin/rules/1/edit",
    "/admin/channels/new?kind=webhook",
    "/admin/channels/new?kind=email",
    "/admin/channels/1/edit",
    "/admin/transfer/",
    "/profile/api-keys",
    "/admin/api-keys/",
    "/admin/system/",
    "/admin/settings/",
    "/profile/",
    "/admin/sessions/",
    "/admin/users/new",
    "/admin/users/2",
    "/admin/users/2/delete",
    "/admin/audit/",
]


def rendered_forms(client, pages: list[str]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(method, action, fields as rendered) of every form on the pages."""
    forms = []
    for page in pages:
        response = client.get(page)
        if response.status_code != 200:
            continue
        doc = lxml.html.fromstring(response.get_data(as_text=True))
        for form in doc.forms:
            action = form.get("action") or form.get("hx-post") or page
            forms.append((form.method.upper(), action, list(form.form_values())))
    return forms


def check(response, *where) -> None:  # noqa: ANN001
    assert response.status_code < 500, (response.status_code, *where)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_no_hostile_parameter_gives_a_5xx(app, world, role):
    client = world[role]
    token = csrf_from(client.get("/").get_data(as_text=True))
    # The names an admin's pages post: a viewer may send them as well.
    pages = [world["admin"].get(p).get_data(as_text=True) for p in FORM_PAGES + world["pages"]]
    names = sorted(known_names(app, pages))
    assert {"next", "stream", "before", "after", "scope", "analysis.masks"} <= set(names)
    for endpoint, method, url in routes(app):
        for value in HOSTILE:
            data = dict.fromkeys(names, value)
            if method == "GET":
                response = client.get(url, query_string=data)
            else:
                response = client.open(
                    url, method=method, data=data, headers={"X-CSRFToken": token}
                )
            check(response, endpoint, method, repr(value))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_no_hostile_field_in_a_rendered_form_gives_a_5xx(app, world, role):
    client = world[role]
    forms = rendered_forms(client, FORM_PAGES + world["pages"])
    assert len(forms) >= (10 if role == "admin" else 3)
    forms.sort(key=lambda f: any(word in f[1] for word in LAST))
    for method, action, fields in forms:
        if "/logout" in action:
            continue
        for index, (name, _value) in enumerate(fields):
            if name == "csrf_token":
                continue
            for value in HOSTILE + BIG:
                data = MultiDict(
                    [(n, value if i == index else v) for i, (n, v) in enumerate(fields)]
                )
                if method == "GET":
                    response = client.get(action, query_string=data)
                else:
                    response = client.post(action, data=data)
                check(response, method, action, name, repr(value[:40]))


@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_a_timelapse_of_the_year_1_lists_and_deletes(app, world, role):
    client = world[role]
    panel = client.get("/streams/1/timelapses")
    assert panel.status_code == 200
    assert "0001-01-01" in panel.get_data(as_text=True)
    if role == "admin":
        token = csrf_from(client.get("/").get_data(as_text=True))
        response = client.post("/streams/1/timelapses/1/delete", headers={"X-CSRFToken": token})
        assert response.status_code in (200, 302, 303)
        with database.connection_context():
            assert not Timelapse.select().exists()
