"""The operator's console: each user's time zone and view preferences, and the text of a
website snapshot (for text diffs)."""

import peewee
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate


def up(db: peewee.Database) -> None:
    migrator = (
        PostgresqlMigrator(db) if isinstance(db, peewee.PostgresqlDatabase) else SqliteMigrator(db)
    )
    migrate(
        migrator.add_column("user", "timezone", peewee.CharField(max_length=64, default="")),
        migrator.add_column("user", "preferences", peewee.TextField(default="{}")),
        migrator.add_column("snapshot", "text", peewee.TextField(null=True)),
    )
