"""The 企业服务知识库: load entries, search them, and decide what the bot should do.

``load(directory)`` returns a :class:`KnowledgeBase`; ``search(text)`` ranks entries with
BM25 and explains each hit (score, matched terms, coverage); ``decide(text)`` turns the
ranking into an action: ``answer`` (confident), ``suggest`` (top choices), ``none`` (offer a
person) or ``handoff`` (the user asked for a person).
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path

import numpy as np
import numpy.typing as npt

from knowledge.index import BM25Index, BM25Params
from knowledge.lint import LintIssue, check_entries
from knowledge.schema import Entry
from knowledge.settings import DecisionSettings, KnowledgeSettings, load_settings
from knowledge.tokenizer import Analysis, Tokenizer, normalize
from yxby.errors import InputError, KnowledgeError

__all__ = [
    "Action",
    "Decision",
    "Hit",
    "KnowledgeBase",
    "Prepared",
    "choose",
    "load",
    "prepare_entry",
]

log = logging.getLogger(__name__)


class Action(enum.StrEnum):
    """What the bot should do with a message."""

    ANSWER = "answer"
    SUGGEST = "suggest"
    NONE = "none"
    HANDOFF = "handoff"


@dataclass(frozen=True)
class Hit:
    """One ranked entry and why: BM25 score, matched query terms and two coverages.

    ``coverage`` is the idf-weighted share of the query's terms the entry contains (a term the
    index has never seen counts with the largest idf); ``question_coverage`` is the best
    idf-weighted share of one of the entry's own questions (or its title) that the query
    contains. ``confidence`` is their mean: a long question with context words can still
    clearly ask one of the entry's questions, and a two-word greeting that happens to occur in
    an answer covers none of its questions.

    ``missing_term`` is the query's most informative word that the entry lacks (a word whose
    search-mode sub-word the entry has is not missing; nor is a word jieba only guessed), and
    ``missing_share`` its share of the query's idf weight: 年检 in 车辆年检在哪里做 against an
    entry about 道路运输车辆 — the query's topic is one the entry does not speak of. Only the
    best hit of a search carries them (the decision reads no other; computing them for every
    hit cost a tenth of a search); the others have "" and 0.
    """

    entry: Entry
    score: float
    matched_terms: tuple[str, ...]
    coverage: float
    question_coverage: float = 0.0
    missing_term: str = ""
    missing_share: float = 0.0

    @property
    def confidence(self) -> float:
        return (self.coverage + self.question_coverage) / 2

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


@dataclass(frozen=True)
class Prepared:
    """An entry cut into terms: its BM25 document as a bag of words (each distinct term in
    first-seen order and how often it occurs) and the whole words of its title and of each
    of its questions (for question coverage).

    The slow part of building a knowledge base (jieba); :mod:`knowledge.cache` keeps it on
    disk and :mod:`knowledge.live` in memory, so a reload re-tokenizes only what changed.
    BM25 needs only the bag, which is also a third of the size of the token sequence.
    """

    terms: tuple[str, ...]
    counts: tuple[int, ...]
    asked: tuple[tuple[str, ...], ...]


def prepare_entry(entry: Entry, tokenizer: Tokenizer, settings: KnowledgeSettings) -> Prepared:
    """Tokenize *entry* as the index needs it (field weights repeat a field's tokens)."""
    weights = settings.fields
    bag: Counter[str] = Counter()
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
        for _ in range(times):
            bag.update(part)
    # one string object per distinct term across entries: millions of equal token strings
    # would cost memory, and freeing them all at once stalls every thread (a reload)
    same = tokenizer.entry_terms.setdefault
    asked = tuple(
        tuple(same(w, w) for w in tokenizer.analyze(q).words)
        for q in (entry.title, *entry.questions)
    )
    return Prepared(tuple(same(t, t) for t in bag), tuple(bag.values()), asked)


@dataclass
class KnowledgeBase:
    """Searchable entries. Build with :func:`load`.

    ``problems`` are the errors that kept entries out when loading (empty when every entry
    loaded); the bot serves the rest, ``yxby doctor`` and ``yxby kb lint`` fail on them.
    """

    entries: tuple[Entry, ...]
    settings: KnowledgeSettings
    tokenizer: Tokenizer
    problems: tuple[LintIssue, ...] = ()
    prepared: Sequence[Prepared] | None = field(default=None, repr=False, compare=False)
    """The entries already tokenized (one per entry, same order); tokenized here when absent."""
    index: BM25Index = field(init=False)
    _handoff: tuple[re.Pattern[str], ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.prepared is None:
            self.prepared = tuple(
                prepare_entry(e, self.tokenizer, self.settings) for e in self.entries
            )
        elif len(self.prepared) != len(self.entries):
            raise ValueError("prepared must hold one Prepared per entry")
        bags = [(p.terms, p.counts) for p in self.prepared]
        bm = self.settings.bm25
        self.index = BM25Index.from_bags(bags, BM25Params(k1=bm.k1, b=bm.b, epsilon=bm.epsilon))
        self._handoff = tuple(re.compile(p) for p in self.settings.handoff.patterns)
        self._by_id = {e.id: e for e in self.entries}
        # each entry's title and questions as (term, idf) lists and their idf sums, for
        # question coverage
        self._questions: list[list[tuple[tuple[tuple[str, float], ...], float]]] = []
        for prepared in self.prepared:
            asked = []
            for words in prepared.asked:
                terms = dict.fromkeys(words)
                weighted = tuple((t, max(self.index.term_idf(t) or 0.0, 0.0)) for t in terms)
                total = 0.0
                for _, weight in weighted:
                    total += weight
                if total > 0:
                    asked.append((weighted, total))
            self._questions.append(asked)
        self._flat_questions = None
        if self.index.compiled:
            self._flat_questions = self._flatten_questions()
            self._question_coverage([0], {})  # compiled now, not at the first question

    def _flatten_questions(self) -> tuple[npt.NDArray[np.int64], ...]:
        """The questions as flat arrays for :func:`knowledge.kernels.question_coverage`:
        per entry its questions' range, per question its terms' range and idf sum, per term
        its index id and idf (a term of no entry weighs 0 and is left out)."""
        vocab = self.index.vocab
        q_ptr, t_ptr, t_ids, t_weights, q_total = [0], [0], [], [], []
        for asked in self._questions:
            for weighted, total in asked:
                for term, weight in weighted:
                    i = vocab.get(term)
                    if i is not None:
                        t_ids.append(i)
                        t_weights.append(weight)
                t_ptr.append(len(t_ids))
                q_total.append(total)
            q_ptr.append(len(q_total))
        return (
            np.asarray(q_ptr, dtype=np.int64),
            np.asarray(t_ptr, dtype=np.int64),
            np.asarray(t_ids, dtype=np.int64),
            np.asarray(t_weights, dtype=np.float64),
            np.asarray(q_total, dtype=np.float64),
        )

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

    def _hits(self, query: Analysis, limit: int) -> list[Hit]:
        weights = self._weights(dict.fromkeys(query.words))
        terms = list(weights)
        ranked, present = self.index.top_matching(query.tokens, limit, terms)
        if not ranked:
            return []
        total = sum(weights.values()) or 1.0
        weight = weights.__getitem__
        entries = self.entries
        best_of = self._question_coverage([d for d, _ in ranked], weights)
        hits: list[Hit] = []
        for (doc_id, score), row, best in zip(ranked, present, best_of, strict=True):
            matched = tuple(compress(terms, row))
            coverage = sum(map(weight, matched)) / total
            missing = "" if hits else self._missing(query, weights, doc_id, row)
            share = weights[missing] / total if missing else 0.0
            hits.append(Hit(entries[doc_id], score, matched, coverage, best, missing, share))
        return hits

    def _question_coverage(self, doc_ids: list[int], weights: dict[str, float]) -> list[float]:
        """Each document's question coverage (see :class:`Hit`) for a query's term weights."""
        if self._flat_questions is not None:
            from knowledge.kernels import question_coverage

            vocab = self.index.vocab
            return question_coverage(
                np.asarray(doc_ids, dtype=np.int64),
                np.asarray([vocab.get(t, -1) for t in weights], dtype=np.int64),
                *self._flat_questions,
            ).tolist()
        out = []
        questions = self._questions
        for doc_id in doc_ids:
            # inline: this loop is most of a small base's search time in Python
            best = 0.0
            for weighted, asked in questions[doc_id]:
                got = 0.0
                for term, idf in weighted:
                    if term in weights:
                        got += idf
                if got:
                    got /= asked
                    if got > best:
                        best = got
            out.append(best)
        return out

    def _missing(
        self, query: Analysis, weights: dict[str, float], doc_id: int, row: Sequence[bool]
    ) -> str:
        """The most informative of the query's words that document *doc_id* lacks ("" when
        it has them all): *row* says which of ``weights``' terms it contains; a word one of
        whose search-mode sub-words it has is not lacking (资金 for 资金周转), and a word
        jieba only guessed is not counted (see :class:`~knowledge.tokenizer.Analysis`)."""
        parts = dict(zip(query.words, query.parts, strict=False))
        lacking = [
            term
            for term, found in zip(weights, row, strict=True)
            if not found and term not in query.guessed
        ]
        for term in sorted(lacking, key=weights.__getitem__, reverse=True):
            if not any(self.index.contains(doc_id, sub) for sub in parts.get(term, ())):
                return term
        return ""

    def search(self, text: str, limit: int = 10) -> list[Hit]:
        """Entries ranked best first for *text* (no decision, no input checks)."""
        return self._hits(self.tokenizer.analyze_query(text), limit)

    def wants_person(self, text: str) -> bool:
        """True when *text* asks for a person (转人工, 人工客服, 投诉 …)."""
        norm = normalize(text)
        return any(p.search(norm) for p in self._handoff)

    def decide(self, text: str, limit: int = 10) -> Decision:
        """Search and decide: answer, suggest, none or handoff. Raises ``InputError``."""
        text = self.check_query(text)
        query = self.tokenizer.analyze_query(text)
        tokens = query.tokens
        if self.wants_person(text):
            return Decision(Action.HANDOFF, text, tokens, reason="用户要求人工服务")
        if not tokens:
            return Decision(Action.NONE, text, tokens, reason="没有可检索的词")
        hits = tuple(self._hits(query, limit))
        action, choices, reason = choose(hits, self.settings.decision)
        return Decision(action, text, tokens, hits, choices, reason)


def choose(hits: Sequence[Hit], d: DecisionSettings) -> tuple[Action, tuple[Hit, ...], str]:
    """The decision rule on ranked hits: (action, hits to offer, Chinese reason).

    Answer when the best hit is confident enough *and* clearly ahead of the runner-up (by
    BM25 score ratio or by confidence) *and* does not lack the query's topic (a word carrying
    ``missing_word_share`` of the query's weight, :attr:`Hit.missing_share`); else
    offer the hits that reach ``suggest_confidence``; else nothing. Pure, so thresholds can be
    tuned over stored hits (``knowledge.tuning``).
    """
    if not hits:
        return Action.NONE, (), "知识库中没有匹配的条目"
    top = hits[0]
    runner_up = hits[1].score if len(hits) > 1 else 0.0
    lead = top.score / runner_up if runner_up > 0 else float("inf")
    choices = tuple(h for h in hits if h.confidence >= d.suggest_confidence)[: d.suggest_limit]
    gap = top.confidence - (hits[1].confidence if len(hits) > 1 else 0.0)
    ahead = lead >= d.answer_margin or gap >= d.answer_gap
    # a near-perfect match of one of the entry's own questions needs only a small lead
    sure = top.confidence >= d.sure_confidence and lead >= d.sure_margin
    confident = (top.confidence >= d.answer_confidence and ahead) or sure
    if confident and top.missing_share >= d.missing_word_share:
        lacking = f"最佳条目不含问题的主要词「{top.missing_term}」（占 {top.missing_share:.0%}）"
        if choices:
            return Action.SUGGEST, choices, f"{lacking}，不直接回答，给出选项"
        return Action.NONE, (), f"{lacking}，不直接回答"
    if confident:
        reason = f"置信度 {top.confidence:.2f}，得分为第二名的 {lead:.2f} 倍，置信度高出 {gap:.2f}"
        return Action.ANSWER, choices[1:], reason
    if choices:
        return Action.SUGGEST, choices, f"最高置信度 {top.confidence:.2f}，不够确定，给出选项"
    return Action.NONE, (), f"最高置信度 {top.confidence:.2f}，低于提示阈值"


def load(
    directory: Path | str | None = None,
    *,
    settings: KnowledgeSettings | None = None,
    tokenizer: Tokenizer | None = None,
    today: dt.date | None = None,
) -> KnowledgeBase:
    """Load every good entry under *directory* (default ``knowledge/entries``).

    A broken entry, or a later copy of an id, is left out and recorded in
    :attr:`KnowledgeBase.problems` (Chinese, with file:line; logged once as a warning), so
    one mistake never stops the bot. With *today*, entries not in force on that date
    (``effective`` in the future or ``expires`` passed) are left out too; without it no
    entry is left out for its dates (the library never reads the wall clock: callers pass
    their clock's date). Raises ``KnowledgeError`` when the directory is missing or no
    entry at all could be loaded.
    """
    from yxby.paths import entries_dir

    base = Path(directory) if directory is not None else entries_dir()
    located, problems = check_entries(base)
    if not located:
        raise KnowledgeError(_nothing_loaded(base, problems), problems=tuple(problems))
    if problems:
        log.warning(
            "知识库有 %d 处问题，有问题的条目未加载（yxby kb lint 查看全部）：\n%s",
            len(problems),
            _listing(problems),
        )
    settings = settings or load_settings()
    entries = tuple(le.entry for le in located if today is None or le.entry.is_effective(today))
    if tokenizer is None:
        tokenizer = Tokenizer(**settings.tokenizer.model_dump())
    return KnowledgeBase(entries, settings, tokenizer, problems=tuple(problems))


def _listing(problems: Sequence[LintIssue], limit: int = 20) -> str:
    shown = "\n".join(f"  {p}" for p in problems[:limit])
    more = f"\n  ……另有 {len(problems) - limit} 处" if len(problems) > limit else ""
    return shown + more


def _nothing_loaded(base: Path, problems: Sequence[LintIssue]) -> str:
    if not problems:
        return f"{base}: 知识库中没有任何条目"
    return f"{base}: 知识库没有一条可用的条目，共 {len(problems)} 处问题：\n{_listing(problems)}"
