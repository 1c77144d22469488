"""Full-text search over events (and summaries): what `/events?q=words` finds, and the words it
highlights.

The index is built by migration 0010: an FTS5 table kept current by triggers on SQLite, a GIN
index on a `to_tsvector` expression on PostgreSQL. Both index the event's title, description
(the AI description for AI events) and the objects in Event.data (what the AI saw, what a rule
matched), without stemming.

A query is read as plain words, never as search syntax: `parse_query` keeps only the letters
and digits of each word (so quotes, `*`, `NEAR`, `-`, `:` or parentheses cannot reach FTS5 or
`to_tsquery` as operators), and every word must match the start of a word of the event
("pers" finds "person"). Results are then highlighted with `highlight`, which escapes the
text first and marks the matches after.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import peewee
from markupsafe import Markup, escape

from glimpser.db import database
from glimpser.models import Event, Summary

MAX_QUERY_CHARS = 200
MAX_WORDS = 12
MAX_WORD_CHARS = 64

# Letters and digits of any script; the underscore is a separator (as in both tokenizers).
_WORD = re.compile(r"[^\W_]+")

# Must stay identical to the expression of the index in migrations/0010_event_search.py.
PG_DOCUMENT = (
    "to_tsvector('simple'::regconfig, coalesce(title, '') || ' ' || coalesce(description, '')"
    " || ' ' || coalesce((data::jsonb) ->> 'objects', '')"
    " || ' ' || coalesce((data::jsonb) ->> 'matched_objects', ''))"
)


PG_SUMMARY = "to_tsvector('simple'::regconfig, coalesce(text, ''))"


class QueryError(ValueError):
    """A search the user must rephrase; the message says how (shown with a 400)."""


def parse_query(raw: str) -> list[str]:
    """The words to search for, lower-cased and without repeats; [] for a blank query.

    Raises QueryError for what cannot be searched: too long, a NUL, too many words, or only
    punctuation.
    """
    text = raw.strip()
    if not text:
        return []
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"Search for at most {MAX_QUERY_CHARS} characters.")
    if "\x00" in text:
        raise QueryError("The search contains a NUL character.")
    words: list[str] = []
    for word in _WORD.findall(text.casefold()):
        word = word[:MAX_WORD_CHARS]
        if word not in words:
            words.append(word)
    if not words:
        raise QueryError("Search for words made of letters or digits.")
    if len(words) > MAX_WORDS:
        raise QueryError(f"Search for at most {MAX_WORDS} words.")
    return words


def _is_postgres() -> bool:
    return isinstance(database.obj, peewee.PostgresqlDatabase)


def matches(words: list[str]) -> peewee.Expression:
    """A condition on Event: the event contains every word (as a word or a word's start)."""
    if _is_postgres():
        # 'word':* is a prefix match; the words hold only letters and digits (parse_query).
        tsquery = " & ".join(f"'{w}':*" for w in words)
        # A subquery, so that the expression's columns are the event table's own.
        return Event.id.in_(
            peewee.SQL(
                f"(SELECT id FROM event WHERE {PG_DOCUMENT} "  # noqa: S608 (a constant; words are parameters)
                "@@ to_tsquery('simple'::regconfig, %s))",
                [tsquery],
            )
        )
    # "word"* is an FTS5 prefix query of a quoted string; all words must match (implicit AND).
    fts = " ".join(f'"{w}"*' for w in words)
    return Event.id.in_(peewee.SQL("(SELECT rowid FROM event_fts WHERE event_fts MATCH ?)", [fts]))


def summary_matches(words: list[str]) -> peewee.Expression:
    """A condition on Summary: its text contains every word (as a word or a word's start)."""
    if _is_postgres():
        tsquery = " & ".join(f"'{w}':*" for w in words)
        return Summary.id.in_(
            peewee.SQL(
                f"(SELECT id FROM summary WHERE {PG_SUMMARY} "  # noqa: S608 (a constant)
                "@@ to_tsquery('simple'::regconfig, %s))",
                [tsquery],
            )
        )
    fts = " ".join(f'"{w}"*' for w in words)
    return Summary.id.in_(
        peewee.SQL("(SELECT rowid FROM summary_fts WHERE summary_fts MATCH ?)", [fts])
    )


def highlight(text: object, words: Iterable[str] | None) -> Markup:
    """`text` escaped, with each word that starts with a searched word inside <mark>."""
    value = "" if text is None else str(text)
    words = [w for w in (words or []) if w]
    if not words:
        return escape(value)
    pattern = re.compile(
        r"(?<![^\W_])(?:" + "|".join(re.escape(w) for w in words) + r")[^\W_]*", re.IGNORECASE
    )
    out: list[str] = []
    last = 0
    for match in pattern.finditer(value):
        out.append(escape(value[last : match.start()]))
        out.append(Markup("<mark>") + escape(match.group(0)) + Markup("</mark>"))
        last = match.end()
    out.append(escape(value[last:]))
    return Markup("").join(out)
