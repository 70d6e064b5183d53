"""Shared helpers for routing's YAML files: validation with a context, and department checks."""

from __future__ import annotations

import string
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationInfo

from routing.departments import DepartmentDirectory
from yxby.errors import ConfigError
from yxby.yamlconf import Located, line_for, load_located

__all__ = [
    "CanonicalDepartment",
    "check_department",
    "check_template",
    "error_at",
    "load_with_context",
    "non_empty",
]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def load_with_context(
    path: Path, model: type[M], departments: DepartmentDirectory | None
) -> tuple[M, Located]:
    """Like ``yxby.yamlconf.load_model``, but validators see *departments* in their context.

    Returns the model and the located document (for line numbers of later checks).
    """
    return load_located(path, model, context={"departments": departments})


def error_at(message: str, path: Path | str, doc: Located, loc: Sequence[str | int]) -> ConfigError:
    """A ``ConfigError`` for the key at *loc* of *doc* (line of the nearest known key)."""
    return ConfigError(
        message,
        path=str(path),
        line=line_for(doc.lines, loc, doc.start_line),
        key=".".join(str(p) for p in loc),
    )


def check_department(name: str, info: ValidationInfo) -> str:
    """Pydantic validator body: *name* must be a canonical department (when one is known)."""
    directory = (info.context or {}).get("departments")
    if not isinstance(directory, DepartmentDirectory):
        return name
    dept = directory.find(name)
    if dept is None:
        known = "、".join(sorted(directory.names))
        raise ValueError(f"unknown department '{name}' (expected one of: {known})")
    if dept.name != name:
        raise ValueError(f"'{name}' is an alias; write the canonical name '{dept.name}'")
    return name


def check_template(template: str, allowed: Collection[str]) -> str:
    """*template* must be a valid ``str.format`` template using only *allowed* fields."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"broken template: {exc}") from None
    for f in fields:
        if f not in allowed:
            names = ", ".join("{" + a + "}" for a in sorted(allowed))
            raise ValueError(f"unknown placeholder {{{f}}} (allowed: {names})")
    return template


def non_empty(value: tuple[T, ...]) -> tuple[T, ...]:
    """Pydantic validator body: at least one item.

    Used instead of ``Field(min_length=1)`` on tuples of models, which adds a misleading
    “at least 1 item” error whenever an item is invalid.
    """
    if not value:
        raise ValueError("must list at least one item")
    return value


CanonicalDepartment = Annotated[str, AfterValidator(check_department)]
"""A department name that must be canonical when validated with a department context."""
