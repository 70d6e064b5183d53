"""Run every benchmark, print its tables and write ``benchmarks/results/latest.json``.

``make bench`` calls ``.venv/bin/python -m benchmarks.run``; ``--only`` picks benchmarks.
About three minutes on a 2-core machine (docs/benchmarks.md). The WeChat load harness
(``load``, several minutes) runs only when named: ``--only load``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import (
    assessment,
    cold_start,
    console_pages,
    delivery_faults,
    kb_reload,
    load,
    notices,
    register_sync,
    retrieval,
    search_latency,
)
from benchmarks.common import machine_info, write_results
from yxby.errors import ConfigError

__all__ = ["BENCHMARKS", "SLOW", "main"]

BENCHMARKS: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], str]]] = {
    "search_latency": (search_latency.run, search_latency.report),
    "retrieval": (retrieval.run, retrieval.report),
    "cold_start": (cold_start.run, cold_start.report),
    "delivery_faults": (delivery_faults.run, delivery_faults.report),
    "console_pages": (console_pages.run, console_pages.report),
    "register_sync": (register_sync.run, register_sync.report),
    "notices": (notices.run, notices.report),
    "kb_reload": (kb_reload.run, kb_reload.report),
    "assessment": (assessment.run, assessment.report),
    "load": (load.run, load.report),
}
SLOW = frozenset({"load"})
"""Run only when named (``--only load``): several minutes of real servers under load."""


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the chosen benchmarks; exit 1 when one of them failed to run."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument(
        "--only",
        default=",".join(n for n in BENCHMARKS if n not in SLOW),
        help="comma-separated benchmarks to run (default: %(default)s)",
    )
    parser.add_argument("--output", type=Path, help="JSON file (default: results/latest.json)")
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")

    machine = machine_info()
    print(
        f"{machine['date']}  nproc {machine['nproc']}  load {machine['load_average']}  "
        f"{machine['cpu']}  Python {machine['python']}\n",
        flush=True,
    )
    results: dict[str, Any] = {"machine": machine}
    failed = False
    for name in chosen:
        measure, render = BENCHMARKS[name]
        print(f"== {name} ==", flush=True)
        start = time.perf_counter()
        try:
            result = measure()
        except ConfigError as exc:  # e.g. the MSGABench file is not there
            print(f"skipped: {exc}\n", flush=True)
            results[name] = {"skipped": str(exc)}
            continue
        except Exception as exc:  # keep the other benchmarks' figures
            print(f"FAILED: {exc!r}\n", flush=True)
            results[name] = {"failed": repr(exc)}
            failed = True
            continue
        result.pop("machine", None)
        result["elapsed_s"] = round(time.perf_counter() - start, 1)
        results[name] = result
        print(render(result), flush=True)
        print(f"({result['elapsed_s']} s)\n", flush=True)
    path = write_results(results, args.output)
    print(f"results written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
