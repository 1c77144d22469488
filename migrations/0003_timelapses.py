"""Timelapses: MP4s built from a stream's snapshots over a time range."""

import peewee

from glimpser.db import UTCDateTimeField


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

    class Timelapse(Base):
        stream = peewee.ForeignKeyField(Stream, on_delete="CASCADE")
        requested_by = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
        range_start = UTCDateTimeField()
        range_end = UTCDateTimeField()
        fps = peewee.IntegerField(default=10)
        status = peewee.CharField(max_length=16, default="queued")
        progress = peewee.IntegerField(default=0)
        frames = peewee.IntegerField(default=0)
        bytes = peewee.BigIntegerField(default=0)
        width = peewee.IntegerField(null=True)
        height = peewee.IntegerField(null=True)
        storage_key = peewee.CharField(max_length=500, null=True)
        error = peewee.TextField(default="")
        first_snapshot_id = peewee.IntegerField(null=True)
        last_snapshot_id = peewee.IntegerField(null=True)
        last_frame_at = UTCDateTimeField(null=True)
        reused_from = peewee.ForeignKeyField("self", null=True, on_delete="SET NULL")
        reused_frames = peewee.IntegerField(default=0)
        created_at = UTCDateTimeField(index=True)
        finished_at = UTCDateTimeField(null=True)

        class Meta:
            indexes = ((("stream", "created_at"), False),)

    db.create_tables([Timelapse])
