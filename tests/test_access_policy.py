"""Deny by default, checked over every route the app serves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from werkzeug.routing import IntegerConverter, Rule

from glimpser.auth.policy import PUBLIC_ENDPOINTS, SIGNED_ENDPOINTS
from glimpser.auth.users import create_user
from glimpser.db import database
from tests.helpers import csrf_from, login, setup_admin

PASSWORD = "correct horse battery"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def concrete_requests(app) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every rule and method, with placeholder arguments."""
    out = []
    for rule in app.url_map.iter_rules():
        values = {
            arg: 1 if isinstance(rule._converters[arg], IntegerConverter) else "x"
            for arg in rule.arguments
        }
        url = rule.build(values, append_unknown=False)[1]
        for method in sorted((rule.methods or set()) - {"OPTIONS", "HEAD"}):
            out.append((rule.endpoint, method, url))
    return out


def test_every_route_is_refused_to_anonymous_users_except_the_allow_list(app):
    setup_admin(app.test_client(), "alice", PASSWORD)  # setup closed: /setup now refuses too
    client = app.test_client()
    checked = 0
    for endpoint, method, url in concrete_requests(app):
        response = client.open(url, method=method)
        if endpoint in PUBLIC_ENDPOINTS:
            continue
        checked += 1
        if url.startswith("/api/"):
            # The JSON API: a key or nothing; no redirect to a sign-in page.
            assert response.status_code == 401, (endpoint, method, url, response.status_code)
            assert response.mimetype == "application/problem+json", (endpoint, url)
        elif endpoint in SIGNED_ENDPOINTS:
            # No session needed, but a valid signature: without one, refused outright.
            assert response.status_code == 403, (endpoint, method, url, response.status_code)
        elif method == "GET":
            assert response.status_code == 302, (endpoint, url, response.status_code)
            assert response.headers["Location"].startswith("/login"), (endpoint, url)
        else:
            # Refused before the view runs: CSRF (400) or authentication (401).
            assert response.status_code in (400, 401), (endpoint, method, url, response.status_code)
    assert checked >= 3


def test_non_get_requests_with_a_valid_token_are_still_refused_to_anonymous_users(app):
    setup_admin(app.test_client(), "alice", PASSWORD)
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    for endpoint, method, url in concrete_requests(app):
        if endpoint in PUBLIC_ENDPOINTS or method == "GET":
            continue
        response = client.open(url, method=method, headers={"X-CSRFToken": token})
        assert response.status_code == 401, (endpoint, method, url)


def test_signed_endpoints_are_get_only_and_check_the_signature_first(app):
    # A signed endpoint that took other methods would bypass the viewer write rules.
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SIGNED_ENDPOINTS:
            assert rule.methods <= {"GET", "HEAD", "OPTIONS"}, rule
    client = app.test_client()
    assert client.get("/pictures/1/2026/01/01/000000.000000-0a1b2c3d4e5f.jpg").status_code == 403


def test_allow_list_is_reachable_anonymously(app):
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/setup").status_code == 200
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/sw.js").status_code == 200
    setup_admin(app.test_client(), "alice", PASSWORD)
    assert client.get("/login").status_code == 200


def test_viewers_get_403_on_every_admin_route(app):
    setup_admin(app.test_client(), "alice", PASSWORD)
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    token = csrf_from(viewer.get("/").get_data(as_text=True))
    admin_routes = [(e, m, u) for e, m, u in concrete_requests(app) if u.startswith("/admin")]
    assert admin_routes
    for endpoint, method, url in admin_routes:
        response = viewer.open(url, method=method, headers={"X-CSRFToken": token})
        assert response.status_code == 403, (endpoint, method, url)


def test_viewers_cannot_change_state_outside_the_viewer_allow_list(app):
    from flask import Blueprint

    # A new endpoint that nobody opened up: viewers may read it but not post to it.
    bp = Blueprint("probe", __name__)
    bp.add_url_rule("/probe", "probe", lambda: "ok", methods=["GET", "POST"])
    app.register_blueprint(bp)
    setup_admin(app.test_client(), "alice", PASSWORD)
    with database.connection_context():
        create_user("bob", PASSWORD, "viewer")
    viewer = app.test_client()
    login(viewer, "bob", PASSWORD)
    token = csrf_from(viewer.get("/").get_data(as_text=True))
    assert viewer.get("/probe").status_code == 200
    assert viewer.post("/probe", headers={"X-CSRFToken": token}).status_code == 403


def test_admin_reaches_the_admin_area(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    page = client.get("/admin/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "System status" in html and "alice" in html


@pytest.mark.parametrize("path", ["/", "/login", "/healthz", "/no-such-page", "/static/app.css"])
def test_security_headers_on_every_response(client, path):
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"]


def test_friendly_error_pages(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert "Not found" in missing.get_data(as_text=True)
    assert "<html" in missing.get_data(as_text=True)
    wrong_method = client.put("/healthz")
    assert wrong_method.status_code == 405
    too_big = app.test_client().post(
        "/login", data="x" * (17 * 1024 * 1024), content_type="application/x-www-form-urlencoded"
    )
    assert too_big.status_code == 413


def test_unexpected_errors_render_a_500_page_without_details(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    app.config["TESTING"] = False
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get("/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Something went wrong" in response.get_data(as_text=True)


def test_templates_have_no_inline_scripts_or_styles():
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
    inline_handlers = re.compile(r"\son[a-z]+\s*=", re.I)
    style_attr = re.compile(r"\sstyle\s*=|<style", re.I)
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        assert not inline_script.search(text), path
        assert not inline_handlers.search(text), path
        assert not style_attr.search(text), path


def test_every_form_control_has_a_label(app):
    client = app.test_client()
    pages = [client.get("/setup").get_data(as_text=True)]
    setup_admin(client, "alice", PASSWORD)
    pages += [client.get("/").get_data(as_text=True), client.get("/admin/").get_data(as_text=True)]
    logged_out = app.test_client()
    pages.append(logged_out.get("/login").get_data(as_text=True))
    control = re.compile(r"<(input|select|textarea)\b([^>]*)>", re.I)
    for html in pages:
        labels_for = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', html))
        for _tag, attrs in control.findall(html):
            if 'type="hidden"' in attrs:
                continue
            ident = re.search(r'\bid="([^"]+)"', attrs)
            assert ident and ident.group(1) in labels_for or "aria-label=" in attrs, attrs


def test_rule_placeholders_cover_every_argument(app):
    # Guards the walker above: a rule it cannot build would silently drop out of the checks.
    built = {endpoint for endpoint, _m, _u in concrete_requests(app)}
    assert built == {rule.endpoint for rule in app.url_map.iter_rules() if isinstance(rule, Rule)}
