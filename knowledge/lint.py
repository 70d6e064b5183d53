"""``yxby kb lint``: every mistake in the entries, with file and line."""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from knowledge.loader import LocatedEntry, read_entries

__all__ = ["WECHAT_TEXT_LIMIT", "LintIssue", "Severity", "lint"]

WECHAT_TEXT_LIMIT = 2048  # bytes in a WeChat passive text reply
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class LintIssue:
    """A finding: where, how bad and what."""

    path: str
    line: int
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity.value}: {self.message}"


def _question_key(text: str) -> str:
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text)).lower()


def lint(
    directory: Path,
    *,
    departments: Mapping[str, str] | None = None,
    today: dt.date | None = None,
) -> list[LintIssue]:
    """Check every entry under *directory*.

    *departments* maps every known department name and alias to its canonical name; when
    given, an unknown department is an error and an alias a warning. Issues come sorted by
    file and line.
    """
    day = today or dt.date.today()
    located, problems = read_entries(directory)
    issues = [LintIssue(p.path, p.line, Severity.ERROR, p.message) for p in problems]
    ids: dict[str, LocatedEntry] = {}
    questions: dict[str, tuple[LocatedEntry, str]] = {}
    for le in located:
        e = le.entry
        err = _adder(issues, le)
        first = ids.setdefault(e.id, le)
        if first is not le:
            err("id", Severity.ERROR, f"duplicate id '{e.id}' (first at {first.path}:{first.line})")
        for i, q in enumerate(e.questions):
            key = _question_key(q)
            seen = questions.get(key)
            if seen is None:
                questions[key] = (le, q)
            elif seen[0] is le:
                err(("questions", i), Severity.WARNING, f"question repeated in this entry: {q}")
            else:
                other = seen[0]
                err(
                    ("questions", i),
                    Severity.ERROR,
                    f"question '{q}' is also in entry '{other.entry.id}' "
                    f"({other.path}:{other.line_of('questions')})",
                )
        if departments is not None:
            canonical = departments.get(e.department)
            if canonical is None:
                err("department", Severity.ERROR, f"unknown department '{e.department}'")
            elif canonical != e.department:
                err(
                    "department",
                    Severity.WARNING,
                    f"'{e.department}' is an alias: write the canonical name '{canonical}'",
                )
        answer = e.answer.strip()
        size = len(answer.encode("utf-8"))
        if not answer:
            err("answer", Severity.ERROR, "empty answer")
        elif size > WECHAT_TEXT_LIMIT:
            err(
                "answer",
                Severity.WARNING,
                f"answer is {size} bytes; a WeChat passive text reply holds {WECHAT_TEXT_LIMIT}"
                " bytes, so it will be shortened there",
            )
        if e.is_expired(day):
            err("expires", Severity.WARNING, f"expired on {e.expires}; it is no longer served")
        elif e.effective and e.effective > day:
            err("effective", Severity.WARNING, f"not in force until {e.effective}; not served yet")
    issues.sort(key=lambda i: (i.path, i.line, i.message))
    return issues


_Key = str | tuple[str | int, ...]


def _adder(issues: list[LintIssue], le: LocatedEntry) -> Callable[[_Key, Severity, str], None]:
    def add(key: _Key, severity: Severity, message: str) -> None:
        path = key if isinstance(key, tuple) else (key,)
        issues.append(LintIssue(le.path, le.line_of(*path), severity, f"[{le.entry.id}] {message}"))

    return add
