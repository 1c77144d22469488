"""The stream form, derived from the kind schemas (glimpser.sources.schemas): one source of
truth for field names, labels, limits and validation, shared with the import and the worker.

Form names: stream fields as they are (`name`, `interval`, …), kind fields as `config.<field>`,
analysis settings (glimpser.analysis.schemas.AnalysisSettings) as `analysis.<field>`; masks and
the region of interest travel as JSON text (drawn on a snapshot by static/masks.js).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from annotated_types import Ge, Le, MaxLen
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from werkzeug.datastructures import MultiDict

from glimpser.analysis.schemas import (
    DEFAULT_TRIGGER_PERCENT,
    AnalysisSettings,
    detection_mode,
)
from glimpser.schema_helpers import REENTER_MESSAGE
from glimpser.sources.schemas import (
    CONFIG_BY_KIND,
    KIND_LABELS,
    KINDS,
    STREAM_FIELDS,
    StreamSpec,
    error_messages,
)
from glimpser.transfer.stream_store import keep_stored_secrets

_OPTIONAL_NUMBERS = {"retention_max_age_days", "retention_max_count", "retention_max_bytes"}


@dataclass
class FieldView:
    """What a template needs to render one labelled control."""

    name: str
    label: str
    widget: str  # text, textarea, lines, password, number, checkbox, select
    value: Any = ""
    help: str = ""
    error: str = ""
    options: list[tuple[str, str]] = field(default_factory=list)
    required: bool = False
    min: float | None = None
    max: float | None = None
    step: str = "1"
    maxlength: int | None = None
    has_stored_secret: bool = False
    disabled: bool = False
    placeholder: str = ""

    @property
    def id(self) -> str:
        return "f-" + self.name.replace(".", "-").replace("_", "-")


def _unwrap(annotation: Any) -> Any:
    """int | None → int; leaves other annotations alone."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _view(name: str, info: FieldInfo, value: Any, error: str) -> FieldView:
    annotation = _unwrap(info.annotation)
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    view = FieldView(
        name=name,
        label=info.title or name.replace("_", " ").capitalize(),
        widget="text",
        value="" if value is None else value,
        help=info.description or "",
        error=error,
        required=info.is_required(),
    )
    for meta in info.metadata:
        if isinstance(meta, Ge):
            view.min = meta.ge
        elif isinstance(meta, Le):
            view.max = meta.le
        elif isinstance(meta, MaxLen):
            view.maxlength = meta.max_length
    if extra.get("widget") == "password" or annotation is SecretStr:
        view.widget, view.value = "password", ""
    elif extra.get("widget") == "lines":
        view.widget = "lines"
        view.maxlength = None  # a list's MaxLen counts lines, not characters (the schema checks)
        view.value = "\n".join(value) if isinstance(value, list) else (value or "")
    elif extra.get("widget") == "textarea":
        view.widget = "textarea"
    elif annotation is bool:
        view.widget = "checkbox"
    elif typing.get_origin(annotation) is Literal:
        view.widget = "select"
        view.options = [(str(o), str(o)) for o in typing.get_args(annotation)]
    elif annotation in (int, float):
        view.widget = "number"
        view.step = "1" if annotation is int else "any"
    elif annotation == list[str]:
        view.value = ", ".join(value or []) if isinstance(value, list) else value
    elif name == "description":
        view.widget = "textarea"
    return view


def stream_fields(values: dict[str, Any], errors: dict[str, str]) -> list[FieldView]:
    fields = StreamSpec.model_fields
    return [
        _view(n, fields[n], values.get(n, _default(fields[n])), errors.get(n, ""))
        for n in STREAM_FIELDS
    ]


def kind_fields(
    kind: str,
    values: dict[str, Any],
    errors: dict[str, str],
    stored_secrets: frozenset[str] = frozenset(),
) -> list[FieldView]:
    model = CONFIG_BY_KIND[kind]
    views = []
    for name, info in model.model_fields.items():
        if name == "kind":
            continue
        view = _view(
            f"config.{name}",
            info,
            values.get(name, _default(info)),
            errors.get(f"config.{name}", ""),
        )
        view.has_stored_secret = name in stored_secrets
        views.append(view)
    return views


def kind_options() -> list[tuple[str, str]]:
    return [(k, KIND_LABELS[k]) for k in KINDS]


def _default(info: FieldInfo) -> Any:
    if info.is_required():
        return None
    return info.get_default(call_default_factory=True)


def _form_value(form: MultiDict, name: str, info: FieldInfo) -> Any:
    annotation = _unwrap(info.annotation)
    if annotation is bool:
        return name in form
    if name not in form:
        return _default(info)
    raw = form.get(name, "")
    if annotation in (int, float) and raw.strip() == "":
        return None if typing.get_origin(info.annotation) else _default(info)
    return raw


def parse_form(
    form: MultiDict,
    existing_config: dict[str, Any] | None = None,
    existing_analysis: dict[str, Any] | None = None,
    *,
    ai_configured: bool = False,
) -> tuple[StreamSpec | None, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, str]]:
    """Validate a submitted form through StreamSpec.

    Returns (spec or None, stream values, config values, analysis values, errors). A blank
    password keeps the stored one (passwords are write-only: never rendered back), unless the
    URL now points to another origin: then it must be typed again (schema_helpers).
    `existing_analysis` is the stored stream's settings (None for a new stream): settings the
    form did not offer (AI fields while AI is not configured, or a post without the analysis
    fieldset) keep their stored value instead of being reset.
    """
    base = (
        stored_analysis(existing_analysis)
        if existing_analysis is not None
        else new_stream_analysis(ai_configured)
    )
    analysis_values, analysis_model, analysis_errors = _analysis_values(form, base, ai_configured)
    kind = form.get("kind", "")
    if kind not in CONFIG_BY_KIND:
        return None, {}, {}, analysis_values, {"kind": "Choose what kind of source this is."}
    model = CONFIG_BY_KIND[kind]
    stream_values: dict[str, Any] = {}
    for name in STREAM_FIELDS:
        value = _form_value(form, name, StreamSpec.model_fields[name])
        if name in _OPTIONAL_NUMBERS and value in ("", None):
            value = None
        stream_values[name] = value
    config_values: dict[str, Any] = {"kind": kind}
    for name, info in model.model_fields.items():
        if name == "kind":
            continue
        config_values[name] = _form_value(form, f"config.{name}", info)
    # A blank secret keeps the stored one only while the URL points where it did.
    kept, reenter = keep_stored_secrets(existing_config, config_values, model.SECRET_FIELDS)
    config_values.update(kept)
    errors: dict[str, str] = {f"config.{name}": REENTER_MESSAGE for name in reenter}
    spec: StreamSpec | None = None
    try:
        spec = StreamSpec.model_validate(
            {**stream_values, "config": config_values, "analysis": analysis_model}
        )
    except ValidationError as exc:
        errors = {**_errors(exc), **errors}
    errors = {**errors, **analysis_errors}
    if errors:
        return None, stream_values, config_values, analysis_values, errors
    return spec, stream_values, config_values, analysis_values, {}


# --- analysis settings ------------------------------------------------------------------------

# Present when the form showed the analysis fieldset: only then does a missing checkbox mean
# "unchecked" (a post without the fieldset keeps the stored settings).
ANALYSIS_MARKER = "analysis._shown"
AI_FIELDS: tuple[str, ...] = (
    "describe_on_change",
    "describe_prompt",
    "describe_every_minutes",
    "daily_token_budget",
)
SHAPE_FIELDS: tuple[str, ...] = ("masks", "region")
DETECTION_FIELDS: tuple[str, ...] = tuple(
    n for n in AnalysisSettings.model_fields if n not in AI_FIELDS + SHAPE_FIELDS
)
AI_NOT_CONFIGURED = "AI not configured (set GLIMPSER_AI_BASE_URL and GLIMPSER_AI_MODEL)"


def stored_analysis(data: dict[str, Any] | None) -> dict[str, Any]:
    """A stored stream's analysis settings as form values, every default filled in.

    Settings that no longer validate (an older schema) are shown as stored, so the form can
    show what is wrong instead of failing.
    """
    try:
        return AnalysisSettings.model_validate(data or {}).model_dump(mode="json")
    except ValidationError:
        defaults = AnalysisSettings().model_dump(mode="json")
        return {**defaults, **{k: v for k, v in (data or {}).items() if k in defaults}}


def new_stream_analysis(ai_configured: bool) -> dict[str, Any]:
    """A new stream's settings: with AI configured it describes changes by default, so a new
    user sees descriptions without configuring anything (issue 5)."""
    return AnalysisSettings(describe_on_change=ai_configured).model_dump(mode="json")


def trigger_defaults() -> dict[str, float]:
    """The default trigger percent per kind (0.5 % motion, 0.1 % websites), for the form."""
    return {k: DEFAULT_TRIGGER_PERCENT[detection_mode(k)] for k in KINDS}


def shapes_text(value: Any) -> str:
    """Masks or a region as the JSON text of the form (raw text stays as typed)."""
    if isinstance(value, str):
        return value
    if not value:
        return ""
    return json.dumps(value)


def svg_points(polygon: list[list[float]]) -> str:
    """A polygon as the `points` of an SVG <polygon> in a 0..1 viewBox."""
    return " ".join(f"{float(x):g},{float(y):g}" for x, y in polygon)


def _is_point(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(c, int | float) and not isinstance(c, bool) for c in value)
    )


# masks: [polygon, ...], polygon: [[x, y], ...]: three levels; one spare for a clear message.
MAX_SHAPE_NESTING = 4


def _nesting(text: str) -> int:
    """How deeply JSON text nests its arrays and objects (brackets inside strings ignored)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _parse_shapes(name: str, raw: str) -> Any:
    """JSON text → masks (a list of polygons) or a region (a polygon or None).

    Blank is "none"; a single polygon typed into Masks counts as one mask. Raises ValueError
    with a message for the form when the text is not JSON.
    """
    raw = raw.strip()
    if not raw:
        return [] if name == "masks" else None
    if _nesting(raw) > MAX_SHAPE_NESTING:
        # Checked before parsing: deeply nested text would exhaust the parser's recursion.
        raise ValueError("Too deeply nested: masks are a list of polygons of [x, y] points.")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    if value is None or value == []:
        return [] if name == "masks" else None
    if name == "masks" and isinstance(value, list) and all(_is_point(p) for p in value):
        value = [value]
    return value


def _analysis_values(
    form: MultiDict, base: dict[str, Any], ai_configured: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(values to render again, values to validate, JSON errors) of the analysis fieldset."""
    render = dict(base)
    model = dict(base)
    errors: dict[str, str] = {}
    if ANALYSIS_MARKER not in form:
        return render, model, errors
    fields = AnalysisSettings.model_fields
    for name in DETECTION_FIELDS + AI_FIELDS:
        if name in AI_FIELDS and not ai_configured:
            continue  # shown disabled: nothing posted, the stored value stays
        key = f"analysis.{name}"
        annotation = _unwrap(fields[name].annotation)
        if annotation is not bool and key not in form:
            continue
        render[name] = model[name] = _form_value(form, key, fields[name])
    for name in SHAPE_FIELDS:
        key = f"analysis.{name}"
        if key not in form:
            continue
        raw = form.get(key, "")
        try:
            render[name] = model[name] = _parse_shapes(name, raw)
        except ValueError as exc:
            render[name] = raw
            errors[key] = str(exc)
    return render, model, errors


def _shape_message(field_name: str, indexes: list[int], err: dict[str, Any]) -> str:
    """A readable message for an error inside masks or the region."""
    level = len(indexes) + (1 if field_name == "region" else 0)  # 0 list, 1 shape, 2 point, 3 xy
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if level >= 3:
        if kind in ("less_than_equal", "greater_than_equal"):
            text = "x and y must be between 0 and 1 (fractions of the picture)"
        else:
            text = "x and y must be numbers"
    elif level == 2:
        text = "a point is a pair [x, y]"
    elif level == 1:
        if kind == "too_short":
            text = f"a shape needs at least {ctx.get('min_length', 3)} points"
        elif kind == "too_long":
            text = f"a shape has at most {ctx.get('max_length', 64)} points"
        else:
            text = "a shape is a list of [x, y] points"
    elif kind == "too_long":
        text = f"at most {ctx.get('max_length', 16)} masks"
    else:
        text = "a list of shapes, each a list of [x, y] points"
    if field_name == "masks":
        shape = indexes[0] if indexes else None
        point = indexes[1] if len(indexes) > 1 else None
    else:
        shape, point = None, (indexes[0] if indexes else None)
    where = []
    if shape is not None:
        where.append(f"mask {shape + 1}")
    if point is not None:
        where.append(f"point {point + 1}")
    message = (", ".join(where) + ": " + text) if where else text
    return message[0].upper() + message[1:] + "."


def _errors(exc: ValidationError) -> dict[str, str]:
    """error_messages(), with errors inside masks and the region reported at that field."""
    out = {
        key: message
        for key, message in error_messages(exc).items()
        if not key.startswith(tuple(f"analysis.{n}" for n in SHAPE_FIELDS))
    }
    for err in exc.errors():
        loc = err["loc"]
        if len(loc) >= 2 and loc[0] == "analysis" and loc[1] in SHAPE_FIELDS:
            indexes = [p for p in loc[2:] if isinstance(p, int)]
            out.setdefault(f"analysis.{loc[1]}", _shape_message(str(loc[1]), indexes, err))
    return out


@dataclass
class AnalysisView:
    """The analysis fieldset: fields from AnalysisSettings plus the shapes to draw."""

    detection: list[FieldView]
    masks: FieldView
    region: FieldView
    ai: list[FieldView]
    ai_configured: bool
    mask_points: list[str]
    region_points: str
    trigger_defaults: dict[str, float]
    ai_note: str = AI_NOT_CONFIGURED


def analysis_view(
    kind: str, values: dict[str, Any], errors: dict[str, str], *, ai_configured: bool
) -> AnalysisView:
    """Build the analysis fieldset from the schema's titles, descriptions and limits."""
    fields = AnalysisSettings.model_fields

    def view(name: str) -> FieldView:
        info = fields[name]
        v = _view(
            f"analysis.{name}",
            info,
            values.get(name, _default(info)),
            errors.get(f"analysis.{name}", ""),
        )
        v.required = False
        return v

    detection = [view(n) for n in DETECTION_FIELDS]
    defaults = trigger_defaults()
    for v in detection:
        if v.name == "analysis.sensitivity":
            v.widget = "range"
        elif v.name == "analysis.trigger_percent":
            v.placeholder = f"{defaults.get(kind, DEFAULT_TRIGGER_PERCENT['motion']):g}"
    ai = [view(n) for n in AI_FIELDS]
    for v in ai:
        v.disabled = not ai_configured
        if v.name == "analysis.describe_prompt":
            v.widget = "textarea"
    shapes = {}
    for name in SHAPE_FIELDS:
        v = view(name)
        v.widget = "textarea"
        v.value = shapes_text(values.get(name))
        shapes[name] = v
    mask_points: list[str] = []
    region_points = ""
    try:
        drawn = AnalysisSettings.model_validate(
            {n: values[n] for n in SHAPE_FIELDS if isinstance(values.get(n), list)}
        )
    except ValidationError:
        drawn = None
    if drawn is not None:
        mask_points = [svg_points(m) for m in drawn.masks]
        region_points = svg_points(drawn.region) if drawn.region else ""
    return AnalysisView(
        detection=detection,
        masks=shapes["masks"],
        region=shapes["region"],
        ai=ai,
        ai_configured=ai_configured,
        mask_points=mask_points,
        region_points=region_points,
        trigger_defaults=defaults,
    )
