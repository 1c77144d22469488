"""Run-time settings: what Admin → Settings may change without a restart, in every process.

Every setting starts as a GLIMPSER_* environment variable (glimpser.config.load_settings). A
subset — described once by `RuntimeSettings`, a pydantic model whose fields are named after the
`Settings` attributes — may also be changed in the browser. Such a change is stored in the
`Setting` table (keys "settings.<attribute>") and overlaid on the start-up settings, except for
variables that were set in the environment: those win, always (`Settings.from_env`).

How a change reaches every process: saving bumps a version number in Redis (INCR, after the
database commit). Each process holds a `SettingsSource`: it re-checks that number at most every
CHECK_SECONDS (one GET) and reloads the rows when it changed (and every RELOAD_SECONDS anyway,
in case the INCR was lost). The web (glimpser.web.app_settings.current_settings), the RQ
workers (glimpser.jobs.settings) and the readers process (glimpser.capture.readers.ReaderHub)
all read their settings through one. A database or Redis failure while checking keeps the
last good settings (logged once).

Validation reuses glimpser.config's rules (bounds from config.INT_LIMITS, the same parsers for
URLs, rates, networks, time zones, language tags and the VAPID subject), so the form accepts
exactly what the environment accepts.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

from glimpser import config, times
from glimpser.config import ConfigError, Settings
from glimpser.db import database
from glimpser.models import Setting

log = logging.getLogger(__name__)

KEY_PREFIX = "settings."  # Setting rows of this module; other keys are one-time markers
VERSION_KEY = "glimpser:settings:version"
CHECK_SECONDS = 1.0  # how often a process asks Redis whether the settings changed
RELOAD_SECONDS = 60.0  # and reloads them regardless (a lost INCR delays a change, no more)

GROUPS: tuple[tuple[str, str, str], ...] = (
    (
        "ai",
        "Vision AI",
        "The OpenAI-compatible server that describes snapshots and writes summaries.",
    ),
    ("capture", "Capture", "How snapshots are taken, and which sources may be reached."),
    ("retention", "Retention", "How long things are kept (0 = keep forever / no limit)."),
    ("notifications", "Notifications", "Links, CAP alerts and Web Push."),
    ("security", "Security", "Sign-in sessions and the limits on failed sign-ins."),
    ("locale", "Time zone and language", "Defaults for new rules and for the pages."),
)


def _meta(env: str, group: str, **extra: Any) -> dict[str, Any]:
    return {"env": env, "group": group, **extra}


def _int_field(env: str, group: str, title: str, description: str) -> Any:
    """A whole-number field with the default and bounds the environment variable has."""
    default, lo, hi = config.INT_LIMITS[env]
    return Field(
        default,
        ge=lo,
        le=hi,
        title=title,
        description=description,
        json_schema_extra=_meta(env, group),
    )


def _text_field(
    default: str, env: str, group: str, title: str, description: str, max_length: int, **extra: Any
) -> Any:
    return Field(
        default,
        max_length=max_length,
        title=title,
        description=description,
        json_schema_extra=_meta(env, group, **extra),
        repr=not extra.get("secret", False),
    )


def _problem(exc: ConfigError) -> ValueError:
    """config's one-line message without its "GLIMPSER_X=" prefix, for a form field."""
    return ValueError(re.sub(r"^GLIMPSER_[A-Z_]+=", "", str(exc)))


class RuntimeSettings(BaseModel):
    """Every setting Admin → Settings may change: one field per `Settings` attribute, with its
    GLIMPSER_* variable, group, bounds, title and help (the form is rendered from this)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, validate_default=True)

    # --- AI
    ai_base_url: str = _text_field(
        "",
        "GLIMPSER_AI_BASE_URL",
        "ai",
        "AI server URL",
        "An OpenAI-compatible API, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1 "
        "(Ollama). Blank: AI is off (with an API key: OpenAI).",
        500,
    )
    ai_api_key: str = _text_field(
        "",
        "GLIMPSER_AI_API_KEY",
        "ai",
        "API key",
        "Write-only: never shown again. Leave blank to keep the stored key.",
        500,
        secret=True,
        widget="password",
    )
    ai_model: str = _text_field(
        "",
        "GLIMPSER_AI_MODEL",
        "ai",
        "Model",
        "e.g. gpt-4o-mini or llava; needed with a server URL.",
        200,
    )
    ai_default_prompt: str = _text_field(
        "",
        "GLIMPSER_AI_DEFAULT_PROMPT",
        "ai",
        "Default description prompt",
        "Added to the AI's instructions for every stream that has no prompt of its own, "
        "e.g. 'Note vehicles and their colour.'",
        config.AI_PROMPT_MAX,
        widget="textarea",
    )
    ai_daily_token_budget: int = _int_field(
        "GLIMPSER_AI_DAILY_TOKEN_BUDGET",
        "ai",
        "Daily token budget per stream",
        "Tokens one stream may use per day (UTC); 0 = no limit. A stream's own budget wins.",
    )
    ai_timeout: int = _int_field(
        "GLIMPSER_AI_TIMEOUT", "ai", "Timeout (seconds)", "How long one AI request may take."
    )
    # --- capture
    default_interval: int = _int_field(
        "GLIMPSER_DEFAULT_INTERVAL",
        "capture",
        "Default interval for new streams (seconds)",
        "What the 'Capture every' field of a new stream starts with.",
    )
    capture_max_jpeg_bytes: int = _int_field(
        "GLIMPSER_CAPTURE_MAX_JPEG_BYTES",
        "capture",
        "Largest snapshot (bytes)",
        "A capture that yields a bigger picture fails with a clear error.",
    )
    reader_max_interval: int = _int_field(
        "GLIMPSER_READER_MAX_INTERVAL",
        "capture",
        "Keep RTSP streams open up to (seconds)",
        "RTSP streams captured at least this often keep one connection open "
        "(the readers process) instead of connecting for every snapshot; 0 = never.",
    )
    failure_event_after: int = _int_field(
        "GLIMPSER_FAILURE_EVENT_AFTER",
        "capture",
        "Failures before a 'stream down' event",
        "Consecutive failed captures before an event says the stream is down.",
    )
    backoff_max_seconds: int = _int_field(
        "GLIMPSER_BACKOFF_MAX_SECONDS",
        "capture",
        "Longest retry wait (seconds)",
        "A failing stream is retried less and less often, up to this interval.",
    )
    allow_loopback_sources: bool = Field(
        False,
        title="Allow loopback sources",
        description="Let streams capture from this machine (127.0.0.1, localhost). "
        "Addresses of the local network are allowed unless denied below.",
        json_schema_extra=_meta("GLIMPSER_ALLOW_LOOPBACK_SOURCES", "capture"),
    )
    source_deny_cidrs: tuple[str, ...] = Field(
        (),
        max_length=100,
        title="Never capture from these networks",
        description="One network per line (or comma-separated), e.g. 192.168.1.0/24.",
        json_schema_extra=_meta("GLIMPSER_SOURCE_DENY_CIDRS", "capture", widget="lines"),
    )
    # --- retention
    retention_max_age_days: int = _int_field(
        "GLIMPSER_RETENTION_MAX_AGE_DAYS",
        "retention",
        "Snapshots: keep days",
        "Default for streams without their own limit; 0 = no age limit.",
    )
    retention_max_count: int = _int_field(
        "GLIMPSER_RETENTION_MAX_COUNT",
        "retention",
        "Snapshots: keep at most (per stream)",
        "0 = no count limit.",
    )
    retention_max_bytes: int = _int_field(
        "GLIMPSER_RETENTION_MAX_BYTES",
        "retention",
        "Snapshots: keep at most (bytes per stream)",
        "0 = no size limit.",
    )
    event_retention_days: int = _int_field(
        "GLIMPSER_EVENT_RETENTION_DAYS", "retention", "Events: keep days", "0 = keep forever."
    )
    timelapse_retention_days: int = _int_field(
        "GLIMPSER_TIMELAPSE_RETENTION_DAYS",
        "retention",
        "Timelapses: keep days",
        "0 = keep forever.",
    )
    summary_retention_days: int = _int_field(
        "GLIMPSER_SUMMARY_RETENTION_DAYS",
        "retention",
        "Summaries: keep days",
        "0 = keep forever.",
    )
    ai_call_retention_days: int = _int_field(
        "GLIMPSER_AI_CALL_RETENTION_DAYS",
        "retention",
        "AI call records: keep days",
        "The usage records behind the token counts; 0 = keep forever.",
    )
    audit_retention_days: int = _int_field(
        "GLIMPSER_AUDIT_RETENTION_DAYS",
        "retention",
        "Audit log: keep days",
        "0 = keep forever.",
    )
    # --- notifications
    public_url: str = _text_field(
        "",
        "GLIMPSER_PUBLIC_URL",
        "notifications",
        "Public URL",
        "How people reach this install, e.g. https://cams.example.org; notifications link "
        "to events there. Blank: no links.",
        500,
    )
    cap_sender: str = _text_field(
        "glimpser@localhost",
        "GLIMPSER_CAP_SENDER",
        "notifications",
        "CAP sender",
        "The <sender> of CAP alerts, e.g. alerts@example.org.",
        200,
    )
    vapid_subject: str = _text_field(
        "",
        "GLIMPSER_VAPID_SUBJECT",
        "notifications",
        "Web Push contact (VAPID subject)",
        "A mailto: address or https:// URL push services may contact. Blank: the public "
        "URL (https) or mailto: the CAP sender, when usable.",
        500,
    )
    notify_cooldown_seconds: int = _int_field(
        "GLIMPSER_NOTIFY_COOLDOWN_SECONDS",
        "notifications",
        "Global cooldown (seconds)",
        "After a notification is sent, no other is sent for this long; 0 = off.",
    )
    # --- security
    session_lifetime_days: int = _int_field(
        "GLIMPSER_SESSION_LIFETIME_DAYS",
        "security",
        "Session lifetime (days)",
        "How long a sign-in lasts.",
    )
    login_rate_limit: str = _text_field(
        "10 per minute",
        "GLIMPSER_LOGIN_RATE_LIMIT",
        "security",
        "Failed sign-ins per address",
        "e.g. '10 per minute'; more answer 429 until the window passes.",
        200,
    )
    login_user_rate_limit: str = _text_field(
        "100 per hour",
        "GLIMPSER_LOGIN_USER_RATE_LIMIT",
        "security",
        "Failed sign-ins per username",
        "From all addresses together, e.g. '100 per hour'.",
        200,
    )
    # --- time zone and language
    default_timezone: str = _text_field(
        "UTC",
        "GLIMPSER_TIMEZONE",
        "locale",
        "Default time zone",
        "An IANA name, e.g. Europe/Berlin: times are shown in it until a user's own zone is "
        "stored, and a new rule's schedule starts with it.",
        64,
    )
    default_locale: str = _text_field(
        "en",
        "GLIMPSER_LOCALE",
        "locale",
        "Default language",
        "A language tag, e.g. en or de-CH: the language the pages declare (<html lang>).",
        35,
    )

    @field_validator("ai_base_url")
    @classmethod
    def _check_ai_base_url(cls, value: str) -> str:
        value = value.rstrip("/")
        if value:
            try:
                config._ai({"GLIMPSER_AI_BASE_URL": value, "GLIMPSER_AI_MODEL": "m"})
            except ConfigError as exc:
                raise _problem(exc) from None
        return value

    @field_validator("ai_model")
    @classmethod
    def _check_ai_model(cls, value: str, info: Any) -> str:
        if not value and (info.data.get("ai_base_url") or info.data.get("ai_api_key")):
            raise ValueError("is needed with an AI server URL or key (e.g. gpt-4o-mini, llava)")
        return value

    @field_validator("ai_default_prompt")
    @classmethod
    def _check_prompt(cls, value: str) -> str:
        try:
            return config.ai_prompt(value)
        except ConfigError as exc:
            raise _problem(exc) from None

    @field_validator("source_deny_cidrs", mode="before")
    @classmethod
    def _check_deny(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return config.deny_cidrs(value)
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("GLIMPSER_SOURCE_DENY_CIDRS ")) from None
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            try:
                return config.deny_cidrs(",".join(value))
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("GLIMPSER_SOURCE_DENY_CIDRS ")) from None
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        try:
            return config._http_url({"GLIMPSER_PUBLIC_URL": value}, "GLIMPSER_PUBLIC_URL", "")
        except ConfigError as exc:
            raise _problem(exc) from None

    @field_validator("cap_sender")
    @classmethod
    def _check_cap_sender(cls, value: str) -> str:
        return value or "glimpser@localhost"

    @field_validator("vapid_subject")
    @classmethod
    def _check_vapid(cls, value: str) -> str:
        problem = config.vapid_subject_problem(value) if value else ""
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("login_rate_limit", "login_user_rate_limit")
    @classmethod
    def _check_rate(cls, value: str, info: Any) -> str:
        env = field_env(info.field_name)
        try:
            return config.rate_limit(env, value, cls.model_fields[info.field_name].default)
        except ConfigError as exc:
            raise _problem(exc) from None

    @field_validator("default_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            return config._timezone(value)
        except ConfigError as exc:
            raise _problem(exc) from None

    @field_validator("default_locale")
    @classmethod
    def _check_locale(cls, value: str) -> str:
        try:
            return config._locale(value)
        except ConfigError as exc:
            raise _problem(exc) from None


FIELDS: dict[str, FieldInfo] = dict(RuntimeSettings.model_fields)


def field_extra(name: str) -> dict[str, Any]:
    extra = FIELDS[name].json_schema_extra
    return extra if isinstance(extra, dict) else {}


def field_env(name: str) -> str:
    """The GLIMPSER_* variable of a runtime setting."""
    return str(field_extra(name)["env"])


def field_group(name: str) -> str:
    return str(field_extra(name)["group"])


SECRET_FIELDS: frozenset[str] = frozenset(n for n in FIELDS if field_extra(n).get("secret"))


def env_set(settings: Settings, name: str) -> bool:
    """Whether this setting was given by its environment variable (then it wins)."""
    return field_env(name) in settings.from_env


# --- values -----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def values_of(settings: Settings, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The runtime settings' values as the form shows them: the effective ones, except the
    VAPID subject, which is what was given ("" = derived) rather than what was derived."""
    values = {n: _jsonable(getattr(settings, n)) for n in FIELDS}
    if not env_set(settings, "vapid_subject"):
        values["vapid_subject"] = stored.get("vapid_subject", "")
    return values


def load_stored() -> dict[str, Any]:
    """The stored runtime settings {attribute: value} (rows of unknown names are ignored)."""

    def rows() -> dict[str, Any]:
        query = Setting.select().where(Setting.key.startswith(KEY_PREFIX))
        out = {}
        for row in query:
            name = row.key[len(KEY_PREFIX) :]
            if name in FIELDS:
                out[name] = row.value
        return out

    if database.is_closed():
        with database.connection_context():
            return rows()
    return rows()


def validate(base: Settings, values: Mapping[str, Any]) -> RuntimeSettings:
    """RuntimeSettings from `values`; raises ValidationError for the fields the form may change.

    A value set by the environment was accepted by config.py, whose limits can be looser than
    the form's (e.g. no length limit on the CAP sender): it never blocks a save, and is kept.
    """
    try:
        return RuntimeSettings.model_validate(values)
    except ValidationError as exc:
        pinned = {
            str(e["loc"][0]) for e in exc.errors() if e["loc"] and env_set(base, str(e["loc"][0]))
        }
        if not pinned or len(pinned) < len({str(e["loc"][0]) for e in exc.errors() if e["loc"]}):
            raise
    stand_in = {n: (FIELDS[n].default if n in pinned else v) for n, v in values.items()}
    model = RuntimeSettings.model_validate(stand_in)
    return model.model_copy(update={n: values[n] for n in pinned})


def overlay(base: Settings, stored: Mapping[str, Any]) -> Settings:
    """The start-up settings with the stored values laid over them (environment wins).

    Stored values that no longer validate (e.g. a bound changed) are ignored with a warning,
    together with the rest of their group (the AI URL and model only make sense together).
    """
    given = {n: v for n, v in stored.items() if n in FIELDS and not env_set(base, n)}
    values = values_of(base, given)
    values.update(given)
    try:
        model = validate(base, values)
    except ValidationError as exc:
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"] and e["loc"][0] in FIELDS}
        log.warning("ignoring stored settings that do not validate", extra={"fields": sorted(bad)})
        groups = {field_group(n) for n in bad}
        given = {n: v for n, v in given.items() if field_group(n) not in groups}
        values = values_of(base, given)
        values.update(given)
        try:
            model = validate(base, values)
        except ValidationError:
            return base
    return effective(base, model)


def effective(base: Settings, model: RuntimeSettings) -> Settings:
    """`base` with the model's values for every setting the environment did not set."""
    changes = {n: getattr(model, n) for n in FIELDS if not env_set(base, n)}
    ai_url = changes.get("ai_base_url", base.ai_base_url)
    ai_key = changes.get("ai_api_key", base.ai_api_key)
    if not ai_url and ai_key:
        changes["ai_base_url"] = config.OPENAI_BASE_URL  # as config._ai: a key alone = OpenAI
    if not env_set(base, "vapid_subject"):
        changes["vapid_subject"] = model.vapid_subject or config.derived_vapid_subject(
            model.public_url, model.cap_sender
        )
    return dataclasses.replace(base, **changes)


def save(base: Settings, model: RuntimeSettings) -> None:
    """Store the model's values (inside the caller's write transaction): a value equal to the
    start-up one is stored as "no row", so saving twice stores the same thing."""
    for name in FIELDS:
        if env_set(base, name):
            continue
        value = _jsonable(getattr(model, name))
        start = _jsonable(getattr(base, name))
        if name == "vapid_subject":
            start = ""  # "" = derive it: the start-up value is a derived one
        key = KEY_PREFIX + name
        if value == start:
            Setting.delete().where(Setting.key == key).execute()
        else:
            Setting.insert(key=key, value=value).on_conflict(
                conflict_target=[Setting.key],
                update={Setting.value: value, Setting.updated_at: times.utcnow()},
            ).execute()


def publish(connection: redis.Redis) -> bool:
    """Tell every process the settings changed (after the commit); False if Redis failed
    (they still reload within RELOAD_SECONDS)."""
    for source in list(_SOURCES):
        source.invalidate()
    try:
        connection.incr(VERSION_KEY)
    except redis.RedisError as exc:
        log.warning("cannot announce changed settings", extra={"error": str(exc)})
        return False
    return True


# --- following changes ------------------------------------------------------------------------

_SOURCES: weakref.WeakSet[SettingsSource] = weakref.WeakSet()


class SettingsSource:
    """The effective settings of one process, kept current (see the module docstring)."""

    def __init__(self, base: Settings, connection: redis.Redis | Callable[[], redis.Redis]):
        self.base = base
        self._connection = connection
        self._current = base
        self._version: int | None = None
        self._checked_at = float("-inf")
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        self._failing: set[str] = set()  # what is failing now ("redis", "database"): logged once
        _SOURCES.add(self)

    def get(self) -> Settings:
        """The current settings; at most every CHECK_SECONDS this asks Redis for the version."""
        # One thread checks; the others go on with the current settings instead of waiting.
        if time.monotonic() - self._checked_at >= CHECK_SECONDS and self._lock.acquire(
            blocking=False
        ):
            try:
                if time.monotonic() - self._checked_at >= CHECK_SECONDS:
                    self._check()
            finally:
                self._lock.release()
        return self._current

    def check_now(self) -> Settings:
        """Ask Redis for the version now (not at most every CHECK_SECONDS) and return the
        settings. A job calls this as it starts, so that a job enqueued after a change was
        saved always runs with it — whatever the load, not only a second later."""
        with self._lock:
            self._check()
        return self._current

    def invalidate(self) -> None:
        """Check on the next get() (this process saved a change)."""
        self._checked_at = float("-inf")
        self._loaded_at = float("-inf")

    def _redis(self) -> redis.Redis:
        return self._connection() if callable(self._connection) else self._connection

    def _check(self) -> None:
        now = time.monotonic()
        self._checked_at = now
        version: int | None
        try:
            version = int(self._redis().get(VERSION_KEY) or 0)
        except (redis.RedisError, ValueError) as exc:
            self._failed("redis", exc)
            version = None
        else:
            self._recovered("redis")
        if (
            version is not None
            and version == self._version
            and now - self._loaded_at < (RELOAD_SECONDS)
        ):
            return
        try:
            stored = load_stored()
        except Exception as exc:  # noqa: BLE001 - any database trouble: keep the last good
            self._failed("database", exc)
            return
        self._recovered("database")
        fresh = overlay(self.base, stored)
        if fresh != self._current:  # the same object while nothing changed (cached clients)
            self._current = fresh
        self._loaded_at = now
        if version is not None:
            self._version = version

    def _failed(self, what: str, exc: BaseException) -> None:
        if what not in self._failing:
            log.warning(
                "cannot check for changed settings; keeping the last good ones",
                extra={"source": what, "error": str(exc)[:200]},
            )
        self._failing.add(what)

    def _recovered(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            log.info("settings checks work again", extra={"source": what})
