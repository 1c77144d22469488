"""Backups (glimpser.backups): `glimpser backup` and `glimpser restore` run as an operator runs
them, on SQLite and PostgreSQL, restored into a fresh data directory and database, then signed
into; archives that must be refused; Admin → Backups through the test client with a real RQ
worker; and the scheduled backup with its pruning."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from glimpser import create_app, jobs
from glimpser.backups import archive
from glimpser.config import load_settings
from glimpser.db import database
from glimpser.models import AuditLog, Event, NotificationChannel, Rule, Setting, Stream
from glimpser.sources import sealed
from glimpser.web.app_settings import current_settings
from tests.conftest import _new_postgres_database, make_env, run_queued_jobs
from tests.helpers import (
    PASSWORD,
    add_stream,
    csrf_from,
    jobs_configured,
    labelled,
    login,
    run_cli,
    setup_admin,
)

PAGE = "/admin/backups/"
HOOK_SECRET = "hook-secret-7f3a9c"


def _env(data_dir: Path, redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    """The settings an install without GLIMPSER_SECRET_KEY has: the key is generated into the
    data directory (and must come back with the backup)."""
    env = make_env(data_dir, redis_url, database_url, **extra)
    env.pop("GLIMPSER_SECRET_KEY")
    return env


def _app(env: dict[str, str]):
    app = create_app(load_settings(env))
    app.config["TESTING"] = True
    return app


def _fresh_database(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> str:
    if database_url.startswith("sqlite:"):
        return f"sqlite:///{tmp_path / 'restored' / 'glimpser.db'}"
    return _new_postgres_database(request.getfixturevalue("postgres_dsn"))


def _fill(app) -> None:  # noqa: ANN001
    """A stream, a rule, a channel with a secret, events and a changed setting."""
    with app.app_context(), database.connection_context():
        stream = add_stream("Front door", interval=45)
        rule = Rule.create(name="Door opened", cooldown_seconds=60, stream_ids=[stream.id])
        NotificationChannel.create(
            name="Hook",
            kind="webhook",
            config={"kind": "webhook", "url": "https://192.0.2.1/", "secret": HOOK_SECRET},
        )
        for n in range(3):
            Event.create(stream=stream, rule=rule, kind="motion", title=f"Motion {n}")
        Setting.create(key="settings.default_interval", value=90)


def test_backup_and_restore_round_trip(tmp_path, redis_url, redis_client, database_url, request):
    env = _env(tmp_path / "data", redis_url, database_url)
    old = _app(env)
    client = old.test_client()
    setup_admin(client, "alice", PASSWORD)
    _fill(old)
    old_key = old.extensions["glimpser.settings"].secret_key
    token = sealed.seal({"password": "camera-pass"}, old_key)
    (tmp_path / "data" / "snapshots" / "1").mkdir(parents=True)
    (tmp_path / "data" / "snapshots" / "1" / "a.jpg").write_bytes(b"\xff\xd8frame")

    made = run_cli(["backup", str(tmp_path / "b.tar.gz"), "--with-snapshots"], env)
    assert made.returncode == 0, made.stderr
    assert "secret key" in made.stdout and "1 snapshot files" in made.stdout
    assert "Traceback" not in made.stderr
    if "@" in database_url:  # never the database password on a command line or in output
        assert database_url.split("@")[0].split(":")[-1] not in made.stdout + made.stderr
    manifest = archive.read_manifest(tmp_path / "b.tar.gz")
    assert manifest["database"] == archive.database_kind(database_url)
    assert manifest["schema_version"] == archive.code_schema_version()
    assert oct((tmp_path / "b.tar.gz").stat().st_mode & 0o777) == "0o600"

    target_url = _fresh_database(request, database_url, tmp_path)
    new_env = _env(tmp_path / "restored", redis_url, target_url)
    restored = run_cli(["restore", str(tmp_path / "b.tar.gz")], new_env)
    assert restored.returncode == 0, restored.stderr
    assert "restored the" in restored.stdout
    assert (tmp_path / "restored" / "secret_key").read_text() == old_key
    assert (tmp_path / "restored" / "snapshots" / "1" / "a.jpg").read_bytes() == b"\xff\xd8frame"

    # Restoring again is refused: the database is no longer empty.
    again = run_cli(["restore", str(tmp_path / "b.tar.gz")], new_env)
    assert again.returncode == 2
    assert "not empty (it has 1 user)" in again.stderr and "Traceback" not in again.stderr

    new = _app(new_env)
    assert new.extensions["glimpser.settings"].secret_key == old_key
    assert sealed.unseal(token, new.extensions["glimpser.settings"].secret_key) == {
        "password": "camera-pass"
    }
    # The session signed before the backup still verifies on the restored install.
    cookie = client.get_cookie(old.config["SESSION_COOKIE_NAME"])
    carried = new.test_client()
    carried.set_cookie(cookie.key, cookie.value)
    assert carried.get("/admin/").status_code == 200
    fresh = new.test_client()
    assert login(fresh, "alice", PASSWORD).status_code == 302
    rules = fresh.get("/admin/rules/").get_data(as_text=True)
    assert "Door opened" in rules
    assert "Front door" in fresh.get("/").get_data(as_text=True)
    channels = fresh.get("/admin/channels/").get_data(as_text=True)
    assert "Hook" in channels and HOOK_SECRET not in channels
    with new.test_request_context(), database.connection_context():
        assert current_settings().default_interval == 90
        channel = NotificationChannel.get(NotificationChannel.name == "Hook")
        assert channel.config["secret"] == HOOK_SECRET
        assert Event.select().count() == 3
        assert Stream.get(Stream.name == "Front door").interval == 45


def test_restore_into_a_database_with_users_is_refused(tmp_path, redis_url, redis_client):
    env = _env(tmp_path / "data", redis_url, f"sqlite:///{tmp_path / 'data' / 'g.db'}")
    setup_admin(_app(env).test_client(), "alice", PASSWORD)
    made = run_cli(["backup"], env)
    assert made.returncode == 0, made.stderr
    (path,) = (tmp_path / "data" / "backups").glob("glimpser-*.tar.gz")
    refused = run_cli(["restore", str(path)], env)
    assert refused.returncode == 2
    assert "not empty (it has 1 user)" in refused.stderr


def _tar(entries: dict[str, bytes]) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return data.getvalue()


def test_bad_archives_are_refused_with_a_message(tmp_path, redis_url):
    env = _env(tmp_path / "data", redis_url, f"sqlite:///{tmp_path / 'data' / 'g.db'}")
    good = tmp_path / "good.tar.gz"
    nothing = run_cli(["backup", str(good)], env)
    assert nothing.returncode == 2 and "does not exist" in nothing.stderr
    assert run_cli(["migrate"], env).returncode == 0
    assert run_cli(["backup", str(good)], env).returncode == 0
    manifest = archive.read_manifest(good)
    newer = {**manifest, "schema_version": manifest["schema_version"] + 1}
    newer["migrations"] = [*manifest["migrations"], manifest["schema_version"] + 1]
    cases = {
        "not-an-archive.tar.gz": (b"hello, not gzip", "not a readable Glimpser backup"),
        "truncated.tar.gz": (good.read_bytes()[:1500], "not a readable Glimpser backup"),
        "no-manifest.tar.gz": (_tar({"database/x": b"x"}), "no manifest.json"),
        "bad-json.tar.gz": (_tar({"manifest.json": b"{nope"}), "not valid JSON"),
        "empty-manifest.tar.gz": (_tar({"manifest.json": b"{}"}), "incomplete"),
        "newer.tar.gz": (_tar({"manifest.json": json.dumps(newer).encode()}), "newer Glimpser"),
        "evil.tar.gz": (
            _tar({"manifest.json": json.dumps(manifest).encode(), "../../evil": b"x"}),
            "unsafe entry",
        ),
    }
    target = _env(tmp_path / "fresh", redis_url, f"sqlite:///{tmp_path / 'fresh' / 'g.db'}")
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        result = run_cli(["restore", str(tmp_path / name)], target)
        assert result.returncode == 2, (name, result.stdout)
        assert message in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.stderr, name
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()
    missing = run_cli(["restore", str(tmp_path / "nope.tar.gz")], target)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


# --- Admin → Backups ----------------------------------------------------------------------------


@pytest.fixture
def admin(db_app):
    client = db_app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def _post(client, url: str, **data: str):  # noqa: ANN001
    token = csrf_from(client.get(PAGE).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data})


def test_admin_page_makes_lists_downloads_and_deletes(db_app, admin, redis_client):
    page = admin.get(PAGE)
    assert page.status_code == 200
    assert "No backups in the folder yet" in page.get_data(as_text=True)
    assert "No backup was started" in page.get_data(as_text=True)
    assert "/admin/backups/" in admin.get("/admin/").get_data(as_text=True)
    labelled(page.get_data(as_text=True))

    assert _post(admin, PAGE + "run", with_snapshots="1").status_code == 302
    waiting = admin.get(PAGE).get_data(as_text=True)
    assert "waiting for a worker" in waiting and 'hx-get="/admin/backups/status"' in waiting
    # A second click while it waits queues nothing more.
    _post(admin, PAGE + "run")
    assert "already waiting or running" in admin.get(PAGE).get_data(as_text=True)

    with jobs_configured(db_app):
        run_queued_jobs(db_app, ("maintenance",))
    status = admin.get(PAGE + "status").get_data(as_text=True)
    assert "The last backup is done" in status and "hx-get" not in status
    listing = admin.get(PAGE).get_data(as_text=True)
    (name,) = re.findall(r'data-backup="([^"]+)"', listing)
    assert re.fullmatch(r"glimpser-\d{8}T\d{6}Z\.tar\.gz", name)
    assert "with 0 snapshot files" in listing

    download = admin.get(f"{PAGE}{name}/download")
    assert download.status_code == 200
    assert name in download.headers["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(download.data), mode="r:gz") as tar:
        assert tar.getnames()[0] == "manifest.json"

    assert _post(admin, f"{PAGE}{name}/delete").status_code == 302
    assert "No backups in the folder yet" in admin.get(PAGE).get_data(as_text=True)
    assert admin.get(f"{PAGE}{name}/download").status_code == 404
    with database.connection_context():
        actions = [a.action for a in AuditLog.select().order_by(AuditLog.id)]
    assert actions[-3:] == ["backup.start", "backup.download", "backup.delete"]


def test_a_failed_backup_job_says_why(app, redis_client):
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    folder = app.extensions["glimpser.settings"].data_dir / "backups"
    folder.write_text("a file where the folder should be")
    assert "The backups folder cannot be read" in admin.get(PAGE).get_data(as_text=True)
    _post(admin, PAGE + "run")
    with jobs_configured(app):
        run_queued_jobs(app, ("maintenance",))
    status = admin.get(PAGE + "status").get_data(as_text=True)
    assert "The last backup failed" in status and "File exists" in status
    assert admin.get(PAGE + "x.tar.gz/download").status_code == 404


def test_viewers_and_strangers_get_nothing(app, redis_client):
    from glimpser.auth.users import create_user

    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    with database.connection_context():
        create_user("victor", PASSWORD, "viewer")
    archive.create_backup(app.extensions["glimpser.settings"])
    (name,) = [b.name for b in archive.list_backups(app.extensions["glimpser.settings"])]
    viewer = app.test_client()
    login(viewer, "victor", PASSWORD)
    token = csrf_from(viewer.get("/").get_data(as_text=True))
    assert viewer.get(PAGE).status_code == 403
    assert viewer.get(f"{PAGE}{name}/download").status_code == 403
    assert viewer.post(f"{PAGE}{name}/delete", data={"csrf_token": token}).status_code == 403
    assert viewer.post(PAGE + "run", data={"csrf_token": token}).status_code == 403
    stranger = app.test_client()
    assert stranger.get(f"{PAGE}{name}/download").status_code in (302, 401)
    # Without a CSRF token nothing is deleted.
    assert admin.post(f"{PAGE}{name}/delete").status_code == 400
    assert archive.find_backup(app.extensions["glimpser.settings"], name) is not None


def test_names_outside_the_folder_listing_are_404(app, redis_client, tmp_path):
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    settings = app.extensions["glimpser.settings"]
    folder = archive.backups_dir(settings)
    outside = tmp_path / "outside.tar.gz"
    outside.write_bytes(b"secret")
    (folder / "link.tar.gz").symlink_to(outside)
    for name in (
        "../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E%2Fsecret_key",
        "secret_key",
        "link.tar.gz",
        "nothing.tar.gz",
        ".hidden.tar.gz",
    ):
        assert admin.get(f"{PAGE}{name}/download").status_code == 404, name
        assert _post(admin, f"{PAGE}{name}/delete").status_code == 404, name
    assert outside.exists() and (folder / "link.tar.gz").is_symlink()
    assert "link.tar.gz" not in admin.get(PAGE).get_data(as_text=True)


# --- scheduled backups -------------------------------------------------------------------------


def test_scheduled_backup_takes_one_when_due_and_keeps_the_newest(app_factory, redis_client):
    app = app_factory(GLIMPSER_BACKUP_KEEP="2", GLIMPSER_BACKUP_EVERY_HOURS="24")
    settings = app.extensions["glimpser.settings"]
    folder = archive.backups_dir(settings)
    old = [folder / f"glimpser-2020010{n}T000000Z.tar.gz" for n in (1, 2, 3)]
    for n, path in enumerate(old):
        path.write_bytes(b"old")
        os.utime(path, (1_577_836_800 + n * 86400,) * 2)
    mine = folder / "before-upgrade.tar.gz"
    mine.write_bytes(b"named by hand")
    assert any(func is jobs.scheduled_backup for func, _q, _every in jobs.CRON_JOBS)
    with jobs_configured(app):
        assert jobs.scheduled_backup() == {"queued": "backup-scheduled"}
        assert "still queued" in jobs.scheduled_backup()["skipped"]
        run_queued_jobs(app, ("maintenance",))
        (made,) = [p for p in folder.iterdir() if p not in old and p != mine]
        archive.read_manifest(made)
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted([made.name, old[2].name, mine.name])  # the newest 2, and mine
        assert jobs.scheduled_backup() == {"skipped": "not due"}  # the newest is minutes old
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    shown = admin.get(PAGE).get_data(as_text=True)
    assert "The last scheduled backup:" in shown and made.name in shown


def test_scheduled_backups_can_be_off(app_factory, redis_client):
    app = app_factory(GLIMPSER_BACKUP_EVERY_HOURS="0")
    with jobs_configured(app):
        assert "off" in jobs.scheduled_backup()["skipped"]
    assert list(archive.backups_dir(app.extensions["glimpser.settings"]).iterdir()) == []
    off = app.test_client()
    setup_admin(off, "alice", PASSWORD)
    assert "Scheduled backups are off" in off.get(PAGE).get_data(as_text=True)


# --- PostgreSQL credentials ---------------------------------------------------------------------


def test_pg_password_goes_through_the_environment_only(tmp_path, redis_url, postgres_dsn):
    """pg_dump sees the password in PGPASSWORD, never in its arguments; it is in no output."""
    password = "s3cr@t pw"
    url = _new_postgres_database(postgres_dsn).replace("postgres@", "postgres:s3cr%40t%20pw@", 1)
    real = archive._pg_tool("pg_dump")
    shims = tmp_path / "bin"
    shims.mkdir()
    record = tmp_path / "pg_dump.args"
    (shims / "pg_dump").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\necho "PGPASSWORD=$PGPASSWORD" >> {record}\n'
        f'exec {real} "$@"\n'
    )
    (shims / "pg_dump").chmod(0o755)
    env = _env(tmp_path / "data", redis_url, url, PATH=f"{shims}:{os.environ['PATH']}")
    assert run_cli(["migrate"], env).returncode == 0
    made = run_cli(["backup", str(tmp_path / "pg.tar.gz")], env)
    assert made.returncode == 0, made.stderr
    args = record.read_text().splitlines()
    assert f"PGPASSWORD={password}" == args[-1]
    assert not any("s3cr" in a for a in args[:-1]), args
    assert "s3cr" not in made.stdout + made.stderr

    missing = env | {"GLIMPSER_DATABASE_URL": url.rsplit("/", 1)[0] + "/no_such_database"}
    failed = run_cli(["backup", str(tmp_path / "none.tar.gz")], missing)
    assert failed.returncode == 2 and "pg_dump failed" in failed.stderr
    assert "no_such_database" in failed.stderr and "s3cr" not in failed.stderr
    assert "Traceback" not in failed.stderr and not (tmp_path / "none.tar.gz").exists()


def test_an_older_backup_is_brought_up_to_the_current_schema(
    tmp_path, redis_url, database_url, request
):
    """A database at an older schema (the first migrations only) is backed up, restored and
    migrated to this code's schema; a backup of the other database kind is refused."""
    from glimpser import db, times

    migrations = db.discover_migrations()
    older = migrations[: len(migrations) - 2]
    database_ = db.init_database(database_url)
    with database_.connection_context():
        db.SchemaMigration.create_table(safe=True)
        for migration in older:
            with database_.atomic():
                migration.module.up(database_)
                db.SchemaMigration.create(
                    version=migration.version, name=migration.name, applied_at=times.utcnow()
                )
    env = _env(tmp_path / "data", redis_url, database_url)
    made = run_cli(["backup", str(tmp_path / "old.tar.gz")], env)
    assert made.returncode == 0, made.stderr
    assert archive.read_manifest(tmp_path / "old.tar.gz")["schema_version"] == older[-1].version

    other_kind = (
        _new_postgres_database(request.getfixturevalue("postgres_dsn"))
        if database_url.startswith("sqlite:")
        else f"sqlite:///{tmp_path / 'other' / 'g.db'}"
    )
    refused = run_cli(
        ["restore", str(tmp_path / "old.tar.gz")], _env(tmp_path / "other", redis_url, other_kind)
    )
    assert refused.returncode == 2 and "configured database is" in refused.stderr

    target = _env(tmp_path / "new", redis_url, _fresh_database(request, database_url, tmp_path))
    restored = run_cli(["restore", str(tmp_path / "old.tar.gz")], target)
    assert restored.returncode == 0, restored.stderr
    newest = [f"{m.version:04d}_{m.name}" for m in migrations[len(older) :]]
    assert f"applied: {', '.join(newest)}" in restored.stdout
    again = db.init_database(target["GLIMPSER_DATABASE_URL"])
    assert archive.applied_migrations(again) == [m.version for m in migrations]


def test_replace_puts_the_backup_over_a_used_database(tmp_path, redis_url, database_url):
    """restore_backup(replace=True), for an update's rollback: what was written after the
    backup (rows, a table of a newer migration) is gone, what the backup held is back."""
    env = _env(tmp_path / "data", redis_url, database_url)
    app = _app(env)
    setup_admin(app.test_client(), "alice", PASSWORD)
    _fill(app)
    path = archive.create_backup(app.extensions["glimpser.settings"])
    with database.connection_context():
        add_stream("Written after the backup")
        database.execute_sql("CREATE TABLE from_a_newer_release (id INTEGER)")

    settings = load_settings(env)
    with pytest.raises(archive.BackupError, match="not empty"):
        archive.restore_backup(settings, path)
    report = archive.restore_backup(settings, path, replace=True)
    assert report.migrations_applied == []
    with database.connection_context():
        assert "from_a_newer_release" not in database.get_tables()
        assert [s.name for s in Stream.select()] == ["Front door"]
        assert Event.select().count() == 3
    fresh = _app(env).test_client()
    assert login(fresh, "alice", PASSWORD).status_code == 302
