"""BM25Index must score exactly like rank-bm25's BM25Okapi (the oracle)."""

import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from knowledge.index import BM25Index, BM25Params


def corpus(n_docs: int, seed: int) -> tuple[list[list[str]], list[list[str]]]:
    rng = random.Random(seed)
    vocab = [f"t{i}" for i in range(800)]
    weights = [1 / (i + 1) ** 0.9 for i in range(len(vocab))]
    docs = [rng.choices(vocab, weights, k=rng.randint(3, 60)) for _ in range(n_docs)]
    queries = [rng.choices(vocab, weights, k=rng.randint(1, 6)) for _ in range(60)]
    queries.append(["unseen-term", "t3"])
    queries.append(["t5", "t5", "t9"])  # a repeated term counts twice, as in rank-bm25
    return docs, queries


@pytest.mark.parametrize(
    ("k1", "b", "epsilon"), [(1.5, 0.75, 0.25), (1.2, 0.6, 0.25), (0.9, 0.3, 0.5)]
)
def test_same_scores_and_top10_as_rank_bm25(k1: float, b: float, epsilon: float) -> None:
    docs, queries = corpus(1500, seed=7)
    oracle = BM25Okapi(docs, k1=k1, b=b, epsilon=epsilon)
    index = BM25Index(docs, BM25Params(k1=k1, b=b, epsilon=epsilon))
    for q in queries:
        expected = oracle.get_scores(q)
        np.testing.assert_allclose(index.get_scores(q), expected, rtol=1e-9, atol=1e-12)
        top = index.top(q, 10)
        positive = expected[expected > 0]
        want = np.sort(positive)[::-1][:10]
        np.testing.assert_allclose([s for _, s in top], want, rtol=1e-9)
        for doc_id, score in top:
            assert expected[doc_id] == pytest.approx(score, rel=1e-9)


def test_top_breaks_ties_by_document_order() -> None:
    docs = [["a", "b"], ["a", "b"], ["c"], ["a", "d"], ["e"], ["f"], ["g"], ["h"]]
    index = BM25Index(docs)
    assert [d for d, _ in index.top(["a"], 10)] == [0, 1, 3]


def test_only_positive_scores_are_hits() -> None:
    # "a" is in most documents: rank-bm25's average idf, and so its epsilon floor, is
    # negative here; such documents are not hits.
    docs = [["a", "b"], ["a", "b"], ["c"], ["a", "b"]]
    index = BM25Index(docs)
    assert index.get_scores(["a"])[[0, 1, 3]].max() < 0
    assert index.top(["a"], 10) == []


def test_no_match_gives_no_hits() -> None:
    index = BM25Index([["a"], ["b"]])
    assert index.top(["zzz"], 5) == []
    assert index.top([], 5) == []
    assert index.top(["a"], 0) == []


def test_limit_is_respected_and_sorted() -> None:
    docs, _ = corpus(300, seed=3)
    index = BM25Index(docs)
    top = index.top(["t1", "t2", "t3"], 7)
    assert len(top) == 7
    scores = [s for _, s in top]
    assert scores == sorted(scores, reverse=True)


def test_common_terms_get_epsilon_floor_not_negative_idf() -> None:
    docs = [["common", f"rare{i}"] for i in range(10)]
    index = BM25Index(docs)
    idf = index.term_idf("common")
    assert idf is not None and idf > 0
    assert idf == pytest.approx(0.25 * index.average_idf)
    assert index.term_idf("never") is None


def test_empty_corpus() -> None:
    index = BM25Index([])
    assert index.top(["a"], 3) == []


def test_ties_at_the_cut_off_keep_the_lowest_document_ids() -> None:
    docs = [["x", f"pad{i}"] for i in range(30)] + [["y"]] * 70
    index = BM25Index(docs)
    top = index.top(["x"], 10)
    assert [d for d, _ in top] == list(range(10))


def test_contains_looks_up_a_posting() -> None:
    index = BM25Index([["a", "b"], ["b"], ["c"]])
    assert index.contains(0, "a") and index.contains(1, "b") and not index.contains(1, "a")
    assert not index.contains(0, "zzz")


def test_an_index_from_bags_of_words_is_the_same_index() -> None:
    from collections import Counter

    rng = random.Random(7)
    words = [f"w{i}" for i in range(60)]
    corpus = [[rng.choice(words) for _ in range(rng.randint(0, 40))] for _ in range(200)]
    bags = [(tuple(Counter(d)), tuple(Counter(d).values())) for d in corpus]
    a, b = BM25Index(corpus), BM25Index.from_bags(bags)
    assert a.vocab == b.vocab
    for name in ("weights", "indices", "indptr", "idf", "doc_len"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    with pytest.raises(ValueError, match="twice"):
        BM25Index.from_bags([(("a", "a"), (1, 1))])


def test_contains_each_agrees_with_contains() -> None:
    docs, queries = corpus(300, seed=11)
    index = BM25Index(docs)
    rng = random.Random(3)
    for query in queries:
        ids = rng.sample(range(300), 10)
        terms = [*query, "never-seen"]
        rows = index.contains_each(ids, terms)
        assert rows == [[index.contains(d, t) for d in ids] for t in terms]
    assert index.contains_each([], ["t1"]) == [[]]
