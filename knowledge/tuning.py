"""Tuning the answer/suggest/none thresholds on held-out questions (``yxby kb tune``).

A tuning file lists questions users might ask that are *not* the entries' own wordings:

    cases:
      - {text: "执照丢了要不要登报", expect: answer, entry: sample-license-replacement}
      - {text: "办税的事", expect: suggest}
      - {text: "明天天气怎么样", expect: not_answer}   # suggest or none are both fine
      - {text: "帮我写一份年终总结", expect: none}

Hits are computed once per question; then every combination of the grid is scored with the
same pure decision rule the bot uses (:func:`knowledge.base.choose`). Utility: +1 for a right
answer, −4 for a wrong one (wrong entry, or any answer where none was wanted), +1 for a vague
need offered choices, +1 for an unrelated question given nothing. Cases alternate between a
tuning half and a held-out half, so the reported held-out figures were not tuned on.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from knowledge.base import Action, Hit, KnowledgeBase, choose
from knowledge.evaluate import case_list
from knowledge.settings import DecisionSettings
from yxby.errors import ConfigError

__all__ = ["Score", "TuneCase", "load_tuning_cases", "score", "sweep"]

WRONG_ANSWER_COST = 4
EXPECTS = {"answer", "suggest", "none", "not_answer", "handoff"}


@dataclass(frozen=True)
class TuneCase:
    text: str
    expect: str
    entry: str | None = None


@dataclass(frozen=True)
class Score:
    """How one setting does on a set of cases."""

    settings: DecisionSettings
    right_answers: int
    wrong_answers: int
    answer_cases: int
    good_suggest: int
    suggest_cases: int
    good_none: int
    none_cases: int
    not_answer_ok: int
    not_answer_cases: int

    @property
    def utility(self) -> float:
        return (
            self.right_answers
            - WRONG_ANSWER_COST * self.wrong_answers
            + self.good_suggest
            + self.good_none
        )

    def summary(self) -> str:
        d = self.settings
        return (
            f"answer_confidence={d.answer_confidence:.2f} answer_margin={d.answer_margin:.2f} "
            f"answer_gap={d.answer_gap:.2f} suggest_confidence={d.suggest_confidence:.2f} "
            f"sure={d.sure_confidence:.2f}/{d.sure_margin:.2f} "
            f"missing_word_share={d.missing_word_share:.2f}: "
            f"right answers {self.right_answers}/{self.answer_cases}, "
            f"wrong answers {self.wrong_answers}, "
            f"vague→choices {self.good_suggest}/{self.suggest_cases}, "
            f"unrelated→nothing {self.good_none}/{self.none_cases}, "
            f"off-topic not answered {self.not_answer_ok}/{self.not_answer_cases}"
        )


def load_tuning_cases(path: Path) -> list[TuneCase]:
    """The ``cases:`` of a tuning file; ``ConfigError`` names the bad case's line."""
    cases = []
    for i, (line, item) in enumerate(case_list(path, "cases")):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("text"), str)
            or item.get("expect") not in EXPECTS
        ):
            raise ConfigError(
                f"expected {{text, expect: {'|'.join(sorted(EXPECTS))}, entry}}",
                path=str(path), line=line, key=f"cases.{i}",
            )  # fmt: skip
        if item["expect"] == "answer" and not isinstance(item.get("entry"), str):
            raise ConfigError("an answer case needs 'entry'", path=str(path), line=line)
        cases.append(TuneCase(item["text"], item["expect"], item.get("entry")))
    return cases


@dataclass(frozen=True)
class _Prepared:
    case: TuneCase
    hits: tuple[Hit, ...]
    handoff: bool


def prepare(kb: KnowledgeBase, cases: Iterable[TuneCase]) -> list[_Prepared]:
    """Search every case once (decisions are then re-made for each setting)."""
    out = []
    for case in cases:
        text = case.text.strip()
        handoff = kb.wants_person(text)
        hits = () if handoff or not text else tuple(kb.search(text, limit=10))
        out.append(_Prepared(case, hits, handoff))
    return out


def score(prepared: Sequence[_Prepared], settings: DecisionSettings) -> Score:
    """Score one setting on prepared cases."""
    counts = dict.fromkeys(
        ("right", "wrong", "ans", "sug_ok", "sug", "none_ok", "none", "na_ok", "na"), 0
    )
    for p in prepared:
        action = Action.HANDOFF if p.handoff else choose(p.hits, settings)[0]
        top = p.hits[0].entry.id if p.hits else None
        expect = p.case.expect
        answered = action is Action.ANSWER
        if expect == "answer":
            counts["ans"] += 1
            if answered and top == p.case.entry:
                counts["right"] += 1
            elif answered:
                counts["wrong"] += 1
        elif expect == "handoff":
            continue
        else:
            counts["wrong"] += answered
            if expect == "suggest":
                counts["sug"] += 1
                counts["sug_ok"] += action is Action.SUGGEST
            elif expect == "none":
                counts["none"] += 1
                counts["none_ok"] += action is Action.NONE
            else:
                counts["na"] += 1
                counts["na_ok"] += not answered
    return Score(
        settings, counts["right"], counts["wrong"], counts["ans"], counts["sug_ok"],
        counts["sug"], counts["none_ok"], counts["none"], counts["na_ok"], counts["na"],
    )  # fmt: skip


GRID = {
    "answer_confidence": [x / 100 for x in range(20, 72, 4)],
    "answer_margin": [1.0, 1.1, 1.15, 1.2, 1.25, 1.3, 1.4, 1.5, 2.0],
    "answer_gap": [0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0],
    "suggest_confidence": [x / 100 for x in range(10, 40, 5)],
    "sure_confidence": [0.85, 0.9, 0.95, 1.01],
    "sure_margin": [1.05, 1.1, 1.15],
}


def sweep(prepared: Sequence[_Prepared], base: DecisionSettings) -> list[Score]:
    """Every grid setting scored on *prepared*, best utility first."""
    scores = []
    for ac, m, gap, sc, sure, sure_m in itertools.product(*GRID.values()):
        if sc > ac:
            continue
        settings = base.model_copy(
            update={
                "answer_confidence": ac, "answer_margin": m, "answer_gap": gap,
                "suggest_confidence": sc, "sure_confidence": sure, "sure_margin": sure_m,
            }
        )  # fmt: skip
        scores.append(score(prepared, settings))
    scores.sort(key=lambda s: (-s.utility, s.wrong_answers))
    return scores
