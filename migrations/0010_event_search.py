"""Full-text search over events and summaries (issue 12): what /events?q=words searches.

SQLite: an FTS5 table `event_fts` (rowid = event id) holding each event's title and its
searchable body (description, objects the AI saw, objects a rule matched), kept current by
triggers on `event` and back-filled here.

PostgreSQL: a GIN index on the same document computed from the row itself
(`glimpser.web.search.PG_DOCUMENT`), so nothing needs keeping current.

Both use no stemming (FTS5 `unicode61`, PostgreSQL's `simple` configuration), so a word
matches the same events on either database.
"""

import peewee

# The searchable body of an event row `r` (SQLite). Event.data is JSON written by JSONField;
# json_valid guards the trigger against anything else, so a bad row never blocks a write.
_SQLITE_BODY = """
    coalesce({r}.description, '') || ' ' ||
    CASE WHEN json_valid({r}.data) THEN
        coalesce(json_extract({r}.data, '$.objects'), '') || ' ' ||
        coalesce(json_extract({r}.data, '$.matched_objects'), '')
    ELSE '' END
"""

# Constant SQL assembled from the fragments above (no input reaches it).
_SQLITE = [
    "CREATE VIRTUAL TABLE event_fts USING fts5("
    "title, body, tokenize = 'unicode61 remove_diacritics 2')",
    "INSERT INTO event_fts (rowid, title, body) "  # noqa: S608
    f"SELECT e.id, e.title, {_SQLITE_BODY.format(r='e')} FROM event AS e",
    "CREATE TRIGGER event_fts_insert AFTER INSERT ON event BEGIN "  # noqa: S608
    "INSERT INTO event_fts (rowid, title, body) "
    f"VALUES (new.id, new.title, {_SQLITE_BODY.format(r='new')}); END",
    "CREATE TRIGGER event_fts_update AFTER UPDATE OF title, description, data ON event "  # noqa: S608
    "BEGIN "
    "DELETE FROM event_fts WHERE rowid = old.id; "
    "INSERT INTO event_fts (rowid, title, body) "
    f"VALUES (new.id, new.title, {_SQLITE_BODY.format(r='new')}); END",
    "CREATE TRIGGER event_fts_delete AFTER DELETE ON event BEGIN "
    "DELETE FROM event_fts WHERE rowid = old.id; END",
    # Summaries' text (rowid = summary id), searched beside the events.
    "CREATE VIRTUAL TABLE summary_fts USING fts5(text, tokenize = 'unicode61 remove_diacritics 2')",
    "INSERT INTO summary_fts (rowid, text) SELECT id, coalesce(text, '') FROM summary",
    "CREATE TRIGGER summary_fts_insert AFTER INSERT ON summary BEGIN "
    "INSERT INTO summary_fts (rowid, text) VALUES (new.id, coalesce(new.text, '')); END",
    "CREATE TRIGGER summary_fts_update AFTER UPDATE OF text ON summary BEGIN "
    "DELETE FROM summary_fts WHERE rowid = old.id; "
    "INSERT INTO summary_fts (rowid, text) VALUES (new.id, coalesce(new.text, '')); END",
    "CREATE TRIGGER summary_fts_delete AFTER DELETE ON summary BEGIN "
    "DELETE FROM summary_fts WHERE rowid = old.id; END",
]

# Must stay identical to glimpser.web.search.PG_DOCUMENT, or the index is not used.
_PG_DOCUMENT = (
    "to_tsvector('simple'::regconfig, coalesce(title, '') || ' ' || coalesce(description, '')"
    " || ' ' || coalesce((data::jsonb) ->> 'objects', '')"
    " || ' ' || coalesce((data::jsonb) ->> 'matched_objects', ''))"
)

_PG_SUMMARY = "to_tsvector('simple'::regconfig, coalesce(text, ''))"  # = search.PG_SUMMARY


def up(db: peewee.Database) -> None:
    if isinstance(db, peewee.PostgresqlDatabase):
        db.execute_sql(f"CREATE INDEX event_search ON event USING GIN (({_PG_DOCUMENT}))")
        db.execute_sql(f"CREATE INDEX summary_search ON summary USING GIN (({_PG_SUMMARY}))")
    else:
        for statement in _SQLITE:
            db.execute_sql(statement)
