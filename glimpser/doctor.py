"""`glimpser doctor`: this host's view of a deployment, one line per check.

Several hosts share one PostgreSQL, one Redis and one bucket (docs/deploy.md). Most ways of
getting that wrong do not fail loudly: a host with its own generated secret key signs CSRF
tokens the others refuse, a host on older code writes rows the newer schema does not expect,
a host without S3 credentials fails only at its first capture. The checks here say so before
the host takes any work, in plain sentences, and never print a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import peewee
    import redis

    from glimpser.config import Settings

OK = "ok"
WARN = "warn"
FAIL = "FAIL"

# The Setting row that holds the deployment's secret-key fingerprint (not under the
# "settings." prefix: Admin → Settings must not show or change it).
FINGERPRINT_KEY = "deployment.secret_key_fingerprint"
# HMAC message: fixed, so every host with the same key computes the same fingerprint, and
# specific to this use, so the fingerprint is no other MAC the key makes (a CSRF token, a
# session's HMAC).
FINGERPRINT_LABEL = b"glimpser secret key fingerprint v1"

# Clock skew thresholds (seconds): sessions, claims and leases in Redis and times in the
# database are compared across hosts; seconds matter to the capture leases (10 s).
SKEW_WARN_SECONDS = 2.0
SKEW_FAIL_SECONDS = 30.0

# How long a peer may take to answer before it counts as unreachable.
CONNECT_TIMEOUT_SECONDS = 5

FFMPEG_NEEDED_BY = "rtsp, video and youtube streams, the readers and timelapses need it"
CHROMIUM_NEEDED_BY = "website streams need it (workers of the browser queue)"


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    status: str  # OK, WARN or FAIL
    name: str
    message: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.message}"


def secret_key_fingerprint(secret_key: str) -> str:
    """The first 16 hex digits of HMAC-SHA256(key, FINGERPRINT_LABEL): the same on hosts that
    share the key, and it tells nothing about the key itself."""
    digest = hmac.new(secret_key.encode(), FINGERPRINT_LABEL, hashlib.sha256).hexdigest()
    return digest[:16]


def record_fingerprint(settings: Settings) -> tuple[str, str]:
    """Store this host's fingerprint unless the deployment has one already; return
    (stored fingerprint, host that stored it). Needs a bound, migrated database.

    An insert that does nothing on conflict: the first host wins, also when several run at once.
    """
    from glimpser import db, times
    from glimpser.models import Setting

    mine = secret_key_fingerprint(settings.secret_key)
    value = {
        "fingerprint": mine,
        "host": socket.gethostname(),
        "recorded_at": times.isoformat(times.utcnow()),
    }
    with db.database.connection_context():
        with db.write_transaction():
            Setting.insert(key=FINGERPRINT_KEY, value=value).on_conflict_ignore().execute()
        row = Setting.get(Setting.key == FINGERPRINT_KEY)
    stored = row.value if isinstance(row.value, dict) else {}
    return str(stored.get("fingerprint", "")), str(stored.get("host", "unknown host"))


def replace_fingerprint(settings: Settings) -> str:
    """Make this host's key the deployment's (after a deliberate key change); returns it."""
    from glimpser import db, times
    from glimpser.models import Setting

    mine = secret_key_fingerprint(settings.secret_key)
    value = {
        "fingerprint": mine,
        "host": socket.gethostname(),
        "recorded_at": times.isoformat(times.utcnow()),
    }
    with db.database.connection_context(), db.write_transaction():
        Setting.insert(key=FINGERPRINT_KEY, value=value).on_conflict(
            conflict_target=[Setting.key],
            update={Setting.value: value, Setting.updated_at: times.utcnow()},
        ).execute()
    return mine


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _redact_url(url: str) -> str:
    from glimpser.db import _redact

    return _redact(url)


# --- the checks -------------------------------------------------------------------------------


def _database_url_with_timeout(url: str) -> str:
    """PostgreSQL URLs get a connect timeout, so an unreachable server is a FAIL, not a hang."""
    if url.startswith(("postgres://", "postgresql://")) and "connect_timeout=" not in url:
        return f"{url}{'&' if '?' in url else '?'}connect_timeout={CONNECT_TIMEOUT_SECONDS}"
    return url


def check_database(settings: Settings) -> Iterator[Check]:
    """Reachable; schema version against this code's migrations; the secret key; its clock."""
    from glimpser import db
    from glimpser.backups.archive import applied_migrations
    from glimpser.db import DatabaseUnavailable

    kind = "SQLite" if settings.is_sqlite else "PostgreSQL"
    try:
        handle = db.init_database(_database_url_with_timeout(settings.database_url))
    except DatabaseUnavailable as exc:
        yield Check(FAIL, "database", str(exc))
        return
    where = _redact_url(settings.database_url)
    try:
        applied = set(applied_migrations(handle))
        known = {m.version for m in db.discover_migrations()}
    except Exception as exc:  # noqa: BLE001 - any driver error is the operator's to read
        yield Check(FAIL, "database", f"{kind} at {where} answers but fails: {_one_line(exc)}")
        return
    yield Check(OK, "database", f"{kind} at {where} answers")

    newer = sorted(applied - known)
    pending = sorted(known - applied)
    latest = max(known, default=0)
    if newer:
        yield Check(
            FAIL,
            "schema",
            f"the database has migrations this code does not know ({', '.join(map(str, newer))}):"
            " this host runs older code; update it to the release the others run",
        )
    elif pending:
        yield Check(
            FAIL,
            "schema",
            f"{len(pending)} of {len(known)} migrations are not applied "
            f"(schema {max(applied, default=0)}, this code {latest}): run glimpser migrate",
        )
    else:
        yield Check(OK, "schema", f"schema {latest}, the same as this code's")

    with handle.connection_context():
        has_settings_table = handle.table_exists("setting")
    if has_settings_table:
        yield check_secret_key(settings)
    else:
        yield Check(
            FAIL,
            "secret key",
            "not compared: the database has no tables yet (run glimpser migrate)",
        )
    yield check_database_clock(settings, handle)


def check_secret_key(settings: Settings) -> Check:
    """The same key on every host: this host's fingerprint against the one recorded first."""
    import peewee

    mine = secret_key_fingerprint(settings.secret_key)
    try:
        stored, host = record_fingerprint(settings)
    except peewee.PeeweeException as exc:
        return Check(FAIL, "secret key", f"cannot read or record the fingerprint: {_one_line(exc)}")
    if stored == mine:
        return Check(OK, "secret key", f"fingerprint {mine}, the same as the deployment's")
    return Check(
        FAIL,
        "secret key",
        f"this host's fingerprint is {mine} but the deployment's is {stored} (recorded by "
        f"{host}): set the same GLIMPSER_SECRET_KEY on every host (or, after changing the key "
        "on purpose everywhere, run glimpser doctor --accept-secret-key)",
    )


def _skew_check(name: str, peer: str, skew: float) -> Check:
    ahead = "ahead of" if skew > 0 else "behind"
    said = f"{peer}'s clock is {abs(skew):.1f} s {ahead} this host's"
    if abs(skew) > SKEW_FAIL_SECONDS:
        return Check(FAIL, name, f"{said}: sync the clocks (NTP, e.g. systemd-timesyncd)")
    if abs(skew) > SKEW_WARN_SECONDS:
        return Check(WARN, name, f"{said}: sync the clocks (NTP, e.g. systemd-timesyncd)")
    return Check(OK, name, f"{peer}'s clock and this host's differ by {abs(skew):.1f} s")


def _measure(read_peer: Callable[[], float]) -> float:
    """Peer time minus this host's, taken at the middle of the round trip."""
    before = time.time()
    peer = read_peer()
    after = time.time()
    return peer - (before + after) / 2


def check_database_clock(settings: Settings, handle: peewee.Database) -> Check:
    """PostgreSQL's clock_timestamp() against this host's; SQLite runs on this host's clock."""
    if settings.is_sqlite:
        return Check(
            OK, "database clock", "SQLite is a file on this host: it has no clock of its own"
        )

    def read() -> float:
        with handle.connection_context():
            value = handle.execute_sql("SELECT clock_timestamp()").fetchone()[0]
        assert isinstance(value, datetime)
        return value.timestamp()

    try:
        return _skew_check("database clock", "PostgreSQL", _measure(read))
    except Exception as exc:  # noqa: BLE001
        return Check(FAIL, "database clock", f"cannot read PostgreSQL's time: {_one_line(exc)}")


def check_redis(settings: Settings) -> Iterator[Check]:
    """Ping, the server's version, and its clock (TIME) against this host's."""
    import redis as redis_lib

    where = _redact_url(settings.redis_url)
    client: redis.Redis = redis_lib.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=CONNECT_TIMEOUT_SECONDS,
    )

    def read() -> float:
        seconds, micros = client.time()
        return seconds + micros / 1_000_000

    try:
        try:
            client.ping()
            version = client.info("server").get("redis_version", "unknown version")
        except (redis_lib.RedisError, OSError) as exc:
            hint = (
                " (GLIMPSER_REDIS_URL is unset: only glimpser serve starts that private Redis; "
                "the hosts of a shared deployment set GLIMPSER_REDIS_URL)"
                if settings.private_redis
                else ""
            )
            yield Check(FAIL, "redis", f"cannot reach Redis at {where}: {_one_line(exc)}{hint}")
            return
        yield Check(OK, "redis", f"Redis {version} at {where} answers")
        try:
            yield _skew_check("redis clock", "Redis", _measure(read))
        except (redis_lib.RedisError, OSError) as exc:
            yield Check(FAIL, "redis clock", f"cannot read Redis's time: {_one_line(exc)}")
    finally:
        client.close()


def check_storage(settings: Settings) -> Check:
    """Write, read back and delete a small probe object where snapshots go."""
    from glimpser.media.storage import LocalStorage, S3Storage, StorageError

    if settings.storage == "s3":
        where = f"s3://{settings.s3_bucket}" + (
            f"/{settings.s3_prefix}" if settings.s3_prefix else ""
        )
        try:
            storage: LocalStorage | S3Storage = S3Storage(
                settings.s3_bucket,
                prefix=settings.s3_prefix,
                endpoint_url=settings.s3_endpoint_url,
                region=settings.s3_region,
            )
        except Exception as exc:  # noqa: BLE001 - boto3 refuses bad settings in many ways
            return Check(FAIL, "storage", f"S3 {where}: {_one_line(exc)}")
    else:
        where = str(settings.snapshot_dir)
        storage = LocalStorage(settings.snapshot_dir)
    key = f"doctor-probe/{uuid.uuid4().hex}.txt"
    payload = f"glimpser doctor probe from {socket.gethostname()}".encode()
    try:
        storage.put(key, payload, "text/plain")
        try:
            if storage.get(key) != payload:
                return Check(
                    FAIL, "storage", f"{where}: the probe read back differs from what was written"
                )
        finally:
            storage.delete(key)
    except StorageError as exc:
        return Check(FAIL, "storage", str(exc))
    if settings.storage == "s3":
        return Check(OK, "storage", f"S3 {where}: wrote, read and deleted a probe object")
    return Check(
        OK,
        "storage",
        f"local directory {where} is writable (only this host sees it: hosts that share a "
        "deployment need GLIMPSER_STORAGE=s3)",
    )


def _version_line(command: list[str]) -> str | None:
    """The first line the program prints for its version; None when it cannot be run."""
    binary = shutil.which(command[0]) or (command[0] if Path(command[0]).is_file() else None)
    if binary is None:
        return None
    try:
        done = subprocess.run(
            [binary, *command[1:]], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    if done.returncode != 0 or not lines:
        return None
    return lines[0].strip()


def check_programs(settings: Settings) -> Iterator[Check]:
    """ffmpeg and Chromium: a warning when missing, naming what needs them."""
    ffmpeg = _version_line(["ffmpeg", "-version"])
    if ffmpeg is None:
        yield Check(WARN, "ffmpeg", f"not found on PATH: {FFMPEG_NEEDED_BY}")
    else:
        yield Check(OK, "ffmpeg", ffmpeg.split(" Copyright")[0])
    chromium = _version_line([settings.chromium, "--version"])
    if chromium is None:
        yield Check(
            WARN,
            "chromium",
            f"{settings.chromium} (GLIMPSER_CHROMIUM) does not run: {CHROMIUM_NEEDED_BY}",
        )
    else:
        yield Check(OK, "chromium", chromium)


def run_checks(load: Callable[[], Settings]) -> Iterator[Check]:
    """Every check in order; settings first, as everything else depends on them."""
    from glimpser.config import ConfigError

    try:
        settings = load()
    except ConfigError as exc:
        yield Check(FAIL, "settings", str(exc))
        return
    yield Check(OK, "settings", f"loaded (data directory {settings.data_dir})")
    yield from check_database(settings)
    yield from check_redis(settings)
    yield check_storage(settings)
    yield from check_programs(settings)
