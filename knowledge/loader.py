"""Reading knowledge entries from YAML files, with the position of everything read."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from knowledge.schema import Entry
from yxby.errors import ConfigError, KnowledgeError
from yxby.yamlconf import YamlIssue, line_for, load_documents, validation_issues

__all__ = ["FileMemo", "LocatedEntry", "entry_files", "read_entries"]


@dataclass(frozen=True)
class LocatedEntry:
    """An entry and where it was written."""

    entry: Entry
    path: str
    line: int
    lines: dict[tuple[str | int, ...], int]

    def line_of(self, *key: str | int) -> int:
        """Line of a key inside this entry (falls back to the entry's first line)."""
        return line_for(self.lines, key, default=self.line)


def entry_files(directory: Path) -> list[Path]:
    """YAML files under *directory* (recursively), in a stable order."""
    if directory.is_file():
        return [directory]
    if not directory.is_dir():
        raise KnowledgeError(f"{directory}: 知识库目录不存在")
    return sorted(p for p in directory.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())


def _split(data: object) -> list[tuple[tuple[int, ...], object]]:
    if isinstance(data, list):
        return [((i,), item) for i, item in enumerate(data)]
    if data is None:
        return []
    return [((), data)]


FileMemo = dict[str, tuple[str, list[LocatedEntry], list[YamlIssue]]]
"""What :func:`read_entries` read from each file, by path: (content hash, entries, issues)."""


def read_entries(
    directory: Path, memo: FileMemo | None = None
) -> tuple[list[LocatedEntry], list[YamlIssue]]:
    """All valid entries under *directory* and every problem that kept one out.

    With *memo* (kept by the caller between calls), a file whose content did not change
    since the last call is not parsed again; *memo* is updated to the files read now.
    """
    entries: list[LocatedEntry] = []
    issues: list[YamlIssue] = []
    seen: FileMemo = {}
    for path in entry_files(directory):
        src = str(path)
        digest = ""
        if memo is not None:
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                digest = ""
            known = memo.get(src)
            if digest and known is not None and known[0] == digest:
                seen[src] = known
                entries.extend(known[1])
                issues.extend(known[2])
                continue
        found, problems = _read_file(path)
        if digest:
            seen[src] = (digest, found, problems)
        entries.extend(found)
        issues.extend(problems)
    if memo is not None:
        memo.clear()
        memo.update(seen)
    return entries, issues


def _read_file(path: Path) -> tuple[list[LocatedEntry], list[YamlIssue]]:
    entries: list[LocatedEntry] = []
    issues: list[YamlIssue] = []
    src = str(path)
    try:
        docs = load_documents(path)
    except ConfigError as exc:
        issues.append(YamlIssue(src, exc.line or 1, exc.detail))
        return entries, issues
    for doc in docs:
        for prefix, item in _split(doc.data):
            line = line_for(doc.lines, prefix, default=doc.start_line)
            if not isinstance(item, dict):
                issues.append(YamlIssue(src, line, "应为一个条目（键: 值 的映射）"))
                continue
            try:
                entry = Entry.model_validate(item)
            except ValidationError as exc:
                found = validation_issues(exc, src, doc.lines, prefix, model=Entry)
                named = item.get("id")
                if isinstance(named, str) and named:
                    found = [YamlIssue(i.path, i.line, f"[{named}] {i.message}") for i in found]
                issues.extend(found)
                continue
            sub = {k[len(prefix) :]: v for k, v in doc.lines.items() if k[: len(prefix)] == prefix}
            entries.append(LocatedEntry(entry, src, line, sub))
    return entries, issues
