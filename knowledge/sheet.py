"""The knowledge base as a spreadsheet, for editors who do not use git.

``export_xlsx(directory, path)`` writes one row per entry (the wordings in one cell, one per
line; keywords and tags likewise); ``plan_import(directory, path, …)`` reads such a sheet
back and works out what would change. The YAML in the knowledge directory stays the source
of truth, so an import is careful:

* every row is validated as an entry (``第 N 行「列」…`` in Chinese), then the directory as
  it would be after the import is checked with exactly the rules of ``yxby kb lint``; any
  error and nothing is written;
* an entry whose content did not change keeps its YAML **byte for byte** (comments,
  ordering and line wrapping included); a changed entry is rewritten in place, in the
  house style, and only that entry's lines of its file change; a new entry is appended to
  the file named in its 文件 column (default ``imported.yaml``);
* an entry missing from the sheet is **not** deleted (deleting is done in the YAML), only
  listed; the diff (:meth:`ImportPlan.diff`) shows every changed line before anything is
  written, and :meth:`ImportPlan.apply` writes each file atomically.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from knowledge.lint import LintIssue, Severity, check_entries, lint
from knowledge.loader import LocatedEntry
from knowledge.schema import Entry
from yxby.errors import InputError
from yxby.yamlconf import describe_error

__all__ = ["COLUMNS", "ImportPlan", "entry_yaml", "export_xlsx", "plan_import"]

DEFAULT_FILE = "imported.yaml"
SHEET_TITLE = "知识库条目"

# (header, key in the entry's dict, kind): kind "list" is one item per line in the cell
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("文件", "_file", "text"),
    ("编号", "id", "text"),
    ("标题", "title", "text"),
    ("问法（每行一个）", "questions", "list"),
    ("答案", "answer", "text"),
    ("责任部门", "department", "text"),
    ("关键词（每行一个）", "keywords", "list"),
    ("标签（每行一个）", "tags", "list"),
    ("来源文件", "source.document", "text"),
    ("来源章节", "source.section", "text"),
    ("来源网址", "source.url", "text"),
    ("更新日期", "updated", "date"),
    ("生效日期", "effective", "date"),
    ("失效日期", "expires", "date"),
)
_HEADERS = tuple(c[0] for c in COLUMNS)


# ----------------------------------------------------------------------------- export


def _cell_value(entry: Entry, key: str, kind: str) -> str:
    value: Any = entry
    for part in key.split("."):
        value = getattr(value, part, None)
    if value is None:
        return ""
    if kind == "list":
        return "\n".join(value)
    if kind == "date":
        return value.isoformat()
    return str(value)


def export_xlsx(directory: Path, output: Path) -> int:
    """Write every loadable entry under *directory* to *output*; returns the row count.

    Raises ``InputError`` when the directory has entries that cannot be loaded (export the
    whole knowledge base or nothing: fix ``yxby kb lint`` errors first).
    """
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    located, problems = check_entries(directory)
    if problems:
        raise InputError(
            f"知识库有 {len(problems)} 处错误，请先修正再导出（yxby kb lint）：{problems[0]}"
        )
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = SHEET_TITLE
    ws.append(list(_HEADERS))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")
    for le in located:
        row = [_relative(directory, le.path)]
        row += [_cell_value(le.entry, key, kind) for _, key, kind in COLUMNS[1:]]
        ws.append(row)
        for cell in ws[ws.max_row]:
            cell.alignment = wrap
            cell.number_format = "@"  # text: Excel must not turn 2026-11-26 into a number
    widths = {"A": 24, "B": 30, "C": 24, "D": 40, "E": 80, "F": 14, "G": 20, "H": 14}
    for column, width in widths.items():
        ws.column_dimensions[column].width = width
    ws.freeze_panes = "C2"
    output.parent.mkdir(parents=True, exist_ok=True)
    wb.save(output)
    return len(located)


def _relative(directory: Path, path: str) -> str:
    try:
        return Path(path).resolve().relative_to(directory.resolve()).as_posix()
    except ValueError:
        return Path(path).name


# ----------------------------------------------------------------------------- YAML out


def _scalar(value: object) -> str:
    """A one-line YAML scalar (plain when safe, quoted otherwise)."""
    text = yaml.safe_dump(value, allow_unicode=True, width=10**9, default_flow_style=True)
    text = text.removesuffix("\n").removesuffix("\n...").removesuffix("...").rstrip("\n")
    if "\n" in text:  # pragma: no cover - width is unlimited and values have no newlines
        raise ValueError(text)
    return text


def _flow_list(values: Sequence[str]) -> str:
    return _scalar(list(values))  # flow context: "a, b" must be quoted there


def entry_yaml(entry: Entry, indent: int = 0) -> str:
    """*entry* as a YAML list item in the house style of ``knowledge/entries``."""
    pad = " " * indent
    inner = pad + "  "
    lines = [f"{pad}- id: {_scalar(entry.id)}", f"{inner}title: {_scalar(entry.title)}"]
    lines.append(f"{inner}questions:")
    lines += [f"{inner}  - {_scalar(q)}" for q in entry.questions]
    if "\n" in entry.answer:
        lines.append(f"{inner}answer: |-")
        lines += [f"{inner}  {line}".rstrip() for line in entry.answer.split("\n")]
    else:
        lines.append(f"{inner}answer: >-")
        lines.append(f"{inner}  {entry.answer}")
    lines.append(f"{inner}department: {_scalar(entry.department)}")
    if entry.keywords:
        lines.append(f"{inner}keywords: {_flow_list(entry.keywords)}")
    if entry.tags:
        lines.append(f"{inner}tags: {_flow_list(entry.tags)}")
    lines.append(f"{inner}source:")
    lines.append(f"{inner}  document: {_scalar(entry.source.document)}")
    if entry.source.section:
        lines.append(f"{inner}  section: {_scalar(entry.source.section)}")
    if entry.source.url:
        lines.append(f"{inner}  url: {_scalar(entry.source.url)}")
    lines.append(f"{inner}updated: {entry.updated.isoformat()}")
    if entry.effective:
        lines.append(f"{inner}effective: {entry.effective.isoformat()}")
    if entry.expires:
        lines.append(f"{inner}expires: {entry.expires.isoformat()}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- import


@dataclass(frozen=True)
class Change:
    """One entry the import adds or changes."""

    kind: str  # "新增" or "修改"
    entry_id: str
    file: str
    fields: tuple[str, ...] = ()  # headers of the changed columns

    def __str__(self) -> str:
        what = f"：{'、'.join(self.fields)}" if self.fields else ""
        return f"{self.kind} [{self.entry_id}]（{self.file}）{what}"


@dataclass
class ImportPlan:
    """What an import would do; nothing is written until :meth:`apply`."""

    directory: Path
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0
    missing: list[str] = field(default_factory=list)  # ids in the YAML, not in the sheet
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    texts: dict[Path, tuple[str | None, str]] = field(default_factory=dict)  # old, new

    @property
    def ok(self) -> bool:
        return not self.errors

    def diff(self) -> str:
        """A unified diff of every file the import would write."""
        out: list[str] = []
        for path, (old, new) in sorted(self.texts.items()):
            name = _relative(self.directory, str(path))
            out += difflib.unified_diff(
                (old or "").splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"a/{name}" if old is not None else "/dev/null",
                tofile=f"b/{name}",
            )
        return "".join(out)

    def apply(self) -> list[Path]:
        """Write the changed files (each atomically); refuses when the plan has errors."""
        if self.errors:
            raise InputError(f"导入有 {len(self.errors)} 处错误，未写入任何文件")
        written = []
        staged: list[tuple[str, Path]] = []
        try:
            for path, (_, new) in sorted(self.texts.items()):
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                    fh.write(new)
                staged.append((tmp, path))
        except OSError as exc:
            for tmp, _ in staged:
                Path(tmp).unlink(missing_ok=True)
            raise InputError(f"无法写入知识库目录：{exc}") from None
        for tmp, path in staged:  # every file is ready: rename them into place
            os.replace(tmp, path)
            written.append(path)
        return written


def _read_rows(path: Path) -> list[tuple[int, dict[str, object]]]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}：文件不存在") from None
    except Exception as exc:  # openpyxl raises many kinds for a file that is not xlsx
        raise InputError(f"{path}：不是有效的 XLSX 文件（{type(exc).__name__}）") from None
    try:
        ws = wb[SHEET_TITLE] if SHEET_TITLE in wb.sheetnames else wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        names = [str(h).strip() if h is not None else "" for h in header or ()]
        missing = [h for h in _HEADERS if h not in names]
        if missing:
            raise InputError(
                f"{path}：第 1 行缺少列：{'、'.join(missing)}（请用 yxby kb export 导出的表格）"
            )
        where = {h: names.index(h) for h in _HEADERS}
        out = []
        for number, row in enumerate(rows, start=2):
            cells = {h: (row[i] if i < len(row) else None) for h, i in where.items()}
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in cells.values()):
                continue  # a blank row
            out.append((number, cells))
        return out
    finally:
        wb.close()


def _split_lines(value: object) -> list[str]:
    if value is None:
        return []
    return [line.strip() for line in str(value).splitlines() if line.strip()]


def _date(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str):
        return value.strip() or None
    return value


def _row_data(cells: Mapping[str, object]) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    source: dict[str, Any] = {}
    file = ""
    for header, key, kind in COLUMNS:
        raw = cells[header]
        if kind == "list":
            value: Any = _split_lines(raw)
        elif kind == "date":
            value = _date(raw)
        else:
            value = raw.strip() if isinstance(raw, str) else raw
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)  # a number typed into a text column (an id, say)
            value = value or None
        if key == "_file":
            file = value or ""
        elif key.startswith("source."):
            if value is not None:
                source[key.removeprefix("source.")] = value
        elif value is not None and value != []:
            data[key] = value
    data["source"] = source
    return file, data


def _field_header(loc: Sequence[object]) -> str:
    key = ".".join(str(p) for p in loc if not isinstance(p, int))
    for header, k, _ in COLUMNS:
        if k == key or (key == "source" and k == "source.document"):
            return header
    return key


def _row_errors(number: int, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = err.get("loc", ())
        key = ".".join(str(p) for p in loc)
        text = describe_error(err).replace(f"「{key}」", "", 1)  # the column names it
        out.append(f"第 {number} 行「{_field_header(loc)}」{text}")
    return out


def _spans(text: str, located: Sequence[LocatedEntry]) -> dict[str, tuple[int, int, int]]:
    """Each entry's (first line index, end line index, indent) in *text* (0-based, end
    exclusive); the blank and comment lines before the next entry stay outside."""
    lines = text.splitlines(keepends=True)
    starts = sorted((le.line - 1, le.entry.id) for le in located)
    out: dict[str, tuple[int, int, int]] = {}
    for n, (start, entry_id) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        for i in range(start + 1, end):
            if lines[i].startswith(("---", "...")):
                end = i
                break
        while end > start + 1 and (
            not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")
        ):
            end -= 1
        first = lines[start]
        dash = first.find("- ")
        indent = dash if dash >= 0 and not first[:dash].strip() else -1
        out[entry_id] = (start, end, indent)
    return out


def _changed_fields(old: Entry, new: Entry) -> tuple[str, ...]:
    out = []
    for header, key, kind in COLUMNS[1:]:
        if _cell_value(old, key, kind) != _cell_value(new, key, kind):
            out.append(header.split("（")[0])
    return tuple(out)


def _safe_target(directory: Path, name: str) -> Path | None:
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or rel.suffix not in {".yaml", ".yml"}:
        return None
    return directory / rel


def plan_import(
    directory: Path,
    sheet: Path,
    *,
    departments: Mapping[str, str] | None,
    today: dt.date,
) -> ImportPlan:
    """Read *sheet* and plan its import into *directory* (see the module docstring)."""
    rows = _read_rows(sheet)
    plan = ImportPlan(directory)
    located, problems = check_entries(directory)
    if problems:
        plan.errors.append(f"知识库目录本身有错误，请先修正（yxby kb lint）：{problems[0]}")
        return plan
    current = {le.entry.id: le for le in located}
    parsed: list[tuple[int, str, Entry]] = []
    seen: dict[str, int] = {}
    for number, cells in rows:
        file, data = _row_data(cells)
        try:
            entry = Entry.model_validate(data)
        except ValidationError as exc:
            plan.errors += _row_errors(number, exc)
            continue
        if entry.id in seen:
            plan.errors.append(f"第 {number} 行「编号」{entry.id} 与第 {seen[entry.id]} 行重复")
            continue
        seen[entry.id] = number
        parsed.append((number, file, entry))
    plan.missing = [i for i in current if i not in seen]
    if plan.errors:
        return plan

    by_file: dict[Path, list[tuple[LocatedEntry, Entry]]] = {}
    appended: dict[Path, list[Entry]] = {}
    for number, file, entry in parsed:
        old = current.get(entry.id)
        if old is not None:
            if old.entry == entry:
                plan.unchanged += 1
                continue
            path = Path(old.path)
            by_file.setdefault(path, []).append((old, entry))
            plan.changes.append(
                Change(
                    "修改",
                    entry.id,
                    _relative(directory, old.path),
                    _changed_fields(old.entry, entry),
                )
            )
            continue
        target = _safe_target(directory, file or DEFAULT_FILE)
        if target is None:
            plan.errors.append(f"第 {number} 行「文件」{file} 应为知识库目录下的 .yaml 文件名")
            continue
        appended.setdefault(target, []).append(entry)
        plan.changes.append(Change("新增", entry.id, _relative(directory, str(target))))
    if plan.errors:
        return plan

    for path in sorted({*by_file, *appended}):
        old_text = path.read_text("utf-8") if path.exists() else None
        text = old_text or ""
        if path in by_file:
            in_file = [le for le in located if Path(le.path) == path]
            spans = _spans(text, in_file)
            lines = text.splitlines(keepends=True)
            for le, entry in sorted(by_file[path], key=lambda p: -spans[p[0].entry.id][0]):
                start, end, indent = spans[le.entry.id]
                if indent < 0:  # a single-entry document, not a list item: rewrite as one
                    lines[start:end] = [entry_yaml(entry)]
                else:
                    lines[start:end] = [entry_yaml(entry, indent)]
            text = "".join(lines)
        for entry in appended.get(path, []):
            if text and not text.endswith("\n"):
                text += "\n"
            text += ("\n" if text.strip() else "") + entry_yaml(entry)
        plan.texts[path] = (old_text, text)

    _check_result(plan, directory, departments, today, {e.id: e for _, _, e in parsed})
    return plan


def _check_result(
    plan: ImportPlan,
    directory: Path,
    departments: Mapping[str, str] | None,
    today: dt.date,
    wanted: Mapping[str, Entry],
) -> None:
    """Lint the directory as it would be after the import (in a temporary copy)."""
    if not plan.texts:
        return
    with tempfile.TemporaryDirectory(prefix="yxby-kb-import-") as tmp:
        staged = Path(tmp) / "entries"
        shutil.copytree(directory, staged)
        for path, (_, new) in plan.texts.items():
            target = staged / path.relative_to(directory)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(new, "utf-8")
        issues = lint(staged, departments=departments, today=today)
        changed = {c.entry_id for c in plan.changes}
        for issue in issues:
            text = _unstage(issue, staged, directory)
            if issue.severity is Severity.ERROR:
                plan.errors.append(text)
            elif any(f"[{i}]" in issue.message for i in changed):
                plan.warnings.append(text)
        located, _ = check_entries(staged)
        written = {le.entry.id: le.entry for le in located}
        for change in plan.changes:  # what is written must read back as the sheet says
            if written.get(change.entry_id) != wanted[change.entry_id]:
                plan.errors.append(f"[{change.entry_id}] 写入后读回的内容与表格不一致，未导入")


def _unstage(issue: LintIssue, staged: Path, directory: Path) -> str:
    return str(issue).replace(str(staged), str(directory))
