"""Tickets: every transition, every clock, transfer, co-handling, reopen, numbers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, cast

import pytest
from sqlalchemy import func, select, update

from handoff.calendar import SHANGHAI, WorkCalendar
from handoff.db import Database
from handoff.models import ClockKind, SurveyResult, TicketEvent
from handoff.sla import SlaSettings
from handoff.tickets import (
    MANUAL_RULE,
    TRANSITIONS,
    Action,
    IllegalTransition,
    TicketNotFound,
    TicketNotifier,
    TicketRuleError,
    TicketService,
    TicketState,
    TicketView,
)
from routing.departments import DepartmentDirectory
from yxby.errors import TicketError

if TYPE_CHECKING:
    from tests.conftest import MovableClock

S = TicketState
START = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
"""Where the ``clock`` fixture stands: Monday 2026-11-23 10:00 in Shanghai."""
MakeTicket = Callable[..., TicketView]


def eod(day: date) -> datetime:
    """24:00 (23:59:59) of *day* in Shanghai."""
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=SHANGHAI)


def act(service: TicketService, action: Action, number: str) -> TicketView:
    """Perform *action* with valid arguments."""
    args: dict[str, Any] = {"actor": "李四"}
    if action is Action.RESOLVE:
        args["result"] = "已答复企业"
    elif action is Action.RECORD_SURVEY:
        args["result"] = "满意"
    elif action is Action.ESCALATE:  # 提请: on the agenda; the meeting decides later
        args |= {"reason": "涉及多部门职责"}
    elif action is Action.TRANSFER:
        args |= {"to_department": "工信局", "reason": "属工信局职责"}
    return getattr(service, _method(action))(number, **args)


def _method(action: Action) -> str:
    return {Action.ACCEPT: "accept"}.get(action, action.value)


def event_count(db: Database) -> int:
    with db.sessions() as session:
        return session.scalar(select(func.count()).select_from(TicketEvent)) or 0


# ------------------------------------------------------------------------ transitions

LEGAL = [(action, src) for action, moves in TRANSITIONS.items() for src in moves]
ILLEGAL = [(action, src) for action in TRANSITIONS for src in S if src not in TRANSITIONS[action]]


@pytest.mark.parametrize(("action", "source"), LEGAL, ids=lambda v: str(v))
def test_legal_transition(
    make_ticket: MakeTicket, service: TicketService, action: Action, source: TicketState
) -> None:
    if action is Action.TRANSFER:
        ticket = make_ticket(state=source, department="市场监管局")
    else:
        ticket = make_ticket(state=source)
    if action is Action.REOPEN:  # only after an unsatisfied callback
        ticket = make_ticket(state=S.FEEDBACK_SENT)
        service.record_survey(ticket.number, result="不满意", actor="回访员")
    after = act(service, action, ticket.number)
    assert after.state is TRANSITIONS[action][source]
    last = after.events[-1]
    assert (last.kind, last.from_state, last.to_state) == (action.value, source, after.state)
    assert last.actor == "李四"


@pytest.mark.parametrize(("action", "source"), ILLEGAL, ids=lambda v: str(v))
def test_illegal_transition(
    make_ticket: MakeTicket,
    service: TicketService,
    db: Database,
    action: Action,
    source: TicketState,
) -> None:
    ticket = make_ticket(state=source)
    before = event_count(db)
    with pytest.raises(IllegalTransition) as info:
        act(service, action, ticket.number)
    message = str(info.value)
    assert ticket.number in message
    assert f"「{source.label}」" in message
    assert action.label in message
    assert isinstance(info.value, TicketError)
    assert service.get(ticket.number).state is source
    assert event_count(db) == before


def test_illegal_transition_names_the_target_state(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    ticket = make_ticket()
    with pytest.raises(IllegalTransition, match="不能从「待签收」变为「已办结」（办结）"):
        service.resolve(ticket.number, result="好了", actor="李四")


def test_every_change_writes_exactly_one_event(make_ticket: MakeTicket, db: Database) -> None:
    view = make_ticket(state=S.CLOSED)
    kinds = [e.kind for e in view.events]
    assert kinds == [
        "create",
        "accept",
        "start",
        "resolve",
        "send_feedback",
        "record_survey",
        "close",
    ]
    assert event_count(db) == len(kinds)


def test_events_cannot_be_updated_or_deleted(make_ticket: MakeTicket, db: Database) -> None:
    make_ticket()
    with pytest.raises(TicketError, match="不可修改"), db.begin() as session:
        event = session.scalars(select(TicketEvent)).first()
        assert event is not None
        event.reason = "改写历史"
    with pytest.raises(TicketError, match="不可修改"), db.begin() as session:
        event = session.scalars(select(TicketEvent)).first()
        session.delete(event)
    assert event_count(db) == 1


# --------------------------------------------------------------------------- creation


def test_create_numbers_and_starts_contact_and_done_clocks(
    make_ticket: MakeTicket, clock: MovableClock
) -> None:
    first = make_ticket()
    second = make_ticket()
    assert first.number == "YX-20261123-0001"
    assert second.number == "YX-20261123-0002"
    clock.set(datetime(2026, 11, 24, 0, 30, tzinfo=SHANGHAI))
    assert make_ticket().number == "YX-20261124-0001"

    contact, done = first.clock(ClockKind.CONTACT), first.clock(ClockKind.DONE)
    assert contact is not None and done is not None
    assert contact.due_at == eod(date(2026, 11, 25))  # Mon + 2 working days
    assert done.due_at == eod(date(2026, 12, 2))  # Mon + 7 working days
    assert contact.started_at == START
    assert contact.remind_at == eod(date(2026, 11, 24))  # one working day before
    assert (contact.workdays, done.workdays) == (2, 7)
    assert not contact.calendar_fallback
    assert first.events[0].data["contact"]["due_at"] == "2026-11-25T23:59:59+08:00"


def test_number_uses_the_shanghai_date(make_ticket: MakeTicket, clock: MovableClock) -> None:
    clock.set(datetime(2026, 11, 23, 16, 30, tzinfo=UTC))  # already the 24th in Shanghai
    assert make_ticket().number == "YX-20261124-0001"


def test_create_records_route_decision_and_canonical_department(
    service: TicketService,
) -> None:
    view = service.create(
        "个体户办理食品经营许可证",
        department="市场局",
        rule="individual",
        reason="个体工商户",
        actor="机器人",
    )
    assert view.department == "市场监管局"
    assert (view.route_rule, view.route_reason) == ("individual", "个体工商户")
    assert view.title == "个体户办理食品经营许可证"
    assert view.state is S.NEW
    assert view.events[0].data["rule"] == "individual"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"department": "不存在局"}, "未知部门"),
        ({"rule": "guess"}, "未知的分派规则"),
        ({"reason": " "}, "分派理由不能为空"),
        ({"actor": ""}, "操作人不能为空"),
        ({"enterprise_uscc": "911201160000000011"}, "企业库中没有"),
    ],
)
def test_create_rejects_bad_input(
    service: TicketService, kwargs: dict[str, str], message: str
) -> None:
    args: dict[str, Any] = {
        "department": "市场监管局",
        "rule": MANUAL_RULE,
        "reason": "人工指定",
        "actor": "张三",
    }
    with pytest.raises(TicketError, match=message):
        service.create("有个问题", **(args | kwargs))


def test_create_rejects_empty_text(service: TicketService) -> None:
    with pytest.raises(TicketError, match="诉求内容不能为空"):
        service.create("  ", department="政务办", rule="fallback", reason="兜底", actor="机器人")


def test_create_assigns_the_enterprise_commissioner_of_that_department(
    make_ticket: MakeTicket,
    make_enterprise: Callable[..., Any],
    make_commissioner: Callable[..., Any],
) -> None:
    person = make_commissioner("王专员", "商务局")
    firm = make_enterprise(commissioner=person)
    assert make_ticket(department="商务局", enterprise=firm).commissioner == "王专员"
    other = make_ticket(department="市场监管局", enterprise=firm)
    assert other.commissioner is None
    assert other.enterprise_uscc == firm.uscc


def test_create_survives_the_2027_calendar_fallback(
    service: TicketService, clock: MovableClock
) -> None:
    clock.set(datetime(2026, 12, 28, 9, 0, tzinfo=SHANGHAI))
    view = service.create(
        "年底的诉求", department="政务办", rule="fallback", reason="兜底", actor="机器人"
    )
    done = view.clock(ClockKind.DONE)
    assert done is not None
    assert done.calendar_fallback
    assert done.due_at.astimezone(SHANGHAI).year == 2027
    assert view.events[0].data["done"]["calendar_fallback_years"] == [2027]


def test_ticket_numbers_are_unique_under_concurrent_creation(
    db: Database,
    calendar: WorkCalendar,
    sla_settings: SlaSettings,
    departments: DepartmentDirectory,
) -> None:
    service = TicketService(
        db.sessions, calendar, lambda: START, settings=sla_settings, departments=departments
    )
    numbers: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(5):
                view = service.create(
                    "并发创建", department="政务办", rule="fallback", reason="兜底", actor="t"
                )
                numbers.append(view.number)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(numbers) == [f"YX-20261123-{n:04d}" for n in range(1, 31)]


# ----------------------------------------------------------------------------- clocks


def test_accept_meets_the_contact_clock(
    make_ticket: MakeTicket, service: TicketService, clock: MovableClock
) -> None:
    ticket = make_ticket()
    clock.advance(hours=5)
    view = service.accept(ticket.number, actor="张三")
    contact = view.clock(ClockKind.CONTACT)
    assert contact is not None
    assert contact.met_at == clock.now
    assert contact.breached_at is None
    assert not contact.late
    done = view.clock(ClockKind.DONE)
    assert done is not None and done.running


def test_late_contact_is_recorded_as_a_breach(
    make_ticket: MakeTicket, service: TicketService, clock: MovableClock
) -> None:
    ticket = make_ticket()
    clock.set(datetime(2026, 11, 26, 9, 0, tzinfo=SHANGHAI))  # due was 11-25 24:00
    contact = service.accept(ticket.number, actor="张三").clock(ClockKind.CONTACT)
    assert contact is not None
    assert contact.breached_at == clock.now
    assert contact.late


def test_accept_can_name_the_commissioner(
    make_ticket: MakeTicket, service: TicketService, make_commissioner: Callable[..., Any]
) -> None:
    make_commissioner("赵六", "市场监管局")
    ticket = make_ticket()
    with pytest.raises(TicketError, match="没有名为「钱七」"):
        service.accept(ticket.number, actor="赵六", commissioner="钱七")
    assert service.accept(ticket.number, actor="赵六", commissioner="赵六").commissioner == "赵六"


def test_resolve_needs_a_result_and_starts_the_feedback_clock(
    make_ticket: MakeTicket, service: TicketService, clock: MovableClock
) -> None:
    ticket = make_ticket(state=S.IN_PROGRESS)
    with pytest.raises(TicketError, match="办理结果不能为空"):
        service.resolve(ticket.number, result=" ", actor="张三")
    clock.set(datetime(2026, 11, 27, 15, 0, tzinfo=SHANGHAI))  # Friday
    view = service.resolve(ticket.number, result="已协调解决", actor="张三")
    assert view.result == "已协调解决"
    done = next(c for c in view.clocks if c.kind is ClockKind.DONE)
    assert done.met_at == clock.now and not done.late
    feedback = view.clock(ClockKind.FEEDBACK)
    assert feedback is not None
    assert feedback.started_at == clock.now
    assert feedback.due_at == eod(date(2026, 12, 1))  # Fri + 2 working days = Tue
    view = service.send_feedback(view.number, actor="张三")
    feedback = view.clock(ClockKind.FEEDBACK)
    assert feedback is not None and feedback.met_at == clock.now


def test_clock_deadlines_skip_statutory_holidays(
    service: TicketService, clock: MovableClock
) -> None:
    clock.set(datetime(2026, 9, 29, 10, 0, tzinfo=SHANGHAI))
    view = service.create(
        "国庆前的诉求", department="政务办", rule="fallback", reason="兜底", actor="机器人"
    )
    done = view.clock(ClockKind.DONE)
    assert done is not None
    assert done.due_at == eod(date(2026, 10, 14))


def test_deadlines_are_stored_not_recomputed(
    make_ticket: MakeTicket,
    db: Database,
    clock: MovableClock,
    sla_settings: SlaSettings,
    departments: DepartmentDirectory,
) -> None:
    ticket = make_ticket()
    every_day = WorkCalendar(base=lambda day: True)  # a different calendar later on
    other = TicketService(
        db.sessions, every_day, clock, settings=sla_settings, departments=departments
    )
    view = other.accept(ticket.number, actor="张三")
    assert view.clock(ClockKind.DONE) == ticket.clock(ClockKind.DONE)
    assert view.clock(ClockKind.CONTACT).due_at == ticket.clock(ClockKind.CONTACT).due_at  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- transfer


def test_transfer_restarts_the_contact_clock(
    make_ticket: MakeTicket, service: TicketService, clock: MovableClock
) -> None:
    ticket = make_ticket(state=S.ACCEPTED)
    clock.set(datetime(2026, 11, 25, 11, 0, tzinfo=SHANGHAI))
    view = service.transfer(
        ticket.number, to_department="工信局", reason="涉及工业企业", actor="张三"
    )
    assert view.state is S.NEW
    assert view.department == "工信局"
    contacts = [c for c in view.clocks if c.kind is ClockKind.CONTACT]
    assert len(contacts) == 2
    old, new = contacts
    assert not old.active and old.superseded_at == clock.now
    assert old.met_at is not None  # the first department did make contact
    assert new.active and new.running and new.department == "工信局"
    assert new.started_at == clock.now
    assert new.due_at == eod(date(2026, 11, 27))
    done = [c for c in view.clocks if c.kind is ClockKind.DONE]
    assert len(done) == 1 and done[0].due_at == eod(date(2026, 12, 2))  # not restarted
    last = view.events[-1]
    assert last.reason == "涉及工业企业"
    assert last.data["from_department"] == "市场监管局"
    assert last.data["to_department"] == "工信局"


def test_transfer_needs_a_reason_and_another_department(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    ticket = make_ticket()
    with pytest.raises(TicketError, match="转派理由不能为空"):
        service.transfer(ticket.number, to_department="工信局", reason="", actor="张三")
    with pytest.raises(TicketError, match="无需转派"):
        service.transfer(ticket.number, to_department="市场局", reason="退回", actor="张三")


def test_transfer_hands_the_ticket_to_the_enterprise_commissioner_there(
    make_ticket: MakeTicket,
    service: TicketService,
    make_enterprise: Callable[..., Any],
    make_commissioner: Callable[..., Any],
) -> None:
    firm = make_enterprise(commissioner=make_commissioner("孙八", "工信局"))
    ticket = make_ticket(enterprise=firm)
    assert ticket.commissioner is None
    view = service.transfer(ticket.number, to_department="工信局", reason="包保", actor="张三")
    assert view.commissioner == "孙八"


# --------------------------------------------------------------------------- escalation


def test_escalation_records_lead_and_deadline(
    make_ticket: MakeTicket, service: TicketService, clock: MovableClock
) -> None:
    ticket = make_ticket(state=S.IN_PROGRESS)
    view = service.escalate(
        ticket.number,
        lead_department="发改局",
        deadline=date(2026, 12, 20),
        actor="政务办",
        reason="涉及多部门政策",
    )
    assert view.state is S.ESCALATED
    assert view.escalation_lead_department == "发改局"
    assert view.escalation_deadline == eod(date(2026, 12, 20))
    escalation = view.clock(ClockKind.ESCALATION)
    assert escalation is not None
    assert (escalation.department, escalation.due_at) == ("发改局", eod(date(2026, 12, 20)))
    assert view.clock(ClockKind.DONE) is None  # superseded by the meeting's deadline
    done = next(c for c in view.clocks if c.kind is ClockKind.DONE)
    assert done.superseded_at == clock.now and done.met_at is None
    resolved = service.resolve(ticket.number, result="会议研究解决", actor="张三")
    escalation = next(c for c in resolved.clocks if c.kind is ClockKind.ESCALATION)
    assert escalation.met_at == clock.now


def test_escalation_deadline_must_be_in_the_future(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    ticket = make_ticket(state=S.IN_PROGRESS)
    with pytest.raises(TicketError, match="已过"):
        service.escalate(
            ticket.number, lead_department="发改局", deadline=date(2026, 11, 1), actor="x"
        )
    with pytest.raises(TicketError, match="未知部门"):
        service.escalate(
            ticket.number, lead_department="火星局", deadline=date(2027, 1, 1), actor="x"
        )


# ------------------------------------------------------------------------- co-handling


def test_helpers_are_added_and_acknowledge(
    make_ticket: MakeTicket, service: TicketService, clock: MovableClock
) -> None:
    ticket = make_ticket(state=S.ACCEPTED)
    view = service.add_helpers(
        ticket.number, departments=["工信局", "规划建设局", "工信局"], actor="张三"
    )
    assert [h.department for h in view.helpers] == ["工信局", "规建局"]
    assert all(h.acknowledged_at is None for h in view.helpers)
    assert view.events[-1].data == {"departments": ["工信局", "规建局"]}
    assert view.state is S.ACCEPTED
    clock.advance(hours=2)
    view = service.acknowledge_helper(ticket.number, department="住建局", actor="周九")
    helper = next(h for h in view.helpers if h.department == "规建局")
    assert (helper.acknowledged_at, helper.acknowledged_by) == (clock.now, "周九")
    with pytest.raises(TicketError, match="已于"):
        service.acknowledge_helper(ticket.number, department="规建局", actor="周九")
    with pytest.raises(TicketError, match="不是工单"):
        service.acknowledge_helper(ticket.number, department="财政局", actor="周九")
    with pytest.raises(TicketError, match="已是本工单的协办部门"):
        service.add_helpers(ticket.number, departments=["工信局"], actor="张三")
    with pytest.raises(TicketError, match="牵头部门"):
        service.add_helpers(ticket.number, departments=["市场局"], actor="张三")


def test_helpers_cannot_join_a_resolved_ticket(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    ticket = make_ticket(state=S.RESOLVED)
    with pytest.raises(TicketError, match="不能再增加协办部门"):
        service.add_helpers(ticket.number, departments=["工信局"], actor="张三")


# ------------------------------------------------------------------------------ reopen


def test_reopen_once_with_fresh_clocks_then_second_unsatisfied_closes(
    make_ticket: MakeTicket, service: TicketService, clock: MovableClock
) -> None:
    ticket = make_ticket(state=S.FEEDBACK_SENT)
    view = service.record_survey(ticket.number, result="不满意", comment="没解决", actor="回访员")
    assert view.state is S.SURVEYED
    assert view.surveys[-1].result is SurveyResult.UNSATISFIED
    clock.set(datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI))
    view = service.reopen(ticket.number, actor="政务办", reason="企业不满意")
    assert view.state is S.NEW and view.reopen_count == 1
    assert view.result is None
    assert view.events[-1].data["previous_result"] == "已办理"
    running = view.running_clocks()
    assert {c.kind for c in running} == {ClockKind.CONTACT, ClockKind.DONE}
    assert all(c.started_at == clock.now for c in running)
    assert view.clock(ClockKind.CONTACT).due_at == eod(date(2026, 12, 2))  # type: ignore[union-attr]
    assert view.clock(ClockKind.DONE).due_at == eod(date(2026, 12, 9))  # type: ignore[union-attr]
    assert sum(1 for c in view.clocks if c.active) == 2

    for action in ("accept", "start"):
        view = getattr(service, action)(ticket.number, actor="张三")
    view = service.resolve(ticket.number, result="第二次办理", actor="张三")
    view = service.send_feedback(ticket.number, actor="张三")
    view = service.record_survey(ticket.number, result="不满意", actor="回访员")
    assert view.state is S.CLOSED
    assert [s.round for s in view.surveys] == [0, 1]
    assert view.result == "第二次办理"
    assert [e.kind for e in view.events[-2:]] == ["record_survey", "close"]
    assert view.events[-1].data["automatic"] is True
    with pytest.raises(IllegalTransition):
        service.reopen(ticket.number, actor="政务办")


def test_reopen_needs_an_unsatisfied_survey(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    ticket = make_ticket(state=S.SURVEYED)  # 满意
    with pytest.raises(TicketError, match="不是「不满意」"):
        service.reopen(ticket.number, actor="政务办")


def test_reopen_only_once(make_ticket: MakeTicket, service: TicketService, db: Database) -> None:
    ticket = make_ticket(state=S.FEEDBACK_SENT)
    service.record_survey(ticket.number, result="不满意", actor="回访员")
    # a ticket already reopened that is unsatisfied again (state forced to surveyed)
    from handoff.models import Ticket

    with db.begin() as session:
        session.execute(update(Ticket).values(reopen_count=1))
    with pytest.raises(TicketError, match="已重办过 1 次"):
        service.reopen(ticket.number, actor="政务办")


def test_unknown_survey_result(make_ticket: MakeTicket, service: TicketService) -> None:
    ticket = make_ticket(state=S.FEEDBACK_SENT)
    with pytest.raises(TicketError, match="回访结果应为"):
        service.record_survey(ticket.number, result="还行", actor="回访员")


def test_close_supersedes_anything_still_running(make_ticket: MakeTicket) -> None:
    view = make_ticket(state=S.CLOSED)
    assert not view.running_clocks()


# ------------------------------------------------------------------------------ reading


def test_get_unknown_ticket(service: TicketService) -> None:
    with pytest.raises(TicketNotFound, match="找不到工单 YX-20990101-0001"):
        service.get("YX-20990101-0001")
    with pytest.raises(TicketNotFound):
        service.accept("yx-20990101-0001", actor="x")


def test_list_filters(make_ticket: MakeTicket, service: TicketService, clock: MovableClock) -> None:
    a = make_ticket(department="市场监管局")
    b = make_ticket(state=S.ACCEPTED, department="工信局")
    c = make_ticket(state=S.CLOSED, department="工信局")
    assert [v.number for v in service.list()] == [c.number, b.number, a.number]
    assert [v.number for v in service.list(state="accepted")] == [b.number]
    assert [v.number for v in service.list(department="工业和信息化局")] == [c.number, b.number]
    assert service.list(overdue=True) == []
    clock.set(datetime(2026, 11, 26, 0, 0, 1, tzinfo=SHANGHAI))  # contact due passed
    assert [v.number for v in service.list(overdue=True)] == [a.number]
    clock.set(datetime(2026, 12, 3, 8, 0, tzinfo=SHANGHAI))  # done due passed too
    assert [v.number for v in service.list(overdue=True)] == [b.number, a.number]
    assert service.get(a.number).overdue(clock.now)
    with pytest.raises(TicketError, match="未知的工单状态"):
        service.list(state="lost")


def test_view_to_dict_is_json_ready(make_ticket: MakeTicket) -> None:
    import json

    data = make_ticket(state=S.RESOLVED).to_dict()
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data
    assert data["state"] == "resolved" and data["state_label"] == "已办结"
    assert data["clocks"][0]["due_at"].endswith("+08:00")
    assert [e["kind"] for e in data["events"]][:2] == ["create", "accept"]


def test_naive_clock_is_refused(
    db: Database,
    calendar: WorkCalendar,
    sla_settings: SlaSettings,
    departments: DepartmentDirectory,
) -> None:
    naive = TicketService(
        db.sessions,
        calendar,
        lambda: datetime(2026, 11, 23, 10),
        settings=sla_settings,
        departments=departments,
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        naive.create("x", department="政务办", rule="fallback", reason="兜底", actor="x")


# ------------------------------------------------------------ inside a caller's session


def test_changes_join_the_callers_transaction(service: TicketService, db: Database) -> None:
    from handoff.models import ChannelIdentity

    with db.sessions() as session:
        identity = ChannelIdentity(channel="wechat", user_key="oA", created_at=START)
        session.add(identity)
        session.flush()
        view = service.create(
            "想了解研发费用加计扣除",
            department="科技局",
            rule="topic",
            reason="研发",
            actor="wechat:oA",
            channel_identity_id=identity.id,
            session=session,
        )
        view = service.accept(view.number, actor="张三", session=session)
        assert service.get(view.number, session=session).state is S.ACCEPTED
        with pytest.raises(IllegalTransition):  # undoes only its own savepoint
            service.accept(view.number, actor="张三", session=session)
        assert [v.number for v in service.list(session=session)] == [view.number]
        assert service.list() == []  # nothing committed yet
        session.rollback()
    assert service.list() == []
    assert event_count(db) == 0

    with db.sessions() as session, session.begin():
        number = service.create(
            "x", department="政务办", rule="fallback", reason="兜底", actor="a", session=session
        ).number
    assert service.get(number).state is S.NEW


def test_survey_comment_is_added_to_the_latest_callback(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    ticket = make_ticket(state=S.FEEDBACK_SENT)
    with pytest.raises(TicketError, match="还没有回访记录"):
        service.add_survey_comment(ticket.number, comment="很好", actor="企业")
    service.record_survey(ticket.number, result="基本满意", actor="企业")
    view = service.add_survey_comment(ticket.number, comment="希望更快一些", actor="企业")
    assert view.surveys[-1].comment == "希望更快一些"
    assert view.state is S.SURVEYED
    last = view.events[-1]
    assert (last.kind, last.from_state, last.to_state) == ("survey_comment", S.SURVEYED, S.SURVEYED)
    view = service.add_survey_comment(ticket.number, comment="谢谢", actor="企业")
    assert view.surveys[-1].comment == "希望更快一些\n谢谢"


# ------------------------------------------------------- result pushed by the notifier


class _PushingNotifier:
    """A notifier that delivers every result to the enterprise's chat."""

    def created(self, session: Any, ticket: Any, now: datetime) -> None:
        return None

    def resolved(self, session: Any, ticket: Any, now: datetime) -> str | None:
        return "已通过平台留言告知企业"

    def accepted(self, session: Any, ticket: Any, now: datetime) -> None:
        return None


def test_a_pushed_result_meets_the_feedback_clock_it_started(
    db: Database,
    calendar: WorkCalendar,
    clock: MovableClock,
    sla_settings: SlaSettings,
    departments: DepartmentDirectory,
) -> None:
    from datetime import timedelta

    from handoff.sla import TickReport, tick

    service = TicketService(
        db.sessions,
        calendar,
        clock,
        settings=sla_settings,
        departments=departments,
        notifier=cast("TicketNotifier", _PushingNotifier()),  # only the hooks it needs
    )
    number = service.create(
        "x", department="市场监管局", rule="topic", reason="营业执照", actor="a"
    ).number
    service.accept(number, actor="张三")
    service.start(number, actor="张三")
    view = service.resolve(number, result="已办结", actor="张三")
    assert view.state is S.FEEDBACK_SENT
    assert [e.kind for e in view.events][-2:] == ["resolve", "send_feedback"]
    feedback = view.clock(ClockKind.FEEDBACK)
    assert feedback is not None
    assert feedback.met_at == clock.now
    assert not view.running_clocks()
    assert tick(db.sessions, clock.now + timedelta(days=30), sla_settings) == TickReport()


# --------------------------------------------------------- the acting commissioner


def test_accept_by_a_commissioner_makes_them_hold_the_ticket(
    make_ticket: MakeTicket, service: TicketService, make_commissioner: Callable[..., Any]
) -> None:
    person = make_commissioner("赵六", "市场监管局")
    view = service.accept(make_ticket().number, actor="赵六", commissioner_id=person.id)
    assert view.commissioner == "赵六"
    assert view.events[-1].data["commissioner"] == "赵六"


def test_the_commissioner_option_wins_over_the_acting_commissioner(
    make_ticket: MakeTicket, service: TicketService, make_commissioner: Callable[..., Any]
) -> None:
    head = make_commissioner("王局", "市场监管局", role="负责人")
    make_commissioner("赵六", "市场监管局")
    view = service.accept(
        make_ticket().number, actor="王局", commissioner="赵六", commissioner_id=head.id
    )
    assert view.commissioner == "赵六"
    data = view.events[-1].data
    assert (data["commissioner"], data["acting_commissioner"]) == ("赵六", "王局")


@pytest.mark.parametrize("action", [Action.START, Action.RESOLVE, Action.ESCALATE])
def test_acting_commissioner_claims_a_ticket_without_one(
    make_ticket: MakeTicket,
    service: TicketService,
    make_commissioner: Callable[..., Any],
    action: Action,
) -> None:
    person = make_commissioner("赵六", "市场监管局")
    ticket = make_ticket(state=S.ACCEPTED if action is Action.START else S.IN_PROGRESS)
    assert ticket.commissioner is None
    args: dict[str, Any] = {"actor": "赵六", "commissioner_id": person.id}
    if action is Action.RESOLVE:
        args["result"] = "已办结"
    elif action is Action.ESCALATE:  # 提请: on the agenda; the meeting decides later
        args |= {"reason": "涉及多部门职责"}
    view = getattr(service, action.value)(ticket.number, **args)
    assert view.commissioner == "赵六"
    assert view.events[-1].data["commissioner"] == "赵六"
    assert view.events[-1].data["assigned"] == "赵六"


def test_send_feedback_claims_and_does_not_replace_a_holder(
    make_ticket: MakeTicket, service: TicketService, make_commissioner: Callable[..., Any]
) -> None:
    holder = make_commissioner("赵六", "市场监管局")
    other = make_commissioner("钱七", "市场监管局")
    ticket = make_ticket(state=S.RESOLVED)
    view = service.send_feedback(ticket.number, actor="赵六", commissioner_id=holder.id)
    assert view.commissioner == "赵六"
    second = make_ticket(state=S.IN_PROGRESS)
    service.resolve(second.number, result="好了", actor="赵六", commissioner_id=holder.id)
    view = service.send_feedback(second.number, actor="钱七", commissioner_id=other.id)
    assert view.commissioner == "赵六"  # already held: only recorded
    assert view.events[-1].data["commissioner"] == "钱七"
    assert "assigned" not in view.events[-1].data


def test_transfer_and_helpers_only_record_the_acting_commissioner(
    make_ticket: MakeTicket, service: TicketService, make_commissioner: Callable[..., Any]
) -> None:
    person = make_commissioner("赵六", "市场监管局")
    ticket = make_ticket()
    view = service.add_helpers(
        ticket.number, departments=["财政局"], actor="赵六", commissioner_id=person.id
    )
    assert view.events[-1].data["commissioner"] == "赵六"
    view = service.transfer(
        ticket.number,
        to_department="工信局",
        reason="职责",
        actor="赵六",
        commissioner_id=person.id,
    )
    assert view.commissioner is None  # no 包保 commissioner at 工信局
    assert view.events[-1].data["commissioner"] == "赵六"


def test_an_unknown_acting_commissioner_is_refused(
    make_ticket: MakeTicket, service: TicketService, db: Database
) -> None:
    ticket = make_ticket()
    before = event_count(db)
    with pytest.raises(TicketRuleError, match="未登记或已停用") as info:
        service.accept(ticket.number, actor="x", commissioner_id=987654)
    assert (info.value.number, info.value.state) == (ticket.number, S.NEW)
    assert event_count(db) == before


# ---------------------------------------------------------------- errors with fields


def test_illegal_transition_carries_its_fields(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    ticket = make_ticket()
    with pytest.raises(IllegalTransition) as info:
        service.resolve(ticket.number, result="好了", actor="李四")
    error = info.value
    assert (error.number, error.action, error.state) == (ticket.number, Action.RESOLVE, S.NEW)
    assert error.allowed == (S.IN_PROGRESS, S.ESCALATED)


def test_not_found_carries_the_number(service: TicketService) -> None:
    with pytest.raises(TicketNotFound) as info:
        service.start("YX-20990101-0001", actor="x")
    assert info.value.number == "YX-20990101-0001"


def test_rule_refusals_carry_number_and_state(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    ticket = make_ticket(state=S.ACCEPTED)
    with pytest.raises(TicketRuleError, match="无需转派") as info:
        service.transfer(ticket.number, to_department="市场监管局", reason="x", actor="x")
    assert (info.value.number, info.value.state, info.value.action) == (
        ticket.number,
        S.ACCEPTED,
        Action.TRANSFER,
    )
    assert isinstance(info.value, TicketError)
    resolved = make_ticket(state=S.RESOLVED)
    with pytest.raises(TicketRuleError, match="不能再增加协办部门") as info:
        service.add_helpers(resolved.number, departments=["财政局"], actor="x")
    assert info.value.state is S.RESOLVED
    surveyed = make_ticket(state=S.SURVEYED)
    with pytest.raises(TicketRuleError, match="不是「不满意」") as info:
        service.reopen(surveyed.number, actor="x")
    assert (info.value.number, info.value.state) == (surveyed.number, S.SURVEYED)


# ---------------------------------------------------------------- Chinese state names


@pytest.mark.parametrize("text", ["new", " NEW ", "待签收", S.NEW])
def test_state_parse_accepts_value_and_label(text: str) -> None:
    assert TicketState.parse(text) is S.NEW


def test_state_parse_lists_the_options() -> None:
    with pytest.raises(ValueError, match="未知的工单状态「丢了」") as info:
        TicketState.parse("丢了")
    assert "待签收(new)" in str(info.value)
    assert "已关闭(closed)" in str(info.value)


def test_list_accepts_the_chinese_label(make_ticket: MakeTicket, service: TicketService) -> None:
    fresh = make_ticket()
    make_ticket(state=S.ACCEPTED)
    assert [v.number for v in service.list(state="待签收")] == [fresh.number]
    with pytest.raises(TicketError, match="待签收\\(new\\)"):
        service.list(state="lost")


def test_survey_result_parse() -> None:
    assert SurveyResult.parse(" 基本满意 ") is SurveyResult.MOSTLY_SATISFIED
    assert SurveyResult.parse("unsatisfied") is SurveyResult.UNSATISFIED
    with pytest.raises(ValueError, match="回访结果应为 满意、基本满意、不满意 之一"):
        SurveyResult.parse("还行")


# ------------------------------------------------------------------ progress and rating


def test_progress_is_an_event_without_a_state_change(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    for state in (S.NEW, S.ACCEPTED, S.IN_PROGRESS, S.ESCALATED):
        ticket = make_ticket(state=state)
        view = service.progress(ticket.number, note="  材料已送审  ", actor="张三")
        last = view.events[-1]
        assert view.state is state
        assert (last.kind, last.from_state, last.to_state, last.reason) == (
            "progress",
            state,
            state,
            "材料已送审",
        )
    assert Action.PROGRESS.label == "进度反馈" and Action.PROGRESS not in TRANSITIONS


def test_progress_needs_a_note_and_an_open_ticket(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    ticket = make_ticket(state=S.ACCEPTED)
    with pytest.raises(TicketError, match="进度说明不能为空"):
        service.progress(ticket.number, note=" ", actor="张三")
    done = make_ticket(state=S.RESOLVED)
    with pytest.raises(TicketRuleError, match="不能再反馈进度") as caught:
        service.progress(done.number, note="还在办", actor="张三")
    assert (caught.value.number, caught.value.state) == (done.number, S.RESOLVED)
    assert caught.value.action is Action.PROGRESS


def test_rate_satisfied_with_a_comment(make_ticket: MakeTicket, service: TicketService) -> None:
    ticket = make_ticket(state=S.FEEDBACK_SENT)
    rating = service.rate(ticket.number, result="满意", actor="企业", comment="很及时")
    assert rating.view.state is S.SURVEYED and not rating.reopened and not rating.closed
    assert rating.verdict is SurveyResult.SATISFIED
    assert rating.view.surveys[-1].comment == "很及时"
    assert [e.kind for e in rating.view.events][-2:] == ["record_survey", "survey_comment"]


def test_rate_unsatisfied_reopens_once_then_closes(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    ticket = make_ticket(state=S.FEEDBACK_SENT)
    first = service.rate(ticket.number, result="不满意", actor="企业", comment="没修好")
    assert first.reopened and first.view.state is S.NEW and first.view.reopen_count == 1
    assert [e.kind for e in first.view.events][-3:] == ["record_survey", "reopen", "survey_comment"]
    for action in ("accept", "start"):
        getattr(service, action)(ticket.number, actor="张三")
    service.resolve(ticket.number, result="再次修复", actor="张三")
    service.send_feedback(ticket.number, actor="张三")
    second = service.rate(ticket.number, result="不满意", actor="企业")
    assert second.closed and not second.reopened and second.view.state is S.CLOSED


def test_rate_refuses_a_ticket_not_awaiting_a_rating(
    make_ticket: MakeTicket, service: TicketService, db: Database
) -> None:
    ticket = make_ticket(state=S.SURVEYED)
    before = event_count(db)
    with pytest.raises(IllegalTransition):
        service.rate(ticket.number, result="不满意", actor="企业", comment="再评一次")
    with pytest.raises(TicketError, match="回访结果应为"):
        service.rate(ticket.number, result="还行", actor="企业")
    assert event_count(db) == before  # nothing of a refused rating is kept


def test_views_name_the_chat_account_the_ticket_came_from(
    service: TicketService, db: Database
) -> None:
    from handoff.models import ChannelIdentity

    with db.begin() as session:
        identity = ChannelIdentity(channel="wechat", user_key="oUser1")
        session.add(identity)
        session.flush()
        identity_id = identity.id
    view = service.create(
        "路灯坏了",
        department="规建局",
        rule="topic",
        reason="市政设施",
        actor="a",
        channel_identity_id=identity_id,
    )
    assert view.channel_identity_id == identity_id
    assert service.get(view.number).channel_identity_id == identity_id


def test_every_ticket_records_its_source(service: TicketService, app: Any, chat: Any) -> None:
    from handoff.models import TicketSource

    by_phone = service.create(
        "企业来电反映园区道路积水", department="规建局", rule="manual", reason="电话登记",
        actor="专员", source="电话",
    )  # fmt: skip
    assert by_phone.source is TicketSource.PHONE and by_phone.to_dict()["source_label"] == "电话"
    hotline = service.create(
        "12345 转来的诉求", department="政务办", rule="manual", reason="12345转办",
        actor="专员", source=TicketSource.HOTLINE,
    )  # fmt: skip
    assert hotline.source is TicketSource.HOTLINE
    with pytest.raises(TicketError, match="未知的诉求来源"):
        service.create(
            "x", department="政务办", rule="manual", reason="r", actor="a", source="飞鸽"
        )
    from tests.chatting import file_ticket

    number = file_ticket(chat)  # filed in the terminal chat: its channel is the source
    assert app.tickets.get(number).source is TicketSource.TERMINAL


# ------------------------------------------------- console actions: reply, note, assign …


def test_a_note_is_an_event_in_any_state_and_changes_nothing_else(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    for state in (S.NEW, S.RESOLVED, S.CLOSED):
        ticket = make_ticket(state=state)
        view = service.note(ticket.number, text="  企业电话打不通  ", actor="张三")
        last = view.events[-1]
        assert (last.kind, last.reason, last.from_state, last.to_state) == (
            "note", "企业电话打不通", state, state,
        )  # fmt: skip
        assert view.state is state
    with pytest.raises(TicketError, match="备注内容不能为空"):
        service.note(ticket.number, text=" ", actor="张三")


def test_reply_needs_a_chat_account(make_ticket: MakeTicket, service: TicketService) -> None:
    ticket = make_ticket()
    with pytest.raises(TicketRuleError, match="没有企业的对话账号") as info:
        service.reply(ticket.number, text="您好", actor="张三")
    assert info.value.action is Action.REPLY
    assert service.get(ticket.number).version == ticket.version


def test_assign_makes_a_commissioner_of_the_department_the_holder(
    make_ticket: MakeTicket, service: TicketService, make_commissioner: Callable[..., Any]
) -> None:
    head = make_commissioner("王局", "市场监管局", role="负责人")
    worker = make_commissioner("赵六", "市场监管局")
    outsider = make_commissioner("钱七", "工信局")
    ticket = make_ticket()
    view = service.assign(
        ticket.number, commissioner=worker.id, actor="王局", commissioner_id=head.id
    )
    assert view.commissioner == "赵六" and view.state is S.NEW
    data = view.events[-1].data
    assert (data["from_commissioner"], data["to_commissioner"]) == (None, "赵六")
    with pytest.raises(TicketRuleError, match="已由赵六承办"):
        service.assign(ticket.number, commissioner=worker.id, actor="王局")
    with pytest.raises(TicketRuleError, match="只能指派给市场监管局的在岗专员"):
        service.assign(ticket.number, commissioner=outsider.id, actor="王局")
    done = make_ticket(state=S.RESOLVED)
    with pytest.raises(TicketRuleError, match="不能再指派"):
        service.assign(done.number, commissioner=worker.id, actor="王局")


def test_a_helper_acknowledges_with_its_opinion(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    ticket = make_ticket(state=S.ACCEPTED)
    service.add_helpers(ticket.number, departments=["财政局", "工信局"], actor="张三")
    view = service.acknowledge_helper(
        ticket.number, department="财政局", actor="钱七", opinion=" 资金由我局统筹 "
    )
    helpers = {h.department: h for h in view.helpers}
    assert helpers["财政局"].opinion == "资金由我局统筹"
    assert helpers["财政局"].acknowledged_by == "钱七"
    assert helpers["工信局"].opinion is None and helpers["工信局"].acknowledged_at is None
    assert view.events[-1].data == {"department": "财政局", "opinion": "资金由我局统筹"}
    assert view.to_dict()["helpers"][0]["opinion"] == "资金由我局统筹"
    plain = service.acknowledge_helper(ticket.number, department="工信局", actor="孙八")
    assert {h.department: h.opinion for h in plain.helpers}["工信局"] is None


def test_resolve_with_start_passes_through_in_progress(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    ticket = make_ticket(state=S.ACCEPTED)
    view = service.resolve(ticket.number, result="已解决", actor="张三", start=True)
    assert view.state is S.RESOLVED
    assert [e.kind for e in view.events][-2:] == ["start", "resolve"]
    assert view.events[-2].reason == "办结时开始办理"
    going = make_ticket(state=S.IN_PROGRESS)
    assert service.resolve(going.number, result="好", actor="张三", start=True).events[-1].kind == (
        "resolve"
    )
    with pytest.raises(IllegalTransition):  # 签收 is still needed first
        service.resolve(make_ticket().number, result="好", actor="张三", start=True)


def test_a_stale_version_is_refused(
    make_ticket: MakeTicket, service: TicketService, db: Database
) -> None:
    from handoff.tickets import StaleTicket

    ticket = make_ticket()
    assert ticket.version == len(ticket.events) == 1
    with db.begin() as session:
        service.check_version(ticket.number, ticket.version, session=session)
    service.accept(ticket.number, actor="张三")
    with db.begin() as session, pytest.raises(StaleTicket) as info:
        service.check_version(ticket.number, ticket.version, session=session)
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert str(info.value) == "该诉求已被他人更新，请查看最新状态后再操作"


def test_possible_actions_follow_the_state(make_ticket: MakeTicket) -> None:
    from handoff.tickets import possible

    new = possible(make_ticket())
    assert {Action.ACCEPT, Action.TRANSFER, Action.PROGRESS, Action.NOTE} <= new
    assert Action.RESOLVE not in new and Action.REPLY not in new  # no chat account
    accepted = possible(make_ticket(state=S.ACCEPTED))
    assert {Action.RESOLVE, Action.START} <= accepted and Action.ACCEPT not in accepted
    assert Action.ESCALATE in possible(make_ticket(state=S.IN_PROGRESS))
    closed = possible(make_ticket(state=S.CLOSED))
    assert closed == {Action.NOTE, Action.CALLBACK}  # 政务办 may still call the enterprise
