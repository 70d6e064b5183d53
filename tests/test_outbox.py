"""``handoff.outbox`` for operators: list, stuck, requeue, cancel, and the alert pass
(who is told, through which account, once, never about an alert).

Runs on SQLite, and on PostgreSQL when ``YXBY_TEST_DATABASE_URL`` is set; time is the
movable clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.delivery import OutboxWorker
from handoff.db import Database
from handoff.models import OutboxMessage, OutboxStatus
from handoff.outbox import (
    ALERT_KIND,
    CONSOLE_CHANNEL,
    DeliverySettings,
    OutboxActionError,
    PermanentFailure,
    alert_department,
    cancel,
    enqueue,
    horizon_of,
    list_messages,
    mark_failed,
    mark_held,
    mask_recipient,
    queue_alerts,
    requeue,
    requeue_failed,
    stuck,
)
from handoff.tickets import TicketView
from tests.conftest import MovableClock

SETTINGS = DeliverySettings()


def add(
    db: Database,
    text: str,
    clock: MovableClock,
    *,
    channel: str = "wechat",
    recipient: str = "o-user-5678",
    kind: str = "notice",
    **payload: Any,
) -> int:
    with db.begin() as session:
        enqueue(
            session, channel, recipient, kind, {"text": text, **payload}, f"k:{text}", now=clock()
        )
        return session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.dedupe_key == f"k:{text}")
        ).one()


def get(db: Database, message_id: int) -> OutboxMessage:
    with db.sessions() as session:
        found = session.get(OutboxMessage, message_id)
        assert found is not None
        return found


def fail(db: Database, message_id: int, reason: str = "用户已屏蔽机器人") -> None:
    with db.begin() as session:
        mark_failed(session, message_id, reason)


def alerts(db: Database) -> list[OutboxMessage]:
    with db.sessions() as session:
        stmt = select(OutboxMessage).where(OutboxMessage.kind == ALERT_KIND)
        return list(session.scalars(stmt.order_by(OutboxMessage.id)))


def alert_pass(db: Database, clock: MovableClock, **kw: Any) -> Any:
    with db.begin() as session:
        return queue_alerts(session, clock(), SETTINGS, **kw)


@pytest.fixture
def people(make_commissioner: Callable[..., Any]) -> None:
    make_commissioner("王局", "市场监管局", role="负责人", bindings=(("wechat", "o-head-0001"),))
    make_commissioner("李督", "政务办", role="政务办", bindings=(("telegram", "8001"),))
    make_commissioner("周局", "政务办", role="负责人")  # 政务办's own head: no account


# ----------------------------------------------------------------------------- lists


def test_list_shows_what_is_undelivered_newest_first(db: Database, clock: MovableClock) -> None:
    sent = add(db, "已送达", clock)
    pending, failed, held = (add(db, t, clock) for t in ("待发", "失败", "暂存"))
    with db.begin() as session:
        session.get(OutboxMessage, sent).status = OutboxStatus.SENT  # type: ignore[union-attr]
        mark_failed(session, failed, "坏了")
        mark_held(session, held, "超过 48 小时")
        assert [m.id for m in list_messages(session)] == [held, failed, pending]
        assert [m.id for m in list_messages(session, [OutboxStatus.FAILED])] == [failed]
        assert len(list_messages(session, limit=1)) == 1


def test_stuck_means_undelivered_past_the_alert_time_and_not_the_console(
    db: Database, clock: MovableClock
) -> None:
    old = add(db, "旧的", clock)
    add(db, "工作台的", clock, channel=CONSOLE_CHANNEL, recipient="commissioner:1")
    clock.advance(minutes=30)
    add(db, "新的", clock)
    clock.advance(minutes=31)
    with db.sessions() as session:
        assert [m.id for m in stuck(session, clock(), SETTINGS)] == [old]
        assert stuck(session, clock(), SETTINGS, channels=["telegram"]) == []


def test_mask_recipient_keeps_the_last_four() -> None:
    assert mask_recipient("oAbCdEfGh1234") == "…1234"
    assert mask_recipient("12") == "…12"


# ----------------------------------------------------------------------- requeue, cancel


def test_requeue_puts_failed_and_held_back_now_keeping_attempts(
    db: Database, clock: MovableClock
) -> None:
    failed, held = add(db, "失败", clock), add(db, "暂存", clock)
    with db.begin() as session:
        row = session.get(OutboxMessage, failed)
        assert row is not None
        row.attempts, row.timeouts = 7, 2
        mark_failed(session, failed, "两次超时")
        mark_held(session, held, "超过 48 小时")
    clock.advance(hours=100)
    with db.begin() as session:
        done = requeue(session, [failed, held], clock(), actor="测试员")
        assert [m.id for m in done] == [failed, held]
    again = get(db, failed)
    assert again.status is OutboxStatus.PENDING and again.next_attempt_at is None
    assert (again.attempts, again.timeouts, again.requeues) == (7, 0, 1)
    assert again.last_error == "2026-11-27 14:00 由测试员重新排队（此前：两次超时）"
    assert horizon_of(again, SETTINGS) == clock() + timedelta(hours=72)  # starts afresh


def test_requeue_and_cancel_refuse_unknown_ids_and_wrong_states_changing_nothing(
    db: Database, clock: MovableClock
) -> None:
    failed, pending = add(db, "失败", clock), add(db, "待发", clock)
    fail(db, failed)
    with db.begin() as session, pytest.raises(OutboxActionError) as caught:
        requeue(session, [failed, pending, 999], clock(), actor="测试员")
    assert caught.value.unknown == (999,)
    assert caught.value.refused == {pending: OutboxStatus.PENDING}
    assert str(caught.value) == (
        f"没有编号为 #999 的推送；#{pending} 待发送，不能重新发送（均未改动）"
    )
    assert get(db, failed).status is OutboxStatus.FAILED
    with db.begin() as session:
        cancel(session, [pending], clock(), actor="测试员")
    with db.begin() as session, pytest.raises(OutboxActionError, match="已取消，不能取消"):
        cancel(session, [pending], clock(), actor="测试员")


def test_requeue_failed_takes_every_failed_one(db: Database, clock: MovableClock) -> None:
    ids = [add(db, t, clock) for t in ("一", "二", "三")]
    fail(db, ids[0])
    fail(db, ids[2])
    with db.begin() as session:
        assert [m.id for m in requeue_failed(session, clock(), actor="测试员")] == [
            ids[0],
            ids[2],
        ]
        assert requeue_failed(session, clock(), actor="测试员") == []


def test_a_cancelled_push_is_not_sent_nor_failed_later(db: Database, clock: MovableClock) -> None:
    first, second = add(db, "一", clock), add(db, "二", clock)
    with db.begin() as session:
        [row] = cancel(session, [first], clock(), actor="测试员")
        assert row.last_error == "2026-11-23 10:00 由测试员取消"
    fail(db, first)  # a worker finishing late does not turn it into a failure
    assert get(db, first).status is OutboxStatus.CANCELLED

    sent: list[str] = []

    class Sender:
        async def send(self, recipient: str, payload: dict[str, Any]) -> None:
            sent.append(payload["text"])

    asyncio.run(OutboxWorker(db.sessions, {"wechat": Sender()}, clock).run_once())
    assert sent == ["二"] and get(db, second).status is OutboxStatus.SENT


def test_a_requeued_push_goes_before_later_ones_to_the_same_person(
    db: Database, clock: MovableClock
) -> None:
    sent: list[str] = []

    class Sender:
        def __init__(self) -> None:
            self.down = True

        async def send(self, recipient: str, payload: dict[str, Any]) -> None:
            if self.down:
                raise PermanentFailure("接收人无效")
            sent.append(payload["text"])

    sender = Sender()
    w = OutboxWorker(db.sessions, {"wechat": sender}, clock)
    first = add(db, "一", clock)
    asyncio.run(w.run_once())
    assert get(db, first).status is OutboxStatus.FAILED
    sender.down = False
    add(db, "二", clock)
    with db.begin() as session:
        requeue(session, [first], clock(), actor="测试员")
    asyncio.run(w.run_once())
    assert sent == ["一", "二"]


# ----------------------------------------------------------------------------- alerts


def test_alert_department_from_the_payload_the_ticket_or_the_fallback(
    db: Database, clock: MovableClock, make_ticket: Callable[..., TicketView]
) -> None:
    ticket = make_ticket(department="社发局")
    named = add(db, "甲", clock, department="商务局", ref=f"ticket:{ticket.number}")
    by_ref = add(db, "乙", clock, ref=f"ticket:{ticket.number}")
    by_key = add(db, "丙", clock, ticket=ticket.number)
    unknown = add(db, "丁", clock, ref="ticket:no-such")
    plain = add(db, "戊", clock, ref="handoff:3")
    with db.sessions() as session:
        found = [
            alert_department(session, session.get(OutboxMessage, i))  # type: ignore[arg-type]
            for i in (named, by_ref, by_key, unknown, plain)
        ]
    assert found == ["商务局", "社发局", "社发局", "政务办", "政务办"]


def test_a_failure_is_reported_once_to_the_head_and_oversight(
    db: Database, clock: MovableClock, people: None
) -> None:
    failed = add(db, "您的工单已办结", clock, department="市场监管局")
    fail(db, failed)
    report = alert_pass(db, clock)
    assert (report.failed, report.alerts, report.unaddressed) == (1, 2, 0)
    # the 负责人 has only a WeChat account (the failing channel): told there all the same
    assert [(m.channel, m.recipient) for m in alerts(db)] == [
        ("wechat", "o-head-0001"),
        ("telegram", "8001"),
    ]
    first = alerts(db)[0]
    assert first.payload["about"] == failed and first.payload["department"] == "市场监管局"
    assert "用户已屏蔽机器人" in first.payload["text"] and "…5678" in first.payload["text"]
    assert alert_pass(db, clock).alerts == 0  # once
    assert get(db, failed).failed_alerted_at == clock()


def test_政务办_pushes_reach_its_head_in_the_console(
    db: Database, clock: MovableClock, people: None
) -> None:
    fail(db, add(db, "无部门的消息", clock))
    alert_pass(db, clock)
    got = sorted((m.channel, m.recipient) for m in alerts(db))
    assert got[0][0] == CONSOLE_CHANNEL and got[0][1].startswith("commissioner:")
    assert ("telegram", "8001") in got and len(got) == 2


def test_an_alert_is_never_alerted_about(db: Database, clock: MovableClock, people: None) -> None:
    fail(db, add(db, "甲", clock, department="市场监管局"))
    alert_pass(db, clock)
    for alert in alerts(db):
        fail(db, alert.id, "也发不出去")
    clock.advance(hours=5)
    report = alert_pass(db, clock)
    assert (report.failed, report.stuck, report.alerts) == (0, 0, 0)
    assert len(alerts(db)) == 2


def test_a_requeued_push_that_fails_again_is_reported_again(
    db: Database, clock: MovableClock, people: None
) -> None:
    failed = add(db, "甲", clock, department="市场监管局")
    fail(db, failed)
    alert_pass(db, clock)
    with db.begin() as session:
        requeue(session, [failed], clock(), actor="测试员")
    fail(db, failed, "又失败了")
    assert alert_pass(db, clock).alerts == 2
    assert len(alerts(db)) == 4


def test_a_stuck_push_is_reported_once_and_nobody_registered_is_counted(
    db: Database, clock: MovableClock
) -> None:
    add(db, "甲", clock)
    clock.advance(minutes=61)
    report = alert_pass(db, clock, channels=["wechat"])
    assert (report.stuck, report.alerts, report.unaddressed) == (1, 0, 1)
    assert alert_pass(db, clock, channels=["wechat"]).stuck == 0
