"""Import and export of streams as JSON: Glimpser's own format and glimpser-rs exports.

Every imported entry is validated by StreamSpec, the schema the stream form and the API use;
the glimpser-rs reader only renames keys into that schema. All entries are validated first,
then the valid ones are written in one transaction, so an import never leaves half a result.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import peewee
from pydantic import ValidationError

from glimpser import times
from glimpser.db import write_transaction
from glimpser.models import AuditLog, Stream, User
from glimpser.sources.schemas import (
    CONFIG_BY_KIND,
    KINDS,
    STREAM_FIELDS,
    StreamSpec,
    dump_config,
    error_messages,
    parse_config,
)
from glimpser.stream_store import create_stream, update_stream

log = logging.getLogger(__name__)

FORMAT = "glimpser"
VERSION = 1
MAX_IMPORT_BYTES = 5 * 1024 * 1024
MODES: tuple[str, ...] = ("skip", "overwrite", "rename")

_TOP_LEVEL_KEYS = frozenset({"format", "version", "exported_at", "streams"})
# Parts of a Glimpser export this version does not import yet; named in the report.
_LATER_SECTIONS = ("rules", "channels")

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

OUTCOMES = ("imported", "overwritten", "renamed", "skipped", "error", "rolled back")
_WRITTEN = frozenset({"imported", "overwritten", "renamed"})
_COUNT_LABELS = {"error": "invalid"}


class TransferError(ValueError):
    """The whole file is refused; the message is shown to the person (status for the web)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# --- export -----------------------------------------------------------------------------------


def stream_entry(stream: Stream, *, include_secrets: bool) -> dict[str, Any]:
    """One stream as an export entry; secrets only when asked for."""
    entry: dict[str, Any] = {name: getattr(stream, name) for name in STREAM_FIELDS}
    entry["groups"] = list(stream.groups or [])
    try:
        config = dump_config(parse_config(stream.config), include_secrets=include_secrets)
    except ValidationError:
        # A stored config the current schema rejects still travels, but never its secrets
        # unless asked: the import will then report what needs fixing.
        config = dict(stream.config or {})
        if not include_secrets:
            schema = CONFIG_BY_KIND.get(stream.kind)
            secret_fields = schema.SECRET_FIELDS if schema else frozenset({"password"})
            for name in secret_fields:
                config.pop(name, None)
    entry["config"] = config
    return entry


def export_streams(
    *,
    include_secrets: bool = False,
    actor: User | None = None,
    ip: str = "",
    via: str = "cli",
) -> dict[str, Any]:
    """All streams as a Glimpser export document; a secret-bearing export is audited."""
    streams = list(Stream.select().order_by(Stream.name))
    document = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": times.isoformat(times.utcnow()),
        "streams": [stream_entry(s, include_secrets=include_secrets) for s in streams],
    }
    if include_secrets:
        AuditLog.create(
            user=actor,
            action="stream.export",
            target="streams",
            detail={"include_secrets": True, "count": len(streams), "via": via},
            ip=ip,
        )
    return document


def dumps_document(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --- reading a file ---------------------------------------------------------------------------


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def load_document(raw: bytes) -> dict[str, Any]:
    """Parse an uploaded or given file: size limit, JSON, and an object at the top."""
    if len(raw) > MAX_IMPORT_BYTES:
        raise TransferError(
            f"The file is larger than {_megabytes(MAX_IMPORT_BYTES)}, the import limit.", 413
        )
    if not raw.strip():
        raise TransferError("The file is empty.")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise TransferError("The file is not text (JSON must be UTF-8).") from None
    except json.JSONDecodeError as exc:
        raise TransferError(
            f"The file is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except RecursionError:
        raise TransferError("The file is not valid JSON: it is nested too deeply.") from None
    if not isinstance(data, dict):
        raise TransferError(
            'The file must hold a JSON object with a "streams" list '
            "(a Glimpser or glimpser-rs export)."
        )
    return data


def _looks_like_glimpser_rs(data: dict[str, Any]) -> bool:
    streams = data.get("streams")
    return isinstance(streams, list) and any(
        isinstance(e, dict)
        and isinstance(e.get("config"), dict)
        and str(e["config"].get("kind")) in RS_KINDS
        for e in streams
    )


def detect_format(data: dict[str, Any]) -> str:
    """'glimpser' or 'glimpser-rs' (which has no "format" key); anything else is refused."""
    if "format" not in data:
        return "glimpser-rs"
    if data["format"] != FORMAT:
        if _looks_like_glimpser_rs(data):
            return "glimpser-rs"
        raise TransferError(f"Unknown export format {str(data['format'])[:50]!r}.")
    version = data.get("version", VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TransferError(f"Unknown export version {str(version)[:20]!r}.")
    if version > VERSION:
        raise TransferError(
            f"This file was made by a newer Glimpser (format version {version}); "
            f"this one reads version {VERSION}."
        )
    return FORMAT


def _entries(data: dict[str, Any]) -> list[Any]:
    streams = data.get("streams")
    if not isinstance(streams, list):
        raise TransferError(
            'The file has no "streams" list, so it is not a Glimpser or glimpser-rs export.'
        )
    return streams


def _document_notes(data: dict[str, Any], fmt: str) -> list[str]:
    notes = []
    if fmt == FORMAT:
        for section in _LATER_SECTIONS:
            if section in data:
                count = len(data[section]) if isinstance(data[section], list) else 0
                notes.append(f"{section} are not imported yet ({count} ignored).")
        unknown = sorted(set(data) - _TOP_LEVEL_KEYS - set(_LATER_SECTIONS))
    else:
        unknown = sorted(set(data) - {"streams"})
    if unknown:
        notes.append(f"Ignored top-level keys: {', '.join(k[:50] for k in unknown)}.")
    return notes


# --- one entry --------------------------------------------------------------------------------


@dataclass
class EntryReport:
    """What happened to one entry of the file, in file order."""

    index: int
    name: str
    outcome: str = ""
    new_name: str = ""
    reason: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def written(self) -> bool:
        return self.outcome in _WRITTEN

    def describe(self) -> str:
        """One line for the CLI."""
        parts = [self.outcome]
        if self.new_name:
            parts.append(f"as {self.new_name!r}")
        if self.reason:
            parts.append(f"({self.reason})")
        text = " ".join(parts)
        if self.errors:
            text += ": " + "; ".join(f"{k or 'entry'}: {v}" for k, v in self.errors.items())
        extra = list(self.notes)
        if self.ignored:
            extra.append("ignored keys: " + ", ".join(self.ignored))
        if extra:
            text += " [" + "; ".join(extra) + "]"
        return text


@dataclass
class _Entry:
    report: EntryReport
    spec: StreamSpec | None = None
    secrets_given: frozenset[str] = frozenset()
    target: Stream | None = None  # the row an overwrite replaces
    kept_secrets: dict[str, str] = field(default_factory=dict)


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
    if digits.isdigit():
        return digits
    head = text.split("p", 1)[0]  # "720p60"
    return head if head.isdigit() else value


def _from_glimpser_rs(raw: dict[str, Any], entry: EntryReport) -> dict[str, Any] | None:
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


def _from_glimpser(raw: dict[str, Any], entry: EntryReport) -> dict[str, Any] | None:
    spec = dict(raw)
    if spec.get("description", "") is None:
        spec["description"] = ""
    config = spec.get("config")
    if not isinstance(config, dict):
        entry.errors["config"] = "missing, or not a JSON object"
        return None
    kind = config.get("kind")
    if kind not in KINDS:
        entry.errors["config.kind"] = (
            f"unknown kind {str(kind)[:50]!r} (known: {', '.join(KINDS)})"
            if kind is not None
            else "missing"
        )
        return None
    return spec


def _prepare(index: int, raw: Any, fmt: str) -> _Entry:
    """Map and validate one entry; errors stay in its report."""
    name = raw.get("name") if isinstance(raw, dict) else None
    entry = _Entry(EntryReport(index=index, name=str(name)[:200] if name is not None else ""))
    report = entry.report
    if not isinstance(raw, dict):
        report.outcome, report.errors[""] = "error", "not a JSON object"
        return entry
    mapped = _from_glimpser(raw, report) if fmt == FORMAT else _from_glimpser_rs(raw, report)
    if mapped is None or report.errors:
        report.outcome = "error"
        return entry
    try:
        entry.spec = StreamSpec.model_validate(mapped)
    except ValidationError as exc:
        report.outcome = "error"
        report.errors.update(error_messages(exc))
        return entry
    given = mapped["config"]
    entry.secrets_given = frozenset(
        name
        for name in type(entry.spec.config).SECRET_FIELDS
        if name in given or entry.spec.config.secret(name)
    )
    return entry


# --- deciding and writing ---------------------------------------------------------------------


@dataclass
class ImportReport:
    format: str
    mode: str
    dry_run: bool
    entries: list[EntryReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failure: str = ""  # set when the write was rolled back: nothing was written

    @property
    def format_label(self) -> str:
        return "Glimpser export" if self.format == FORMAT else "glimpser-rs export"

    def count(self, outcome: str) -> int:
        return sum(1 for e in self.entries if e.outcome == outcome)

    @property
    def has_errors(self) -> bool:
        return bool(self.failure) or self.count("error") > 0

    def summary(self) -> str:
        shown = [o for o in OUTCOMES if self.count(o) or o in ("imported", "error")]
        counts = ", ".join(f"{self.count(o)} {_COUNT_LABELS.get(o, o)}" for o in shown)
        if self.failure:
            return f"nothing was written ({counts})"
        if self.dry_run:
            return f"dry run, nothing was written: {counts}"
        return counts

    def lines(self) -> list[str]:
        """The report as text, one line per entry (the CLI prints these)."""
        head = f"{self.format_label}, mode {self.mode}: {len(self.entries)} entries"
        out = [head + (" (dry run)" if self.dry_run else "")]
        out += [f"note: {n}" for n in self.notes]
        width = len(str(len(self.entries)))
        for e in self.entries:
            out.append(f"{e.index:>{width}}. {e.name or '(no name)'}: {e.describe()}")
        if self.failure:
            out.append(f"failed: {self.failure}")
        out.append(self.summary())
        return out


def _free_name(name: str, taken: set[str]) -> str:
    """`name (2)`, `name (3)`, … whichever is free (names compare case-insensitively)."""
    n = 2
    while True:
        suffix = f" ({n})"
        candidate = name[: 200 - len(suffix)].rstrip() + suffix
        if candidate.lower() not in taken:
            return candidate
        n += 1


def _host(config: dict[str, Any]) -> tuple[str, int | None] | None:
    url = config.get("url")
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urlsplit(url)
        return ((parts.hostname or "").lower(), parts.port)
    except ValueError:
        return None


def _keep_secrets(entry: _Entry) -> None:
    """An overwrite without a secret keeps the stored one, but only for the same kind and host."""
    assert entry.spec is not None and entry.target is not None
    stored = entry.target.config or {}
    config = entry.spec.config
    for name in sorted(type(config).SECRET_FIELDS - entry.secrets_given):
        value = stored.get(name)
        if not value:
            continue
        if stored.get("kind") != config.kind:
            entry.report.notes.append(f"stored {name} not kept: the kind changed")
        elif _host(stored) != _host(config.model_dump()):
            entry.report.notes.append(f"stored {name} not kept: the address changed")
        else:
            entry.kept_secrets[name] = value
            entry.report.notes.append(f"stored {name} kept")


def _decide(entries: list[_Entry], mode: str) -> list[_Entry]:
    """Apply the mode to names in the database and earlier in the file; the writes, in order.

    Names compare case-insensitively, as the stream form does.
    """
    existing = {s.name.lower(): s for s in Stream.select()}
    taken = set(existing)
    claimed: dict[str, _Entry] = {}  # final name (lower case) -> the entry that writes it
    for entry in entries:
        if entry.spec is None:
            continue
        report, name = entry.report, entry.spec.name
        report.name = name
        earlier = claimed.get(name.lower())
        if earlier is None and name.lower() not in existing:
            report.outcome = "imported"
        elif mode == "skip":
            report.outcome = "skipped"
            report.reason = (
                f"same name as entry {earlier.report.index} of this file"
                if earlier is not None
                else "a stream with this name exists"
            )
            continue
        elif mode == "rename":
            name = _free_name(name, taken)
            entry.spec = entry.spec.model_copy(update={"name": name})
            report.outcome, report.new_name = "renamed", name
        else:  # overwrite: the last entry with a name wins
            if earlier is not None:
                earlier.report.outcome = "skipped"
                earlier.report.reason = (
                    f"replaced by entry {report.index} of this file, which has the same name"
                )
                earlier.kept_secrets.clear()
                earlier.report.notes = [
                    n for n in earlier.report.notes if not n.startswith("stored ")
                ]
            entry.target = existing.get(name.lower())
            report.outcome = "overwritten" if entry.target is not None else "imported"
            if entry.target is not None:
                _keep_secrets(entry)
        claimed[name.lower()] = entry
        taken.add(name.lower())
    return [e for e in entries if e.report.written]


def _write(entry: _Entry) -> None:
    assert entry.spec is not None
    if entry.target is None:
        create_stream(entry.spec, entry.kept_secrets)
    else:
        update_stream(entry.target, entry.spec, entry.kept_secrets)


def _transaction():  # noqa: ANN202 - a peewee transaction context
    # Take the write lock up front, so reading names and writing cannot interleave.
    return write_transaction()


def import_streams(
    data: dict[str, Any],
    mode: str = "skip",
    dry_run: bool = False,
    *,
    actor: User | None = None,
    ip: str = "",
    via: str = "cli",
    source: str = "",
) -> ImportReport:
    """Validate every entry, then write the valid ones in one transaction (or none at all)."""
    if mode not in MODES:
        raise TransferError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
    fmt = detect_format(data)
    raw_entries = _entries(data)
    report = ImportReport(format=fmt, mode=mode, dry_run=dry_run, notes=_document_notes(data, fmt))
    entries = [_prepare(i, raw, fmt) for i, raw in enumerate(raw_entries, start=1)]
    report.entries = [e.report for e in entries]
    if dry_run:
        _decide(entries, mode)
        return report

    detail: dict[str, Any] = {"mode": mode, "format": fmt, "via": via, "source": source[:200]}
    writes: list[_Entry] = []
    try:
        with _transaction():
            writes = _decide(entries, mode)
            for entry in writes:
                _write(entry)
            detail.update({o: report.count(o) for o in OUTCOMES if report.count(o)})
            detail["names"] = [e.spec.name for e in writes if e.spec is not None][:100]
            AuditLog.create(
                user=actor, action="stream.import", target="streams", detail=detail, ip=ip
            )
    except (peewee.PeeweeException, OverflowError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report.failure = f"the database refused the write, so nothing was written: {reason}"
        for entry in writes:
            entry.report.outcome = "rolled back"
        log.warning("stream import rolled back", extra={"error": reason[:500]})
        try:
            AuditLog.create(
                user=actor,
                action="stream.import_failed",
                target="streams",
                detail={**detail, "error": reason[:500]},
                ip=ip,
            )
        except peewee.PeeweeException:
            log.exception("could not record the failed import in the audit log")
    return report
