"""The data directory and the files that hold secrets are the owner's alone: the directory
0700, glimpser.db (and its WAL files) and redis.rdb 0600, also when an older version left
them world-readable."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import redis

from glimpser.config import load_settings
from glimpser.db import database, init_database, migrate
from glimpser.redis_server import PrivateRedis


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask():
    """The usual 022 umask, whatever the test runner has."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_data_dir_and_database_are_private(tmp_path: Path, loose_umask):
    data = tmp_path / "data"
    settings = load_settings({"GLIMPSER_DATA_DIR": str(data)})
    assert mode(data) == 0o700
    db = init_database(settings.database_url)
    try:
        migrate(db)
        files = [p for p in data.iterdir() if p.name.startswith("glimpser.db")]
        assert any(p.name == "glimpser.db" for p in files)
        for path in files:  # glimpser.db, -wal, -shm
            assert mode(path) == 0o600, path
    finally:
        database.close()


@pytest.mark.slow
def test_files_left_world_readable_are_tightened(tmp_path: Path, loose_umask):
    data = tmp_path / "data"
    settings = load_settings({"GLIMPSER_DATA_DIR": str(data)})
    init_database(settings.database_url)
    database.close()
    server = PrivateRedis(data)
    server.start()
    server.stop()  # leaves redis.rdb
    # As an older version left them:
    data.chmod(0o755)
    for name in ("glimpser.db", "redis.rdb", "redis.log"):
        (data / name).chmod(0o644)
    settings = load_settings({"GLIMPSER_DATA_DIR": str(data)})
    assert mode(data) == 0o700
    init_database(settings.database_url)
    database.close()
    assert mode(data / "glimpser.db") == 0o600
    server.start()
    try:
        assert mode(data / "redis.rdb") == 0o600
        assert mode(data / "redis.log") == 0o600
    finally:
        server.stop()


@pytest.mark.slow
def test_redis_writes_its_snapshot_private(tmp_path: Path, loose_umask):
    data = tmp_path / "data"
    load_settings({"GLIMPSER_DATA_DIR": str(data)})
    server = PrivateRedis(data)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        client.save()  # a fresh redis.rdb, written by redis-server itself
    finally:
        server.stop()
    assert mode(data / "redis.rdb") == 0o600
    assert mode(data / "redis.log") == 0o600
