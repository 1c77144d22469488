"""Text changes of website snapshots: ignore rules, "did the text change?", and a line diff.

A website stream may keep its page's text (WebsiteConfig.extract_text; Snapshot.text). Before
two texts are compared, the stream's ignore patterns (regular expressions, e.g. a clock) are
removed from both and runs of blank space are collapsed, so a ticking clock or reflowed lines do
not count as a change. The patterns are validated by the schema, compiled once (cached), and
run with Python's `re` on text cut to TEXT_MAX_CHARS, which bounds their cost.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from glimpser.analysis.motion import DetectionResult
from glimpser.models import Snapshot
from glimpser.sources.schemas import TEXT_MAX_CHARS, WebsiteConfig

if TYPE_CHECKING:
    from glimpser.models import Stream

# At most this many lines of a text diff are shown (the change view says when more changed).
MAX_DIFF_LINES = 2000
_SPACE = re.compile(r"[ \t\f\v\u00a0]+")


@functools.lru_cache(maxsize=256)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


def _strip(
    text: str, patterns: tuple[str, ...] | list[str], origin: list[int] | None = None
) -> tuple[str, list[int] | None]:
    """The text with every match of the ignored patterns removed, one pattern after the other.
    With `origin` (one position in the original text per character), also where each kept
    character came from: the change view uses it to show which lines a pattern ignored."""
    for pattern in _compiled(tuple(patterns)):
        spans: list[tuple[int, int]] = []

        def cut(match: re.Match[str], spans: list[tuple[int, int]] = spans) -> str:
            spans.append(match.span())
            return ""

        stripped = pattern.sub(cut, text)
        if origin is not None:
            kept: list[int] = []
            last = 0
            for start, end in spans:
                kept.extend(origin[last:start])
                last = end
            kept.extend(origin[last:])
            origin = kept
        text = stripped
    return text, origin


def _clean(line: str) -> str:
    return _SPACE.sub(" ", line).strip()


def normalise(text: str | None, patterns: tuple[str, ...] | list[str] = ()) -> str:
    """The text as compared: bounded, ignored patterns removed, blank space collapsed per line,
    blank lines dropped."""
    stripped, _ = _strip((text or "")[:TEXT_MAX_CHARS], patterns)
    lines = (_clean(line) for line in stripped.splitlines())
    return "\n".join(line for line in lines if line)


def text_changed(
    previous: str | None, current: str | None, patterns: tuple[str, ...] | list[str] = ()
) -> bool:
    """Does the text differ once the ignored patterns are removed from both?"""
    return normalise(previous, patterns) != normalise(current, patterns)


@dataclass(frozen=True)
class _Compared:
    """A text as the comparison sees it, tied back to its lines: `raw` the lines as captured,
    `lines` the compared lines (exactly normalise()'s), `sources[k]` the range of raw lines
    that compared line k is made of. Raw lines in no range compare as nothing (blank, or
    wholly removed by a pattern)."""

    raw: list[str]
    lines: list[str]
    sources: list[tuple[int, int]]


def _compared(text: str | None, patterns: tuple[str, ...] | list[str]) -> _Compared:
    text = (text or "")[:TEXT_MAX_CHARS]
    starts: list[int] = []
    raw: list[str] = []
    position = 0
    for piece in text.splitlines(keepends=True):
        starts.append(position)
        raw.append(piece.splitlines()[0])
        position += len(piece)
    stripped, origin = _strip(text, patterns, list(range(len(text))))
    assert origin is not None
    lines: list[str] = []
    sources: list[tuple[int, int]] = []
    position = 0
    for piece in stripped.splitlines(keepends=True):
        line = _clean(piece.splitlines()[0])
        if line:
            first = bisect.bisect_right(starts, origin[position]) - 1
            last = bisect.bisect_right(starts, origin[position + len(piece) - 1]) - 1
            lines.append(line)
            sources.append((first, last))
        position += len(piece)
    return _Compared(raw, lines, sources)


DiffOp = Literal["added", "removed", "ignored", "same"]


@dataclass(frozen=True)
class DiffLine:
    """One line of a text diff: "added", "removed", "same" (context), or "ignored": a line that
    differs but not once the ignored patterns and blank space are taken out (the comparison's
    own view, `normalise`), so it is no change; `side` says whether it is the earlier
    ("before") or the later ("after") text's line."""

    op: DiffOp
    text: str
    side: Literal["before", "after", ""] = ""


def _loose(before: list[str], after: list[str]) -> list[DiffLine]:
    """Lines that compare as nothing, between two compared lines: the same ones are context,
    any others ignored."""
    out: list[DiffLine] = []
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.extend(DiffLine("same", line) for line in after[j1:j2])
        else:
            out.extend(DiffLine("ignored", line, "before") for line in before[i1:i2])
            out.extend(DiffLine("ignored", line, "after") for line in after[j1:j2])
    return out


def diff_lines(
    previous: str | None,
    current: str | None,
    patterns: tuple[str, ...] | list[str] = (),
    context: int = 2,
) -> tuple[list[DiffLine], bool]:
    """Added, removed and ignored lines between two texts (with a little context), and whether
    the list was cut at MAX_DIFF_LINES. The lines are compared exactly as text_changed()
    compares them (normalise: the ignored patterns removed, blank space collapsed, blank lines
    dropped), so there are added or removed lines if and only if the text changed; lines that
    differ only in what the comparison leaves out are "ignored". Rendered escaped by the
    template."""
    a, b = _compared(previous, patterns), _compared(current, patterns)
    full: list[DiffLine] = []
    next_a = next_b = 0  # the first raw line of each text not shown yet

    def gap(until_a: int, until_b: int) -> None:
        nonlocal next_a, next_b
        full.extend(_loose(a.raw[next_a:until_a], b.raw[next_b:until_b]))
        next_a, next_b = max(next_a, until_a), max(next_b, until_b)

    def changed(
        text: _Compared, first: int, stop: int, side: Literal["before", "after"], start: int
    ) -> int:
        if first >= stop:
            return start
        compared_rows = set()
        for k in range(first, stop):
            compared_rows.update(range(text.sources[k][0], text.sources[k][1] + 1))
        end = text.sources[stop - 1][1] + 1
        for row in range(start, end):
            if row in compared_rows:
                full.append(DiffLine("removed" if side == "before" else "added", text.raw[row]))
            else:
                full.append(DiffLine("ignored", text.raw[row], side))
        return end

    matcher = difflib.SequenceMatcher(None, a.lines, b.lines)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                (a0, a1), (b0, b1) = a.sources[i], b.sources[j]
                gap(a0, b0)
                rows_a, rows_b = a.raw[a0 : a1 + 1], b.raw[b0 : b1 + 1]
                if rows_a == rows_b:
                    full.extend(DiffLine("same", line) for line in rows_b)
                else:
                    full.extend(DiffLine("ignored", line, "before") for line in rows_a)
                    full.extend(DiffLine("ignored", line, "after") for line in rows_b)
                next_a, next_b = a1 + 1, b1 + 1
            continue
        gap(
            a.sources[i1][0] if i1 < len(a.lines) else next_a,
            b.sources[j1][0] if j1 < len(b.lines) else next_b,
        )
        next_a = changed(a, i1, i2, "before", next_a)
        next_b = changed(b, j1, j2, "after", next_b)
    gap(len(a.raw), len(b.raw))
    return _with_context(full, context)


def _with_context(full: list[DiffLine], context: int) -> tuple[list[DiffLine], bool]:
    """The changed and ignored lines with `context` unchanged lines around them, "…" where
    unchanged lines are left out; nothing at all when no line differs."""
    marked = [i for i, line in enumerate(full) if line.op != "same"]
    if not marked:
        return [], False
    keep = set()
    for i in marked:
        keep.update(range(max(0, i - context), min(len(full), i + context + 1)))
    out: list[DiffLine] = []
    previous = None
    for i in sorted(keep):
        if previous is not None and i != previous + 1:
            out.append(DiffLine("same", "…"))
        out.append(full[i])
        previous = i
        if len(out) >= MAX_DIFF_LINES:
            return out, True
    return out, False


def diff_counts(lines: list[DiffLine]) -> dict[str, int]:
    """How many lines of a diff were added, removed and ignored (context not counted)."""
    counts = {"added": 0, "removed": 0, "ignored": 0}
    for line in lines:
        if line.op in counts:
            counts[line.op] += 1
    return counts


def previous_snapshot(snapshot: Snapshot, *columns: object) -> Snapshot | None:
    """The stream's snapshot just before this one (by capture time, then id), or None."""
    return (
        Snapshot.select(*columns)
        .where(
            (Snapshot.stream == snapshot.stream_id)
            & (
                (Snapshot.captured_at < snapshot.captured_at)
                | ((Snapshot.captured_at == snapshot.captured_at) & (Snapshot.id < snapshot.id))
            )
        )
        .order_by(Snapshot.captured_at.desc(), Snapshot.id.desc())
        .first()
    )


def judge_website(stream: Stream, snapshot: Snapshot, result: DetectionResult) -> DetectionResult:
    """A website snapshot's verdict by its stream's `change_by`: the picture's (pixels outside
    the masks, as detected), the text's (ignored patterns removed), or either. The first
    snapshot with text has nothing to compare with: unchanged, note "first"."""
    if stream.kind != "website":
        return result
    try:
        config = WebsiteConfig.model_validate(stream.config or {})
    except ValidationError:
        return result
    if config.change_by == "picture" or snapshot.text is None:
        return result
    before = previous_snapshot(snapshot, Snapshot.text)
    if before is None or before.text is None:
        by_text, note = False, "first"
    else:
        by_text = text_changed(before.text, snapshot.text, config.ignore_text)
        note = "text changed" if by_text else "text unchanged"
    if config.change_by == "either":
        if result.changed and not by_text:
            return result
        changed = result.changed or by_text
    else:
        changed = by_text
    return replace(result, changed=changed, note=note)
