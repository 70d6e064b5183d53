"""Search latency, build time and memory of the BM25 index against rank-bm25.

Synthetic entries at 1k, 10k and 100k documents are generated from a *profile* of a real
corpus, tokenized with our :class:`~knowledge.tokenizer.Tokenizer`: its vocabulary with each
term's document frequency, and the joint distribution of (length, distinct terms) of its
documents. Each synthetic document copies the length and distinct-term count of a random
real one, draws its distinct terms with probability proportional to document frequency (so a
term's expected share of documents equals its share in the real corpus) and fills the rest
of its length by repeating its own terms (real text is bursty). Queries are real questions
of the same corpus, through the same tokenizer (stop words removed).

For every size, in a fresh forked process: build :class:`~knowledge.index.BM25Index` and
``rank_bm25.BM25Okapi`` on the same documents with the same parameters, record build time
and RSS growth, then time ``BM25Index.top(tokens, 10)`` against ``BM25Okapi.get_scores`` +
top-10 on the same token lists. rank-bm25 is slow at 100k, so it gets fewer queries.

Separately, ``KnowledgeBase.search(text)`` is timed end to end (tokenization included) on the
real knowledge base from ``knowledge.load()``, and on a synthetic knowledge base of
``--kb-entries`` entries (default 10,000; the directory of :mod:`benchmarks.kb_reload`:
copies of the real entries with a word changed), queried with the real entries' questions:
the issue's target is ``search`` at 10,000 entries, p50 ≤ 0.1 ms. Memory growth and build
time of that knowledge base (from already tokenized entries) are reported too.

Run alone: ``.venv/bin/python -m benchmarks.search_latency [--sizes 1000,10000]
[--kb-entries 10000]`` (``--kb-entries 0`` skips the synthetic knowledge base).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.common import (
    LatencyStats,
    machine_info,
    read_msgabench,
    release_free_memory,
    rss_mib,
    table,
    time_each,
)
from knowledge.index import BM25Index, BM25Params
from knowledge.settings import load_settings
from knowledge.tokenizer import Tokenizer
from yxby.errors import ConfigError

__all__ = [
    "CorpusProfile",
    "build_profile",
    "default_profile",
    "main",
    "measure_knowledge_base",
    "measure_size",
    "measure_synthetic_knowledge_base",
    "report",
    "run",
    "synthetic_corpus",
]

SIZES = (1_000, 10_000, 100_000)
# Queries timed per size: ours (each timed `OURS_REPEAT` times) and rank-bm25 (once each).
OURS_QUERIES = 1_000
OURS_REPEAT = 3
RANK_QUERIES = {1_000: 300, 10_000: 100, 100_000: 20}
TARGET_P50_MS = 0.1
KB_ENTRIES = 10_000
TARGET_SPEEDUP = 100.0


@dataclass(frozen=True)
class CorpusProfile:
    """What synthetic documents are drawn from: a real corpus' statistics and questions."""

    source: str
    terms: npt.NDArray[np.object_]  # vocabulary
    doc_freq: npt.NDArray[np.float64]  # documents containing each term
    lengths: npt.NDArray[np.int64]  # tokens per real document
    distinct: npt.NDArray[np.int64]  # distinct terms per real document
    queries: tuple[tuple[str, ...], ...]  # real questions, tokenized
    questions: tuple[str, ...]  # the same questions as written

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "real_documents": len(self.lengths),
            "vocabulary": len(self.terms),
            "mean_tokens_per_document": round(float(self.lengths.mean()), 1),
            "mean_distinct_terms_per_document": round(float(self.distinct.mean()), 1),
            "queries": len(self.queries),
            "mean_query_tokens": round(float(np.mean([len(q) for q in self.queries])), 1),
        }


def build_profile(
    tokenizer: Tokenizer, documents: Sequence[str], questions: Sequence[str], source: str
) -> CorpusProfile:
    """Tokenize a real corpus and its questions into a :class:`CorpusProfile`."""
    df: dict[str, int] = {}
    lengths: list[int] = []
    distinct: list[int] = []
    for text in documents:
        tokens = tokenizer.tokenize(text)
        if not tokens:
            continue
        uniq = dict.fromkeys(tokens)  # first-seen order: the same vocabulary every run
        for term in uniq:
            df[term] = df.get(term, 0) + 1
        lengths.append(len(tokens))
        distinct.append(len(uniq))
    kept = [(t, tuple(tokenizer.tokenize(t))) for t in questions]
    queries = tuple(q for _, q in kept if q)
    if not df or not queries:
        raise ConfigError(f"{source}: no documents or no questions left after tokenizing")
    terms = np.empty(len(df), dtype=object)
    terms[:] = list(df)
    return CorpusProfile(
        source=source,
        terms=terms,
        doc_freq=np.fromiter(df.values(), dtype=np.float64, count=len(df)),
        lengths=np.asarray(lengths, dtype=np.int64),
        distinct=np.asarray(distinct, dtype=np.int64),
        queries=queries,
        questions=tuple(t for t, q in kept if q),
    )


def default_profile(tokenizer: Tokenizer) -> CorpusProfile:
    """MSGABench 政务问答 (answers and questions); the knowledge base itself when absent."""
    try:
        pairs = read_msgabench().pairs
    except ConfigError as exc:
        import knowledge

        print(f"[search_latency] {exc}; profiling the knowledge base entries instead")
        kb = knowledge.load(tokenizer=tokenizer)
        return build_profile(
            tokenizer,
            [e.answer for e in kb.entries],
            [q for e in kb.entries for q in e.questions],
            "knowledge/entries",
        )
    return build_profile(
        tokenizer,
        [p.answer for p in pairs],
        [p.question for p in pairs],
        "MSGABench 政务问答",
    )


def synthetic_corpus(
    profile: CorpusProfile, n_docs: int, rng: np.random.Generator
) -> list[list[str]]:
    """*n_docs* synthetic token lists following *profile* (see the module docstring)."""
    pick = rng.integers(0, len(profile.lengths), size=n_docs)
    length, uniq = profile.lengths[pick], profile.distinct[pick]
    p = profile.doc_freq / profile.doc_freq.sum()
    chosen = rng.choice(len(profile.terms), size=int(uniq.sum()), p=p)
    # Fill each document up to its length with repeats of its own distinct terms.
    extra = length - uniq
    doc_of_extra = np.repeat(np.arange(n_docs), extra)
    starts = np.cumsum(uniq) - uniq
    offset = (rng.random(int(extra.sum())) * uniq[doc_of_extra]).astype(np.int64)
    repeats = chosen[starts[doc_of_extra] + offset]
    ids = np.concatenate([chosen, repeats])
    owner = np.concatenate([np.repeat(np.arange(n_docs), uniq), doc_of_extra])
    words = profile.terms[ids[np.argsort(owner, kind="stable")]]
    ends = np.cumsum(length)
    return [words[s:e].tolist() for s, e in zip(ends - length, ends, strict=True)]


def _rank_top(model: Any, query: Sequence[str], limit: int = 10) -> list[int]:
    """rank-bm25's scores, then a partial sort for the top documents (the timed path)."""
    scores = model.get_scores(query)
    if len(scores) > limit:
        cand = np.argpartition(-scores, limit - 1)[:limit]
    else:
        cand = np.arange(len(scores))
    return [int(i) for i in cand[np.lexsort((cand, -scores[cand]))] if scores[i] > 0]


def _oracle_top(model: Any, query: Sequence[str], limit: int = 10) -> list[int]:
    """rank-bm25's top documents, ties in document order (a stable full sort; not timed)."""
    scores = model.get_scores(query)
    return [int(i) for i in np.argsort(-scores, kind="stable")[:limit] if scores[i] > 0]


def measure_size(
    profile: CorpusProfile,
    n_docs: int,
    params: BM25Params,
    *,
    ours_queries: int = OURS_QUERIES,
    rank_queries: int = 100,
    seed: int = 20240601,
) -> dict[str, Any]:
    """Build both indexes on *n_docs* synthetic documents and time their top-10 queries."""
    from rank_bm25 import BM25Okapi

    rng = np.random.default_rng(seed + n_docs)
    t0 = time.perf_counter()
    corpus = synthetic_corpus(profile, n_docs, rng)
    generate_s = time.perf_counter() - t0
    order = rng.permutation(len(profile.queries))
    queries = [profile.queries[i] for i in order[:ours_queries]]
    rank_sample = queries[:rank_queries]

    # rank-bm25 first: it frees little while building, so ours' growth is not hidden by
    # memory it could reuse from rank-bm25's temporaries (see release_free_memory).
    release_free_memory()
    rss0 = rss_mib()
    t0 = time.perf_counter()
    rank = BM25Okapi(corpus, k1=params.k1, b=params.b, epsilon=params.epsilon)
    rank_build_s = time.perf_counter() - t0
    release_free_memory()
    rss1 = rss_mib()
    t0 = time.perf_counter()
    ours = BM25Index(corpus, params)
    ours_build_s = time.perf_counter() - t0
    release_free_memory()
    rss2 = rss_mib()

    ours_ns = time_each(lambda q: ours.top(q, 10), queries, repeat=OURS_REPEAT, warmup=50)
    rank_ns = time_each(lambda q: _rank_top(rank, q), rank_sample, warmup=3)
    same = sum([d for d, _ in ours.top(q, 10)] == _oracle_top(rank, q) for q in rank_sample)
    o, r = LatencyStats.from_ns(ours_ns), LatencyStats.from_ns(rank_ns)
    return {
        "documents": n_docs,
        "tokens": int(sum(len(d) for d in corpus)),
        "vocabulary": len(ours.vocab),
        "generate_s": round(generate_s, 2),
        "ours": {
            "build_s": round(ours_build_s, 3),
            "rss_growth_mib": round(rss2 - rss1, 1),
            "latency": o.as_dict(),
            "queries": len(queries),
            "repeat": OURS_REPEAT,
        },
        "rank_bm25": {
            "build_s": round(rank_build_s, 3),
            "rss_growth_mib": round(rss1 - rss0, 1),
            "latency": r.as_dict(),
            "queries": len(rank_sample),
        },
        "rss_after_both_mib": round(rss2, 1),
        "speedup_p50": round(r.p50_ms / o.p50_ms, 1) if o.p50_ms else None,
        "same_top10": f"{same}/{len(rank_sample)}",
    }


def _in_child(conn: Any, profile: CorpusProfile, n_docs: int, params: BM25Params) -> None:
    try:
        conn.send(measure_size(profile, n_docs, params, rank_queries=RANK_QUERIES.get(n_docs, 50)))
    except BaseException as exc:  # report to the parent, whatever it was
        conn.send({"documents": n_docs, "error": repr(exc)})
    finally:
        conn.close()


def _measure_isolated(profile: CorpusProfile, n_docs: int, params: BM25Params) -> dict[str, Any]:
    """:func:`measure_size` in a fresh (spawned) process, so RSS growth is not hidden by
    memory this process freed earlier (jieba, tokenizing) and the child would reuse."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_in_child, args=(child, profile, n_docs, params))
    proc.start()
    child.close()
    try:
        result: dict[str, Any] = parent.recv()
    except EOFError:
        result = {"documents": n_docs, "error": f"child exited with {proc.exitcode}"}
    proc.join()
    return result


def measure_knowledge_base(questions: Sequence[str]) -> dict[str, Any]:
    """``KnowledgeBase.search``/``decide`` latency on the real knowledge base.

    *questions* (plus every question written in the entries) are searched once each, so
    none is memoised ("first sight": tokenization included), then all again (memoised).
    """
    import knowledge

    t0 = time.perf_counter()
    kb = knowledge.load()
    load_s = time.perf_counter() - t0
    own = [q for e in kb.entries for q in e.questions]
    limit = kb.settings.limits.max_query_chars
    texts = [t for t in dict.fromkeys([*own, *questions]) if 0 < len(t.strip()) <= limit]
    time_each(kb.search, ["营业执照丢了怎么补办", "企业开办需要多久", "社保怎么转移"] * 10)
    first = LatencyStats.from_ns(time_each(kb.search, texts))
    again = LatencyStats.from_ns(time_each(kb.search, texts))
    decide = LatencyStats.from_ns(time_each(kb.decide, texts))
    tokenize = LatencyStats.from_ns(time_each(kb.tokenizer.tokenize, texts))
    return {
        "entries": len(kb),
        "load_s": round(load_s, 3),
        "queries": len(texts),
        "search_first_sight": first.as_dict(),
        "search_memoised": again.as_dict(),
        "decide_memoised": decide.as_dict(),
        "tokenize_only": tokenize.as_dict(),
    }


def measure_synthetic_knowledge_base(n_entries: int) -> dict[str, Any]:
    """``KnowledgeBase.search``/``decide`` end to end on *n_entries* synthetic entries.

    The real entries' questions are each searched once first ("first sight", tokenization
    included), then three times over (memoised tokens, as for a repeated question). The
    build (index and question coverage from already tokenized entries) is timed and its
    RSS growth measured, in this process.
    """
    import tempfile
    from pathlib import Path

    import knowledge
    from benchmarks.kb_reload import synthetic_directory
    from knowledge.base import KnowledgeBase

    with tempfile.TemporaryDirectory(prefix="yxby-bench-search-") as tmp:
        own = synthetic_directory(Path(tmp), n_entries)
        t0 = time.perf_counter()
        kb = knowledge.load(Path(tmp))
        load_s = time.perf_counter() - t0
    texts = list(dict.fromkeys(own))
    first = LatencyStats.from_ns(time_each(kb.search, texts))
    search = LatencyStats.from_ns(time_each(kb.search, texts, repeat=3, warmup=50))
    decide = LatencyStats.from_ns(time_each(kb.decide, texts, repeat=3, warmup=50))
    release_free_memory()
    rss0 = rss_mib()
    t0 = time.perf_counter()
    again = KnowledgeBase(kb.entries, kb.settings, kb.tokenizer, prepared=kb.prepared)
    build_s = time.perf_counter() - t0
    release_free_memory()
    growth = rss_mib() - rss0
    del again
    return {
        "entries": len(kb),
        "load_s": round(load_s, 2),
        "build_s": round(build_s, 3),
        "build_rss_growth_mib": round(growth, 1),
        "queries": len(texts),
        "search_first_sight": first.as_dict(),
        "search_memoised": search.as_dict(),
        "decide_memoised": decide.as_dict(),
    }


def run(sizes: Sequence[int] = SIZES, kb_entries: int = KB_ENTRIES) -> dict[str, Any]:
    """All latency measurements, as a JSON-ready dict."""
    settings = load_settings()
    bm = settings.bm25
    params = BM25Params(k1=bm.k1, b=bm.b, epsilon=bm.epsilon)
    tokenizer = Tokenizer(**settings.tokenizer.model_dump())
    profile = default_profile(tokenizer)
    results = [_measure_isolated(profile, n, params) for n in sizes]
    return {
        "machine": machine_info(),
        "params": {"k1": params.k1, "b": params.b, "epsilon": params.epsilon},
        "profile": profile.summary(),
        "sizes": results,
        "knowledge_base": measure_knowledge_base(profile.questions),
        "synthetic_knowledge_base": (
            measure_synthetic_knowledge_base(kb_entries) if kb_entries > 0 else None
        ),
        "targets": {"p50_ms_at_10k": TARGET_P50_MS, "speedup_at_10k": TARGET_SPEEDUP},
    }


def report(result: dict[str, Any]) -> str:
    """The measurements as plain-text tables."""
    rows = []
    for s in result["sizes"]:
        if "error" in s:
            rows.append([f"{s['documents']:,}", "error: " + s["error"], *[""] * 9])
            continue
        o, r = s["ours"], s["rank_bm25"]
        rows.append(
            [
                f"{s['documents']:,}",
                o["latency"]["p50_ms"],
                o["latency"]["p99_ms"],
                r["latency"]["p50_ms"],
                r["latency"]["p99_ms"],
                f"{s['speedup_p50']:,.0f}×",
                o["build_s"],
                r["build_s"],
                o["rss_growth_mib"],
                r["rss_growth_mib"],
                s["same_top10"],
            ]
        )
    head = [
        "docs",
        "ours p50 ms",
        "p99",
        "rank p50 ms",
        "p99",
        "speed-up",
        "ours build s",
        "rank build s",
        "ours +MiB",
        "rank +MiB",
        "same top-10",
    ]
    prof = result["profile"]
    s10 = next((s for s in result["sizes"] if s.get("documents") == 10_000 and "ours" in s), None)
    lines = [
        f"Search latency, top-10 (profile: {prof['source']}, {prof['vocabulary']:,} terms, "
        f"{prof['mean_tokens_per_document']} tokens/doc, {prof['mean_query_tokens']} "
        f"tokens/query; k1={result['params']['k1']} b={result['params']['b']})",
        table(head, rows),
        "queries timed: ours "
        + ", ".join(
            f"{s['ours']['queries']}×{s['ours']['repeat']}" for s in result["sizes"] if "ours" in s
        )
        + "; rank-bm25 "
        + ", ".join(f"{s['rank_bm25']['queries']}" for s in result["sizes"] if "ours" in s),
    ]
    if s10 is not None:
        ok_p50 = s10["ours"]["latency"]["p50_ms"] <= TARGET_P50_MS
        ok_x = (s10["speedup_p50"] or 0) >= TARGET_SPEEDUP
        lines.append(
            f"target at 10k: p50 ≤ {TARGET_P50_MS} ms {'met' if ok_p50 else 'MISSED'}, "
            f"≥ {TARGET_SPEEDUP:.0f}× rank-bm25 {'met' if ok_x else 'MISSED'}"
        )
    kb = result["knowledge_base"]
    kb_rows = [
        [name, kb[key]["calls"], kb[key]["p50_ms"], kb[key]["p99_ms"], kb[key]["mean_ms"]]
        for name, key in (
            ("search, first sight (tokenize + index)", "search_first_sight"),
            ("search, memoised query", "search_memoised"),
            ("decide, memoised query", "decide_memoised"),
            ("tokenize only", "tokenize_only"),
        )
    ]
    lines += [
        "",
        f"End to end on the real knowledge base ({kb['entries']} entries, load {kb['load_s']} s):",
        table(["call", "calls", "p50 ms", "p99 ms", "mean ms"], kb_rows),
    ]
    big = result.get("synthetic_knowledge_base")
    if big:
        big_rows = [
            [name, big[key]["calls"], big[key]["p50_ms"], big[key]["p99_ms"], big[key]["mean_ms"]]
            for name, key in (
                ("search, first sight (tokenize + index)", "search_first_sight"),
                ("search, memoised query", "search_memoised"),
                ("decide, memoised query", "decide_memoised"),
            )
        ]
        met = big["search_memoised"]["p50_ms"] <= TARGET_P50_MS
        lines += [
            "",
            f"End to end on {big['entries']:,} synthetic entries (load {big['load_s']} s; "
            f"build from tokens {big['build_s']} s, +{big['build_rss_growth_mib']} MiB):",
            table(["call", "calls", "p50 ms", "p99 ms", "mean ms"], big_rows),
            f"target: search p50 ≤ {TARGET_P50_MS} ms {'met' if met else 'MISSED'}",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: measure and print the tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_latency")
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in SIZES),
        help="comma-separated document counts (default: %(default)s)",
    )
    parser.add_argument(
        "--kb-entries",
        type=int,
        default=KB_ENTRIES,
        help="synthetic knowledge base for search end to end; 0 skips (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(report(run(sizes, args.kb_entries)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
