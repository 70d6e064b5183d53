"""Server time of the console pages with 10,000 tickets: the queue and a ticket page.

10,000 synthetic tickets (every state, 12 departments, enterprises, commissioners, SLA clocks
running, met or breached, a few co-handled) are bulk-inserted into a migrated database:
PostgreSQL (``YXBY_BENCH_DATABASE_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``, in a schema of its own that is
dropped afterwards) and SQLite (a temporary file). The real ASGI app of ``yxby serve``
(``bot.server.create_asgi``) is driven in process through ``httpx.ASGITransport`` by a
signed-in client, so the time is the server's (routing, session check, queries, Jinja),
without a socket. Each URL gets warm-up calls, then timed calls one after another.

Measured as a 专员 of 市场监管局 (about 1,500 tickets in scope) and as 政务办 (all 10,000):
the default queue, the overdue filter, a text search, a deep page, the JSON feed when nothing
changed and when it re-renders; and ``/console/tickets/<number>`` when that route exists
(otherwise noted as skipped). Target: p99 ≤ 100 ms on PostgreSQL.

Run alone: ``.venv/bin/python -m benchmarks.console_pages [--tickets 10000] [--calls 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import LatencyStats, machine_info, table

__all__ = ["PG_ENV", "report", "run"]

PG_ENV = "YXBY_BENCH_DATABASE_URL"
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_P99_MS = 100.0
PASSWORD = "bench-password-2026"


def _now() -> datetime:
    from handoff.calendar import SHANGHAI

    return datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)  # a Wednesday afternoon


# ------------------------------------------------------------------------------ data


def _seed(app: Any, tickets: int, seed: int = 7) -> dict[str, Any]:
    """Bulk-insert the synthetic data; the numbers the timed URLs need."""
    from sqlalchemy import insert
    from stdnum.cn import uscc

    from handoff.models import (
        ClockKind,
        Commissioner,
        CommissionerRole,
        Enterprise,
        EnterpriseKind,
        SlaClock,
        Ticket,
        TicketDepartment,
        TicketSource,
        TicketState,
    )

    def make_uscc(seq: int) -> str:
        body = f"91120116{seq:09d}"
        return body + uscc.calc_check_digit(body)

    rng = random.Random(seed)
    now = _now()
    calendar = app.calendar
    departments = [d.name for d in app.router.departments][:12]
    weights = [5 if d == "市场监管局" else 1 for d in departments]
    people: list[dict[str, Any]] = []
    for d in departments:
        for i in range(3):
            role = CommissionerRole.HEAD if i == 0 else CommissionerRole.COMMISSIONER
            people.append({"name": f"{d}专员{i}", "department": d, "role": role})
    people.append({"name": "督办", "department": "政务办", "role": CommissionerRole.OVERSIGHT})
    states = [
        (TicketState.CLOSED, 55),
        (TicketState.SURVEYED, 10),
        (TicketState.FEEDBACK_SENT, 5),
        (TicketState.RESOLVED, 5),
        (TicketState.NEW, 9),
        (TicketState.ACCEPTED, 7),
        (TicketState.IN_PROGRESS, 8),
        (TicketState.ESCALATED, 1),
    ]
    words = ["营业执照变更", "出口退税", "厂房消防验收", "用电增容", "人才落户", "高新认定",
             "冷链仓储", "道路维修", "社保转移", "食品经营许可"]  # fmt: skip
    with app.db.begin() as session:
        ids = session.scalars(
            insert(Commissioner).returning(Commissioner.id, sort_by_parameter_order=True),
            [{**p, "active": True, "created_at": now} for p in people],
        ).all()
        by_dept: dict[str, list[int]] = {}
        for p, pid in zip(people, ids, strict=True):
            by_dept.setdefault(p["department"], []).append(pid)
        ent_ids = session.scalars(
            insert(Enterprise).returning(Enterprise.id, sort_by_parameter_order=True),
            [
                {"uscc": make_uscc(100_000 + i), "name": f"天津{words[i % 10][:2]}企业{i}有限公司",
                 "kind": EnterpriseKind.ENTERPRISE, "tags": [], "created_at": now,
                 "updated_at": now}
                for i in range(1000)
            ],
        ).all()  # fmt: skip
        rows: list[dict[str, Any]] = []
        clocks: list[dict[str, Any]] = []
        helpers: list[dict[str, Any]] = []
        per_day: dict[str, int] = {}
        sources = list(TicketSource)
        state_pool = [s for s, w in states for _ in range(w)]
        for tid in range(1, tickets + 1):
            created = now - timedelta(minutes=rng.randint(10, 150 * 24 * 60))
            state = rng.choice(state_pool)
            if state in (TicketState.NEW, TicketState.ACCEPTED, TicketState.IN_PROGRESS):
                created = now - timedelta(minutes=rng.randint(10, 12 * 24 * 60))
            dept = rng.choices(departments, weights)[0]
            day = created.strftime("%Y%m%d")
            per_day[day] = per_day.get(day, 0) + 1
            word = rng.choice(words)
            rows.append(
                {
                    "id": tid,
                    "number": f"YX-{day}-{per_day[day]:04d}",
                    "enterprise_id": rng.choice(ent_ids),
                    "title": f"{word}相关诉求 {tid}",
                    "description": f"企业反映{word}办理中遇到的问题，请协调解决（第 {tid} 号）",
                    "department": dept,
                    "route_rule": "topic",
                    "route_reason": "基准测试",
                    "commissioner_id": rng.choice(by_dept[dept]) if rng.random() < 0.7 else None,
                    "state": state,
                    "source": rng.choice(sources),
                    "reopen_count": 0,
                    "created_at": created,
                    "updated_at": created,
                }
            )
            contact = calendar.due(created, 2).at
            done = calendar.due(created, 7).at
            accepted = state is not TicketState.NEW
            resolved = state not in (
                TicketState.NEW, TicketState.ACCEPTED, TicketState.IN_PROGRESS,
                TicketState.ESCALATED,
            )  # fmt: skip
            met_contact = created + timedelta(hours=rng.randint(1, 60)) if accepted else None
            met_done = created + timedelta(days=rng.randint(1, 10)) if resolved else None
            for kind, due, met in ((ClockKind.CONTACT, contact, met_contact),
                                   (ClockKind.DONE, done, met_done)):  # fmt: skip
                clocks.append(
                    {"ticket_id": tid, "kind": kind, "department": dept, "workdays": 2,
                     "started_at": created, "due_at": due, "met_at": met,
                     "breached_at": met if met and met > due else None,
                     "active": state is not TicketState.ESCALATED or kind is ClockKind.CONTACT,
                     "calendar_fallback": False}
                )  # fmt: skip
            if resolved and met_done is not None:
                fb_due = calendar.due(met_done, 2).at
                fb_met = None if state is TicketState.RESOLVED else met_done + timedelta(hours=5)
                clocks.append(
                    {"ticket_id": tid, "kind": ClockKind.FEEDBACK, "department": dept,
                     "workdays": 2, "started_at": met_done, "due_at": fb_due, "met_at": fb_met,
                     "active": True, "calendar_fallback": False}
                )  # fmt: skip
            if state is TicketState.ESCALATED:
                clocks.append(
                    {"ticket_id": tid, "kind": ClockKind.ESCALATION, "department": "政务办",
                     "workdays": None, "started_at": created,
                     "due_at": created + timedelta(days=30), "active": True,
                     "calendar_fallback": False}
                )  # fmt: skip
            if rng.random() < 0.03:
                other = rng.choice([d for d in departments if d != dept])
                helpers.append(
                    {"ticket_id": tid, "department": other, "added_at": created,
                     "added_by": "基准"}
                )  # fmt: skip
        for start in range(0, len(rows), 2000):
            session.execute(insert(Ticket), rows[start : start + 2000])
        for start in range(0, len(clocks), 4000):
            session.execute(insert(SlaClock), clocks[start : start + 4000])
        if helpers:
            session.execute(insert(TicketDepartment), helpers)
    if app.db.engine.dialect.name == "postgresql":
        with app.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    mine = [r for r in rows if r["department"] == "市场监管局"]
    open_mine = [r for r in mine if r["state"] in (TicketState.NEW, TicketState.IN_PROGRESS)]
    return {
        "tickets": len(rows),
        "clocks": len(clocks),
        "helpers": len(helpers),
        "in_scope": len(mine) + sum(1 for h in helpers if h["department"] == "市场监管局"),
        "sample": open_mine[0]["number"] if open_mine else rows[0]["number"],
        "commissioner": by_dept["市场监管局"][1],
        "overseer": ids[-1],
    }


# --------------------------------------------------------------------------- timing


@contextmanager
def _database(backend: str) -> Iterator[str]:
    from sqlalchemy.engine import make_url

    from handoff.db import make_engine, upgrade

    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="yxby-bench-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'yxby.sqlite3'}"
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
            yield url
        return
    base = os.environ.get(PG_ENV, "").strip() or PG_DEFAULT
    schema = f"yxby_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = (
            make_url(base)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


async def _time(client: Any, url: str, calls: int, warmup: int) -> dict[str, Any]:
    for _ in range(warmup):
        response = await client.get(url)
        response.raise_for_status()
    samples: list[int] = []
    size = 0
    for _ in range(calls):
        start = time.perf_counter_ns()
        response = await client.get(url)
        samples.append(time.perf_counter_ns() - start)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code}")
        size = len(response.content)
    stats = LatencyStats.from_ns(samples).as_dict()
    return {"url": url, **{k: round(v, 2) for k, v in stats.items()}, "bytes": size}


def _measure(backend: str, tickets: int, calls: int, warmup: int) -> dict[str, Any]:
    import httpx

    from bot.app import AppSettings, build_app
    from bot.console.auth import SESSION_COOKIE
    from bot.server import ServerOptions, create_asgi
    from handoff.accounts import Accounts, Argon2Settings, ConsoleSettings

    with _database(backend) as url:
        app = build_app(AppSettings.from_env(database_url=url), _now)
        try:
            started = time.perf_counter()
            data = _seed(app, tickets)
            seed_s = round(time.perf_counter() - started, 1)
            cheap = ConsoleSettings(
                argon2=Argon2Settings(time_cost=1, memory_kib=64, parallelism=1)
            )
            app.accounts = Accounts(app.db.sessions, app.clock, cheap)
            tokens = {}
            for who, pid in (("专员", data["commissioner"]), ("政务办", data["overseer"])):
                app.accounts.set_password(pid, PASSWORD)
                name = "市场监管局专员1" if who == "专员" else "督办"
                tokens[who] = app.accounts.sign_in(name, PASSWORD).token
            asgi = create_asgi(app, [], ServerOptions(run_worker=False, run_tick=False))
            has_ticket_page = any(
                getattr(r, "path", "").startswith("/console/tickets/") for r in asgi.routes
            )
            urls = [
                ("专员", "队列（默认）", "/console/"),
                ("专员", "队列：已超时", "/console/?overdue=1"),
                ("专员", "队列：搜索“消防”", "/console/?q=%E6%B6%88%E9%98%B2"),
                ("专员", "队列：第 10 页", "/console/?page=10"),
                ("专员", "更新（无变化）", None),
                ("专员", "更新（重新渲染）", "/console/queue.json?full=1"),
                ("政务办", "队列（默认，全部工单）", "/console/"),
                ("政务办", "队列：第 100 页", "/console/?page=100"),
            ]
            if has_ticket_page:
                urls.append(("专员", "工单页", f"/console/tickets/{data['sample']}"))

            async def drive() -> list[dict[str, Any]]:
                out = []
                transport = httpx.ASGITransport(app=asgi)
                for who, label, path in urls:
                    async with httpx.AsyncClient(
                        transport=transport, base_url="http://bench"
                    ) as client:
                        client.cookies.set(SESSION_COOKIE, tokens[who], path="/console")
                        if path is None:
                            body = (await client.get("/console/queue.json")).json()
                            path = f"/console/queue.json?v={body['version']}&max={body['max_id']}"
                        out.append({"as": who, "what": label,
                                    **await _time(client, path, calls, warmup)})  # fmt: skip
                return out

            results = asyncio.run(drive())
        finally:
            app.close()
    return {
        "backend": backend,
        "seed_s": seed_s,
        "data": {k: v for k, v in data.items() if k not in ("commissioner", "overseer")},
        "pages": results,
        "ticket_page": None if has_ticket_page else "skipped: /console/tickets/<number> 尚未实现",
    }


def run(tickets: int = 10_000, calls: int = 100, warmup: int = 5) -> dict[str, Any]:
    """Seed and time both backends; PostgreSQL is reported as skipped when unreachable."""
    out: dict[str, Any] = {"machine": machine_info(), "target_p99_ms": TARGET_P99_MS}
    backends: list[dict[str, Any]] = []
    for backend in ("postgresql", "sqlite"):
        try:
            backends.append(_measure(backend, tickets, calls, warmup))
        except Exception as exc:
            if backend != "postgresql" or "connect" not in repr(exc).lower():
                raise
            backends.append({"backend": backend, "skipped": f"PostgreSQL unreachable: {exc!r}"})
    out["backends"] = backends
    pg = next((b for b in backends if b["backend"] == "postgresql" and "pages" in b), None)
    if pg is not None:
        worst = max(p["p99_ms"] for p in pg["pages"])
        out["postgresql_worst_p99_ms"] = worst
        out["meets_target"] = worst <= TARGET_P99_MS
    return out


def report(result: dict[str, Any]) -> str:
    """The measurements as plain-text tables, one per backend."""
    parts = []
    for b in result["backends"]:
        if "skipped" in b:
            parts.append(f"{b['backend']}: {b['skipped']}")
            continue
        d = b["data"]
        head = (
            f"{b['backend']}: {d['tickets']:,} tickets, {d['clocks']:,} clocks, "
            f"{d['helpers']} co-handled; 市场监管局 sees {d['in_scope']:,} "
            f"(seeded in {b['seed_s']} s)"
        )
        rows = [
            [p["as"], p["what"], p["p50_ms"], p["p99_ms"], p["mean_ms"], f"{p['bytes']:,}"]
            for p in b["pages"]
        ]
        text = head + "\n" + table(["who", "page", "p50 ms", "p99 ms", "mean ms", "bytes"], rows)
        if b["ticket_page"]:
            text += f"\n{b['ticket_page']}"
        parts.append(text)
    if "postgresql_worst_p99_ms" in result:
        verdict = "meets" if result["meets_target"] else "MISSES"
        parts.append(
            f"PostgreSQL worst p99 {result['postgresql_worst_p99_ms']} ms: {verdict} the "
            f"{result['target_p99_ms']:.0f} ms target"
        )
    return "\n\n".join(parts)


def main() -> None:
    """Command line: ``--tickets``, ``--calls``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.console_pages")
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    print(report(run(args.tickets, args.calls)))


if __name__ == "__main__":
    main()
