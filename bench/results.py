"""docs/benchmarks.md: each benchmark script owns one section between its own markers."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\nNumbers from the `bench/` scripts (`make bench`), each beside a floor "
    "measured in the same run. Rerun them on your machine; never compare across machines.\n"
)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_section(name: str, section: str) -> None:
    """Replace the named section (markers included in `section`), or append it."""
    begin, end = markers(name)
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)
