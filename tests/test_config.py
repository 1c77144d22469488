"""Settings: defaults, validation, the generated secret key, one-line failures."""

from __future__ import annotations

import pytest

from glimpser.config import ConfigError, load_settings
from tests.helpers import run_cli


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.data_dir == tmp_path / "data"
    assert settings.host == "127.0.0.1" and settings.port == 8000
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'glimpser.db'}"
    assert (
        settings.private_redis
        and settings.redis_url == f"unix://{tmp_path / 'data' / 'redis.sock'}"
    )
    assert settings.secure_cookies is True


def test_secret_key_is_generated_once_and_kept(tmp_path):
    env = {"GLIMPSER_DATA_DIR": str(tmp_path)}
    first = load_settings(env).secret_key
    assert len(first) >= 32
    assert load_settings(env).secret_key == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert load_settings({**env, "GLIMPSER_SECRET_KEY": "x" * 20}).secret_key == "x" * 20


def test_secret_key_is_not_in_the_repr(tmp_path):
    settings = load_settings({"GLIMPSER_DATA_DIR": str(tmp_path), "GLIMPSER_SECRET_KEY": "s" * 24})
    assert "s" * 24 not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GLIMPSER_DATABASE_URL", "mysql://x/y", "unsupported scheme"),
        ("GLIMPSER_DATABASE_URL", "postgresql://host", "names no PostgreSQL database"),
        ("GLIMPSER_DATABASE_URL", "sqlite://", "names no SQLite file"),
        ("GLIMPSER_REDIS_URL", "http://localhost", "unsupported scheme"),
        ("GLIMPSER_PORT", "eighty", "not a whole number"),
        ("GLIMPSER_PORT", "70000", "out of range"),
        ("GLIMPSER_SECURE_COOKIES", "maybe", "not a boolean"),
        ("GLIMPSER_SECRET_KEY", "short", "too short"),
        ("GLIMPSER_LOGIN_RATE_LIMIT", "lots", "is not a rate"),
        ("GLIMPSER_LOG_LEVEL", "LOUD", "is not one of"),
        ("GLIMPSER_TRUSTED_PROXIES", "many", "not a whole number"),
        ("GLIMPSER_ACCEL_REDIRECT_PREFIX", "_snapshots", "must start and end with /"),
    ],
)
def test_invalid_settings_fail_with_a_clear_message(tmp_path, name, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_settings({"GLIMPSER_DATA_DIR": str(tmp_path), name: value})
    assert "\n" not in str(info.value)


def test_secure_cookies_switch(tmp_path):
    base = {"GLIMPSER_DATA_DIR": str(tmp_path)}
    assert load_settings({**base, "GLIMPSER_SECURE_COOKIES": "0"}).secure_cookies is False
    assert load_settings({**base, "GLIMPSER_SECURE_COOKIES": "yes"}).secure_cookies is True


@pytest.mark.parametrize("url", ["mysql://db/glimpser", "postgresql://nobody@127.0.0.1:1/nope"])
def test_bad_database_url_fails_at_start_with_one_line(tmp_path, url):
    result = run_cli(
        ["migrate"], {"GLIMPSER_DATA_DIR": str(tmp_path), "GLIMPSER_DATABASE_URL": url}
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("glimpser: error:") and "Traceback" not in result.stderr


def test_database_password_is_not_echoed_in_errors(tmp_path):
    result = run_cli(
        ["migrate"],
        {
            "GLIMPSER_DATA_DIR": str(tmp_path),
            "GLIMPSER_DATABASE_URL": "postgresql://u:hunter22@127.0.0.1:1/db",
        },
    )
    assert result.returncode == 2
    assert "hunter22" not in result.stderr and "u:***@" in result.stderr
