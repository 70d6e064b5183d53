"""Reloading a 10,000-entry knowledge base while it serves: how long, and what requests feel.

A synthetic knowledge directory is written from the real entries: each real entry is copied
under new ids (``<id>-s<k>``) until there are ``--entries`` of them, ten per file (the real
directory holds about nine per file); every copy's title and questions get a word drawn
from the real vocabulary, so the copies are not identical documents. Then, in one process:

1. **cold build** — :class:`knowledge.live.LiveKnowledge` with an empty token cache
   (everything tokenized) and **cached start** — a second instance reading the cache;
2. **reloads while serving** — a client thread calls ``decide`` back to back with real
   questions (the work of a chat request) while the main thread reloads: after editing one
   entry (one file changes, one entry re-tokenized), and after a lexicon edit (a changed
   tokenizer: every entry re-tokenized, the worst case). Each request's latency is
   recorded with the phase it ran in (idle or during a reload).

Target: no request slower than 100 ms while a reload runs. Run alone:
``.venv/bin/python -m benchmarks.kb_reload [--entries 10000]``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import machine_info, table
from yxby.paths import PROJECT_ROOT

__all__ = ["main", "report", "run", "synthetic_directory"]

ENTRIES = 10_000
PER_FILE = 10
TARGET_MAX_MS = 100.0
DAY = date(2026, 11, 30)


def synthetic_directory(target: Path, n_entries: int, seed: int = 13) -> list[str]:
    """Write *n_entries* entries under *target*; returns the real questions (queries)."""
    import knowledge
    from knowledge.schema import Entry
    from knowledge.sheet import entry_yaml

    real = knowledge.load(PROJECT_ROOT / "knowledge" / "entries").entries
    rng = random.Random(seed)
    vocabulary = sorted({w for e in real for w in (*e.keywords, e.department) if len(w) >= 2})
    target.mkdir(parents=True, exist_ok=True)
    buffer: list[str] = []
    n_file = 0
    for i in range(n_entries):
        base = real[i % len(real)]
        k = i // len(real)
        word = rng.choice(vocabulary)
        copy = base if k == 0 else Entry.model_validate(
            {
                **base.model_dump(),
                "id": f"{base.id}-s{k}",
                "title": f"{base.title}（{word}）"[:80],
                "questions": [f"{q}{rng.choice(vocabulary)}" for q in base.questions],
            }
        )  # fmt: skip
        buffer.append(entry_yaml(copy))
        if len(buffer) == PER_FILE or i == n_entries - 1:
            (target / f"synthetic-{n_file:04d}.yaml").write_text("\n".join(buffer), "utf-8")
            buffer, n_file = [], n_file + 1
    return [q for e in real for q in e.questions]


class _Client(threading.Thread):
    """Calls ``decide`` back to back; records (start, seconds) of every call."""

    def __init__(self, kb: Any, questions: Sequence[str]) -> None:
        super().__init__(daemon=True)
        self.kb = kb
        self.questions = questions
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            q = self.questions[i % len(self.questions)]
            i += 1
            start = time.perf_counter()
            self.kb.decide(q)
            self.samples.append((start, time.perf_counter() - start))
            time.sleep(0.002)  # a request every few ms, not a busy loop


def _stats(samples: Sequence[float]) -> dict[str, Any]:
    if not samples:
        return {"requests": 0}
    ms = np.array(samples) * 1000
    return {
        "requests": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def run(n_entries: int = ENTRIES) -> dict[str, Any]:
    from knowledge.live import LiveKnowledge

    with tempfile.TemporaryDirectory(prefix="yxby-bench-reload-") as tmp:
        root = Path(tmp)
        entries, cache, lexicon = root / "entries", root / "cache", root / "lexicon"
        t0 = time.perf_counter()
        questions = synthetic_directory(entries, n_entries)
        written_s = time.perf_counter() - t0
        shutil.copytree(PROJECT_ROOT / "knowledge" / "lexicon", lexicon)

        def make() -> LiveKnowledge:
            return LiveKnowledge(entries, today=lambda: DAY, cache_dir=cache, lexicon_dir=lexicon)

        t0 = time.perf_counter()
        kb = make()
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = make()
        cached_s = time.perf_counter() - t0
        assert warm.status.tokenized == 0, warm.status
        del warm

        client = _Client(kb, questions)
        client.start()
        phases: list[tuple[str, float, float, dict[str, Any]]] = []
        time.sleep(1.0)  # idle baseline

        def reload(name: str) -> None:
            start = time.perf_counter()
            status = kb.reload()
            end = time.perf_counter()
            phases.append((name, start, end, {"ok": status.ok, "tokenized": status.tokenized}))
            time.sleep(0.5)

        first = entries / "synthetic-0000.yaml"
        edited = first.read_text("utf-8").replace("questions:", "questions:\n    - 基准新增问法", 1)
        first.write_text(edited, "utf-8")
        reload("one entry edited")
        with (lexicon / "userdict.txt").open("a", encoding="utf-8") as fh:
            fh.write("基准测试词 5\n")
        reload("lexicon edited (all re-tokenized)")
        client.stop.set()
        client.join(10)

    samples = client.samples
    idle = [d for s, d in samples if s < phases[0][1] - 0.05]
    rows = []
    for name, start, end, info in phases:
        during = [d for s, d in samples if start <= s <= end]
        rows.append({"phase": name, "reload_s": round(end - start, 2), **info, **_stats(during)})
    worst = max((r.get("max_ms", 0.0) for r in rows), default=0.0)
    return {
        "machine": machine_info(),
        "entries": len(kb),
        "files": (n_entries + PER_FILE - 1) // PER_FILE,
        "write_s": round(written_s, 2),
        "cold_build_s": round(cold_s, 2),
        "cached_start_s": round(cached_s, 2),
        "idle": _stats(idle),
        "reloads": rows,
        "worst_request_during_reload_ms": worst,
        "target_max_ms": TARGET_MAX_MS,
        "met": worst <= TARGET_MAX_MS,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['entries']:,} entries in {result['files']:,} files "
        f"(written in {result['write_s']} s)",
        f"cold build (tokenize all): {result['cold_build_s']} s; "
        f"start with the token cache: {result['cached_start_s']} s",
        "",
    ]
    idle = result["idle"]
    rows = [["idle (no reload)", "", "", idle["requests"], idle.get("p50_ms"),
             idle.get("p99_ms"), idle.get("max_ms")]]  # fmt: skip
    for r in result["reloads"]:
        rows.append(
            [r["phase"], r["reload_s"], r["tokenized"], r["requests"], r.get("p50_ms"),
             r.get("p99_ms"), r.get("max_ms")]
        )  # fmt: skip
    lines.append(
        table(["phase", "reload s", "tokenized", "requests", "p50 ms", "p99 ms", "max ms"], rows)
    )
    verdict = "met" if result["met"] else "NOT met"
    lines.append(
        f"slowest request during a reload: {result['worst_request_during_reload_ms']} ms "
        f"(target ≤ {result['target_max_ms']:.0f} ms: {verdict})"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kb_reload")
    parser.add_argument("--entries", type=int, default=ENTRIES)
    args = parser.parse_args(argv)
    print(report(run(args.entries)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
