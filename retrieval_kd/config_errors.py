"""pydantic's structured validation errors → one line in rkd's format.

``recipe.toml: [train].lr: expected a number > 0, got 0``: the section, the field path (nested
tables such as ``[eval].systems[0].name`` included), what was expected and what was found; unknown
fields are reported together with the valid names.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from retrieval_kd.errors import ConfigError

__all__ = ["translate"]

_DEVICE_CHOICES = "'auto', 'cpu', 'cuda', 'cuda:N', 'xpu', 'xpu:N' or 'mps'"

_TYPE_WORDS = {
    "float_type": "a number",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "a table",
    "tuple_type": "a list",
    "list_type": "a list",
}


def _kind(section: type[BaseModel], field: str) -> str:
    """``an integer`` or ``a number``: how to name a bounded field's type."""
    info = section.model_fields.get(field)
    text = str(info.annotation) if info is not None else ""
    return "an integer" if "int" in text else "a number"


def _num(bound: float) -> str:
    """``0`` for 0.0: bounds read as the user would write them."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _expected(error: Any, section: type[BaseModel], field: str) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    if kind == "greater_than_equal":
        return f"{_kind(section, field)} >= {_num(ctx['ge'])}"
    if kind == "greater_than":
        return f"{_kind(section, field)} > {_num(ctx['gt'])}"
    if kind == "less_than":
        return f"{_kind(section, field)} < {_num(ctx['lt'])}"
    if kind == "less_than_equal":
        return f"{_kind(section, field)} <= {_num(ctx['le'])}"
    if kind == "finite_number":
        return "a finite number"
    if kind == "literal_error":
        return f"one of {ctx['expected'].replace(' or ', ', ')}"
    if kind == "string_too_short":
        return "a non-empty string"
    if kind == "too_short":
        return "a non-empty list"
    if kind == "string_pattern_mismatch" and field == "device":
        return _DEVICE_CHOICES
    if kind == "value_error":  # our validators raise ValueError(what was expected)
        return str(ctx["error"])
    return str(error["msg"]).removeprefix("Input should be ").removeprefix("Value error, ")


def _nested(section: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel]:
    """The model class at ``loc`` inside ``section`` (list positions skipped)."""
    model = section
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation
        candidates = [annotation, *typing.get_args(annotation)]
        model = next(c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel))
    return model


def translate(error: ValidationError, section: type[BaseModel], where: str) -> ConfigError:
    """The first problem of a section's :class:`ValidationError`, as one line; unknown fields are
    reported together, with the valid names."""
    errors = error.errors(include_url=False)
    extra = [e["loc"] for e in errors if e["type"] == "extra_forbidden"]
    if extra:
        # a nested table ([[eval.systems]]) names its own path and fields
        parent, model = extra[0][:-1], _nested(section, extra[0][:-1])
        unknown = sorted(str(loc[-1]) for loc in extra if loc[:-1] == parent)
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parent)
        return ConfigError(
            f"{where}{path}: unknown field(s) {unknown}; valid fields: {list(model.model_fields)}"
        )
    first = errors[0]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    top = str(first["loc"][0]) if first["loc"] else ""
    got = first["input"]
    return ConfigError(f"{where}{field}: expected {_expected(first, section, top)}, got {got!r}")
