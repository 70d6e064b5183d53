"""YAML loading that remembers line numbers, and typed config models that name the bad key.

``load_documents`` parses a file into plain Python data plus a map from each key path to
its line; ``load_model`` validates a config file into a pydantic model and turns every
validation failure into a :class:`~yxby.errors.ConfigError` saying file, line, key and what
was expected.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from yxby.errors import ConfigError

__all__ = [
    "Located",
    "StrictModel",
    "YamlIssue",
    "describe_error",
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


_YAML_PROBLEMS = (
    ("mapping values are not allowed", "此处不能写“键: 值”（缩进不对，或值中的冒号需要加引号）"),
    ("did not find expected ',' or ']'", "缺少“,”或“]”（方括号没有闭合？）"),
    ("did not find expected ',' or '}'", "缺少“,”或“}”（花括号没有闭合？）"),
    ("did not find expected key", "找不到应有的键（缩进不对？）"),
    ("did not find expected '-'", "列表项应以“-”开头（缩进不对？）"),
    ("could not find expected ':'", "缺少“:”"),
    ("cannot start any token", "有无法识别的字符（常见原因：用了 Tab 缩进，请改用空格）"),
    ("found unexpected end of stream", "文件意外结束（引号没有闭合？）"),
    ("expected <block end>", "缩进不一致"),
    ("found undefined alias", "引用了未定义的锚点"),
    ("found duplicate anchor", "锚点重复"),
)


def _yaml_problem(problem: str) -> str:
    """PyYAML's problem text in Chinese (the original is kept for rare ones)."""
    for english, chinese in _YAML_PROBLEMS:
        if english in problem:
            return chinese
    return f"无法解析（{problem}）" if problem else "无法解析"


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], src: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, yaml.ScalarNode) else str(knode.value)
            line = knode.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"字段重复（第一次出现在第 {seen[key]} 行）", path=src, line=line, key=key
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
                    f"无法读取取值：{exc}", path=src, line=node.start_mark.line + 1
                ) from None
            yield Located(data=data, lines=lines, start_line=node.start_mark.line + 1)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or ""
        raise ConfigError(f"YAML 格式错误：{_yaml_problem(problem)}", path=src, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML 格式错误：{exc}", path=src) from None
    finally:
        loader.dispose()


def load_documents(path: Path | str) -> list[Located]:
    """Parse every YAML document in *path*; raise ``ConfigError`` with file:line on bad YAML."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("文件不存在", path=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"不是 UTF-8 编码的文本（{exc.reason}）", path=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"无法读取（{exc.strerror or exc}）", path=str(p)) from None
    return list(_iter_documents(text, str(p)))


def line_for(lines: Mapping[KeyPath, int], loc: Sequence[str | int], default: int = 1) -> int:
    """Line of the longest prefix of *loc* that appears in *lines*."""
    for n in range(len(loc), -1, -1):
        hit = lines.get(tuple(loc[:n]))
        if hit is not None:
            return hit
    return default


_TYPE_TEXT: dict[str, str] = {
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_from_float": "应为整数（不能有小数）",
    "float_type": "应为数字",
    "float_parsing": "应为数字",
    "decimal_type": "应为数字",
    "decimal_parsing": "应为数字",
    "bool_type": "应为 true 或 false",
    "bool_parsing": "应为 true 或 false",
    "string_type": "应为文本",
    "string_unicode": "应为文本",
    "bytes_type": "应为文本",
    "list_type": "应为列表",
    "tuple_type": "应为列表",
    "set_type": "应为列表",
    "frozen_set_type": "应为列表",
    "iterable_type": "应为列表",
    "dict_type": "应为映射（键: 值）",
    "mapping_type": "应为映射（键: 值）",
    "model_type": "应为映射（键: 值）",
    "model_attributes_type": "应为映射（键: 值）",
    "dataclass_type": "应为映射（键: 值）",
    "date_type": "应为日期（YYYY-MM-DD）",
    "date_parsing": "应为日期（YYYY-MM-DD）",
    "date_from_datetime_parsing": "应为日期（YYYY-MM-DD）",
    "date_from_datetime_inexact": "应为日期（YYYY-MM-DD），不能带时间",
    "datetime_type": "应为日期时间（YYYY-MM-DD HH:MM）",
    "datetime_parsing": "应为日期时间（YYYY-MM-DD HH:MM）",
    "datetime_from_date_parsing": "应为日期时间（YYYY-MM-DD HH:MM）",
    "time_type": "应为时间（HH:MM）",
    "time_parsing": "应为时间（HH:MM）",
    "timedelta_type": "应为时长",
    "timedelta_parsing": "应为时长",
    "none_required": "应为空",
    "url_type": "应为网址",
    "url_parsing": "应为网址",
    "url_scheme": "网址协议不对",
    "json_invalid": "不是有效的 JSON",
    "uuid_parsing": "应为 UUID",
    "uuid_type": "应为 UUID",
}
"""pydantic error ``type`` → what the value should be, in Chinese (no placeholders)."""

_CTX_TEXT: dict[str, str] = {
    "greater_than": "应大于 {gt}",
    "greater_than_equal": "应不小于 {ge}",
    "less_than": "应小于 {lt}",
    "less_than_equal": "应不大于 {le}",
    "multiple_of": "应为 {multiple_of} 的倍数",
    "finite_number": "应为有限的数字",
    "too_short": "至少要有 {min_length} 项（现有 {actual_length} 项）",
    "too_long": "最多只能有 {max_length} 项（现有 {actual_length} 项）",
    "string_too_short": "至少要有 {min_length} 个字符",
    "string_too_long": "最多只能有 {max_length} 个字符",
    "string_pattern_mismatch": "格式不对（应符合 {pattern}）",
    "enum": "应为以下之一：{expected}",
    "literal_error": "应为以下之一：{expected}",
    "date_past": "应为过去的日期",
    "date_future": "应为将来的日期",
}
"""pydantic error ``type`` → Chinese template filled from the error's ``ctx``."""


def _key_of(loc: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in loc)


def _choices(expected: object) -> str:
    """pydantic's "'a', 'b' or 'c'" as 「a」、「b」、「c」."""
    names = re.findall(r"'([^']*)'", str(expected))
    return "、".join(f"「{n}」" for n in names) if names else str(expected)


def _shown(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:39] + "…"


def _model_at(tp: Any, loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class reached by following *loc* through *tp*'s field annotations."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _model_at(get_args(tp)[0], loc)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if not loc:
            return tp
        name = loc[0]
        for field_name, info in tp.model_fields.items():
            if name in (field_name, info.alias):
                return _model_at(info.annotation, loc[1:])
        return None
    args = [a for a in get_args(tp) if a is not type(None)]
    if origin in (Union, UnionType):
        for arg in args:  # pydantic puts a union member's name into loc
            if loc and getattr(arg, "__name__", None) == loc[0]:
                return _model_at(arg, loc[1:])
        for arg in args:
            found = _model_at(arg, loc)
            if found is not None:
                return found
        return None
    if not loc or not args:
        return None
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return _model_at(args[-1], loc[1:])
    if isinstance(origin, type) and issubclass(origin, (list, tuple, set, frozenset, Sequence)):
        return _model_at(args[0], loc[1:]) if isinstance(loc[0], int) else None
    return None


def _allowed_keys(model: type[BaseModel] | None, loc: Sequence[str | int]) -> list[str]:
    found = _model_at(model, loc[:-1]) if model is not None else None
    if found is None:
        return []
    return [info.alias or name for name, info in found.model_fields.items()]


def describe_error(err: Mapping[str, Any], model: type[BaseModel] | None = None) -> str:
    """One pydantic error as a Chinese sentence naming its key (``「key」…``).

    *model*, when given, is the model that was validated: an unknown key then lists the
    keys allowed in its place.
    """
    loc = tuple(err.get("loc", ()))
    key = _key_of(loc)
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        tail = f"，允许的字段：{'、'.join(allowed)}" if allowed else ""
        return f"未知字段「{key}」{tail}"
    if kind == "missing":
        return f"缺少必填字段「{key}」"
    where = f"「{key}」" if key else "内容"
    if kind in _TYPE_TEXT:
        return f"{where}{_TYPE_TEXT[kind]}，现为「{_shown(err.get('input'))}」"
    if kind in _CTX_TEXT:
        values = {k: _choices(v) if k == "expected" else v for k, v in ctx.items()}
        try:
            text = _CTX_TEXT[kind].format(**values)
        except (KeyError, IndexError):
            text = str(err.get("msg", ""))
        return f"{where}{text}"
    if kind in ("value_error", "assertion_error"):
        reason = str(ctx.get("error", "")) or str(err.get("msg", ""))
        return f"{where}的取值有误：{reason}"
    return f"{where}的取值有误：{err.get('msg', '')}"


def validation_issues(
    exc: ValidationError,
    src: str,
    lines: Mapping[KeyPath, int],
    prefix: KeyPath = (),
    *,
    model: type[BaseModel] | None = None,
) -> list[YamlIssue]:
    """Turn a pydantic error into positioned Chinese issues (one per failing key).

    *model* is the validated model; with it an unknown key lists the allowed keys.
    """
    issues = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line = line_for(lines, (*prefix, *loc))
        issues.append(YamlIssue(src, line, describe_error(err, model)))
    return issues


def format_validation_error(
    exc: ValidationError,
    src: str,
    lines: Mapping[KeyPath, int],
    *,
    model: type[BaseModel] | None = None,
) -> ConfigError:
    """One ``ConfigError`` listing every failing key with its line (first one in the fields)."""
    issues = validation_issues(exc, src, lines, model=model)
    first = exc.errors()[0]
    key = _key_of(first["loc"]) or None
    if len(issues) == 1:
        return ConfigError(issues[0].message, path=src, line=issues[0].line, key=key)
    body = "\n".join(f"  {i}" for i in issues)
    return ConfigError(f"共 {len(issues)} 处问题：\n{body}", path=src, line=issues[0].line, key=key)


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
        raise ConfigError(f"应只有一个 YAML 文档，实际有 {len(docs)} 个", path=src)
    doc = docs[0]
    if not isinstance(doc.data, dict):
        raise ConfigError("顶层应为映射（键: 值）", path=src, line=doc.start_line)
    try:
        return model.model_validate(doc.data, context=context), doc
    except ValidationError as exc:
        raise format_validation_error(exc, src, doc.lines, model=model) from None


def load_model(path: Path | str, model: type[M]) -> M:
    """Load a single-document YAML config file into *model*, or raise ``ConfigError``."""
    return load_located(path, model)[0]
