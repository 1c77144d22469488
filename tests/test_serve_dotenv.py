"""A .env file in the working directory configures Glimpser; the environment wins over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from glimpser.config import ConfigError, load_settings


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("GLIMPSER_DATA_DIR", "GLIMPSER_PORT", "GLIMPSER_ALLOW_LOOPBACK_SOURCES"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_settings_come_from_a_dotenv_file(workdir: Path):
    (workdir / ".env").write_text(
        "# copied from .env.example\n"
        "GLIMPSER_DATA_DIR=./from-dotenv\n"
        "GLIMPSER_PORT=8123\n"
        'GLIMPSER_ALLOW_LOOPBACK_SOURCES="1"\n'
    )
    settings = load_settings()
    assert settings.port == 8123
    assert settings.allow_loopback_sources is True
    assert settings.data_dir == (workdir / "from-dotenv").resolve()


def test_the_environment_wins_over_the_dotenv_file(workdir: Path, monkeypatch):
    (workdir / ".env").write_text("GLIMPSER_DATA_DIR=./data\nGLIMPSER_PORT=8123\n")
    monkeypatch.setenv("GLIMPSER_PORT", "8456")
    assert load_settings().port == 8456


def test_a_bad_value_in_the_dotenv_file_is_one_clear_error(workdir: Path):
    (workdir / ".env").write_text("GLIMPSER_DATA_DIR=./data\nGLIMPSER_PORT=eighty\n")
    with pytest.raises(ConfigError, match="GLIMPSER_PORT"):
        load_settings()


def test_no_dotenv_file_is_fine(workdir: Path):
    assert load_settings().port == 8000
