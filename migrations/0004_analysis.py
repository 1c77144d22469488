"""Analysis: motion results and AI descriptions on snapshots, rules, summaries, AI usage.

Also creates the default rule of a fresh install: any detected motion or change → info event.
"""

import json
from datetime import UTC, datetime

import peewee
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate

from glimpser.db import UTCDateTimeField

DEFAULT_RULE = {
    "name": "Motion or change",
    "description": "Any stream where motion (cameras, video) or a change (websites) is detected.",
    "enabled": True,
    "applies_to": "all",
    "groups": "[]",
    "stream_ids": "[]",
    "conditions": json.dumps({"changed": True}),
    "schedule": "{}",
    "severity": "info",
    "cooldown_seconds": 300,
    "channels": "[]",
}


def up(db: peewee.Database) -> None:
    class Base(peewee.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class User(Base):
        class Meta:
            table_name = "user"

    class Stream(Base):
        class Meta:
            table_name = "stream"

    class Rule(Base):
        name = peewee.CharField(max_length=200, unique=True)
        description = peewee.TextField(default="")
        enabled = peewee.BooleanField(default=True)
        applies_to = peewee.CharField(max_length=16, default="all")
        groups = peewee.TextField(default="[]")
        stream_ids = peewee.TextField(default="[]")
        conditions = peewee.TextField(default="{}")
        schedule = peewee.TextField(default="{}")
        severity = peewee.CharField(max_length=16, default="info")
        cooldown_seconds = peewee.IntegerField(default=300)
        channels = peewee.TextField(default="[]")
        created_at = UTCDateTimeField()
        updated_at = UTCDateTimeField()

    class Summary(Base):
        stream = peewee.ForeignKeyField(Stream, null=True, on_delete="CASCADE")
        stream_ids = peewee.TextField(default="[]")
        requested_by = peewee.ForeignKeyField(User, null=True, on_delete="CASCADE")
        period = peewee.CharField(max_length=16)
        window_start = UTCDateTimeField()
        window_end = UTCDateTimeField()
        status = peewee.CharField(max_length=16, default="queued")
        text = peewee.TextField(default="")
        error = peewee.TextField(default="")
        previous = peewee.ForeignKeyField("self", null=True, on_delete="SET NULL")
        model = peewee.CharField(max_length=200, default="")
        total_tokens = peewee.IntegerField(default=0)
        created_at = UTCDateTimeField(index=True)
        finished_at = UTCDateTimeField(null=True)

    class AICall(Base):
        at = UTCDateTimeField(index=True)
        stream = peewee.ForeignKeyField(Stream, null=True, on_delete="CASCADE")
        purpose = peewee.CharField(max_length=16)
        model = peewee.CharField(max_length=200, default="")
        prompt_tokens = peewee.IntegerField(default=0)
        completion_tokens = peewee.IntegerField(default=0)
        total_tokens = peewee.IntegerField(default=0)
        ok = peewee.BooleanField(default=True)
        cached = peewee.BooleanField(default=False)
        attempts = peewee.IntegerField(default=1)
        duration_ms = peewee.IntegerField(default=0)
        error = peewee.TextField(default="")

        class Meta:
            table_name = "ai_call"

    db.create_tables([Rule, Summary, AICall])

    migrator = (
        PostgresqlMigrator(db) if isinstance(db, peewee.PostgresqlDatabase) else SqliteMigrator(db)
    )
    migrate(
        migrator.add_column("stream", "analysis", peewee.TextField(default="{}")),
        migrator.add_column("stream", "ai_caption", peewee.TextField(default="")),
        migrator.add_column("stream", "ai_caption_at", UTCDateTimeField(null=True)),
        migrator.add_column("snapshot", "changed_fraction", peewee.FloatField(null=True)),
        migrator.add_column("snapshot", "boxes", peewee.TextField(null=True)),
        migrator.add_column(
            "snapshot", "analysis_note", peewee.CharField(max_length=32, default="")
        ),
        migrator.add_column("snapshot", "ai", peewee.TextField(null=True)),
        migrator.add_column("snapshot", "analysed_at", UTCDateTimeField(null=True)),
        migrator.add_column(
            "event",
            "rule_id",
            peewee.ForeignKeyField(Rule, null=True, on_delete="SET NULL", field=Rule.id),
        ),
    )

    now = datetime.now(UTC)
    Rule.insert(**DEFAULT_RULE, created_at=now, updated_at=now).execute()
