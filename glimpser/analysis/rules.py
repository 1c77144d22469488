"""Rules decide which analysis results become events.

A rule (glimpser.models.Rule, validated by schemas.RuleSpec) names the streams it applies to,
conditions that must all hold, a schedule, a severity and a cooldown. The analysis job calls
`evaluate_snapshot` for every analysed snapshot; the capture job calls
`evaluate_capture_failure` when a stream starts failing. Both return the events they created,
for the notifications to dispatch to `rule.channels`.

Why the order of work matters:
- Cheap conditions (detection numbers, the stored AI description) are checked first. The
  natural-language question costs an AI call, so it is asked only when every other condition
  holds, the snapshot changed, and the rule is not cooling down for the stream.
- Fail open: when a rule needs the AI and the AI failed, the event is still raised (without a
  description, saying that the AI failed). Missing an intruder because a model timed out is worse
  than an event without a caption.
- Cooldown per rule and stream: a Redis key shared by every worker holds the time of the last
  event, compared with the rule's current cooldown (an edit takes effect at once); besides,
  an event is never stored twice for the same rule and snapshot, even when a job runs twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import peewee
import redis
from pydantic import ValidationError

from glimpser import metrics, times
from glimpser.analysis.schemas import (
    DAY_NAMES,
    RuleConditions,
    RuleSchedule,
    RuleSpec,
    TimeWindow,
    detection_mode,
)
from glimpser.db import database, write_transaction
from glimpser.models import Event, Rule, Snapshot, Stream

if TYPE_CHECKING:  # the web process reads rules without loading the AI client
    from glimpser.analysis.ai import Answer, Description

log = logging.getLogger(__name__)

COOLDOWN_KEY = "glimpser:rule:cooldown:{rule_id}:{stream_id}"
# The cooldown key holds the time of the rule's last event for the stream; it only expires to
# tidy Redis, after longer than any cooldown may last (RuleSpec allows up to 7 days).
COOLDOWN_KEY_TTL = 8 * 24 * 3600
# Claim the cooldown atomically: when the last event (ARGV[1] = its unix time) is at least the
# rule's *current* cooldown (ARGV[2]) before now (ARGV[1]), note now as the last event.
_CLAIM = """
local last = redis.call('GET', KEYS[1])
if last and tonumber(ARGV[1]) - tonumber(last) < tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""
TITLE_MAX = 300


@dataclass
class Observation:
    """What the analysis job knows about one snapshot when the rules are evaluated."""

    stream: Stream
    snapshot: Snapshot  # motion_score, changed_fraction, changed, boxes, ai already set
    description: Description | None
    ai_error: str = ""  # why there is no description although one was wanted
    ask: Callable[[str], Answer] | None = None  # asks the AI a yes/no question about the picture


# --- reading rules --------------------------------------------------------------------------


def rule_values(rule: Rule) -> dict[str, Any]:
    """A stored rule's columns as RuleSpec input (what the form, export and worker validate)."""
    return {
        "name": rule.name,
        "description": rule.description or "",
        "enabled": bool(rule.enabled),
        "applies_to": rule.applies_to,
        "groups": list(rule.groups or []),
        "stream_ids": list(rule.stream_ids or []),
        "conditions": dict(rule.conditions or {}),
        "schedule": dict(rule.schedule or {}),
        "severity": rule.severity,
        "cooldown_seconds": rule.cooldown_seconds,
        "channels": list(rule.channels or []),
    }


def rule_spec(rule: Rule) -> RuleSpec:
    """The stored rule, validated; raises pydantic.ValidationError when it no longer validates."""
    return RuleSpec.model_validate(rule_values(rule))


def rule_columns(spec: RuleSpec, channels: list[int] | None = None) -> dict[str, Any]:
    """A validated spec as the row's columns (the admin form and the import store rules so).

    Only the chosen target's list is kept; defaults are left out of the JSON columns.
    Channels are ids of this installation: callers pass the stored ones to keep them.
    """
    return {
        "name": spec.name,
        "description": spec.description,
        "enabled": spec.enabled,
        "applies_to": spec.applies_to,
        "groups": spec.groups if spec.applies_to == "groups" else [],
        "stream_ids": spec.stream_ids if spec.applies_to == "chosen" else [],
        "conditions": spec.conditions.model_dump(exclude_defaults=True),
        "schedule": spec.schedule.model_dump(exclude_defaults=True),
        "severity": spec.severity,
        "cooldown_seconds": spec.cooldown_seconds,
        "channels": list(spec.channels if channels is None else channels),
    }


def _valid_spec(rule: Rule) -> RuleSpec | None:
    try:
        return rule_spec(rule)
    except ValidationError as exc:
        # A hand-edited or older row must never crash the analysis job: skip it, loudly.
        log.warning(
            "rule skipped: it does not validate",
            extra={"rule_id": rule.id, "rule": rule.name, "error": str(exc)[:500]},
        )
        return None


def applies_to_stream(spec: RuleSpec | Rule, stream: Stream) -> bool:
    """Whether a rule's target (all streams, any of some groups, chosen streams) has the
    stream; from a validated spec, or from a row's columns as they are."""
    if spec.applies_to == "all":
        return True
    if spec.applies_to == "groups":
        wanted = {str(g).lower() for g in spec.groups or []}
        return any(str(g).lower() in wanted for g in stream.groups or [])
    return stream.id in (spec.stream_ids or [])


def alerting(stream: Stream) -> bool:
    """Whether an enabled rule with a notification channel applies to the stream: its
    snapshots are analysed on the alerts queue (queues.enqueue_analysis), ahead of the rest.
    Read from the rules' columns alone, once per capture: cheap, and a rule that no longer
    validates only costs a place in line."""
    targets = Rule.select(Rule.applies_to, Rule.groups, Rule.stream_ids, Rule.channels)
    return any(
        rule.channels and applies_to_stream(rule, stream)
        for rule in targets.where(Rule.enabled == True)  # noqa: E712
    )


def applicable_rules(stream: Stream) -> list[tuple[Rule, RuleSpec]]:
    """The enabled rules that apply to a stream, each with its validated spec (rules that no
    longer validate are skipped). Read once per snapshot: pass it on to `evaluate`."""
    out = []
    for rule in Rule.select().where(Rule.enabled == True).order_by(Rule.id):  # noqa: E712
        spec = _valid_spec(rule)
        if spec is not None and applies_to_stream(spec, stream):
            out.append((rule, spec))
    return out


def rules_for(stream: Stream) -> list[Rule]:
    """The enabled rules that apply to a stream (rules that no longer validate are skipped)."""
    return [rule for rule, _spec in applicable_rules(stream)]


# --- schedule -------------------------------------------------------------------------------


def in_schedule(schedule: RuleSchedule, now: datetime) -> bool:
    """Inside an active window (if there are any) and outside every quiet window, in the
    rule's own time zone, so "22:00-06:00 quiet" means the owner's night, DST included."""
    local = times.to_utc(now).astimezone(ZoneInfo(schedule.timezone))
    weekday, at = local.weekday(), local.time()
    if schedule.active and not any(w.contains(weekday, at) for w in schedule.active):
        return False
    return not any(w.contains(weekday, at) for w in schedule.quiet)


# --- in words (the rules list, the events page) ----------------------------------------------


def _number(value: float) -> str:
    return f"{value:g}"


def describe_conditions(c: RuleConditions) -> str:
    """The conditions as one sentence, e.g. "motion or change and AI sees person or car"."""
    if c.capture_failing:
        return "capture failing"
    parts = []
    if c.changed:
        parts.append("motion or change detected")
    if c.motion_above is not None:
        parts.append(f"motion score above {_number(c.motion_above)} %")
    if c.changed_area_above is not None:
        parts.append(f"changed area above {_number(c.changed_area_above)} %")
    if c.objects_any:
        parts.append("AI sees " + " or ".join(c.objects_any))
    if c.threat_at_least is not None:
        parts.append(f"AI threat level at least {c.threat_at_least}")
    if c.keywords:
        parts.append("description mentions " + " or ".join(f"“{k}”" for k in c.keywords))
    if c.question:
        parts.append(
            f"AI answers yes to “{c.question}” (confidence at least {_number(c.min_confidence)})"
        )
    return " and ".join(parts)


def _window_words(w: TimeWindow) -> str:
    days = "every day" if len(w.days) == 7 else ", ".join(DAY_NAMES[d] for d in w.days)
    span = "all day" if (w.start, w.end) == ("00:00", "24:00") else f"{w.start}–{w.end}"
    return f"{days} {span}"


def describe_schedule(s: RuleSchedule) -> str:
    """The schedule in words; "always" when it has no windows."""
    parts = []
    if s.active:
        parts.append("active " + "; ".join(_window_words(w) for w in s.active))
    if s.quiet:
        parts.append("quiet " + "; ".join(_window_words(w) for w in s.quiet))
    if not parts:
        return "always"
    return ", ".join(parts) + f" ({s.timezone})"


# --- conditions -----------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")
_IRREGULAR = {
    "people": "person",
    "persons": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "geese": "goose",
    "feet": "foot",
    "teeth": "tooth",
}


def singular(word: str) -> str:
    """A naive English singular, enough to match "person" with "people" and "car" with "cars".

    Irregular plurals from a short list; "-ies" → "-y"; "-ches/-shes/-xes/-sses/-zes" lose
    "-es"; otherwise a final "s" (not "ss", not "us"/"is") is dropped.
    """
    w = word.lower()
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "xes", "sses", "zes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _words(text: str) -> list[str]:
    return [singular(w) for w in _WORD.findall(text.lower())]


def object_matches(wanted: str, seen: str) -> bool:
    """Whether an object the AI saw ("red cars") is a wanted one ("car"): the wanted words
    appear in order as whole words, singular and plural alike."""
    want, have = _words(wanted), _words(seen)
    if not want:
        return False
    n = len(want)
    return any(have[i : i + n] == want for i in range(len(have) - n + 1))


def keyword_matches(keyword: str, text: str) -> bool:
    """A whole word (or phrase) of the description, case-insensitive."""
    pattern = r"(?<!\w)" + re.escape(keyword.strip()) + r"(?!\w)"
    return bool(keyword.strip()) and re.search(pattern, text, re.IGNORECASE) is not None


@dataclass
class _Match:
    """Why a rule matched: what goes into the event."""

    ai_failed: str = ""  # the AI failed and the rule fails open
    matched_objects: list[str] = field(default_factory=list)
    answer: Answer | None = None


def needs_description(c: RuleConditions) -> bool:
    """Whether the conditions look at the AI description (objects, keywords, threat)."""
    return bool(c.objects_any or c.keywords) or c.threat_at_least is not None


def _cheap_match(c: RuleConditions, obs: Observation) -> _Match | None:
    """Every condition except the question; None when one does not hold."""
    snap = obs.snapshot
    if c.changed and not snap.changed:
        return None
    if c.motion_above is not None and (snap.motion_score or 0.0) * 100 <= c.motion_above:
        return None
    if (
        c.changed_area_above is not None
        and (snap.changed_fraction or 0.0) * 100 <= c.changed_area_above
    ):
        return None
    match = _Match()
    if not needs_description(c):
        return match
    d = obs.description
    if d is None:
        if obs.ai_error:
            match.ai_failed = obs.ai_error  # fail open
            return match
        return None  # nothing was described (no AI, or no reason to): AI conditions do not hold
    if c.objects_any:
        match.matched_objects = [
            o for o in d.objects if any(object_matches(w, str(o)) for w in c.objects_any)
        ]
        if not match.matched_objects:
            return None
    if c.threat_at_least is not None and (d.threat is None or d.threat < c.threat_at_least):
        return None
    if c.keywords:
        text = f"{d.title}\n{d.description}"
        if not any(keyword_matches(k, text) for k in c.keywords):
            return None
    return match


# --- cooldown and writing -------------------------------------------------------------------


def cooldown_key(rule_id: int, stream_id: int) -> str:
    return COOLDOWN_KEY.format(rule_id=rule_id, stream_id=stream_id)


def _cooling_down(
    spec: RuleSpec, rule: Rule, stream: Stream, connection: redis.Redis | None, now: datetime
) -> bool:
    """Whether the rule is quiet for this stream now (read only; the claim comes later)."""
    if spec.cooldown_seconds <= 0:
        return False
    if connection is not None:
        last = connection.get(cooldown_key(rule.id, stream.id))
        return last is not None and _within(last, spec.cooldown_seconds, now)
    return _recent_event(rule, stream, spec.cooldown_seconds, now)


def _within(last: bytes | str, seconds: int, now: datetime) -> bool:
    """Whether the event noted at unix time `last` is less than `seconds` before `now`.

    The rule's cooldown is compared when asked, not fixed when the event was raised: an
    edited cooldown (shorter or longer) takes effect at once."""
    try:
        return times.to_utc(now).timestamp() - float(last) < seconds
    except ValueError:  # not a time (written by an older version): no cooldown
        return False


def _recent_event(rule: Rule, stream: Stream, seconds: int, now: datetime) -> bool:
    since = times.to_utc(now) - timedelta(seconds=seconds)
    return (
        Event.select(Event.id)
        .where((Event.rule == rule.id) & (Event.stream == stream.id) & (Event.created_at > since))
        .exists()
    )


def _claim_cooldown(
    spec: RuleSpec, rule: Rule, stream: Stream, connection: redis.Redis | None, now: datetime
) -> str | None:
    """Start the cooldown; "" when none applies, None when another event holds it already."""
    if spec.cooldown_seconds <= 0:
        return ""
    if connection is None:
        # Without Redis (e.g. a CLI context) the last event of this rule and stream decides.
        return None if _recent_event(rule, stream, spec.cooldown_seconds, now) else ""
    key = cooldown_key(rule.id, stream.id)
    at = times.to_utc(now).timestamp()
    if connection.eval(_CLAIM, 1, key, repr(at), spec.cooldown_seconds, COOLDOWN_KEY_TTL):
        return key
    return None


def _lock_rule_snapshot(rule_id: int, snapshot_id: int) -> None:
    """On PostgreSQL, serialise concurrent writers for one (rule, snapshot) inside the
    transaction, so the "no event yet" check below cannot race. SQLite's IMMEDIATE
    transaction already serialises every writer."""
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        database.execute_sql(
            "SELECT pg_advisory_xact_lock(%s, %s)", (int(rule_id), int(snapshot_id) % 2**31)
        )


def _store(
    rule: Rule,
    spec: RuleSpec,
    stream: Stream,
    connection: redis.Redis | None,
    now: datetime,
    snapshot_id: int | None,
    fields: dict[str, Any],
) -> Event | None:
    """Claim the cooldown and write the event (once per rule and snapshot)."""
    key = _claim_cooldown(spec, rule, stream, connection, now)
    if key is None:
        return None
    try:
        with write_transaction():
            if snapshot_id is not None:
                _lock_rule_snapshot(rule.id, snapshot_id)
                if (
                    Event.select(Event.id)
                    .where((Event.rule == rule.id) & (Event.snapshot == snapshot_id))
                    .exists()
                ):
                    return None
            event = Event.create(
                stream=stream.id,
                snapshot=snapshot_id,
                rule=rule.id,
                severity=spec.severity,
                **fields,
            )
    except Exception:
        if key and connection is not None:
            connection.delete(key)  # no event was stored: do not silence the next one
        raise
    metrics.record_events(connection, [event])
    return event


# --- snapshots ------------------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return f"{(value or 0.0) * 100:.1f}".rstrip("0").rstrip(".")


def _event_fields(rule: Rule, spec: RuleSpec, obs: Observation, match: _Match) -> dict[str, Any]:
    stream, snap, d = obs.stream, obs.snapshot, obs.description
    conditions = spec.conditions
    mode = detection_mode(stream.kind)
    kind = "ai" if conditions.needs_ai else mode
    data: dict[str, Any] = {
        "rule": rule.name,
        "conditions": conditions.snapshot_conditions(),
        "score": snap.motion_score,
        "changed_fraction": snap.changed_fraction,
    }
    if d is not None:
        data.update(objects=list(d.objects), threat=d.threat, confidence=d.confidence)
    if match.matched_objects:
        data["matched_objects"] = match.matched_objects
    if match.answer is not None:
        a = match.answer
        data["answer"] = {"match": a.match, "confidence": a.confidence, "reason": a.reason}
        data["question"] = conditions.question
    if match.ai_failed:
        data["ai_error"] = match.ai_failed

    if d is not None and d.title:
        title = d.title
    elif not conditions.needs_ai:
        title = f"{'Motion' if mode == 'motion' else 'Change'} on {stream.name}"
    else:
        title = f"{rule.name}: {stream.name}"

    if d is not None and d.description:
        description = d.description
    elif match.ai_failed:
        description = f"AI description failed: {match.ai_failed}"
    elif match.answer is not None:
        description = (
            f"The AI answered yes to “{conditions.question}” "
            f"({match.answer.confidence:.0%} sure): {match.answer.reason}"
        ).rstrip(": ")
    elif snap.analysis_note == "text changed":
        description = "The page's text changed"
    elif mode == "motion":
        description = f"Motion over {_percent(snap.motion_score)} % of the picture"
    else:
        description = f"Change over {_percent(snap.motion_score)} % of the picture"
    return {"kind": kind, "title": title[:TITLE_MAX], "description": description, "data": data}


@dataclass
class Evaluation:
    """What the rules made of one snapshot: new events, and open events that matched again."""

    created: list[Event] = field(default_factory=list)
    repeated: list[Event] = field(default_factory=list)


def evaluate_snapshot(
    obs: Observation, connection: redis.Redis, now: datetime | None = None
) -> list[Event]:
    """Evaluate every applicable rule for one analysed snapshot; the events created."""
    return evaluate(obs, connection, now).created


def _record_repeat(
    rule: Rule, spec: RuleSpec, stream: Stream, snapshot: Snapshot, now: datetime
) -> Event | None:
    """De-duplication: a rule that matches again while cooling down does not raise a new event;
    the open (unacknowledged) event it raised counts the repeat and notes the latest picture."""
    since = times.to_utc(now) - timedelta(seconds=spec.cooldown_seconds)
    with write_transaction():
        event = (
            Event.select()
            .where(
                (Event.rule == rule.id)
                & (Event.stream == stream.id)
                & (Event.acknowledged == False)  # noqa: E712 - peewee expression
                & (Event.created_at > since)
            )
            .order_by(Event.created_at.desc(), Event.id.desc())
            .first()
        )
        if event is None or snapshot.id in (
            event.snapshot_id,
            (event.data or {}).get("last_snapshot_id"),
        ):
            return None
        data = dict(event.data or {})
        data["repeats"] = int(data.get("repeats") or 0) + 1
        data["last_snapshot_id"] = snapshot.id
        data["last_seen_at"] = times.isoformat_precise(times.to_utc(now))
        Event.update(data=data).where(Event.id == event.id).execute()
    return Event.get_by_id(event.id)


def evaluate(
    obs: Observation,
    connection: redis.Redis,
    now: datetime | None = None,
    applicable: list[tuple[Rule, RuleSpec]] | None = None,
) -> Evaluation:
    """Evaluate every applicable rule for one analysed snapshot (see Evaluation).

    `applicable` is `applicable_rules(obs.stream)` when the caller has read it already."""
    from glimpser.analysis.ai import AIError

    now = now or times.utcnow()
    if applicable is None:
        applicable = applicable_rules(obs.stream)
    result = Evaluation()
    events = result.created
    for rule, spec in applicable:
        c = spec.conditions
        if not c.snapshot_conditions() or not in_schedule(spec.schedule, now):
            continue  # a capture-failure rule, or outside its hours
        match = _cheap_match(c, obs)
        if match is None:
            continue
        if c.question:
            # Cost control: a question is only asked about a changed picture, and not while
            # the rule is cooling down for this stream anyway.
            if not obs.snapshot.changed or obs.ask is None:
                continue
            if _cooling_down(spec, rule, obs.stream, connection, now):
                continue
            try:
                answer = obs.ask(c.question)
            except AIError as exc:
                match.ai_failed = match.ai_failed or str(exc)  # fail open
            else:
                if not (answer.match and answer.confidence >= c.min_confidence):
                    continue
                match.answer = answer
        elif _cooling_down(spec, rule, obs.stream, connection, now):
            repeat = _record_repeat(rule, spec, obs.stream, obs.snapshot, now)
            if repeat is not None:
                result.repeated.append(repeat)
            continue
        event = _store(
            rule,
            spec,
            obs.stream,
            connection,
            now,
            obs.snapshot.id,
            _event_fields(rule, spec, obs, match),
        )
        if event is not None:
            events.append(event)
            log.info(
                "rule matched",
                extra={"rule_id": rule.id, "stream_id": obs.stream.id, "event_id": event.id},
            )
    return result


# --- capture failures -----------------------------------------------------------------------


def evaluate_capture_failure(
    stream: Stream,
    error: str,
    failures: int,
    connection: redis.Redis | None,
    now: datetime | None = None,
) -> list[Event]:
    """Events of the "capture failing" rules that apply to the stream (schedule and cooldown
    respected). The capture job stores a plain system event only when this returns none."""
    now = now or times.utcnow()
    events: list[Event] = []
    for rule, spec in applicable_rules(stream):
        if not spec.conditions.capture_failing or not in_schedule(spec.schedule, now):
            continue
        event = _store(
            rule,
            spec,
            stream,
            connection,
            now,
            None,
            {
                "kind": "capture_failed",
                "title": f"{stream.name} is not capturing"[:TITLE_MAX],
                "description": error,
                "data": {"rule": rule.name, "failures": failures},
            },
        )
        if event is not None:
            events.append(event)
    return events
