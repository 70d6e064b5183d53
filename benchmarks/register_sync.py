"""名录库 sync of a 200,000-row 市场监管局 export (target ≤ 60 s, memory bounded).

A CSV export of ``ROWS`` entities (valid 统一社会信用代码, GB/T 4754 codes, statuses, 楼宇/
网格, 招商部门, annual reports; 0.5 % bad rows) is written to a temporary directory and synced
into a freshly migrated SQLite database (``YXBY_BENCH_DATABASE_URL`` picks another one):

* ``initial``: the first sync, every entity new;
* ``dry_run``: the next month's export — 2 % changed (moved building, new phone), 1 % 注销,
  1 % absent (left), 1 % new — as a dry run, with ``tracemalloc`` on, for the peak of
  Python allocations (the figure that shows memory does not grow with the file; tracing
  makes this phase slower);
* ``update``: the same export applied, against the 200,000 now registered.

Wall and CPU seconds (this process; the database is SQLite in-process, so CPU seconds show
the cost when the machine is shared) and RSS growth (psutil) are reported for each phase. Run with
``python -m benchmarks.run --only register_sync`` (``YXBY_BENCH_REGISTER_ROWS`` changes the
size).
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import release_free_memory, rss_mib, table

__all__ = ["report", "run"]

ROWS = int(os.environ.get("YXBY_BENCH_REGISTER_ROWS", "200000"))
TARGET_S = 60.0
HEADER = [
    "统一社会信用代码", "企业名称", "类型", "行业", "登记状态", "住所", "法定代表人", "成立日期",
    "联系电话", "楼宇/园区", "网格", "招商部门", "最近年报年度",
]  # fmt: skip
CODES = ["3611", "5212", "C", "7310", "62", "G5437", "6611", "8511", "7720", "2651", "批发业"]
BUILDINGS = ["天保大厦", "临港创新园", "城更科创大厦", "保税区科技园", "", "", ""]
GRIDS = [f"第{n}网格" for n in range(1, 41)]
RECRUITERS = ["投促局", "招商局", "商务局", "", "", "", ""]


def _uscc(seq: int) -> str:
    from stdnum.cn import uscc

    prefix = "92" if seq % 10 == 0 else "91"
    body = f"{prefix}120116{seq:09d}"
    return body + uscc.calc_check_digit(body)


def _row(seq: int) -> list[str]:
    return [
        _uscc(seq),
        f"天津港保税区测试{seq}号贸易有限公司" if seq % 10 else f"测试{seq}号小吃店",
        "个体工商户" if seq % 10 == 0 else "有限责任公司",
        CODES[seq % len(CODES)],
        "存续",
        f"天津自贸试验区（天津港保税区）海滨{seq % 97}路{seq % 400}号",
        f"法人{seq % 1000}",
        f"{2000 + seq % 25}-{1 + seq % 12:02d}-{1 + seq % 28:02d}",
        f"022-{60000000 + seq:08d}",
        BUILDINGS[seq % len(BUILDINGS)],
        GRIDS[seq % len(GRIDS)],
        RECRUITERS[seq % len(RECRUITERS)],
        str(2025 - (seq % 5 == 0)),
    ]


def _write(path: Path, rows: Iterator[list[str]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(HEADER)
        for row in rows:
            out.writerow(row)
            count += 1
    return count


def _first(rows: int) -> Iterator[list[str]]:
    for seq in range(1, rows + 1):
        row = _row(seq)
        if seq % 200 == 0:  # 0.5 % bad rows: broken check digit, unknown industry
            if seq % 400 == 0:
                row[0] = row[0][:-1] + ("0" if row[0][-1] != "0" else "1")
            else:
                row[3] = "9999"
        yield row


def _second(rows: int) -> Iterator[list[str]]:
    for seq in range(1, rows + 1):
        if seq % 100 == 7:  # 1 % absent: they left
            continue
        row = _row(seq)
        if seq % 50 == 3:  # 2 % changed
            row[9] = "临港创新园" if row[9] != "临港创新园" else "天保大厦"
            row[8] = f"139{seq:08d}"
        if seq % 100 == 11:  # 1 % 注销
            row[4] = "注销"
        if seq % 200 == 0:
            row[3] = "9999"
        yield row
    for seq in range(rows + 1, rows + rows // 100 + 1):  # 1 % new
        yield _row(seq)


def _database(base: Path) -> Any:
    from handoff.db import make_engine, open_database, upgrade

    url = os.environ.get("YXBY_BENCH_DATABASE_URL") or f"sqlite:///{base / 'register.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return open_database(url)


def _phase(
    register: Any, path: Path, *, dry_run: bool = False, trace: bool = False
) -> dict[str, Any]:
    release_free_memory()
    before = rss_mib()
    if trace:
        tracemalloc.start()
    start, cpu = time.perf_counter(), time.process_time()
    report = register.sync(path, dry_run=dry_run, by="benchmark")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = None
    if trace:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {
        "rows": report.rows,
        "new": report.new,
        "changed": report.changed,
        "left": report.left,
        "unchanged": report.unchanged,
        "rejected": len(report.rejected),
        "seconds": round(seconds, 1),
        "cpu_s": round(cpu, 1),
        "rows_per_s": round(report.rows / seconds) if seconds else None,
        "rss_growth_mib": round(rss_mib() - before, 1),
        "traced_peak_mib": round(peak / 2**20, 1) if peak is not None else None,
    }


def run() -> dict[str, Any]:
    """Write the exports, sync them, return the figures."""
    from handoff.register import Register
    from routing import load_router

    with tempfile.TemporaryDirectory(prefix="yxby-register-") as tmp:
        base = Path(tmp)
        first, second = base / "2026-10.csv", base / "2026-11.csv"
        _write(first, _first(ROWS))
        _write(second, _second(ROWS))
        database = _database(base)
        try:
            register = Register(database.sessions, load_router())
            phases = {
                "initial": _phase(register, first),
                "dry_run": _phase(register, second, dry_run=True, trace=True),
                "update": _phase(register, second),
            }
        finally:
            database.dispose()
        sizes = {"first_mib": round(first.stat().st_size / 2**20, 1)}
    worst = max(p["seconds"] for name, p in phases.items() if name != "dry_run")
    worst_cpu = max(p["cpu_s"] for name, p in phases.items() if name != "dry_run")
    return {
        "rows": ROWS,
        "file": sizes,
        "phases": phases,
        "target_s": TARGET_S,
        "within_target": worst <= TARGET_S,
        "within_target_cpu": worst_cpu <= TARGET_S,
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "backend": "postgresql" if os.environ.get("YXBY_BENCH_DATABASE_URL") else "sqlite",
    }


def report(result: dict[str, Any]) -> str:
    """The figures as a table."""
    rows = [
        [
            name, p["rows"], p["new"], p["changed"], p["left"], p["unchanged"], p["rejected"],
            p["seconds"], p["cpu_s"], p["rows_per_s"], p["rss_growth_mib"],
            p["traced_peak_mib"] or "",
        ]
        for name, p in result["phases"].items()
    ]  # fmt: skip
    head = [
        "phase", "rows", "new", "changed", "left", "unchanged", "rejected", "s", "CPU s", "rows/s",
        "RSS +MiB", "traced peak MiB",
    ]  # fmt: skip
    verdict = "within" if result["within_target"] else "OVER"
    cpu = "within" if result.get("within_target_cpu") else "OVER"
    return (
        table(head, rows) + f"\n{result['rows']} rows ({result['file']['first_mib']} MiB CSV) on "
        f"{result['backend']}; target <= {result['target_s']:.0f} s per sync (initial, update; "
        f"the traced dry run is slower by design): wall {verdict}, CPU {cpu} "
        f"(load average {result.get('load_average')})"
    )
