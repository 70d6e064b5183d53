"""Reports over the dialogue log: the knowledge-gap list (more reports come with the console).

Pure grouping over rows read from ``dialogue_turn``; nothing here writes.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from handoff.conversations import DialogueTurn, TurnOutcome

if TYPE_CHECKING:
    from knowledge import KnowledgeBase
    from knowledge.tokenizer import Tokenizer

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


def gap_groups(
    turns: Sequence[tuple[str, list[str]]],
    terms_per_group: int = 2,
    *,
    kb: KnowledgeBase | None = None,
) -> list[GapGroup]:
    """Group unanswered questions under whole words people recognise, biggest group first.

    Each question's words are jieba's whole words with the domain lexicon (synonyms made
    canonical, stop words out), read again from the question's text with *kb*'s tokenizer
    (the shipped lexicon without one) — never the stored search tokens, whose sub-word
    fragments (``么办`` of 怎么办, ``个外`` …) nobody recognises. A question joins the group of its
    most telling word: shared by many gap questions and rare in the knowledge base (idf, so
    generic words such as 公司 or 办理 name no group). A group is named by that word and up
    to ``terms_per_group - 1`` more words that at least half of its questions share (and
    that are at least half as telling).
    """
    worded = [(text, _words(text, kb)) for text, _tokens in turns]
    df = Counter(w for _, words in worded for w in set(words))
    weight = _informativeness(kb)
    groups: dict[str, GapGroup] = {}
    members: dict[str, list[tuple[str, ...]]] = {}
    for text, words in worded:
        distinct = sorted(set(words), key=lambda w: (-df[w] * weight(w), -len(w), w))
        key = distinct[0] if distinct else NO_TERMS
        group = groups.setdefault(key, GapGroup((key,)))
        group.count += 1
        group.questions[text.strip()] += 1
        members.setdefault(key, []).append(tuple(set(words)))
    for key, group in groups.items():
        if key == NO_TERMS:
            continue
        shared = Counter(w for words in members[key] for w in words if w != key)
        extra = [
            w
            for w, n in sorted(shared.items(), key=lambda kv: (-kv[1], -weight(kv[0]), kv[0]))
            if n * 2 >= len(members[key]) and weight(w) * 2 >= weight(key)
        ][: max(terms_per_group - 1, 0)]
        group.terms = (key, *extra)
    return sorted(groups.values(), key=lambda g: (-g.count, g.terms))


NO_TERMS = "（无可检索的词）"


def _recognisable(word: str) -> bool:
    """A word people read as one: two or more characters, not a bare number."""
    return len(word) >= 2 and not word.isdigit() and not _NUMBER.fullmatch(word)


_NUMBER = re.compile(r"[\d.,%]+")


def _words(text: str, kb: KnowledgeBase | None) -> list[str]:
    tokenizer = kb.tokenizer if kb is not None else _default_tokenizer()
    visible = _REDACTED.sub(" ", text)  # 〔隐去〕 markers of masked text are no words
    return [w for w in dict.fromkeys(tokenizer.analyze(visible).words) if _recognisable(w)]


_REDACTED = re.compile(r"〔[^〕]*〕")


@functools.cache
def _default_tokenizer() -> Tokenizer:
    from knowledge.tokenizer import Tokenizer

    return Tokenizer()


def _informativeness(kb: KnowledgeBase | None) -> Callable[[str], float]:
    if kb is None:
        return lambda _word: 1.0
    index = kb.index
    unseen = index.max_idf or 1.0

    def weight(word: str) -> float:
        idf = index.term_idf(word)
        return unseen if idf is None else max(idf, 0.05)

    return weight
