"""Retention of the history kept in the database, on SQLite and PostgreSQL: summaries (a newer
summary built on a deleted one keeps its text and loses only the link), AI call records and the
audit log, each by its own setting (0 = keep forever), read through glimpser.jobs.settings()."""

from __future__ import annotations

from datetime import timedelta

import pytest

from glimpser import jobs, times
from glimpser.db import database
from glimpser.models import AICall, AuditLog, Summary
from tests.helpers import add_stream, jobs_configured


def _summary(stream, days_ago: float, previous=None, status: str = "done") -> Summary:  # noqa: ANN001
    at = times.utcnow() - timedelta(days=days_ago)
    return Summary.create(
        stream=stream,
        period="day",
        window_start=at - timedelta(days=1),
        window_end=at,
        status=status,
        text=f"{days_ago} days ago",
        previous=previous,
        created_at=at,
    )


def _history(stream) -> dict:  # noqa: ANN001
    now = times.utcnow()
    with database.connection_context():
        s1 = _summary(stream, 400)
        s2 = _summary(stream, 380, previous=s1)
        s3 = _summary(stream, 2, previous=s2)
        stuck = _summary(stream, 500, status="running")  # its build still owns the row
        for days in (100, 91, 89, 1):
            AICall.create(stream=stream, purpose="describe", at=now - timedelta(days=days))
        for days in (400, 366, 364):
            AuditLog.create(action="test", target="x", at=now - timedelta(days=days))
    return {"s1": s1.id, "s2": s2.id, "s3": s3.id, "stuck": stuck.id}


def test_history_past_its_retention_is_pruned(db_app):
    stream = add_stream("Garden")
    ids = _history(stream)
    with jobs_configured(db_app):
        report = jobs.prune_history()
    assert report == {"summaries_deleted": 2, "ai_calls_deleted": 2, "audit_entries_deleted": 2}
    with database.connection_context():
        left = {s.id: s for s in Summary.select()}
        assert set(left) == {ids["s3"], ids["stuck"]}
        assert left[ids["s3"]].previous_id is None  # its base is gone; its own text stays
        assert left[ids["s3"]].text == "2 days ago"
        assert AICall.select().count() == 2
        assert [a.at > times.utcnow() - timedelta(days=365) for a in AuditLog.select()] == [True]
    with jobs_configured(db_app):
        assert jobs.prune_history() == {
            "summaries_deleted": 0,
            "ai_calls_deleted": 0,
            "audit_entries_deleted": 0,
        }


@pytest.mark.parametrize("days", ["0"])
def test_zero_keeps_history_forever(app_factory, database_url, days):
    app = app_factory(
        database_url,
        GLIMPSER_SUMMARY_RETENTION_DAYS=days,
        GLIMPSER_AI_CALL_RETENTION_DAYS=days,
        GLIMPSER_AUDIT_RETENTION_DAYS=days,
    )
    stream = add_stream("Garden")
    _history(stream)
    with jobs_configured(app):
        assert jobs.prune_history() == {
            "summaries_deleted": 0,
            "ai_calls_deleted": 0,
            "audit_entries_deleted": 0,
        }
        assert jobs.prune_audit_log() == 0
    with database.connection_context():
        assert Summary.select().count() == 4 and AICall.select().count() == 4
        assert AuditLog.select().where(AuditLog.action == "test").count() == 3


def test_shorter_settings_prune_more_and_the_page_says_what_goes_next(app_factory, database_url):
    app = app_factory(
        database_url,
        GLIMPSER_SUMMARY_RETENTION_DAYS="1",
        GLIMPSER_AI_CALL_RETENTION_DAYS="30",
        GLIMPSER_AUDIT_RETENTION_DAYS="10",
    )
    from tests.helpers import PASSWORD, setup_admin

    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    stream = add_stream("Garden")
    _history(stream)
    html = admin.get("/admin/system/storage").get_data(as_text=True)
    # The first-run admin's own sign-in entries are new: only the three old ones count.
    assert "summaries: 3 · AI call records: 3 · audit entries: 3" in html
    with jobs_configured(app):
        report = jobs.prune_history()
    assert report == {"summaries_deleted": 3, "ai_calls_deleted": 3, "audit_entries_deleted": 3}
    html = admin.get("/admin/system/storage").get_data(as_text=True)
    assert "summaries: 0 · AI call records: 0 · audit entries: 0" in html
