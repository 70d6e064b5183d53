"""Evaluation of `ask` cases (the format of ``shared/eval/dev.yaml``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.base import Action, KnowledgeBase
from yxby.errors import ConfigError, YxbyError
from yxby.yamlconf import load_documents

__all__ = ["AskCase", "EvalReport", "evaluate", "evaluate_file", "load_cases"]


@dataclass(frozen=True)
class AskCase:
    """One expected decision: the action, and for answers the strings the answer must hold."""

    text: str
    action: str
    must: tuple[str | tuple[str, ...], ...] = ()
    line: int = 0


@dataclass
class EvalReport:
    total: int = 0
    passed: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0


_ACTIONS = {"answer", "suggest", "none", "handoff", "not_answer"}


def case_list(path: Path, key: str) -> list[tuple[int, object]]:
    """The items of the list under *key* of a one-mapping YAML file, with their lines."""
    docs = load_documents(path)
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        raise ConfigError(f"expected one mapping with a '{key}' list", path=str(path))
    doc = docs[0]
    raw = doc.data.get(key)
    if not isinstance(raw, list):
        raise ConfigError("expected a list", path=str(path), key=key)
    return [(doc.lines.get((key, i), 0), item) for i, item in enumerate(raw)]


def load_cases(path: Path) -> list[AskCase]:
    """The ``ask:`` list of an evaluation file; a bad case raises ``ConfigError``."""
    cases = []
    for i, (line, item) in enumerate(case_list(path, "ask")):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise ConfigError("expected {text, action}", path=str(path), line=line, key=f"ask.{i}")
        action = item.get("action")
        if action not in _ACTIONS:
            raise ConfigError(
                f"action must be one of {sorted(_ACTIONS)}",
                path=str(path),
                line=line,
                key=f"ask.{i}.action",
            )
        must: list[str | tuple[str, ...]] = []
        for m in item.get("must") or []:
            must.append(tuple(str(x) for x in m) if isinstance(m, list) else str(m))
        cases.append(AskCase(item["text"], action, tuple(must), line))
    return cases


def _check(kb: KnowledgeBase, case: AskCase) -> str | None:
    try:
        d = kb.decide(case.text)
    except YxbyError as exc:
        return f"{case.text!r}: error {exc}"
    got = d.action.value
    if case.action == "not_answer":
        if d.action is Action.ANSWER:
            got_id = d.top.entry.id if d.top else ""
            return f"{case.text!r}: expected not an answer, got answer {got_id}"
        return None
    if got != case.action:
        top = f" (top: {d.top.entry.id} {d.top.coverage:.2f})" if d.top else ""
        return f"{case.text!r}: expected {case.action}, got {got}{top}"
    if d.action is Action.ANSWER and d.top is not None:
        answer = d.top.entry.answer
        for need in case.must:
            options = need if isinstance(need, tuple) else (need,)
            if not any(o in answer for o in options):
                return f"{case.text!r}: answer {d.top.entry.id} lacks {' / '.join(options)}"
    return None


def evaluate(kb: KnowledgeBase, cases: Sequence[AskCase]) -> EvalReport:
    """Run *cases* against *kb*."""
    report = EvalReport(total=len(cases))
    for case in cases:
        failure = _check(kb, case)
        if failure is None:
            report.passed += 1
        else:
            report.failures.append(failure)
    return report


def evaluate_file(kb: KnowledgeBase, path: Path) -> EvalReport:
    """Load the ``ask:`` cases of *path* and run them."""
    return evaluate(kb, load_cases(path))
