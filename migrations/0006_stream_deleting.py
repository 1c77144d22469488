"""Streams being deleted: hidden at once, removed by a job (glimpser.media.deletion)."""

import peewee
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate

from glimpser.db import UTCDateTimeField


def up(db: peewee.Database) -> None:
    migrator = (
        PostgresqlMigrator(db) if isinstance(db, peewee.PostgresqlDatabase) else SqliteMigrator(db)
    )
    migrate(migrator.add_column("stream", "deleting_since", UTCDateTimeField(null=True)))
