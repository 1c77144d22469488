"""Importing a document: validate every entry, then write streams, channels and rules in one
transaction (or none at all).

Streams (Glimpser's format or glimpser-rs), then channels, then rules, whose streams and channels
are named, mapped to the entries of the same file (also when renamed) or to existing rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import peewee
from pydantic import SecretStr, ValidationError

from glimpser import times
from glimpser.analysis.rules import rule_columns
from glimpser.analysis.schemas import RuleSpec
from glimpser.db import write_transaction
from glimpser.models import AuditLog, NotificationChannel, Rule, Stream, User
from glimpser.notify import channel_store
from glimpser.notify import schemas as channel_schemas
from glimpser.schema_helpers import may_keep_secrets
from glimpser.sources.redaction import unmask
from glimpser.sources.schemas import (
    KINDS,
    StreamSpec,
    error_messages,
)
from glimpser.transfer.export import (
    FORMAT,
    RULE_ENTRY_KEYS,
)
from glimpser.transfer.glimpser_rs import (
    from_glimpser_rs,
)
from glimpser.transfer.reading import (
    TransferError,
    detect_format,
    document_notes,
    optional_section,
    stream_list,
)
from glimpser.transfer.report import (
    OUTCOMES,
    EntryReport,
    ImportReport,
    entry_report,
    outcome_counts,
)
from glimpser.transfer.stream_store import create_stream, update_stream

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("skip", "overwrite", "rename")


@dataclass
class _Entry:
    report: EntryReport
    spec: StreamSpec | None = None
    secrets_given: frozenset[str] = frozenset()
    target: Stream | None = None  # the row an overwrite replaces
    kept_secrets: dict[str, str] = field(default_factory=dict)


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
    entry = _Entry(entry_report(index, raw))
    report = entry.report
    if not isinstance(raw, dict):
        return entry
    mapped = _from_glimpser(raw, report) if fmt == FORMAT else from_glimpser_rs(raw, report)
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


def _free_name(name: str, taken: set[str]) -> str:
    """`name (2)`, `name (3)`, … whichever is free (names compare case-insensitively)."""
    n = 2
    while True:
        suffix = f" ({n})"
        candidate = name[: 200 - len(suffix)].rstrip() + suffix
        if candidate.lower() not in taken:
            return candidate
        n += 1


def _keep_secrets(entry: _Entry) -> None:
    """An overwrite without a secret keeps the stored one, but only for the same kind and a
    destination the stored config sent it to already (the stream form's rule)."""
    assert entry.spec is not None and entry.target is not None
    stored = entry.target.config or {}
    config = entry.spec.config
    for name in sorted(type(config).SECRET_FIELDS - entry.secrets_given):
        value = stored.get(name)
        if not value:
            continue
        if stored.get("kind") != config.kind:
            entry.report.notes.append(f"stored {name} not kept: the kind changed")
        elif not may_keep_secrets(stored, config.model_dump(mode="json")):
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


def _channel_entries(data: dict[str, Any], fmt: str) -> list[Any]:
    return optional_section(data, fmt, "channels", "notification channels")


def _prepare_channel(index: int, raw: Any) -> _ChannelEntry:
    """Check one channel entry with ChannelSpec, the schema the channel form and API use."""
    entry = _ChannelEntry(entry_report(index, raw))
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
        elif not may_keep_secrets({**stored, "kind": stored_kind}, config.model_dump(mode="json")):
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
    return optional_section(data, fmt, "rules", "rules")


def _name_list(value: Any) -> list[str] | None:
    """A list of names, stripped and without blanks; None when it is not a list of strings."""
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        return None
    return [n.strip() for n in value if n.strip()]


def _prepare_rule(index: int, raw: Any) -> _RuleEntry:
    """Check one rule entry with RuleSpec (stream and channel names are resolved later)."""
    entry = _RuleEntry(entry_report(index, raw))
    report = entry.report
    if not isinstance(raw, dict):
        return entry
    values = {k: v for k, v in raw.items() if k in RULE_ENTRY_KEYS}
    for key in raw:
        if key not in RULE_ENTRY_KEYS and key not in ("streams", "channels"):
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
    raw_entries = stream_list(data)
    report = ImportReport(format=fmt, mode=mode, dry_run=dry_run, notes=document_notes(data, fmt))
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
                detail["channels"] = outcome_counts(report.channels)
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
                detail["rules"] = outcome_counts(report.rules)
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
