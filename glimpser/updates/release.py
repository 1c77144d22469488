"""The publishing side of updates: a TUF repository (metadata/ and targets/ that any static web
server can serve), release archives of a git checkout, and publishing them as signed targets.

The repository uses consistent snapshots: every targets and snapshot version is also kept as
N.targets.json / N.snapshot.json, and each target as targets/<sha256>.<name>, so a client never
sees a half-published state; timestamp.json is written last.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from glimpser.updates import parse_version

ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
ROOT_EXPIRES_DAYS = 365
TARGETS_EXPIRES_DAYS = 365
DEFAULT_EXPIRES_DAYS = 30  # snapshot and timestamp: `glimpser release refresh` renews them
ARTIFACT_RE = re.compile(r"^glimpser-(?P<version>[0-9.]+)\.tar\.gz$")


class ReleaseError(Exception):
    """A release operation cannot be done; the message is meant for the release maker."""


def _expiry(days: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_metadata(md: Metadata, path: Path) -> None:
    _write_atomic(path, md.to_bytes(JSONSerializer(compact=False)))


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


# --- init -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitResult:
    root_path: Path  # metadata/1.root.json: the file installations must trust
    key_paths: dict[str, Path]


def init_repository(repo_dir: Path, keys_dir: Path) -> InitResult:
    """A new repository in repo_dir with one new ed25519 key per role, the private keys written
    to keys_dir (mode 0600; never inside the served repo_dir)."""
    repo_dir, keys_dir = repo_dir.resolve(), keys_dir.resolve()
    if _inside(keys_dir, repo_dir):
        raise ReleaseError(
            f"the keys folder {keys_dir} is inside the repository folder {repo_dir}, which is "
            "served to everyone: choose a folder outside it"
        )
    metadata_dir, targets_dir = repo_dir / "metadata", repo_dir / "targets"
    if (metadata_dir / "root.json").exists():
        raise ReleaseError(f"{repo_dir} already holds a repository (metadata/root.json)")
    key_paths = {role: keys_dir / f"{role}.pem" for role in ROLES}
    taken = [str(p) for p in key_paths.values() if p.exists()]
    if taken:
        raise ReleaseError(f"keys already exist, not overwriting them: {', '.join(taken)}")

    signers = {role: CryptoSigner.generate_ed25519() for role in ROLES}
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(keys_dir, 0o700)
    for role, signer in signers.items():
        fd = os.open(key_paths[role], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(signer.private_bytes)

    root = Root(expires=_expiry(ROOT_EXPIRES_DAYS), consistent_snapshot=True)
    for role, signer in signers.items():
        root.add_key(signer.public_key, role)
    roles: dict[str, Metadata] = {
        Root.type: Metadata(root),
        Targets.type: Metadata(Targets(expires=_expiry(TARGETS_EXPIRES_DAYS))),
        Snapshot.type: Metadata(Snapshot(expires=_expiry(DEFAULT_EXPIRES_DAYS))),
        Timestamp.type: Metadata(Timestamp(expires=_expiry(DEFAULT_EXPIRES_DAYS))),
    }
    metadata_dir.mkdir(parents=True, exist_ok=True)
    targets_dir.mkdir(parents=True, exist_ok=True)
    for role, md in roles.items():
        md.sign(signers[role])
    _write_metadata(roles[Root.type], metadata_dir / "1.root.json")
    _write_metadata(roles[Root.type], metadata_dir / "root.json")
    for role in (Targets.type, Snapshot.type):
        _write_metadata(roles[role], metadata_dir / f"1.{role}.json")
        _write_metadata(roles[role], metadata_dir / f"{role}.json")
    _write_metadata(roles[Timestamp.type], metadata_dir / "timestamp.json")
    return InitResult(root_path=metadata_dir / "1.root.json", key_paths=key_paths)


# --- loading a repository and its keys --------------------------------------------------------


class _Repository:
    def __init__(self, repo_dir: Path, keys_dir: Path) -> None:
        self.metadata_dir = repo_dir / "metadata"
        self.targets_dir = repo_dir / "targets"
        if not (self.metadata_dir / "root.json").is_file():
            raise ReleaseError(
                f"{repo_dir} is not a release repository (no metadata/root.json; "
                "make one with `glimpser release init`)"
            )
        try:
            self.root: Metadata[Root] = Metadata.from_file(str(self.metadata_dir / "root.json"))
            self.targets: Metadata[Targets] = Metadata.from_file(
                str(self.metadata_dir / "targets.json")
            )
            self.snapshot: Metadata[Snapshot] = Metadata.from_file(
                str(self.metadata_dir / "snapshot.json")
            )
            self.timestamp: Metadata[Timestamp] = Metadata.from_file(
                str(self.metadata_dir / "timestamp.json")
            )
        except (OSError, ValueError) as exc:
            raise ReleaseError(f"cannot read the repository metadata: {exc}") from None
        self.keys_dir = keys_dir

    def signer(self, role: str) -> CryptoSigner:
        path = self.keys_dir / f"{role}.pem"
        try:
            private_key = load_pem_private_key(path.read_bytes(), None)
            signer = CryptoSigner(private_key)  # type: ignore[arg-type]
        except FileNotFoundError:
            raise ReleaseError(f"no {role} key at {path}") from None
        except (OSError, ValueError, TypeError) as exc:
            raise ReleaseError(f"cannot read the {role} key {path}: {exc}") from None
        if signer.public_key.keyid not in self.root.signed.roles[role].keyids:
            raise ReleaseError(f"{path} is not this repository's {role} key")
        return signer

    def write_targets_snapshot_timestamp(self, expires_days: int) -> None:
        """Sign and write new versions of targets, snapshot and timestamp (in that order)."""
        signers = {r: self.signer(r) for r in (Targets.type, Snapshot.type, Timestamp.type)}
        targets = self.targets.signed
        targets.version += 1
        targets.expires = _expiry(max(TARGETS_EXPIRES_DAYS, expires_days))
        self.targets.signatures.clear()
        self.targets.sign(signers[Targets.type])
        _write_metadata(self.targets, self.metadata_dir / f"{targets.version}.targets.json")
        _write_metadata(self.targets, self.metadata_dir / "targets.json")
        self.snapshot.signed.meta["targets.json"] = MetaFile(version=targets.version)
        self.write_snapshot_timestamp(expires_days, signers)

    def write_snapshot_timestamp(
        self, expires_days: int, signers: dict[str, CryptoSigner] | None = None
    ) -> None:
        signers = signers or {r: self.signer(r) for r in (Snapshot.type, Timestamp.type)}
        snapshot = self.snapshot.signed
        snapshot.version += 1
        snapshot.expires = _expiry(expires_days)
        self.snapshot.signatures.clear()
        self.snapshot.sign(signers[Snapshot.type])
        _write_metadata(self.snapshot, self.metadata_dir / f"{snapshot.version}.snapshot.json")
        _write_metadata(self.snapshot, self.metadata_dir / "snapshot.json")
        timestamp = self.timestamp.signed
        timestamp.snapshot_meta = MetaFile(version=snapshot.version)
        timestamp.version += 1
        timestamp.expires = _expiry(expires_days)
        self.timestamp.signatures.clear()
        self.timestamp.sign(signers[Timestamp.type])
        _write_metadata(self.timestamp, self.metadata_dir / "timestamp.json")


def published_versions(repo_dir: Path) -> list[str]:
    """The versions published in a repository, oldest first (from its targets metadata)."""
    targets: Metadata[Targets] = Metadata.from_file(str(repo_dir / "metadata" / "targets.json"))
    found = []
    for target in targets.signed.targets.values():
        version = (target.custom or {}).get("version") if isinstance(target.custom, dict) else None
        if isinstance(version, str):
            try:
                found.append((parse_version(version), version))
            except ValueError:
                continue
    return [v for _, v in sorted(found)]


# --- changelog --------------------------------------------------------------------------------

_HEADING_RE = re.compile(r"^## \[?(?P<name>[^\]\s]+)\]?(?P<rest>.*)$")


def changelog_section(text: str, version: str) -> str:
    """The body of the `## [version]` section of a Keep a Changelog file ("" when absent)."""
    lines, taking, body = text.splitlines(), False, []
    for line in lines:
        match = _HEADING_RE.match(line)
        if match:
            if taking:
                break
            taking = match["name"] == version
            continue
        if taking:
            if line.startswith("[") and "]: " in line:  # link reference definitions at the end
                continue
            body.append(line)
    return "\n".join(body).strip()


def _archive_member(artifact: Path, version: str, name: str) -> bytes | None:
    try:
        with tarfile.open(artifact, "r:gz") as archive:
            member = archive.extractfile(f"glimpser-{version}/{name}")
            return member.read() if member else None
    except KeyError:
        return None
    except (OSError, tarfile.TarError) as exc:
        raise ReleaseError(f"{artifact} is not a release archive: {exc}") from None


# --- publish and refresh ----------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    version: str
    target_name: str
    length: int
    sha256: str
    targets_version: int
    timestamp_version: int


def publish(
    artifact: Path,
    repo_dir: Path,
    keys_dir: Path,
    *,
    changelog_from: Path | None = None,
    expires_days: int = DEFAULT_EXPIRES_DAYS,
) -> Published:
    """Add a release archive (glimpser-<version>.tar.gz) to the repository as a signed target
    with custom metadata {version, changelog}; refuse a version not newer than the newest one
    published."""
    match = ARTIFACT_RE.match(artifact.name)
    if not match:
        raise ReleaseError(
            f"{artifact.name} is not named like a release archive (glimpser-<version>.tar.gz)"
        )
    version = match["version"]
    try:
        parse_version(version)
    except ValueError as exc:
        raise ReleaseError(str(exc)) from None
    if not artifact.is_file():
        raise ReleaseError(f"no such file: {artifact}")
    repo = _Repository(repo_dir, keys_dir)
    for role in (Targets.type, Snapshot.type, Timestamp.type):
        repo.signer(role)  # every key needed is here and right, before anything is written
    newest = published_versions(repo_dir)[-1:] or []
    if newest and parse_version(version) <= parse_version(newest[0]):
        raise ReleaseError(
            f"{version} is not newer than {newest[0]}, the newest version published: "
            "a release must have a higher version"
        )
    pyproject = _archive_member(artifact, version, "pyproject.toml")
    if pyproject is None:
        raise ReleaseError(f"{artifact.name} has no glimpser-{version}/pyproject.toml")
    inside = tomllib.loads(pyproject.decode()).get("project", {}).get("version")
    if inside != version:
        raise ReleaseError(f"{artifact.name} says it is version {inside}, not {version}")
    if changelog_from is not None:
        try:
            changelog_text = changelog_from.read_text()
        except OSError as exc:
            raise ReleaseError(f"cannot read {changelog_from}: {exc.strerror}") from None
        source = str(changelog_from)
    else:
        raw = _archive_member(artifact, version, "CHANGELOG.md")
        changelog_text, source = (raw or b"").decode(), f"{artifact.name}:CHANGELOG.md"
    changelog = changelog_section(changelog_text, version)
    if not changelog:
        raise ReleaseError(f"{source} has no section for {version} (## [{version}] - YYYY-MM-DD)")

    target_name = artifact.name
    target = TargetFile.from_file(target_name, str(artifact), ["sha256"])
    target.unrecognized_fields["custom"] = {"version": version, "changelog": changelog}
    sha256 = target.hashes["sha256"]
    repo.targets_dir.mkdir(parents=True, exist_ok=True)
    stored = repo.targets_dir / f"{sha256}.{target_name}"
    tmp = stored.with_name(f".{stored.name}.tmp")
    shutil.copyfile(artifact, tmp)
    os.replace(tmp, stored)
    repo.targets.signed.targets[target_name] = target
    repo.write_targets_snapshot_timestamp(expires_days)
    return Published(
        version=version,
        target_name=target_name,
        length=target.length,
        sha256=sha256,
        targets_version=repo.targets.signed.version,
        timestamp_version=repo.timestamp.signed.version,
    )


def refresh(repo_dir: Path, keys_dir: Path, *, expires_days: int = DEFAULT_EXPIRES_DAYS) -> int:
    """Re-sign snapshot and timestamp with a later expiry (run it regularly: installations refuse
    expired metadata). Returns the new timestamp version."""
    repo = _Repository(repo_dir, keys_dir)
    repo.write_snapshot_timestamp(expires_days)
    return repo.timestamp.signed.version


@dataclass(frozen=True)
class Rotated:
    role: str
    root_version: int
    root_path: Path
    retired_key: Path


def rotate_key(
    repo_dir: Path, keys_dir: Path, role: str, *, expires_days: int = DEFAULT_EXPIRES_DAYS
) -> Rotated:
    """Replace a role's key with a new one: a new root version (N.root.json) that names the new
    key, signed by the current root key (and, for the root role, by the new one too), so that
    installations trusting an older root follow the chain; then targets, snapshot and timestamp
    signed anew. The old private key is kept as <role>.retired-<keyid>.pem."""
    if role not in ROLES:
        raise ReleaseError(f"{role!r} is not a role (one of {', '.join(ROLES)})")
    repo = _Repository(repo_dir, keys_dir)
    old_root_signer = repo.signer(Root.type)
    old_signer = repo.signer(role)
    new_signer = CryptoSigner.generate_ed25519()
    key_path = keys_dir / f"{role}.pem"
    retired = keys_dir / f"{role}.retired-{old_signer.public_key.keyid[:16]}.pem"
    pending = keys_dir / f".{role}.pem.new"
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(new_signer.private_bytes)

    root = repo.root.signed
    for keyid in list(root.roles[role].keyids):
        root.revoke_key(keyid, role)
    root.add_key(new_signer.public_key, role)
    root.version += 1
    root.expires = _expiry(ROOT_EXPIRES_DAYS)
    repo.root.signatures.clear()
    repo.root.sign(old_root_signer, append=True)
    if role == Root.type:
        repo.root.sign(new_signer, append=True)
    # The key file first (the old one kept), then the metadata naming the new key.
    os.replace(key_path, retired)
    os.replace(pending, key_path)
    root_path = repo.metadata_dir / f"{root.version}.root.json"
    _write_metadata(repo.root, root_path)
    _write_metadata(repo.root, repo.metadata_dir / "root.json")
    repo.write_targets_snapshot_timestamp(expires_days)
    return Rotated(role=role, root_version=root.version, root_path=root_path, retired_key=retired)


# --- build ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    path: Path
    version: str
    commit: str
    sha256: str
    dirty: bool  # the working tree had uncommitted changes to tracked files (not in the archive)


def _git(checkout: Path, *args: str) -> bytes:
    try:
        return subprocess.run(
            ["git", "-C", str(checkout), *args], check=True, capture_output=True
        ).stdout
    except FileNotFoundError:
        raise ReleaseError("git is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise ReleaseError(f"git {args[0]} failed: {exc.stderr.decode().strip()}") from None


def _set_version(name: str, data: bytes, version: str) -> bytes:
    text = data.decode()
    if name == "pyproject.toml":
        pattern = r'(?m)^version = "[^"]*"$'
        replacement = f'version = "{version}"'
    else:
        pattern = r'(?m)^__version__ = "[^"]*"$'
        replacement = f'__version__ = "{version}"'
    new, count = re.subn(pattern, replacement, text, count=1)
    if count != 1:
        raise ReleaseError(f"cannot find the version line in {name}")
    return new.encode()


def build_release(checkout: Path, out_dir: Path, version: str | None = None) -> Build:
    """glimpser-<version>.tar.gz: `git archive` of HEAD (requirements.lock included), with the
    version written into pyproject.toml and glimpser/__init__.py."""
    top = Path(_git(checkout, "rev-parse", "--show-toplevel").decode().strip())
    commit = _git(top, "rev-parse", "HEAD").decode().strip()
    commit_time = int(_git(top, "show", "-s", "--format=%ct", "HEAD").decode().strip())
    head_pyproject = tomllib.loads(_git(top, "show", "HEAD:pyproject.toml").decode())
    version = version or head_pyproject["project"]["version"]
    try:
        parse_version(version)
    except ValueError as exc:
        raise ReleaseError(str(exc)) from None
    dirty = bool(_git(top, "status", "--porcelain", "--untracked-files=no").strip())
    prefix = f"glimpser-{version}/"
    raw = _git(top, "archive", "--format=tar", f"--prefix={prefix}", "HEAD")
    rewrite = {f"{prefix}pyproject.toml", f"{prefix}glimpser/__init__.py"}
    seen = set()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"glimpser-{version}.tar.gz"
    tmp = path.with_name(f".{path.name}.tmp")
    with (
        tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as source,
        open(tmp, "wb") as raw_out,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw_out, mtime=commit_time) as gz,
        tarfile.open(fileobj=gz, mode="w:", format=tarfile.PAX_FORMAT) as dest,
    ):
        for member in source:
            seen.add(member.name)
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name in rewrite and data is not None:
                data = _set_version(member.name.removeprefix(prefix), data, version)
                member.size = len(data)
            dest.addfile(member, io.BytesIO(data) if data is not None else None)
    missing = [n for n in ("requirements.lock", "pyproject.toml") if prefix + n not in seen]
    if missing:
        tmp.unlink()
        raise ReleaseError(f"HEAD has no {', '.join(missing)}: commit it before building")
    os.replace(tmp, path)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return Build(path=path, version=version, commit=commit, sha256=sha256, dirty=dirty)
