"""The outbox worker: sent, retried with backoff, 429's retry_after, failed with a reason,
held, one sender per message with two workers at once, order per recipient, and nothing
lost when the process dies between the state change and the send.

Runs on SQLite, and on PostgreSQL when ``YXBY_TEST_DATABASE_URL`` is set. Time is the
injected clock; senders are in-process fakes (the Telegram sender is tested against the fake
Bot API in ``test_telegram.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.delivery import DeliveryReport, OutboxWorker
from handoff.calendar import WorkCalendar
from handoff.db import Database, open_database
from handoff.models import OutboxMessage, OutboxStatus
from handoff.outbox import (
    LEASE_SECONDS,
    HoldForUser,
    PermanentFailure,
    RetryLater,
    claim,
    enqueue,
    problems,
    release_held,
)
from handoff.sla import SlaSettings
from handoff.tickets import TicketService
from routing.departments import DepartmentDirectory
from tests.conftest import MovableClock


class RecordingSender:
    """Remembers what it delivered; ``script`` says how the next sends fail."""

    def __init__(self, *script: Exception | None, delay: float = 0.0) -> None:
        self.script = list(script)
        self.delay = delay
        self.sent: list[tuple[str, str]] = []
        self.tries = 0

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        self.tries += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        problem = self.script.pop(0) if self.script else None
        if problem is not None:
            raise problem
        self.sent.append((recipient, payload["text"]))


def queue(db: Database, *texts: str, recipient: str = "1", channel: str = "telegram") -> None:
    with db.begin() as session:
        for text in texts:
            enqueue(session, channel, recipient, "t", {"text": text}, f"{recipient}:{text}")


def row(db: Database, text: str) -> OutboxMessage:
    with db.sessions() as session:
        for message in session.scalars(select(OutboxMessage)):
            if message.payload["text"] == text:
                return message
    raise AssertionError(f"no outbox message {text!r}")


def once(worker: OutboxWorker) -> DeliveryReport:
    return asyncio.run(worker.run_once())


@pytest.fixture
def worker(db: Database, clock: MovableClock) -> Callable[..., OutboxWorker]:
    def make(sender: Any, **kw: Any) -> OutboxWorker:
        return OutboxWorker(db.sessions, {"telegram": sender}, clock, **kw)

    return make


def test_sent_once_and_marked(db: Database, worker: Callable[..., OutboxWorker]) -> None:
    queue(db, "甲", "乙")
    sender = RecordingSender()
    w = worker(sender)
    assert once(w).sent == 2
    assert once(w).sent == 0
    assert sender.sent == [("1", "甲"), ("1", "乙")]
    sent = row(db, "甲")
    assert sent.status is OutboxStatus.SENT and sent.sent_at is not None and sent.attempts == 1


def test_only_channels_with_a_sender_are_claimed(
    db: Database, worker: Callable[..., OutboxWorker]
) -> None:
    queue(db, "微信消息", channel="wechat")
    assert once(worker(RecordingSender())).sent == 0
    assert row(db, "微信消息").status is OutboxStatus.PENDING


def test_transient_failure_retries_with_exponential_backoff(
    db: Database, worker: Callable[..., OutboxWorker], clock: MovableClock
) -> None:
    queue(db, "甲")
    sender = RecordingSender(RetryLater("网络错误"), RetryLater("网络错误"))
    w = worker(sender)
    assert once(w).retried == 1
    first = row(db, "甲")
    assert first.last_error == "网络错误" and first.status is OutboxStatus.PENDING
    delay = (first.next_attempt_at - clock()).total_seconds()  # type: ignore[operator]
    assert 0.8 <= delay <= 1.2  # base**0, with jitter
    assert once(w).retried == 0  # not due yet
    clock.advance(seconds=1.3)
    assert once(w).retried == 1
    delay = (row(db, "甲").next_attempt_at - clock()).total_seconds()  # type: ignore[operator]
    assert 1.6 <= delay <= 2.4  # base**1
    clock.advance(seconds=2.5)
    assert once(w).sent == 1
    assert sender.tries == 3 and row(db, "甲").status is OutboxStatus.SENT


def test_rate_limit_waits_exactly_retry_after(
    db: Database, worker: Callable[..., OutboxWorker], clock: MovableClock
) -> None:
    queue(db, "甲")
    sender = RecordingSender(RetryLater("Telegram 限流（429）", after=42))
    w = worker(sender)
    once(w)
    assert row(db, "甲").next_attempt_at == clock() + timedelta(seconds=42)
    clock.advance(seconds=41)
    once(w)
    assert sender.tries == 1  # not before retry_after
    clock.advance(seconds=1)
    assert once(w).sent == 1 and sender.tries == 2


def test_permanent_failure_is_kept_with_its_reason(
    db: Database, worker: Callable[..., OutboxWorker]
) -> None:
    queue(db, "甲", "乙")
    w = worker(RecordingSender(PermanentFailure("用户已屏蔽机器人")))
    report = once(w)
    assert (report.failed, report.sent) == (1, 1)  # the next one to that chat still goes
    failed = row(db, "甲")
    assert failed.status is OutboxStatus.FAILED and failed.last_error == "用户已屏蔽机器人"
    with db.sessions() as session:
        assert [m.payload["text"] for m in problems(session)] == ["甲"]


def test_too_many_retries_end_as_a_failure(
    db: Database, worker: Callable[..., OutboxWorker], clock: MovableClock
) -> None:
    queue(db, "甲")
    w = worker(RecordingSender(*[RetryLater("502")] * 5), max_attempts=3)
    for _ in range(3):
        once(w)
        clock.advance(minutes=10)
    failed = row(db, "甲")
    assert failed.status is OutboxStatus.FAILED and failed.last_error == "重试 3 次后仍失败：502"


def test_held_until_the_user_writes_again(
    db: Database, worker: Callable[..., OutboxWorker]
) -> None:
    queue(db, "甲")
    sender = RecordingSender(HoldForUser("超过 48 小时客服消息窗口"))
    w = worker(sender)
    assert once(w).held == 1
    assert once(w).held == 0 and row(db, "甲").status is OutboxStatus.HELD
    with db.begin() as session:
        assert release_held(session, "telegram", "1") == 1
    assert once(w).sent == 1


def test_a_sender_that_hangs_is_retried(db: Database, worker: Callable[..., OutboxWorker]) -> None:
    queue(db, "甲")
    w = worker(RecordingSender(delay=1.0), send_timeout=0.05)
    assert once(w).retried == 1
    assert "超时" in (row(db, "甲").last_error or "")


def test_a_buggy_sender_does_not_stop_the_rest(
    db: Database, worker: Callable[..., OutboxWorker]
) -> None:
    queue(db, "甲")
    queue(db, "乙", recipient="2")
    report = once(worker(RecordingSender(RuntimeError("bug"))))
    assert (report.retried, report.sent) == (1, 1)
    assert "RuntimeError: bug" in (row(db, "甲").last_error or "")


def test_pushes_to_one_recipient_keep_their_order(
    db: Database, worker: Callable[..., OutboxWorker], clock: MovableClock
) -> None:
    queue(db, "一", "二", "三")
    queue(db, "别人的", recipient="2")
    sender = RecordingSender(RetryLater("网络错误", after=10))
    w = worker(sender)
    report = once(w)
    assert (report.retried, report.deferred, report.sent) == (1, 2, 1)
    assert sender.sent == [("2", "别人的")]
    assert row(db, "二").attempts == 0  # waiting behind 一 is not an attempt
    queue(db, "四")  # new, due at once — but 一 is still waiting
    assert once(w).sent == 0
    clock.advance(seconds=10)
    assert once(w).sent == 4
    assert [t for r, t in sender.sent if r == "1"] == ["一", "二", "三", "四"]


def test_a_push_waits_behind_an_older_one_another_worker_is_claiming(
    db: Database, clock: MovableClock
) -> None:
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): no second claim meanwhile")
    queue(db, "一", "二")
    first = db.sessions()
    try:
        with first.begin():
            [taken] = claim(first, clock(), limit=1)  # leased, not yet committed
            first.flush()
            assert taken.payload["text"] == "一"
            with db.begin() as second:  # another worker meanwhile sees 一 still due
                assert claim(second, clock()) == []  # 二 must not overtake it
    finally:
        first.close()
    assert row(db, "二").attempts == 0


def test_a_retry_keeps_the_progress_the_sender_recorded(
    db: Database, worker: Callable[..., OutboxWorker], clock: MovableClock
) -> None:
    class PartialSender(RecordingSender):
        async def send(self, recipient: str, payload: dict[str, Any]) -> None:
            self.tries += 1
            if self.tries == 1:
                payload["parts_sent"] = 2  # two parts went out, then the channel failed
                raise RetryLater("网络错误", after=5)
            self.sent.append((recipient, f"{payload['text']}@{payload.get('parts_sent')}"))

    queue(db, "甲")
    sender = PartialSender()
    w = worker(sender)
    assert once(w).retried == 1
    assert row(db, "甲").payload == {"text": "甲", "parts_sent": 2}
    clock.advance(seconds=5)
    assert once(w).sent == 1 and sender.sent == [("1", "甲@2")]


def test_two_workers_at_once_send_each_message_once(
    db: Database, worker: Callable[..., OutboxWorker]
) -> None:
    texts = [f"消息{i}" for i in range(30)]
    for i, text in enumerate(texts):
        queue(db, text, recipient=str(i % 7))
    first, second = RecordingSender(delay=0.005), RecordingSender(delay=0.005)
    workers = [worker(first, batch=4), worker(second, batch=4)]

    async def both() -> None:
        for _ in range(20):
            reports = await asyncio.gather(*(w.run_once() for w in workers))
            if not any(r.sent for r in reports):
                return

    asyncio.run(both())
    delivered = [t for _, t in first.sent + second.sent]
    assert sorted(delivered) == sorted(texts)  # every one, none twice
    assert first.sent and second.sent  # both really worked
    with db.sessions() as session:
        assert {m.attempts for m in session.scalars(select(OutboxMessage))} == {1}


def test_crash_between_the_state_change_and_the_send_loses_nothing(
    db_url: str,
    db: Database,
    calendar: WorkCalendar,
    sla_settings: SlaSettings,
    make_commissioner: Callable[..., Any],
    clock: MovableClock,
    departments: DepartmentDirectory,
) -> None:
    from bot.notify import Notifier
    from bot.replies import load_replies

    make_commissioner("张敏", "市场监管局", bindings=(("telegram", "7001"),))
    service = TicketService(
        db.sessions,
        calendar,
        clock,
        settings=sla_settings,
        departments=departments,
        notifier=Notifier(load_replies(), clock),
    )
    view = service.create(
        "营业执照丢了怎么补办",
        department="市场监管局",
        rule="topic",
        reason="营业执照",
        actor="测试",
    )  # the ticket and its notice commit together; the process "dies" before any send
    db.engine.dispose()

    restarted = open_database(db_url)
    try:
        sender = RecordingSender()
        w = OutboxWorker(restarted.sessions, {"telegram": sender}, clock)
        assert once(w).sent == 1
        assert once(w).sent == 0
        assert len(sender.sent) == 1 and view.number in sender.sent[0][1]
    finally:
        restarted.dispose()


def test_a_worker_dying_after_its_claim_leaves_the_message_to_another(
    db: Database, worker: Callable[..., OutboxWorker], clock: MovableClock
) -> None:
    queue(db, "甲")
    dead = worker(RecordingSender())
    dead._claim()  # claimed, then the process died before sending
    survivor_sender = RecordingSender()
    survivor = worker(survivor_sender)
    assert once(survivor).sent == 0  # the lease still holds
    clock.advance(seconds=LEASE_SECONDS + 1)
    assert once(survivor).sent == 1
    assert once(survivor).sent == 0
    assert survivor_sender.sent == [("1", "甲")]


def test_run_stops_when_told(db: Database, worker: Callable[..., OutboxWorker]) -> None:
    queue(db, "甲")
    sender = RecordingSender()
    w = worker(sender)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(w.run(stop, interval=0.01))
        for _ in range(500):
            if sender.sent:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(main())
    assert sender.sent == [("1", "甲")] and w.passes >= 1
