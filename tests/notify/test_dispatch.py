"""Dispatch on real RQ and Redis to real loopback receivers: routing, retries, the circuit
breaker shared by workers, at-most-once sending, and CAP cancellations."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis as redis_lib
from lxml import etree
from rq.registry import ScheduledJobRegistry

from glimpser import jobs, queues, times
from glimpser.db import database
from glimpser.models import Delivery, Event, NotificationChannel, Rule, Stream
from glimpser.notify import dispatch
from glimpser.queues import get_queue
from tests.conftest import run_queued_jobs
from tests.notify.receivers import HttpReceiver, Reply

CAP_NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}


@pytest.fixture
def app(app_factory):
    app = app_factory(
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_NOTIFY_BACKOFF_SECONDS="1",
        GLIMPSER_NOTIFY_MAX_ATTEMPTS="3",
        GLIMPSER_BREAKER_THRESHOLD="2",
        GLIMPSER_BREAKER_COOLDOWN_SECONDS="2",
    )
    jobs.configure(app.extensions["glimpser.settings"])
    yield app
    jobs.configure(None)


@pytest.fixture
def hook():
    with HttpReceiver() as receiver:
        yield receiver


def make_channel(name: str, kind: str = "webhook", **values) -> NotificationChannel:
    with database.connection_context():
        return NotificationChannel.create(name=name, kind=kind, **values)


def webhook(receiver: HttpReceiver, name: str = "Hook", **values) -> NotificationChannel:
    return make_channel(
        name, config={"kind": "webhook", "url": receiver.url("/hook"), "timeout": 2}, **values
    )


def raise_event(channels: list[NotificationChannel], severity: str = "high", stream=None) -> Event:
    """An event of a rule that names these channels, as the analysis job raises it."""
    with database.connection_context():
        stream = stream or Stream.create(name=f"Cam {time.monotonic_ns()}", kind="rtsp", config={})
        rule = Rule.create(
            name=f"Rule {time.monotonic_ns()}",
            conditions={"changed": True},
            channels=[c.id for c in channels],
            severity=severity,
        )
        return Event.create(
            stream=stream, rule=rule, kind="motion", severity=severity, title="Someone at the door"
        )


def notify(app, event: Event) -> list[int]:
    with database.connection_context():
        return queues.enqueue_notifications(
            app.extensions["glimpser.redis"], jobs.settings(), [event.id]
        )


def deliveries() -> list[Delivery]:
    with database.connection_context():
        return list(Delivery.select().order_by(Delivery.id))


def test_a_delivery_is_sent_and_recorded(app, hook):
    channel = webhook(hook)
    notify(app, raise_event([channel]))
    run_queued_jobs(app, ("notify",))

    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("sent", 1, 200)
    assert delivery.sent_at is not None
    (request,) = hook.requests
    assert request.json()["title"] == "Someone at the door"


def test_a_server_error_is_retried_with_backoff_then_sent(app, hook):
    hook.script(Reply(500, "down for a moment"))
    notify(app, raise_event([webhook(hook)]))
    run_queued_jobs(app, ("notify",))
    (delivery,) = deliveries()
    assert (delivery.status, delivery.response_code) == ("retrying", 500)
    assert "down for a moment" in delivery.error

    run_queued_jobs(app, ("notify",), wait_for_scheduled=1.5)
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("sent", 2, 200)
    assert len(hook.requests) == 2


def test_a_client_error_is_not_retried(app, hook):
    hook.script(Reply(400, "bad payload"))
    notify(app, raise_event([webhook(hook)]))
    run_queued_jobs(app, ("notify",))
    run_queued_jobs(app, ("notify",), wait_for_scheduled=1.5)
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 1, 400)
    assert len(hook.requests) == 1


def test_retry_after_is_honoured(app, hook):
    hook.script(Reply(429, "slow down", headers={"Retry-After": "120"}))
    notify(app, raise_event([webhook(hook)]))
    run_queued_jobs(app, ("notify",))
    (delivery,) = deliveries()
    assert delivery.status == "retrying"
    wait = (delivery.next_attempt_at - times.utcnow()).total_seconds()
    assert 100 < wait <= 120
    registry = ScheduledJobRegistry(queue=get_queue("notify", app.extensions["glimpser.redis"]))
    (job_id,) = registry.get_job_ids()
    scheduled_at = registry.get_scheduled_time(job_id)
    assert scheduled_at - times.utcnow() > timedelta(seconds=100)


def test_attempts_stop_at_the_maximum(app, hook):
    hook.default = Reply(503)
    notify(app, raise_event([webhook(hook)]))
    run_queued_jobs(app, ("notify",))
    run_queued_jobs(app, ("notify",), wait_for_scheduled=1.2)
    run_queued_jobs(app, ("notify",), wait_for_scheduled=2.2)
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert len(hook.requests) == 3


def test_a_duplicated_job_sends_once(app, hook):
    notify(app, raise_event([webhook(hook)]))
    (delivery,) = deliveries()
    queues.enqueue_delivery(app.extensions["glimpser.redis"], delivery.id)  # a duplicate
    run_queued_jobs(app, ("notify",))
    assert len(hook.requests) == 1
    assert deliveries()[0].status == "sent"


def test_routing_respects_severity_enabled_and_cooldowns(app, hook):
    loud = webhook(hook, "Loud", min_severity="critical")
    off = webhook(hook, "Off", enabled=False)
    calm = webhook(hook, "Calm", cooldown_seconds=600)
    with database.connection_context():
        stream = Stream.create(name="Porch", kind="rtsp", config={})
    notify(app, raise_event([loud, off, calm], stream=stream))
    notify(app, raise_event([calm], stream=stream))
    rows = {(d.channel_id, d.event_id): d for d in deliveries()}
    statuses = sorted((d.channel_id, d.status, d.error) for d in rows.values())
    assert statuses[0][:2] == (loud.id, "skipped") and "minimum severity" in statuses[0][2]
    assert statuses[1][:2] == (off.id, "skipped")
    calm_rows = sorted((d.event_id, d.status) for d in rows.values() if d.channel_id == calm.id)
    assert [s for _e, s in calm_rows] == ["queued", "skipped"]
    run_queued_jobs(app, ("notify",))
    assert len(hook.requests) == 1


def test_events_without_channels_create_no_deliveries(app):
    with database.connection_context():
        event = Event.create(kind="motion", severity="high", title="no rule")
    assert notify(app, event) == []
    assert deliveries() == []


def test_the_breaker_is_shared_by_workers_opens_and_closes(app, hook, redis_url):
    """Two workers (two Redis connections): A's failures open the circuit for B too; after
    the cool-down one trial goes out, and its success closes the circuit."""
    settings = app.extensions["glimpser.settings"]
    worker_a, worker_b = (redis_lib.Redis.from_url(redis_url) for _ in range(2))
    hook.default = Reply(503)
    channel = webhook(hook)
    events = [raise_event([channel]) for _ in range(4)]
    ids = []
    with database.connection_context():
        for event in events:
            ids.append(Delivery.create(event=event, channel=channel).id)

        def deliver(connection, delivery_id):
            return dispatch.deliver(delivery_id, connection, settings, lambda *_: None)

        assert deliver(worker_a, ids[0]) == "retrying"
        assert deliver(worker_a, ids[1]) == "retrying"
        assert dispatch.breaker_for(worker_b, channel, settings).state().state == "open"
        # B holds its delivery back without sending or using up an attempt.
        assert deliver(worker_b, ids[2]) == "retrying"
        held = Delivery.get_by_id(ids[2])
        assert held.attempts == 0 and "circuit open" in held.error
        assert len(hook.requests) == 2

        time.sleep(2.1)  # the cool-down passes: half-open
        hook.default = Reply(200)
        assert dispatch.breaker_for(worker_a, channel, settings).state().state == "half-open"
        assert deliver(worker_b, ids[2]) == "sent"  # the one trial
        assert dispatch.breaker_for(worker_a, channel, settings).state().state == "closed"
        assert deliver(worker_a, ids[3]) == "sent"
    assert len(hook.requests) == 4


def test_a_failed_half_open_trial_opens_the_circuit_again(app, hook):
    settings = app.extensions["glimpser.settings"]
    connection = app.extensions["glimpser.redis"]
    breaker = dispatch.breaker_for(connection, 99, settings)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state().state == "open" and not breaker.allow()
    time.sleep(2.1)
    assert breaker.allow()  # the one trial...
    assert not breaker.allow()  # ...and nobody else meanwhile
    assert breaker.record_failure().state == "open"


def test_a_delivery_stuck_in_sending_is_failed_not_resent(app, hook):
    notify(app, raise_event([webhook(hook)]))
    with database.connection_context():
        (delivery,) = Delivery.select()
        Delivery.update(status="sending", updated_at=times.utcnow() - timedelta(hours=1)).execute()
    with database.connection_context():
        assert jobs.sweep_stuck_deliveries() == {"failed": 1, "requeued": 0}
    run_queued_jobs(app, ("notify",))
    (delivery,) = deliveries()
    assert delivery.status == "failed" and "outcome unknown" in delivery.error
    assert hook.requests == []


def test_a_delivery_whose_job_was_lost_is_queued_again_and_sent_once(app, hook):
    notify(app, raise_event([webhook(hook)]))
    connection = app.extensions["glimpser.redis"]
    connection.delete("rq:queue:notify")  # the job is lost (e.g. Redis restarted)
    with database.connection_context():
        Delivery.update(updated_at=times.utcnow() - timedelta(minutes=10)).execute()
        assert jobs.sweep_stuck_deliveries() == {"failed": 0, "requeued": 1}
        queues.enqueue_delivery(connection, deliveries()[0].id)  # and a duplicate on top
    run_queued_jobs(app, ("notify",))
    assert deliveries()[0].status == "sent"
    assert len(hook.requests) == 1


def test_a_channel_disabled_while_a_delivery_waits_sends_nothing_more(app, hook):
    hook.script(Reply(503))
    channel = webhook(hook)
    notify(app, raise_event([channel]))
    run_queued_jobs(app, ("notify",))
    assert deliveries()[0].status == "retrying"
    with database.connection_context():
        NotificationChannel.update(enabled=False).execute()
    run_queued_jobs(app, ("notify",), wait_for_scheduled=1.5)
    (delivery,) = deliveries()
    assert (delivery.status, delivery.error) == ("skipped", "channel disabled")
    assert len(hook.requests) == 1


def test_the_global_cooldown_starts_only_when_something_is_sent(app_factory, hook):
    app = app_factory(GLIMPSER_ALLOW_LOOPBACK_SOURCES="1", GLIMPSER_NOTIFY_COOLDOWN_SECONDS="600")
    jobs.configure(app.extensions["glimpser.settings"])
    try:
        pager = webhook(hook, "Pager", min_severity="critical")
        with database.connection_context():
            stream = Stream.create(name="Vault", kind="rtsp", config={})
        notify(app, raise_event([pager], severity="info", stream=stream))  # taken by nobody
        notify(app, raise_event([pager], severity="critical", stream=stream))
        notify(app, raise_event([pager], severity="critical", stream=stream))
        assert [(d.status, d.error.split(" (")[0]) for d in deliveries()] == [
            ("skipped", "below the channel's minimum severity"),
            ("queued", ""),
            ("skipped", "global notification cooldown for this stream"),
        ]
    finally:
        jobs.configure(None)


def test_a_failed_delivery_can_be_retried_by_hand(app, hook):
    hook.script(Reply(400))
    notify(app, raise_event([webhook(hook)]))
    run_queued_jobs(app, ("notify",))
    (delivery,) = deliveries()
    assert delivery.status == "failed"
    connection = app.extensions["glimpser.redis"]
    with database.connection_context():
        assert dispatch.retry_by_hand(
            delivery, lambda i, d: queues.enqueue_delivery(connection, i, d)
        )
    run_queued_jobs(app, ("notify",))
    assert deliveries()[0].status == "sent"
    assert len(hook.requests) == 2


def test_acknowledging_sends_a_cap_cancel_referencing_the_alert(app):
    with HttpReceiver() as endpoint:
        channel = make_channel(
            "Public warnings",
            kind="cap",
            config={"kind": "cap", "endpoints": [endpoint.url("/cap")], "timeout": 2},
        )
        event = raise_event([channel])
        notify(app, event)
        run_queued_jobs(app, ("notify",))
        with database.connection_context():
            Event.update(acknowledged=True).where(Event.id == event.id).execute()
            queues.enqueue_cancellations(app.extensions["glimpser.redis"], [event.id])
        run_queued_jobs(app, ("notify",))

        alert, cancel = (etree.fromstring(r.body) for r in endpoint.requests)
        assert all(r.header("content-type") == "application/cap+xml" for r in endpoint.requests)
        assert alert.findtext("cap:msgType", namespaces=CAP_NS) == "Alert"
        assert cancel.findtext("cap:msgType", namespaces=CAP_NS) == "Cancel"
        identifier = alert.findtext("cap:identifier", namespaces=CAP_NS)
        assert identifier in cancel.findtext("cap:references", namespaces=CAP_NS)
        assert [d.purpose for d in deliveries()] == ["alert", "cancel"]
        assert all(d.status == "sent" for d in deliveries())


def test_repeats_of_an_open_event_send_throttled_cap_updates(app):
    with HttpReceiver() as endpoint:
        channel = make_channel(
            "Warnings",
            kind="cap",
            config={"kind": "cap", "endpoints": [endpoint.url("/cap")], "timeout": 2},
        )
        event = raise_event([channel])
        notify(app, event)
        run_queued_jobs(app, ("notify",))
        connection = app.extensions["glimpser.redis"]
        for repeats in (1, 2, 3, 4):  # as rules.py counts them on the open event
            with database.connection_context():
                Event.update(data={"repeats": repeats, "last_snapshot_id": None}).where(
                    Event.id == event.id
                ).execute()
                queues.enqueue_updates(connection, [event.id])
            run_queued_jobs(app, ("notify",))

        messages = [etree.fromstring(r.body) for r in endpoint.requests]
        kinds = [m.findtext("cap:msgType", namespaces=CAP_NS) for m in messages]
        assert kinds == ["Alert", "Update", "Update", "Update"]  # repeats 1, 2 and 4; not 3
        repeats = [
            m.xpath("//cap:parameter[cap:valueName='repeats']/cap:value/text()", namespaces=CAP_NS)
            for m in messages
        ]
        assert repeats == [[], ["1"], ["2"], ["4"]]
        alert_id = messages[0].findtext("cap:identifier", namespaces=CAP_NS)
        assert all(
            alert_id in m.findtext("cap:references", namespaces=CAP_NS) for m in messages[1:]
        )
        assert [d.purpose for d in deliveries()] == ["alert", "update-1", "update-2", "update-4"]


def cap_channel(endpoint: HttpReceiver, name: str = "Warnings") -> NotificationChannel:
    return make_channel(
        name, kind="cap", config={"kind": "cap", "endpoints": [endpoint.url("/cap")], "timeout": 2}
    )


def msg_types(endpoint: HttpReceiver) -> list[str]:
    return [
        etree.fromstring(r.body).findtext("cap:msgType", namespaces=CAP_NS)
        for r in endpoint.requests
    ]


def acknowledge(app, event: Event) -> None:
    with database.connection_context():
        Event.update(acknowledged=True).where(Event.id == event.id).execute()
        queues.enqueue_cancellations(app.extensions["glimpser.redis"], [event.id])


def test_an_update_retried_after_the_cancel_is_still_the_update(app):
    """An Update that fails once and is retried after the event was acknowledged sends the
    same Update again; the Cancel goes out once, by the cancel delivery."""
    for round_ in range(2):  # a second event, the same story: nothing depends on the first
        with HttpReceiver() as endpoint:
            event = raise_event([cap_channel(endpoint, f"Warnings {round_}")])
            notify(app, event)
            run_queued_jobs(app, ("notify",))  # the Alert
            with database.connection_context():
                Event.update(data={"repeats": 1}).where(Event.id == event.id).execute()
                queues.enqueue_updates(app.extensions["glimpser.redis"], [event.id])
            endpoint.script(Reply(503, "busy"))
            run_queued_jobs(app, ("notify",))  # the Update's first attempt fails
            acknowledge(app, event)
            run_queued_jobs(app, ("notify",))  # the Cancel (the Update waits for its backoff)
            run_queued_jobs(app, ("notify",), wait_for_scheduled=1.5)  # the Update's retry

            assert msg_types(endpoint) == ["Alert", "Update", "Cancel", "Update"]
            first_try, retry = endpoint.requests[1].body, endpoint.requests[3].body
            assert retry == first_try  # the very message of the first attempt
            status = {d.purpose: d.status for d in deliveries() if d.event_id == event.id}
            assert status == {"alert": "sent", "update-1": "sent", "cancel": "sent"}


def test_an_update_not_yet_sent_when_the_event_is_acknowledged_is_skipped(app):
    with HttpReceiver() as endpoint:
        event = raise_event([cap_channel(endpoint)])
        notify(app, event)
        run_queued_jobs(app, ("notify",))
        with database.connection_context():
            Event.update(data={"repeats": 1}).where(Event.id == event.id).execute()
            queues.enqueue_updates(app.extensions["glimpser.redis"], [event.id])
        acknowledge(app, event)  # before the Update's job ran
        run_queued_jobs(app, ("notify",))

        assert sorted(msg_types(endpoint)) == ["Alert", "Cancel"]
        update = next(d for d in deliveries() if d.purpose == "update-1")
        assert update.status == "skipped" and "acknowledged" in update.error


def test_an_alert_retried_after_the_event_was_acknowledged_is_cancelled_once(app):
    """The alert's retry sends the Alert it was going to send, and then (the event being
    acknowledged meanwhile) the channel gets its one Cancel."""
    with HttpReceiver() as endpoint:
        event = raise_event([cap_channel(endpoint)])
        endpoint.script(Reply(503, "busy"))
        notify(app, event)
        run_queued_jobs(app, ("notify",))  # the Alert's first attempt fails
        acknowledge(app, event)  # no cancel yet: this channel has not got the alert
        run_queued_jobs(app, ("notify",), wait_for_scheduled=1.5)  # the retry, then the Cancel
        run_queued_jobs(app, ("notify",))

        assert msg_types(endpoint) == ["Alert", "Alert", "Cancel"]
        assert endpoint.requests[0].body == endpoint.requests[1].body
        assert [(d.purpose, d.status) for d in deliveries()] == [
            ("alert", "sent"),
            ("cancel", "sent"),
        ]
