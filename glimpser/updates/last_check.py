"""The last update check, kept in one Setting row so Admin → Updates and the admin home show it
in every process: when it ran, its error (if any), and the newest release the last successful
check found (a failed check keeps that one, so an unreachable server does not hide a release
already seen)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import glimpser
from glimpser import times
from glimpser.config import Settings
from glimpser.db import write_transaction
from glimpser.models import Setting
from glimpser.updates import parse_version
from glimpser.updates.client import PACKAGED_ROOT, CheckResult, Release, check

SETTING_KEY = "updates.last_check"
# How often the scheduled check runs (the scheduler asks every 15 minutes whether one is due).
CHECK_EVERY = timedelta(hours=6)
# A changelog longer than this is cut when stored (the page shows the stored text).
MAX_CHANGELOG = 20_000


@dataclass(frozen=True)
class LastCheck:
    checked_at: datetime
    error: str
    newest: Release | None  # from the last check that succeeded
    newest_checked_at: datetime | None

    @property
    def update_available(self) -> bool:
        """Whether the newest release found is newer than the version running now."""
        if self.newest is None:
            return False
        try:
            return parse_version(self.newest.version) > parse_version(glimpser.__version__)
        except ValueError:
            return False


def missing_settings(settings: Settings) -> list[tuple[str, str]]:
    """The (variable, what it is) pairs to set before updates can be checked: [] when they are
    configured."""
    missing = []
    if not settings.update_url:
        missing.append(
            (
                "GLIMPSER_UPDATE_URL",
                "the release repository's base URL (the folder that holds metadata/ and targets/)",
            )
        )
    if settings.update_root is None and not PACKAGED_ROOT.exists():
        missing.append(
            (
                "GLIMPSER_UPDATE_ROOT",
                "the path of the repository's trusted root metadata (its metadata/1.root.json); "
                f"this build ships none at {PACKAGED_ROOT}",
            )
        )
    return missing


def _release_json(release: Release) -> dict:
    return {
        "version": release.version,
        "changelog": release.changelog[:MAX_CHANGELOG],
        "size": release.size,
        "target_name": release.target_name,
    }


def _release(value: object) -> Release | None:
    if not isinstance(value, dict):
        return None
    try:
        return Release(
            version=str(value["version"]),
            changelog=str(value.get("changelog", "")),
            size=int(value["size"]),
            target_name=str(value["target_name"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _time(value: object) -> datetime | None:
    try:
        return times.parse(value) if isinstance(value, str) else None
    except ValueError:
        return None


def load() -> LastCheck | None:
    """The stored last check; None when no check has run (or the row is unreadable)."""
    row = Setting.get_or_none(Setting.key == SETTING_KEY)
    if row is None or not isinstance(row.value, dict):
        return None
    checked_at = _time(row.value.get("checked_at"))
    if checked_at is None:
        return None
    return LastCheck(
        checked_at=checked_at,
        error=str(row.value.get("error") or ""),
        newest=_release(row.value.get("newest")),
        newest_checked_at=_time(row.value.get("newest_checked_at")),
    )


def store(result: CheckResult) -> LastCheck:
    """Keep a check's result (a failed one keeps the release the last good check found)."""
    with write_transaction():
        previous = load()
        if result.error:
            newest = previous.newest if previous else None
            newest_at = previous.newest_checked_at if previous else None
        else:
            newest, newest_at = result.newest, result.checked_at
        value = {
            "checked_at": times.isoformat(result.checked_at),
            "error": result.error,
            "newest": _release_json(newest) if newest else None,
            "newest_checked_at": times.isoformat(newest_at) if newest_at else None,
        }
        Setting.insert(key=SETTING_KEY, value=value).on_conflict(
            conflict_target=[Setting.key],
            update={Setting.value: value, Setting.updated_at: times.utcnow()},
        ).execute()
    stored = load()
    assert stored is not None
    return stored


def check_and_store(settings: Settings) -> LastCheck:
    """Refresh the release metadata through TUF (glimpser.updates.client.check) and keep the
    result."""
    return store(check(settings))


def due(settings: Settings, now: datetime | None = None) -> bool:
    """Whether the scheduled check should run: configured, and none within CHECK_EVERY."""
    if missing_settings(settings):
        return False
    last = load()
    now = now or times.utcnow()
    return last is None or now - last.checked_at >= CHECK_EVERY
