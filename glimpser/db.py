"""Binds the database chosen by GLIMPSER_DATABASE_URL and applies versioned migrations."""

from __future__ import annotations

import importlib.util
import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType

import peewee
from playhouse.db_url import connect

from glimpser import times
from glimpser.private_files import private_file

log = logging.getLogger(__name__)

# Every model binds to this proxy; init_database() points it at the real database.
database = peewee.DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseUnavailable(Exception):
    """The configured database cannot be opened; the message is one line for the operator."""


class UTCDateTimeField(peewee.Field):
    """Aware UTC datetimes: TIMESTAMPTZ on PostgreSQL, fixed-width ISO text on SQLite."""

    field_type = "TIMESTAMPTZ"

    def db_value(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return times.to_db_text(value)

    def python_value(self, value: object) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return times.to_utc(value)
        return times.to_utc(datetime.fromisoformat(str(value)))


def open_database(url: str) -> peewee.Database:
    """Open (but do not yet connect) the database for a URL, with Glimpser's pragmas."""
    if url.startswith("sqlite:"):
        path = Path(url.split(":///", 1)[1]) if ":///" in url else None
        if path is not None and str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
            private_file(path)  # 0600 before SQLite opens it; its -wal and -shm files follow
        return connect(
            url,
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "synchronous": "normal",
                "busy_timeout": 10_000,
            },
        )
    url = url.replace("postgres://", "postgresql://", 1)
    return connect(url, autorollback=True)


def init_database(url: str) -> peewee.Database:
    """Point the model proxy at the database for this URL and check that it answers."""
    db = open_database(url)
    database.initialize(db)
    try:
        db.connect(reuse_if_open=True)
        db.execute_sql("SELECT 1")
    except peewee.PeeweeException as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"cannot open database {_redact(url)}: {detail}") from None
    finally:
        if not db.is_closed():
            db.close()
    return db


def write_transaction() -> peewee._atomic:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN (IMMEDIATE).

    A deferred SQLite transaction that reads first and writes later fails at once with
    "database is locked" when another process committed in between (WAL snapshot conflict,
    which busy_timeout cannot wait out); taking the lock first makes writers queue instead.
    """
    db = database.obj
    if isinstance(db, peewee.SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


# --- migrations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    module: ModuleType


class SchemaMigration(peewee.Model):
    """Which migrations have been applied."""

    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=200)
    applied_at = UTCDateTimeField()

    class Meta:
        database = database
        table_name = "schema_migrations"


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Migration files are NNNN_name.py with an `up(db)` function, applied in number order."""
    found = []
    for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.py")):
        spec = importlib.util.spec_from_file_location(f"glimpser_migration_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found.append(Migration(int(path.stem[:4]), path.stem[5:], module))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise RuntimeError(f"duplicate migration numbers in {directory}")
    return found


# A fixed key for PostgreSQL's advisory lock, so that concurrent `migrate` runs take turns.
_PG_LOCK_KEY = zlib.crc32(b"glimpser-migrations")


@contextmanager
def _migration_lock(db: peewee.Database) -> Iterator[None]:
    if isinstance(db, peewee.PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_lock(%s)", (_PG_LOCK_KEY,))
        try:
            yield
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (_PG_LOCK_KEY,))
    else:
        # SQLite: an IMMEDIATE transaction takes the write lock; others wait (busy_timeout).
        # DDL is transactional in SQLite, so a failed migration leaves nothing behind.
        with db.atomic("IMMEDIATE"):
            yield


def migrate(db: peewee.Database | None = None) -> list[str]:
    """Apply pending migrations; safe to run twice and from several processes at once."""
    db = db or database.obj
    applied_now: list[str] = []
    migrations = discover_migrations()
    with db.connection_context(), _migration_lock(db):
        SchemaMigration.create_table(safe=True)
        done = {row.version for row in SchemaMigration.select(SchemaMigration.version)}
        for migration in migrations:
            if migration.version in done:
                continue
            with db.atomic():
                migration.module.up(db)
                SchemaMigration.create(
                    version=migration.version, name=migration.name, applied_at=times.utcnow()
                )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
            log.info("migration applied", extra={"migration": applied_now[-1]})
    return applied_now
