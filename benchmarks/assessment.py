"""`yxby report assess` for a year with 100,000 synthetic tickets (target ≤ 2 s on PostgreSQL).

A year (2025, Asia/Shanghai) of synthetic history is bulk-inserted into a migrated database
— PostgreSQL (``YXBY_BENCH_DATABASE_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``, in a schema of its own, dropped
afterwards) and SQLite (a temporary file): tickets over 12 departments and every source;
contact, done and feedback clocks (met on time, late, or still running; a few escalation
clocks); their events (create, resolve, a few transfers, reopens, urges with a 督办 level,
escalations); enterprise ratings; and bot question turns. Then the year's assessment
(:meth:`handoff.assessment.Assessment.report`, what ``yxby report assess --period 2025``
runs, JSON rendering included) is timed a few times; the quarterly and monthly reports and
one drill-down are timed too, and so are three plain ``GROUP BY`` scans of the ticket,
event and clock tables (``3 scans``): on a shared, loaded machine the ratio of the report to
those scans is the steadier figure.

Run alone: ``.venv/bin/python -m benchmarks.assessment [--tickets 100000] [--repeat 3]
[--backends postgresql,sqlite]``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import datetime, timedelta
from typing import Any

from benchmarks.common import machine_info, table
from benchmarks.console_pages import _database

__all__ = ["TARGET_S", "report", "run"]

TARGET_S = 2.0
YEAR = 2025


def _seed(app: Any, tickets: int, seed: int = 12) -> dict[str, int]:
    """Bulk-insert a year of history; the row counts."""
    from sqlalchemy import insert

    from handoff.calendar import SHANGHAI
    from handoff.conversations import DialogueTurn, TurnOutcome
    from handoff.models import (
        ChannelIdentity,
        ClockKind,
        SlaClock,
        Survey,
        SurveyResult,
        Ticket,
        TicketEvent,
        TicketSource,
        TicketState,
    )

    rng = random.Random(seed)
    start = datetime(YEAR, 1, 1, tzinfo=SHANGHAI)
    departments = [d.name for d in app.router.departments][1:13]
    sources = list(TicketSource)
    rows: list[dict[str, Any]] = []
    clocks: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    surveys: list[dict[str, Any]] = []
    per_day: dict[str, int] = {}

    def event(tid: int, at: datetime, kind: str, data: dict[str, Any] | None = None) -> None:
        events.append({"ticket_id": tid, "at": at, "actor": "基准", "kind": kind,
                       "data": data or {}})  # fmt: skip

    def clock(
        tid: int, kind: ClockKind, dept: str, started: datetime, days: int, met: datetime | None
    ) -> None:
        due = started + timedelta(days=days)
        clocks.append(
            {"ticket_id": tid, "kind": kind, "department": dept, "workdays": days,
             "started_at": started, "due_at": due, "met_at": met,
             "breached_at": met if met and met > due else None, "active": True,
             "calendar_fallback": False}
        )  # fmt: skip

    for tid in range(1, tickets + 1):
        created = start + timedelta(minutes=rng.randint(0, 365 * 24 * 60 - 1))
        dept = rng.choice(departments)
        day = created.astimezone(SHANGHAI).strftime("%Y%m%d")
        per_day[day] = per_day.get(day, 0) + 1
        resolved = rng.random() < 0.9
        state = TicketState.CLOSED if resolved else TicketState.IN_PROGRESS
        event(tid, created, "create", {"department": dept})
        accepted = created + timedelta(hours=rng.expovariate(1 / 20))
        clock(tid, ClockKind.CONTACT, dept, created, 2, accepted)
        event(tid, accepted, "accept")
        if rng.random() < 0.03:  # transferred on
            other = rng.choice([d for d in departments if d != dept])
            event(tid, accepted + timedelta(hours=1), "transfer",
                  {"from_department": dept, "to_department": other})  # fmt: skip
            dept = other
        done_at = accepted + timedelta(days=rng.expovariate(1 / 5)) if resolved else None
        clock(tid, ClockKind.DONE, dept, created, 9, done_at)
        if rng.random() < 0.05:
            event(tid, created + timedelta(days=9, hours=2), "urge",
                  {"level": rng.choice(("blue", "orange", "red"))})  # fmt: skip
        if rng.random() < 0.005:
            event(tid, accepted + timedelta(days=2), "escalate", {"lead_department": dept})
            clock(tid, ClockKind.ESCALATION, dept, accepted + timedelta(days=2), 30, done_at)
        if done_at is not None:
            event(tid, done_at, "resolve")
            fed = done_at + timedelta(hours=rng.expovariate(1 / 30))
            clock(tid, ClockKind.FEEDBACK, dept, done_at, 2, fed)
            if rng.random() < 0.7:
                result = rng.choices(list(SurveyResult), (70, 22, 8))[0]
                surveys.append({"ticket_id": tid, "round": 0, "result": result,
                                "actor": "企业", "at": fed + timedelta(hours=3)})  # fmt: skip
                if result is SurveyResult.UNSATISFIED:
                    event(tid, fed + timedelta(hours=3), "reopen", {"round": 1})
        rows.append(
            {"id": tid, "number": f"YX-{day}-{per_day[day]:04d}", "title": f"基准诉求 {tid}",
             "description": "基准测试", "department": dept, "route_rule": "topic",
             "route_reason": "基准", "state": state, "source": rng.choice(sources),
             "reopen_count": 0, "created_at": created, "updated_at": created}
        )  # fmt: skip
    outcomes = [TurnOutcome.SOLVED] * 40 + [TurnOutcome.ANSWERED] * 20
    outcomes += [TurnOutcome.UNSOLVED] * 10 + [TurnOutcome.TICKET] * 10
    outcomes += [TurnOutcome.NONE] * 15 + [TurnOutcome.HANDOFF] * 5
    with app.db.begin() as session:
        identity = ChannelIdentity(channel="terminal", user_key="bench")
        session.add(identity)
        session.flush()
        for first in range(0, len(rows), 5000):
            session.execute(insert(Ticket), rows[first : first + 5000])
        for first in range(0, len(clocks), 5000):
            session.execute(insert(SlaClock), clocks[first : first + 5000])
        for first in range(0, len(events), 5000):
            session.execute(insert(TicketEvent), events[first : first + 5000])
        for first in range(0, len(surveys), 5000):
            session.execute(insert(Survey), surveys[first : first + 5000])
        turns = []
        for i in range(tickets):
            outcome = rng.choice(outcomes)
            turns.append(
                {"channel_identity_id": identity.id, "state": "idle", "text": f"问题 {i}",
                 "at": start + timedelta(minutes=rng.randint(0, 365 * 24 * 60 - 1)),
                 "action": "none" if outcome is TurnOutcome.NONE else "answer",
                 "entry_id": f"entry-{rng.randint(1, 200)}", "outcome": outcome,
                 "tokens": [], "hits": []}
            )  # fmt: skip
        for first in range(0, len(turns), 5000):
            session.execute(insert(DialogueTurn), turns[first : first + 5000])
    if app.db.engine.dialect.name == "postgresql":
        with app.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    return {
        "tickets": len(rows),
        "clocks": len(clocks),
        "events": len(events),
        "surveys": len(surveys),
        "turns": len(turns),
    }


def _measure(backend: str, tickets: int, repeat: int) -> dict[str, Any]:
    from bot.app import AppSettings, build_app
    from handoff.assessment import Assessment, parse_period

    now = datetime.fromisoformat(f"{YEAR + 1}-01-15T10:00:00+08:00")
    with _database(backend) as url:
        app = build_app(AppSettings.from_env(database_url=url), lambda: now)
        try:
            began = time.perf_counter()
            counts = _seed(app, tickets)
            seeded = time.perf_counter() - began
            assessment = Assessment.of(app)

            def timed(call: Any) -> tuple[float, Any]:
                best = float("inf")
                result = None
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    result = call()
                    best = min(best, time.perf_counter() - t0)
                return best, result

            year = parse_period(str(YEAR))
            year_s, data = timed(lambda: json.dumps(assessment.report(year), ensure_ascii=False))
            quarter_s, _ = timed(lambda: assessment.report(parse_period(f"{YEAR}Q4")))
            month_s, _ = timed(lambda: assessment.report(parse_period(f"{YEAR}-06")))
            dept = app.router.departments.names
            busiest = sorted(dept)[0]
            drill_s, drill = timed(
                lambda: assessment.drill(
                    "done_on_time_rate", parse_period(f"{YEAR}-06"), department=busiest
                )
            )
            # the price of one plain pass over the tables, on the same machine at the same
            # moment: what the report costs relative to it says more than seconds on a
            # loaded machine
            from sqlalchemy import text

            def baseline() -> None:
                with app.db.engine.connect() as conn:
                    for sql in (
                        "SELECT department, count(*) FROM ticket GROUP BY department",
                        "SELECT kind, count(*) FROM ticket_event GROUP BY kind",
                        "SELECT kind, count(*) FROM sla_clock GROUP BY kind",
                    ):
                        conn.execute(text(sql)).all()

            baseline_s, _ = timed(baseline)
            zone = json.loads(data)["zone"]
            bot = json.loads(data)["bot"]
        finally:
            app.close()
    return {
        "backend": backend,
        **counts,
        "seed_s": round(seeded, 1),
        "year_s": round(year_s, 3),
        "quarter_s": round(quarter_s, 3),
        "month_s": round(month_s, 3),
        "drill_s": round(drill_s, 3),
        "drill_rows": len(drill.denominator) + len(drill.numerator),
        "baseline_s": round(baseline_s, 3),
        "year_per_baseline": round(year_s / baseline_s, 1) if baseline_s else None,
        "zone": {
            k: zone[k]
            for k in (
                "created",
                "contact_on_time_rate",
                "done_on_time_rate",
                "resolved_rate",
                "feedback_on_time_rate",
                "satisfaction_rate",
                "reopen_rate",
                "urged",
            )
        },
        "instant_resolution_rate": bot["instant_resolution_rate"],
    }


def run(
    tickets: int = 100_000, repeat: int = 3, backends: tuple[str, ...] = ("postgresql", "sqlite")
) -> dict[str, Any]:
    """Seed and time every backend."""
    return {
        "machine": machine_info(),
        "tickets": tickets,
        "target_s": TARGET_S,
        "results": [_measure(b, tickets, repeat) for b in backends],
    }


def report(result: dict[str, Any]) -> str:
    """The timing table and the year's zone figures."""
    rows = []
    for r in result["results"]:
        verdict = ""
        if r["backend"] == "postgresql":
            verdict = "ok" if r["year_s"] <= result["target_s"] else "SLOW"
        rows.append(
            [r["backend"], f"{r['tickets']:,}", f"{r['clocks']:,}", f"{r['events']:,}",
             f"{r['seed_s']}", f"{r['year_s']:.3f}", f"{r['quarter_s']:.3f}",
             f"{r['month_s']:.3f}", f"{r['drill_s']:.3f}", f"{r['baseline_s']:.3f}",
             f"{r['year_per_baseline']}×", verdict]
        )  # fmt: skip
    headers = ["backend", "tickets", "clocks", "events", "seed s", "year s", "quarter s",
               "month s", "drill s", "3 scans s", "year/scans",
               f"≤{result['target_s']:g} s"]  # fmt: skip
    lines = [table(headers, rows)]
    for r in result["results"]:
        zone = ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r["zone"].items()
        )
        lines.append(f"{r['backend']} zone: {zone}, instant {r['instant_resolution_rate']:.3f}")
    if "machine" in result:  # run alone; benchmarks.run prints the machine itself
        lines.append(f"load average {result['machine'].get('load_average')}")
    return "\n".join(lines)


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.assessment")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="postgresql,sqlite")
    args = parser.parse_args()
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    print(report(run(args.tickets, args.repeat, backends)))


if __name__ == "__main__":
    main()
