"""Rules in `glimpser export` / `import` and Admin → Import/export: chosen streams travel by
name, the import modes apply to rules too, and nothing is half-written."""

from __future__ import annotations

import json
from typing import Any

import peewee
import pytest

from glimpser import db, transfer
from glimpser.analysis.rules import rule_columns
from glimpser.analysis.schemas import RuleSpec
from glimpser.db import database
from glimpser.models import AuditLog, Rule, Stream
from glimpser.transfer import importing
from tests.conftest import make_env
from tests.helpers import setup_admin
from tests.test_cli import run_cli
from tests.test_transfer import PASSWORD, add_stream, fresh_database_url, upload

CAMERA = {"kind": "rtsp", "url": "rtsp://192.168.1.20/stream1", "username": "viewer"}
SCHEDULE = {
    "timezone": "Europe/Berlin",
    "quiet": [{"days": [5, 6], "start": "22:00", "end": "06:00"}],
}


RULE_COLUMNS = ("name", "description", "enabled", "applies_to", "groups", "stream_ids")
RULE_COLUMNS += ("conditions", "schedule", "severity", "cooldown_seconds", "channels")


def add_rule(name: str, conditions: dict | None = None, **fields: Any) -> Rule:
    spec = RuleSpec.model_validate(
        {"name": name, "conditions": conditions or {"changed": True}, **fields}
    )
    return Rule.create(**rule_columns(spec))


def add_sample() -> None:
    """Two cameras and three rules: chosen streams, groups, and a capture-failure rule."""
    door = add_stream("Front door", CAMERA, groups=["outdoor"])
    garage = add_stream("Garage", {**CAMERA, "url": "rtsp://192.168.1.21/stream1"})
    add_rule(
        "Person at the door",
        {"changed": True, "objects_any": ["person", "car"], "question": "Is someone there?"},
        applies_to="chosen",
        stream_ids=[door.id, garage.id],
        severity="high",
        cooldown_seconds=60,
        schedule=SCHEDULE,
        description="Doors only",
    )
    add_rule("Outdoor motion", {"motion_above": 2.5}, applies_to="groups", groups=["outdoor"])
    add_rule("Camera down", {"capture_failing": True}, severity="critical", enabled=False)


def rules_by_name() -> dict[str, dict[str, Any]]:
    """Every rule's definition with chosen streams by name (ids differ between databases)."""
    names = {s.id: s.name for s in Stream.select()}
    out = {}
    for r in Rule.select():
        row = {k: getattr(r, k) for k in RULE_COLUMNS}
        row["stream_ids"] = sorted(names[i] for i in r.stream_ids)
        out[r.name] = row
    return out


def doc(streams: list[dict] | None = None, rules: list[Any] | None = None) -> dict[str, Any]:
    return {"format": "glimpser", "version": 1, "streams": streams or [], "rules": rules or []}


def camera_entry(name: str, host: str = "10.0.0.1") -> dict[str, Any]:
    return {"name": name, "config": {**CAMERA, "url": f"rtsp://{host}/live"}}


def chosen_rule(name: str, *streams: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "applies_to": "chosen",
        "streams": list(streams),
        "conditions": {"changed": True},
        **extra,
    }


def test_rules_travel_by_stream_name_into_a_fresh_database(
    request, tmp_path, redis_url, database_url
):
    source = db.init_database(database_url)
    db.migrate(source)
    with source.connection_context():
        add_sample()
        original = rules_by_name()
    export_file = tmp_path / "export.json"
    result = run_cli(
        ["export", str(export_file)], make_env(tmp_path / "a", redis_url, database_url)
    )
    assert result.returncode == 0, result.stderr
    assert "exported 2 streams, 4 rules and 0 channels" in result.stderr
    document = json.loads(export_file.read_text())
    [person] = [r for r in document["rules"] if r["name"] == "Person at the door"]
    assert person["streams"] == ["Front door", "Garage"]
    assert "stream_ids" not in person and person["channels"] == []
    assert person["schedule"] == SCHEDULE

    target_url = fresh_database_url(request, database_url, tmp_path)
    target = db.init_database(target_url)
    db.migrate(target)
    with target.connection_context():  # ids in the new database differ from the old ones
        add_stream("Unrelated", {**CAMERA, "url": "rtsp://10.9.9.9/x"})
    imported = run_cli(
        ["import", str(export_file)], make_env(tmp_path / "b", redis_url, target_url)
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "rules: 3 imported, 1 skipped, 0 invalid" in imported.stdout  # the default rule exists
    assert "rule 2, Motion or change: skipped (a rule with this name exists)" in imported.stdout
    target = db.init_database(target_url)
    with target.connection_context():
        assert rules_by_name() == original
        entry = AuditLog.get(AuditLog.action == "stream.import")
        assert entry.detail["rules"] == {"imported": 3, "skipped": 1}


def test_names_map_to_streams_of_the_file_even_when_renamed(db_app):
    with database.connection_context():
        existing = add_stream("Front door", CAMERA)
        report = transfer.import_streams(
            doc(
                [camera_entry("Front door"), camera_entry("Shed")],
                [
                    chosen_rule("Doors", "front door", "Shed"),
                    chosen_rule("Old", "Front door", "Nowhere", "Also gone"),
                ],
            ),
            "rename",
        )
        assert [e.outcome for e in report.entries] == ["renamed", "imported"]
        assert [r.outcome for r in report.rules] == ["imported", "error"]
        assert report.rules[1].errors == {"streams": "no stream named 'Nowhere', 'Also gone'"}
        assert report.has_errors and "rules: 1 imported, 1 invalid" in report.summary()
        renamed = Stream.get(Stream.name == "Front door (2)")
        shed = Stream.get(Stream.name == "Shed")
        rule = Rule.get(Rule.name == "Doors")
        assert sorted(rule.stream_ids) == sorted([renamed.id, shed.id])
        assert existing.id not in rule.stream_ids
        assert not Rule.select().where(Rule.name == "Old").exists()

        # In skip mode the file's stream is the existing one.
        report = transfer.import_streams(
            doc([camera_entry("Front door")], [chosen_rule("Door only", "Front door")]), "skip"
        )
        assert report.entries[0].outcome == "skipped" and report.rules[0].outcome == "imported"
        assert Rule.get(Rule.name == "Door only").stream_ids == [existing.id]


def test_rule_modes_skip_overwrite_rename(db_app):
    with database.connection_context():
        stored = add_rule("Night", {"changed": True}, severity="low", channels=[7])
        entry = {"name": "night", "conditions": {"motion_above": 5}, "severity": "high"}

        report = transfer.import_streams(doc([], [entry]), "skip")
        assert report.rules[0].outcome == "skipped"
        assert Rule.get_by_id(stored.id).severity == "low"

        report = transfer.import_streams(
            doc([], [entry, {**entry, "severity": "medium"}]), "overwrite"
        )
        assert [r.outcome for r in report.rules] == ["skipped", "overwritten"]
        fresh = Rule.get_by_id(stored.id)
        assert fresh.name == "night" and fresh.severity == "medium"
        assert fresh.conditions == {"motion_above": 5.0}
        assert fresh.channels == [7]  # channels stay: they are ids of this installation

        report = transfer.import_streams(doc([], [entry]), "rename")
        assert report.rules[0].outcome == "renamed" and report.rules[0].new_name == "night (2)"
        assert Rule.select().where(Rule.name == "night (2)").exists()


def test_invalid_rule_entries_are_reported_one_by_one(db_app):
    with database.connection_context():
        report = transfer.import_streams(
            doc(
                [],
                [
                    "not a rule",
                    {"name": "No conditions"},
                    {
                        "name": "Bad zone",
                        "conditions": {"changed": True},
                        "schedule": {"timezone": "Mars/Base"},
                    },
                    {
                        "name": "Bad streams",
                        "applies_to": "chosen",
                        "streams": "Front door",
                        "conditions": {"changed": True},
                    },
                    {"name": "Nobody", "applies_to": "chosen", "conditions": {"changed": True}},
                    {"name": "Channel ids", "conditions": {"changed": True}, "channels": [1]},
                    {
                        "name": "Fine",
                        "conditions": {"changed": True},
                        "stream_ids": [3],
                        "colour": "red",
                    },
                ],
            ),
            "skip",
        )
        outcomes = [r.outcome for r in report.rules]
        assert outcomes == ["error"] * 6 + ["imported"]
        errors = [r.errors for r in report.rules]
        assert errors[0] == {"": "not a JSON object"}
        assert "conditions" in errors[1]
        assert "unknown time zone" in errors[2]["schedule.timezone"]
        assert errors[3] == {"streams": "must be a list of stream names"}
        assert errors[4] == {"streams": "choose at least one stream"}
        assert errors[5] == {
            "channels": "must be a list of channel names (ids do not travel between installations)"
        }
        fine = report.rules[6]
        assert fine.ignored == ["stream_ids", "colour"]
        assert any("stream ids do not travel" in n for n in fine.notes)
        assert [r.name for r in Rule.select().order_by(Rule.name)] == ["Fine", "Motion or change"]
    with pytest.raises(transfer.TransferError, match="rules"):
        transfer.import_streams({**doc(), "rules": {"name": "x"}}, "skip")


def test_dry_run_reports_rules_and_writes_nothing(db_app):
    with database.connection_context():
        report = transfer.import_streams(
            doc([camera_entry("Shed")], [chosen_rule("Shed rule", "Shed"), chosen_rule("X", "Y")]),
            "skip",
            dry_run=True,
        )
        assert [r.outcome for r in report.rules] == ["imported", "error"]
        assert Rule.select().count() == 1 and Stream.select().count() == 0


def test_a_failing_rule_write_writes_no_stream_either(db_app, monkeypatch):
    def fail(entry):
        raise peewee.IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(importing, "_write_rule", fail)
    with database.connection_context():
        report = transfer.import_streams(
            doc([camera_entry("Shed")], [chosen_rule("Shed rule", "Shed")]), "skip"
        )
        assert "nothing was written" in report.failure
        assert report.entries[0].outcome == "rolled back"
        assert report.rules[0].outcome == "rolled back"
        assert Stream.select().count() == 0 and Rule.select().count() == 1


def test_the_admin_page_imports_rules_and_reports_them(db_app):
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    content = json.dumps(
        doc([camera_entry("Shed")], [chosen_rule("Shed rule", "Shed"), chosen_rule("X", "Nope")])
    ).encode()
    response = upload(client, content)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "rules: 1 imported, 1 invalid" in html
    rules_table = html.split('<h3 id="report-rules">', 1)[1]
    assert "<td>X</td>" in rules_table
    assert "<code>streams</code>: no stream named &#39;Nope&#39;" in rules_table
    with database.connection_context():
        rule = Rule.get(Rule.name == "Shed rule")
        assert rule.stream_ids == [Stream.get(Stream.name == "Shed").id]
