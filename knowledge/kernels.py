"""Compiled search kernels for large indexes (numba), imported only when one is built.

At 10,000 entries a query's terms have some 40,000 postings; adding them all up is bound by
memory, and the same pruned search in numpy costs some forty array calls of a few
microseconds each. These loops do the pruned search of :class:`knowledge.index.BM25Index`
in one call, and the question coverage of the top hits in another, with the same floating
point operations in the same order as the Python and numpy code they stand for, so the
results are bit-for-bit the same (``tests/test_search_identical.py`` holds them to a plain
reference).

Small knowledge bases never import this module: numba takes about half a second to import,
which a cold ``yxby ask`` on the 276 shipped entries should not pay. Compiled code is cached
on disk (``NUMBA_CACHE_DIR``, by default ``<data dir>/kb-cache/numba``) so that only the
first start after an upgrade compiles (a few seconds, while the index is built).
"""

from __future__ import annotations

import os
from typing import Any


def _cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    from knowledge.cache import kb_cache_dir

    base = kb_cache_dir()
    if base is not None:
        os.environ["NUMBA_CACHE_DIR"] = str(base / "numba")


_cache_dir()

import numba  # noqa: E402  (NUMBA_CACHE_DIR must be set before numba reads its config)
import numpy as np  # noqa: E402

__all__ = ["question_coverage", "top_pruned"]

# Relative slack on score bounds: far above the rounding error of any float sum of positive
# terms here (a few ulps per term), far below any gap that decides a ranking.
_SLACK = 1e-9

_jit: Any = numba.njit(cache=True, nogil=True)


@_jit
def _search(indices: Any, s: int, e: int, doc: int) -> int:
    """The first position in ``indices[s:e]`` (sorted) holding *doc* or more."""
    lo, hi = s, e
    while lo < hi:
        mid = (lo + hi) >> 1
        if indices[mid] < doc:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit
def _add_postings(
    indptr: Any,
    indices: Any,
    weights: Any,
    c: int,
    k: int,
    part: Any,
    seen: Any,
    touched: Any,
    nt: int,
) -> int:
    """Add column *c*'s postings (*k* times) to the sums *part*, noting each document seen
    for the first time in ``touched[nt:]``; the new number of touched documents."""
    for p in range(indptr[c], indptr[c + 1]):
        d = indices[p]
        if not seen[d]:
            seen[d] = True
            touched[nt] = d
            nt += 1
        part[d] += weights[p] if k == 1 else k * weights[p]
    return nt


@_jit
def top_pruned(
    indptr: Any,
    indices: Any,
    weights: Any,
    max_weight: Any,
    slot: Any,
    table: Any,
    idf: Any,
    norm: Any,
    k1p1: float,
    cols: Any,
    counts: Any,
    limit: int,
    word_ids: Any,
) -> tuple[Any, Any, Any, int]:
    """The best *limit* documents with a positive score for the query columns *cols*
    (counted *counts* times), best first, ties by document order; and for each of them
    whether it contains each term of *word_ids* (``-1``: a term of no document).

    Common terms (``slot[col] >= 0``: a column of the dense frequency table *table*) are
    left out at first and bounded by ``counts * max_weight``; the rare terms' postings are
    added up; while the bound could still lift a document that has no rare term into the
    top, the heaviest common term joins the rare ones. Then only the documents whose rare
    sum plus the bound can reach the limit-th best are scored in full, column by column in
    query order (a common term's weight recomputed from the table by the build's formula),
    which is the order and the floats of the plain sum of all postings. The last value
    returned is how many common terms were still left out (for tests: 0 means none).
    """
    n_docs = norm.shape[0]
    nq = cols.shape[0]
    part = np.zeros(n_docs)
    seen = np.zeros(n_docs, np.bool_)
    touched = np.empty(n_docs, np.int64)
    nt = 0
    deferred = np.zeros(nq, np.bool_)
    for j in range(nq):
        deferred[j] = slot[cols[j]] >= 0
    for j in range(nq):
        if deferred[j]:
            continue
        nt = _add_postings(indptr, indices, weights, cols[j], counts[j], part, seen, touched, nt)
    best = np.empty(limit)
    while True:
        bound = 0.0  # what the common terms left out can add to any document, at most
        heaviest, heaviest_weight = -1, -1.0
        for j in range(nq):
            if deferred[j]:
                w = counts[j] * max_weight[cols[j]]
                bound += w
                if w > heaviest_weight:
                    heaviest, heaviest_weight = j, w
        if heaviest < 0:
            theta = -np.inf  # every term added up: every touched document is a candidate
            break
        if nt >= limit:
            # the limit-th largest rare sum: at most a rounding below the limit-th best score
            m = 0
            for i in range(nt):
                v = part[touched[i]]
                if m == limit and v <= best[m - 1]:
                    continue
                at = m if m < limit else limit - 1
                while at > 0 and best[at - 1] < v:
                    best[at] = best[at - 1]
                    at -= 1
                best[at] = v
                if m < limit:
                    m += 1
            theta = best[limit - 1] * (1 - _SLACK)
            if bound * (1 + _SLACK) < theta:
                break
        deferred[heaviest] = False
        nt = _add_postings(
            indptr, indices, weights, cols[heaviest], counts[heaviest], part, seen, touched, nt
        )
    # the candidates (``seen`` now marks them), their sums started again
    cand = np.empty(nt, np.int64)
    n = 0
    for i in range(nt):
        d = touched[i]
        keep = (part[d] + bound) * (1 + _SLACK) >= theta
        seen[d] = keep
        if keep:
            cand[n] = d
            n += 1
            part[d] = 0.0
    score = part
    for j in range(nq):
        c, k = cols[j], counts[j]
        if deferred[j]:
            col = slot[c]
            for i in range(n):
                d = cand[i]
                tf = table[d, col]
                if tf:
                    t = float(tf)
                    w = idf[c] * (t * k1p1 / (t + norm[d]))
                    score[d] += w if k == 1 else w * k
        else:
            for p in range(indptr[c], indptr[c + 1]):
                d = indices[p]
                if seen[d]:
                    score[d] += weights[p] if k == 1 else k * weights[p]
    top = np.empty(limit, np.int64)
    top_score = np.empty(limit)
    m = 0
    for i in range(n):
        d = cand[i]
        v = score[d]
        if v <= 0:
            continue
        if m == limit and (v < top_score[m - 1] or (v == top_score[m - 1] and d > top[m - 1])):
            continue
        at = m if m < limit else limit - 1
        while at > 0 and (top_score[at - 1] < v or (top_score[at - 1] == v and top[at - 1] > d)):
            top[at] = top[at - 1]
            top_score[at] = top_score[at - 1]
            at -= 1
        top[at] = d
        top_score[at] = v
        if m < limit:
            m += 1
    present = np.zeros((m, word_ids.shape[0]), np.bool_)
    for r in range(word_ids.shape[0]):
        t = word_ids[r]
        if t < 0:
            continue
        col = slot[t]
        s, e = indptr[t], indptr[t + 1]
        for i in range(m):
            d = top[i]
            if col >= 0:
                present[i, r] = table[d, col] > 0
            else:
                p = _search(indices, s, e, d)
                present[i, r] = p < e and indices[p] == d
    left = 0  # the common terms still left out (0: every term was added up)
    for j in range(nq):
        left += deferred[j]
    return top[:m], top_score[:m], present, left


@_jit
def question_coverage(
    docs: Any, word_ids: Any, q_ptr: Any, t_ptr: Any, t_ids: Any, t_weights: Any, q_total: Any
) -> Any:
    """For each of *docs*, the best share of one of its questions' idf weight that the
    query's terms (*word_ids*) cover: questions ``q_ptr[doc]:q_ptr[doc + 1]``, a question's
    terms ``t_ptr[q]:t_ptr[q + 1]`` (``t_ids``, ``t_weights``), its weight ``q_total[q]``."""
    out = np.zeros(docs.shape[0])
    nw = word_ids.shape[0]
    for i in range(docs.shape[0]):
        d = docs[i]
        best = 0.0
        for q in range(q_ptr[d], q_ptr[d + 1]):
            got = 0.0
            for p in range(t_ptr[q], t_ptr[q + 1]):
                t = t_ids[p]
                for r in range(nw):
                    if word_ids[r] == t:
                        got += t_weights[p]
                        break
            if got:
                got /= q_total[q]
                if got > best:
                    best = got
        out[i] = best
    return out
