"""Text changes of website snapshots: ignore rules, "did the text change?", and a line diff.

A website stream may keep its page's text (WebsiteConfig.extract_text; Snapshot.text). Before
two texts are compared, the stream's ignore patterns (regular expressions, e.g. a clock) are
removed from both and runs of blank space are collapsed, so a ticking clock or reflowed lines do
not count as a change. The patterns are validated by the schema, compiled once (cached), and
run with Python's `re` on text cut to TEXT_MAX_CHARS, which bounds their cost.
"""

from __future__ import annotations

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


def normalise(text: str | None, patterns: tuple[str, ...] | list[str] = ()) -> str:
    """The text as compared: bounded, ignored patterns removed, blank space collapsed per line,
    blank lines dropped."""
    text = (text or "")[:TEXT_MAX_CHARS]
    for pattern in _compiled(tuple(patterns)):
        text = pattern.sub("", text)
    lines = (_SPACE.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def text_changed(
    previous: str | None, current: str | None, patterns: tuple[str, ...] | list[str] = ()
) -> bool:
    """Does the text differ once the ignored patterns are removed from both?"""
    return normalise(previous, patterns) != normalise(current, patterns)


@dataclass(frozen=True)
class DiffLine:
    """One line of a text diff: "added", "removed" or "same" (context)."""

    op: Literal["added", "removed", "same"]
    text: str


def diff_lines(
    previous: str | None, current: str | None, context: int = 2
) -> tuple[list[DiffLine], bool]:
    """Added and removed lines between two texts (with a little context), and whether the
    list was cut at MAX_DIFF_LINES. Rendered escaped by the template."""
    before = (previous or "")[:TEXT_MAX_CHARS].splitlines()
    after = (current or "")[:TEXT_MAX_CHARS].splitlines()
    out: list[DiffLine] = []
    for number, line in enumerate(difflib.unified_diff(before, after, n=context, lineterm="")):
        if number < 2:  # the "--- / +++" file header
            continue
        if line.startswith("@@"):
            if out:
                out.append(DiffLine("same", "…"))
            continue
        op: Literal["added", "removed", "same"] = (
            "added" if line[:1] == "+" else "removed" if line[:1] == "-" else "same"
        )
        out.append(DiffLine(op, line[1:]))
        if len(out) >= MAX_DIFF_LINES:
            return out, True
    return out, False


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
