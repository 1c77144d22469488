"""All peewee models, in one place. The schema itself is created by migrations/."""

from __future__ import annotations

import json
from typing import Any

import peewee

from glimpser import times
from glimpser.db import UTCDateTimeField, database

ROLES = ("admin", "viewer")


class JSONField(peewee.TextField):
    """JSON stored as text, so that SQLite and PostgreSQL behave the same."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class User(BaseModel):
    username = peewee.CharField(max_length=64, unique=True)
    password_hash = peewee.CharField(max_length=255)
    role = peewee.CharField(max_length=16, default="viewer")
    active = peewee.BooleanField(default=True)
    # Bumped to end every session of the user at once (deactivation, password reset).
    session_epoch = peewee.IntegerField(default=0)
    created_at = UTCDateTimeField(default=times.utcnow)
    last_login_at = UTCDateTimeField(null=True)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    # flask-login protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return bool(self.active)

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        # The epoch in the id makes old sessions invalid once it is bumped.
        return f"{self.id}:{self.session_epoch}"


class Setting(BaseModel):
    """Typed runtime settings and one-time markers (e.g. that first-run setup is done)."""

    key = peewee.CharField(max_length=100, primary_key=True)
    value = JSONField()
    updated_at = UTCDateTimeField(default=times.utcnow)


class AuditLog(BaseModel):
    at = UTCDateTimeField(default=times.utcnow, index=True)
    user = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="audit_entries")
    action = peewee.CharField(max_length=64)
    target = peewee.CharField(max_length=200, default="")
    detail = JSONField(default=dict)
    ip = peewee.CharField(max_length=64, default="")


ALL_MODELS: list[type[BaseModel]] = [User, Setting, AuditLog]
