"""The outbox worker: sent, retried with capped backoff until the horizon, 429's
retry_after, failed with a reason, held, one sender per message with two workers at once,
order per recipient (and the waiting ones say why), timeouts resent once and then failed as
"maybe sent", alerts about failed and stuck pushes to 负责人 and 政务办, outages of both
APIs longer than the old retry cap, and nothing lost when the process dies between the
state change and the send.

Runs on SQLite, and on PostgreSQL when ``YXBY_TEST_DATABASE_URL`` is set. Time is the
injected clock; senders are in-process fakes (the Telegram sender is tested against the fake
Bot API in ``test_telegram.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.delivery import DeliveryReport, OutboxWorker
from handoff.calendar import WorkCalendar
from handoff.db import Database, open_database
from handoff.models import OutboxMessage, OutboxStatus
from handoff.outbox import (
    ALERT_KIND,
    LEASE_SECONDS,
    DeliverySettings,
    HoldForUser,
    PermanentFailure,
    RetryLater,
    SendTimedOut,
    claim,
    enqueue,
    problems,
    release_held,
)
from handoff.sla import SlaSettings
from handoff.tickets import TicketService
from routing.departments import DepartmentDirectory
from tests.conftest import START, MovableClock


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


def queue(
    db: Database,
    *texts: str,
    recipient: str = "1",
    channel: str = "telegram",
    now: datetime = START,
) -> None:
    with db.begin() as session:
        for text in texts:
            key = f"{recipient}:{text}"
            enqueue(session, channel, recipient, "t", {"text": text}, key, now=now)


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
    def make(sender: Any, settings: DeliverySettings | None = None, **kw: Any) -> OutboxWorker:
        return OutboxWorker(db.sessions, {"telegram": sender}, clock, settings, **kw)

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


def test_backoff_is_capped_and_the_last_try_is_at_the_horizon(
    db: Database, worker: Callable[..., OutboxWorker], clock: MovableClock
) -> None:
    queue(db, "甲")
    settings = DeliverySettings(horizon_hours=1, backoff_cap_seconds=300)
    w = worker(RecordingSender(*[RetryLater("502")] * 1000), settings)
    start = clock()
    waits = []
    while row(db, "甲").status is OutboxStatus.PENDING:
        once(w)
        due = row(db, "甲").next_attempt_at
        if due is None:
            break
        waits.append((due - clock()).total_seconds())
        clock.set(due)
    failed = row(db, "甲")
    assert max(waits) <= 300 and waits[-1] > 0
    assert clock() == start + timedelta(hours=1)  # the last try was exactly at the horizon
    assert failed.status is OutboxStatus.FAILED
    assert failed.last_error == f"1 小时内尝试 {failed.attempts} 次仍未送达，已放弃：502"


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
    w = worker(RecordingSender(delay=1.0), DeliverySettings(send_timeout_seconds=0.05))
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


# ------------------------------------------------------------- outages, timeouts, alerts


class Outage:
    """A sender whose API is down while ``down`` is set; records each delivery."""

    def __init__(self, channel: str, log: list[tuple[str, str, str]]) -> None:
        self.channel = channel
        self.log = log
        self.down = True

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        if self.down:
            raise RetryLater(f"{self.channel} 接口不可用（502）")
        self.log.append((self.channel, recipient, payload["text"]))


def all_rows(db: Database) -> list[OutboxMessage]:
    with db.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def alerts(db: Database) -> list[OutboxMessage]:
    return [m for m in all_rows(db) if m.kind == ALERT_KIND]


@pytest.mark.parametrize(
    ("outage", "step"),
    [(timedelta(minutes=11), timedelta(seconds=30)), (timedelta(hours=71), timedelta(minutes=30))],
    ids=["11-minutes", "3-days"],
)
def test_both_apis_down_longer_than_the_old_cap_lose_and_reorder_nothing(
    db: Database, clock: MovableClock, outage: timedelta, step: timedelta
) -> None:
    delivered: list[tuple[str, str, str]] = []
    senders = {"wechat": Outage("wechat", delivered), "telegram": Outage("telegram", delivered)}
    w = OutboxWorker(db.sessions, senders, clock, DeliverySettings())
    expected: dict[tuple[str, str], list[str]] = {}
    start = clock()
    n = 0
    while clock() - start < outage:
        if n < 18:  # 18 pushes to 6 people on both channels, queued while the APIs are down
            channel = ("wechat", "telegram")[n % 2]
            recipient = f"user-{n % 6}"
            queue(db, f"推送{n}", recipient=recipient, channel=channel, now=clock())
            expected.setdefault((channel, recipient), []).append(f"推送{n}")
            n += 1
        once(w)
        clock.advance(seconds=step.total_seconds())
    assert n == 18 and delivered == []
    assert {m.status for m in all_rows(db)} == {OutboxStatus.PENDING}  # nothing FAILED
    for sender in senders.values():
        sender.down = False
    for _ in range(5):  # recovery: every backoff has run out after the cap
        clock.advance(seconds=600)
        once(w)
    assert {m.status for m in all_rows(db)} == {OutboxStatus.SENT}
    texts = [t for _, _, t in delivered]
    assert sorted(texts) == sorted(f"推送{i}" for i in range(18))  # all, exactly once
    for (channel, recipient), wanted in expected.items():
        got = [t for c, r, t in delivered if (c, r) == (channel, recipient)]
        assert got == wanted  # order kept per recipient
    assert alerts(db) == []  # nobody registered to tell (the alerts are tested below)


def test_a_waiting_push_says_which_one_it_waits_for(
    db: Database, worker: Callable[..., OutboxWorker]
) -> None:
    queue(db, "一", "二")
    once(worker(RecordingSender(RetryLater("网络错误", after=60))))
    head, follower = row(db, "一"), row(db, "二")
    assert head.last_error == "网络错误"
    assert follower.last_error == f"等待此前的消息 #{head.id} 送达"
    assert follower.attempts == 0 and follower.status is OutboxStatus.PENDING


@pytest.fixture
def overseers(make_commissioner: Callable[..., Any]) -> None:
    """市场监管局's 负责人 on Telegram and WeChat, 政务办 on WeChat only, a plain commissioner."""
    make_commissioner(
        "王局", "市场监管局", role="负责人", bindings=(("telegram", "9001"), ("wechat", "o-head"))
    )
    make_commissioner("李督", "政务办", role="政务办", bindings=(("wechat", "o-oversight"),))
    make_commissioner("赵办", "政务办", role="政务办")  # no chat account: the console
    make_commissioner("张敏", "市场监管局", bindings=(("telegram", "7001"),))
    make_commissioner("钱局", "社发局", role="负责人", bindings=(("telegram", "9002"),))


def queue_notice(db: Database, text: str, *, channel: str = "wechat") -> None:
    with db.begin() as session:
        payload = {"text": text, "department": "市场监管局", "ref": None}
        key = f"k:{text}"
        enqueue(session, channel, "o-enterprise-1234", "ticket_result", payload, key, now=START)


def test_horizon_passed_fails_and_alerts_the_head_and_oversight_once(
    db: Database, clock: MovableClock, overseers: None
) -> None:
    delivered: list[tuple[str, str, str]] = []
    wechat, telegram = Outage("wechat", delivered), Outage("telegram", delivered)
    telegram.down = False
    w = OutboxWorker(db.sessions, {"wechat": wechat, "telegram": telegram}, clock)
    queue_notice(db, "您的工单已办结")
    start = clock()
    while clock() < start + timedelta(hours=72):
        once(w)
        if clock() < start + timedelta(hours=71, minutes=50):
            assert row(db, "您的工单已办结").status is OutboxStatus.PENDING
        clock.advance(minutes=30)  # longer than the backoff cap: one try per pass
    once(w)
    failed = row(db, "您的工单已办结")
    assert failed.status is OutboxStatus.FAILED
    assert failed.last_error is not None and failed.last_error.startswith("72 小时内尝试")
    failure_alerts = [m for m in alerts(db) if m.payload["alert"] == "failed"]
    # the 负责人 on Telegram (not the failing WeChat), 政务办 on WeChat (their only
    # account) and in the console; not the commissioner, not another department's head
    assert sorted((m.channel, m.recipient) for m in failure_alerts) == [
        ("console", f"commissioner:{_person(db, '赵办')}"),
        ("telegram", "9001"),
        ("wechat", "o-oversight"),
    ]
    text = failure_alerts[0].payload["text"]
    assert text.startswith("【推送失败】") and f"#{failed.id}" in text and "…1234" in text
    assert "o-enterprise-1234" not in text
    once(w)
    assert ("telegram", "9001", text) in delivered
    before = len(alerts(db))
    for _ in range(30):  # the alert to 政务办 on WeChat fails too: never an alert about it
        clock.advance(hours=3)
        once(w)
    assert len(alerts(db)) == before
    gone = [m for m in alerts(db) if m.status is OutboxStatus.FAILED]
    assert [(m.channel, m.payload["alert"]) for m in gone] == [
        ("wechat", "stuck"),
        ("wechat", "failed"),
    ]


def _person(db: Database, name: str) -> int:
    from handoff.models import Commissioner

    with db.sessions() as session:
        return session.scalars(select(Commissioner.id).where(Commissioner.name == name)).one()


def test_a_stuck_push_is_reported_once(db: Database, clock: MovableClock, overseers: None) -> None:
    delivered: list[tuple[str, str, str]] = []
    wechat, telegram = Outage("wechat", delivered), Outage("telegram", delivered)
    telegram.down = False
    w = OutboxWorker(db.sessions, {"wechat": wechat, "telegram": telegram}, clock)
    queue_notice(db, "进度通知")
    for _ in range(5):
        clock.advance(minutes=11)
        once(w)
    assert alerts(db) == []  # 55 minutes: not yet
    for _ in range(10):
        clock.advance(minutes=11)
        once(w)
    stuck = [m for m in alerts(db) if m.payload["alert"] == "stuck"]
    assert len(stuck) == 3  # once per person and account, however many passes ran
    assert stuck[0].payload["text"].startswith("【推送积压】")
    assert "仍在重试" in stuck[0].payload["text"]
    assert ("telegram", "9001", stuck[0].payload["text"]) in delivered
    wechat.down = False
    clock.advance(minutes=11)
    once(w)
    assert row(db, "进度通知").status is OutboxStatus.SENT
    assert len(alerts(db)) == 3


class Hanging(RecordingSender):
    """Never answers: the HTTP request went out, the reply never came."""

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        self.tries += 1
        await asyncio.Event().wait()


@pytest.mark.parametrize("how", ["hangs", "raises"])
def test_a_timeout_is_resent_once_then_failed_as_maybe_sent(
    db: Database, clock: MovableClock, overseers: None, how: str
) -> None:
    sender: RecordingSender = (
        Hanging() if how == "hangs" else RecordingSender(*[SendTimedOut("读取超时")] * 5)
    )
    settings = DeliverySettings(send_timeout_seconds=0.05)
    w = OutboxWorker(db.sessions, {"wechat": sender}, clock, settings)
    queue_notice(db, "办结通知")
    assert once(w).retried == 1
    first = row(db, "办结通知")
    assert first.timeouts == 1 and first.status is OutboxStatus.PENDING
    assert "可能已送达" in (first.last_error or "") and "将重发一次" in (first.last_error or "")
    clock.advance(minutes=10)
    assert once(w).failed == 1
    failed = row(db, "办结通知")
    assert failed.status is OutboxStatus.FAILED and failed.timeouts == 2
    assert "可能已送达" in (failed.last_error or "") and "不再重发" in (failed.last_error or "")
    assert sender.tries == 2  # the first send and one resend, never a third
    reported = [m for m in alerts(db) if m.payload["alert"] == "failed"]
    assert len(reported) == 3 and all("可能已送达" in m.payload["text"] for m in reported)
    clock.advance(hours=80)
    once(w)
    assert sender.tries == 2 + sum(m.channel == "wechat" for m in reported)
