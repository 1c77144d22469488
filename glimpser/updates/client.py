"""The checking side of updates: refresh the release repository's metadata through python-tuf's
client (signatures, expiry, rollback and freeze protection are TUF's), find the newest release,
and download a release verified against its signed hashes and length.

Trust starts from one root metadata file: glimpser/updates/root.json shipped with the release
(GLIMPSER_UPDATE_ROOT overrides it). The client keeps what it has verified in
<data dir>/updates/metadata, so a mirror cannot later serve older metadata.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Targets
from tuf.ngclient import Updater

import glimpser
from glimpser.config import Settings
from glimpser.updates import parse_version

log = logging.getLogger(__name__)

PACKAGED_ROOT = Path(__file__).with_name("root.json")
NOT_CONFIGURED = "Updates are not configured (set GLIMPSER_UPDATE_URL)"
_CONNECT_ERRORS = {"NewConnectionError", "NameResolutionError"}
# A release target is a plain file name (it becomes a file name in the download folder).
_TARGET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$")


class UpdateError(Exception):
    """An update check or download failed; the message is one clear sentence for the admin."""


@dataclass(frozen=True)
class Release:
    version: str
    changelog: str
    size: int  # bytes
    target_name: str


@dataclass(frozen=True)
class CheckResult:
    checked_at: datetime
    current: str
    newest: Release | None
    update_available: bool
    error: str = ""


def _metadata_dir(settings: Settings) -> Path:
    path = settings.data_dir / "updates" / "metadata"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _trusted_root(settings: Settings) -> bytes:
    path = settings.update_root or PACKAGED_ROOT
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UpdateError(
            f"No trusted root metadata at {path}: this build ships none "
            "(set GLIMPSER_UPDATE_ROOT to the root.json of your release repository)"
        ) from None
    except OSError as exc:
        raise UpdateError(f"Cannot read the trusted root metadata {path}: {exc.strerror}") from None


def _shown_url(url: str) -> str:
    """The URL without any user:password@ part, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _explain(exc: BaseException, url: str) -> str:
    """One sentence for a TUF or network failure."""
    url = _shown_url(url)
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return f"The update repository's metadata has expired, so it is refused ({exc})"
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        return (
            "The update repository offered older metadata than this installation already "
            f"trusts (a rollback, e.g. a stale or compromised mirror), so it is refused ({exc})"
        )
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return (
            "The update repository's metadata is not signed by the trusted keys, "
            f"so it is refused ({exc})"
        )
    mismatch = (tuf_errors.LengthOrHashMismatchError, tuf_errors.DownloadLengthMismatchError)
    if isinstance(exc, mismatch):
        return (
            "A downloaded file does not match the length or hashes its signed metadata "
            f"gives (tampered or corrupt), so it is refused ({exc})"
        )
    if isinstance(exc, tuf_errors.DownloadHTTPError):
        return f"The update server at {url} answered HTTP {exc.status_code}"
    if isinstance(exc, tuf_errors.SlowRetrievalError):
        # python-tuf reports any urllib3 connect failure this way (urllib3's NewConnectionError
        # is a ConnectTimeoutError): tell a refused or unresolvable address from a slow server.
        reason = getattr(exc.__cause__, "reason", None)
        if reason is not None and type(reason).__name__ in _CONNECT_ERRORS:
            return f"Cannot reach the update server at {url} ({reason})"
        return f"The update server at {url} is too slow to answer"
    if isinstance(exc, tuf_errors.RepositoryError):
        return f"The update repository's metadata is invalid, so it is refused ({exc})"
    if isinstance(exc, tuf_errors.DownloadError):
        return f"Cannot download from the update server at {url} ({exc})"
    # Network failures surface from urllib3 (connection refused, DNS, TLS).
    reason = getattr(exc, "reason", None) or exc
    return f"Cannot reach the update server at {url} ({reason})"


def _updater(settings: Settings, target_dir: Path | None = None) -> Updater:
    if not settings.update_url:
        raise UpdateError(NOT_CONFIGURED)
    root = _trusted_root(settings)
    base = settings.update_url.rstrip("/")
    try:
        return Updater(
            metadata_dir=str(_metadata_dir(settings)),
            metadata_base_url=f"{base}/metadata/",
            target_base_url=f"{base}/targets/",
            target_dir=str(target_dir) if target_dir else None,
            bootstrap=root,
        )
    except (tuf_errors.RepositoryError, ValueError) as exc:
        raise UpdateError(f"The trusted root metadata is not valid ({exc})") from None
    except OSError as exc:
        raise UpdateError(f"Cannot write the update metadata folder: {exc}") from None


def _refresh(settings: Settings, updater: Updater) -> None:
    try:
        updater.refresh()
    except Exception as exc:  # every TUF and network failure becomes one sentence
        message = _explain(exc, settings.update_url)
        log.warning("update check failed: %s", message)
        raise UpdateError(message) from None


def _releases(settings: Settings) -> list[Release]:
    """The releases in the targets metadata the Updater has just verified and stored."""
    path = _metadata_dir(settings) / "targets.json"
    try:
        targets: Metadata[Targets] = Metadata.from_file(str(path))
    except (OSError, ValueError) as exc:
        raise UpdateError(f"Cannot read the verified targets metadata {path}: {exc}") from None
    found = []
    for name, target in targets.signed.targets.items():
        if not _TARGET_NAME_RE.match(name):
            continue
        custom = target.custom if isinstance(target.custom, dict) else {}
        version = custom.get("version")
        try:
            key = parse_version(version if isinstance(version, str) else "")
        except ValueError:
            continue
        changelog = custom.get("changelog")
        found.append(
            (
                key,
                Release(
                    version=version,  # type: ignore[arg-type]
                    changelog=changelog if isinstance(changelog, str) else "",
                    size=target.length,
                    target_name=name,
                ),
            )
        )
    return [release for _, release in sorted(found, key=lambda pair: pair[0])]


def check(settings: Settings) -> CheckResult:
    """Refresh the metadata and report the newest release; failures come back in `error`."""
    now = datetime.now(UTC)
    current = glimpser.__version__
    try:
        updater = _updater(settings)
        _refresh(settings, updater)
        releases = _releases(settings)
    except UpdateError as exc:
        return CheckResult(now, current, None, False, str(exc))
    newest = releases[-1] if releases else None
    available = newest is not None and parse_version(newest.version) > parse_version(current)
    return CheckResult(now, current, newest, available)


def download(settings: Settings, release: Release, dest_dir: Path) -> Path:
    """Download a release through TUF (signed length and hashes checked) into dest_dir; raise
    UpdateError when anything does not verify. Returns the file's path."""
    if not _TARGET_NAME_RE.match(release.target_name):
        raise UpdateError(f"{release.target_name!r} is not a release file name")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest_dir))
    except OSError as exc:
        raise UpdateError(f"Cannot write to {dest_dir}: {exc.strerror}") from None
    try:
        updater = _updater(settings, partial)
        _refresh(settings, updater)
        try:
            info = updater.get_targetinfo(release.target_name)
            if info is None:
                raise UpdateError(
                    f"The update repository does not offer {release.target_name} (any more)"
                )
            fetched = Path(updater.download_target(info, str(partial / release.target_name)))
        except UpdateError:
            raise
        except Exception as exc:
            message = _explain(exc, settings.update_url)
            log.warning("update download failed: %s", message)
            raise UpdateError(message) from None
        final = dest_dir / release.target_name
        fetched.replace(final)
        return final
    finally:
        shutil.rmtree(partial, ignore_errors=True)
