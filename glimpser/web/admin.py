"""The admin area (admin role only, enforced by the access policy for the whole blueprint)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from glimpser import system_status
from glimpser.models import AuditLog, User

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
def index():
    status = system_status.collect(current_app.extensions["glimpser.redis"])
    users = User.select().order_by(User.username)
    audit = AuditLog.select().order_by(AuditLog.at.desc()).limit(20)
    return render_template("admin/index.html", status=status, users=users, audit=audit)
