"""Write, read, list, prune and restore backup archives (see glimpser.backups).

An archive is a gzip-compressed tar file whose first member is `manifest.json`:

    {"format": 1, "glimpser_version": "0.1.0", "created_at": "2026-…Z",
     "database": "sqlite" | "postgresql", "schema_version": 12, "migrations": [1, 2, …],
     "contents": {"database": "database/glimpser.sqlite3", "secret_key": true,
                  "secret_key_from_environment": false, "snapshots": false,
                  "snapshot_files": 0, "snapshot_bytes": 0, "snapshots_note": "…"}}

followed by the database copy, `data/secret_key` (when the key was generated into the data
directory) and `snapshots/…`. Restoring refuses an archive whose manifest is missing or
unreadable, or whose schema is newer than this code; it restores into an empty database only.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse, urlunparse

import peewee

from glimpser import __version__, db, times
from glimpser.config import Settings
from glimpser.private_files import private_dir

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/glimpser.sqlite3"
PG_MEMBER = "database/glimpser.pgdump"
KEY_MEMBER = "data/secret_key"
SNAPSHOTS_PREFIX = "snapshots/"
# Names of archives in the backups folder; anything else there is not listed nor served.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.tar\.gz$")
# The names Glimpser gives its own archives (the ones scheduled pruning may delete).
AUTO_NAME_RE = re.compile(r"^glimpser-\d{8}T\d{6}Z(-\d+)?\.tar\.gz$")
S3_NOTE = "snapshots are stored in S3 and are not included; back the bucket up on its own"
# pg_dump and pg_restore may take long on a big database, but not forever.
PG_TIMEOUT = 6 * 3600


class BackupError(Exception):
    """A backup or restore that cannot be done; the message is meant for the operator."""


@dataclass
class BackupInfo:
    """One archive of the backups folder, as the admin page lists it."""

    name: str
    path: Path
    size: int
    mtime: float = 0.0
    created_at: datetime | None = None
    with_snapshots: bool = False
    snapshot_files: int = 0
    database: str = ""
    glimpser_version: str = ""
    schema_version: int | None = None
    error: str = ""  # why its manifest cannot be read ("" when it can)


@dataclass
class RestoreReport:
    database: str
    schema_version: int
    migrations_applied: list[str] = field(default_factory=list)
    secret_key: str = ""  # what happened to the secret key, for the operator
    snapshot_files: int = 0
    notes: list[str] = field(default_factory=list)


def backups_dir(settings: Settings) -> Path:
    """The folder of the admin page's and the scheduled archives (created 0700)."""
    folder = settings.data_dir / "backups"
    private_dir(folder)
    return folder


def database_kind(url: str) -> str:
    return "sqlite" if url.startswith("sqlite:") else "postgresql"


def code_schema_version() -> int:
    """The newest migration this code knows."""
    return max((m.version for m in db.discover_migrations()), default=0)


def applied_migrations(database: peewee.Database) -> list[int]:
    """The migration numbers applied to a bound database ([] when it has none)."""
    with database.connection_context():
        if not database.table_exists("schema_migrations"):
            return []
        cursor = database.execute_sql("SELECT version FROM schema_migrations ORDER BY version")
        return [int(row[0]) for row in cursor.fetchall()]


def default_name(now: datetime | None = None) -> str:
    return f"glimpser-{(now or times.utcnow()).strftime('%Y%m%dT%H%M%SZ')}.tar.gz"


# --- PostgreSQL tools ---------------------------------------------------------------------------


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise BackupError(
        f"{name} was not found: install the PostgreSQL client programs (e.g. postgresql-client)"
    )


def _pg_target(url: str) -> tuple[str, dict[str, str]]:
    """The connection URI without its password, and an environment carrying it (PGPASSWORD):
    a password on a command line is visible to every user of the machine."""
    parsed = urlparse(url.replace("postgres://", "postgresql://", 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    netloc = parsed.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        user, _, password = creds.partition(":")
        if password:
            env["PGPASSWORD"] = unquote(password)
        netloc = f"{user}@{host}" if user else host
    return urlunparse(parsed._replace(netloc=netloc)), env


def _run_pg(args: list[str], env: dict[str, str], what: str) -> None:
    try:
        result = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=PG_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        hours = PG_TIMEOUT // 3600
        raise BackupError(f"{what} took longer than {hours} h and was stopped") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        detail = "; ".join(lines[:3]) or f"exit status {result.returncode}"
        password = env.get("PGPASSWORD")
        if password:
            detail = detail.replace(password, "***")
        raise BackupError(f"{what} failed: {detail}")


# --- writing ------------------------------------------------------------------------------------


def _copy_sqlite(url: str, dest: Path) -> None:
    """A consistent copy of a live SQLite database through its online backup API."""
    path = url.split(":///", 1)[1]
    if not Path(path).exists():
        raise BackupError(f"the SQLite database {path} does not exist")
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(dest)
    try:
        with target:
            source.backup(target)
    finally:
        target.close()
        source.close()


def _snapshot_files(settings: Settings) -> list[tuple[Path, str]]:
    root = settings.snapshot_dir
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found.append((path, SNAPSHOTS_PREFIX + path.relative_to(root).as_posix()))
    return found


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode = 0o600
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(times.utcnow().timestamp())
    tar.addfile(info, io.BytesIO(data))


def create_backup(
    settings: Settings, dest: Path | None = None, *, with_snapshots: bool = False
) -> Path:
    """Write one archive; returns its path. Default: backups_dir/glimpser-<UTC time>.tar.gz.

    The archive is written under a temporary name next to `dest` and appears under its own
    name only when complete (an existing file of that name is never overwritten)."""
    if dest is None:
        folder = backups_dir(settings)
        dest = folder / default_name()
        n = 1
        while dest.exists():
            dest = folder / default_name().replace(".tar.gz", f"-{n}.tar.gz")
            n += 1
    dest = dest.resolve()
    if dest.exists():
        raise BackupError(f"{dest} exists already; choose another name")
    if not dest.parent.is_dir():
        raise BackupError(f"the folder {dest.parent} does not exist")
    kind = database_kind(settings.database_url)
    with tempfile.TemporaryDirectory(prefix=".glimpser-backup-", dir=dest.parent) as tmp:
        work = Path(tmp)
        if kind == "sqlite":
            dump, member = work / "glimpser.sqlite3", SQLITE_MEMBER
            _copy_sqlite(settings.database_url, dump)
            migrations = _sqlite_migrations(dump)
        else:
            dump, member = work / "glimpser.pgdump", PG_MEMBER
            target, env = _pg_target(settings.database_url)
            _run_pg(
                [_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-acl",
                 "--file", str(dump), "--dbname", target],
                env,
                "pg_dump",
            )  # fmt: skip
            migrations = applied_migrations(db.open_database(settings.database_url))
        secret_file = settings.data_dir / "secret_key"
        from_env = "GLIMPSER_SECRET_KEY" in settings.from_env
        secret = secret_file.read_bytes() if secret_file.is_file() else None
        snapshots: list[tuple[Path, str]] = []
        note = ""
        if with_snapshots:
            if settings.storage == "local":
                snapshots = _snapshot_files(settings)
            else:
                note = S3_NOTE
        manifest = {
            "format": FORMAT,
            "glimpser_version": __version__,
            "created_at": times.to_db_text(times.utcnow()),
            "database": kind,
            "schema_version": max(migrations, default=0),
            "migrations": migrations,
            "contents": {
                "database": member,
                "secret_key": secret is not None,
                "secret_key_from_environment": from_env,
                "snapshots": bool(with_snapshots and settings.storage == "local"),
                "snapshot_files": len(snapshots),
                "snapshots_note": note,
            },
        }
        part = work / "archive.tar.gz"
        with tarfile.open(part, "w:gz") as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
            tar.add(dump, arcname=member, recursive=False, filter=_private)
            if secret is not None:
                _add_bytes(tar, KEY_MEMBER, secret)
            for path, name in snapshots:
                try:
                    tar.add(path, arcname=name, recursive=False, filter=_private)
                except FileNotFoundError:  # removed by retention meanwhile
                    continue
        os.chmod(part, 0o600)
        try:
            os.link(part, dest)  # fails rather than overwrite a file that appeared meanwhile
        except FileExistsError:
            raise BackupError(f"{dest} exists already; choose another name") from None
        except OSError:  # a file system without hard links
            if dest.exists():
                raise BackupError(f"{dest} exists already; choose another name") from None
            os.replace(part, dest)
    return dest


def _sqlite_migrations(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        tables = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
        ).fetchall()
        if not tables:
            return []
        return [int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")]
    finally:
        conn.close()


# --- reading ------------------------------------------------------------------------------------


def _unreadable(archive: Path, why: str) -> BackupError:
    return BackupError(f"{archive.name} is not a readable Glimpser backup: {why}")


def read_manifest(archive: Path) -> dict:
    """The archive's manifest (its first member), checked; BackupError when it is missing,
    corrupt or of a format this code does not know."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise _unreadable(archive, "it has no manifest.json first")
            handle = tar.extractfile(first)
            assert handle is not None
            manifest = json.loads(handle.read(1024 * 1024))
    except FileNotFoundError:
        raise BackupError(f"{archive} does not exist") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise _unreadable(archive, str(exc) or type(exc).__name__) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _unreadable(archive, "its manifest is not valid JSON") from None
    try:
        ok = (
            isinstance(manifest, dict)
            and manifest.get("format") == FORMAT
            and manifest.get("database") in ("sqlite", "postgresql")
            and isinstance(manifest.get("schema_version"), int)
            and all(isinstance(v, int) for v in manifest.get("migrations", [None]))
            and isinstance(manifest.get("contents"), dict)
            and manifest["contents"].get("database") in (SQLITE_MEMBER, PG_MEMBER)
        )
        times.to_utc(datetime.fromisoformat(manifest["created_at"]))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise _unreadable(archive, "its manifest is incomplete or of an unknown format")
    return manifest


def describe(path: Path) -> BackupInfo:
    stat = path.stat()
    info = BackupInfo(name=path.name, path=path, size=stat.st_size, mtime=stat.st_mtime)
    try:
        manifest = read_manifest(path)
    except BackupError as exc:
        info.error = str(exc)
        return info
    contents = manifest["contents"]
    info.created_at = times.to_utc(datetime.fromisoformat(manifest["created_at"]))
    info.with_snapshots = bool(contents.get("snapshots"))
    info.snapshot_files = int(contents.get("snapshot_files") or 0)
    info.database = manifest["database"]
    info.glimpser_version = str(manifest.get("glimpser_version", ""))
    info.schema_version = manifest["schema_version"]
    return info


def list_backups(settings: Settings) -> list[BackupInfo]:
    """The archives of the backups folder, newest first."""
    found = []
    for path in backups_dir(settings).iterdir():
        if NAME_RE.match(path.name) and path.is_file() and not path.is_symlink():
            try:
                found.append(describe(path))
            except FileNotFoundError:  # deleted while listing
                continue
    return sorted(found, key=lambda b: (b.mtime, b.name), reverse=True)


def find_backup(settings: Settings, name: str) -> Path | None:
    """The archive of this name in the backups folder, or None: names are matched against
    the folder's listing, never joined into a path as given."""
    if not NAME_RE.match(name):
        return None
    for path in backups_dir(settings).iterdir():
        if path.name == name and path.is_file() and not path.is_symlink():
            return path
    return None


def prune(settings: Settings, keep: int) -> list[str]:
    """Delete Glimpser-named archives beyond the newest `keep`; returns the deleted names."""
    auto = sorted(
        (p for p in backups_dir(settings).iterdir() if AUTO_NAME_RE.match(p.name)),
        key=lambda p: p.name,
        reverse=True,
    )
    deleted = []
    for path in auto[keep:]:
        path.unlink(missing_ok=True)
        deleted.append(path.name)
    return deleted


def newest_auto_backup(settings: Settings) -> datetime | None:
    """When the newest Glimpser-named archive was written (its file time), or None."""
    stamps = [
        p.stat().st_mtime for p in backups_dir(settings).iterdir() if AUTO_NAME_RE.match(p.name)
    ]
    return datetime.fromtimestamp(max(stamps), UTC) if stamps else None


# --- restoring ----------------------------------------------------------------------------------


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        name = member.name
        if (
            name.startswith("/")
            or ".." in Path(name).parts
            or not (member.isfile() or member.isdir())
        ):
            raise BackupError(f"the archive holds an unsafe entry: {name!r}")
        yield member


def _database_is_empty(settings: Settings) -> str:
    """Why the configured database is not empty ("" when it is)."""
    database = db.open_database(settings.database_url)
    try:
        with database.connection_context():
            tables = database.get_tables()
            if not tables:
                return ""
            users = 0
            if "user" in tables:
                users = database.execute_sql('SELECT COUNT(*) FROM "user"').fetchone()[0]
    except peewee.PeeweeException as exc:
        raise BackupError(f"cannot open the configured database: {exc}") from None
    if users:
        return f"it has {users} user{'s' if users != 1 else ''}"
    return f"it has {len(tables)} table{'s' if len(tables) != 1 else ''}"


def _check_restorable(settings: Settings, manifest: dict, replace: bool = False) -> None:
    kind = database_kind(settings.database_url)
    if manifest["database"] != kind:
        raise BackupError(
            f"this backup holds a {manifest['database']} database but the configured database "
            f"is {kind}: set GLIMPSER_DATABASE_URL to a {manifest['database']} database"
        )
    known = {m.version for m in db.discover_migrations()}
    newer = sorted(set(manifest["migrations"]) - known)
    if newer or manifest["schema_version"] > code_schema_version():
        raise BackupError(
            f"this backup was made by a newer Glimpser ({manifest.get('glimpser_version', '?')},"
            f" schema {manifest['schema_version']}) than this one ({__version__}, schema "
            f"{code_schema_version()}): install that version to restore it"
        )
    why = "" if replace else _database_is_empty(settings)
    if why:
        raise BackupError(
            f"the configured database is not empty ({why}); restore needs an empty database: "
            "point GLIMPSER_DATABASE_URL at a new one (and GLIMPSER_DATA_DIR at an empty folder)"
        )


def restore_backup(settings: Settings, archive: Path, *, replace: bool = False) -> RestoreReport:
    """Restore an archive into the configured (empty) database and data directory, then run
    the migrations this code has that the backup's schema had not.

    With `replace` (for an update's rollback, not offered by the CLI), the configured
    database need not be empty: its contents are dropped first (SQLite: the file; PostgreSQL:
    the `public` schema). Every Glimpser process must be stopped. Snapshot files already in
    place are kept."""
    manifest = read_manifest(archive)
    _check_restorable(settings, manifest, replace)
    contents = manifest["contents"]
    report = RestoreReport(database=manifest["database"], schema_version=manifest["schema_version"])
    with tempfile.TemporaryDirectory(prefix=".glimpser-restore-", dir=settings.data_dir) as tmp:
        work = Path(tmp)
        dump = work / "database"
        secret: bytes | None = None
        snapshot_root = settings.snapshot_dir
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in _members(tar):
                    if not member.isfile() or member.name == MANIFEST:
                        continue
                    handle = tar.extractfile(member)
                    assert handle is not None
                    if member.name == contents["database"]:
                        with open(dump, "wb") as out:
                            shutil.copyfileobj(handle, out)
                    elif member.name == KEY_MEMBER:
                        secret = handle.read(4096)
                    elif member.name.startswith(SNAPSHOTS_PREFIX):
                        if settings.storage != "local":
                            continue
                        target = snapshot_root / member.name[len(SNAPSHOTS_PREFIX) :]
                        if target.exists():
                            continue
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with open(target, "wb") as out:
                            shutil.copyfileobj(handle, out)
                        report.snapshot_files += 1
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise _unreadable(archive, f"{exc or type(exc).__name__} (truncated?)") from None
        if not dump.exists():
            raise _unreadable(archive, f"it has no {contents['database']}")
        if report.database == "sqlite":
            _restore_sqlite(settings, dump)
        else:
            if replace:
                _empty_postgres(settings)
            target, env = _pg_target(settings.database_url)
            _run_pg(
                [_pg_tool("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error",
                 "--single-transaction", "--dbname", target, str(dump)],
                env,
                "pg_restore",
            )  # fmt: skip
    report.secret_key = _restore_secret(settings, secret, contents)
    if contents.get("snapshots") and settings.storage != "local":
        report.notes.append("the backup's snapshot files were not restored: storage is S3 here")
    if contents.get("snapshots_note"):
        report.notes.append(contents["snapshots_note"])
    report.migrations_applied = db.migrate(db.init_database(settings.database_url))
    return report


def _empty_postgres(settings: Settings) -> None:
    """Drop everything in the `public` schema (where Glimpser's tables live), in one
    transaction."""
    database = db.open_database(settings.database_url)
    try:
        with database.connection_context(), database.atomic():
            database.execute_sql("DROP SCHEMA public CASCADE")
            database.execute_sql("CREATE SCHEMA public")
    except peewee.PeeweeException as exc:
        raise BackupError(f"cannot empty the configured database: {exc}") from None


def _restore_sqlite(settings: Settings, dump: Path) -> None:
    path = Path(settings.database_url.split(":///", 1)[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.restoring")
    shutil.copyfile(dump, staged)
    os.chmod(staged, 0o600)
    conn = sqlite3.connect(staged)
    try:
        healthy = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    except sqlite3.DatabaseError as exc:
        healthy, why = False, f"cannot be read: {exc}"
    else:
        why = "fails its integrity check"
    finally:
        conn.close()
    if not healthy:
        staged.unlink(missing_ok=True)
        raise BackupError(f"the backup's SQLite database {why}")
    # The copy is sound: drop the target's WAL files (an empty database's, or with `replace`
    # the one being replaced), then move the copy in.
    for leftover in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    os.replace(staged, path)


def _restore_secret(settings: Settings, secret: bytes | None, contents: dict) -> str:
    path = settings.data_dir / "secret_key"
    if secret is None:
        if contents.get("secret_key_from_environment"):
            return (
                "the backed-up install took its secret key from GLIMPSER_SECRET_KEY: set the "
                "same value here, or signed sessions and sealed secrets will not verify"
            )
        return "the backup holds no secret key file"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    os.chmod(path, 0o600)
    if "GLIMPSER_SECRET_KEY" in settings.from_env:
        return (
            f"restored to {path}, but GLIMPSER_SECRET_KEY is set and wins over it: unset it to "
            "use the restored key"
        )
    return f"restored to {path}"
