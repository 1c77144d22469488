"""Streams, who may see them, their snapshots, and events (analysis extends events later)."""

import peewee

from glimpser.db import UTCDateTimeField


def up(db: peewee.Database) -> None:
    class Base(peewee.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Stream(Base):
        name = peewee.CharField(max_length=200, unique=True)
        description = peewee.TextField(default="")
        kind = peewee.CharField(max_length=32)
        config = peewee.TextField()
        groups = peewee.TextField(default="[]")
        interval = peewee.IntegerField(default=60)
        enabled = peewee.BooleanField(default=True)
        retention_max_age_days = peewee.IntegerField(null=True)
        retention_max_count = peewee.IntegerField(null=True)
        retention_max_bytes = peewee.BigIntegerField(null=True)
        created_at = UTCDateTimeField()
        updated_at = UTCDateTimeField()
        state = peewee.CharField(max_length=16, default="pending")
        last_capture_at = UTCDateTimeField(null=True)
        last_success_at = UTCDateTimeField(null=True)
        last_error = peewee.TextField(default="")
        consecutive_failures = peewee.IntegerField(default=0)
        next_due_at = UTCDateTimeField(null=True, index=True)

    class User(Base):
        class Meta:
            table_name = "user"

    class StreamAccess(Base):
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        stream = peewee.ForeignKeyField(Stream, on_delete="CASCADE")

        class Meta:
            indexes = ((("user", "stream"), True),)

    class Snapshot(Base):
        stream = peewee.ForeignKeyField(Stream, on_delete="CASCADE")
        captured_at = UTCDateTimeField()
        storage_key = peewee.CharField(max_length=500, unique=True)
        content_type = peewee.CharField(max_length=64, default="image/jpeg")
        width = peewee.IntegerField()
        height = peewee.IntegerField()
        bytes = peewee.IntegerField()
        sha256 = peewee.CharField(max_length=64)
        phash = peewee.CharField(max_length=32)
        motion_score = peewee.FloatField(null=True)
        changed = peewee.BooleanField(null=True)

        class Meta:
            indexes = ((("stream", "captured_at"), False),)

    class Event(Base):
        stream = peewee.ForeignKeyField(Stream, null=True, on_delete="CASCADE")
        snapshot = peewee.ForeignKeyField(Snapshot, null=True, on_delete="SET NULL")
        kind = peewee.CharField(max_length=32)
        severity = peewee.CharField(max_length=16, default="info")
        title = peewee.CharField(max_length=300)
        description = peewee.TextField(default="")
        data = peewee.TextField(default="{}")
        acknowledged = peewee.BooleanField(default=False)
        created_at = UTCDateTimeField(index=True)

    db.create_tables([Stream, StreamAccess, Snapshot, Event])
