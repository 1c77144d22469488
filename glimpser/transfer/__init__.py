"""Import and export of streams as JSON: Glimpser's own format and glimpser-rs exports.

Every imported entry is validated by StreamSpec, the schema the stream form and the API use;
the glimpser-rs reader only renames keys into that schema. All entries are validated first,
then the valid ones are written in one transaction, so an import never leaves half a result.

Rules and notification channels travel beside the streams (Glimpser's format only), so that a
whole set-up moves between installations in one file. Rules are RuleSpec fields with chosen
streams and channels by name instead of id, so that they mean the same on another installation;
on import the names map to the streams and channels of the same file (also when renamed) or to
existing ones. Channels are ChannelSpec fields; their secrets (tokens, passwords, Apprise URLs)
are exported only on explicit request, and an overwrite without them keeps the stored ones.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import peewee
from pydantic import SecretStr, ValidationError

from glimpser import times
from glimpser.analysis.rules import rule_columns, rule_values
from glimpser.analysis.schemas import RuleSpec
from glimpser.db import write_transaction
from glimpser.models import AuditLog, NotificationChannel, Rule, Stream, User
from glimpser.notify import channel_store
from glimpser.notify import schemas as channel_schemas
from glimpser.sources.redaction import redact_url, unmask
from glimpser.sources.schemas import (
    CONFIG_BY_KIND,
    KINDS,
    STREAM_FIELDS,
    StreamSpec,
    dump_config,
    error_messages,
    parse_config,
)
from glimpser.transfer.stream_store import create_stream, update_stream

log = logging.getLogger(__name__)

FORMAT = "glimpser"
VERSION = 1
MAX_IMPORT_BYTES = 5 * 1024 * 1024
MODES: tuple[str, ...] = ("skip", "overwrite", "rename")

_TOP_LEVEL_KEYS = frozenset({"format", "version", "exported_at", "streams", "rules", "channels"})
# Parts of a Glimpser export this version does not import yet; named in the report.
_LATER_SECTIONS: tuple[str, ...] = ()
# A rule entry: RuleSpec's fields, but chosen streams by name ("streams") instead of ids, and
# channels by name ("channels") instead of ids.
_RULE_ENTRY_KEYS = tuple(k for k in RuleSpec.model_fields if k not in ("stream_ids", "channels"))

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
    if not include_secrets:  # a token in the URL's query is a secret too
        config = {k: _redacted_urls(v) if k == "url" else v for k, v in config.items()}
    entry["config"] = config
    entry["analysis"] = dict(stream.analysis or {})
    return entry


def rule_entry(
    rule: Rule, names: dict[int, str], channel_names: dict[int, str] | None = None
) -> dict[str, Any]:
    """One rule as an export entry: chosen streams and channels by name (ids are this
    installation's); ids of deleted streams or channels are left out."""
    values = rule_values(rule)
    entry = {name: values[name] for name in _RULE_ENTRY_KEYS}
    entry["streams"] = [names[i] for i in values["stream_ids"] if i in names]
    channel_names = channel_names or {}
    entry["channels"] = sorted(
        (channel_names[i] for i in values["channels"] if i in channel_names), key=str.lower
    )
    return entry


def channel_entry(channel: NotificationChannel, *, include_secrets: bool) -> dict[str, Any]:
    """One notification channel as an export entry (ChannelSpec's fields); secrets only when
    asked for."""
    entry: dict[str, Any] = {
        name: getattr(channel, name) for name in channel_schemas.CHANNEL_FIELDS
    }
    stored = dict(channel.config or {})
    stored.setdefault("kind", channel.kind)
    try:
        config = channel_schemas.dump_config(
            channel_schemas.parse_config(stored), include_secrets=include_secrets
        )
    except ValidationError:
        # A stored config the current schema rejects still travels (the import reports what
        # needs fixing), but never with its secrets unless asked.
        config = stored
        if not include_secrets:
            schema = channel_schemas.CONFIG_BY_KIND.get(channel.kind)
            if schema is None:  # no idea which fields are secret: keep none of them
                config = {"kind": channel.kind}
            for name in schema.SECRET_FIELDS if schema else ():
                config.pop(name, None)
    if not include_secrets:  # tokens in webhook and CAP URLs' queries too
        config = {
            k: _redacted_urls(v) if k in ("url", "endpoints") else v for k, v in config.items()
        }
    entry["config"] = config
    return entry


def _redacted_urls(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, list):
        return [redact_url(v) if isinstance(v, str) else v for v in value]
    return value


def export_streams(
    *,
    include_secrets: bool = False,
    actor: User | None = None,
    ip: str = "",
    via: str = "cli",
) -> dict[str, Any]:
    """The whole set-up — streams, rules and notification channels — as a Glimpser export
    document; an export with secrets is audited."""
    streams = list(Stream.select().order_by(Stream.name))
    names = {s.id: s.name for s in streams}
    channels = list(NotificationChannel.select().order_by(NotificationChannel.name))
    channel_names = {c.id: c.name for c in channels}
    document = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": times.isoformat(times.utcnow()),
        "streams": [stream_entry(s, include_secrets=include_secrets) for s in streams],
        "rules": [rule_entry(r, names, channel_names) for r in Rule.select().order_by(Rule.name)],
        "channels": [channel_entry(c, include_secrets=include_secrets) for c in channels],
    }
    if include_secrets:
        AuditLog.create(
            user=actor,
            action="stream.export",
            target="streams",
            detail={
                "include_secrets": True,
                "count": len(streams),
                "channels": len(channels),
                "via": via,
            },
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


def _entry_report(index: int, raw: Any) -> EntryReport:
    """The report of one entry, named as the file names it; an error when it is no object."""
    name = raw.get("name") if isinstance(raw, dict) else None
    report = EntryReport(index=index, name=str(name)[:200] if name is not None else "")
    if not isinstance(raw, dict):
        report.outcome, report.errors[""] = "error", "not a JSON object"
    return report


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


def _prepare(index: int, raw: Any, fmt: str, describe_by_default: bool = False) -> _Entry:
    """Map and validate one entry; errors stay in its report. An entry without analysis
    settings (glimpser-rs, older exports) gets the defaults a new stream gets in the form:
    describe on change when AI is configured."""
    entry = _Entry(_entry_report(index, raw))
    report = entry.report
    if not isinstance(raw, dict):
        return entry
    mapped = _from_glimpser(raw, report) if fmt == FORMAT else _from_glimpser_rs(raw, report)
    if mapped is None or report.errors:
        report.outcome = "error"
        return entry
    if "analysis" not in mapped and describe_by_default:
        mapped = {**mapped, "analysis": {"describe_on_change": True}}
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
    rules: list[EntryReport] = field(default_factory=list)  # one per rule entry, in file order
    channels: list[EntryReport] = field(default_factory=list)  # one per channel entry

    @property
    def format_label(self) -> str:
        return "Glimpser export" if self.format == FORMAT else "glimpser-rs export"

    def count(self, outcome: str) -> int:
        return sum(1 for e in self.entries if e.outcome == outcome)

    def rule_count(self, outcome: str) -> int:
        return sum(1 for e in self.rules if e.outcome == outcome)

    def channel_count(self, outcome: str) -> int:
        return sum(1 for e in self.channels if e.outcome == outcome)

    @property
    def has_errors(self) -> bool:
        return (
            bool(self.failure)
            or self.count("error") > 0
            or self.rule_count("error") > 0
            or self.channel_count("error") > 0
        )

    @staticmethod
    def _counts(reports: list[EntryReport]) -> str:
        def n(outcome: str) -> int:
            return sum(1 for e in reports if e.outcome == outcome)

        shown = [o for o in OUTCOMES if n(o) or o in ("imported", "error")]
        return ", ".join(f"{n(o)} {_COUNT_LABELS.get(o, o)}" for o in shown)

    def summary(self) -> str:
        counts = self._counts(self.entries)
        if self.rules:
            counts += "; rules: " + self._counts(self.rules)
        if self.channels:
            counts += "; channels: " + self._counts(self.channels)
        if self.failure:
            return f"nothing was written ({counts})"
        if self.dry_run:
            return f"dry run, nothing was written: {counts}"
        return counts

    def sections(self) -> list[tuple[str, list[EntryReport]]]:
        """(title, entries) for each part of the file that had entries (the admin page)."""
        out = [("Streams", self.entries)]
        if self.channels:
            out.append(("Channels", self.channels))
        if self.rules:
            out.append(("Rules", self.rules))
        return out

    def lines(self) -> list[str]:
        """The report as text, one line per entry (the CLI prints these)."""
        head = f"{self.format_label}, mode {self.mode}: {len(self.entries)} entries"
        out = [head + (" (dry run)" if self.dry_run else "")]
        out += [f"note: {n}" for n in self.notes]
        width = len(str(len(self.entries)))
        for e in self.entries:
            out.append(f"{e.index:>{width}}. {e.name or '(no name)'}: {e.describe()}")
        for e in self.channels:
            out.append(f"channel {e.index}, {e.name or '(no name)'}: {e.describe()}")
        for e in self.rules:
            out.append(f"rule {e.index}, {e.name or '(no name)'}: {e.describe()}")
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
    url = getattr(config, "url", "")
    if url and stored.get("url") and unmask(url, stored["url"]) != url:
        # An export without secrets masks query tokens: importing it back keeps the real URL.
        entry.kept_secrets["url"] = stored["url"]
        entry.report.notes.append("stored URL token kept")


def _decide_names(
    entries: list[Any],
    mode: str,
    existing: dict[str, Any],
    *,
    entry_noun: str,
    kind_noun: str,
    keep_secrets: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Apply the mode to names in the database (`existing`, by lower-case name) and earlier in
    the file; the writes, in order. Names compare case-insensitively, as the forms do.

    `keep_secrets`, where the entries carry secrets, keeps an overwritten row's stored ones.
    """
    taken = set(existing)
    claimed: dict[str, Any] = {}  # final name (lower case) -> the entry that writes it
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
                f"same name as {entry_noun} {earlier.report.index} of this file"
                if earlier is not None
                else f"a {kind_noun} with this name exists"
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
                    f"replaced by {entry_noun} {report.index} of this file, which has the same name"
                )
                if keep_secrets is not None:
                    earlier.kept_secrets.clear()
                    earlier.report.notes = [
                        n for n in earlier.report.notes if not n.startswith("stored ")
                    ]
            entry.target = existing.get(name.lower())
            report.outcome = "overwritten" if entry.target is not None else "imported"
            if entry.target is not None and keep_secrets is not None:
                keep_secrets(entry)
        claimed[name.lower()] = entry
        taken.add(name.lower())
    return [e for e in entries if e.report.written]


def _decide(entries: list[_Entry], mode: str) -> list[_Entry]:
    """Apply the mode to stream names in the database and earlier in the file; the writes."""
    existing = {s.name.lower(): s for s in Stream.select()}
    return _decide_names(
        entries, mode, existing, entry_noun="entry", kind_noun="stream", keep_secrets=_keep_secrets
    )


def _write(entry: _Entry) -> None:
    assert entry.spec is not None
    if entry.target is None:
        create_stream(entry.spec, entry.kept_secrets)
    else:
        update_stream(entry.target, entry.spec, entry.kept_secrets)


def _transaction():  # noqa: ANN202 - a peewee transaction context
    # Take the write lock up front, so reading names and writing cannot interleave.
    return write_transaction()


# --- channels ---------------------------------------------------------------------------------


@dataclass
class _ChannelEntry:
    report: EntryReport
    spec: channel_schemas.ChannelSpec | None = None
    secrets_given: frozenset[str] = frozenset()  # secret fields the file gives (even empty)
    target: NotificationChannel | None = None  # the row an overwrite replaces
    kept_secrets: dict[str, str] = field(default_factory=dict)


def _section(data: dict[str, Any], fmt: str, key: str, what: str) -> list[Any]:
    """The entries of an optional list beside the streams (Glimpser's format only)."""
    if fmt != FORMAT or key not in data:
        return []
    entries = data[key]
    if not isinstance(entries, list):
        raise TransferError(f'"{key}" must be a list of {what}.')
    return entries


def _channel_entries(data: dict[str, Any], fmt: str) -> list[Any]:
    return _section(data, fmt, "channels", "notification channels")


def _prepare_channel(index: int, raw: Any) -> _ChannelEntry:
    """Check one channel entry with ChannelSpec, the schema the channel form and API use."""
    entry = _ChannelEntry(_entry_report(index, raw))
    report = entry.report
    if not isinstance(raw, dict):
        return entry
    config = raw.get("config")
    if not isinstance(config, dict):
        report.outcome, report.errors["config"] = "error", "missing, or not a JSON object"
        return entry
    kind = config.get("kind")
    if not isinstance(kind, str) or kind not in channel_schemas.KINDS:
        report.outcome = "error"
        report.errors["config.kind"] = (
            f"unknown kind {str(kind)[:50]!r} (known: {', '.join(channel_schemas.KINDS)})"
            if kind is not None
            else "missing"
        )
        return entry
    try:
        entry.spec = channel_schemas.ChannelSpec.model_validate(raw)
    except ValidationError as exc:
        report.outcome = "error"
        report.errors.update(channel_schemas.error_messages(exc))
        return entry
    report.name = entry.spec.name
    entry.secrets_given = frozenset(
        field_name
        for field_name in type(entry.spec.config).SECRET_FIELDS
        if field_name in config or entry.spec.config.secret_value(field_name)
    )
    return entry


def _channel_address(config: dict[str, Any]) -> Any:
    """Where a channel sends its secrets; an overwrite keeps stored secrets only when this is
    unchanged (an imported file must not redirect a stored token to another host)."""
    kind = config.get("kind")
    if kind == "webhook":
        return _host(config)
    if kind == "cap":
        endpoints = config.get("endpoints") or []
        return frozenset(_host({"url": u}) for u in endpoints if isinstance(u, str))
    if kind == "email":
        return str(config.get("host") or "").lower()
    return None  # Pushover's API is fixed; Apprise URLs are themselves the secret


def _secret_label(config: channel_schemas.ChannelConfig, name: str) -> str:
    return type(config).model_fields[name].title or name


def _keep_channel_secrets(entry: _ChannelEntry) -> None:
    """An overwrite without a secret keeps the stored one: same kind and address only, and
    only when the result still validates (e.g. an email password needs the username)."""
    assert entry.spec is not None and entry.target is not None
    stored = dict(entry.target.config or {})
    stored_kind = stored.get("kind", entry.target.kind)
    config = entry.spec.config
    kept: dict[str, str] = {}
    for name in sorted(type(config).SECRET_FIELDS - entry.secrets_given):
        value = stored.get(name)
        if not value or not isinstance(value, str):
            continue
        label = _secret_label(config, name)
        if stored_kind != config.kind:
            entry.report.notes.append(f"stored {label} not kept: the kind changed")
        elif _channel_address(stored) != _channel_address(config.model_dump()):
            entry.report.notes.append(f"stored {label} not kept: the address changed")
        else:
            kept[name] = value
    if not kept:
        return
    merged = channel_schemas.dump_config(config, include_secrets=True)
    merged.update(kept)
    try:
        channel_schemas.parse_config(merged)
    except ValidationError:
        labels = ", ".join(_secret_label(config, n) for n in kept)
        verb = "it does" if len(kept) == 1 else "they do"
        entry.report.notes.append(f"stored {labels} not kept: {verb} not fit the new settings")
        return
    entry.kept_secrets = kept
    entry.report.notes += [f"stored {_secret_label(config, n)} kept" for n in kept]


def _missing_secrets_note(entry: _ChannelEntry) -> None:
    """A channel imported without its secrets is still imported; the report names what to
    enter in Admin → Channels: the secrets it cannot send without, and the optional ones (a
    signing secret, an Authorization header) that the file did not carry."""
    assert entry.spec is not None
    config = entry.spec.config
    if entry.kept_secrets:
        config = config.model_copy(update={n: SecretStr(v) for n, v in entry.kept_secrets.items()})
    missing = config.missing_secrets()
    if missing:
        entry.report.notes.append(
            "secrets to enter in Admin → Channels before it can send: " + ", ".join(missing)
        )
    absent = [
        _secret_label(config, name)
        for name in sorted(type(config).SECRET_FIELDS)
        if name not in entry.secrets_given and name not in entry.kept_secrets
    ]
    optional = [label for label in absent if label not in missing]
    if optional:
        entry.report.notes.append(
            "not in the file (enter in Admin → Channels if the channel used them): "
            + ", ".join(optional)
        )


def _decide_channels(entries: list[_ChannelEntry], mode: str) -> list[_ChannelEntry]:
    """The same modes as for streams, on channel names (case-insensitive); the writes."""
    existing = {c.name.lower(): c for c in NotificationChannel.select()}
    writes = _decide_names(
        entries,
        mode,
        existing,
        entry_noun="channel",
        kind_noun="channel",
        keep_secrets=_keep_channel_secrets,
    )
    for entry in writes:
        _missing_secrets_note(entry)
    return writes


def _write_channel(entry: _ChannelEntry) -> None:
    """Store the channel through channel_store, as the channel form does. The secrets are
    already decided (`_keep_channel_secrets` checks kind and address): the kept ones go into
    the spec, and every other secret the file left empty is written empty, not kept."""
    assert entry.spec is not None
    spec = entry.spec
    if entry.kept_secrets:
        config = spec.config.model_copy(
            update={n: SecretStr(v) for n, v in entry.kept_secrets.items()}
        )
        spec = spec.model_copy(update={"config": config})
    if entry.target is None:
        channel_store.create_channel(spec)
    else:  # keeps its id, so rules and the delivery log still point at it
        not_kept = type(spec.config).SECRET_FIELDS - entry.kept_secrets.keys()
        channel_store.update_channel(entry.target, spec, remove_secrets=not_kept)


# --- rules ------------------------------------------------------------------------------------


@dataclass
class _RuleEntry:
    report: EntryReport
    values: dict[str, Any] | None = None  # RuleSpec input without stream ids
    stream_names: list[str] = field(default_factory=list)
    # Channel names from the file; None when the entry has no "channels" (an older export):
    # an overwritten rule then keeps the channels it has.
    channel_names: list[str] | None = None
    spec: RuleSpec | None = None
    target: Rule | None = None  # the row an overwrite replaces


def _rule_entries(data: dict[str, Any], fmt: str) -> list[Any]:
    return _section(data, fmt, "rules", "rules")


def _name_list(value: Any) -> list[str] | None:
    """A list of names, stripped and without blanks; None when it is not a list of strings."""
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        return None
    return [n.strip() for n in value if n.strip()]


def _prepare_rule(index: int, raw: Any) -> _RuleEntry:
    """Check one rule entry with RuleSpec (stream and channel names are resolved later)."""
    entry = _RuleEntry(_entry_report(index, raw))
    report = entry.report
    if not isinstance(raw, dict):
        return entry
    values = {k: v for k, v in raw.items() if k in _RULE_ENTRY_KEYS}
    for key in raw:
        if key not in _RULE_ENTRY_KEYS and key not in ("streams", "channels"):
            report.ignored.append(key)
    if "stream_ids" in raw:
        report.notes.append("stream ids do not travel between installations: give names")
    names = _name_list(raw.get("streams", []))
    if names is None:
        report.outcome, report.errors["streams"] = "error", "must be a list of stream names"
        return entry
    entry.stream_names = names
    if raw.get("channels") is not None:
        channel_names = _name_list(raw["channels"])
        if channel_names is None:
            report.outcome = "error"
            report.errors["channels"] = (
                "must be a list of channel names (ids do not travel between installations)"
            )
            return entry
        entry.channel_names = channel_names
    if values.get("description") is None:
        values.pop("description", None)
    try:
        # Stand-in ids until the names are resolved, so that the "chosen" check still runs.
        placeholder = list(range(1, len(entry.stream_names) + 1))
        entry.spec = RuleSpec.model_validate({**values, "stream_ids": placeholder})
    except ValidationError as exc:
        report.outcome = "error"
        report.errors.update(
            {("streams" if k == "" else k): v for k, v in error_messages(exc).items()}
        )
        return entry
    entry.values = values
    report.name = entry.spec.name
    return entry


def _renamed(entries: list[_Entry] | list[_ChannelEntry]) -> dict[str, str]:
    """Name in the file → name written (lower case), for the entries an import renamed."""
    final: dict[str, str] = {}
    for e in entries:
        if e.spec is not None and e.report.new_name:
            final.setdefault(e.report.name.lower(), e.report.new_name.lower())
    return final


def _resolve_names(
    entry: _RuleEntry,
    names: list[str],
    final: dict[str, str],
    ids: dict[str, int | None],
    *,
    field_name: str,
    noun: str,
) -> None:
    """Map a rule's names (as in the file) to ids into `field_name` of its spec: a row of this
    file (also when renamed on import, `final`) or one that exists. Unknown names are an error
    under `<noun>s`, and the rule is not written."""
    assert entry.spec is not None
    found, missing = [], []
    for name in names:
        key = final.get(name.lower(), name.lower())
        if key in ids:
            found.append(ids[key])
        else:
            missing.append(name)
    if missing:
        entry.spec = None
        entry.report.outcome = "error"
        entry.report.errors[noun + "s"] = f"no {noun} named " + ", ".join(
            repr(n[:100]) for n in missing
        )
        return
    real = sorted({i for i in found if i is not None})
    entry.spec = entry.spec.model_copy(update={field_name: real})


def _resolve_rule_streams(
    rules: list[_RuleEntry], stream_entries: list[_Entry], ids: dict[str, int | None]
) -> None:
    """Map each chosen-streams rule's names to ids: a stream of this file (by its name in the
    file, also when it was renamed on import) or a stream that exists. Unknown → entry error."""
    final = _renamed(stream_entries)
    for entry in rules:
        if entry.spec is None or entry.spec.applies_to != "chosen":
            continue
        _resolve_names(
            entry, entry.stream_names, final, ids, field_name="stream_ids", noun="stream"
        )


def _resolve_rule_channels(
    rules: list[_RuleEntry], channel_entries: list[_ChannelEntry], ids: dict[str, int | None]
) -> None:
    """Map each rule's channel names to ids, as for streams: a channel of this file (also when
    renamed on import) or one that exists. An unknown name is an error for that rule only."""
    final = _renamed(channel_entries)
    for entry in rules:
        if entry.spec is None or entry.channel_names is None:
            continue
        _resolve_names(
            entry, entry.channel_names, final, ids, field_name="channels", noun="channel"
        )


def _decide_rules(entries: list[_RuleEntry], mode: str) -> list[_RuleEntry]:
    """The same modes as for streams, on rule names (case-insensitive)."""
    existing = {r.name.lower(): r for r in Rule.select()}
    return _decide_names(entries, mode, existing, entry_noun="rule", kind_noun="rule")


def _write_rule(entry: _RuleEntry) -> None:
    assert entry.spec is not None
    if entry.target is None:
        Rule.create(**rule_columns(entry.spec))
        return
    # Keeps its id and its events; a file without channel names keeps the rule's channels.
    channels = entry.target.channels if entry.channel_names is None else entry.spec.channels
    Rule.update(**rule_columns(entry.spec, channels), updated_at=times.utcnow()).where(
        Rule.id == entry.target.id
    ).execute()


def _outcome_counts(reports: list[EntryReport]) -> dict[str, int]:
    counts = {o: sum(1 for e in reports if e.outcome == o) for o in OUTCOMES}
    return {o: n for o, n in counts.items() if n}


def import_streams(
    data: dict[str, Any],
    mode: str = "skip",
    dry_run: bool = False,
    *,
    actor: User | None = None,
    ip: str = "",
    via: str = "cli",
    source: str = "",
    ai_configured: bool = False,
) -> ImportReport:
    """Import a whole set-up (streams, notification channels, rules): validate every entry,
    then write the valid ones in one transaction (or none at all)."""
    if mode not in MODES:
        raise TransferError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
    fmt = detect_format(data)
    raw_entries = _entries(data)
    report = ImportReport(format=fmt, mode=mode, dry_run=dry_run, notes=_document_notes(data, fmt))
    entries = [
        _prepare(i, raw, fmt, describe_by_default=ai_configured)
        for i, raw in enumerate(raw_entries, start=1)
    ]
    report.entries = [e.report for e in entries]
    rules = [_prepare_rule(i, raw) for i, raw in enumerate(_rule_entries(data, fmt), start=1)]
    report.rules = [r.report for r in rules]
    channels = [
        _prepare_channel(i, raw) for i, raw in enumerate(_channel_entries(data, fmt), start=1)
    ]
    report.channels = [c.report for c in channels]
    if dry_run:
        would_write = _decide(entries, mode)
        ids: dict[str, int | None] = {s.name.lower(): s.id for s in Stream.select()}
        ids.update({e.spec.name.lower(): None for e in would_write if e.spec is not None})
        channels_written = _decide_channels(channels, mode)
        channel_ids: dict[str, int | None] = {
            c.name.lower(): c.id for c in NotificationChannel.select()
        }
        channel_ids.update({c.spec.name.lower(): None for c in channels_written if c.spec})
        _resolve_rule_streams(rules, entries, ids)
        _resolve_rule_channels(rules, channels, channel_ids)
        _decide_rules(rules, mode)
        return report

    detail: dict[str, Any] = {"mode": mode, "format": fmt, "via": via, "source": source[:200]}
    writes: list[_Entry] = []
    channel_writes: list[_ChannelEntry] = []
    rule_writes: list[_RuleEntry] = []
    try:
        with _transaction():
            writes = _decide(entries, mode)
            for entry in writes:
                _write(entry)
            if channels:
                channel_writes = _decide_channels(channels, mode)
                for channel in channel_writes:
                    _write_channel(channel)
                detail["channels"] = _outcome_counts(report.channels)
                detail["channel_names"] = [c.spec.name for c in channel_writes if c.spec][:100]
            if rules:
                ids = {s.name.lower(): s.id for s in Stream.select(Stream.id, Stream.name)}
                _resolve_rule_streams(rules, entries, ids)
                channel_ids = {
                    c.name.lower(): c.id
                    for c in NotificationChannel.select(
                        NotificationChannel.id, NotificationChannel.name
                    )
                }
                _resolve_rule_channels(rules, channels, channel_ids)
                rule_writes = _decide_rules(rules, mode)
                for pending in rule_writes:
                    _write_rule(pending)
                detail["rules"] = _outcome_counts(report.rules)
                detail["rule_names"] = [r.spec.name for r in rule_writes if r.spec][:100]
            detail.update({o: report.count(o) for o in OUTCOMES if report.count(o)})
            detail["names"] = [e.spec.name for e in writes if e.spec is not None][:100]
            AuditLog.create(
                user=actor, action="stream.import", target="streams", detail=detail, ip=ip
            )
    except (peewee.PeeweeException, OverflowError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report.failure = f"the database refused the write, so nothing was written: {reason}"
        for written in (*writes, *channel_writes, *rule_writes):
            written.report.outcome = "rolled back"
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
