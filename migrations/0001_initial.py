"""Users, settings and the audit log.

Migrations declare the tables as they were at that version (frozen here), so that later
changes to glimpser/models.py never change what an old migration does.
"""

import peewee

from glimpser.db import UTCDateTimeField


def up(db: peewee.Database) -> None:
    class Base(peewee.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class User(Base):
        username = peewee.CharField(max_length=64, unique=True)
        password_hash = peewee.CharField(max_length=255)
        role = peewee.CharField(max_length=16, default="viewer")
        active = peewee.BooleanField(default=True)
        session_epoch = peewee.IntegerField(default=0)
        created_at = UTCDateTimeField()
        last_login_at = UTCDateTimeField(null=True)

    class Setting(Base):
        key = peewee.CharField(max_length=100, primary_key=True)
        value = peewee.TextField(null=True)
        updated_at = UTCDateTimeField()

    class AuditLog(Base):
        at = UTCDateTimeField(index=True)
        user = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
        action = peewee.CharField(max_length=64)
        target = peewee.CharField(max_length=200, default="")
        detail = peewee.TextField(null=True)
        ip = peewee.CharField(max_length=64, default="")

    db.create_tables([User, Setting, AuditLog])
