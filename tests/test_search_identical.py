"""``KnowledgeBase.search`` gives exactly what the definitions in :class:`Hit` say.

The reference below is written plainly from those definitions (BM25 scores of every entry,
a full sort, then matched terms and the two coverages term by term); the fast search must
return the same entries in the same order with the same floats, compared with ``==``.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import numpy as np
import pytest

import knowledge
from knowledge import KnowledgeBase
from knowledge.base import Hit, Prepared
from knowledge.index import BM25Index

ODD = ["", " ", "的", "的的的", "企业", "办理", "营业执照", "a", "A B C", "123", "😀", "？？？",
       "企业 企业 企业 企业", "社保社保社保", "转人工", "营业执照营业执照补办补办补办"]  # fmt: skip


Row = tuple[str, float, tuple[str, ...], float, float]


def reference_search(kb: KnowledgeBase, text: str, limit: int) -> list[Row]:
    query = kb.tokenizer.analyze(text)
    index = kb.index
    # BM25 of every document: each query term (counted as often as it occurs) adds its
    # weight, in the order the terms first occur in the query
    scores = np.zeros(index.n_docs)
    for term, count in Counter(query.tokens).items():
        i = index.vocab.get(term)
        if i is None:
            continue
        s, e = index.indptr[i], index.indptr[i + 1]
        for doc, weight in zip(index.indices[s:e], index.weights[s:e], strict=True):
            scores[doc] += weight if count == 1 else count * weight
    ranked = sorted((d for d in range(index.n_docs) if scores[d] > 0), key=lambda d: -scores[d])
    terms = list(dict.fromkeys(query.words))
    unseen = index.max_idf or 1.0
    weights = {}
    for t in terms:
        idf = index.term_idf(t)
        weights[t] = unseen if idf is None else max(idf, 0.0)
    total = sum(weights.values()) or 1.0
    assert kb.prepared is not None
    out: list[Row] = []
    for d in ranked[:limit]:
        prepared: Prepared = kb.prepared[d]
        bag = set(prepared.terms)
        matched = tuple(t for t in terms if t in bag)
        coverage = sum(weights[t] for t in matched) / total
        best = 0.0
        for words in prepared.asked:
            weighted = [(t, max(index.term_idf(t) or 0.0, 0.0)) for t in dict.fromkeys(words)]
            if sum(w for _, w in weighted) <= 0:
                continue
            got = all_ = 0.0
            for t, w in weighted:
                all_ += w
                if t in weights:
                    got += w
            best = max(best, got / all_)
        out.append((kb.entries[d].id, float(scores[d]), matched, coverage, best))
    return out


def fast(hits: list[Hit]) -> list[Row]:
    return [(h.entry.id, h.score, h.matched_terms, h.coverage, h.question_coverage) for h in hits]


@pytest.fixture(scope="module")
def real() -> KnowledgeBase:
    return knowledge.load()


@pytest.fixture(scope="module")
def copies(real: KnowledgeBase) -> KnowledgeBase:
    """The real entries ten times over (a title word changed per copy): many documents
    share every term, so the search takes its candidate path rather than adding postings."""
    return KnowledgeBase(_copied(real, 9, seed=5), real.settings, real.tokenizer)


def _copied(real: KnowledgeBase, times: int, *, seed: int, questions_too: bool = False) -> Any:
    """The real entries and *times* copies of each, a drawn keyword added to each copy's
    title (and, with *questions_too*, to each of its questions)."""
    from knowledge.schema import Entry

    rng = random.Random(seed)
    words = sorted({w for e in real.entries for w in e.keywords if len(w) >= 2})
    entries = list(real.entries)
    for k in range(1, times + 1):
        for e in real.entries:
            data = {**e.model_dump(), "id": f"{e.id}-{'p' if questions_too else 'c'}{k}"}
            data["title"] = f"{e.title}{rng.choice(words)}"[:80]
            if questions_too:
                data["questions"] = [f"{q}{rng.choice(words)}" for q in e.questions]
            entries.append(Entry.model_validate(data))
    return tuple(entries)


def questions(kb: KnowledgeBase) -> list[str]:
    return [*dict.fromkeys(q for e in kb.entries for q in (e.title, *e.questions)), *ODD]


@pytest.mark.parametrize("limit", [10, 3, 1])
def test_search_equals_the_reference_on_the_real_base(real: KnowledgeBase, limit: int) -> None:
    for text in questions(real):
        assert fast(real.search(text, limit)) == reference_search(real, text, limit), text


def test_search_equals_the_reference_on_many_copies(copies: KnowledgeBase) -> None:
    texts = questions(copies)
    sample = random.Random(1).sample(texts[: -len(ODD)], 400) + ODD
    for text in sample:
        assert fast(copies.search(text, 10)) == reference_search(copies, text, 10), text


def test_top_equals_a_full_sort_on_random_corpora() -> None:
    rng = random.Random(9)
    vocab = [f"t{i}" for i in range(300)]
    weights = [1 / (i + 1) ** 1.1 for i in range(len(vocab))]
    docs = [rng.choices(vocab, weights, k=rng.randint(1, 40)) for _ in range(3000)]
    index = BM25Index(docs)
    for _ in range(300):
        query = rng.choices(vocab, weights, k=rng.randint(1, 12))
        scores = index.get_scores(query)
        want = [int(d) for d in np.argsort(-scores, kind="stable") if scores[d] > 0]
        for limit in (1, 10, 50):
            top = index.top(query, limit)
            got = [d for d, _ in top]
            assert got == want[:limit]
            assert [score for _, score in top] == [float(scores[d]) for d in got]
            terms = list(dict.fromkeys(query[:3]))
            rows = index.contains_each(got, terms)
            for k, d in enumerate(got):
                assert [row[k] for row in rows] == [t in docs[d] for t in terms]


class Pruning(BM25Index):
    """The pruned search on small corpora: every index prunes, common terms at 1/8."""

    prune_min_docs = 1
    dense_share = 8


@pytest.fixture(scope="module")
def pruned_copies(real: KnowledgeBase) -> KnowledgeBase:
    """The copies again, their index pruning (as at 10,000 entries)."""
    entries = _copied(real, 5, seed=6, questions_too=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("knowledge.base.BM25Index", Pruning)
        kb = KnowledgeBase(tuple(entries), real.settings, real.tokenizer)
    assert isinstance(kb.index, Pruning) and kb.index.compiled
    return kb


def _pruned(index: BM25Index, query: Any, limit: int) -> bool:
    """True when the compiled search left common terms out (pruned) for *query*."""
    cols, counts = index._columns(query)
    return bool(cols) and index._kernel(cols, counts, limit, ())[3] > 0


@pytest.mark.parametrize("limit", [10, 3, 1, 40])
def test_pruned_search_equals_the_reference(pruned_copies: KnowledgeBase, limit: int) -> None:
    kb = pruned_copies
    texts = questions(kb)
    sample = random.Random(limit).sample(texts[: -len(ODD)], 300) + ODD
    pruned = 0
    for text in sample:
        pruned += _pruned(kb.index, kb.tokenizer.analyze(text).tokens, limit)
        assert fast(kb.search(text, limit)) == reference_search(kb, text, limit), text
    assert pruned > len(sample) // (3 if limit <= 10 else 10)  # the pruned path was tested


def _full_sort(index: BM25Index, query: list[str], limit: int) -> list[tuple[int, float]]:
    scores = index.get_scores(query)
    order = [int(d) for d in np.argsort(-scores, kind="stable") if scores[d] > 0]
    return [(d, float(scores[d])) for d in order[:limit]]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pruned_top_equals_a_full_sort(seed: int) -> None:
    rng = random.Random(seed)
    vocab = [f"t{i}" for i in range(400)]
    weights = [1 / (i + 1) ** 0.8 for i in range(len(vocab))]
    docs = [rng.choices(vocab, weights, k=rng.randint(1, 50)) for _ in range(1500)]
    docs += [list(d) for d in docs[:300]]  # equal documents: ties, also at the cut-off
    docs.append(["t0"] * 300 + ["t1"])  # a frequency the dense table cannot hold
    index = Pruning(docs)
    plain = BM25Index(docs)
    assert not plain.compiled and index.compiled
    common = [t for t in vocab if index.vocab.get(t) in index._dense_slot]
    rare = [t for t in vocab if t in index.vocab and index.vocab[t] not in index._dense_slot]
    queries = [rng.choices(vocab, weights, k=rng.randint(1, 30)) for _ in range(200)]
    queries += [rng.choices(common, k=rng.randint(1, 8)) for _ in range(30)]  # all common
    queries += [rng.choices(rare, k=rng.randint(1, 8)) for _ in range(30)]  # all rare
    queries += [[*rng.choices(rare, k=2), *rng.choices(common, k=12)] for _ in range(30)]
    queries += [["t0", "t1", "t399", "t399"], ["unseen", "t200"], [rare[-1]], []]
    pruned = full = 0
    for query in queries:
        for limit in (1, 2, 10, 50, 5000):
            want = _full_sort(plain, query, limit)
            assert plain.top(query, limit) == want
            got, rows = index.top_matching(query, limit, [*query[:4], "unseen"])
            assert got == want, (query, limit)
            pruned += _pruned(index, query, limit)
            full += bool(query) and not _pruned(index, query, limit)
            for (d, _), row in zip(got, rows, strict=True):
                assert row == [t in docs[d] for t in [*query[:4], "unseen"]]
    assert pruned > len(queries)  # most (query, limit) pairs left common terms out
    assert full > 10  # and some needed every term added up (large limits, all common)


def test_pruned_search_in_many_threads_at_once(pruned_copies: KnowledgeBase) -> None:
    """Searches on the pruned path at once, from many threads, give the same results."""
    from concurrent.futures import ThreadPoolExecutor

    kb = pruned_copies
    texts = random.Random(11).sample(questions(kb)[: -len(ODD)], 120)
    want = {t: fast(kb.search(t, 10)) for t in texts}

    def run(seed: int) -> bool:
        order = random.Random(seed).sample(texts, len(texts))
        ok = all(fast(kb.search(t, 10)) == want[t] for t in order for _ in range(3))
        # a smaller pruned index in between
        small = Pruning([["a", "b"], ["a"], ["b", "c"], ["a", "c", "c"]] * 3)
        return ok and small.top(["a", "c"], 2) == _full_sort(small, ["a", "c"], 2)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(run, range(16)))


def test_question_coverage_of_partly_matched_questions(real: KnowledgeBase) -> None:
    """Queries made of some words of an entry's questions (one, two, three or more, in
    another order, plus unseen words): partial question coverage sums in question order."""
    rng = random.Random(12)
    texts = []
    for e in rng.sample(real.entries, 60):
        for q in e.questions[:2]:
            words = list(real.tokenizer.analyze(q).words)
            for k in (1, 2, 3, 5):
                if len(words) >= k:
                    texts.append("".join(rng.sample(words, k)))
                    texts.append(" ".join([*rng.sample(words, k), "霓虹灯"]))
    for text in texts:
        assert fast(real.search(text, 10)) == reference_search(real, text, 10), text


def test_a_small_base_never_imports_the_compiled_kernels() -> None:
    """The shipped knowledge base searches in numpy: a cold ``yxby ask`` pays no numba."""
    import subprocess
    import sys

    code = (
        "import sys, knowledge\n"
        "kb = knowledge.load()\n"
        "assert not kb.index.compiled\n"
        "assert kb.search('营业执照丢了怎么补办')\n"
        "assert 'numba' not in sys.modules and 'knowledge.kernels' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
