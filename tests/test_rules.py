"""Rules → events on a real database and a real Redis: every condition, targets, schedules in
time zones, cooldown, de-duplication, failing open, questions, and capture-failure rules."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from glimpser.analysis import rules
from glimpser.analysis.ai import AIBudgetExceeded, AIError, Answer, Description
from glimpser.analysis.rules import Observation, evaluate_capture_failure, evaluate_snapshot
from glimpser.analysis.schemas import RuleSpec
from glimpser.capture import scheduling
from glimpser.db import database
from glimpser.models import Event, Rule, Snapshot, Stream
from tests.conftest import run_queued_jobs

# A Monday in winter (Europe/Berlin is UTC+1) and one in summer (UTC+2).
MONDAY_NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(app):
    """SQLite, with the default rule switched off so each test sees only its own rules."""
    with database.connection_context():
        Rule.update(enabled=False).execute()
        yield


@pytest.fixture
def both_db(db_app):
    """The same on SQLite and on PostgreSQL."""
    with database.connection_context():
        Rule.update(enabled=False).execute()
        yield


def make_stream(name: str = "Front door", kind: str = "http_image", **fields) -> Stream:
    return Stream.create(name=name, kind=kind, config={"kind": kind}, **fields)


def make_snapshot(
    stream: Stream, changed: bool = True, score: float = 0.05, fraction: float = 0.08
) -> Snapshot:
    return Snapshot.create(
        stream=stream.id,
        storage_key=f"test/{uuid.uuid4().hex}.jpg",
        width=320,
        height=240,
        bytes=1000,
        sha256=uuid.uuid4().hex * 2,
        phash="0" * 16,
        motion_score=score,
        changed_fraction=fraction,
        changed=changed,
        analysis_note="motion" if changed else "quiet",
    )


def make_rule(name: str = "Rule", conditions: dict | None = None, **fields) -> Rule:
    """A rule stored as the admin form stores one (validated by RuleSpec)."""
    spec = RuleSpec.model_validate(
        {"name": name, "conditions": conditions or {"changed": True}, **fields}
    )
    return Rule.create(
        **spec.model_dump(exclude={"conditions", "schedule"}),
        conditions=spec.conditions.model_dump(exclude_defaults=True),
        schedule=spec.schedule.model_dump(exclude_defaults=True),
    )


def described(
    title: str = "A person at the door",
    text: str = "Someone in a red coat rings the bell.",
    objects: tuple[str, ...] = ("person",),
    threat: int = 0,
) -> Description:
    return Description(
        title=title, description=text, objects=list(objects), threat=threat, confidence=0.9
    )


def evaluate(redis_client, stream, snap, description=None, ai_error="", ask=None, now=None):
    obs = Observation(stream, snap, description, ai_error=ai_error, ask=ask)
    return evaluate_snapshot(obs, redis_client, now or MONDAY_NOON)


# --- detection conditions --------------------------------------------------------------------


def test_the_default_rule_raises_a_motion_event_for_a_changed_snapshot(both_db, redis_client):
    Rule.update(enabled=True).where(Rule.name == "Motion or change").execute()
    door = make_stream()
    site = make_stream("Status page", kind="website")
    assert evaluate(redis_client, door, make_snapshot(door, changed=False)) == []
    [event] = evaluate(redis_client, door, make_snapshot(door, score=0.032))
    assert (event.kind, event.severity, event.title) == ("motion", "info", "Motion on Front door")
    assert event.description == "Motion over 3.2 % of the picture"
    assert event.rule.name == "Motion or change" and event.snapshot_id is not None
    assert event.data["rule"] == "Motion or change" and event.data["score"] == 0.032
    assert "ai_error" not in event.data and "answer" not in event.data
    [change] = evaluate(redis_client, site, make_snapshot(site, score=0.004))
    assert (change.kind, change.title) == ("change", "Change on Status page")
    assert change.description == "Change over 0.4 % of the picture"
    assert Event.select().count() == 2


@pytest.mark.parametrize(
    ("conditions", "score", "fraction", "fires"),
    [
        ({"motion_above": 3}, 0.03, 0.5, False),  # above, not at
        ({"motion_above": 3}, 0.031, 0.0, True),
        ({"changed_area_above": 10}, 0.5, 0.1, False),
        ({"changed_area_above": 10}, 0.0, 0.11, True),
        ({"motion_above": 1, "changed_area_above": 10}, 0.5, 0.05, False),  # all must hold
        ({"motion_above": 1, "changed_area_above": 1}, 0.5, 0.05, True),
    ],
)
def test_thresholds(db, redis_client, conditions, score, fraction, fires):
    stream = make_stream()
    make_rule(conditions=conditions, cooldown_seconds=0)
    events = evaluate(redis_client, stream, make_snapshot(stream, score=score, fraction=fraction))
    assert len(events) == (1 if fires else 0)


# --- AI conditions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "objects", "fires"),
    [
        (["person"], ["Person"], True),
        (["person"], ["people"], True),
        (["person"], ["persons", "tree"], True),
        (["people"], ["person"], True),
        (["car"], ["red cars"], True),
        (["delivery truck"], ["a delivery trucks"], True),
        (["box"], ["boxes"], True),
        (["car"], ["carpet"], False),
        (["person", "dog"], ["cat", "bicycle"], False),
        (["car"], [], False),
    ],
)
def test_objects_any_matches_words_and_simple_plurals(db, redis_client, wanted, objects, fires):
    stream = make_stream()
    make_rule(conditions={"objects_any": wanted}, severity="high")
    events = evaluate(
        redis_client, stream, make_snapshot(stream), described(objects=tuple(objects))
    )
    assert len(events) == (1 if fires else 0)
    if fires:
        [event] = events
        assert event.kind == "ai" and event.severity == "high"
        assert event.title == "A person at the door"
        assert event.description == "Someone in a red coat rings the bell."
        assert event.data["objects"] == objects and event.data["matched_objects"]
        assert event.data["threat"] == 0 and event.data["confidence"] == 0.9


def test_threat_level_at_least(db, redis_client):
    stream = make_stream()
    make_rule(conditions={"threat_at_least": 1}, cooldown_seconds=0)
    assert evaluate(redis_client, stream, make_snapshot(stream), described(threat=0)) == []
    assert len(evaluate(redis_client, stream, make_snapshot(stream), described(threat=1))) == 1
    assert len(evaluate(redis_client, stream, make_snapshot(stream), described(threat=2))) == 1


@pytest.mark.parametrize(
    ("keywords", "fires"),
    [
        (["BELL"], True),  # case-insensitive
        (["red coat"], True),  # phrases
        (["person"], True),  # the title counts too
        (["bel"], False),  # whole words only
        (["rings the doorbell"], False),
    ],
)
def test_keywords_in_title_or_description(db, redis_client, keywords, fires):
    stream = make_stream()
    make_rule(conditions={"keywords": keywords})
    events = evaluate(redis_client, stream, make_snapshot(stream), described())
    assert len(events) == (1 if fires else 0)


def test_ai_conditions_do_not_hold_without_a_description(db, redis_client):
    """No AI configured, or nothing was asked for: nothing pretends to have been seen."""
    stream = make_stream()
    make_rule(conditions={"changed": True, "objects_any": ["person"]})
    assert evaluate(redis_client, stream, make_snapshot(stream), None) == []


def test_fail_open_when_the_description_failed(db, redis_client):
    stream = make_stream()
    make_rule("Intruder", conditions={"changed": True, "objects_any": ["person"]})
    make_rule("Big motion", conditions={"motion_above": 50, "keywords": ["person"]})
    error = "the AI server timed out after 30 s"
    [event] = evaluate(redis_client, stream, make_snapshot(stream), None, ai_error=error)
    assert event.rule.name == "Intruder" and event.kind == "ai"
    assert event.description == f"AI description failed: {error}"
    assert event.data["ai_error"] == error and event.title == "Intruder: Front door"
    # The rule's other conditions still decide: an unchanged picture raises nothing.
    assert evaluate(redis_client, stream, make_snapshot(stream, changed=False), None, error) == []


# --- questions -------------------------------------------------------------------------------


class Asker:
    """A plain function standing in for the AI's yes/no answer, counting its calls."""

    def __init__(self, answer: Answer | Exception) -> None:
        self.answer = answer
        self.questions: list[str] = []

    def __call__(self, question: str) -> Answer:
        self.questions.append(question)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


QUESTION = "Is the garage door open?"


def test_question_matches_with_enough_confidence(db, redis_client):
    stream = make_stream("Garage")
    make_rule("Garage open", conditions={"question": QUESTION, "min_confidence": 0.7})
    ask = Asker(Answer(match=True, confidence=0.8, reason="The door is up."))
    [event] = evaluate(redis_client, stream, make_snapshot(stream), ask=ask)
    assert ask.questions == [QUESTION]
    assert event.kind == "ai" and event.title == "Garage open: Garage"
    assert event.data["answer"] == {"match": True, "confidence": 0.8, "reason": "The door is up."}
    assert event.data["question"] == QUESTION
    assert "answered yes" in event.description and "The door is up." in event.description


@pytest.mark.parametrize(
    "answer",
    [Answer(match=True, confidence=0.69, reason="maybe"), Answer(False, 0.99, "it is closed")],
)
def test_question_does_not_match(db, redis_client, answer):
    stream = make_stream("Garage")
    make_rule(conditions={"question": QUESTION, "min_confidence": 0.7})
    ask = Asker(answer)
    assert evaluate(redis_client, stream, make_snapshot(stream), ask=ask) == []
    assert ask.questions == [QUESTION]


def test_question_is_asked_only_when_it_can_matter(db, redis_client):
    stream = make_stream("Garage")
    make_rule(conditions={"question": QUESTION, "motion_above": 10}, cooldown_seconds=600)
    ask = Asker(Answer(True, 0.9, "open"))
    # Unchanged picture, and cheap conditions that fail: no AI call.
    assert (
        evaluate(redis_client, stream, make_snapshot(stream, changed=False, score=0.5), ask=ask)
        == []
    )
    assert evaluate(redis_client, stream, make_snapshot(stream, score=0.05), ask=ask) == []
    assert ask.questions == []
    # No AI at all: the question cannot hold.
    assert evaluate(redis_client, stream, make_snapshot(stream, score=0.5), ask=None) == []
    assert len(evaluate(redis_client, stream, make_snapshot(stream, score=0.5), ask=ask)) == 1
    # While the rule cools down for this stream, the question is not asked again.
    assert evaluate(redis_client, stream, make_snapshot(stream, score=0.5), ask=ask) == []
    assert ask.questions == [QUESTION]


@pytest.mark.parametrize(
    "error", [AIError("HTTP 500 from the AI server"), AIBudgetExceeded("daily budget used up")]
)
def test_question_fails_open_when_the_ai_fails(db, redis_client, error):
    stream = make_stream("Garage")
    make_rule("Garage open", conditions={"question": QUESTION})
    [event] = evaluate(redis_client, stream, make_snapshot(stream), ask=Asker(error))
    assert event.data["ai_error"] == str(error)
    assert event.description == f"AI description failed: {error}"


# --- targets ---------------------------------------------------------------------------------


def test_rules_for_matches_targets_and_skips_disabled_and_invalid_rules(db, caplog):
    door = make_stream("Front door", groups=["Outdoor", "doors"])
    site = make_stream("Status page", kind="website", groups=["web"])
    everywhere = make_rule("All")
    outdoor = make_rule("Outdoor", applies_to="groups", groups=["outdoor", "garden"])
    chosen = make_rule("Site only", applies_to="chosen", stream_ids=[site.id])
    make_rule("Off", enabled=False)
    Rule.create(name="Broken", conditions={"no such condition": True})
    with caplog.at_level(logging.WARNING, logger="glimpser.analysis.rules"):
        assert [r.id for r in rules.rules_for(door)] == [everywhere.id, outdoor.id]
        assert [r.id for r in rules.rules_for(site)] == [everywhere.id, chosen.id]
    assert any("does not validate" in r.getMessage() for r in caplog.records)


def test_a_rule_that_no_longer_validates_never_stops_the_others(db, redis_client):
    stream = make_stream()
    Rule.create(name="Broken", conditions={"changed": "very much"}, severity="urgent")
    make_rule("Good")
    [event] = evaluate(redis_client, stream, make_snapshot(stream))
    assert event.rule.name == "Good"


# --- schedule --------------------------------------------------------------------------------


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("now", "fires"),
    [
        ("2026-01-05T08:30:00+01:00", True),  # Monday, inside 08:00-18:00 Berlin time
        ("2026-01-05T07:30:00+00:00", True),  # 08:30 in Berlin although 07:30 in UTC
        ("2026-01-05T07:59:00+01:00", False),
        ("2026-01-05T18:00:00+01:00", False),  # the end is exclusive
        ("2026-07-06T16:30:00+00:00", False),  # 18:30 in Berlin in summer (UTC+2)
        ("2026-07-06T15:30:00+00:00", True),
        ("2026-01-10T12:00:00+01:00", False),  # Saturday
    ],
)
def test_active_window_in_the_rules_time_zone(db, redis_client, now, fires):
    stream = make_stream()
    make_rule(
        schedule={
            "timezone": "Europe/Berlin",
            "active": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}],
        },
        cooldown_seconds=0,
    )
    events = evaluate(redis_client, stream, make_snapshot(stream), now=_at(now))
    assert len(events) == (1 if fires else 0)


@pytest.mark.parametrize(
    ("now", "fires"),
    [
        ("2026-01-10T21:59:00+01:00", True),  # Saturday evening, before the quiet hours
        ("2026-01-10T23:00:00+01:00", False),  # Saturday night
        ("2026-01-11T05:59:00+01:00", False),  # Sunday early: still Saturday's quiet hours
        ("2026-01-11T06:00:00+01:00", True),
        ("2026-01-11T23:00:00+01:00", True),  # Sunday night: quiet hours are Fri and Sat only
        ("2026-01-10T21:30:00+00:00", False),  # 22:30 in Berlin
    ],
)
def test_quiet_hours_over_midnight(db, redis_client, now, fires):
    stream = make_stream()
    make_rule(
        schedule={
            "timezone": "Europe/Berlin",
            "quiet": [{"days": [4, 5], "start": "22:00", "end": "06:00"}],
        },
        cooldown_seconds=0,
    )
    events = evaluate(redis_client, stream, make_snapshot(stream), now=_at(now))
    assert len(events) == (1 if fires else 0)


# --- cooldown and de-duplication -------------------------------------------------------------


def test_cooldown_per_rule_and_stream(both_db, redis_client):
    door, garage = make_stream("Front door"), make_stream("Garage")
    rule = make_rule(cooldown_seconds=300)
    other = make_rule("Other rule", cooldown_seconds=300)
    first = evaluate(redis_client, door, make_snapshot(door))
    assert sorted(e.rule_id for e in first) == sorted([rule.id, other.id])
    assert evaluate(redis_client, door, make_snapshot(door)) == []  # within the cooldown
    assert len(evaluate(redis_client, garage, make_snapshot(garage))) == 2  # another stream
    key = rules.cooldown_key(rule.id, door.id)
    assert key == f"glimpser:rule:cooldown:{rule.id}:{door.id}"
    assert float(redis_client.get(key)) == MONDAY_NOON.timestamp()  # the time of the event
    assert redis_client.ttl(key) > 7 * 24 * 3600  # outlives any cooldown: only to tidy up
    redis_client.delete(key)  # as if Redis lost it (for this rule only)
    [again] = evaluate(redis_client, door, make_snapshot(door))
    assert again.rule_id == rule.id
    assert Event.select().where(Event.stream == door.id).count() == 3


def test_a_cooldown_edit_takes_effect_at_once(both_db, redis_client):
    """Issue 10: a cooldown lowered from 300 s to 60 s a minute after an event must let the
    next match after 60 s raise an event (it waited for the old 300 s Redis key to expire)."""
    door = make_stream("Front door")
    rule = make_rule(cooldown_seconds=300)
    [first] = evaluate(redis_client, door, make_snapshot(door), now=MONDAY_NOON)
    assert evaluate(redis_client, door, make_snapshot(door), now=_seconds(59)) == []
    Rule.update(cooldown_seconds=60).where(Rule.id == rule.id).execute()  # the admin's edit
    [second] = evaluate(redis_client, door, make_snapshot(door), now=_seconds(61))
    assert second.id != first.id and second.rule_id == rule.id
    assert evaluate(redis_client, door, make_snapshot(door), now=_seconds(100)) == []
    # Raised again to 300 s: the cooldown runs from the last event (61 s) for 300 s.
    Rule.update(cooldown_seconds=300).where(Rule.id == rule.id).execute()
    assert evaluate(redis_client, door, make_snapshot(door), now=_seconds(360)) == []
    [third] = evaluate(redis_client, door, make_snapshot(door), now=_seconds(361))
    assert Event.select().where(Event.stream == door.id).count() == 3
    assert third.id not in (first.id, second.id)


def _seconds(after: float) -> datetime:
    return MONDAY_NOON + timedelta(seconds=after)


def test_repeats_during_the_cooldown_are_counted_on_the_open_event(both_db, redis_client):
    door = make_stream("Front door")
    make_rule(cooldown_seconds=300)
    first = make_snapshot(door)
    [event] = evaluate(redis_client, door, first)
    obs = Observation(door, make_snapshot(door), None)
    result = rules.evaluate(obs, redis_client, MONDAY_NOON)
    assert result.created == [] and [e.id for e in result.repeated] == [event.id]
    again = rules.evaluate(obs, redis_client, MONDAY_NOON)  # the same snapshot: no second count
    assert again.repeated == []
    later = make_snapshot(door)
    rules.evaluate(Observation(door, later, None), redis_client, MONDAY_NOON)
    event = Event.get_by_id(event.id)
    assert event.data["repeats"] == 2 and event.data["last_snapshot_id"] == later.id
    assert event.snapshot_id == first.id  # the picture that raised it stays
    Event.update(acknowledged=True).execute()  # an acknowledged event is closed
    assert rules.evaluate(Observation(door, make_snapshot(door), None), redis_client).repeated == []


def test_the_same_snapshot_never_raises_two_events(both_db, redis_client):
    stream = make_stream()
    make_rule("No cooldown", cooldown_seconds=0)
    make_rule("With cooldown", cooldown_seconds=300)
    snap = make_snapshot(stream)
    assert len(evaluate(redis_client, stream, snap)) == 2
    redis_client.flushdb()  # even when the cooldown keys are gone (e.g. Redis restarted)
    assert evaluate(redis_client, stream, snap) == []
    assert Event.select().count() == 2
    # A new snapshot of the rule without cooldown raises its event at once.
    [event] = evaluate(redis_client, stream, make_snapshot(stream))
    assert event.rule.name == "No cooldown"


def test_two_workers_on_the_same_snapshot_store_one_event(both_db, redis_client):
    """Two jobs for one snapshot at the same moment (a retried job, two workers)."""
    stream = make_stream()
    make_rule("No cooldown", cooldown_seconds=0)
    snap = make_snapshot(stream)
    barrier = threading.Barrier(4)
    results: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with database.connection_context():
                fresh_stream, fresh_snap = Stream.get_by_id(stream.id), Snapshot.get_by_id(snap.id)
                barrier.wait()
                results.append(len(evaluate(redis_client, fresh_stream, fresh_snap)))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [0, 0, 0, 1]
    assert Event.select().where(Event.snapshot == snap.id).count() == 1


def test_no_cooldown_is_started_when_nothing_is_stored(db, redis_client):
    stream = make_stream()
    rule = make_rule(cooldown_seconds=300)
    snap = make_snapshot(stream)
    Event.create(stream=stream.id, snapshot=snap.id, rule=rule.id, kind="motion", title="x")
    redis_client.flushdb()
    assert evaluate(redis_client, stream, snap) == []  # de-duplicated
    # The cooldown key stays (an event exists); a fresh snapshot waits for it.
    assert evaluate(redis_client, stream, make_snapshot(stream)) == []


# --- capture failures ------------------------------------------------------------------------


def test_capture_failure_rules(both_db, redis_client):
    door, garage = make_stream("Front door"), make_stream("Garage", groups=["inside"])
    make_rule("Camera down", {"capture_failing": True}, severity="critical", cooldown_seconds=600)
    make_rule("Inside down", {"capture_failing": True}, applies_to="groups", groups=["inside"])
    make_rule("Motion")  # a picture rule never answers a capture failure
    [event] = evaluate_capture_failure(door, "HTTP 404", 3, redis_client)
    assert (event.kind, event.severity, event.rule.name) == (
        "capture_failed",
        "critical",
        "Camera down",
    )
    assert event.title == "Front door is not capturing" and event.description == "HTTP 404"
    assert event.data == {"rule": "Camera down", "failures": 3}
    assert event.snapshot_id is None
    assert evaluate_capture_failure(door, "HTTP 404", 3, redis_client) == []  # cooldown
    assert len(evaluate_capture_failure(garage, "timeout", 3, redis_client)) == 2
    # Without Redis, the last event of the rule and stream keeps the cooldown.
    assert evaluate_capture_failure(door, "HTTP 404", 3, None) == []
    # Capture-failure rules never fire on snapshots.
    assert (
        evaluate(redis_client, garage, make_snapshot(garage), now=MONDAY_NOON)[0].rule.name
        == "Motion"
    )


def _failing_stream(camera, name: str) -> Stream:
    with database.connection_context():
        return Stream.create(
            name=name,
            kind="http_image",
            interval=10,
            config={
                "kind": "http_image",
                "url": f"{camera.url}/missing.jpg",
                "auth": "none",
                "username": "",
                "password": "",
                "timeout": 5,
            },
        )


def _fail_until_event(capture_app, stream: Stream) -> list[Event]:
    redis = capture_app.extensions["glimpser.redis"]
    settings = capture_app.extensions["glimpser.settings"]
    for _ in range(settings.failure_event_after):
        with database.connection_context():
            assert scheduling.capture_now(redis, Stream.get_by_id(stream.id))
        run_queued_jobs(capture_app)
    with database.connection_context():
        return list(Event.select().where(Event.stream == stream.id))


def test_a_capture_failing_rule_replaces_the_plain_system_event(capture_app, camera):
    with database.connection_context():
        make_rule("Camera down", {"capture_failing": True}, severity="high")
        quiet = make_rule(
            "Never at night",
            {"capture_failing": True},
            applies_to="groups",
            groups=["night"],
            schedule={"quiet": [{"days": list(range(7)), "start": "00:00", "end": "24:00"}]},
        )
    stream = _failing_stream(camera, "Door")
    [event] = _fail_until_event(capture_app, stream)
    assert event.kind == "capture_failed" and event.rule_id is not None
    assert event.severity == "high" and "HTTP 404" in event.description

    # A rule that is quiet now raises nothing, so the plain system event is stored (rule NULL).
    with database.connection_context():
        Rule.update(enabled=False).where(Rule.id != quiet.id).execute()
    stream = _failing_stream(camera, "Shed")
    with database.connection_context():
        Stream.update(groups=["night"]).where(Stream.id == stream.id).execute()
    [event] = _fail_until_event(capture_app, stream)
    assert event.kind == "capture_failed" and event.rule_id is None
    assert event.severity == "medium" and event.title == "Shed is not capturing"


# --- words -----------------------------------------------------------------------------------


def test_conditions_and_schedules_in_words():
    spec = RuleSpec.model_validate(
        {
            "name": "x",
            "conditions": {
                "changed": True,
                "motion_above": 2.5,
                "objects_any": "person, car",
                "threat_at_least": 1,
                "keywords": "open",
                "question": QUESTION,
            },
            "schedule": {
                "timezone": "Europe/Berlin",
                "active": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}],
                "quiet": [{"start": "22:00", "end": "06:00"}],
            },
        }
    )
    assert rules.describe_conditions(spec.conditions) == (
        "motion or change detected and motion score above 2.5 % and AI sees person or car and "
        "AI threat level at least 1 and description mentions “open” and AI answers yes to "
        f"“{QUESTION}” (confidence at least 0.6)"
    )
    assert rules.describe_schedule(spec.schedule) == (
        "active Mon, Tue, Wed, Thu, Fri 08:00–18:00, quiet every day 22:00–06:00 (Europe/Berlin)"
    )
    assert (
        rules.describe_schedule(
            RuleSpec.model_validate({"name": "y", "conditions": {"changed": True}}).schedule
        )
        == "always"
    )
    words = ("people", "cars", "boxes", "watches", "flies", "glass", "bus")
    assert [rules.singular(w) for w in words] == [
        "person",
        "car",
        "box",
        "watch",
        "fly",
        "glass",
        "bus",
    ]
