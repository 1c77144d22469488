"""Prometheus metrics: what is counted where, how it is kept, and how a scrape reads it.

Glimpser runs as several gunicorn web processes and RQ workers, possibly on several hosts, so
nothing is kept in a process's memory (and prometheus-client's multiprocess mode, one file per
process and host, is not used):

- Counters and histograms live in Redis, one hash per metric (`glimpser:metrics:<name>`).
  Each observation is one MULTI/EXEC pipeline of HINCRBY/HINCRBYFLOAT, so every process on every
  host adds to the same numbers atomically. Recording never fails the work it measures: an
  error is logged once (until recording works again) and the capture, analysis or delivery
  goes on.
- Gauges (stream states, snapshots, queues, breakers, readers, workers) are computed when
  Prometheus scrapes, from the database and Redis.

`/metrics` (glimpser.web.metrics) renders them with a custom Collector on a private
CollectorRegistry. The names, labels and meanings are listed in docs/api.md ("Prometheus
metrics"); the definitions below are the one source for both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import peewee
import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from glimpser.models import STREAM_STATES, NotificationChannel, Rule, Snapshot, Stream

log = logging.getLogger(__name__)

KEY_PREFIX = "glimpser:metrics:"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# A histogram hash's fields are "<labels JSON>" + SEP + "count" | "sum" | "<le>"; JSON text
# never holds a raw NUL, so the labels part cannot be confused with the suffix.
SEP = "\x00"


@dataclass(frozen=True)
class Counter:
    name: str  # without the _total suffix, which the exposition adds
    documentation: str
    labels: tuple[str, ...]

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name


@dataclass(frozen=True)
class Histogram:
    name: str
    documentation: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]  # upper bounds, ascending; +Inf is implied

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name


CAPTURES = Counter(
    "glimpser_captures",
    "Captures by stream kind and outcome (stored: a new snapshot; unchanged: a frame equal to "
    "the previous one, not stored; failed)",
    ("kind", "outcome"),
)
CAPTURE_SECONDS = Histogram(
    "glimpser_capture_duration_seconds",
    "Time one capture took (grab, encode, store), by stream kind",
    ("kind",),
    (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0),
)
ANALYSIS_SECONDS = Histogram(
    "glimpser_analysis_duration_seconds",
    "Time the analysis of one snapshot took (detection, AI description, rules), by stream kind",
    ("kind",),
    (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
AI_CALLS = Counter(
    "glimpser_ai_calls",
    "Requests to the AI server by stream (stream_id empty: summaries across streams), purpose "
    "(describe, rule, summary) and outcome (ok, cached, failed)",
    ("stream_id", "purpose", "outcome"),
)
AI_TOKENS = Counter(
    "glimpser_ai_tokens",
    "Tokens the AI server reported used, by stream and purpose",
    ("stream_id", "purpose"),
)
AI_ERRORS = Counter(
    "glimpser_ai_errors",
    "AI requests that failed (after their retries), by stream and purpose",
    ("stream_id", "purpose"),
)
EVENTS = Counter(
    "glimpser_events",
    "Events raised, by rule (rule_id empty: a system event of no rule), severity and kind",
    ("rule_id", "severity", "kind"),
)
DELIVERIES = Counter(
    "glimpser_deliveries",
    "Notification deliveries by channel kind and the status each try ended in (sent, failed, "
    "retrying, skipped; skipped also for deliveries not sent at routing time)",
    ("channel_kind", "status"),
)
JOBS = Counter(
    "glimpser_jobs",
    "Background jobs that ended, by job and outcome (ok, failed); jobs killed before they could "
    "end are in glimpser_queue_failed_jobs",
    ("job", "outcome"),
)

COUNTERS: tuple[Counter, ...] = (CAPTURES, AI_CALLS, AI_TOKENS, AI_ERRORS, EVENTS, DELIVERIES, JOBS)
HISTOGRAMS: tuple[Histogram, ...] = (CAPTURE_SECONDS, ANALYSIS_SECONDS)

# Recording failures are logged once, then again only after a recording has worked.
_failing = False


def _labels(values: Sequence[object]) -> str:
    return json.dumps(["" if v is None else str(v) for v in values], ensure_ascii=False)


def _write(connection: redis.Redis | None, ops: list[tuple[str, str, str, float]]) -> None:
    """Apply (command, key, field, amount) increments in one atomic pipeline; never raise."""
    global _failing
    if connection is None or not ops:
        return
    try:
        pipe = connection.pipeline(transaction=True)
        for command, key, field, amount in ops:
            if command == "hincrby":
                pipe.hincrby(key, field, int(amount))
            else:
                pipe.hincrbyfloat(key, field, float(amount))
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 - metrics must never fail the work they measure
        if not _failing:
            log.warning(
                "metrics not recorded", extra={"error": f"{type(exc).__name__}: {exc}"[:300]}
            )
        _failing = True
        return
    _failing = False


def _count_ops(counter: Counter, values: Sequence[object], amount: float = 1) -> list:
    if len(values) != len(counter.labels):
        raise ValueError(f"{counter.name} takes labels {counter.labels}")
    command = "hincrby" if float(amount).is_integer() else "hincrbyfloat"
    return [(command, counter.key, _labels(values), amount)]


def _observe_ops(histogram: Histogram, values: Sequence[object], value: float) -> list:
    if len(values) != len(histogram.labels):
        raise ValueError(f"{histogram.name} takes labels {histogram.labels}")
    prefix = _labels(values) + SEP
    ops: list = [
        ("hincrby", histogram.key, prefix + "count", 1),
        ("hincrbyfloat", histogram.key, prefix + "sum", value),
    ]
    bound = next((b for b in histogram.buckets if value <= b), None)
    if bound is not None:  # above the last bound: only in +Inf (= count)
        ops.append(("hincrby", histogram.key, prefix + floatToGoString(bound), 1))
    return ops


def count(
    connection: redis.Redis | None, counter: Counter, values: Sequence[object], amount: float = 1
) -> None:
    """Add `amount` to the counter's series `values` (in the order of its labels)."""
    _write(connection, _count_ops(counter, values, amount))


def observe(
    connection: redis.Redis | None, histogram: Histogram, values: Sequence[object], value: float
) -> None:
    """Record one observation (seconds) in the histogram's series `values`."""
    _write(connection, _observe_ops(histogram, values, max(0.0, float(value))))


# --- the recording calls of the pipeline --------------------------------------------------------


def record_capture(connection: redis.Redis | None, kind: str, outcome: str, seconds: float) -> None:
    """One capture: its outcome (stored, unchanged, failed) and how long it took."""
    ops = _count_ops(CAPTURES, (kind, outcome)) + _observe_ops(
        CAPTURE_SECONDS, (kind,), max(0.0, seconds)
    )
    _write(connection, ops)


def record_analysis(connection: redis.Redis | None, kind: str, seconds: float) -> None:
    observe(connection, ANALYSIS_SECONDS, (kind,), seconds)


def record_ai_call(
    connection: redis.Redis | None,
    stream_id: int | None,
    purpose: str,
    outcome: str,
    tokens: int,
) -> None:
    """One AI request (as recorded in an AICall row): outcome ok, cached or failed."""
    ops = _count_ops(AI_CALLS, (stream_id, purpose, outcome))
    if tokens:
        ops += _count_ops(AI_TOKENS, (stream_id, purpose), int(tokens))
    if outcome == "failed":
        ops += _count_ops(AI_ERRORS, (stream_id, purpose))
    _write(connection, ops)


def record_events(connection: redis.Redis | None, events: Iterable[object]) -> None:
    """Events just stored (Event rows): by rule, severity and kind."""
    ops: list = []
    for event in events:
        rule_id = getattr(event, "rule_id", None)
        ops += _count_ops(
            EVENTS, (rule_id or "", getattr(event, "severity", ""), getattr(event, "kind", ""))
        )
    _write(connection, ops)


def record_delivery(connection: redis.Redis | None, channel_kind: str, status: str) -> None:
    count(connection, DELIVERIES, (channel_kind, status))


def record_job(connection: redis.Redis | None, job: str, outcome: str) -> None:
    count(connection, JOBS, (job, outcome))


# --- reading: the scrape ----------------------------------------------------------------------


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _parse_labels(raw: str, size: int) -> list[str] | None:
    try:
        values = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(values, list) or len(values) != size:
        return None  # written by another version with other labels: left out
    return [str(v) for v in values]


def _counter_family(counter: Counter, data: dict) -> CounterMetricFamily:
    family = CounterMetricFamily(counter.name, counter.documentation, labels=counter.labels)
    for field, raw in sorted((_text(k), _text(v)) for k, v in data.items()):
        values = _parse_labels(field, len(counter.labels))
        if values is None:
            continue
        try:
            family.add_metric(values, float(raw))
        except ValueError:
            continue
    return family


def _histogram_family(histogram: Histogram, data: dict) -> HistogramMetricFamily:
    family = HistogramMetricFamily(histogram.name, histogram.documentation, labels=histogram.labels)
    series: dict[str, dict[str, float]] = {}
    for field, raw in ((_text(k), _text(v)) for k, v in data.items()):
        labels, sep, part = field.rpartition(SEP)
        if not sep:
            continue
        try:
            series.setdefault(labels, {})[part] = float(raw)
        except ValueError:
            continue
    for labels in sorted(series):
        values = _parse_labels(labels, len(histogram.labels))
        parts = series[labels]
        if values is None or "count" not in parts:
            continue
        total = parts["count"]
        buckets: list[tuple[str, float]] = []
        running = 0.0
        for bound in histogram.buckets:
            le = floatToGoString(bound)
            running += parts.get(le, 0.0)
            buckets.append((le, min(running, total)))
        buckets.append(("+Inf", total))
        family.add_metric(values, buckets, parts.get("sum", 0.0))
    return family


def _redis_families(connection: redis.Redis) -> list[Metric]:
    """Counters and histograms from Redis, plus the gauges Redis knows (queues, breakers,
    readers, workers)."""
    from rq import Worker

    from glimpser import system_status
    from glimpser.queues import QUEUE_NAMES, get_queue

    pipe = connection.pipeline(transaction=False)
    for metric in (*COUNTERS, *HISTOGRAMS):
        pipe.hgetall(metric.key)
    stored = pipe.execute()
    families: list[Metric] = [
        _counter_family(c, data) for c, data in zip(COUNTERS, stored[: len(COUNTERS)], strict=True)
    ]
    families += [
        _histogram_family(h, data)
        for h, data in zip(HISTOGRAMS, stored[len(COUNTERS) :], strict=True)
    ]

    depth = GaugeMetricFamily(
        "glimpser_queue_depth", "Jobs waiting in each RQ queue", labels=("queue",)
    )
    started = GaugeMetricFamily(
        "glimpser_queue_started_jobs", "Jobs running now, per RQ queue", labels=("queue",)
    )
    scheduled = GaugeMetricFamily(
        "glimpser_queue_scheduled_jobs",
        "Jobs scheduled for later (next captures, delivery retries), per RQ queue",
        labels=("queue",),
    )
    failed = GaugeMetricFamily(
        "glimpser_queue_failed_jobs",
        "Jobs in each RQ queue's failed-job registry (Admin → System lists them)",
        labels=("queue",),
    )
    for name in QUEUE_NAMES:
        queue = get_queue(name, connection)
        depth.add_metric([name], queue.count)
        started.add_metric([name], queue.started_job_registry.count)
        scheduled.add_metric([name], queue.scheduled_job_registry.count)
        failed.add_metric([name], queue.failed_job_registry.count)
    families += [depth, started, scheduled, failed]

    workers = GaugeMetricFamily("glimpser_workers", "RQ worker processes alive (all hosts)")
    workers.add_metric([], Worker.count(connection=connection))
    families.append(workers)

    found = system_status.readers(connection)
    processes = GaugeMetricFamily(
        "glimpser_reader_processes",
        "Readers processes (`glimpser readers`) with a heartbeat, on all hosts",
    )
    processes.add_metric([], len(found))
    streams = GaugeMetricFamily(
        "glimpser_reader_streams", "Streams the readers processes keep a reader open for"
    )
    streams.add_metric([], sum(len(r.streams) for r in found))
    families += [processes, streams]
    return families


def _breaker_family(connection: redis.Redis) -> GaugeMetricFamily:
    from glimpser.notify.breaker import CircuitBreaker

    family = GaugeMetricFamily(
        "glimpser_breaker_state",
        "Each channel's circuit breaker: 1 for the state it is in (closed, open, half-open)",
        labels=("channel_id", "channel_kind", "state"),
    )
    channels = NotificationChannel.select(NotificationChannel.id, NotificationChannel.kind)
    for channel in channels.order_by(NotificationChannel.id):
        # The state only reads Redis; threshold and cool-down matter to writers alone.
        current = CircuitBreaker(connection, channel.id, 1, 1).state().state
        for state in ("closed", "open", "half-open"):
            family.add_metric(
                [str(channel.id), channel.kind, state], 1.0 if state == current else 0.0
            )
    return family


def _database_families() -> list[Metric]:
    """Gauges read from the database: streams, snapshots, rules."""
    states = dict.fromkeys(STREAM_STATES, 0)
    info = GaugeMetricFamily(
        "glimpser_stream_info",
        "1 per stream (not being deleted): its name and kind, to join on stream_id",
        labels=("stream_id", "stream", "kind"),
    )
    for stream_id, name, kind, state in (
        Stream.select(Stream.id, Stream.name, Stream.kind, Stream.state)
        .order_by(Stream.id)
        .tuples()
    ):
        states[state] = states.get(state, 0) + 1
        info.add_metric([str(stream_id), name, kind], 1)
    by_state = GaugeMetricFamily(
        "glimpser_streams", "Streams by state (pending, ok, failing, paused)", labels=("state",)
    )
    for state, n in states.items():
        by_state.add_metric([state], n)

    snapshots = GaugeMetricFamily(
        "glimpser_snapshots", "Snapshots stored, per stream", labels=("stream_id",)
    )
    size = GaugeMetricFamily(
        "glimpser_snapshot_bytes",
        "Bytes of the snapshots stored, per stream",
        labels=("stream_id",),
    )
    rows = (
        Snapshot.select(
            Snapshot.stream,
            peewee.fn.COUNT(Snapshot.id),
            peewee.fn.COALESCE(peewee.fn.SUM(Snapshot.bytes), 0),
        )
        .group_by(Snapshot.stream)
        .order_by(Snapshot.stream)
        .tuples()
    )
    for stream_id, n, total in rows:
        snapshots.add_metric([str(stream_id)], int(n))
        size.add_metric([str(stream_id)], int(total))

    rules = GaugeMetricFamily(
        "glimpser_rule_info", "1 per rule: its name, to join on rule_id", labels=("rule_id", "rule")
    )
    for rule_id, name in Rule.select(Rule.id, Rule.name).order_by(Rule.id).tuples():
        rules.add_metric([str(rule_id), name], 1)
    return [by_state, info, snapshots, size, rules]


class GlimpserCollector:
    """Everything `/metrics` shows, read at scrape time. A source that cannot be read (the
    database or Redis) is reported by glimpser_metrics_source_up 0, and its metrics are left
    out rather than invented."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "glimpser_metrics_source_up",
            "1 when this scrape could read the source (database, redis), else 0",
            labels=("source",),
        )
        families: list[Metric] = []
        database_ok = redis_ok = True
        try:
            families += _database_families()
        except peewee.PeeweeException as exc:
            database_ok = False
            log.warning("metrics: database not readable", extra={"error": str(exc)[:300]})
        try:
            families += _redis_families(self.connection)
        except (redis.RedisError, OSError, peewee.PeeweeException) as exc:
            redis_ok = False
            log.warning("metrics: redis not readable", extra={"error": str(exc)[:300]})
        if database_ok and redis_ok:
            try:
                families.append(_breaker_family(self.connection))
            except (peewee.PeeweeException, redis.RedisError, OSError) as exc:
                log.warning("metrics: breakers not readable", extra={"error": str(exc)[:300]})
        up.add_metric(["database"], 1.0 if database_ok else 0.0)
        up.add_metric(["redis"], 1.0 if redis_ok else 0.0)
        yield up
        yield from families


def render(connection: redis.Redis) -> bytes:
    """The Prometheus text exposition of every metric (for `/metrics`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GlimpserCollector(connection))
    return generate_latest(registry)
