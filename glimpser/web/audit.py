"""The audit log entry of an action taken in the web UI: by the signed-in user, from the
request's client address.

Call `audit()` inside the same `write_transaction()` as the change it describes, so that a
change never lacks its entry and a failed change leaves none. A change to an object records
what changed, field by field, with `field_changes()`: `{"changes": {field: [before, after]}}`,
secret fields masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import request
from flask_login import current_user

from glimpser.models import AuditLog

SECRET_MASK = "••••"  # noqa: S105 - what the log shows instead of a secret


def audit(action: str, target: str, detail: dict[str, Any]) -> None:
    """Record `action` on `target` (e.g. "rule:3") by the signed-in user, with `detail`."""
    AuditLog.create(
        user=current_user.id,
        action=action,
        target=target,
        detail=detail,
        ip=request.remote_addr or "",
    )


def field_changes(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    secret_fields: Iterable[str] = (),
) -> dict[str, list[Any]]:
    """`{field: [before, after]}` for each field whose value differs between the two mappings
    (a field missing on one side is None there). A secret field shows only that it changed,
    as SECRET_MASK (or None when it was or became empty)."""
    secret = set(secret_fields)
    changes: dict[str, list[Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name in secret:
            old, new = (SECRET_MASK if old else None), (SECRET_MASK if new else None)
        changes[name] = [old, new]
    return changes
