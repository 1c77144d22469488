"""Admin page to export the whole set-up (streams, rules, notification channels) as JSON and
import Glimpser or glimpser-rs exports."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, SelectField

from glimpser import times
from glimpser.models import NotificationChannel, Rule, Stream
from glimpser.transfer import (
    MAX_IMPORT_BYTES,
    ImportReport,
    TransferError,
    dumps_document,
    export_streams,
    import_streams,
    load_document,
)
from glimpser.web.app_settings import current_settings

bp = Blueprint("admin_transfer", __name__, url_prefix="/admin/transfer")

MODE_CHOICES = [
    ("skip", "Skip it: keep the existing one"),
    (
        "overwrite",
        "Overwrite it: keep its history, status and stored secrets, replace its settings",
    ),
    ("rename", "Import a copy under a new name"),
]


class ImportForm(FlaskForm):
    file = FileField(
        "Export file (JSON)",
        validators=[FileRequired("Choose an export file to import.")],
        render_kw={"accept": ".json,application/json"},
    )
    mode = SelectField(
        "When a stream, rule or channel with the same name exists",
        choices=MODE_CHOICES,
        default="skip",
    )
    dry_run = BooleanField("Dry run: only show what would happen, change nothing")


def _page(
    form: ImportForm, report: ImportReport | None = None, error: str = "", status: int = 200
) -> tuple[str, int]:
    return render_template(
        "admin/transfer.html",
        form=form,
        report=report,
        error=error,
        stream_count=Stream.select().count(),
        rule_count=Rule.select().count(),
        channel_count=NotificationChannel.select().count(),
        max_mb=MAX_IMPORT_BYTES // (1024 * 1024),
        channels_url=_channels_url(),
    ), status


def _channels_url() -> str:
    """Admin → Channels, when that page is registered (it comes with the channel UI)."""
    if "admin_channels.index" in current_app.view_functions:
        return url_for("admin_channels.index")
    return ""


@bp.route("/", methods=["GET", "POST"])
def index():
    form = ImportForm()
    if not form.is_submitted():
        return _page(form)
    if not form.validate():
        return _page(form, status=400)
    upload = form.file.data
    try:
        data = load_document(upload.stream.read(MAX_IMPORT_BYTES + 1))
        report = import_streams(
            data,
            form.mode.data,
            dry_run=form.dry_run.data,
            actor=current_user._get_current_object(),
            ip=request.remote_addr or "",
            via="web",
            source=upload.filename or "",
            ai_configured=current_settings().ai_configured,
        )
    except TransferError as exc:
        return _page(form, error=str(exc), status=exc.status)
    return _page(form, report, status=409 if report.failure else 200)


@bp.get("/export.json")
def export():
    include_secrets = request.args.get("secrets") == "1"
    document = export_streams(
        include_secrets=include_secrets,
        actor=current_user._get_current_object(),
        ip=request.remote_addr or "",
        via="web",
    )
    stamp = times.utcnow().strftime("%Y%m%d-%H%M%S")
    name = f"glimpser-setup-{stamp}{'-with-passwords' if include_secrets else ''}.json"
    return Response(
        dumps_document(document),
        mimetype="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
