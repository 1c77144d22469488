"""Users and access: grants of stream groups, and one-time set-password links."""

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

    class GroupAccess(Base):
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        group = peewee.CharField(max_length=64)

        class Meta:
            indexes = ((("user", "group"), True),)

    class SetPasswordToken(Base):
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        token_hash = peewee.CharField(max_length=64)
        created_by = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
        created_at = UTCDateTimeField()
        expires_at = UTCDateTimeField()
        used_at = UTCDateTimeField(null=True)

    db.create_tables([GroupAccess, SetPasswordToken])
