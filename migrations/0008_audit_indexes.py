"""Indexes for Admin → Audit's filters: by action, by object (target) and by user, each
newest first (the log is read by time within a filter)."""

import peewee


def up(db: peewee.Database) -> None:
    for name, columns in (
        ("audit_log_action_at", "action, at"),
        ("audit_log_target_at", "target, at"),
        ("audit_log_user_id_at", "user_id, at"),
    ):
        db.execute_sql(f"CREATE INDEX IF NOT EXISTS {name} ON audit_log ({columns})")
