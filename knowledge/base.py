"""The 企业服务知识库: load entries, search them, and decide what the bot should do.

``load(directory)`` returns a :class:`KnowledgeBase`; ``search(text)`` ranks entries with
BM25 and explains each hit (score, matched terms, coverage); ``decide(text)`` turns the
ranking into an action: ``answer`` (confident), ``suggest`` (top choices), ``none`` (offer a
person) or ``handoff`` (the user asked for a person).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.index import BM25Index, BM25Params
from knowledge.loader import LocatedEntry, read_entries
from knowledge.schema import Entry
from knowledge.settings import KnowledgeSettings, load_settings
from knowledge.tokenizer import Tokenizer, normalize
from yxby.errors import InputError, KnowledgeError

__all__ = ["Action", "Decision", "Hit", "KnowledgeBase", "load"]


class Action(enum.StrEnum):
    """What the bot should do with a message."""

    ANSWER = "answer"
    SUGGEST = "suggest"
    NONE = "none"
    HANDOFF = "handoff"


@dataclass(frozen=True)
class Hit:
    """One ranked entry: its score, the query terms it matched and their idf-weighted share."""

    entry: Entry
    score: float
    matched_terms: tuple[str, ...]
    coverage: float

    def as_dict(self) -> dict[str, object]:
        return {
            "entry_id": self.entry.id,
            "title": self.entry.title,
            "score": round(self.score, 4),
        }


@dataclass(frozen=True)
class Decision:
    """The outcome of :meth:`KnowledgeBase.decide`, with everything that explains it."""

    action: Action
    text: str
    tokens: tuple[str, ...]
    hits: tuple[Hit, ...] = ()
    suggestions: tuple[Hit, ...] = ()
    reason: str = ""

    @property
    def top(self) -> Hit | None:
        """The best hit (the answer when ``action`` is ``answer``)."""
        return self.hits[0] if self.hits else None

    def as_dict(self) -> dict[str, object]:
        """The ``yxby ask --json`` contract."""
        top = self.top if self.action is Action.ANSWER else None
        return {
            "action": self.action.value,
            "entry_id": top.entry.id if top else None,
            "title": top.entry.title if top else None,
            "answer": top.entry.answer if top else None,
            "department": top.entry.department if top else None,
            "score": round(top.score, 4)
            if top
            else (round(self.hits[0].score, 4) if self.hits else 0.0),
            "matched_terms": list(top.matched_terms) if top else [],
            "suggestions": [h.as_dict() for h in self.suggestions],
            "reason": self.reason,
        }


def _document_tokens(entry: Entry, tokenizer: Tokenizer, settings: KnowledgeSettings) -> list[str]:
    weights = settings.fields
    tokens: list[str] = []
    title = tokenizer.tokenize(entry.title)
    questions = [t for q in entry.questions for t in tokenizer.tokenize(q)]
    keywords = [t for k in entry.keywords for t in tokenizer.tokenize(k)]
    answer = tokenizer.tokenize(entry.answer)
    for part, times in (
        (title, weights.title),
        (questions, weights.questions),
        (keywords, weights.keywords),
        (answer, weights.answer),
    ):
        tokens.extend(part * times)
    return tokens


@dataclass
class KnowledgeBase:
    """Searchable entries. Build with :func:`load`."""

    entries: tuple[Entry, ...]
    settings: KnowledgeSettings
    tokenizer: Tokenizer
    index: BM25Index = field(init=False)
    _handoff: tuple[re.Pattern[str], ...] = field(init=False)

    def __post_init__(self) -> None:
        corpus = [_document_tokens(e, self.tokenizer, self.settings) for e in self.entries]
        bm = self.settings.bm25
        self.index = BM25Index(corpus, BM25Params(k1=bm.k1, b=bm.b, epsilon=bm.epsilon))
        self._handoff = tuple(re.compile(p) for p in self.settings.handoff.patterns)
        self._by_id = {e.id: e for e in self.entries}

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, entry_id: str) -> Entry | None:
        """The entry with *entry_id*, or ``None``."""
        return self._by_id.get(entry_id)

    def check_query(self, text: str) -> str:
        """Return *text* stripped, or raise ``InputError`` (Chinese) when unusable."""
        stripped = text.strip()
        if not stripped:
            raise InputError("问题不能为空，请输入您想咨询的内容。")
        limit = self.settings.limits.max_query_chars
        if len(stripped) > limit:
            raise InputError(f"问题太长（{len(stripped)} 字），请精简到 {limit} 字以内。")
        return stripped

    def _weights(self, terms: Iterable[str]) -> dict[str, float]:
        unseen = self.index.max_idf or 1.0
        out: dict[str, float] = {}
        for term in terms:
            idf = self.index.term_idf(term)
            out[term] = unseen if idf is None else max(idf, 0.0)
        return out

    def _hits(self, tokens: Sequence[str], limit: int) -> list[Hit]:
        ranked = self.index.top(tokens, limit)
        if not ranked:
            return []
        weights = self._weights(dict.fromkeys(tokens))
        total = sum(weights.values()) or 1.0
        hits = []
        for doc_id, score in ranked:
            doc_terms = self.index.doc_terms(doc_id)
            matched = tuple(t for t in weights if t in doc_terms)
            coverage = sum(weights[t] for t in matched) / total
            hits.append(Hit(self.entries[doc_id], score, matched, coverage))
        return hits

    def search(self, text: str, limit: int = 10) -> list[Hit]:
        """Entries ranked best first for *text* (no decision, no input checks)."""
        return self._hits(self.tokenizer.tokenize_query(text), limit)

    def wants_person(self, text: str) -> bool:
        """True when *text* asks for a person (转人工, 人工客服, 投诉 …)."""
        norm = normalize(text)
        return any(p.search(norm) for p in self._handoff)

    def decide(self, text: str, limit: int = 10) -> Decision:
        """Search and decide: answer, suggest, none or handoff. Raises ``InputError``."""
        text = self.check_query(text)
        tokens = self.tokenizer.tokenize_query(text)
        if self.wants_person(text):
            return Decision(Action.HANDOFF, text, tokens, reason="用户要求人工服务")
        if not tokens:
            return Decision(Action.NONE, text, tokens, reason="没有可检索的词")
        hits = tuple(self._hits(tokens, limit))
        d = self.settings.decision
        if not hits:
            return Decision(Action.NONE, text, tokens, reason="知识库中没有匹配的条目")
        top = hits[0]
        runner_up = hits[1].score if len(hits) > 1 else 0.0
        clear_lead = runner_up == 0.0 or top.score >= d.answer_margin * runner_up
        choices = tuple(h for h in hits if h.coverage >= d.suggest_coverage)[: d.suggest_limit]
        lead = top.score / runner_up if runner_up else float("inf")
        if top.coverage >= d.answer_coverage and clear_lead:
            return Decision(
                Action.ANSWER,
                text,
                tokens,
                hits,
                choices[1:],
                reason=f"覆盖率 {top.coverage:.2f}，得分为第二名的 {lead:.2f} 倍",
            )
        if choices:
            return Decision(
                Action.SUGGEST,
                text,
                tokens,
                hits,
                choices,
                reason=f"最佳覆盖率 {top.coverage:.2f}，不够确定，给出选项",
            )
        return Decision(
            Action.NONE, text, tokens, hits, reason=f"最佳覆盖率 {top.coverage:.2f}，低于提示阈值"
        )


def load(
    directory: Path | str | None = None,
    *,
    settings: KnowledgeSettings | None = None,
    tokenizer: Tokenizer | None = None,
    today: dt.date | None = None,
) -> KnowledgeBase:
    """Load every entry under *directory* (default ``knowledge/entries``) into a searchable base.

    Entries not in force on *today* (``effective`` in the future or ``expires`` passed) are
    left out. Raises ``KnowledgeError`` listing every broken entry with file:line.
    """
    from yxby.paths import entries_dir

    base = Path(directory) if directory is not None else entries_dir()
    located, issues = read_entries(base)
    if issues:
        shown = "\n".join(f"  {i}" for i in issues[:20])
        more = f"\n  … and {len(issues) - 20} more" if len(issues) > 20 else ""
        raise KnowledgeError(f"knowledge base has {len(issues)} broken entries:\n{shown}{more}")
    _check_unique_ids(located)
    settings = settings or load_settings()
    day = today or dt.date.today()
    entries = tuple(le.entry for le in located if le.entry.is_effective(day))
    if tokenizer is None:
        tokenizer = Tokenizer(search_mode=settings.tokenizer.search_mode)
    return KnowledgeBase(entries, settings, tokenizer)


def _check_unique_ids(located: Sequence[LocatedEntry]) -> None:
    seen: dict[str, LocatedEntry] = {}
    for le in located:
        first = seen.setdefault(le.entry.id, le)
        if first is not le:
            raise KnowledgeError(
                f"{le.path}:{le.line}: duplicate id '{le.entry.id}' "
                f"(first at {first.path}:{first.line})"
            )
