"""The audit log entry of an action taken in the web UI: by the signed-in user, from the
request's client address."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_login import current_user

from glimpser.models import AuditLog


def audit(action: str, target: str, detail: dict[str, Any]) -> None:
    """Record `action` on `target` (e.g. "rule:3") by the signed-in user, with `detail`."""
    AuditLog.create(
        user=current_user.id,
        action=action,
        target=target,
        detail=detail,
        ip=request.remote_addr or "",
    )
