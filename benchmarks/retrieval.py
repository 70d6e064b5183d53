"""Retrieval quality on MSGABench 政务问答: our tokenizer and index against jieba + rank-bm25.

Only the answers (正文内容) are indexed; every user question (用户问题) is a query, and the
answer written for it is the one relevant document. Measured: Recall@1, Recall@10 and
MRR@10 over all rows, for

- **baseline**: plain ``jieba.lcut`` (default dictionary, HMM on, punctuation kept) and
  ``rank_bm25.BM25Okapi`` with its defaults (k1 1.5, b 0.75, ε 0.25) — the README's
  reference R@1 0.550;
- **ours**: :class:`~knowledge.tokenizer.Tokenizer` and :class:`~knowledge.index.BM25Index`
  exactly as ``config/knowledge.yaml`` configures them for the knowledge base.

Duplicate answers: some rows share an identical answer text; a query whose top hit is
another row with the same text is counted as correct (it *is* the same answer). The strict
figure (only its own row counts) is reported beside it. Ties are broken by row order.

A second set of figures comes from sheet 自然语言理解 (233 questions, each with the
知识库答案 written for it; :func:`run_nlu`):

- **retrieval** over its own 233 answers (ours and the baseline), then again with every
  answer of our knowledge base added to the index as distractors — more entries must not
  push the right answer down;
- **the bot's decision** (:meth:`knowledge.base.KnowledgeBase.decide`, the shipped entries
  and thresholds) on the 233 questions. They are Beijing traffic, parking, city-management
  and financial-supervision questions that a Tianjin free-trade-zone knowledge base mostly
  does not cover, so nearly every confident answer is a wrong one (a few, such as outdoor
  advertising → 招牌, are fair): the figure is the answer rate on out-of-domain questions,
  and the answered questions are listed for a reader to judge.

In 67 rows of that sheet the question and the answer sit in each other's column; a row
whose 用户问题 cell is longer than its 知识库答案 cell is read the other way round.

The workbook is read where it lies (``../shared/data``, or ``$YXBY_MSGABENCH``) and never
copied. Run alone: ``.venv/bin/python -m benchmarks.retrieval``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import QaPair, machine_info, msgabench_path, read_msgabench, table
from knowledge.base import Action, KnowledgeBase, load
from knowledge.index import BM25Index, BM25Params
from knowledge.settings import load_settings
from knowledge.tokenizer import Tokenizer
from yxby.errors import ConfigError
from yxby.paths import data_dir

__all__ = [
    "RetrievalScores",
    "answer_groups",
    "main",
    "rank_baseline",
    "rank_ours",
    "read_nlu",
    "report",
    "report_nlu",
    "run",
    "run_nlu",
    "score",
]

NLU_SHEET = "自然语言理解"

REFERENCE_R1 = 0.550
TARGET_R1 = 0.70
DEPTH = 10


@dataclass(frozen=True)
class RetrievalScores:
    """Quality figures of one system over all queries."""

    queries: int
    recall_at_1: float
    recall_at_10: float
    mrr_at_10: float
    recall_at_1_strict: float  # only the query's own row counts

    def as_dict(self) -> dict[str, float | int]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def answer_groups(pairs: Sequence[QaPair]) -> list[int]:
    """For every row, the index of the first row whose answer text is identical."""
    first: dict[str, int] = {}
    return [first.setdefault(p.answer, i) for i, p in enumerate(pairs)]


def score(rankings: Iterable[Sequence[int]], groups: Sequence[int]) -> RetrievalScores:
    """Recall@1/@10 and MRR@10 of *rankings* (row ids, best first; query i wants row i)."""
    r1 = r10 = strict = 0
    mrr = 0.0
    n = 0
    for i, ranked in enumerate(rankings):
        n += 1
        top = list(ranked)[:DEPTH]
        if top and top[0] == i:
            strict += 1
        for rank, doc in enumerate(top, start=1):
            if groups[doc] == groups[i]:
                r1 += rank == 1
                r10 += 1
                mrr += 1.0 / rank
                break
    n = n or 1
    return RetrievalScores(n, r1 / n, r10 / n, mrr / n, strict / n)


def _plain_jieba() -> Callable[[str], list[str]]:
    """``jieba.lcut`` with the default dictionary, its cache under the project's data dir."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tk = jieba.Tokenizer()
    cache = data_dir() / "jieba"
    cache.mkdir(parents=True, exist_ok=True)
    tk.tmp_dir = str(cache)
    tk.initialize()
    lcut: Callable[[str], list[str]] = tk.lcut
    return lcut


def rank_baseline(pairs: Sequence[QaPair]) -> tuple[list[list[int]], dict[str, float]]:
    """Top-10 rows per question with ``jieba.lcut`` + ``rank_bm25.BM25Okapi`` (defaults)."""
    from rank_bm25 import BM25Okapi

    lcut = _plain_jieba()
    t0 = time.perf_counter()
    model = BM25Okapi([lcut(p.answer) for p in pairs])
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rankings = []
    for p in pairs:
        scores = model.get_scores(lcut(p.question))
        rankings.append([int(d) for d in np.argsort(-scores, kind="stable")[:DEPTH]])
    return rankings, _timing(build_s, time.perf_counter() - t0, len(pairs))


def rank_ours(
    pairs: Sequence[QaPair], tokenizer: Tokenizer, params: BM25Params
) -> tuple[list[list[int]], dict[str, float]]:
    """Top-10 rows per question with our tokenizer and :class:`BM25Index`."""
    t0 = time.perf_counter()
    index = BM25Index([tokenizer.tokenize(p.answer) for p in pairs], params)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rankings = [[d for d, _ in index.top(tokenizer.tokenize(p.question), DEPTH)] for p in pairs]
    return rankings, _timing(build_s, time.perf_counter() - t0, len(pairs))


def _timing(build_s: float, query_s: float, n: int) -> dict[str, float]:
    return {
        "tokenize_and_build_s": round(build_s, 3),
        "tokenize_and_query_ms_mean": round(1000 * query_s / max(n, 1), 3),
    }


def run(path: Path | None = None) -> dict[str, Any]:
    """Both systems on the same rows, as a JSON-ready dict."""
    sheet = read_msgabench(path)
    pairs = sheet.pairs
    groups = answer_groups(pairs)
    settings = load_settings()
    bm = settings.bm25
    params = BM25Params(k1=bm.k1, b=bm.b, epsilon=bm.epsilon)
    tokenizer = Tokenizer(**settings.tokenizer.model_dump())
    base_rank, base_time = rank_baseline(pairs)
    ours_rank, ours_time = rank_ours(pairs, tokenizer, params)
    sizes = Counter(groups)
    return {
        "machine": machine_info(),
        "data": {
            "file": str(path or msgabench_path()),
            "sheet": "政务问答",
            "rows": len(pairs),
            "left_out_blank_rows": list(sheet.blank_rows),
            "distinct_answers": len(sizes),
            "rows_sharing_an_answer": sum(n for n in sizes.values() if n > 1),
        },
        "baseline": {
            "system": "jieba.lcut + rank_bm25.BM25Okapi (k1 1.5, b 0.75)",
            **score(base_rank, groups).as_dict(),
            **base_time,
        },
        "ours": {
            "system": (
                f"knowledge Tokenizer ({settings.tokenizer.model_dump()}) + "
                f"BM25Index (k1 {params.k1}, b {params.b})"
            ),
            **score(ours_rank, groups).as_dict(),
            **ours_time,
        },
        "reference_r1": REFERENCE_R1,
        "target_r1": TARGET_R1,
        "nlu": run_nlu(path, tokenizer=tokenizer, params=params),
    }


@dataclass(frozen=True)
class NluRow:
    """One row of MSGABench 自然语言理解: a question, its 知识库答案 and 处理单位."""

    row: int
    question: str
    answer: str
    unit: str


def read_nlu(path: Path | None = None) -> tuple[list[NluRow], int]:
    """The rows of sheet 自然语言理解 and how many had question and answer swapped."""
    import openpyxl

    p = path or msgabench_path()
    if not p.is_file():
        raise ConfigError("MSGABench file not found (set YXBY_MSGABENCH)", path=str(p))
    wb = openpyxl.load_workbook(p, read_only=True, data_only=True)
    try:
        if NLU_SHEET not in wb.sheetnames:
            raise ConfigError(f"no sheet {NLU_SHEET!r} (has {wb.sheetnames})", path=str(p))
        rows = wb[NLU_SHEET].iter_rows(values_only=True)
        header = [str(c).strip() if c is not None else "" for c in next(rows, ())]
        try:
            qi, ai, ui = (header.index(h) for h in ("用户问题", "知识库答案", "处理单位"))
        except ValueError:
            raise ConfigError(
                f"sheet {NLU_SHEET!r} needs 用户问题, 知识库答案 and 处理单位, has {header}",
                path=str(p),
            ) from None
        out: list[NluRow] = []
        swapped = 0
        for n, row in enumerate(rows, start=2):
            cells = [str(row[i] or "").strip() if i < len(row) else "" for i in (qi, ai, ui)]
            q, a, unit = cells
            if not (q and a):
                continue
            if len(q) > len(a):
                q, a = a, q
                swapped += 1
            out.append(NluRow(n, q, a, unit))
        return out, swapped
    finally:
        wb.close()


def _entry_answers(kb: KnowledgeBase) -> list[str]:
    return [e.answer for e in kb.entries]


def run_nlu(
    path: Path | None = None,
    *,
    tokenizer: Tokenizer | None = None,
    params: BM25Params | None = None,
    kb: KnowledgeBase | None = None,
) -> dict[str, Any]:
    """Retrieval and the bot's decision on sheet 自然语言理解 (see the module docstring)."""
    rows, swapped = read_nlu(path)
    if tokenizer is None or params is None:
        settings = load_settings()
        bm = settings.bm25
        params = params or BM25Params(k1=bm.k1, b=bm.b, epsilon=bm.epsilon)
        tokenizer = tokenizer or Tokenizer(**settings.tokenizer.model_dump())
    kb = kb or load()
    pairs = [QaPair(r.row, r.question, r.answer) for r in rows]
    groups = answer_groups(pairs)
    base_rank, _ = rank_baseline(pairs)
    ours_rank, _ = rank_ours(pairs, tokenizer, params)
    # the same queries with every knowledge-base answer indexed beside the 233 answers
    distractors = [QaPair(0, "", a) for a in _entry_answers(kb)]
    mixed_rank, _ = rank_ours([*pairs, *distractors], tokenizer, params)
    mixed_rank = mixed_rank[: len(pairs)]
    mixed_groups = [*groups, *range(len(pairs), len(pairs) + len(distractors))]
    actions: Counter[str] = Counter()
    answered: list[dict[str, Any]] = []
    for r in rows:
        decision = kb.decide(r.question)
        actions[decision.action.value] += 1
        top = decision.top
        if decision.action is Action.ANSWER and top is not None:
            answered.append(
                {
                    "row": r.row,
                    "question": r.question,
                    "entry": top.entry.id,
                    "confidence": round(top.confidence, 3),
                }
            )
    n = len(rows) or 1
    return {
        "sheet": NLU_SHEET,
        "rows": len(rows),
        "swapped_rows": swapped,
        "units": dict(Counter(r.unit for r in rows)),
        "knowledge_entries": len(kb.entries),
        "baseline": score(base_rank, groups).as_dict(),
        "ours": score(ours_rank, groups).as_dict(),
        "ours_with_kb_distractors": score(mixed_rank, mixed_groups).as_dict(),
        "decisions": dict(actions),
        "out_of_domain_answer_rate": round(actions["answer"] / n, 4),
        "answered": answered,
    }


def report_nlu(nlu: dict[str, Any]) -> str:
    """The 自然语言理解 figures as plain text."""
    rows = [
        [name, r["recall_at_1"], r["recall_at_10"], r["mrr_at_10"], r["recall_at_1_strict"]]
        for name, r in (
            ("baseline", nlu["baseline"]),
            ("ours", nlu["ours"]),
            (f"ours + {nlu['knowledge_entries']} KB answers", nlu["ours_with_kb_distractors"]),
        )
    ]
    d = nlu["decisions"]
    lines = [
        f"Retrieval on MSGABench {nlu['sheet']}: {nlu['rows']} questions against their "
        f"知识库答案 ({nlu['swapped_rows']} rows read with question and answer swapped)",
        table(["system", "R@1", "R@10", "MRR@10", "R@1 own row"], rows),
        f"The bot on the same {nlu['rows']} out-of-domain questions "
        f"({nlu['knowledge_entries']} entries): answer {d.get('answer', 0)}, "
        f"suggest {d.get('suggest', 0)}, none {d.get('none', 0)}, "
        f"handoff {d.get('handoff', 0)}; "
        f"out-of-domain answer rate {nlu['out_of_domain_answer_rate']:.3f}",
    ]
    lines += [
        f"  answered row {a['row']}: {a['question']} → {a['entry']} ({a['confidence']:.2f})"
        for a in nlu["answered"]
    ]
    return "\n".join(lines)


def report(result: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    d = result["data"]
    rows = [
        [
            name,
            r["recall_at_1"],
            r["recall_at_10"],
            r["mrr_at_10"],
            r["recall_at_1_strict"],
            r["tokenize_and_build_s"],
            r["tokenize_and_query_ms_mean"],
        ]
        for name, r in (("baseline", result["baseline"]), ("ours", result["ours"]))
    ]
    ours = result["ours"]["recall_at_1"]
    return "\n".join(
        [
            f"Retrieval on MSGABench {d['sheet']}: {d['rows']} questions against "
            f"{d['rows']} answers; {d['rows_sharing_an_answer']} rows share an identical "
            "answer text with another row (a hit on any of them counts); spreadsheet rows "
            f"left out for a blank question or answer: {d['left_out_blank_rows'] or 'none'}",
            table(
                ["system", "R@1", "R@10", "MRR@10", "R@1 own row", "build s", "query ms"],
                rows,
            ),
            f"baseline = {result['baseline']['system']}; reference R@1 {REFERENCE_R1:.3f}",
            f"ours = {result['ours']['system']}",
            f"target R@1 ≥ {TARGET_R1:.2f}: {'met' if ours >= TARGET_R1 else 'NOT met'} "
            f"(ours {ours:.3f})",
            "",
            report_nlu(result["nlu"]),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: measure and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retrieval")
    parser.add_argument(
        "--data", type=Path, help=f"the MSGABench workbook (default: {msgabench_path()})"
    )
    parser.add_argument(
        "--nlu-only", action="store_true", help=f"only the {NLU_SHEET} sheet (a few seconds)"
    )
    args = parser.parse_args(argv)
    print(report_nlu(run_nlu(args.data)) if args.nlu_only else report(run(args.data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
