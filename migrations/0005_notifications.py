"""Notifications: channels, deliveries (one per event × channel), push subscriptions, CAP."""

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

    class Event(Base):
        class Meta:
            table_name = "event"

    class NotificationChannel(Base):
        name = peewee.CharField(max_length=200, unique=True)
        kind = peewee.CharField(max_length=16)
        config = peewee.TextField(default="{}")
        enabled = peewee.BooleanField(default=True)
        min_severity = peewee.CharField(max_length=16, default="info")
        cooldown_seconds = peewee.IntegerField(default=0)
        created_at = UTCDateTimeField()
        updated_at = UTCDateTimeField()

    class Delivery(Base):
        event = peewee.ForeignKeyField(Event, on_delete="CASCADE")
        channel = peewee.ForeignKeyField(NotificationChannel, on_delete="CASCADE")
        purpose = peewee.CharField(max_length=16, default="alert")
        status = peewee.CharField(max_length=16, default="queued")
        attempts = peewee.IntegerField(default=0)
        response_code = peewee.IntegerField(null=True)
        error = peewee.TextField(default="")
        created_at = UTCDateTimeField(index=True)
        updated_at = UTCDateTimeField()
        next_attempt_at = UTCDateTimeField(null=True)
        sent_at = UTCDateTimeField(null=True)

        class Meta:
            indexes = ((("event", "channel", "purpose"), True),)

    class PushSubscription(Base):
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        endpoint = peewee.TextField(unique=True)
        p256dh = peewee.CharField(max_length=200)
        auth = peewee.CharField(max_length=100)
        user_agent = peewee.CharField(max_length=300, default="")
        created_at = UTCDateTimeField()
        last_used_at = UTCDateTimeField(null=True)

    class CapMessage(Base):
        event = peewee.ForeignKeyField(Event, on_delete="CASCADE")
        identifier = peewee.CharField(max_length=200, unique=True)
        msg_type = peewee.CharField(max_length=16)
        sent_at = UTCDateTimeField(index=True)
        references = peewee.TextField(default="")
        xml = peewee.TextField()

    db.create_tables([NotificationChannel, Delivery, PushSubscription, CapMessage])
