"""API keys (issue 13): per-user keys with scopes, an optional stream restriction and expiry.

Only the SHA-256 of a key is stored; its short public prefix finds the row."""

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

    class ApiKey(Base):
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        name = peewee.CharField(max_length=100, default="")
        prefix = peewee.CharField(max_length=16, unique=True)
        secret_hash = peewee.CharField(max_length=64)
        scopes = peewee.TextField(default="[]")
        stream_ids = peewee.TextField(null=True)
        created_by = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
        created_at = UTCDateTimeField()
        expires_at = UTCDateTimeField(null=True)
        last_used_at = UTCDateTimeField(null=True)
        last_used_from = peewee.CharField(max_length=64, default="")
        revoked_at = UTCDateTimeField(null=True)

    db.create_tables([ApiKey])
