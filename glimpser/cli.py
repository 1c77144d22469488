"""The `glimpser` command: serve, web, worker, scheduler, migrate, doctor, create-user, grant,
revoke, export, import, api-key, backup, restore, release, update."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
import peewee

from glimpser import db, node
from glimpser.auth.users import UserError, create_user
from glimpser.config import ConfigError, Settings, load_settings
from glimpser.db import DatabaseUnavailable
from glimpser.logs import configure_logging
from glimpser.models import Stream, User
from glimpser.queues import (
    QUEUE_NAMES,
    WORKER_QUEUE_ORDER,
    connect_redis,
    get_queue,
    worker_queues,
)

# Imported inside their commands, deliberately: glimpser.jobs (which loads every domain module,
# the AI SDK included), the supervisor, the readers and the transfer package, so that each
# command loads only what it runs.

# How often an RQ worker cleans its registries and tries to take over a dead RQ scheduler
# (whose locks the sweep frees: queues.free_dead_scheduler_locks).
MAINTENANCE_SECONDS = 10


def _fail(message: str) -> None:
    click.echo(f"glimpser: error: {message}", err=True)
    sys.exit(2)


def with_settings(func: Callable[..., Any]) -> Callable[..., Any]:
    """Load settings first; configuration problems end in one clear line, not a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            settings = load_settings()
        except ConfigError as exc:
            _fail(str(exc))
        configure_logging(settings.log_level)
        node.configure(settings.node_name)
        try:
            return func(settings, *args, **kwargs)
        except (ConfigError, DatabaseUnavailable) as exc:
            _fail(str(exc))

    return wrapper


def _bind_database(settings: Settings) -> None:
    db.init_database(settings.database_url)


def _redis(settings: Settings):  # noqa: ANN202
    import redis

    client = connect_redis(settings.redis_url)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        hint = (
            " (start it with `glimpser serve`, or set GLIMPSER_REDIS_URL)"
            if settings.private_redis
            else ""
        )
        _fail(f"cannot reach Redis at {settings.redis_url}: {exc}{hint}")
    return client


@click.group()
@click.version_option(package_name="glimpser")
def main() -> None:
    """Glimpser: self-hosted monitoring of cameras, video streams and websites."""


@main.command()
@with_settings
def serve(settings: Settings) -> None:
    """Run everything: private Redis (unless GLIMPSER_REDIS_URL is set), web, workers, scheduler."""
    from glimpser.supervisor import Supervisor

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:
            _fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}")
    sys.exit(Supervisor(settings).run())


@main.command()
@with_settings
def web(settings: Settings) -> None:
    """Serve the web app with gunicorn on GLIMPSER_HOST:GLIMPSER_PORT."""
    _bind_database(settings)
    _redis(settings)
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:glimpser.gunicorn_conf",
            "glimpser.wsgi:app",
        ],
    )


@main.command()
@click.option(
    "--queues", default="", help="Comma-separated queues (default: all, most urgent first)."
)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@with_settings
def worker(settings: Settings, queues: str, burst: bool) -> None:
    """Run an RQ worker for capture, browser, analysis, notify and maintenance jobs, with
    GLIMPSER_CAPTURE_THREADS capture jobs at a time (glimpser.workers)."""

    from glimpser import heartbeats, jobs
    from glimpser.sources import browser_pool

    names = [q.strip() for q in queues.split(",") if q.strip()] or list(WORKER_QUEUE_ORDER)
    unknown = [n for n in names if n not in QUEUE_NAMES]
    if unknown:
        _fail(f"unknown queue(s): {', '.join(unknown)} (known: {', '.join(QUEUE_NAMES)})")
    names = worker_queues(names)
    _bind_database(settings)
    connection = _redis(settings)
    jobs.configure(settings)
    if "browser" in names:
        browser_pool.configure(connect_redis(settings.redis_url), settings.browser_max_per_host)
    # A client of its own: RQ sets its connection's socket timeout for its long BLPOP.
    beat = heartbeats.Heartbeat(connect_redis(settings.redis_url), "worker").start()
    try:
        _work(connection, names, burst, settings)
    finally:
        beat.stop()


def _work(connection: Any, names: list[str], burst: bool, settings: Settings) -> None:
    """Run the main RQ worker (made again after Redis went away) until asked to stop, with the
    capture threads beside it (glimpser.workers).

    SIGTERM or SIGINT is a warm shutdown (RQ's): the jobs in hand are finished, then the worker
    exits; a second one is a cold shutdown that cuts them off like kill -9 does."""
    import redis

    from glimpser import workers

    threads = (
        settings.capture_threads if workers.uses_pool(names, settings.capture_threads, burst) else 0
    )
    main_names = workers.main_queues(names, threads)
    pool = None
    if threads:
        pool = workers.CapturePool(
            connection, threads, f"{node.name()}.{os.getpid()}", settings.log_level
        )
    # SimpleWorker runs jobs in this process instead of forking one per job: cheaper per
    # capture, and it lets a worker keep one Chromium across website captures.
    # Maintenance every MAINTENANCE_SECONDS, not RQ's 10 min: it is also when a worker takes
    # over the RQ scheduler of a worker that was killed (the sweep frees its lock once it is
    # silent: queues.free_dead_scheduler_locks); until then queues.enqueue_overdue() keeps
    # the scheduled jobs moving.
    while True:
        rq_worker = workers.MainWorker(
            [get_queue(n, connection) for n in main_names],
            connection=connection,
            maintenance_interval=MAINTENANCE_SECONDS,
        )
        rq_worker.pool = pool  # started by the worker, once its RQ scheduler is forked
        rq_worker.also_scheduled = tuple(
            get_queue(n, connection) for n in names if n not in main_names
        )
        try:
            rq_worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
        except (redis.RedisError, OSError) as exc:  # Redis went away during RQ's teardown
            click.echo(f"glimpser worker: lost Redis: {exc}", err=True)
        # RQ's work() also returns when Redis went away in the middle of its bookkeeping
        # (it logs "found an unhandled exception, quitting"). Unless asked to stop, wait
        # for Redis and work on: a Redis restart must not end the worker.
        if burst or rq_worker._shutdown_requested_date is not None:  # SIGTERM/SIGINT
            break
        _wait_for_redis(connection)
    # A warm shutdown: the captures in hand finish and are recorded before the process ends.
    # A second signal is a cold shutdown: RQ raises SystemExit above, so this is skipped and
    # the process ends without waiting for them (the threads are daemons), as after kill -9.
    workers.wait_for_threads(pool)


def _wait_for_redis(connection: Any) -> None:
    """Block until Redis answers again (retrying with a growing pause, up to 5 s).

    RQ's signal handlers talk to Redis; meanwhile SIGTERM and SIGINT simply end the process
    (no job is running)."""
    import signal
    import time

    import redis

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    pause = 0.5
    while True:
        try:
            connection.ping()
            return
        except (redis.RedisError, OSError):
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


@main.command()
@with_settings
def scheduler(settings: Settings) -> None:
    """Run RQ's cron scheduler with Glimpser's periodic jobs."""

    from glimpser import heartbeats
    from glimpser.jobs import CRON_JOBS

    connection = _redis(settings)
    beat = heartbeats.Heartbeat(connect_redis(settings.redis_url), "scheduler").start()
    try:
        _schedule(connection, settings, CRON_JOBS)
    finally:
        beat.stop()


def _schedule(connection: Any, settings: Settings, cron_jobs: Any) -> None:
    """RQ's cron scheduler, named after this node, started again after a Redis restart."""
    import secrets

    import redis
    from rq.cron import CronScheduler

    while True:
        name = f"{node.name()}:{os.getpid()}:{secrets.token_hex(3)}"
        cron = CronScheduler(connection=connection, logging_level=settings.log_level, name=name)
        cron.hostname = node.name()
        for func, queue_name, interval in cron_jobs:
            cron.register(func, queue_name=queue_name, interval=interval)
        try:
            cron.start()
            return  # stopped by SIGTERM or SIGINT
        except (redis.RedisError, OSError) as exc:
            # A Redis restart must not end the scheduler: wait for it and start over.
            click.echo(f"glimpser scheduler: lost Redis: {exc}", err=True)
        _wait_for_redis(connection)


@main.command()
@with_settings
def readers(settings: Settings) -> None:
    """Keep one ffmpeg reader open per RTSP stream whose interval is short (see docs)."""
    import signal

    from glimpser.capture.readers import ReaderHub

    _bind_database(settings)
    hub = ReaderHub(settings, _redis(settings))

    def stop(_signum: int, _frame: object) -> None:
        hub.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    hub.run()


@main.command()
@with_settings
def migrate(settings: Settings) -> None:
    """Apply pending database migrations (safe to run again, and concurrently)."""
    from glimpser.doctor import record_fingerprint

    _bind_database(settings)
    applied = db.migrate()
    click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    # The first host to migrate records the deployment's secret-key fingerprint, which
    # `glimpser doctor` compares on every other host (never the key itself).
    try:
        record_fingerprint(settings)
    except peewee.PeeweeException as exc:
        click.echo(f"note: the secret-key fingerprint was not recorded: {exc}", err=True)


@main.command()
@click.option(
    "--accept-secret-key",
    is_flag=True,
    help="Record this host's secret key as the deployment's (after changing it on every host).",
)
def doctor(accept_secret_key: bool) -> None:
    """Check this host's view of the deployment: settings, database and schema, the secret
    key, Redis, storage, ffmpeg, Chromium and clock skew. One line per check (ok, warn or
    FAIL); exits 1 when any check fails (docs/deploy.md)."""
    from glimpser import doctor as checks

    configure_logging("ERROR")  # the report is the output; library warnings would interleave
    failed = False
    if accept_secret_key:
        try:
            settings = load_settings()
            _bind_database(settings)
            fingerprint = checks.replace_fingerprint(settings)
        except (ConfigError, DatabaseUnavailable, peewee.PeeweeException) as exc:
            _fail(f"cannot record the secret-key fingerprint: {exc}")
        click.echo(f"recorded this host's secret-key fingerprint {fingerprint} as the deployment's")
    for check in checks.run_checks(load_settings):
        click.echo(check.line())
        failed = failed or check.status == checks.FAIL
    sys.exit(1 if failed else 0)


@main.command("picture-url-secret")
@click.option(
    "--nginx-include",
    "include",
    type=click.Path(dir_okay=False, writable=True),
    help="Write nginx's secure_link lines with the secret to this file (mode 0600) instead.",
)
@with_settings
def picture_url_secret(settings: Settings, include: str | None) -> None:
    """Print the secret signed picture URLs use (derived from GLIMPSER_SECRET_KEY), for nginx's
    secure_link_md5 (docs/deploy.md, "Pictures served by nginx")."""
    from glimpser.web.pictures import picture_secret, write_nginx_include

    secret = picture_secret(settings.secret_key)
    if include is None:
        click.echo(secret)
        return
    try:
        write_nginx_include(include, secret)
    except OSError as exc:
        _fail(f"cannot write {include}: {exc.strerror}")
    click.echo(f"wrote {include} (mode 0600); include it in nginx's /pictures/ location")


def _read_password() -> str:
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


@main.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "viewer"]), default="viewer", show_default=True)
@with_settings
def create_user_command(settings: Settings, username: str, role: str) -> None:
    """Create a user. The password is read from a prompt, or from stdin when piped."""
    _bind_database(settings)
    db.migrate()
    password = _read_password()
    try:
        with db.database.connection_context():
            user = create_user(username, password, role)
    except UserError as exc:
        _fail(str(exc))
    click.echo(f"created {user.role} {user.username!r}")


def _access_targets(username: str, streams: tuple[str, ...]):  # noqa: ANN202
    """The user and the streams (by id or exact name) a grant or revoke names."""
    user = User.get_or_none(User.username == username)
    if user is None:
        _fail(f"no user named {username!r}")
    found = []
    for ref in streams:
        by_id = ref.isascii() and ref.isdigit() and len(ref) < 10
        stream = Stream.get_or_none(Stream.id == int(ref)) if by_id else None
        stream = stream or Stream.get_or_none(Stream.name == ref)
        if stream is None:
            _fail(f"no stream {ref!r} (give its id or exact name)")
        found.append(stream)
    return user, found


def _change_access(
    username: str, streams: tuple[str, ...], groups: tuple[str, ...], *, grant: bool
) -> tuple[User, list[str], list[str]]:
    """Grant or revoke through the same function as Admin → Users (same rows, same audit)."""
    from glimpser.auth.access import AccessError, change_access

    if not streams and not groups:
        _fail("name at least one stream, or a group with --group")
    with db.database.connection_context(), db.write_transaction():
        user, found = _access_targets(username, streams)
        if user.is_admin:
            _fail(f"{user.username} is an admin and sees every stream")
        try:
            if grant:
                changed, _ = change_access(
                    user, grant_streams=found, grant_groups=groups, via="cli"
                )
            else:
                _, changed = change_access(
                    user, revoke_streams=found, revoke_groups=groups, via="cli"
                )
        except AccessError as exc:
            _fail(str(exc))
    return user, [s.name for s in found] + [f"group {g}" for g in groups], changed


@main.command()
@click.argument("username")
@click.argument("streams", nargs=-1)
@click.option("--group", "groups", multiple=True, help="A stream group (repeatable).")
@with_settings
def grant(settings: Settings, username: str, streams: tuple[str, ...], groups: tuple[str, ...]):
    """Let a viewer see these streams, or every stream of a group (also streams that join the
    group later). Admins see every stream anyway."""
    _bind_database(settings)
    user, names, changed = _change_access(username, streams, groups, grant=True)
    click.echo(f"{user.username} may see: {', '.join(names)}" + ("" if changed else " (already)"))


@main.command()
@click.argument("username")
@click.argument("streams", nargs=-1)
@click.option("--group", "groups", multiple=True, help="A stream group (repeatable).")
@with_settings
def revoke(settings: Settings, username: str, streams: tuple[str, ...], groups: tuple[str, ...]):
    """Take back a viewer's access to these streams or groups."""
    _bind_database(settings)
    user, names, changed = _change_access(username, streams, groups, grant=False)
    click.echo(
        f"{user.username} may no longer see: {', '.join(names)}"
        + ("" if changed else " (was not granted)")
    )


# --- API keys ---------------------------------------------------------------------------------


@main.group("api-key")
def api_key() -> None:
    """Keys for the JSON API (/api/v1): create (prints the key once), list, revoke."""


def _find_user(username: str) -> User:
    user = User.get_or_none(User.username == username)
    if user is None:
        _fail(f"no user named {username!r}")
    return user


def _key_streams(user: User, refs: tuple[str, ...]) -> list[int] | None:
    """The ids of the streams (by id or exact name) a key is limited to; each must be one the
    user sees. None when none are named (the key sees every stream the user sees)."""
    from glimpser.auth.access import visible_streams
    from glimpser.web.params import parse_id

    if not refs:
        return None
    ids = []
    for ref in refs:
        stream_id = parse_id(ref)
        stream = Stream.get_or_none(Stream.id == stream_id) if stream_id is not None else None
        stream = stream or Stream.get_or_none(Stream.name == ref)
        if stream is None:
            _fail(f"no stream {ref!r} (give its id or exact name)")
        if not visible_streams(user).where(Stream.id == stream.id).exists():
            _fail(f"{user.username} cannot see the stream {stream.name!r}")
        ids.append(stream.id)
    return ids


@api_key.command("create")
@click.argument("username")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["read", "write", "admin", "metrics"]),
    help="What the key may do (repeatable): read, write (includes read), admin (an admin's "
    "key only; includes everything), metrics (/metrics only).",
)
@click.option("--name", default="", help="What the key is for, e.g. 'Home Assistant'.")
@click.option(
    "--expires-days", default="", metavar="DAYS", help="Expire after DAYS (1-3650); default never."
)
@click.option(
    "--stream",
    "streams",
    multiple=True,
    metavar="NAME_OR_ID",
    help="Limit the key to this stream (repeatable); default every stream the user sees.",
)
@with_settings
def api_key_create(
    settings: Settings,
    username: str,
    scopes: tuple[str, ...],
    name: str,
    expires_days: str,
    streams: tuple[str, ...],
) -> None:
    """Make a key for USERNAME. Prints only the key on stdout (shown this once; only its hash
    is stored), so that `KEY=$(glimpser api-key create …)` works."""
    from glimpser.auth import api_keys
    from glimpser.web.params import parse_int

    days = None
    if expires_days:
        days = parse_int(expires_days, minimum=1, maximum=api_keys.MAX_EXPIRY_DAYS)
        if days is None:
            _fail(f"--expires-days must be a whole number from 1 to {api_keys.MAX_EXPIRY_DAYS}")
    if any(not ch.isprintable() for ch in name):
        _fail("--name must be printable text")
    _bind_database(settings)
    db.migrate()
    with db.database.connection_context():
        user = _find_user(username)
        stream_ids = _key_streams(user, streams)
        try:
            new = api_keys.create_key(
                user, scopes, name=name, expires_days=days, stream_ids=stream_ids, via="cli"
            )
        except api_keys.ApiKeyError as exc:
            _fail(str(exc))
    click.echo(new.token)
    limits = f"streams {', '.join(map(str, stream_ids))}" if stream_ids else "every stream"
    expiry = f"expires in {days} days" if days else "does not expire"
    click.echo(
        f"created key {new.row.prefix} for {user.username} ({', '.join(new.row.scopes)}; "
        f"{limits}; {expiry}); it is shown only now",
        err=True,
    )


@api_key.command("list")
@click.option("--user", "username", default=None, help="Only this user's keys.")
@with_settings
def api_key_list(settings: Settings, username: str | None) -> None:
    """List keys, newest first: prefix, owner, name, scopes, state, last use (never a secret)."""
    from glimpser import times
    from glimpser.auth import api_keys

    _bind_database(settings)
    db.migrate()
    with db.database.connection_context():
        user = _find_user(username) if username is not None else None
        keys = api_keys.keys_of(user)
        rows = [
            (
                key.prefix,
                key.user.username,
                key.name or "-",
                ",".join(key.scopes or []),
                api_keys.state(key),
                (
                    f"{times.isoformat(key.last_used_at)} from {key.last_used_from or '?'}"
                    if key.last_used_at
                    else "never"
                ),
            )
            for key in keys
        ]
    if not rows:
        click.echo("no API keys", err=True)
        return
    header = ("PREFIX", "OWNER", "NAME", "SCOPES", "STATE", "LAST USED")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]))


@api_key.command("revoke")
@click.argument("prefix")
@with_settings
def api_key_revoke(settings: Settings, prefix: str) -> None:
    """Revoke the key with this PREFIX (the 8 characters after glp_, as `list` shows them; the
    whole key works too). Requests with it are refused from now on."""
    from glimpser.auth import api_keys
    from glimpser.models import ApiKey

    wanted = api_keys.parse_prefix(prefix) or prefix.removeprefix(api_keys.TOKEN_PREFIX)
    if len(wanted) != api_keys.PREFIX_CHARS or not wanted.isascii() or not wanted.isalnum():
        _fail(f"{prefix!r} is not a key prefix (8 characters, as `glimpser api-key list` shows)")
    _bind_database(settings)
    db.migrate()
    with db.database.connection_context():
        key = (
            ApiKey.select(ApiKey, User)
            .join(User, on=(ApiKey.user == User.id))
            .where(ApiKey.prefix == wanted.lower())
            .first()
        )
        if key is None:
            _fail(f"no key with the prefix {wanted!r}")
        changed = api_keys.revoke(key, via="cli")
    if changed:
        click.echo(f"revoked {key.user.username}'s key {key.prefix} ({key.name or 'no name'})")
    else:
        click.echo(f"key {key.prefix} was already revoked")


@main.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--include-secrets",
    is_flag=True,
    help="Include stream passwords and channel secrets (tokens, passwords, Apprise URLs) in "
    "plain text (audited).",
)
@with_settings
def export_command(settings: Settings, file: str | None, include_secrets: bool) -> None:
    """Export the whole set-up (streams, rules, notification channels) as JSON to FILE, or to
    stdout without one. Secrets only with --include-secrets."""
    from glimpser.transfer import dumps_document, export_streams

    _bind_database(settings)
    db.migrate()
    with db.database.connection_context():
        document = export_streams(include_secrets=include_secrets, via="cli")
    text = dumps_document(document)
    if not file or file == "-":
        click.echo(text, nl=False)
        return
    try:
        mode = 0o600 if include_secrets else 0o666
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        if include_secrets:
            os.fchmod(fd, 0o600)  # also when the file already existed
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        _fail(f"cannot write {file}: {exc.strerror}")
    secrets_note = " (with passwords and secrets)" if include_secrets else ""
    rules = len(document.get("rules", []))
    channels = len(document.get("channels", []))
    click.echo(
        f"exported {len(document['streams'])} streams, {rules} rules and {channels} channels "
        f"to {file}{secrets_note}",
        err=True,
    )


@main.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--mode",
    type=click.Choice(["skip", "overwrite", "rename"]),
    default="skip",
    show_default=True,
    help="What to do when a stream, rule or channel with the same name exists.",
)
@click.option("--dry-run", is_flag=True, help="Only report what would happen.")
@with_settings
def import_command(settings: Settings, file: str, mode: str, dry_run: bool) -> None:
    """Import streams, rules and notification channels from a Glimpser export, or streams from
    a glimpser-rs export (FILE, or - for stdin).

    Prints one line per entry. Exit status 1 when some entries were invalid (the valid ones
    are imported), 2 when the file is refused or nothing could be written.
    """
    from glimpser.transfer import MAX_IMPORT_BYTES, TransferError, import_streams, load_document

    try:
        if file == "-":
            raw = sys.stdin.buffer.read(MAX_IMPORT_BYTES + 1)
        else:
            with open(file, "rb") as handle:
                raw = handle.read(MAX_IMPORT_BYTES + 1)
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
    _bind_database(settings)
    db.migrate()
    try:
        data = load_document(raw)
        with db.database.connection_context():
            report = import_streams(
                data,
                mode,
                dry_run,
                via="cli",
                source=os.path.basename(file),
                ai_configured=settings.ai_configured,
            )
    except TransferError as exc:
        _fail(str(exc))
    for line in report.lines():
        click.echo(line)
    if report.failure:
        sys.exit(2)
    if report.has_errors:  # invalid stream, rule or channel entries
        sys.exit(1)


# --- releases and updates ---------------------------------------------------------------------


@main.group()
def release() -> None:
    """Publish releases: a TUF repository (init), release archives (build), signed (publish)."""


@release.command("init")
@click.argument("repo_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the private keys go (default: REPO_DIR-keys next to it); never inside REPO_DIR.",
)
def release_init(repo_dir: Path, keys_dir: Path | None) -> None:
    """Make a new release repository in REPO_DIR with one new key per role."""
    from glimpser.updates.release import ReleaseError, init_repository

    keys_dir = keys_dir or repo_dir.resolve().with_name(repo_dir.resolve().name + "-keys")
    try:
        result = init_repository(repo_dir, keys_dir)
    except (ReleaseError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"repository: {repo_dir.resolve()} (serve it with any static web server)")
    click.echo(f"private keys (mode 0600; keep them offline, back them up): {keys_dir.resolve()}")
    click.echo(f"trusted root metadata: {result.root_path}")
    click.echo(
        "installations trust this file: ship it as glimpser/updates/root.json "
        "(or point GLIMPSER_UPDATE_ROOT at it)"
    )


@release.command("build")
@click.option("--version", "version", default=None, help="Default: pyproject.toml's version.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dist"),
    show_default=True,
)
def release_build(version: str | None, out_dir: Path) -> None:
    """Make glimpser-<version>.tar.gz from the checkout's HEAD (git archive, with
    requirements.lock); the version is written into the archive's pyproject.toml and
    glimpser/__init__.py."""
    from glimpser.updates.release import ReleaseError, build_release

    try:
        build = build_release(Path.cwd(), out_dir, version)
    except (ReleaseError, OSError) as exc:
        _fail(str(exc))
    if build.dirty:
        click.echo(
            "note: the working tree has uncommitted changes; the archive holds HEAD only", err=True
        )
    click.echo(f"built {build.path} (version {build.version}, commit {build.commit[:12]})")
    click.echo(f"sha256 {build.sha256}")


@release.command("publish")
@click.argument("artifact", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--repo", "repo_dir", required=True, type=click.Path(path_type=Path))
@click.option("--keys", "keys_dir", required=True, type=click.Path(path_type=Path))
@click.option(
    "--changelog-from",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Default: the CHANGELOG.md inside the archive.",
)
@click.option(
    "--expires-days",
    type=click.IntRange(1, 3650),
    default=30,
    show_default=True,
    help="Snapshot and timestamp metadata expire after this many days.",
)
def release_publish(
    artifact: Path,
    repo_dir: Path,
    keys_dir: Path,
    changelog_from: Path | None,
    expires_days: int,
) -> None:
    """Add ARTIFACT (glimpser-<version>.tar.gz) to the repository, signed, with its changelog."""
    from glimpser.updates.release import ReleaseError, publish

    try:
        done = publish(
            artifact, repo_dir, keys_dir, changelog_from=changelog_from, expires_days=expires_days
        )
    except (ReleaseError, OSError) as exc:
        _fail(str(exc))
    click.echo(
        f"published {done.version}: {done.target_name} ({done.length} bytes, "
        f"sha256 {done.sha256}); targets v{done.targets_version}, "
        f"timestamp v{done.timestamp_version}"
    )


@release.command("refresh")
@click.option("--repo", "repo_dir", required=True, type=click.Path(path_type=Path))
@click.option("--keys", "keys_dir", required=True, type=click.Path(path_type=Path))
@click.option("--expires-days", type=click.IntRange(1, 3650), default=30, show_default=True)
def release_refresh(repo_dir: Path, keys_dir: Path, expires_days: int) -> None:
    """Re-sign snapshot and timestamp metadata with a later expiry (run it regularly:
    installations refuse expired metadata)."""
    from glimpser.updates.release import ReleaseError, refresh

    try:
        version = refresh(repo_dir, keys_dir, expires_days=expires_days)
    except (ReleaseError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"timestamp v{version}, expires in {expires_days} days")


@release.command("rotate-key")
@click.argument("role", type=click.Choice(["root", "targets", "snapshot", "timestamp"]))
@click.option("--repo", "repo_dir", required=True, type=click.Path(path_type=Path))
@click.option("--keys", "keys_dir", required=True, type=click.Path(path_type=Path))
@click.option("--expires-days", type=click.IntRange(1, 3650), default=30, show_default=True)
def release_rotate_key(role: str, repo_dir: Path, keys_dir: Path, expires_days: int) -> None:
    """Replace ROLE's key with a new one, in a new root version that installations follow."""
    from glimpser.updates.release import ReleaseError, rotate_key

    try:
        done = rotate_key(repo_dir, keys_dir, role, expires_days=expires_days)
    except (ReleaseError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"new {role} key: {keys_dir / (role + '.pem')} (the old one: {done.retired_key})")
    click.echo(f"root metadata v{done.root_version}: {done.root_path}")


@main.group()
def update() -> None:
    """Check for, download, apply and roll back verified releases (docs/updates.md)."""


@update.command("check")
@with_settings
def update_check(settings: Settings) -> None:
    """Refresh the release metadata and show the current and newest version and its changelog
    (kept as the last check that Admin → Updates shows)."""
    from glimpser.updates import last_check
    from glimpser.updates.client import check

    result = check(settings)
    try:
        _bind_database(settings)
        db.migrate()
        with db.database.connection_context():
            last_check.store(result)
    except peewee.PeeweeException as exc:  # the check itself stands; the page just lacks it
        click.echo(f"note: the result was not stored for Admin → Updates: {exc}", err=True)
    if result.error:
        _fail(result.error)
    click.echo(f"current version: {result.current}")
    if result.newest is None:
        click.echo("newest version: none published")
        return
    newest = result.newest
    click.echo(f"newest version: {newest.version} ({newest.size} bytes)")
    click.echo("update available" if result.update_available else "up to date")
    if newest.changelog:
        click.echo("")
        click.echo(f"changes in {newest.version}:")
        click.echo(newest.changelog)


@update.command("download")
@click.option("--to", "dest_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@with_settings
def update_download(settings: Settings, dest_dir: Path) -> None:
    """Download the newest release, verified through TUF, into a folder."""
    from glimpser.updates.client import UpdateError, check, download

    result = check(settings)
    if result.error:
        _fail(result.error)
    if result.newest is None:
        _fail("the release repository has no release")
    try:
        path = download(settings, result.newest, dest_dir)
    except UpdateError as exc:
        _fail(str(exc))
    click.echo(f"downloaded and verified {path} (version {result.newest.version})")


def _follow(settings: Settings, attempt_id: str) -> None:
    """Print an attempt's steps as they happen until it ends; exit 1 unless it succeeded."""
    from glimpser.updates import attempts

    shown: dict[str, str] = {}
    while True:
        attempt = attempts.load(settings, attempt_id)
        if attempt is None:
            _fail(f"the update attempt {attempt_id} is gone")
        for index, step in enumerate(attempt.steps):
            key = f"{index}:{step.name}"
            if shown.get(key) != step.state:
                shown[key] = step.state
                detail = f" ({step.detail})" if step.detail and step.state != "running" else ""
                click.echo(f"{step.name}: {step.state}{detail}")
        if not attempt.active:
            click.echo(attempt.message)
            if attempt.state != attempts.SUCCEEDED:
                sys.exit(1)
            return
        time.sleep(0.5)


@update.command("apply")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_settings
def update_apply(settings: Settings, yes: bool) -> None:
    """Install the newest release side by side, migrate, switch over and verify; roll back if
    it does not come up. With `glimpser serve` running, it switches the running processes."""
    from glimpser.updates import attempts, install, installed, parse_version, switch
    from glimpser.updates.client import check

    _bind_database(settings)
    result = check(settings)
    if result.error:
        _fail(result.error)
    # This command may be the base installation's while a newer release runs.
    current = installed.running_version(settings)
    newest = result.newest
    if newest is None or parse_version(newest.version) <= parse_version(current):
        click.echo(f"up to date ({current})")
        return
    if attempts.active(settings) is not None:
        _fail("another update attempt is running (see `glimpser update history`)")
    supervisor = installed.supervisor_pid(settings)
    how = (
        f"glimpser serve (pid {supervisor}) will restart its processes on it"
        if supervisor
        else "no glimpser serve runs here: it is installed for the next start"
    )
    click.echo(f"update {current} → {newest.version}: {how}")
    if not yes:
        click.confirm("Apply it?", abort=True)
    attempt = attempts.new(settings, "update", newest.version, current, "command line")
    click.echo(f"attempt {attempt.id} (log: glimpser update history --log {attempt.id})")
    if install.prepare(settings, attempt, supervisor=supervisor) and supervisor is None:
        switch.run(settings, attempt, None)
    _follow(settings, attempt.id)


@update.command("rollback")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_settings
def update_rollback(settings: Settings, yes: bool) -> None:
    """Go back to the release the last update replaced (restoring its pre-update backup when
    that update changed the database schema: what was recorded since is then lost)."""
    from glimpser.updates import attempts, install, installed, switch
    from glimpser.updates.attempts import StepFailed

    _bind_database(settings)
    if attempts.active(settings) is not None:
        _fail("another update attempt is running (see `glimpser update history`)")
    try:
        attempt = switch.plan_rollback(settings, "command line")
    except StepFailed as exc:
        _fail(str(exc))
    click.echo(f"roll back {attempt.from_version} → {attempt.version}")
    if attempt.backup:
        click.echo(
            f"the database will be restored from {attempt.backup}: "
            "everything recorded since the update is lost"
        )
    if not yes and not click.confirm("Roll back?"):
        attempts.Recorder(settings, attempt).finish(attempts.CANCELLED, "Not confirmed.")
        raise click.Abort()
    supervisor = installed.supervisor_pid(settings)
    if supervisor is not None:
        install.request_switch(settings, attempt.id, supervisor)
    else:
        switch.run(settings, attempt, None)
    _follow(settings, attempt.id)


@update.command("history")
@click.option("--log", "log_of", default=None, help="Print one attempt's log.")
@with_settings
def update_history(settings: Settings, log_of: str | None) -> None:
    """Every update and rollback attempt, newest first, with its outcome."""
    from glimpser.updates import attempts

    if log_of is not None:
        if attempts.load(settings, log_of) is None:
            _fail(f"no update attempt {log_of!r}")
        click.echo(attempts.read_log(settings, log_of), nl=False)
        return
    found = attempts.history(settings)
    if not found:
        click.echo("no update attempts")
    for attempt in found:
        click.echo(
            f"{attempt.id}  {attempt.kind} {attempt.from_version} → {attempt.version}  "
            f"{attempt.state}  by {attempt.by}: {attempt.message}"
        )


@main.command("backup")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--with-snapshots",
    is_flag=True,
    help="Include the snapshot files (local storage only: S3 snapshots are not included).",
)
@with_settings
def backup_command(settings: Settings, file: str | None, with_snapshots: bool) -> None:
    """Write a backup archive (tar.gz): the database, the generated secret key and, with
    --with-snapshots, the snapshot files. Default FILE: <data dir>/backups/glimpser-<UTC>.tar.gz."""
    from pathlib import Path

    from glimpser.backups.archive import S3_NOTE, BackupError, create_backup, read_manifest

    try:
        path = create_backup(settings, Path(file) if file else None, with_snapshots=with_snapshots)
        manifest = read_manifest(path)
    except BackupError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the backup: {exc.strerror or exc}")
    contents = manifest["contents"]
    what = [f"{manifest['database']} database (schema {manifest['schema_version']})"]
    if contents["secret_key"]:
        what.append("secret key")
    if contents["snapshots"]:
        what.append(f"{contents['snapshot_files']} snapshot files")
    click.echo(f"backed up {', '.join(what)} to {path} ({path.stat().st_size} bytes)")
    if contents["secret_key_from_environment"]:
        click.echo(
            "note: the secret key comes from GLIMPSER_SECRET_KEY and is not in the backup; "
            "keep it with the backup",
            err=True,
        )
    if with_snapshots and settings.storage != "local":
        click.echo(f"note: {S3_NOTE}", err=True)


@main.command("restore")
@click.argument("file", type=click.Path(dir_okay=False))
# An update's rollback replaces a database in use; people restore into an empty one.
@click.option("--replace", is_flag=True, hidden=True)
@with_settings
def restore_command(settings: Settings, file: str, replace: bool) -> None:
    """Restore a backup archive into an empty database and data directory, then bring its
    schema up to this version's. Refuses a database that is not empty."""
    from pathlib import Path

    from glimpser.backups.archive import BackupError, restore_backup

    try:
        report = restore_backup(settings, Path(file), replace=replace)
    except BackupError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot restore {file}: {exc.strerror or exc}")
    click.echo(f"restored the {report.database} database (schema {report.schema_version})")
    if report.migrations_applied:
        click.echo(f"applied: {', '.join(report.migrations_applied)}")
    click.echo(f"secret key: {report.secret_key}")
    if report.snapshot_files:
        click.echo(f"restored {report.snapshot_files} snapshot files")
    for note in report.notes:
        click.echo(f"note: {note}", err=True)


if __name__ == "__main__":
    main()
