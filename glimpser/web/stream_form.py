"""The stream form, derived from the kind schemas (glimpser.sources.schemas): one source of
truth for field names, labels, limits and validation, shared with the import, API and worker.

Form names: stream fields as they are (`name`, `interval`, …), kind fields as `config.<field>`.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from annotated_types import Ge, Le, MaxLen
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from werkzeug.datastructures import MultiDict

from glimpser.sources.schemas import (
    CONFIG_BY_KIND,
    KIND_LABELS,
    KINDS,
    STREAM_FIELDS,
    StreamSpec,
    error_messages,
)

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
        view.value = "\n".join(value or []) if isinstance(value, list) else value
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
    form: MultiDict, existing_config: dict[str, Any] | None = None
) -> tuple[StreamSpec | None, dict[str, Any], dict[str, Any], dict[str, str]]:
    """Validate a submitted form through StreamSpec.

    Returns (spec or None, stream values, config values, errors). A blank password keeps the
    stored one (passwords are write-only: never rendered back).
    """
    kind = form.get("kind", "")
    if kind not in CONFIG_BY_KIND:
        return None, {}, {}, {"kind": "Choose what kind of source this is."}
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
        value = _form_value(form, f"config.{name}", info)
        if (
            name in model.SECRET_FIELDS
            and value == ""
            and existing_config
            and existing_config.get("kind") == kind
        ):
            value = existing_config.get(name, "")
        config_values[name] = value
    try:
        spec = StreamSpec.model_validate({**stream_values, "config": config_values})
    except ValidationError as exc:
        return None, stream_values, config_values, error_messages(exc)
    return spec, stream_values, config_values, {}
