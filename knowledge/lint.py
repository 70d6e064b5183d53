"""``yxby kb lint``: every mistake in the entries, with file and line."""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from knowledge.loader import FileMemo, LocatedEntry, read_entries

__all__ = ["WECHAT_TEXT_LIMIT", "LintIssue", "Severity", "check_entries", "lint", "unique_ids"]

WECHAT_TEXT_LIMIT = 2048  # bytes in a WeChat passive text reply
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"

    @property
    def label(self) -> str:
        """The Chinese word shown to editors."""
        return "错误" if self is Severity.ERROR else "警告"


@dataclass(frozen=True)
class LintIssue:
    """A finding: where, how bad and what (the message is Chinese)."""

    path: str
    line: int
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity.label}：{self.message}"


def _question_key(text: str) -> str:
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text)).lower()


def check_entries(
    directory: Path, memo: FileMemo | None = None
) -> tuple[list[LocatedEntry], list[LintIssue]]:
    """The entries under *directory* that can be served, and the errors that kept others out.

    An entry is kept out when it is not valid YAML, breaks the schema, has an empty answer,
    or when an earlier entry already has its id (the first one is kept). Raises
    ``KnowledgeError`` only when the directory does not exist. *memo*: see
    :func:`~knowledge.loader.read_entries` (unchanged files are not parsed again).
    """
    located, problems = read_entries(directory, memo)
    issues = [LintIssue(p.path, p.line, Severity.ERROR, p.message) for p in problems]
    answered = []
    for le in located:
        if le.entry.answer.strip():
            answered.append(le)
        else:
            message = f"[{le.entry.id}] 答案为空，本条未加载"
            issues.append(LintIssue(le.path, le.line_of("answer"), Severity.ERROR, message))
    kept, duplicates = unique_ids(answered)
    issues += duplicates
    issues.sort(key=lambda i: (i.path, i.line, i.message))
    return kept, issues


def unique_ids(located: Sequence[LocatedEntry]) -> tuple[list[LocatedEntry], list[LintIssue]]:
    """*located* without the later copies of a repeated id, and an error for each copy."""
    first: dict[str, LocatedEntry] = {}
    kept: list[LocatedEntry] = []
    issues: list[LintIssue] = []
    for le in located:
        seen = first.setdefault(le.entry.id, le)
        if seen is le:
            kept.append(le)
            continue
        message = (
            f"[{le.entry.id}] 条目编号「{le.entry.id}」重复：{seen.path}:{seen.line} 已有同一编号，"
            "本条未加载"
        )
        issues.append(LintIssue(le.path, le.line_of("id"), Severity.ERROR, message))
    return kept, issues


def lint(
    directory: Path,
    *,
    departments: Mapping[str, str] | None = None,
    today: dt.date,
) -> list[LintIssue]:
    """Check every entry under *directory* as of *today* (Chinese messages with file:line).

    *departments* maps every known department name and alias to its canonical name; when
    given, an unknown department is an error and an alias a warning. Issues come sorted by
    file and line.
    """
    located, issues = check_entries(directory)
    canonical_names = list(dict.fromkeys(departments.values())) if departments else []
    questions: dict[str, tuple[LocatedEntry, str]] = {}
    for le in located:
        e = le.entry
        err = _adder(issues, le)
        for i, q in enumerate(e.questions):
            key = _question_key(q)
            seen = questions.get(key)
            if seen is None:
                questions[key] = (le, q)
            elif seen[0] is le:
                err(("questions", i), Severity.WARNING, f"问题「{q}」在本条目中重复")
            else:
                other = seen[0]
                err(
                    ("questions", i),
                    Severity.ERROR,
                    f"问题「{q}」与条目「{other.entry.id}」重复"
                    f"（{other.path}:{other.line_of('questions')}）",
                )
        if departments is not None:
            canonical = departments.get(e.department)
            if canonical is None:
                err(
                    "department",
                    Severity.ERROR,
                    f"未知部门「{e.department}」，可用的部门：{'、'.join(canonical_names)}",
                )
            elif canonical != e.department:
                err(
                    "department",
                    Severity.WARNING,
                    f"「{e.department}」是别名，请写规范名称「{canonical}」",
                )
        answer = e.answer.strip()
        size = len(answer.encode("utf-8"))
        if size > WECHAT_TEXT_LIMIT:
            err(
                "answer",
                Severity.WARNING,
                f"答案有 {size} 字节，超过微信被动回复文本的上限 {WECHAT_TEXT_LIMIT} 字节，"
                "在微信中会被截短",
            )
        if e.is_expired(today):
            err("expires", Severity.WARNING, f"已于 {e.expires} 失效，不再提供")
        elif e.effective and e.effective > today:
            err("effective", Severity.WARNING, f"{e.effective} 起才生效，目前不提供")
    issues.sort(key=lambda i: (i.path, i.line, i.message))
    return issues


_Key = str | tuple[str | int, ...]


def _adder(issues: list[LintIssue], le: LocatedEntry) -> Callable[[_Key, Severity, str], None]:
    def add(key: _Key, severity: Severity, message: str) -> None:
        path = key if isinstance(key, tuple) else (key,)
        issues.append(LintIssue(le.path, le.line_of(*path), severity, f"[{le.entry.id}] {message}"))

    return add
