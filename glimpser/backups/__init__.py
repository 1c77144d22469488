"""Backups of a Glimpser installation: one tar.gz archive with a manifest.

Inside: a consistent copy of the database (SQLite's online backup API, or `pg_dump
--format=custom` for PostgreSQL), the generated secret key file of the data directory, and
optionally the snapshot files (local storage only). Settings rows, users, streams, rules,
channels (with their secrets) and the Web Push VAPID key pair live in the database, so they
come with it. See glimpser.backups.archive and docs/updates.md ("Backups").
"""
