"""SLA settings and the tick: reminders, breaches, overdue notices, idempotency."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from handoff.calendar import SHANGHAI
from handoff.db import Database
from handoff.models import ClockKind, CommissionerRole, OutboxMessage, SlaClock
from handoff.sla import SlaSettings, TickReport, load_sla_settings, tick
from handoff.tickets import TicketService, TicketState, TicketView
from yxby.errors import ConfigError

if TYPE_CHECKING:
    from tests.conftest import MovableClock

MakeTicket = Callable[..., TicketView]

# A ticket made at START (Mon 2026-11-23 10:00): contact due Wed 11-25 24:00,
# reminded from Tue 11-24 24:00; done due Wed 12-02 24:00.
BEFORE_REMINDER = datetime(2026, 11, 24, 12, 0, tzinfo=SHANGHAI)
REMINDER_TIME = datetime(2026, 11, 25, 8, 0, tzinfo=SHANGHAI)
AFTER_CONTACT_DUE = datetime(2026, 11, 26, 8, 0, tzinfo=SHANGHAI)


def outbox(db: Database) -> list[OutboxMessage]:
    with db.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def clocks(db: Database) -> list[SlaClock]:
    with db.sessions() as session:
        return list(session.scalars(select(SlaClock).order_by(SlaClock.id)))


@pytest.fixture
def staff(make_commissioner: Callable[..., Any]) -> dict[str, Any]:
    """Two 专员 and a 负责人 at 市场监管局, a 负责人 elsewhere and two 政务办 overseers."""
    return {
        "zhuanyuan": make_commissioner("张三", "市场监管局", bindings=(("telegram", "101"),)),
        "zhuanyuan2": make_commissioner("李四", "市场监管局"),
        "head": make_commissioner(
            "王局", "市场监管局", role=CommissionerRole.HEAD, bindings=(("telegram", "201"),)
        ),
        "other_head": make_commissioner("赵局", "工信局", role=CommissionerRole.HEAD),
        "oversight": make_commissioner(
            "钱主任",
            "政务办",
            role=CommissionerRole.OVERSIGHT,
            bindings=(("telegram", "301"), ("wechat", "oW301")),
        ),
    }


# --------------------------------------------------------------------------- settings


def test_shipped_settings_follow_the_programme(sla_settings: SlaSettings) -> None:
    assert (
        sla_settings.limits.contact,
        sla_settings.limits.done,
        sla_settings.limits.feedback,
    ) == (
        2,
        7,
        2,
    )
    assert sla_settings.reminder.lead_workdays == 1
    assert sla_settings.overdue.department_roles == (CommissionerRole.HEAD,)
    assert sla_settings.overdue.oversight_roles == (CommissionerRole.OVERSIGHT,)
    assert sla_settings.limit(ClockKind.DONE) == 7
    with pytest.raises(ValueError, match="no fixed limit"):
        sla_settings.limit(ClockKind.ESCALATION)


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("limits:\n  contact: 2\n  done: 7\n  feedbak: 2\n", 4, "limits.feedbak"),
        ("limits:\n  contact: 0\n", 2, "limits.contact"),
        ("reminder:\n  lead_workdays: 2\n", 1, "shorter than the shortest limit"),
        ("overdue:\n  department_roles: [局长]\n", 2, "overdue.department_roles"),
    ],
)
def test_bad_settings_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, needle: str
) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_sla_settings(path)
    assert f"{path}:{line}" in str(info.value)
    assert needle in str(info.value)


# ------------------------------------------------------------------------------- tick


def test_nothing_happens_before_the_reminder_time(
    db: Database, make_ticket: MakeTicket, staff: dict[str, Any], sla_settings: SlaSettings
) -> None:
    make_ticket()
    assert tick(db.sessions, BEFORE_REMINDER, sla_settings) == TickReport()
    assert outbox(db) == []


def test_reminder_goes_to_the_assigned_commissioner_once(
    db: Database,
    make_ticket: MakeTicket,
    service: TicketService,
    staff: dict[str, Any],
    sla_settings: SlaSettings,
) -> None:
    ticket = make_ticket()
    service.accept(ticket.number, actor="张三", commissioner="张三")  # contact met
    report = tick(db.sessions, datetime(2026, 12, 2, 8, 0, tzinfo=SHANGHAI), sla_settings)
    assert report == TickReport(reminders=1)
    (message,) = outbox(db)
    assert (message.channel, message.recipient, message.kind) == ("telegram", "101", "sla_reminder")
    assert message.dedupe_key.startswith("remind:")
    assert message.payload["ticket"] == ticket.number
    assert message.payload["clock"] == "done"
    assert "【工单提醒】" in message.payload["text"]
    assert "2026-12-02 23:59" in message.payload["text"]
    assert tick(db.sessions, datetime(2026, 12, 2, 9, 0, tzinfo=SHANGHAI), sla_settings) == (
        TickReport()
    )
    assert len(outbox(db)) == 1
    done = next(c for c in clocks(db) if c.kind is ClockKind.DONE)
    assert done.reminded_at == datetime(2026, 12, 2, 8, 0, tzinfo=SHANGHAI)


def test_reminder_without_commissioner_goes_to_the_department(
    db: Database, make_ticket: MakeTicket, staff: dict[str, Any], sla_settings: SlaSettings
) -> None:
    make_ticket()
    report = tick(db.sessions, REMINDER_TIME, sla_settings)
    assert report.reminders == 2  # contact clock: 张三 (telegram) and 李四 (console)
    targets = {(m.channel, m.recipient) for m in outbox(db)}
    assert targets == {("telegram", "101"), ("console", f"commissioner:{staff['zhuanyuan2'].id}")}
    assert tick(db.sessions, REMINDER_TIME, sla_settings) == TickReport()


def test_breach_is_marked_and_notified_to_head_and_oversight_once(
    db: Database, make_ticket: MakeTicket, staff: dict[str, Any], sla_settings: SlaSettings
) -> None:
    ticket = make_ticket()
    report = tick(db.sessions, AFTER_CONTACT_DUE, sla_settings)
    assert report == TickReport(reminders=0, breaches=1, notices=3, unaddressed=0)
    messages = outbox(db)
    assert {(m.channel, m.recipient) for m in messages} == {
        ("telegram", "201"),  # 市场监管局 负责人
        ("telegram", "301"),  # 政务办
        ("wechat", "oW301"),
    }
    assert all(m.kind == "sla_overdue" for m in messages)
    assert all(m.dedupe_key.startswith("breach:") for m in messages)
    assert "【超时通报】" in messages[0].payload["text"]
    assert ticket.number in messages[0].payload["text"]
    contact = next(c for c in clocks(db) if c.kind is ClockKind.CONTACT)
    assert contact.breached_at == AFTER_CONTACT_DUE
    assert contact.met_at is None

    assert tick(db.sessions, AFTER_CONTACT_DUE, sla_settings) == TickReport()
    later = datetime(2026, 11, 27, 8, 0, tzinfo=SHANGHAI)
    assert tick(db.sessions, later, sla_settings) == TickReport()
    assert len(outbox(db)) == 3
    assert next(c for c in clocks(db) if c.kind is ClockKind.CONTACT).breached_at == (
        AFTER_CONTACT_DUE
    )


def test_met_and_superseded_clocks_never_breach(
    db: Database,
    make_ticket: MakeTicket,
    service: TicketService,
    clock: MovableClock,
    staff: dict[str, Any],
    sla_settings: SlaSettings,
) -> None:
    accepted = make_ticket(state=TicketState.ACCEPTED)
    moved = make_ticket()
    clock.set(datetime(2026, 11, 25, 9, 0, tzinfo=SHANGHAI))
    service.transfer(moved.number, to_department="工信局", reason="职责", actor="张三")
    # Both first contact clocks were due 11-25 24:00: one was met, one superseded by the
    # transfer, whose fresh contact clock is due 11-27 24:00.
    assert tick(db.sessions, AFTER_CONTACT_DUE, sla_settings) == TickReport()
    assert [c for c in clocks(db) if c.breached_at is not None] == []
    assert outbox(db) == []
    assert accepted.clock(ClockKind.CONTACT) is not None
    report = tick(db.sessions, datetime(2026, 11, 28, 8, 0, tzinfo=SHANGHAI), sla_settings)
    assert report.breaches == 1
    (breached,) = [c for c in clocks(db) if c.breached_at is not None]
    assert (breached.kind, breached.department, breached.active) == (
        ClockKind.CONTACT,
        "工信局",
        True,
    )


def test_breach_with_nobody_to_tell_is_counted(
    db: Database, make_ticket: MakeTicket, sla_settings: SlaSettings
) -> None:
    make_ticket()
    report = tick(db.sessions, AFTER_CONTACT_DUE, sla_settings)
    assert report == TickReport(breaches=1, notices=0, unaddressed=1)
    assert next(c for c in clocks(db) if c.kind is ClockKind.CONTACT).breached_at is not None


def test_escalation_breach_goes_to_the_meeting_lead(
    db: Database,
    make_ticket: MakeTicket,
    service: TicketService,
    staff: dict[str, Any],
    sla_settings: SlaSettings,
) -> None:
    ticket = make_ticket(state=TicketState.IN_PROGRESS)
    service.escalate(
        ticket.number, lead_department="工信局", deadline=date(2026, 12, 10), actor="政务办"
    )
    report = tick(db.sessions, datetime(2026, 12, 11, 9, 0, tzinfo=SHANGHAI), sla_settings)
    assert report.breaches == 1
    recipients = {m.recipient for m in outbox(db) if m.kind == "sla_overdue"}
    assert f"commissioner:{staff['other_head'].id}" in recipients  # 工信局 负责人
    assert "201" not in recipients  # not 市场监管局's head
    assert {"301", "oW301"} <= recipients


def test_dedupe_keys_protect_against_a_concurrent_second_pass(
    db: Database, make_ticket: MakeTicket, staff: dict[str, Any], sla_settings: SlaSettings
) -> None:
    make_ticket()
    tick(db.sessions, AFTER_CONTACT_DUE, sla_settings)
    with db.begin() as session:  # as if another worker had not seen the first pass
        for row in session.scalars(select(SlaClock)):
            row.breached_at = None
    report = tick(db.sessions, AFTER_CONTACT_DUE, sla_settings)
    assert report.breaches == 1
    assert report.notices == 0
    assert len(outbox(db)) == 3


def test_tick_needs_an_aware_time(db: Database, sla_settings: SlaSettings) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        tick(db.sessions, datetime(2026, 11, 26, 8, 0), sla_settings)


def test_report_to_dict() -> None:
    assert TickReport(1, 2, 3, 4).to_dict() == {
        "reminders": 1,
        "breaches": 2,
        "notices": 3,
        "unaddressed": 4,
        "urges_suggested": 0,
        "urges_confirmed": 0,
    }


# ----------------------------------------------------- who answers for an overdue clock


def _breach_texts(db: Database) -> set[str]:
    return {m.payload["text"] for m in outbox(db) if m.kind == "sla_overdue"}


def test_overdue_notice_names_the_ticket_commissioner(
    db: Database,
    make_ticket: MakeTicket,
    service: TicketService,
    staff: dict[str, Any],
    sla_settings: SlaSettings,
) -> None:
    ticket = make_ticket()
    service.accept(ticket.number, actor="张三", commissioner="张三")
    tick(db.sessions, datetime(2026, 12, 3, 8, 0, tzinfo=SHANGHAI), sla_settings)  # done due
    (text,) = _breach_texts(db)
    assert "责任人：专员 张三。" in text


def test_overdue_notice_without_commissioner_names_the_head(
    db: Database, make_ticket: MakeTicket, staff: dict[str, Any], sla_settings: SlaSettings
) -> None:
    make_ticket()
    tick(db.sessions, AFTER_CONTACT_DUE, sla_settings)
    (text,) = _breach_texts(db)
    assert "责任人：部门负责人 王局（未指定专员）。" in text


def test_overdue_notice_with_nobody_asks_for_an_assignment(
    db: Database,
    make_ticket: MakeTicket,
    make_commissioner: Callable[..., Any],
    sla_settings: SlaSettings,
) -> None:
    make_commissioner("钱主任", "政务办", role=CommissionerRole.OVERSIGHT)
    make_ticket()
    tick(db.sessions, AFTER_CONTACT_DUE, sla_settings)
    (text,) = _breach_texts(db)
    assert "责任人：未指定专员（请部门负责人指定）。" in text


# ----------------------------------------------------- the enterprise's overdue apology


class _Apologies:
    """Records the notifier's overdue hook."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ClockKind, datetime | None]] = []

    def overdue(
        self, session: Any, ticket: Any, clock: SlaClock, expected: datetime | None, now: datetime
    ) -> None:
        self.calls.append((ticket.number, clock.kind, expected))


def _chat_ticket(service: TicketService, db: Database) -> str:
    from handoff.models import ChannelIdentity

    with db.begin() as session:
        identity = ChannelIdentity(channel="wechat", user_key="oApology")
        session.add(identity)
        session.flush()
        identity_id = identity.id
    return service.create(
        "营业执照变更",
        department="市场监管局",
        rule="topic",
        reason="营业执照",
        actor="a",
        channel_identity_id=identity_id,
    ).number


def test_breached_done_clock_of_a_chat_ticket_apologises_once(
    service: TicketService, db: Database, sla_settings: SlaSettings, calendar: Any
) -> None:
    number = _chat_ticket(service, db)
    other = service.create("x", department="市场监管局", rule="topic", reason="y", actor="a")
    hook = _Apologies()
    tick(db.sessions, AFTER_CONTACT_DUE, sla_settings, notifier=hook, calendar=calendar)
    assert hook.calls == []  # only the contact clock is late: no apology for it
    late = datetime(2026, 12, 3, 9, 0, tzinfo=SHANGHAI)  # 办结 was due Wed 12-02 24:00
    tick(db.sessions, late, sla_settings, notifier=hook, calendar=calendar)
    tick(db.sessions, late, sla_settings, notifier=hook, calendar=calendar)
    expected = datetime(2026, 12, 7, 23, 59, 59, tzinfo=SHANGHAI)
    assert hook.calls == [(number, ClockKind.DONE, expected)]
    assert other.number not in {n for n, _, _ in hook.calls}  # no chat: nobody to apologise to


def test_apology_without_a_calendar_names_no_date(
    service: TicketService, db: Database, sla_settings: SlaSettings
) -> None:
    _chat_ticket(service, db)
    hook = _Apologies()
    late = datetime(2026, 12, 3, 9, 0, tzinfo=SHANGHAI)
    tick(db.sessions, late, sla_settings, notifier=hook)
    assert [expected for _, _, expected in hook.calls] == [None]
    assert sla_settings.overdue.apology_workdays == 2
