"""A real TUF release repository for tests: release archives of this checkout at bumped
versions (`glimpser release build`), a repository from `glimpser release init` served from
loopback, and helpers to publish into it and to re-sign its timestamp."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata
from tuf.api.serialization.json import JSONSerializer

import glimpser
from glimpser.config import load_settings
from glimpser.updates import parse_version
from tests.conftest import ROOT
from tests.media_servers import start_file_server

_major, _minor, *_ = parse_version(glimpser.__version__)
NEXT = f"{_major}.{_minor + 1}.0"  # the bumped version these tests publish
LATER = f"{_major}.{_minor + 2}.0"

CHANGELOG = f"""# Changelog

## [Unreleased]

## [{LATER}] - 2026-12-10
### Fixed
- Something after {NEXT}.

## [{NEXT}] - 2026-12-03
### Added
- Verified software updates.

## [{glimpser.__version__}] - 2026-11-01
- The first release.

[{NEXT}]: https://example.org/compare
"""


def glimpser_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "glimpser.cli", *args],
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """Release archives of this checkout at two bumped versions, built by `glimpser release
    build`."""
    out = tmp_path_factory.mktemp("dist")
    built = {}
    for version in (NEXT, LATER):
        ok(glimpser_cli("release", "build", "--version", version, "--out", str(out)))
        built[version] = out / f"glimpser-{version}.tar.gz"
    return built


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, Path]:
    """A new repository from `glimpser release init`, served from loopback."""
    repo_dir, keys_dir = tmp_path / "repo", tmp_path / "keys"
    out = ok(glimpser_cli("release", "init", str(repo_dir), "--keys", str(keys_dir)))
    assert str(repo_dir / "metadata" / "1.root.json") in out
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(CHANGELOG)
    server = start_file_server(repo_dir)
    yield {
        "dir": repo_dir,
        "keys": keys_dir,
        "changelog": changelog,
        "url": server.url,
        "root": repo_dir / "metadata" / "1.root.json",
    }
    server.stop()


def publish(repo: dict[str, Path], artifact: Path, *extra: str) -> subprocess.CompletedProcess:
    return glimpser_cli(
        "release",
        "publish",
        str(artifact),
        "--repo",
        str(repo["dir"]),
        "--keys",
        str(repo["keys"]),
        "--changelog-from",
        str(repo["changelog"]),
        *extra,
    )


def settings_for(tmp_path: Path, url: str, root: Path | None):
    env = {"GLIMPSER_DATA_DIR": str(tmp_path / "install"), "GLIMPSER_UPDATE_URL": url}
    if root is not None:
        env["GLIMPSER_UPDATE_ROOT"] = str(root)
    return load_settings(env)


def resign_timestamp(repo: dict[str, Path], signer: CryptoSigner, expires: datetime) -> None:
    """A new timestamp.json (version + 1) with this expiry, signed by `signer` only."""
    path = repo["dir"] / "metadata" / "timestamp.json"
    md = Metadata.from_file(str(path))
    md.signed.version += 1
    md.signed.expires = expires
    md.signatures.clear()
    md.sign(signer)
    path.write_bytes(md.to_bytes(JSONSerializer(compact=False)))


def real_key(repo: dict[str, Path], role: str) -> CryptoSigner:
    return CryptoSigner(load_pem_private_key((repo["keys"] / f"{role}.pem").read_bytes(), None))
