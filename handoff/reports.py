"""Reports over the dialogue log: the knowledge-gap list (more reports come with the console).

Pure grouping over rows read from ``dialogue_turn``; nothing here writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from handoff.conversations import DialogueTurn, TurnOutcome

__all__ = ["GapGroup", "gap_groups", "unanswered_turns"]

# Turns where the knowledge base did not settle the question.
GAP_OUTCOMES = (TurnOutcome.NONE, TurnOutcome.UNSOLVED, TurnOutcome.TICKET)


@dataclass
class GapGroup:
    """Questions sharing their most common terms, with how often each was asked."""

    terms: tuple[str, ...]
    count: int = 0
    questions: Counter[str] = field(default_factory=Counter)


def unanswered_turns(session: Session, since: datetime) -> list[tuple[str, list[str]]]:
    """(text, tokens) of questions nothing answered since *since*."""
    stmt = (
        select(DialogueTurn.text, DialogueTurn.tokens)
        .where(
            DialogueTurn.at >= since,
            DialogueTurn.outcome.in_(GAP_OUTCOMES),
            DialogueTurn.action.in_(("none", "suggest", "answer")),
        )
        .order_by(DialogueTurn.id)
    )
    return [(text, list(tokens or [])) for text, tokens in session.execute(stmt)]


def gap_groups(turns: Sequence[tuple[str, list[str]]], terms_per_group: int = 2) -> list[GapGroup]:
    """Group questions by their terms most shared across all gap questions, biggest first."""
    df = Counter(t for _, tokens in turns for t in set(tokens))
    groups: dict[tuple[str, ...], GapGroup] = {}
    for text, tokens in turns:
        distinct = sorted(set(tokens), key=lambda t: (-df[t], t))
        key = tuple(sorted(distinct[:terms_per_group])) or ("（无可检索的词）",)
        group = groups.setdefault(key, GapGroup(key))
        group.count += 1
        group.questions[text.strip()] += 1
    return sorted(groups.values(), key=lambda g: (-g.count, g.terms))
