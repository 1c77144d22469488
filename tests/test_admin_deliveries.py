"""Admin → Deliveries through the Flask test client on real Redis and a real database: newest
first, filters, keyset pagination, full escaped error text, self-refresh while rows are pending,
and a failed delivery retried by hand through a real RQ job to a loopback receiver."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from glimpser import jobs, times
from glimpser.auth.users import create_user
from glimpser.db import database
from glimpser.models import AuditLog, Delivery, Event, NotificationChannel
from glimpser.web.humantime import iso_time
from tests.conftest import run_queued_jobs
from tests.helpers import csrf_from, login, setup_admin
from tests.notify.receivers import HttpReceiver

PASSWORD = "correct horse battery"
LOG = "/admin/deliveries/"


@pytest.fixture
def notify_app(app_factory):
    app = app_factory(GLIMPSER_ALLOW_LOOPBACK_SOURCES="1")
    jobs.configure(app.extensions["glimpser.settings"])
    yield app
    jobs.configure(None)


@pytest.fixture
def admin(notify_app):
    client = notify_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


@pytest.fixture
def db_admin(db_app):
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def html(response) -> str:
    return response.get_data(as_text=True)


def make_channel(
    name: str, url: str = "https://hooks.example.com/x", **config
) -> NotificationChannel:
    with database.connection_context():
        return NotificationChannel.create(
            name=name,
            kind="webhook",
            config={"kind": "webhook", "url": url, "timeout": 2, "secret": "log-SECRET", **config},
        )


def make_event(title: str = "Gate opened", **fields) -> Event:
    with database.connection_context():
        return Event.create(kind="motion", severity="high", title=title, **fields)


def make_delivery(event: Event, channel: NotificationChannel, **fields) -> Delivery:
    with database.connection_context():
        return Delivery.create(event=event, channel=channel, **fields)


def shown_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="delivery-(\d+)">', page)]


def test_log_lists_newest_first_with_every_column(admin):
    hook, mail = make_channel("Hook"), make_channel("Mail hook")
    event = make_event("Person at the gate")
    now = times.utcnow()
    sent = make_delivery(
        event, hook, status="sent", attempts=1, response_code=200, sent_at=now, created_at=now
    )
    failing = make_delivery(
        event,
        mail,
        status="retrying",
        attempts=2,
        response_code=503,
        error="HTTP 503 from the webhook: <html>busy</html>",
        next_attempt_at=now + timedelta(minutes=5),
        created_at=now,
    )
    page = html(admin.get(LOG))
    assert shown_ids(page) == [failing.id, sent.id]
    assert f'href="/events/{event.id}"' in page and "Person at the gate" in page
    assert 'href="/admin/channels/' in page and "Mail hook" in page
    assert "HTTP 200" in page and "HTTP 503" in page
    # The full error, escaped.
    assert "HTTP 503 from the webhook: &lt;html&gt;busy&lt;/html&gt;" in page
    assert "<html>busy" not in page
    # Times go through the one time macro (macros/time.html): the exact time in datetime=.
    assert f'datetime="{iso_time(now + timedelta(minutes=5))}"' in page
    assert f'datetime="{iso_time(now)}"' in page
    assert "SECRET" not in page


def test_filters_by_channel_status_event_and_purpose(db_admin):
    hook, other = make_channel("Hook"), make_channel("Other")
    first, second = make_event("First"), make_event("Second")
    a = make_delivery(first, hook, status="sent")
    b = make_delivery(first, other, status="failed", error="HTTP 400")
    c = make_delivery(second, hook, status="failed", error="HTTP 500")
    d = make_delivery(second, hook, status="sent", purpose="cancel")

    def ids(query: str) -> list[int]:
        response = db_admin.get(LOG + query)
        assert response.status_code == 200
        return shown_ids(html(response))

    assert ids("") == [d.id, c.id, b.id, a.id]
    assert ids(f"?channel={hook.id}") == [d.id, c.id, a.id]
    assert ids("?status=failed") == [c.id, b.id]
    assert ids(f"?event={first.id}") == [b.id, a.id]
    assert ids("?purpose=cancel") == [d.id]
    assert ids(f"?channel={hook.id}&status=failed&event={second.id}&purpose=alert") == [c.id]
    assert "No delivery matches these filters." in html(db_admin.get(LOG + "?status=skipped"))
    # The filter form keeps the choices.
    page = html(db_admin.get(f"{LOG}?channel={other.id}&status=failed"))
    assert f'<option value="{other.id}" selected>Other</option>' in page
    assert '<option value="failed" selected>failed</option>' in page


def test_a_filter_that_is_not_valid_is_ignored_and_said(admin):
    hook = make_channel("Hook")
    delivery = make_delivery(make_event(), hook, status="sent")
    page = html(admin.get(LOG + "?status=lost&event=abc"))
    assert "Ignored a filter that is not valid: event, status." in page
    assert shown_ids(page) == [delivery.id]


def test_keyset_pagination(db_admin):
    admin = db_admin
    hook = make_channel("Hook")
    ids = []
    for i in range(120):
        ids.append(make_delivery(make_event(f"Event {i}"), hook, status="sent").id)
    newest_first = list(reversed(ids))
    page = html(admin.get(LOG))
    assert shown_ids(page) == newest_first[:50]
    older = re.search(r'href="(/admin/deliveries/\?before=\d+)" rel="next"', page).group(1)
    assert "← Newest" not in page

    # A delivery created meanwhile does not shift the older pages.
    make_delivery(make_event("Late"), hook, status="queued")
    page = html(admin.get(older))
    assert shown_ids(page) == newest_first[50:100]
    assert "← Newest" in page
    last = re.search(r'href="(/admin/deliveries/\?before=\d+)" rel="next"', page).group(1)
    page = html(admin.get(last.replace("&amp;", "&")))
    assert shown_ids(page) == newest_first[100:]
    assert 'rel="next"' not in page


def test_pagination_keeps_the_filters(admin):
    hook, other = make_channel("Hook"), make_channel("Other")
    for i in range(55):
        make_delivery(make_event(f"E{i}"), hook if i % 2 else other, status="sent")
    page = html(admin.get(f"{LOG}?channel={hook.id}"))
    assert len(shown_ids(page)) == 27
    assert 'rel="next"' not in page
    page = html(admin.get(f"{LOG}?status=sent"))
    link = re.search(r'href="([^"]+)" rel="next"', page).group(1).replace("&amp;", "&")
    assert "status=sent" in link
    assert len(shown_ids(html(admin.get(link)))) == 5


def test_the_log_refreshes_itself_only_while_rows_are_on_their_way(admin):
    hook = make_channel("Hook")
    done = make_delivery(make_event(), hook, status="sent")
    page = html(admin.get(LOG))
    assert '<div id="delivery-log">' in page  # nothing on its way: no polling
    assert "hx-trigger" not in page

    pending = make_delivery(make_event("Second"), hook, status="retrying")
    page = html(admin.get(f"{LOG}?channel={hook.id}"))
    assert 'hx-trigger="every 2s"' in page
    assert f'hx-get="/admin/deliveries/?channel={hook.id}"' in page
    # The poll gets the log alone, not the page.
    fragment = html(
        admin.get(
            f"{LOG}?channel={hook.id}",
            headers={"HX-Request": "true", "HX-Target": "delivery-log"},
        )
    )
    assert fragment.lstrip().startswith('<div id="delivery-log"')
    assert "<html" not in fragment
    assert shown_ids(fragment) == [pending.id, done.id]


def test_retry_by_hand_reaches_the_receiver(admin, notify_app):
    with HttpReceiver() as receiver:
        hook = make_channel("Hook", receiver.url("/hook"))
        event = make_event("Missed while the receiver was down")
        failed = make_delivery(
            event, hook, status="failed", attempts=6, response_code=500, error="HTTP 500"
        )
        page = html(admin.get(LOG))
        assert f'action="/admin/deliveries/{failed.id}/retry"' in page
        token = csrf_from(page)
        response = admin.post(
            f"{LOG}{failed.id}/retry", headers={"X-CSRFToken": token, "HX-Request": "true"}
        )
        assert response.status_code == 200
        fragment = html(response)
        assert fragment.lstrip().startswith(f'<tr id="delivery-{failed.id}"')
        assert "delivery-queued" in fragment and "Retry" not in fragment
        # The row refreshes itself until the delivery has an outcome.
        assert f'hx-get="/admin/deliveries/{failed.id}/row"' in fragment
        assert 'hx-trigger="every 1s"' in fragment
        assert receiver.requests == []  # queued, not sent by the web process

        run_queued_jobs(notify_app, ("notify",))
        (request,) = receiver.requests
        assert request.json()["title"] == "Missed while the receiver was down"
    with database.connection_context():
        delivery = Delivery.get_by_id(failed.id)
        assert (delivery.status, delivery.response_code) == ("sent", 200)
        entry = AuditLog.get(AuditLog.action == "delivery.retry")
    assert entry.target == f"delivery:{failed.id}"
    row = html(admin.get(f"{LOG}{failed.id}/row"))
    assert "delivery-sent" in row and "HTTP 200" in row
    assert "hx-trigger" not in row  # done: no more polling


def test_only_failed_or_skipped_deliveries_can_be_retried(admin):
    hook = make_channel("Hook")
    sent = make_delivery(make_event(), hook, status="sent", response_code=200)
    skipped = make_delivery(make_event("Quiet"), hook, status="skipped", error="channel disabled")
    page = html(admin.get(LOG))
    assert f'action="/admin/deliveries/{sent.id}/retry"' not in page
    assert f'action="/admin/deliveries/{skipped.id}/retry' in page
    token = csrf_from(page)
    response = admin.post(f"{LOG}{sent.id}/retry?status=sent", headers={"X-CSRFToken": token})
    assert response.status_code == 302
    assert response.headers["Location"] == f"{LOG}?status=sent"
    assert "nothing to retry" in html(admin.get(LOG))
    with database.connection_context():
        assert Delivery.get_by_id(sent.id).status == "sent"
        assert not AuditLog.select().where(AuditLog.action == "delivery.retry").exists()
    response = admin.post(f"{LOG}{skipped.id}/retry", headers={"X-CSRFToken": token})
    assert response.status_code == 302
    with database.connection_context():
        assert Delivery.get_by_id(skipped.id).status == "queued"


def test_card_and_retry_of_a_missing_delivery_are_404(admin):
    token = csrf_from(html(admin.get(LOG)))
    assert admin.get(f"{LOG}999/card").status_code == 404
    assert admin.post(f"{LOG}999/retry", headers={"X-CSRFToken": token}).status_code == 404


def test_retry_needs_the_csrf_token_and_viewers_get_403(admin, notify_app):
    hook = make_channel("Hook")
    failed = make_delivery(make_event(), hook, status="failed")
    assert admin.post(f"{LOG}{failed.id}/retry").status_code == 400
    with database.connection_context():
        assert Delivery.get_by_id(failed.id).status == "failed"
        create_user("bob", PASSWORD, "viewer")
    viewer = notify_app.test_client()
    login(viewer, "bob", PASSWORD)
    token = csrf_from(html(viewer.get("/")))
    assert viewer.get(LOG).status_code == 403
    assert viewer.get(f"{LOG}{failed.id}/card").status_code == 403
    assert viewer.post(f"{LOG}{failed.id}/retry", headers={"X-CSRFToken": token}).status_code == 403
    with database.connection_context():
        assert Delivery.get_by_id(failed.id).status == "failed"
