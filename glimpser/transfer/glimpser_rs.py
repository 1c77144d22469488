"""The glimpser-rs mapping: a glimpser-rs stream entry renamed into StreamSpec's keys."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from glimpser.sources.schemas import (
    CONFIG_BY_KIND,
    StreamSpec,
)
from glimpser.transfer.report import (
    EntryReport,
)

# glimpser-rs: its kinds, its key names, and what has no meaning here.
RS_KINDS = {
    "website": "website",
    "yt": "youtube",
    "youtube": "youtube",
    "rtsp": "rtsp",
    "ffmpeg": "video",
    "file": "video",
}
_RS_RENAMES = {
    "width": "viewport_width",
    "height": "viewport_height",
    "auth_username": "username",
    "basic_auth_username": "username",
    "auth_password": "password",
    "basic_auth_password": "password",
}
_RS_IGNORED_CONFIG = frozenset({"duration", "headless", "stealth", "is_live"})
_RS_ENTRY_KEYS = frozenset({"name", "description", "config"})
_RS_QUALITIES = {"best": "best", "worst": "worst"}
_RS_URL_KEYS = ("source", "source_url", "url")  # the first one present is the address
_RS_PATH_KEYS = ("path", "file_path", "source")


def looks_like_glimpser_rs(data: dict[str, Any]) -> bool:
    streams = data.get("streams")
    return isinstance(streams, list) and any(
        isinstance(e, dict)
        and isinstance(e.get("config"), dict)
        and str(e["config"].get("kind")) in RS_KINDS
        for e in streams
    )


def _is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\", "~")) or (len(path) > 1 and path[1] == ":")


def _set_path(config: dict[str, Any], path: Any, errors: dict[str, str]) -> None:
    if isinstance(path, str) and _is_absolute(path.strip()):
        errors["config.path"] = (
            f"absolute path {path.strip()[:300]!r}: give a path relative to the media "
            "directory (GLIMPSER_MEDIA_DIR), then import again"
        )
    else:
        config["path"] = path


def _scheme(url: Any) -> str:
    if not isinstance(url, str) or "://" not in url:
        return ""
    try:
        return urlsplit(url).scheme.lower()
    except ValueError:
        return ""


def _rs_quality(value: Any) -> Any:
    """glimpser-rs formats ("720p", "best") as a quality; anything else is left to validation."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if text in _RS_QUALITIES:
        return _RS_QUALITIES[text]
    digits = text.removesuffix("p")
    if digits.isascii() and digits.isdigit():
        return digits
    head = text.split("p", 1)[0]  # "720p60"
    return head if head.isascii() and head.isdigit() else value


def from_glimpser_rs(raw: dict[str, Any], entry: EntryReport) -> dict[str, Any] | None:
    """Rename a glimpser-rs entry into StreamSpec's keys; None when it cannot be mapped."""
    spec: dict[str, Any] = {"name": raw.get("name")}
    if raw.get("description") is not None:
        spec["description"] = raw["description"]
    for key, value in raw.items():
        if key in _RS_ENTRY_KEYS:
            continue
        if key in StreamSpec.model_fields and key != "config":
            spec[key] = value
        else:
            entry.ignored.append(key)

    source = raw.get("config")
    if not isinstance(source, dict):
        entry.errors["config"] = "missing, or not a JSON object"
        return None
    rs_kind = source.get("kind")
    if not isinstance(rs_kind, str) or rs_kind not in RS_KINDS:
        entry.errors["config.kind"] = (
            f"unknown kind {str(rs_kind)[:50]!r} (glimpser-rs kinds: {', '.join(RS_KINDS)})"
            if rs_kind is not None
            else "missing"
        )
        return None
    kind = RS_KINDS[rs_kind]
    rest = {k: v for k, v in source.items() if k != "kind" and v is not None}
    config: dict[str, Any] = {}

    # snapshot interval: the newer, explicit name wins; the other is reported as ignored
    for key in ("snapshot_interval_seconds", "snapshot_interval"):
        if key in rest:
            value = rest.pop(key)
            if "interval" in spec:
                entry.ignored.append(key)
            elif isinstance(value, int | float) and not isinstance(value, bool) and value < 1:
                spec["interval"] = 1
            else:
                spec["interval"] = value

    if rs_kind == "file":
        path = next((rest.pop(k) for k in _RS_PATH_KEYS if k in rest), "")
        _set_path(config, path, entry.errors)
    else:
        url = next((rest.pop(k) for k in _RS_URL_KEYS if k in rest), "")
        scheme = _scheme(url)
        if rs_kind == "ffmpeg" and scheme in ("rtsp", "rtsps"):
            kind = "rtsp"
            entry.notes.append("the ffmpeg source is an RTSP camera: imported as kind rtsp")
            config["url"] = url
        elif rs_kind == "ffmpeg" and isinstance(url, str) and url and not scheme:
            _set_path(config, url, entry.errors)  # ffmpeg reading a local file
        else:
            config["url"] = url
    if kind == "youtube" and "format" in rest:
        config["quality"] = _rs_quality(rest.pop("format"))

    fields = CONFIG_BY_KIND[kind].model_fields
    for key, value in rest.items():
        target = _RS_RENAMES.get(key, key)
        if key in _RS_IGNORED_CONFIG or target not in fields or target in config:
            entry.ignored.append(key)
        else:
            config[target] = value
    spec["config"] = {"kind": kind, **config}
    return spec
