"""`yxby outbox list|retry|cancel` end to end against the test database.

The command uses the app's own clock (the wall clock), so the rows are queued relative
to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from bot.cli import main
from handoff.db import Database
from handoff.models import OutboxMessage, OutboxStatus, utcnow
from handoff.outbox import enqueue, mark_failed, mark_held


@pytest.fixture
def run(db_url: str) -> Callable[..., Result]:
    """Invoke ``yxby`` against the test database."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env={"YXBY_DATABASE_URL": db_url})

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + result.stderr
    return result


def fails(result: Result, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    assert message in result.stderr and result.stderr.startswith("错误：")
    assert "Traceback" not in result.output + result.stderr


@pytest.fixture
def rows(db: Database) -> dict[str, int]:
    """A pending push 2 hours old, a failed one, a held one and a sent one; their ids."""
    now = utcnow()
    with db.begin() as session:
        for text, age in (("待发", 120), ("失败", 30), ("暂存", 10), ("已送达", 5)):
            enqueue(
                session,
                "wechat",
                "oUserOpenId9876",
                "ticket_result",
                {"text": text},
                f"k:{text}",
                now=now - timedelta(minutes=age),
            )
        ids = {m.payload["text"]: m.id for m in session.scalars(select(OutboxMessage))}
        mark_failed(session, ids["失败"], "用户已屏蔽机器人")
        mark_held(session, ids["暂存"], "超过 48 小时客服消息窗口")
        sent = session.get(OutboxMessage, ids["已送达"])
        assert sent is not None
        sent.status = OutboxStatus.SENT
    return ids


def status(db: Database, message_id: int) -> OutboxMessage:
    with db.sessions() as session:
        found = session.get(OutboxMessage, message_id)
        assert found is not None
        return found


def test_list_is_a_chinese_table_with_masked_recipients(
    run: Callable[..., Result], rows: dict[str, int]
) -> None:
    out = ok(run("outbox", "list")).output
    lines = out.splitlines()
    assert lines[0].split() == [
        "编号",
        "渠道",
        "接收人",
        "类型",
        "状态",
        "尝试",
        "已等待",
        "最近错误",
    ]
    assert len(lines) == 4  # the sent one is not listed
    assert f"#{rows['失败']}" in out and "用户已屏蔽机器人" in out and "待用户留言" in out
    assert "…9876" in out and "oUserOpenId9876" not in out
    assert "2小时0分" in out or "1小时59分" in out
    assert f"#{rows['已送达']}" not in out


def test_list_filters_by_status_and_by_stuck_and_speaks_json(
    run: Callable[..., Result], rows: dict[str, int]
) -> None:
    failed = json.loads(ok(run("outbox", "list", "--status", "failed", "--json")).output)
    assert [(r["id"], r["status"], r["recipient"]) for r in failed] == [
        (rows["失败"], "failed", "…9876")
    ]
    assert failed[0]["last_error"] == "用户已屏蔽机器人"
    stuck = json.loads(ok(run("outbox", "list", "--status", "stuck", "--json")).output)
    assert [r["id"] for r in stuck] == [rows["待发"]]  # 2 hours > stuck_alert_minutes (60)
    assert ok(run("outbox", "list", "--status", "cancelled")).output.strip() == (
        "（没有符合条件的推送）"
    )
    assert len(json.loads(ok(run("outbox", "list", "--limit", "1", "--json")).output)) == 1


def test_retry_requeues_the_named_or_every_failed_push(
    run: Callable[..., Result], rows: dict[str, int], db: Database
) -> None:
    out = ok(run("outbox", "retry", str(rows["暂存"]))).output
    assert out.strip() == f"已重新排队 1 条：#{rows['暂存']}"
    again = status(db, rows["暂存"])
    assert again.status is OutboxStatus.PENDING
    assert "由命令行重新排队（此前：超过 48 小时客服消息窗口）" in (again.last_error or "")
    assert ok(run("outbox", "retry", "--failed")).output.strip() == (
        f"已重新排队 1 条：#{rows['失败']}"
    )
    assert status(db, rows["失败"]).status is OutboxStatus.PENDING
    assert ok(run("outbox", "retry", "--failed")).output.strip() == "没有失败的推送。"


def test_cancel_stops_a_push(
    run: Callable[..., Result], rows: dict[str, int], db: Database
) -> None:
    out = ok(run("outbox", "cancel", f"#{rows['待发']}", str(rows["失败"]))).output
    assert out.strip() == f"已取消 2 条：#{rows['待发']}、#{rows['失败']}"
    assert status(db, rows["待发"]).status is OutboxStatus.CANCELLED
    assert "cancelled" in ok(run("outbox", "list", "--status", "cancelled", "--json")).output


def test_unknown_ids_and_wrong_states_are_chinese_errors(
    run: Callable[..., Result], rows: dict[str, int], db: Database
) -> None:
    fails(run("outbox", "retry", "999"), 1, "没有编号为 #999 的推送")
    fails(run("outbox", "retry", str(rows["已送达"])), 1, "已送达，不能重新发送")
    fails(run("outbox", "cancel", str(rows["失败"]), "998"), 1, "#998")
    assert status(db, rows["失败"]).status is OutboxStatus.FAILED  # all or nothing
    fails(run("outbox", "retry"), 2, "请给出推送编号")
    fails(run("outbox", "retry", "12", "--failed"), 2, "二者选一")
    fails(run("outbox", "cancel"), 2, "请给出要取消的推送编号")
    fails(run("outbox", "cancel", "abc"), 2, "推送编号应为正整数")
