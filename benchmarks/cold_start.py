"""Cold start of ``yxby ask --json TEXT`` as a fresh process, and where its time goes.

1. Wall time: a new ``YXBY_DATA_DIR`` (temporary), one warm-up run that writes jieba's
   dictionary cache and the knowledge base's token cache there, then the median (and
   min/max) of several timed runs of the installed ``yxby`` console script; then the same
   with the token cache off (``YXBY_KB_CACHE=0``: every entry tokenized on every run). The
   bare interpreter (``python -c pass``) is timed too, as the floor.
2. ``python -X importtime`` of the same command: import time per top-level package.
3. Phases, timed inside one fresh process doing what ``yxby ask`` does step by step: CLI
   imports, ``knowledge`` imports, settings YAML, entries YAML, lexicon, jieba init, entry
   tokenization, index build, the decision.

Only the standard library is imported at module level, so the phase timer measures every
project import from cold. Run alone: ``.venv/bin/python -m benchmarks.cold_start``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["QUESTION", "importtime", "main", "phases", "report", "run", "wall_times"]

QUESTION = "营业执照丢了怎么补办"
RUNS = 7
TARGET_S = 1.5


def _yxby_command() -> list[str]:
    script = Path(sys.executable).parent / "yxby"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())"]


def _timed(
    cmd: Sequence[str], env: dict[str, str]
) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done


def wall_times(data_dir: Path, runs: int = RUNS, *, cache: bool = True) -> dict[str, Any]:
    """Warm-up run, then *runs* timed runs of ``yxby ask --json QUESTION``.

    With *cache* the warm-up writes the token cache (``<data dir>/kb-cache``) and the timed
    runs read it; without, ``YXBY_KB_CACHE=0``: every run tokenizes every entry.
    """
    env = {**os.environ, "YXBY_DATA_DIR": str(data_dir), "YXBY_KB_CACHE": "1" if cache else "0"}
    cmd = [*_yxby_command(), "ask", "--json", QUESTION]
    first, done = _timed(cmd, env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    action = json.loads(done.stdout).get("action")
    times = [_timed(cmd, env)[0] for _ in range(runs)]
    floor = [_timed([sys.executable, "-c", "pass"], env)[0] for _ in range(runs)]
    return {
        "command": " ".join(["yxby", "ask", "--json", QUESTION]),
        "action": action,
        "first_run_s": round(first, 3),
        "runs": runs,
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "python_floor_median_s": round(statistics.median(floor), 3),
    }


def importtime(data_dir: Path, top: int = 12) -> list[dict[str, Any]]:
    """Import time of ``yxby ask`` per top-level package: the *self* time of every module of
    the package, wherever it was imported from (so numpy imported by knowledge counts as
    numpy), largest first."""
    env = {**os.environ, "YXBY_DATA_DIR": str(data_dir)}
    code = (
        "import sys; from bot.cli import main; "
        f"sys.argv = ['yxby', 'ask', '--json', {QUESTION!r}]; main()"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    totals: dict[str, int] = {}
    modules: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        if not self_us.strip().isdigit():
            continue  # the header line
        root = name.strip().split(".")[0]
        totals[root] = totals.get(root, 0) + int(self_us)
        modules[root] = modules.get(root, 0) + 1
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return [
        {"package": k, "self_ms": round(v / 1000, 1), "modules": modules[k]}
        for k, v in ranked[:top]
    ]


def phases() -> dict[str, float]:
    """Seconds spent in each step of ``yxby ask``, in this (fresh) process."""
    marks: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        marks[name] = round(now - t, 4)
        t = now

    import bot.cli  # noqa: F401  (click and the command modules)

    lap("import bot.cli (click, commands)")
    import knowledge  # noqa: F401
    from knowledge.base import KnowledgeBase
    from knowledge.loader import read_entries
    from knowledge.settings import load_settings
    from knowledge.tokenizer import Tokenizer, load_lexicon
    from yxby.paths import entries_dir

    lap("import knowledge (numpy, pydantic, yaml)")
    settings = load_settings()
    lap("config/knowledge.yaml")
    located, _ = read_entries(entries_dir())
    entries = tuple(le.entry for le in located)
    lap("entries YAML + validation")
    lexicon = load_lexicon()
    lap("lexicon (synonyms, stop words, departments)")
    import jieba  # noqa: F401

    lap("import jieba")
    tokenizer = Tokenizer(lexicon, **settings.tokenizer.model_dump())
    lap("jieba init (cache, user dictionary, words)")
    for e in entries:
        for text in (e.title, e.answer, *e.questions, *e.keywords):
            tokenizer.tokenize(text)
    lap("tokenize entries")
    kb = KnowledgeBase(entries, settings, tokenizer)
    marks["index build (KnowledgeBase minus tokenizing)"] = round(
        max(time.perf_counter() - t - marks["tokenize entries"], 0.0), 4
    )
    t = time.perf_counter()
    decision = kb.decide(QUESTION)
    json.dumps(decision.as_dict(), ensure_ascii=False)
    lap("decide + JSON")
    marks["entries"] = float(len(kb))
    return marks


def _phases_in_fresh_process(data_dir: Path) -> dict[str, float]:
    env = {**os.environ, "YXBY_DATA_DIR": str(data_dir)}
    code = "import json; from benchmarks.cold_start import phases; print(json.dumps(phases()))"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"phase timing failed: {done.stderr.strip()}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(runs: int = RUNS) -> dict[str, Any]:
    """Wall times, import times and phases, as a JSON-ready dict."""
    from benchmarks.common import machine_info

    with tempfile.TemporaryDirectory(prefix="yxby-bench-") as tmp:
        data = Path(tmp)
        wall = wall_times(data, runs)
        uncached = wall_times(data, runs, cache=False)
        imports = importtime(data)
        # the median of three phase runs, step by step
        samples = [_phases_in_fresh_process(data) for _ in range(3)]
    steps = {k: round(statistics.median(s[k] for s in samples), 4) for k in samples[0]}
    return {
        "machine": machine_info(),
        "wall": wall,
        "wall_without_cache": uncached,
        "importtime_top": imports,
        "phases_s": steps,
        "target_s": TARGET_S,
    }


def report(result: dict[str, Any]) -> str:
    """The figures as plain-text tables."""
    from benchmarks.common import table

    w = result["wall"]
    verdict = "met" if w["median_s"] <= TARGET_S else "MISSED"
    phase_rows = [[k, v * 1000] for k, v in result["phases_s"].items() if k != "entries"]
    phase_total = sum(v for _, v in phase_rows)
    return "\n".join(
        [
            f"Cold start: {w['command']}  → action {w['action']}",
            table(
                ["first run s", "median s", "min s", "max s", "runs", "python -c pass s"],
                [
                    [
                        w["first_run_s"],
                        w["median_s"],
                        w["min_s"],
                        w["max_s"],
                        w["runs"],
                        w["python_floor_median_s"],
                    ]
                ],
            ),
            f"target ≤ {TARGET_S} s: {verdict} (first run writes jieba's and the token cache)",
            _cache_line(w, result.get("wall_without_cache")),
            "",
            f"Phases inside one process ({int(result['phases_s'].get('entries', 0))} entries; "
            f"median of 3; sum {phase_total:.0f} ms):",
            table(["step", "ms"], phase_rows),
            "",
            "python -X importtime: self time summed per top-level package (inflated by "
            "the measurement itself):",
            table(
                ["package", "modules", "ms"],
                [[r["package"], r["modules"], r["self_ms"]] for r in result["importtime_top"]],
            ),
        ]
    )


def _cache_line(cached: dict[str, Any], uncached: dict[str, Any] | None) -> str:
    if not uncached:
        return ""
    saved = uncached["median_s"] - cached["median_s"]
    return (
        f"without the token cache (YXBY_KB_CACHE=0): median {uncached['median_s']} s "
        f"(min {uncached['min_s']}, max {uncached['max_s']}); the cache saves {saved:.3f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: measure and print the tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_start")
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs (default %(default)s)")
    args = parser.parse_args(argv)
    print(report(run(max(args.runs, 5))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
