"""Settings from GLIMPSER_* environment variables (or .env): defaults, validation, one clear
error."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from limits import parse_many

from glimpser.private_files import private_dir


class ConfigError(Exception):
    """Invalid configuration; the message is one line meant for the operator."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value} is out of range ({lo}..{hi})")
    return value


# (default, lowest, highest) of each whole-number setting Admin → Settings may also change: one
# table, so the environment and the form accept exactly the same values.
INT_LIMITS: dict[str, tuple[int, int, int]] = {
    "GLIMPSER_SESSION_LIFETIME_DAYS": (14, 1, 365),
    "GLIMPSER_CAPTURE_MAX_JPEG_BYTES": (2 * 1024 * 1024, 16 * 1024, 64 * 1024 * 1024),
    "GLIMPSER_FAILURE_EVENT_AFTER": (3, 1, 1000),
    "GLIMPSER_BACKOFF_MAX_SECONDS": (300, 1, 86400),
    "GLIMPSER_READER_MAX_INTERVAL": (5, 0, 3600),
    "GLIMPSER_DEFAULT_INTERVAL": (60, 1, 7 * 24 * 3600),
    "GLIMPSER_RETENTION_MAX_AGE_DAYS": (7, 0, 36500),
    "GLIMPSER_RETENTION_MAX_COUNT": (0, 0, 10**9),
    "GLIMPSER_RETENTION_MAX_BYTES": (0, 0, 2**62),
    "GLIMPSER_EVENT_RETENTION_DAYS": (30, 0, 36500),
    "GLIMPSER_SUMMARY_RETENTION_DAYS": (365, 0, 36500),
    "GLIMPSER_AI_CALL_RETENTION_DAYS": (90, 0, 36500),
    "GLIMPSER_AUDIT_RETENTION_DAYS": (365, 0, 36500),
    "GLIMPSER_TIMELAPSE_RETENTION_DAYS": (30, 0, 36500),
    "GLIMPSER_AI_TIMEOUT": (60, 1, 600),
    "GLIMPSER_AI_DAILY_TOKEN_BUDGET": (200_000, 0, 10**9),
    "GLIMPSER_NOTIFY_COOLDOWN_SECONDS": (0, 0, 7 * 86400),
}


def _limited(env: Mapping[str, str], name: str) -> int:
    """A whole-number setting with its default and bounds from INT_LIMITS."""
    return _int(env, name, *INT_LIMITS[name])


def _database_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme == "sqlite":
        if not parsed.path or parsed.path == "/":
            raise ConfigError(
                f"GLIMPSER_DATABASE_URL={raw!r} names no SQLite file (e.g. sqlite:////abs/path.db)"
            )
        return raw
    if parsed.scheme in ("postgres", "postgresql"):
        if not parsed.hostname and "host=" not in (parsed.query or ""):
            raise ConfigError(f"GLIMPSER_DATABASE_URL={raw!r} names no PostgreSQL host")
        if not parsed.path.strip("/"):
            raise ConfigError(f"GLIMPSER_DATABASE_URL={raw!r} names no PostgreSQL database")
        return raw
    raise ConfigError(
        f"GLIMPSER_DATABASE_URL={raw!r} has an unsupported scheme "
        "(use sqlite:///path or postgresql://user:pass@host/db)"
    )


def _redis_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"GLIMPSER_REDIS_URL={raw!r} has an unsupported scheme (use redis://, rediss:// or unix://)"
        )
    return raw


@dataclass(frozen=True)
class Settings:
    """Every setting the processes read at start-up."""

    data_dir: Path
    host: str
    port: int
    database_url: str
    redis_url: str
    private_redis: bool
    secret_key: str = field(repr=False)
    secure_cookies: bool
    login_rate_limit: str
    login_user_rate_limit: str  # failed sign-ins per username from all addresses (a backstop)
    api_rate_limit: str  # requests per API key (glimpser.api)
    session_lifetime_days: int  # how long a signed-in session lasts
    web_workers: int
    web_threads: int
    workers: int
    node_name: str  # this machine's name in the cluster (glimpser.node)
    capture_threads: int  # capture-queue jobs one worker process runs at once (glimpser.workers)
    log_level: str
    max_request_bytes: int
    trusted_proxies: int
    # capture
    chromium: str
    browser_max_per_host: int  # Chromium instances the workers of one host run at once (0 = no cap)
    media_dir: Path
    allow_loopback_sources: bool
    source_deny_cidrs: tuple[str, ...]
    capture_max_jpeg_bytes: int
    store_identical_frames: bool
    failure_event_after: int
    backoff_max_seconds: int
    reader_max_interval: int
    # storage and retention
    storage: str
    snapshot_dir: Path
    s3_bucket: str
    s3_prefix: str
    s3_endpoint_url: str
    s3_region: str
    retention_max_age_days: int
    retention_max_count: int
    retention_max_bytes: int
    event_retention_days: int
    summary_retention_days: int  # 0 = keep forever
    ai_call_retention_days: int
    audit_retention_days: int
    # watching
    live_fps: int
    live_idle_seconds: int
    timelapse_retention_days: int
    accel_redirect_prefix: str
    # analysis and AI (any OpenAI-compatible server); ai_base_url "" = AI not configured
    ai_base_url: str
    ai_api_key: str = field(repr=False)
    ai_model: str
    ai_timeout: int
    ai_max_retries: int
    ai_daily_token_budget: int
    ai_image_max_px: int
    ai_cache_seconds: int
    summary_periods: tuple[str, ...]
    # notifications
    public_url: str  # how people reach this install, for links in notifications ("" = unknown)
    pushover_api_url: str
    cap_sender: str
    # The Web Push VAPID subject (mailto: or https:); "" when no usable one could be derived.
    vapid_subject: str
    cap_feed_public: bool
    notify_max_attempts: int
    notify_backoff_seconds: int
    notify_cooldown_seconds: int
    breaker_threshold: int
    breaker_cooldown_seconds: int
    # time zone and locale defaults (a user's own choice wins)
    default_timezone: str  # an IANA name, e.g. Europe/Berlin
    default_locale: str  # a BCP 47 tag, e.g. en-GB
    # default prompt added to every description request (a stream's own prompt wins)
    ai_default_prompt: str = ""
    # interval (seconds) a new stream's form starts with
    default_interval: int = 60
    # Client networks that may read /metrics without an API key (GLIMPSER_METRICS_ALLOW)
    metrics_allow: tuple[str, ...] = ()
    # Software updates (docs/updates.md): the release repository's base URL ("" = updates not
    # configured) and the trusted root metadata (None = glimpser/updates/root.json as shipped).
    update_url: str = ""
    update_root: Path | None = None
    # The GLIMPSER_* variables that were set (environment or .env): they win over Admin →
    # Settings (glimpser.runtime_settings), which shows them read-only.
    from_env: frozenset[str] = frozenset()
    # Scheduled backups (glimpser.backups): every N hours (0 = off), keeping the newest N
    # archives, with the snapshot files or without.
    backup_every_hours: int = 24
    backup_keep: int = 7
    backup_snapshots: bool = False
    # Signed picture URLs (glimpser.web.pictures): pages carry /pictures/<key>?md5=&expires=
    # URLs that nginx (secure_link) or the app serve without a session; valid this long.
    signed_pictures: bool = False
    signed_picture_lifetime: int = 300
    # With S3 storage, answer a signed picture URL with a redirect to a presigned S3 URL, so
    # browsers fetch the bytes from the bucket (which they must be able to reach).
    s3_presigned_pictures: bool = False

    @property
    def ai_configured(self) -> bool:
        return bool(self.ai_base_url and self.ai_model)

    @property
    def redis_socket(self) -> Path:
        """Unix socket of the private Redis that `glimpser serve` starts."""
        return self.data_dir / "redis.sock"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")


def _secret_key(env: Mapping[str, str], data_dir: Path) -> str:
    given = env.get("GLIMPSER_SECRET_KEY", "").strip()
    if given:
        if len(given) < 16:
            raise ConfigError("GLIMPSER_SECRET_KEY is too short (at least 16 characters)")
        return given
    path = data_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    # O_EXCL: when several processes start at once, exactly one writes the key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def _accel_prefix(raw: str) -> str:
    raw = raw.strip()
    if raw and not (raw.startswith("/") and raw.endswith("/")):
        raise ConfigError(
            f"GLIMPSER_ACCEL_REDIRECT_PREFIX={raw!r} must start and end with / (e.g. /_snapshots/)"
        )
    return raw


OPENAI_BASE_URL = "https://api.openai.com/v1"
PUSHOVER_API_URL = "https://api.pushover.net/1/messages.json"


def _node_name(env: Mapping[str, str]) -> str:
    """GLIMPSER_NODE_NAME: this machine's name in the cluster (default: the hostname)."""
    from glimpser import node

    raw = env.get("GLIMPSER_NODE_NAME", "").strip()
    if raw and not node.valid(raw):
        raise ConfigError(
            f"GLIMPSER_NODE_NAME={raw!r} is not a valid name (letters, digits, '.', '_', '-'; "
            "at most 63 characters, no colon)"
        )
    return raw or node.name()


def _http_url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip().rstrip("/") or default
    if raw and (urlparse(raw).scheme not in ("http", "https") or not urlparse(raw).hostname):
        raise ConfigError(f"{name}={raw!r} is not an http(s) URL")
    return raw


# Names that only mean something inside a home or company network (or nowhere at all).
LOCAL_SUFFIXES = (".localhost", ".local", ".localdomain", ".internal", ".lan", ".home.arpa")
LOCAL_SUFFIXES += (".test", ".invalid", ".example")


def _local_host(host: str) -> str:
    """Why `host` is not a public name or address ("" when it is one)."""
    host = host.strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return "" if address.is_global else f"{host} is not a public address"
    if not host or host == "localhost" or host.endswith(LOCAL_SUFFIXES) or "." not in host:
        return f"{host or 'it'} is a local name"
    return ""


def vapid_subject_problem(subject: str) -> str:
    """Why `subject` cannot be the Web Push VAPID subject ("" when it can).

    RFC 8292 asks for a mailto: or https: contact, and push services check it: Apple's refuses a
    local one such as mailto:glimpser@localhost (403 BadJwtToken, never retried).
    """
    scheme, _, rest = subject.partition(":")
    if scheme.lower() == "mailto":
        local, at, domain = rest.rpartition("@")
        if not (local and at) or any(c.isspace() for c in rest):
            return "is not a mailto: e-mail address (e.g. mailto:ops@example.org)"
        problem = _local_host(domain)
    elif scheme.lower() == "https":
        problem = _local_host(urlparse(subject).hostname or "")
    else:
        return "must be a mailto: address or an https:// URL (e.g. mailto:ops@example.org)"
    return f"is local ({problem}): push services refuse such contacts" if problem else ""


def _vapid_subject(env: Mapping[str, str]) -> str:
    """GLIMPSER_VAPID_SUBJECT (refused at start when local), else the first usable of: the
    public URL (https only), mailto: the CAP sender. "" when neither is usable."""
    given = env.get("GLIMPSER_VAPID_SUBJECT", "").strip()
    if given:
        problem = vapid_subject_problem(given)
        if problem:
            raise ConfigError(f"GLIMPSER_VAPID_SUBJECT={given!r} {problem}")
        return given
    public_url = env.get("GLIMPSER_PUBLIC_URL", "").strip().rstrip("/")
    return derived_vapid_subject(public_url, env.get("GLIMPSER_CAP_SENDER", "").strip())


def derived_vapid_subject(public_url: str, cap_sender: str) -> str:
    """The VAPID subject when none is given: the public URL (https only), else mailto: the CAP
    sender, whichever is usable first; "" when neither is."""
    candidates = [public_url] if public_url.lower().startswith("https://") else []
    candidates.append("mailto:" + cap_sender)
    return next((c for c in candidates if not vapid_subject_problem(c)), "")


def rate_limit(name: str, raw: str, default: str) -> str:
    """A rate such as '10 per minute' (several with ';'), checked the way the limiter reads it."""
    rate = raw.strip() or default
    try:
        parse_many(rate)
    except ValueError:
        raise ConfigError(f"{name}={rate!r} is not a rate (e.g. '10 per minute')") from None
    return rate


def deny_cidrs(raw: str) -> tuple[str, ...]:
    """GLIMPSER_SOURCE_DENY_CIDRS: networks separated by commas (or new lines)."""
    deny = tuple(c.strip() for c in raw.replace("\n", ",").split(",") if c.strip())
    for cidr in deny:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(
                f"GLIMPSER_SOURCE_DENY_CIDRS has an invalid network: {cidr!r}"
            ) from None
    return deny


def metrics_allow(raw: str) -> tuple[str, ...]:
    """GLIMPSER_METRICS_ALLOW: addresses or networks (CIDR) separated by commas, normalised
    ("10.0.0.7" → "10.0.0.7/32")."""
    found = []
    for item in (c.strip() for c in raw.replace("\n", ",").split(",")):
        if not item:
            continue
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(
                f"GLIMPSER_METRICS_ALLOW has an invalid address or network: {item!r}"
            ) from None
    return tuple(found)


def _update_root(raw: str) -> Path | None:
    """GLIMPSER_UPDATE_ROOT: the root metadata file updates trust instead of the shipped one."""
    raw = raw.strip()
    if not raw:
        return None
    path = Path(raw).resolve()
    if not path.is_file():
        raise ConfigError(f"GLIMPSER_UPDATE_ROOT={raw!r} is not a file (a TUF root.json)")
    return path


SUMMARY_PERIODS = ("hour", "day")


def _timezone(raw: str) -> str:
    name = raw.strip() or "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"GLIMPSER_TIMEZONE={raw!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)"
        ) from None
    return name


AI_PROMPT_MAX = 2000


def ai_prompt(raw: str) -> str:
    """GLIMPSER_AI_DEFAULT_PROMPT: added to every description request whose stream has none."""
    prompt = raw.strip()
    if len(prompt) > AI_PROMPT_MAX:
        raise ConfigError(f"GLIMPSER_AI_DEFAULT_PROMPT is too long (at most {AI_PROMPT_MAX})")
    return prompt


_LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _locale(raw: str) -> str:
    tag = raw.strip() or "en"
    if not _LOCALE_RE.match(tag):
        raise ConfigError(f"GLIMPSER_LOCALE={raw!r} is not a language tag (e.g. en, en-GB, de)")
    return tag


def _ai(env: Mapping[str, str]) -> tuple[str, str, str]:
    """(base URL, API key, model); the base URL is "" when AI is not configured."""
    base = env.get("GLIMPSER_AI_BASE_URL", "").strip().rstrip("/")
    key = env.get("GLIMPSER_AI_API_KEY", "").strip()
    model = env.get("GLIMPSER_AI_MODEL", "").strip()
    if not base and key:
        base = OPENAI_BASE_URL
    if base:
        if urlparse(base).scheme not in ("http", "https") or not urlparse(base).hostname:
            raise ConfigError(
                f"GLIMPSER_AI_BASE_URL={base!r} is not an http(s) URL "
                "(e.g. http://127.0.0.1:11434/v1 for Ollama)"
            )
        if not model:
            raise ConfigError(
                "GLIMPSER_AI_MODEL is needed with GLIMPSER_AI_BASE_URL (e.g. gpt-4o-mini, llava)"
            )
    return base, key, model


def _summary_periods(raw: str) -> tuple[str, ...]:
    periods = tuple(p.strip().lower() for p in raw.split(",") if p.strip())
    for p in periods:
        if p not in SUMMARY_PERIODS:
            raise ConfigError(
                f"GLIMPSER_SUMMARY_PERIODS has {p!r}; use any of {', '.join(SUMMARY_PERIODS)}"
            )
    return periods


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings; raise ConfigError with a one-line message.

    Without `env`: the process environment, over a `.env` file in the current directory
    (a variable set in the environment wins over the same one in the file).
    """
    if env is None:
        from_file = {k: v for k, v in dotenv_values(".env").items() if v is not None}
        env = {**from_file, **os.environ}
    data_dir = Path(env.get("GLIMPSER_DATA_DIR", "").strip() or "./data").resolve()
    try:
        private_dir(data_dir)  # 0700: the database and redis.rdb in it hold secrets
    except OSError as exc:
        raise ConfigError(
            f"GLIMPSER_DATA_DIR={str(data_dir)!r} cannot be created: {exc.strerror}"
        ) from None
    if not os.access(data_dir, os.W_OK):
        raise ConfigError(f"GLIMPSER_DATA_DIR={str(data_dir)!r} is not writable")

    db_raw = env.get("GLIMPSER_DATABASE_URL", "").strip()
    database_url = _database_url(db_raw) if db_raw else f"sqlite:///{data_dir / 'glimpser.db'}"

    redis_raw = env.get("GLIMPSER_REDIS_URL", "").strip()
    private_redis = not redis_raw
    if private_redis:
        socket_path = data_dir / "redis.sock"
        if len(str(socket_path)) > 100:
            raise ConfigError(
                f"GLIMPSER_DATA_DIR path is too long for the private Redis socket ({socket_path}); "
                "use a shorter data directory or set GLIMPSER_REDIS_URL"
            )
        redis_url = f"unix://{socket_path}"
    else:
        redis_url = _redis_url(redis_raw)

    log_level = env.get("GLIMPSER_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(
            f"GLIMPSER_LOG_LEVEL={log_level!r} is not one of DEBUG, INFO, WARNING, ERROR"
        )

    login_rate_limit = rate_limit(
        "GLIMPSER_LOGIN_RATE_LIMIT", env.get("GLIMPSER_LOGIN_RATE_LIMIT", ""), "10 per minute"
    )
    login_user_rate_limit = rate_limit(
        "GLIMPSER_LOGIN_USER_RATE_LIMIT",
        env.get("GLIMPSER_LOGIN_USER_RATE_LIMIT", ""),
        "100 per hour",
    )

    api_rate_limit = rate_limit(
        "GLIMPSER_API_RATE_LIMIT", env.get("GLIMPSER_API_RATE_LIMIT", ""), "600 per minute"
    )

    host = env.get("GLIMPSER_HOST", "127.0.0.1").strip() or "127.0.0.1"

    storage = env.get("GLIMPSER_STORAGE", "local").strip().lower() or "local"
    if storage not in ("local", "s3"):
        raise ConfigError(f"GLIMPSER_STORAGE={storage!r} is not 'local' or 's3'")
    s3_bucket = env.get("GLIMPSER_S3_BUCKET", "").strip()
    if storage == "s3" and not s3_bucket:
        raise ConfigError("GLIMPSER_STORAGE=s3 needs GLIMPSER_S3_BUCKET")
    s3_presigned_pictures = _bool(env, "GLIMPSER_S3_PRESIGNED_PICTURES", False)
    if s3_presigned_pictures and storage != "s3":
        raise ConfigError("GLIMPSER_S3_PRESIGNED_PICTURES needs GLIMPSER_STORAGE=s3")
    if s3_presigned_pictures and not _bool(env, "GLIMPSER_SIGNED_PICTURES", False):
        raise ConfigError(
            "GLIMPSER_S3_PRESIGNED_PICTURES needs GLIMPSER_SIGNED_PICTURES=1 "
            "(it redirects signed picture URLs)"
        )
    deny = deny_cidrs(env.get("GLIMPSER_SOURCE_DENY_CIDRS", ""))

    ai_base_url, ai_api_key, ai_model = _ai(env)

    return Settings(
        data_dir=data_dir,
        host=host,
        port=_int(env, "GLIMPSER_PORT", 8000, 1, 65535),
        database_url=database_url,
        redis_url=redis_url,
        private_redis=private_redis,
        secret_key=_secret_key(env, data_dir),
        secure_cookies=_bool(env, "GLIMPSER_SECURE_COOKIES", True),
        login_rate_limit=login_rate_limit,
        login_user_rate_limit=login_user_rate_limit,
        api_rate_limit=api_rate_limit,
        session_lifetime_days=_limited(env, "GLIMPSER_SESSION_LIFETIME_DAYS"),
        web_workers=_int(env, "GLIMPSER_WEB_WORKERS", 2, 1, 64),
        web_threads=_int(env, "GLIMPSER_WEB_THREADS", 8, 1, 256),
        workers=_int(env, "GLIMPSER_WORKERS", 2, 1, 64),
        node_name=_node_name(env),
        capture_threads=_int(env, "GLIMPSER_CAPTURE_THREADS", 8, 0, 256),
        log_level=log_level,
        max_request_bytes=_int(
            env, "GLIMPSER_MAX_REQUEST_BYTES", 16 * 1024 * 1024, 1024, 1024 * 1024 * 1024
        ),
        trusted_proxies=_int(env, "GLIMPSER_TRUSTED_PROXIES", 0, 0, 10),
        chromium=env.get("GLIMPSER_CHROMIUM", "").strip() or "/usr/bin/chromium",
        browser_max_per_host=_int(env, "GLIMPSER_BROWSER_MAX_PER_HOST", 0, 0, 64),
        media_dir=Path(env.get("GLIMPSER_MEDIA_DIR", "").strip() or data_dir / "media").resolve(),
        allow_loopback_sources=_bool(env, "GLIMPSER_ALLOW_LOOPBACK_SOURCES", False),
        source_deny_cidrs=deny,
        capture_max_jpeg_bytes=_limited(env, "GLIMPSER_CAPTURE_MAX_JPEG_BYTES"),
        store_identical_frames=_bool(env, "GLIMPSER_STORE_IDENTICAL_FRAMES", False),
        failure_event_after=_limited(env, "GLIMPSER_FAILURE_EVENT_AFTER"),
        backoff_max_seconds=_limited(env, "GLIMPSER_BACKOFF_MAX_SECONDS"),
        reader_max_interval=_limited(env, "GLIMPSER_READER_MAX_INTERVAL"),
        storage=storage,
        snapshot_dir=Path(
            env.get("GLIMPSER_SNAPSHOT_DIR", "").strip() or data_dir / "snapshots"
        ).resolve(),
        s3_bucket=s3_bucket,
        s3_prefix=env.get("GLIMPSER_S3_PREFIX", "").strip().strip("/"),
        s3_endpoint_url=env.get("GLIMPSER_S3_ENDPOINT_URL", "").strip(),
        s3_region=env.get("GLIMPSER_S3_REGION", "").strip(),
        retention_max_age_days=_limited(env, "GLIMPSER_RETENTION_MAX_AGE_DAYS"),
        retention_max_count=_limited(env, "GLIMPSER_RETENTION_MAX_COUNT"),
        retention_max_bytes=_limited(env, "GLIMPSER_RETENTION_MAX_BYTES"),
        event_retention_days=_limited(env, "GLIMPSER_EVENT_RETENTION_DAYS"),
        summary_retention_days=_limited(env, "GLIMPSER_SUMMARY_RETENTION_DAYS"),
        ai_call_retention_days=_limited(env, "GLIMPSER_AI_CALL_RETENTION_DAYS"),
        audit_retention_days=_limited(env, "GLIMPSER_AUDIT_RETENTION_DAYS"),
        live_fps=_int(env, "GLIMPSER_LIVE_FPS", 5, 1, 30),
        live_idle_seconds=_int(env, "GLIMPSER_LIVE_IDLE_SECONDS", 10, 1, 3600),
        timelapse_retention_days=_limited(env, "GLIMPSER_TIMELAPSE_RETENTION_DAYS"),
        accel_redirect_prefix=_accel_prefix(env.get("GLIMPSER_ACCEL_REDIRECT_PREFIX", "")),
        ai_base_url=ai_base_url,
        ai_api_key=ai_api_key,
        ai_model=ai_model,
        ai_timeout=_limited(env, "GLIMPSER_AI_TIMEOUT"),
        ai_max_retries=_int(env, "GLIMPSER_AI_MAX_RETRIES", 3, 0, 10),
        ai_daily_token_budget=_limited(env, "GLIMPSER_AI_DAILY_TOKEN_BUDGET"),
        ai_image_max_px=_int(env, "GLIMPSER_AI_IMAGE_MAX_PX", 768, 64, 4096),
        ai_cache_seconds=_int(env, "GLIMPSER_AI_CACHE_SECONDS", 86400, 0, 30 * 86400),
        summary_periods=_summary_periods(env.get("GLIMPSER_SUMMARY_PERIODS", "hour,day")),
        public_url=_http_url(env, "GLIMPSER_PUBLIC_URL", ""),
        pushover_api_url=_http_url(env, "GLIMPSER_PUSHOVER_API_URL", PUSHOVER_API_URL),
        cap_sender=env.get("GLIMPSER_CAP_SENDER", "").strip() or "glimpser@localhost",
        vapid_subject=_vapid_subject(env),
        cap_feed_public=_bool(env, "GLIMPSER_CAP_FEED_PUBLIC", False),
        notify_max_attempts=_int(env, "GLIMPSER_NOTIFY_MAX_ATTEMPTS", 6, 1, 50),
        notify_backoff_seconds=_int(env, "GLIMPSER_NOTIFY_BACKOFF_SECONDS", 5, 1, 3600),
        notify_cooldown_seconds=_limited(env, "GLIMPSER_NOTIFY_COOLDOWN_SECONDS"),
        breaker_threshold=_int(env, "GLIMPSER_BREAKER_THRESHOLD", 5, 1, 1000),
        breaker_cooldown_seconds=_int(env, "GLIMPSER_BREAKER_COOLDOWN_SECONDS", 60, 1, 86400),
        default_timezone=_timezone(env.get("GLIMPSER_TIMEZONE", "")),
        default_locale=_locale(env.get("GLIMPSER_LOCALE", "")),
        ai_default_prompt=ai_prompt(env.get("GLIMPSER_AI_DEFAULT_PROMPT", "")),
        default_interval=_limited(env, "GLIMPSER_DEFAULT_INTERVAL"),
        metrics_allow=metrics_allow(env.get("GLIMPSER_METRICS_ALLOW", "")),
        update_url=_http_url(env, "GLIMPSER_UPDATE_URL", ""),
        update_root=_update_root(env.get("GLIMPSER_UPDATE_ROOT", "")),
        backup_every_hours=_int(env, "GLIMPSER_BACKUP_EVERY_HOURS", 24, 0, 24 * 366),
        backup_keep=_int(env, "GLIMPSER_BACKUP_KEEP", 7, 1, 10_000),
        backup_snapshots=_bool(env, "GLIMPSER_BACKUP_SNAPSHOTS", False),
        signed_pictures=_bool(env, "GLIMPSER_SIGNED_PICTURES", False),
        signed_picture_lifetime=_int(env, "GLIMPSER_SIGNED_PICTURE_LIFETIME", 300, 60, 3600),
        s3_presigned_pictures=s3_presigned_pictures,
        from_env=frozenset(
            k for k, v in env.items() if k.startswith("GLIMPSER_") and v and v.strip()
        ),
    )
