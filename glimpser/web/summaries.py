"""AI summaries: /summaries lists the summaries a user may see (per stream and across streams),
and "Summarise now" asks for one of the last hour, 24 hours or 7 days.

Visibility is glimpser.analysis.summaries.visible_summaries(): a stream's summaries for those
who may see the stream, a multi-stream summary only for those who may see every stream in it
(or who asked for it); admins see all. Anything else answers 404. The web process only
records the request and enqueues the build on the analysis queue.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from glimpser.analysis import summaries as service
from glimpser.auth.access import get_visible_stream, visible_streams
from glimpser.models import Stream, Summary
from glimpser.web.app_settings import current_settings
from glimpser.web.htmx import is_fragment_request as _is_htmx
from glimpser.web.params import is_number, parse_id, parse_int

bp = Blueprint("summaries", __name__, url_prefix="/summaries")

PAGE_SIZE = 20
MAX_PAGE = 100_000
PERIODS: dict[str, str] = {"hour": "Hourly", "day": "Daily", "custom": "On demand"}


def _settings():  # noqa: ANN202
    return current_settings()


def _form_context(form: MultiDict | None = None, errors: dict | None = None) -> dict:
    form = form or MultiDict()
    return {
        "ai_configured": _settings().ai_configured,
        "my_streams": list(visible_streams().order_by(Stream.name)),
        "windows": {k: label for k, (label, _delta) in service.CUSTOM_WINDOWS.items()},
        "values": {"scope": form.get("scope", "all"), "window": form.get("window", "hour")},
        "errors": errors or {},
    }


def _item_context() -> dict:
    return {
        "periods": PERIODS,
        "scope_label": service.scope_label,
        "paragraphs": service.paragraphs,
    }


def _filters() -> tuple[Stream | None, str]:
    """The list filters from the query string: a stream the user may see, and a period."""
    stream = None
    stream_arg = request.args.get("stream", "")
    if stream_arg:
        if not is_number(stream_arg):
            abort(400)
        stream_id = parse_id(stream_arg)
        if stream_id is None:
            abort(404)  # a number, but no row can have it
        stream = get_visible_stream(stream_id)
    period = request.args.get("period", "")
    if period and period not in PERIODS:
        abort(400)
    return stream, period


def _render_index(form: MultiDict | None = None, errors: dict | None = None):  # noqa: ANN202
    stream, period = _filters()
    page_arg = request.args.get("page", "1")
    page = min(MAX_PAGE, max(1, parse_int(page_arg) or 1))
    query = service.visible_summaries(current_user)
    if stream is not None:
        query = query.where(Summary.stream == stream.id)
    if period:
        query = query.where(Summary.period == period)
    rows = list(
        query.order_by(Summary.window_end.desc(), Summary.id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE + 1)
    )
    if form is None and stream is not None:
        form = MultiDict({"scope": str(stream.id)})
    return render_template(
        "summaries/index.html",
        summaries=rows[:PAGE_SIZE],
        page=page,
        has_next=len(rows) > PAGE_SIZE,
        filter_stream=stream,
        filter_period=period,
        **_form_context(form, errors),
        **_item_context(),
    )


@bp.get("/")
def index():
    """The list (newest first), filtered and paginated, with the "Summarise now" form."""
    return _render_index()


def _visible_summary(summary_id: int) -> Summary:
    summary = service.visible_summaries(current_user).where(Summary.id == summary_id).first()
    if summary is None:
        abort(404)
    return summary


@bp.get("/<int:summary_id>")
def item(summary_id: int):
    """One summary: the fragment htmx polls while it is queued or running, else a page."""
    summary = _visible_summary(summary_id)
    if _is_htmx():
        return render_template("summaries/_item.html", summary=summary, **_item_context())
    return render_template("summaries/detail.html", summary=summary, **_item_context())


def _form_error(errors: dict, status: int):  # noqa: ANN202
    if _is_htmx():
        response = make_response(
            render_template("summaries/_form.html", **_form_context(request.form, errors)), status
        )
        response.headers["HX-Retarget"] = "#summary-form"
        response.headers["HX-Reswap"] = "outerHTML"
        return response
    return _render_index(request.form, errors), status


@bp.post("/")
def create():
    """Ask for a summary of one visible stream, or of every stream the user may see."""
    if not _settings().ai_configured:
        return _form_error({"scope": f"{service.AI_NOT_CONFIGURED}: summaries need the AI."}, 409)
    scope = request.form.get("scope", "")
    window = request.form.get("window", "")
    errors: dict[str, str] = {}
    stream = None
    if is_number(scope):
        scope_id = parse_id(scope)
        if scope_id is None:
            abort(404)
        stream = get_visible_stream(scope_id)  # 404 for a stream the user may not see
    elif scope != "all":
        errors["scope"] = "Choose a stream or all your streams."
    if window not in service.CUSTOM_WINDOWS:
        errors["window"] = "Choose a time window."
    if errors:
        return _form_error(errors, 422)
    try:
        summary = service.submit_request(
            current_user,
            stream,
            window,
            current_app.extensions["glimpser.redis"],
            ai_configured=True,  # checked first, above
        )
    except service.RequestRefused as exc:
        return _form_error({exc.field: exc.message}, exc.status)
    if _is_htmx():
        return render_template("summaries/_item.html", summary=summary, **_item_context())
    return redirect(url_for("summaries.index"), 303)
