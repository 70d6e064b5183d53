"""YAML loading that remembers line numbers, and typed config models that name the bad key.

``load_documents`` parses a file into plain Python data plus a map from each key path to
its line; ``load_model`` validates a config file into a pydantic model and turns every
validation failure into a :class:`~yxby.errors.ConfigError` saying file, line, key and what
was expected.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from yxby.errors import ConfigError

__all__ = [
    "Located",
    "StrictModel",
    "YamlIssue",
    "format_validation_error",
    "line_for",
    "load_documents",
    "load_located",
    "load_model",
    "validation_issues",
]

KeyPath = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config and content models: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """A private safe-loader subclass (libyaml-backed when available, so loading is fast);
    the global ``yaml.SafeLoader`` is never mutated.

    Timestamps are left as strings: the typed models parse dates themselves, so a bad date
    becomes a validation error with its key and line instead of a bare ``ValueError``.
    """

    yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, Any]]]] = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


@dataclass(frozen=True)
class Located:
    """One YAML document: its data, the line of every key path, and where it starts."""

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    start_line: int = 1


@dataclass(frozen=True)
class YamlIssue:
    """A problem found while reading YAML, with its position."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], src: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, yaml.ScalarNode) else str(knode.value)
            line = knode.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"duplicate key (first at line {seen[key]})", path=src, line=line, key=key
                )
            seen[key] = line
            lines[(*path, key)] = line
            _walk(vnode, (*path, key), lines, src)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), lines, src)


def _iter_documents(text: str, src: str) -> Iterator[Located]:
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node guarantees a node
                break
            lines: dict[KeyPath, int] = {(): node.start_mark.line + 1}
            _walk(node, (), lines, src)
            try:
                data = loader.construct_document(node)
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"cannot read value: {exc}", path=src, line=node.start_mark.line + 1
                ) from None
            yield Located(data=data, lines=lines, start_line=node.start_mark.line + 1)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"broken YAML: {problem}", path=src, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"broken YAML: {exc}", path=src) from None
    finally:
        loader.dispose()


def load_documents(path: Path | str) -> list[Located]:
    """Parse every YAML document in *path*; raise ``ConfigError`` with file:line on bad YAML."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", path=str(p)) from None
    return list(_iter_documents(text, str(p)))


def line_for(lines: Mapping[KeyPath, int], loc: Sequence[str | int], default: int = 1) -> int:
    """Line of the longest prefix of *loc* that appears in *lines*."""
    for n in range(len(loc), -1, -1):
        hit = lines.get(tuple(loc[:n]))
        if hit is not None:
            return hit
    return default


def _describe(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (not allowed here)"
    if kind == "missing":
        return "required key is missing"
    return str(err.get("msg", "invalid value"))


def validation_issues(
    exc: ValidationError,
    src: str,
    lines: Mapping[KeyPath, int],
    prefix: KeyPath = (),
) -> list[YamlIssue]:
    """Turn a pydantic error into positioned issues (one per failing key)."""
    issues = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        # pydantic adds the name of a tagged/union member to loc; keep only real keys
        key = ".".join(str(p) for p in loc) or "(document)"
        line = line_for(lines, (*prefix, *loc))
        issues.append(YamlIssue(src, line, f"'{key}': {_describe(err)}"))
    return issues


def format_validation_error(
    exc: ValidationError, src: str, lines: Mapping[KeyPath, int]
) -> ConfigError:
    """One ``ConfigError`` listing every failing key with its line (first one in the fields)."""
    issues = validation_issues(exc, src, lines)
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or None
    if len(issues) == 1:
        return ConfigError(_describe(first), path=src, line=issues[0].line, key=key)
    body = "\n".join(f"  {i}" for i in issues)
    return ConfigError(f"{len(issues)} problems:\n{body}", path=src, line=issues[0].line, key=key)


def load_located(
    path: Path | str, model: type[M], *, context: dict[str, Any] | None = None
) -> tuple[M, Located]:
    """Load a single-document YAML file into *model* and also return the located document.

    *context* is passed to the model's validators (pydantic ``ValidationInfo.context``).
    Raises ``ConfigError`` naming file, line, key and what was expected.
    """
    docs = load_documents(path)
    src = str(path)
    if len(docs) != 1:
        raise ConfigError(f"expected exactly one YAML document, found {len(docs)}", path=src)
    doc = docs[0]
    if not isinstance(doc.data, dict):
        raise ConfigError("expected a mapping at the top level", path=src, line=doc.start_line)
    try:
        return model.model_validate(doc.data, context=context), doc
    except ValidationError as exc:
        raise format_validation_error(exc, src, doc.lines) from None


def load_model(path: Path | str, model: type[M]) -> M:
    """Load a single-document YAML config file into *model*, or raise ``ConfigError``."""
    return load_located(path, model)[0]
