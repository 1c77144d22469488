"""What an import did, entry by entry: the reports shown by the CLI and the admin page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glimpser.transfer.export import (
    FORMAT,
)

OUTCOMES = ("imported", "overwritten", "renamed", "skipped", "error", "rolled back")
_WRITTEN = frozenset({"imported", "overwritten", "renamed"})
_COUNT_LABELS = {"error": "invalid"}


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


def entry_report(index: int, raw: Any) -> EntryReport:
    """The report of one entry, named as the file names it; an error when it is no object."""
    name = raw.get("name") if isinstance(raw, dict) else None
    report = EntryReport(index=index, name=str(name)[:200] if name is not None else "")
    if not isinstance(raw, dict):
        report.outcome, report.errors[""] = "error", "not a JSON object"
    return report


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


def outcome_counts(reports: list[EntryReport]) -> dict[str, int]:
    counts = {o: sum(1 for e in reports if e.outcome == o) for o in OUTCOMES}
    return {o: n for o, n in counts.items() if n}
