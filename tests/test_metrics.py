"""/metrics for Prometheus: who may scrape it, what it says, and that the numbers are real and
shared by every process (counters in Redis, gauges from the database), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from prometheus_client.parser import text_string_to_metric_families

from glimpser import jobs, metrics
from glimpser.auth import api_keys
from glimpser.capture import scheduling
from glimpser.config import ConfigError, load_settings
from glimpser.db import database
from glimpser.models import (
    AICall,
    ApiKey,
    Delivery,
    Event,
    NotificationChannel,
    Rule,
    Snapshot,
    Stream,
)
from glimpser.queues import connect_redis, get_queue
from tests.api_support import bearer, make_key, make_user
from tests.conftest import make_env, run_queued_jobs
from tests.helpers import ROOT, jobs_configured
from tests.notify.receivers import HttpReceiver

Samples = dict[tuple[str, frozenset], float]


def scrape(app, token: str | None = None, **environ: str) -> Samples:
    """GET /metrics (200 expected), parsed with prometheus-client's own parser."""
    response = app.test_client().get(
        "/metrics", headers=bearer(token) if token else {}, environ_base=environ
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type == metrics.CONTENT_TYPE
    out: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        assert family.name.startswith("glimpser_"), family.name
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture
def metrics_key(db_app) -> str:
    return make_key(make_user("prometheus", "admin"), "metrics")


# --- access -------------------------------------------------------------------------------------


def test_no_key_is_401_a_read_key_403_a_metrics_key_200(db_app, metrics_key):
    client = db_app.test_client()
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.mimetype == "application/problem+json"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Set-Cookie" not in anonymous.headers  # no cookie session on /metrics

    wrong = client.get("/metrics", headers=bearer(metrics_key[:-2] + "xx"))
    assert wrong.status_code == 401
    assert client.get("/metrics", headers=bearer("not-a-key")).status_code == 401

    reader = make_key(make_user("script", "viewer"), "read")
    refused = client.get("/metrics", headers=bearer(reader))
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"

    allowed = client.get("/metrics", headers=bearer(metrics_key))
    assert allowed.status_code == 200
    assert allowed.content_type == metrics.CONTENT_TYPE
    assert "Set-Cookie" not in allowed.headers
    # An admin key includes the metrics scope.
    admin_key = make_key(make_user("root", "admin"), "admin")
    assert client.get("/metrics", headers=bearer(admin_key)).status_code == 200
    # Never in a query string.
    assert client.get(f"/metrics?key={metrics_key}").status_code == 401
    with database.connection_context():
        used = ApiKey.get(ApiKey.prefix == api_keys.parse_prefix(metrics_key))
    assert used.last_used_at is not None and used.last_used_from == "127.0.0.1"


def test_revoked_and_expired_metrics_keys_are_401(db_app):
    from datetime import timedelta

    from glimpser import times

    user = make_user("prometheus", "admin")
    revoked, expired = make_key(user, "metrics"), make_key(user, "metrics")
    with database.connection_context():
        api_keys.revoke(ApiKey.get(ApiKey.prefix == api_keys.parse_prefix(revoked)))
        ApiKey.update(expires_at=times.utcnow() - timedelta(seconds=1)).where(
            ApiKey.prefix == api_keys.parse_prefix(expired)
        ).execute()
    client = db_app.test_client()
    assert client.get("/metrics", headers=bearer(revoked)).status_code == 401
    assert client.get("/metrics", headers=bearer(expired)).status_code == 401


def test_an_allowed_address_scrapes_without_a_key(app_factory):
    app = app_factory(GLIMPSER_METRICS_ALLOW="10.0.0.0/8, 192.0.2.7, ::1")
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    mapped = client.get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:10.9.9.9"})
    assert mapped.status_code == 200
    # Outside the list: a key is needed as usual.
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.8"}).status_code == 401
    assert client.get("/metrics").status_code == 401  # 127.0.0.1 is not in the list
    reader = make_key(make_user("script", "viewer"), "read")
    outside = client.get(
        "/metrics", headers=bearer(reader), environ_base={"REMOTE_ADDR": "192.0.2.8"}
    )
    assert outside.status_code == 403


def test_the_allow_list_setting_is_checked_at_start(tmp_path, redis_url):
    env = make_env(tmp_path, redis_url)
    assert load_settings(env).metrics_allow == ()
    parsed = load_settings({**env, "GLIMPSER_METRICS_ALLOW": " 10.0.0.7 ,fd00::/8,,"})
    assert parsed.metrics_allow == ("10.0.0.7/32", "fd00::/8")
    for bad in ("10.0.0.300", "example.org", "10.0.0.0/33"):
        with pytest.raises(ConfigError, match="GLIMPSER_METRICS_ALLOW"):
            load_settings({**env, "GLIMPSER_METRICS_ALLOW": bad})


def test_metrics_is_in_the_openapi_document(app):
    doc = app.test_client().get("/api/v1/openapi.json").json
    operation = doc["paths"]["/metrics"]["get"]
    assert "text/plain" in operation["responses"]["200"]["content"]
    assert "application/problem+json" in operation["responses"]["401"]["content"]
    assert "application/problem+json" in operation["responses"]["403"]["content"]


# --- what it says -------------------------------------------------------------------------------


def test_the_text_parses_and_the_gauges_come_from_the_database_and_redis(db_app, metrics_key):
    from glimpser.notify.dispatch import breaker_for

    redis = db_app.extensions["glimpser.redis"]
    settings = db_app.extensions["glimpser.settings"]
    with database.connection_context():
        ok = Stream.create(name="Porch", kind="http_image", config={}, state="ok")
        Stream.create(name="Yard", kind="rtsp", config={}, state="failing")
        Stream.create(name="Shed", kind="rtsp", config={}, state="failing")
        for i, size in enumerate((1000, 2500)):
            Snapshot.create(
                stream=ok, storage_key=f"k{i}", width=1, height=1, bytes=size, sha256="", phash=""
            )
        hook = NotificationChannel.create(name="hook", kind="webhook", config={})
        quiet = NotificationChannel.create(name="mail", kind="email", config={})
        rule_id = Rule.get(Rule.name == "Motion or change").id
    breaker = breaker_for(redis, hook, settings)
    for _ in range(settings.breaker_threshold):
        breaker.record_failure()
    get_queue("analysis", redis).enqueue("glimpser.jobs.analyse_snapshot", 1)

    samples = scrape(db_app, metrics_key)
    assert value(samples, "glimpser_metrics_source_up", source="database") == 1
    assert value(samples, "glimpser_metrics_source_up", source="redis") == 1
    assert value(samples, "glimpser_streams", state="ok") == 1
    assert value(samples, "glimpser_streams", state="failing") == 2
    assert value(samples, "glimpser_streams", state="paused") == 0  # every state, even at 0
    porch = {"stream_id": str(ok.id), "stream": "Porch", "kind": "http_image"}
    assert value(samples, "glimpser_stream_info", **porch) == 1
    assert value(samples, "glimpser_snapshots", stream_id=str(ok.id)) == 2
    assert value(samples, "glimpser_snapshot_bytes", stream_id=str(ok.id)) == 3500
    assert value(samples, "glimpser_rule_info", rule_id=str(rule_id), rule="Motion or change") == 1
    assert value(samples, "glimpser_queue_depth", queue="analysis") == 1
    assert value(samples, "glimpser_queue_depth", queue="capture") == 0
    assert value(samples, "glimpser_queue_failed_jobs", queue="analysis") == 0
    assert value(samples, "glimpser_reader_processes") == 0  # none runs: none invented
    assert value(samples, "glimpser_workers") == 0
    hook_labels = {"channel_id": str(hook.id), "channel_kind": "webhook"}
    assert value(samples, "glimpser_breaker_state", **hook_labels, state="open") == 1
    assert value(samples, "glimpser_breaker_state", **hook_labels, state="closed") == 0
    quiet_labels = {"channel_id": str(quiet.id), "channel_kind": "email"}
    assert value(samples, "glimpser_breaker_state", **quiet_labels, state="closed") == 1


def test_reader_processes_are_counted_from_their_heartbeats(app, metrics_key):
    from glimpser import system_status

    redis = app.extensions["glimpser.redis"]
    system_status.publish_readers(redis, [])
    assert value(scrape(app, metrics_key), "glimpser_reader_processes") == 1
    system_status.withdraw_readers(redis)
    assert value(scrape(app, metrics_key), "glimpser_reader_processes") == 0


def test_histograms_are_cumulative_with_sum_and_count(app, metrics_key):
    redis = app.extensions["glimpser.redis"]
    for seconds in (0.05, 0.3, 0.3, 7.0, 500.0):
        metrics.record_capture(redis, "rtsp", "stored", seconds)
    samples = scrape(app, metrics_key)
    name = "glimpser_capture_duration_seconds"
    assert value(samples, name + "_bucket", kind="rtsp", le="0.1") == 1
    assert value(samples, name + "_bucket", kind="rtsp", le="0.5") == 3
    assert value(samples, name + "_bucket", kind="rtsp", le="10.0") == 4
    assert value(samples, name + "_bucket", kind="rtsp", le="120.0") == 4
    assert value(samples, name + "_bucket", kind="rtsp", le="+Inf") == 5
    assert value(samples, name + "_count", kind="rtsp") == 5
    assert value(samples, name + "_sum", kind="rtsp") == pytest.approx(507.65)
    assert value(samples, "glimpser_captures_total", kind="rtsp", outcome="stored") == 5


def test_a_failure_to_record_is_logged_once_and_never_raised(caplog):
    dead = connect_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    with caplog.at_level(logging.WARNING, logger="glimpser.metrics"):
        for _ in range(3):
            metrics.record_capture(dead, "rtsp", "failed", 1.0)
            metrics.record_delivery(dead, "webhook", "sent")
    assert [r.getMessage() for r in caplog.records].count("metrics not recorded") == 1


def test_counters_are_shared_by_processes(app, metrics_key, redis_url):
    """Several processes (like gunicorn workers and RQ work-horses, here on one host) add to
    the same counters at once; the web process reads their sum."""
    script = textwrap.dedent(
        f"""
        from glimpser import metrics
        from glimpser.queues import connect_redis
        connection = connect_redis({redis_url!r})
        for _ in range(25):
            metrics.record_capture(connection, "website", "stored", 0.2)
            metrics.record_delivery(connection, "pushover", "sent")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    samples = scrape(app, metrics_key)
    assert value(samples, "glimpser_captures_total", kind="website", outcome="stored") == 75
    assert value(samples, "glimpser_capture_duration_seconds_count", kind="website") == 75
    assert value(samples, "glimpser_capture_duration_seconds_sum", kind="website") == (
        pytest.approx(15.0)
    )
    assert value(samples, "glimpser_deliveries_total", channel_kind="pushover", status="sent") == 75


def explode() -> None:
    raise RuntimeError("this job fails on purpose")


exploding_job = jobs.job(explode)


def test_a_failing_job_counts_and_lands_in_the_failed_registry(app, metrics_key):
    redis = app.extensions["glimpser.redis"]
    with jobs_configured(app):
        get_queue("maintenance", redis).enqueue(f"{__name__}.exploding_job")
        run_queued_jobs(app, ("maintenance",))
    samples = scrape(app, metrics_key)
    assert value(samples, "glimpser_jobs_total", job="explode", outcome="failed") == 1
    assert value(samples, "glimpser_queue_failed_jobs", queue="maintenance") == 1


# --- end to end: a real capture → analysis → delivery moves the counters ---------------------


def _frames() -> list[bytes]:
    """Two takes of one still scene (they agree: a background), then an object in it."""
    from tests.test_motion import encode, scene, with_square

    base = scene(width=640, height=360)
    moved = with_square(base, (0.4, 0.35, 0.2, 0.3))
    return [encode(base, seed=1), encode(base, seed=2), encode(moved, seed=3)]


def test_a_capture_analysis_and_delivery_move_the_counters(
    app_factory, database_url, media_root, camera
):
    app = app_factory(
        database_url,
        GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
        GLIMPSER_MEDIA_DIR=str(media_root),
    )
    redis = app.extensions["glimpser.redis"]
    token = make_key(make_user("prometheus", "admin"), "metrics")
    with HttpReceiver() as receiver, jobs_configured(app):
        with database.connection_context():
            channel = NotificationChannel.create(
                name="Hook",
                kind="webhook",
                config={"kind": "webhook", "url": receiver.url("/hook"), "secret": "s3cret"},
            )
            rule = Rule.get(Rule.name == "Motion or change")
            Rule.update(channels=[channel.id]).where(Rule.id == rule.id).execute()
            stream = Stream.create(
                name="Door",
                kind="http_image",
                interval=60,
                config={
                    "kind": "http_image",
                    "url": f"{camera.url}/snapshot.jpg",
                    "auth": "none",
                    "username": "",
                    "password": "",
                    "timeout": 5,
                },
            )
        before = scrape(app, token)

        for picture in _frames():
            camera.state.picture = picture
            with database.connection_context():
                assert scheduling.enqueue_capture(redis, stream, manual=True)
            run_queued_jobs(app, ("capture",))
        run_queued_jobs(app, ("analysis",))
        run_queued_jobs(app, ("notify",))

        with database.connection_context():
            (event,) = Event.select().where(Event.stream == stream.id)
            (delivery,) = Delivery.select().where(Delivery.event == event.id)
        assert (event.kind, event.rule_id, delivery.status) == ("motion", rule.id, "sent")
        assert [r.path for r in receiver.requests] == ["/hook"]
        after = scrape(app, token)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("glimpser_captures_total", kind="http_image", outcome="stored") == 3
    assert moved("glimpser_capture_duration_seconds_count", kind="http_image") == 3
    assert moved("glimpser_capture_duration_seconds_bucket", kind="http_image", le="+Inf") == 3
    assert moved("glimpser_capture_duration_seconds_sum", kind="http_image") > 0
    assert moved("glimpser_analysis_duration_seconds_count", kind="http_image") == 3
    assert moved("glimpser_analysis_duration_seconds_sum", kind="http_image") > 0
    assert (
        moved("glimpser_events_total", rule_id=str(rule.id), severity=event.severity, kind="motion")
        == 1
    )
    assert moved("glimpser_deliveries_total", channel_kind="webhook", status="sent") == 1
    assert moved("glimpser_jobs_total", job="capture_stream", outcome="ok") == 3
    assert moved("glimpser_jobs_total", job="analyse_snapshot", outcome="ok") == 3
    assert moved("glimpser_jobs_total", job="deliver_notification", outcome="ok") == 1
    assert value(after, "glimpser_snapshots", stream_id=str(stream.id)) == 3
    assert value(after, "glimpser_queue_depth", queue="notify") == 0
    webhook = {"channel_id": str(channel.id), "channel_kind": "webhook"}
    assert value(after, "glimpser_breaker_state", **webhook, state="closed") == 1


def test_ai_calls_tokens_and_errors_by_stream(db_app, metrics_key, openai_server):
    """Real requests to the loopback OpenAI-compatible server, through the AI client."""
    from glimpser.analysis.ai import AIClient, AIError
    from tests.test_ai import BIG_JPEG, GOOD

    settings = db_app.extensions["glimpser.settings"]
    settings = dataclasses.replace(
        settings,
        ai_base_url=openai_server.url,
        ai_api_key="sk-test",
        ai_model="test-vision",
        ai_max_retries=0,
    )
    with database.connection_context():
        stream = Stream.create(name="Gate", kind="http_image", config={})
        ai = AIClient.from_settings(settings, db_app.extensions["glimpser.redis"])
        assert ai is not None
        try:
            openai_server.reply_json(GOOD, prompt_tokens=300, completion_tokens=40)
            ai.describe(BIG_JPEG, stream_id=stream.id)
            openai_server.reply_text("not the JSON asked for")
            with pytest.raises(AIError):
                ai.describe(BIG_JPEG, stream_id=stream.id)
        finally:
            ai.close()
    samples = scrape(db_app, metrics_key)
    labels = {"stream_id": str(stream.id), "purpose": "describe"}
    assert value(samples, "glimpser_ai_calls_total", **labels, outcome="ok") == 1
    assert value(samples, "glimpser_ai_calls_total", **labels, outcome="failed") == 1
    assert value(samples, "glimpser_ai_errors_total", **labels) == 1
    with database.connection_context():
        spent = sum(c.total_tokens for c in AICall.select().where(AICall.stream == stream.id))
    assert spent > 340 and value(samples, "glimpser_ai_tokens_total", **labels) == spent


def test_only_an_admins_key_reads_the_metrics(db_app):
    """The metrics cover every stream: a viewer cannot hold the scope, and an admin demoted
    since their key was made is refused."""
    from glimpser.models import User

    with pytest.raises(api_keys.ApiKeyError):
        make_key(make_user("vera", "viewer"), "metrics")
    admin = make_user("root", "admin")
    token = make_key(admin, "metrics")
    client = db_app.test_client()
    assert client.get("/metrics", headers=bearer(token)).status_code == 200
    with database.connection_context():
        User.update(role="viewer").where(User.id == admin.id).execute()
    assert client.get("/metrics", headers=bearer(token)).status_code == 403
