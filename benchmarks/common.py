"""Shared helpers of the benchmarks: timing, memory, machine facts, tables, the MSGABench file."""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import platform
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from yxby.errors import ConfigError
from yxby.paths import PROJECT_ROOT

__all__ = [
    "MSGABENCH_ENV",
    "RESULTS_DIR",
    "LatencyStats",
    "QaPair",
    "QaSheet",
    "machine_info",
    "msgabench_path",
    "read_msgabench",
    "release_free_memory",
    "rss_mib",
    "table",
    "time_each",
    "write_results",
]

T = TypeVar("T")

RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"
MSGABENCH_ENV = "YXBY_MSGABENCH"
_MSGABENCH_DEFAULT = PROJECT_ROOT.parent / "shared" / "data" / "msgabench_gov_qa.xlsx"


@dataclass(frozen=True)
class LatencyStats:
    """Percentiles of a set of timed calls, in milliseconds."""

    calls: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def from_ns(cls, samples: Sequence[int]) -> LatencyStats:
        """Summarise per-call durations given in nanoseconds."""
        if not samples:
            return cls(0, float("nan"), float("nan"), float("nan"))
        ms = np.asarray(samples, dtype=np.float64) / 1e6
        return cls(
            calls=len(samples),
            p50_ms=float(np.percentile(ms, 50)),
            p99_ms=float(np.percentile(ms, 99)),
            mean_ms=float(ms.mean()),
        )

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def time_each(
    fn: Callable[[T], object], inputs: Sequence[T], *, repeat: int = 1, warmup: int = 0
) -> list[int]:
    """Duration in ns of ``fn(x)`` for every input, *repeat* passes, after *warmup* calls.

    Like :mod:`timeit`, the garbage collector is off while timing.
    """
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    samples: list[int] = []
    clock = time.perf_counter_ns
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for x in inputs:
                start = clock()
                fn(x)
                samples.append(clock() - start)
    finally:
        if enabled:
            gc.enable()
    return samples


def release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``).

    Without this, an allocation made after a large free reuses pages that are already
    resident and a before/after RSS difference understates what was allocated.
    """
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS growth may be understated
        pass


def rss_mib() -> float:
    """Resident set size of this process in MiB (psutil)."""
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Facts that make figures comparable: date, core count (as ``nproc``), load, CPU, versions."""
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        nproc = os.cpu_count() or 0
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": nproc,
        "load_average": load,  # other work on the machine skews latency figures
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


@dataclass(frozen=True)
class QaPair:
    """One row of MSGABench 政务问答: a user question and the answer written for it."""

    row: int
    question: str
    answer: str


@dataclass(frozen=True)
class QaSheet:
    """The usable rows of a sheet, and the spreadsheet rows left out for a blank cell."""

    pairs: tuple[QaPair, ...]
    blank_rows: tuple[int, ...]


def msgabench_path() -> Path:
    """The MSGABench workbook: ``$YXBY_MSGABENCH`` or ``../shared/data/msgabench_gov_qa.xlsx``."""
    env = os.environ.get(MSGABENCH_ENV)
    return Path(env) if env else _MSGABENCH_DEFAULT


def read_msgabench(path: Path | None = None, sheet: str = "政务问答") -> QaSheet:
    """Rows of *sheet* with a non-empty question and answer (openpyxl, read-only).

    The file is read where it lies and never copied (it states no licence).
    """
    import openpyxl

    p = path or msgabench_path()
    if not p.is_file():
        raise ConfigError(f"MSGABench file not found (set {MSGABENCH_ENV})", path=str(p))
    wb = openpyxl.load_workbook(p, read_only=True, data_only=True)
    try:
        if sheet not in wb.sheetnames:
            raise ConfigError(f"no sheet {sheet!r} (has {wb.sheetnames})", path=str(p))
        rows = wb[sheet].iter_rows(values_only=True)
        header = [str(c).strip() if c is not None else "" for c in next(rows, ())]
        try:
            qi, ai = header.index("用户问题"), header.index("正文内容")
        except ValueError:
            raise ConfigError(
                f"sheet {sheet!r} needs columns 用户问题 and 正文内容, has {header}", path=str(p)
            ) from None
        pairs: list[QaPair] = []
        blank: list[int] = []
        for n, row in enumerate(rows, start=2):
            q = str(row[qi] or "").strip() if qi < len(row) else ""
            a = str(row[ai] or "").strip() if ai < len(row) else ""
            if q and a:
                pairs.append(QaPair(n, q, a))
            elif any(c is not None and str(c).strip() for c in row):
                blank.append(n)
        return QaSheet(tuple(pairs), tuple(blank))
    finally:
        wb.close()


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.4f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with right-aligned columns (CJK counted double width)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [_width(h) for h in headers]
    for row in cells:
        widths = [max(w, _width(c)) for w, c in zip(widths, row, strict=True)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(" " * (w - _width(v)) + v for v, w in zip(values, widths, strict=True))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(r) for r in cells)])


def write_results(results: dict[str, Any], path: Path | None = None) -> Path:
    """Write *results* as pretty JSON (default ``benchmarks/results/latest.json``)."""
    target = path or RESULTS_DIR / "latest.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return target
