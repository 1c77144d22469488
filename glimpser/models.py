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
    # The user's IANA time zone ("" = not known yet: the browser's is detected and stored once).
    timezone = peewee.CharField(max_length=64, default="")
    # View choices the console remembers per user (e.g. the wall's column count), as JSON.
    preferences = JSONField(default=dict)

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
# motion/change: a rule matched a detection; ai: a rule that needed the AI matched;
# capture_failed/capture_recovered: a stream stopped or started capturing again.
# test: "Send test" in Admin → Channels (never from a rule).
EVENT_KINDS = ("motion", "change", "ai", "capture_failed", "capture_recovered", "test")


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
    # Analysis settings, validated by glimpser.analysis.schemas.AnalysisSettings.
    analysis = JSONField(default=dict)
    # The latest AI description (written only by the analysis job), for the dashboard card.
    ai_caption = peewee.TextField(default="")
    ai_caption_at = UTCDateTimeField(null=True)
    # Set when an admin deleted the stream: from then on it is gone for every query (see
    # select), while the delete_stream job removes its files and rows (glimpser.media.deletion).
    deleting_since = UTCDateTimeField(null=True)

    @classmethod
    def select(cls, *fields: peewee.Field) -> peewee.ModelSelect:
        """Every query of streams (lists, get, get_or_none, get_by_id, exists, count) leaves
        out the streams being deleted; `select_including_deleting` is for the deletion itself."""
        return super().select(*fields).where(cls.deleting_since.is_null())

    @classmethod
    def select_including_deleting(cls, *fields: peewee.Field) -> peewee.ModelSelect:
        """All stream rows, also those being deleted (only glimpser.media.deletion needs it)."""
        return super().select(*fields)


class StreamAccess(BaseModel):
    """A viewer may see this stream (admins see every stream)."""

    user = peewee.ForeignKeyField(User, backref="stream_access", on_delete="CASCADE")
    stream = peewee.ForeignKeyField(Stream, backref="access", on_delete="CASCADE")

    class Meta:
        indexes = ((("user", "stream"), True),)


class GroupAccess(BaseModel):
    """A viewer may see every stream in this group, also streams that join it later.

    Matched against Stream.groups case-insensitively, as rules match groups (see
    glimpser.auth.access.visible_streams)."""

    user = peewee.ForeignKeyField(User, backref="group_access", on_delete="CASCADE")
    group = peewee.CharField(max_length=64)

    class Meta:
        indexes = ((("user", "group"), True),)


class SetPasswordToken(BaseModel):
    """A one-time link an admin made for a user to set their own password.

    Only the SHA-256 of the link's secret is stored; the link works once, until expires_at."""

    user = peewee.ForeignKeyField(User, backref="set_password_tokens", on_delete="CASCADE")
    token_hash = peewee.CharField(max_length=64)
    created_by = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = UTCDateTimeField(default=times.utcnow)
    expires_at = UTCDateTimeField()
    used_at = UTCDateTimeField(null=True)


class ApiKey(BaseModel):
    """A key for the JSON API (glimpser.auth.api_keys): acts with at most its user's rights,
    narrowed by its scopes and, when stream_ids is set, to those streams.

    Only the SHA-256 of the whole key is stored; `prefix` (shown in lists) finds the row."""

    user = peewee.ForeignKeyField(User, backref="api_keys", on_delete="CASCADE")
    name = peewee.CharField(max_length=100, default="")
    prefix = peewee.CharField(max_length=16, unique=True)
    secret_hash = peewee.CharField(max_length=64)
    scopes = JSONField(default=list)  # of glimpser.auth.api_keys.SCOPES
    stream_ids = JSONField(null=True)  # None: every stream the user sees
    created_by = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = UTCDateTimeField(default=times.utcnow)
    expires_at = UTCDateTimeField(null=True)
    last_used_at = UTCDateTimeField(null=True)
    last_used_from = peewee.CharField(max_length=64, default="")
    revoked_at = UTCDateTimeField(null=True)


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
    # Written by the analysis job (glimpser.analysis.pipeline); NULL until analysed.
    motion_score = peewee.FloatField(null=True)  # share of the unmasked area in motion, 0..1
    changed_fraction = peewee.FloatField(null=True)  # share of pixels that changed at all, 0..1
    changed = peewee.BooleanField(null=True)
    boxes = JSONField(null=True)  # [[x, y, w, h], ...] as fractions of the picture
    analysis_note = peewee.CharField(max_length=32, default="")  # motion, identical, lighting, ...
    # The AI description: {title, description, objects, threat, confidence} or {error}.
    ai = JSONField(null=True)
    analysed_at = UTCDateTimeField(null=True)
    # The page's text (websites, when text extraction is on), for text diffs; NULL otherwise.
    text = peewee.TextField(null=True)

    class Meta:
        indexes = ((("stream", "captured_at"), False),)


class Rule(BaseModel):
    """Turns analysis into events. Validated by glimpser.analysis.schemas.RuleSpec."""

    name = peewee.CharField(max_length=200, unique=True)
    description = peewee.TextField(default="")
    enabled = peewee.BooleanField(default=True)
    # Which streams: "all", "groups" (any of `groups`) or "chosen" (`stream_ids`).
    applies_to = peewee.CharField(max_length=16, default="all")
    groups = JSONField(default=list)
    stream_ids = JSONField(default=list)
    conditions = JSONField(default=dict)  # RuleConditions
    schedule = JSONField(default=dict)  # RuleSchedule: active windows, quiet hours, timezone
    severity = peewee.CharField(max_length=16, default="info")
    cooldown_seconds = peewee.IntegerField(default=300)
    channels = JSONField(default=list)  # notification channel ids (the notifications issue)
    created_at = UTCDateTimeField(default=times.utcnow)
    updated_at = UTCDateTimeField(default=times.utcnow)


class Event(BaseModel):
    stream = peewee.ForeignKeyField(Stream, null=True, backref="events", on_delete="CASCADE")
    snapshot = peewee.ForeignKeyField(Snapshot, null=True, backref="events", on_delete="SET NULL")
    rule = peewee.ForeignKeyField(Rule, null=True, backref="events", on_delete="SET NULL")
    kind = peewee.CharField(max_length=32)  # one of EVENT_KINDS
    severity = peewee.CharField(max_length=16, default="info")
    title = peewee.CharField(max_length=300)
    description = peewee.TextField(default="")
    data = JSONField(default=dict)
    acknowledged = peewee.BooleanField(default=False)
    created_at = UTCDateTimeField(default=times.utcnow, index=True)


TIMELAPSE_STATES = ("queued", "running", "done", "failed")


class Timelapse(BaseModel):
    """An MP4 built from a stream's snapshots over a time range (see glimpser.media.timelapse)."""

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


class Summary(BaseModel):
    """An AI summary of a time window: one stream (`stream`), or several (`stream_ids`).

    Scheduled summaries across streams cover every stream; one requested by a viewer covers the
    streams they may see (`requested_by`). Each is built on the previous one of its scope.
    """

    stream = peewee.ForeignKeyField(Stream, null=True, backref="summaries", on_delete="CASCADE")
    stream_ids = JSONField(default=list)  # the streams the summary covers
    requested_by = peewee.ForeignKeyField(User, null=True, backref="summaries", on_delete="CASCADE")
    period = peewee.CharField(max_length=16)  # hour, day, custom
    window_start = UTCDateTimeField()
    window_end = UTCDateTimeField()
    status = peewee.CharField(max_length=16, default="queued")  # queued, running, done, failed
    text = peewee.TextField(default="")
    error = peewee.TextField(default="")
    previous = peewee.ForeignKeyField("self", null=True, on_delete="SET NULL")
    model = peewee.CharField(max_length=200, default="")
    total_tokens = peewee.IntegerField(default=0)
    created_at = UTCDateTimeField(default=times.utcnow, index=True)
    finished_at = UTCDateTimeField(null=True)


class AICall(BaseModel):
    """One request to the AI server: what for, tokens used, outcome (for cost control)."""

    at = UTCDateTimeField(default=times.utcnow, index=True)
    stream = peewee.ForeignKeyField(Stream, null=True, backref="ai_calls", on_delete="CASCADE")
    purpose = peewee.CharField(max_length=16)  # describe, rule, summary
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


CHANNEL_KINDS = ("webhook", "webpush", "pushover", "email", "cap", "apprise")
DELIVERY_STATES = ("queued", "sending", "retrying", "sent", "failed", "skipped")


class NotificationChannel(BaseModel):
    """Where notifications go. `config` is validated by the kind's schema (glimpser.notify)."""

    name = peewee.CharField(max_length=200, unique=True)
    kind = peewee.CharField(max_length=16)  # one of CHANNEL_KINDS
    config = JSONField(default=dict)  # secrets included: never rendered, exported on request
    enabled = peewee.BooleanField(default=True)
    min_severity = peewee.CharField(max_length=16, default="info")
    cooldown_seconds = peewee.IntegerField(default=0)  # per channel and stream
    created_at = UTCDateTimeField(default=times.utcnow)
    updated_at = UTCDateTimeField(default=times.utcnow)


class Delivery(BaseModel):
    """One event sent (or to be sent) to one channel: exactly one row per pair."""

    event = peewee.ForeignKeyField(Event, backref="deliveries", on_delete="CASCADE")
    channel = peewee.ForeignKeyField(NotificationChannel, backref="deliveries", on_delete="CASCADE")
    # "alert" for the event itself; "cancel" when an acknowledged event is withdrawn (CAP).
    purpose = peewee.CharField(max_length=16, default="alert")
    status = peewee.CharField(max_length=16, default="queued")  # one of DELIVERY_STATES
    attempts = peewee.IntegerField(default=0)
    response_code = peewee.IntegerField(null=True)
    error = peewee.TextField(default="")
    created_at = UTCDateTimeField(default=times.utcnow, index=True)
    updated_at = UTCDateTimeField(default=times.utcnow)
    next_attempt_at = UTCDateTimeField(null=True)
    sent_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("event", "channel", "purpose"), True),)


class PushSubscription(BaseModel):
    """A browser's Web Push subscription, made by a signed-in user from their profile page."""

    user = peewee.ForeignKeyField(User, backref="push_subscriptions", on_delete="CASCADE")
    endpoint = peewee.TextField(unique=True)
    p256dh = peewee.CharField(max_length=200)
    auth = peewee.CharField(max_length=100)
    user_agent = peewee.CharField(max_length=300, default="")
    created_at = UTCDateTimeField(default=times.utcnow)
    last_used_at = UTCDateTimeField(null=True)


class CapMessage(BaseModel):
    """A CAP 1.2 alert issued for an event: the first is msgType Alert, later ones Update or
    Cancel referencing the earlier ones. Stored so the feed and its identifiers are stable."""

    event = peewee.ForeignKeyField(Event, backref="cap_messages", on_delete="CASCADE")
    identifier = peewee.CharField(max_length=200, unique=True)
    msg_type = peewee.CharField(max_length=16)  # Alert, Update, Cancel
    sent_at = UTCDateTimeField(default=times.utcnow, index=True)
    references = peewee.TextField(default="")  # CAP references: "sender,identifier,sent ..."
    xml = peewee.TextField()


ALL_MODELS: list[type[BaseModel]] = [
    User,
    Setting,
    AuditLog,
    Stream,
    StreamAccess,
    GroupAccess,
    SetPasswordToken,
    ApiKey,
    Snapshot,
    Rule,
    Event,
    Timelapse,
    Summary,
    AICall,
    NotificationChannel,
    Delivery,
    PushSubscription,
    CapMessage,
]
