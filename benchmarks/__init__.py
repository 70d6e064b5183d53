"""Benchmarks of the 企业服务知识库 (run by ``make bench``, never by the tests).

- :mod:`benchmarks.search_latency` — BM25 search latency, build time and memory at 1k/10k/100k
  synthetic entries, against ``rank_bm25.BM25Okapi`` in the same run; end-to-end
  ``KnowledgeBase.search`` on the real knowledge base.
- :mod:`benchmarks.retrieval` — Recall@1/@10 and MRR@10 on MSGABench 政务问答, our tokenizer
  and index against plain ``jieba.lcut`` + rank-bm25.
- :mod:`benchmarks.cold_start` — wall time of a fresh ``yxby ask --json`` and where it goes.
- :mod:`benchmarks.run` — all of the above; writes ``benchmarks/results/latest.json``.

Each module runs alone: ``.venv/bin/python -m benchmarks.<name>``. See ``docs/benchmarks.md``.
"""

__all__: list[str] = []
