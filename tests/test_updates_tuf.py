"""Releases and update checks on a real TUF repository: built from this checkout at a bumped
version with the `glimpser release` commands, served from loopback by a static file server, and
checked with glimpser.updates.client (python-tuf's Updater)."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata

import glimpser
from glimpser.config import load_settings
from glimpser.updates.client import NOT_CONFIGURED, UpdateError, check, download
from glimpser.updates.release import changelog_section
from tests import updates_support
from tests.conftest import ROOT
from tests.helpers import free_port
from tests.media_servers import start_file_server
from tests.updates_support import (
    CHANGELOG,
    LATER,
    NEXT,
    glimpser_cli,
    ok,
    publish,
    real_key,
    resign_timestamp,
    settings_for,
)

# The fixtures of the shared release repository.
artifacts = updates_support.artifacts
repo = updates_support.repo


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_release_build_makes_a_source_archive_with_the_lock_file_and_the_version(artifacts):
    import tarfile

    with tarfile.open(artifacts[NEXT]) as archive:
        names = set(archive.getnames())
        init = archive.extractfile(f"glimpser-{NEXT}/glimpser/__init__.py").read().decode()
        pyproject = archive.extractfile(f"glimpser-{NEXT}/pyproject.toml").read().decode()
        lock = archive.extractfile(f"glimpser-{NEXT}/requirements.lock").read().decode()
    assert f'__version__ = "{NEXT}"' in init
    assert f'\nversion = "{NEXT}"\n' in pyproject
    assert "tuf==" in lock and "--hash=sha256:" in lock
    assert f"glimpser-{NEXT}/glimpser/updates/client.py" in names


def test_release_init_keeps_private_keys_out_of_the_served_folder(tmp_path, repo):
    served = {p.name for p in repo["dir"].rglob("*") if p.is_file()}
    assert served == {
        "1.root.json",
        "root.json",
        "1.targets.json",
        "targets.json",
        "1.snapshot.json",
        "snapshot.json",
        "timestamp.json",
    }
    for path in repo["dir"].rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes()
    for role in ("root", "targets", "snapshot", "timestamp"):
        key = repo["keys"] / f"{role}.pem"
        assert b"PRIVATE KEY" in key.read_bytes()
        assert key.stat().st_mode & 0o777 == 0o600
    inside = glimpser_cli(
        "release", "init", str(tmp_path / "r2"), "--keys", str(tmp_path / "r2" / "keys")
    )
    assert inside.returncode == 2 and "served to everyone" in inside.stderr
    assert not (tmp_path / "r2" / "keys").exists()
    again = glimpser_cli("release", "init", str(repo["dir"]), "--keys", str(tmp_path / "k3"))
    assert again.returncode == 2 and "already holds a repository" in again.stderr


def test_check_finds_the_new_version_and_download_verifies_it(tmp_path, repo, artifacts):
    settings = settings_for(tmp_path, repo["url"], repo["root"])
    before = check(settings)
    assert before.error == "" and before.newest is None and not before.update_available

    out = ok(publish(repo, artifacts[NEXT]))
    assert f"published {NEXT}" in out
    result = check(settings)
    assert result.error == ""
    assert result.current == glimpser.__version__
    assert result.update_available
    assert result.newest.version == NEXT
    assert result.newest.changelog == "### Added\n- Verified software updates."
    assert result.newest.size == artifacts[NEXT].stat().st_size
    assert result.newest.target_name == f"glimpser-{NEXT}.tar.gz"

    path = download(settings, result.newest, tmp_path / "downloads")
    assert path == tmp_path / "downloads" / f"glimpser-{NEXT}.tar.gz"
    assert sha256(path) == sha256(artifacts[NEXT])
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_update_commands_print_the_newest_release_and_download_it(tmp_path, repo, artifacts):
    ok(publish(repo, artifacts[NEXT]))
    env = {
        "GLIMPSER_DATA_DIR": str(tmp_path / "install"),
        "GLIMPSER_UPDATE_URL": repo["url"],
        "GLIMPSER_UPDATE_ROOT": str(repo["root"]),
    }
    out = ok(glimpser_cli("update", "check", env=env))
    assert f"current version: {glimpser.__version__}" in out
    assert f"newest version: {NEXT}" in out and "update available" in out
    assert "Verified software updates." in out
    # Kept as the last check Admin → Updates shows (in the install's own database).
    from glimpser.db import database, init_database
    from glimpser.updates import last_check

    init_database(load_settings(env).database_url)
    with database.connection_context():
        stored = last_check.load()
    assert stored is not None and stored.newest is not None and stored.newest.version == NEXT
    out = ok(glimpser_cli("update", "download", "--to", str(tmp_path / "dl"), env=env))
    assert "downloaded and verified" in out
    assert sha256(tmp_path / "dl" / f"glimpser-{NEXT}.tar.gz") == sha256(artifacts[NEXT])


def test_update_check_says_when_updates_are_not_configured(tmp_path):
    settings = load_settings({"GLIMPSER_DATA_DIR": str(tmp_path)})
    result = check(settings)
    assert result.error == NOT_CONFIGURED and result.newest is None
    cli = glimpser_cli("update", "check", env={"GLIMPSER_DATA_DIR": str(tmp_path)})
    assert cli.returncode == 2 and NOT_CONFIGURED in cli.stderr
    assert "Traceback" not in cli.stderr


def test_a_tampered_target_is_refused(tmp_path, repo, artifacts):
    ok(publish(repo, artifacts[NEXT]))
    settings = settings_for(tmp_path, repo["url"], repo["root"])
    release = check(settings).newest
    (stored,) = (repo["dir"] / "targets").iterdir()
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same length, one byte changed on the server
    stored.write_bytes(bytes(data))
    with pytest.raises(UpdateError, match="does not match the length or hashes"):
        download(settings, release, tmp_path / "downloads")
    assert list((tmp_path / "downloads").iterdir()) == []


def test_metadata_signed_by_a_wrong_key_is_refused(tmp_path, repo, artifacts):
    ok(publish(repo, artifacts[NEXT]))
    settings = settings_for(tmp_path, repo["url"], repo["root"])
    assert check(settings).error == ""
    attacker = CryptoSigner.generate_ed25519()
    resign_timestamp(repo, attacker, datetime.now(UTC) + timedelta(days=7))
    result = check(settings)
    assert "not signed by the trusted keys" in result.error
    assert result.newest is None and not result.update_available


def test_an_expired_timestamp_is_refused(tmp_path, repo, artifacts):
    ok(publish(repo, artifacts[NEXT]))
    settings = settings_for(tmp_path, repo["url"], repo["root"])
    resign_timestamp(repo, real_key(repo, "timestamp"), datetime.now(UTC) - timedelta(days=1))
    result = check(settings)
    assert "has expired" in result.error and result.newest is None
    # `release refresh` renews it, and the check passes again.
    ok(glimpser_cli("release", "refresh", "--repo", str(repo["dir"]), "--keys", str(repo["keys"])))
    assert check(settings).newest.version == NEXT


def test_an_older_version_from_a_compromised_mirror_is_refused(tmp_path, repo, artifacts):
    ok(publish(repo, artifacts[NEXT]))
    old_copy = tmp_path / "mirror"
    shutil.copytree(repo["dir"], old_copy)  # the repository as it was with NEXT newest
    ok(publish(repo, artifacts[LATER]))
    settings = settings_for(tmp_path, repo["url"], repo["root"])
    assert check(settings).newest.version == LATER

    mirror = start_file_server(old_copy)  # stale or compromised: validly signed, but older
    try:
        stale = settings_for(tmp_path, mirror.url, repo["root"])
        result = check(stale)
    finally:
        mirror.stop()
    assert "rollback" in result.error and result.newest is None
    # A fresh installation (no metadata seen yet) would accept that mirror: the protection is
    # the metadata this installation already verified.
    fresh = check(settings_for(tmp_path / "other", repo["url"], repo["root"]))
    assert fresh.newest.version == LATER


def test_an_unreachable_server_gives_a_clear_error(tmp_path, repo):
    port = free_port()
    settings = settings_for(tmp_path, f"http://mirror:hunter22@127.0.0.1:{port}", repo["root"])
    result = check(settings)
    assert result.error.startswith(f"Cannot reach the update server at http://127.0.0.1:{port} (")
    assert "hunter22" not in result.error
    assert result.newest is None


def test_publish_refuses_a_version_not_newer_than_the_newest(tmp_path, repo, artifacts):
    ok(publish(repo, artifacts[LATER]))
    for artifact in (artifacts[LATER], artifacts[NEXT]):
        again = publish(repo, artifact)
        assert again.returncode == 2 and "Traceback" not in again.stderr
        assert f"not newer than {LATER}" in again.stderr
    targets = Metadata.from_file(str(repo["dir"] / "metadata" / "targets.json"))
    assert list(targets.signed.targets) == [f"glimpser-{LATER}.tar.gz"]
    assert targets.signed.version == 2


def test_publish_needs_the_version_in_the_changelog(tmp_path, repo, artifacts):
    repo["changelog"].write_text("# Changelog\n\n## [Unreleased]\n- Work in progress.\n")
    refused = publish(repo, artifacts[NEXT])
    assert refused.returncode == 2 and f"has no section for {NEXT}" in refused.stderr
    wrong_keys = glimpser_cli(
        "release",
        "publish",
        str(artifacts[NEXT]),
        "--repo",
        str(repo["dir"]),
        "--keys",
        str(tmp_path / "nowhere"),
        "--changelog-from",
        str(tmp_path / "CHANGELOG.md"),
    )
    assert wrong_keys.returncode == 2 and "no targets key at" in wrong_keys.stderr
    assert "Traceback" not in wrong_keys.stderr
    assert not list((repo["dir"] / "targets").iterdir())


def test_changelog_section_reads_keep_a_changelog():
    assert changelog_section(CHANGELOG, LATER) == f"### Fixed\n- Something after {NEXT}."
    assert changelog_section(CHANGELOG, NEXT) == "### Added\n- Verified software updates."
    assert changelog_section(CHANGELOG, "9.9.9") == ""


def test_update_settings_are_checked_at_start(tmp_path):
    from glimpser.config import ConfigError

    base = {"GLIMPSER_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="GLIMPSER_UPDATE_URL='ftp://x' is not an http"):
        load_settings({**base, "GLIMPSER_UPDATE_URL": "ftp://x"})
    with pytest.raises(ConfigError, match="GLIMPSER_UPDATE_ROOT=.* is not a file"):
        load_settings({**base, "GLIMPSER_UPDATE_ROOT": str(tmp_path / "missing.json")})
    settings = load_settings({**base, "GLIMPSER_UPDATE_URL": "https://updates.example.org/"})
    assert settings.update_url == "https://updates.example.org" and settings.update_root is None


def test_without_a_trusted_root_the_check_says_so(tmp_path):
    from glimpser.updates.client import PACKAGED_ROOT

    if PACKAGED_ROOT.exists():
        pytest.skip("this checkout ships a trusted root")
    settings = settings_for(tmp_path, "https://updates.example.org", None)
    result = check(settings)
    assert result.error.startswith(f"No trusted root metadata at {PACKAGED_ROOT}")
    assert "GLIMPSER_UPDATE_ROOT" in result.error


def test_rotated_keys_are_followed_and_the_old_ones_refused(tmp_path, repo, artifacts):
    ok(publish(repo, artifacts[NEXT]))
    settings = settings_for(tmp_path, repo["url"], repo["root"])
    assert check(settings).newest.version == NEXT
    old_timestamp = real_key(repo, "timestamp")
    rotate = ("release", "rotate-key", "--repo", str(repo["dir"]), "--keys", str(repo["keys"]))
    for role in ("timestamp", "root"):
        out = ok(glimpser_cli(*rotate[:2], role, *rotate[2:]))
        assert f"new {role} key" in out
    assert (repo["dir"] / "metadata" / "3.root.json").is_file()
    assert len(list(repo["keys"].glob("*.retired-*.pem"))) == 2
    # The installation still trusts only 1.root.json as shipped, and follows the chain.
    assert check(settings).newest.version == NEXT
    ok(publish(repo, artifacts[LATER]))
    fresh = check(settings_for(tmp_path / "fresh", repo["url"], repo["root"]))
    assert fresh.error == "" and fresh.newest.version == LATER
    resign_timestamp(repo, old_timestamp, datetime.now(UTC) + timedelta(days=7))
    assert "not signed by the trusted keys" in check(settings).error


def test_the_current_version_publishes_with_its_changelog_from_the_archive(tmp_path, repo):
    """Without --changelog-from the archive's own CHANGELOG.md is read: this checkout's version
    has its section there."""
    out = ok(glimpser_cli("release", "build", "--out", str(tmp_path / "dist")))
    assert f"version {glimpser.__version__}" in out
    artifact = tmp_path / "dist" / f"glimpser-{glimpser.__version__}.tar.gz"
    ok(
        glimpser_cli(
            "release",
            "publish",
            str(artifact),
            "--repo",
            str(repo["dir"]),
            "--keys",
            str(repo["keys"]),
        )
    )
    result = check(settings_for(tmp_path, repo["url"], repo["root"]))
    assert result.newest.version == glimpser.__version__ and not result.update_available
    expected = changelog_section((ROOT / "CHANGELOG.md").read_text(), glimpser.__version__)
    assert expected and result.newest.changelog == expected
