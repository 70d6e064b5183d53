"""A notice to 50,000 enterprises queued (target ≤ 30 s).

A freshly migrated SQLite database (``YXBY_BENCH_DATABASE_URL`` picks another one) gets
``ENTERPRISES`` active entities in five 楼宇/园区 (plus 2 % zombies and 1 % 注销 that must be
left out), each with one or two chat identities (WeChat; every tenth Telegram; every 25th
has turned notices off, every 50th has none). Then, timed:

* ``preview``: :func:`handoff.notices.count_audience` for everyone (the console's preview);
* ``send``: :func:`handoff.notices.create_notice` + :func:`handoff.notices.send_notice` in
  one transaction, commit included: one receipt per enterprise × chat and one outbox push
  per chat that takes notices, each with its own signed link — the figure the target is for;
* ``counts`` and ``export``: the receipt counts of the console page and the full CSV export.

Run with ``python -m benchmarks.run --only notices`` (``YXBY_BENCH_NOTICE_ENTERPRISES``
changes the size).
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import table

__all__ = ["report", "run"]

ENTERPRISES = int(os.environ.get("YXBY_BENCH_NOTICE_ENTERPRISES", "50000"))
TARGET_S = 30.0
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
PARKS = ["天保大厦", "临港创新园", "城更科创大厦", "保税区科技园", "空港物流园"]


def _uscc(seq: int) -> str:
    from stdnum.cn import uscc

    body = f"91120116{seq:09d}"
    return body + uscc.calc_check_digit(body)


def _database(base: Path) -> Any:
    from handoff.db import make_engine, open_database, upgrade

    url = os.environ.get("YXBY_BENCH_DATABASE_URL") or f"sqlite:///{base / 'notices.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return open_database(url)


def _populate(database: Any, count: int) -> tuple[int, int]:
    """*count* enterprises (and 3 % that must be left out) with their chats."""
    from sqlalchemy import insert, select

    from handoff.models import ChannelIdentity, Enterprise, EnterpriseKind

    total = count + count * 3 // 100
    enterprises = []
    for seq in range(1, total + 1):
        left_out = seq > count
        enterprises.append(
            {
                "uscc": _uscc(seq),
                "name": f"天津港保税区测试{seq}号有限公司",
                "kind": EnterpriseKind.ENTERPRISE,
                "industry": "国际贸易",
                "tags": [],
                "building": PARKS[seq % len(PARKS)],
                "grid": f"第{seq % 40 + 1}网格",
                "status": "注销" if left_out and seq % 3 == 0 else "存续",
                "zombie": left_out and seq % 3 != 0,
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
    identities = 0
    with database.begin() as s:
        for start in range(0, len(enterprises), 5000):
            s.execute(insert(Enterprise), enterprises[start : start + 5000])
        ids = list(s.scalars(select(Enterprise.id).order_by(Enterprise.id)))
        rows = []
        for n, ent_id in enumerate(ids, start=1):
            if n % 50 == 0:
                continue  # no chat at all
            channel = "telegram" if n % 10 == 0 else "wechat"
            key = str(100000 + n) if channel == "telegram" else f"oBench{n:022d}"
            rows.append(
                {
                    "channel": channel, "user_key": key, "enterprise_id": ent_id,
                    "subscribed": True, "notices_off": n % 25 == 0, "last_inbound_at": NOW,
                    "verified_at": NOW if n % 2 else None, "verify_failures": 0,
                    "created_at": NOW,
                }
            )  # fmt: skip
            if n % 7 == 0:  # a second person of the same enterprise
                rows.append({**rows[-1], "user_key": f"oBenchColleague{n:015d}",
                             "channel": "wechat", "notices_off": False})  # fmt: skip
        for start in range(0, len(rows), 5000):
            s.execute(insert(ChannelIdentity), rows[start : start + 5000])
        identities = len(rows)
    return total, identities


def run() -> dict[str, Any]:
    """Populate, preview, send, count and export; return the figures."""
    from bot.replies import load_replies
    from handoff.links import TicketLinks
    from handoff.models import Commissioner, CommissionerRole
    from handoff.notices import (
        Audience,
        NoticeLinks,
        count_audience,
        create_notice,
        export_csv,
        export_rows,
        receipt_counts,
        send_notice,
    )
    from yxby import paths

    texts = load_replies(paths.config_dir() / "replies.yaml")
    links = NoticeLinks(TicketLinks(b"benchmark-secret-0123456789", lambda: NOW,
                                    public_url="https://yxby.example.gov.cn"))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="yxby-notices-") as tmp:
        database = _database(Path(tmp))
        try:
            start = time.perf_counter()
            registered, identities = _populate(database, ENTERPRISES)
            populate_s = time.perf_counter() - start
            with database.begin() as s:
                person = Commissioner(name="周敏", department="政务办",
                                      role=CommissionerRole.OVERSIGHT, active=True,
                                      created_at=NOW)  # fmt: skip
                s.add(person)
                s.flush()
                s.expunge(person)
            audience = Audience()
            start = time.perf_counter()
            with database.sessions() as s:
                counted = count_audience(s, audience)
            preview_s = time.perf_counter() - start

            start = time.perf_counter()
            with database.begin() as s:
                notice = create_notice(
                    s, person, kind="政策解读", title="2027年跨境电商扶持政策解读",
                    body="自2027年1月起，区内跨境电商企业可申请物流费用补贴。" * 5,
                    audience=audience, link="https://www.tjftz.gov.cn/policy/2027-01",
                    now=NOW,
                )  # fmt: skip
                sent = send_notice(s, notice.id, person, texts=texts, link_for=links.url, now=NOW)
            send_s = time.perf_counter() - start

            start = time.perf_counter()
            with database.sessions() as s:
                counts = receipt_counts(s, sent.notice_id)
            counts_s = time.perf_counter() - start
            start = time.perf_counter()
            with database.sessions() as s:
                exported = export_csv(export_rows(s, sent.notice_id))
            export_s = time.perf_counter() - start
        finally:
            database.dispose()
    return {
        "enterprises_registered": registered,
        "identities": identities,
        "audience": counted.enterprises,
        "reachable": counted.reachable,
        "queued": sent.queued,
        "no_channel": sent.no_channel,
        "skipped": sent.skipped,
        "pending": counts["pending"],
        "seconds": {
            "populate": round(populate_s, 1),
            "preview": round(preview_s, 2),
            "send": round(send_s, 1),
            "counts": round(counts_s, 2),
            "export": round(export_s, 1),
        },
        "export_mib": round(len(exported) / 2**20, 1),
        "target_s": TARGET_S,
        "within_target": send_s <= TARGET_S,
        "backend": "postgresql" if os.environ.get("YXBY_BENCH_DATABASE_URL") else "sqlite",
    }


def report(result: dict[str, Any]) -> str:
    """The figures as a table."""
    s = result["seconds"]
    rows = [
        ["preview (count the audience)", s["preview"], f"{result['audience']} enterprises"],
        ["send (receipts + outbox, commit)", s["send"], f"{result['queued']} pushes queued"],
        ["receipt counts", s["counts"], f"{result['pending']} pending"],
        ["export CSV", s["export"], f"{result['export_mib']} MiB"],
    ]
    verdict = "within" if result["within_target"] else "OVER"
    return (
        table(["step", "s", "what"], rows)
        + f"\n{result['enterprises_registered']} registered ({result['audience']} active), "
        f"{result['identities']} chats, {result['no_channel']} enterprises without one, "
        f"{result['skipped']} chats unsubscribed; on {result['backend']}; "
        f"target ≤ {result['target_s']:.0f} s to queue: {verdict}"
    )
