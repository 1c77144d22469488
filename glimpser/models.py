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


STREAM_STATES = ("pending", "ok", "failing", "paused")
SEVERITIES = ("info", "low", "medium", "high", "critical")


class Stream(BaseModel):
    """A source Glimpser watches. `config` is validated by the kind's schema (sources.schemas)."""

    name = peewee.CharField(max_length=200, unique=True)
    description = peewee.TextField(default="")
    kind = peewee.CharField(max_length=32)
    config = JSONField()
    groups = JSONField(default=list)
    interval = peewee.IntegerField(default=60)  # seconds between captures
    enabled = peewee.BooleanField(default=True)
    # Per-stream retention; NULL means the global GLIMPSER_RETENTION_* setting.
    retention_max_age_days = peewee.IntegerField(null=True)
    retention_max_count = peewee.IntegerField(null=True)
    retention_max_bytes = peewee.BigIntegerField(null=True)
    created_at = UTCDateTimeField(default=times.utcnow)
    updated_at = UTCDateTimeField(default=times.utcnow)
    # status, written only by the capture job (and pause/resume)
    state = peewee.CharField(max_length=16, default="pending")
    last_capture_at = UTCDateTimeField(null=True)
    last_success_at = UTCDateTimeField(null=True)
    last_error = peewee.TextField(default="")
    consecutive_failures = peewee.IntegerField(default=0)
    next_due_at = UTCDateTimeField(null=True, index=True)


class StreamAccess(BaseModel):
    """A viewer may see this stream (admins see every stream)."""

    user = peewee.ForeignKeyField(User, backref="stream_access", on_delete="CASCADE")
    stream = peewee.ForeignKeyField(Stream, backref="access", on_delete="CASCADE")

    class Meta:
        indexes = ((("user", "stream"), True),)


class Snapshot(BaseModel):
    stream = peewee.ForeignKeyField(Stream, backref="snapshots", on_delete="CASCADE")
    captured_at = UTCDateTimeField(default=times.utcnow)
    storage_key = peewee.CharField(max_length=500, unique=True)
    content_type = peewee.CharField(max_length=64, default="image/jpeg")
    width = peewee.IntegerField()
    height = peewee.IntegerField()
    bytes = peewee.IntegerField()
    sha256 = peewee.CharField(max_length=64)
    phash = peewee.CharField(max_length=32)  # perceptual hash, hex
    motion_score = peewee.FloatField(null=True)
    changed = peewee.BooleanField(null=True)

    class Meta:
        indexes = ((("stream", "captured_at"), False),)


class Event(BaseModel):
    stream = peewee.ForeignKeyField(Stream, null=True, backref="events", on_delete="CASCADE")
    snapshot = peewee.ForeignKeyField(Snapshot, null=True, backref="events", on_delete="SET NULL")
    kind = peewee.CharField(max_length=32)  # capture_failed, capture_recovered, motion, ...
    severity = peewee.CharField(max_length=16, default="info")
    title = peewee.CharField(max_length=300)
    description = peewee.TextField(default="")
    data = JSONField(default=dict)
    acknowledged = peewee.BooleanField(default=False)
    created_at = UTCDateTimeField(default=times.utcnow, index=True)


TIMELAPSE_STATES = ("queued", "running", "done", "failed")


class Timelapse(BaseModel):
    """An MP4 built from a stream's snapshots over a time range (see glimpser.timelapse)."""

    stream = peewee.ForeignKeyField(Stream, backref="timelapses", on_delete="CASCADE")
    requested_by = peewee.ForeignKeyField(
        User, null=True, backref="timelapses", on_delete="SET NULL"
    )
    range_start = UTCDateTimeField()
    range_end = UTCDateTimeField()
    fps = peewee.IntegerField(default=10)
    status = peewee.CharField(max_length=16, default="queued")
    progress = peewee.IntegerField(default=0)  # 0-100
    frames = peewee.IntegerField(default=0)
    bytes = peewee.BigIntegerField(default=0)
    width = peewee.IntegerField(null=True)
    height = peewee.IntegerField(null=True)
    storage_key = peewee.CharField(max_length=500, null=True)
    error = peewee.TextField(default="")
    # Which snapshots went in, so a later, longer range can reuse this video as its prefix.
    first_snapshot_id = peewee.IntegerField(null=True)
    last_snapshot_id = peewee.IntegerField(null=True)
    last_frame_at = UTCDateTimeField(null=True)
    # Set when the build reused an earlier timelapse instead of re-encoding its frames.
    reused_from = peewee.ForeignKeyField(
        "self", null=True, backref="reused_by", on_delete="SET NULL"
    )
    reused_frames = peewee.IntegerField(default=0)
    created_at = UTCDateTimeField(default=times.utcnow, index=True)
    finished_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("stream", "created_at"), False),)


ALL_MODELS: list[type[BaseModel]] = [
    User,
    Setting,
    AuditLog,
    Stream,
    StreamAccess,
    Snapshot,
    Event,
    Timelapse,
]
