"""Accessibility: every main page, opened as an admin in Chromium, checked by axe-core
(tests/vendor/axe.min.js, see the README there) in the light and the dark colour scheme.
The test fails on any serious or critical violation and lists them all."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from glimpser import create_app, times
from glimpser.auth.users import create_user
from glimpser.config import load_settings
from glimpser.db import database
from glimpser.models import Event, NotificationChannel, Rule, Summary, User
from tests.helpers import add_snapshot, add_stream, first_run_in_browser
from tests.media_servers import jpeg

pytestmark = [pytest.mark.slow, pytest.mark.browser]

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
# Only what axe reports as serious or critical fails the test.
FAILING = ("serious", "critical")

RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter(v => ["serious", "critical"].includes(v.impact))
    .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                 nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + " :: " +
                                                   n.failureSummary.replace(/\\s+/g, " ")) }));
}"""


def seed(app) -> dict[str, int]:
    """One of everything a main page shows: a stream with pictures, an event, a summary, a
    rule, a channel and a second user."""
    stream = add_stream("Garden", groups=["outdoor"])
    snap = add_snapshot(app, stream, jpeg((40, 120, 60), size=(640, 360)), seconds_ago=90)
    add_snapshot(app, stream, jpeg((60, 140, 80), size=(640, 360)))
    now = times.utcnow()
    with database.connection_context():
        event = Event.create(stream=stream, snapshot=snap, kind="motion", title="A fox")
        summary = Summary.create(
            stream=stream,
            stream_ids=[stream.id],
            period="hour",
            window_start=now - timedelta(hours=1),
            window_end=now,
            status="done",
            text="A quiet hour; a fox crossed the lawn.",
        )
        channel = NotificationChannel.create(
            name="Ops", kind="webhook", config={"url": "http://192.0.2.1/hook"}
        )
        rule = Rule.create(name="Motion", conditions={"changed": True}, channels=[channel.id])
        bob = create_user("bob", "correct horse battery", "viewer")
        admin = User.get(User.username == "alice")
    return {
        "stream": stream.id,
        "event": event.id,
        "summary": summary.id,
        "channel": channel.id,
        "rule": rule.id,
        "bob": bob.id,
        "alice": admin.id,
    }


def pages(ids: dict[str, int]) -> list[str]:
    s = ids["stream"]
    return [
        "/",
        "/streams/",
        f"/streams/{s}",
        f"/streams/{s}/live",
        f"/streams/{s}/edit",
        "/streams/new",
        "/events",
        f"/events/{ids['event']}",
        "/summaries/",
        f"/summaries/{ids['summary']}",
        "/profile/",
        "/admin/",
        "/admin/users/",
        f"/admin/users/{ids['bob']}",
        "/admin/sessions/",
        "/admin/settings/",
        "/admin/system/",
        "/admin/audit/",
        "/admin/rules/",
        "/admin/rules/new",
        f"/admin/rules/{ids['rule']}/edit",
        "/admin/channels/",
        "/admin/channels/new",
        f"/admin/channels/{ids['channel']}/edit",
        "/admin/deliveries/",
        "/admin/api-keys/",
        "/admin/backups/",
        "/admin/updates/",
        "/profile/api-keys",
    ]


def test_every_main_page_has_no_serious_accessibility_violation(live_server, browser: Browser):
    app = create_app(load_settings(live_server.env))
    # The injected axe script is not in the app's CSP: this test-only context bypasses it.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    first_run_in_browser(page, live_server.url)
    ids = seed(app)
    found: list[str] = []
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for path in pages(ids):
            response = page.goto(live_server.url + path)
            assert response is not None and response.status == 200, path
            page.wait_for_load_state("networkidle")
            page.add_script_tag(path=str(AXE))
            for v in page.evaluate(RUN_AXE):
                nodes = "\n      ".join(v["nodes"])
                found.append(
                    f"{scheme} {path}: [{v['impact']}] {v['id']}: {v['help']}\n      {nodes}"
                )
    context.close()
    assert not found, "axe-core found serious/critical violations:\n" + "\n".join(found)


# Reported in the page (CSP violations do not always reach the console).
WATCH_CSP = """() => {
  window.__cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI || "inline"}`);
  });
}"""


def test_no_page_logs_an_error_or_violates_the_csp(live_server, browser: Browser):
    """Every main page, as the app serves it (CSP enforced), in a phone and a desktop width:
    no console error, no CSP violation, also after the page's own scripts and htmx ran."""
    app = create_app(load_settings(live_server.env))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on(
        "console",
        lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
    first_run_in_browser(page, live_server.url)
    ids = seed(app)
    extra = ["/admin/transfer/", f"/streams/{ids['stream']}/timelapses"]
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for path in [*pages(ids), *extra]:
            response = page.goto(live_server.url + path)
            assert response is not None and response.status == 200, path
            page.evaluate(WATCH_CSP)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(300)  # let deferred scripts and a first htmx swap run
            errors.extend(f"{path}: CSP {v}" for v in page.evaluate("window.__cspViolations"))
    context.close()
    assert not errors, "\n".join(errors)
