"""Versioned migrations: applied once, safe to repeat and to run from several processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import peewee

from glimpser import db

ROOT = Path(__file__).resolve().parent.parent


def test_migrate_twice_is_a_no_op(database_url):
    database = db.init_database(database_url)
    first = db.migrate()
    assert first and first[0] == "0001_initial"
    assert db.migrate() == []
    with database.connection_context():
        tables = set(database.get_tables())
        assert {"user", "setting", "audit_log", "schema_migrations"} <= tables
        assert db.SchemaMigration.select().count() == len(db.discover_migrations())


def test_migrations_create_every_model_column(database_url):
    """The frozen models in migrations/ and glimpser.models must not drift apart."""
    from glimpser.models import ALL_MODELS

    database = db.init_database(database_url)
    db.migrate()
    with database.connection_context():
        for model in ALL_MODELS:
            columns = {c.name for c in database.get_columns(model._meta.table_name)}
            wanted = {f.column_name for f in model._meta.sorted_fields}
            assert wanted == columns, model.__name__


def test_concurrent_migrations_from_several_processes(database_url, tmp_path):
    env = {
        **os.environ,
        "GLIMPSER_DATA_DIR": str(tmp_path),
        "GLIMPSER_DATABASE_URL": database_url,
        "GLIMPSER_LOG_LEVEL": "WARNING",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "glimpser.cli", "migrate"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=60) + (p.returncode,) for p in procs]
    assert all(code == 0 for _out, _err, code in results), results
    outputs = [out.strip() for out, _err, _code in results]
    assert sum(o.startswith("applied:") for o in outputs) == 1, outputs
    database = db.init_database(database_url)
    with database.connection_context():
        assert db.SchemaMigration.select().count() == len(db.discover_migrations())


def test_times_round_trip_as_aware_utc(database_url):
    from datetime import datetime, timedelta, timezone

    from glimpser.models import AuditLog

    database = db.init_database(database_url)
    db.migrate()
    local = datetime(2026, 11, 24, 12, 0, 0, 500, tzinfo=timezone(timedelta(hours=2)))
    with database.connection_context():
        entry = AuditLog.create(action="t", at=local)
        back = AuditLog.get_by_id(entry.id).at
        assert back == local and back.utcoffset() == timedelta(0)
        later = AuditLog.create(action="t", at=local + timedelta(microseconds=1))
        newest = AuditLog.select().order_by(AuditLog.at.desc()).first()
        assert newest.id == later.id


def test_naive_datetimes_are_refused(database_url):
    from datetime import datetime

    import pytest

    from glimpser.models import AuditLog

    database = db.init_database(database_url)
    db.migrate()
    with database.connection_context(), pytest.raises((ValueError, peewee.PeeweeException)):
        AuditLog.create(action="t", at=datetime(2026, 1, 1))
