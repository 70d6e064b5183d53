"""政务办's 督办 (levels, tick suggestions, one-click confirm), 回访调查 and the 联席会议 flow.

Every test runs on SQLite and, when configured, PostgreSQL, with the clock injected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from handoff.calendar import SHANGHAI, WorkCalendar
from handoff.db import Database
from handoff.models import (
    CallbackSurvey,
    ClockKind,
    Commissioner,
    CommissionerRole,
    MeetingItem,
    OutboxMessage,
    UrgeLevel,
)
from handoff.supervision import (
    LevelSettings,
    Supervision,
    SupervisionSettings,
    level_for,
    load_supervision_settings,
    sampled,
)
from handoff.tickets import TicketService, TicketState, TicketView
from tests.conftest import MovableClock
from yxby.errors import ConfigError, TicketError

S = TicketState
MakeTicket = Callable[..., TicketView]

BEFORE_HOLIDAY = datetime(2026, 9, 28, 10, 0, tzinfo=SHANGHAI)
"""Monday before the 2026 National Day holiday (10-01 … 10-07; Saturday 10-10 is worked)."""
CONTACT_DUE = datetime(2026, 9, 30, 23, 59, 59, tzinfo=SHANGHAI)


def at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=SHANGHAI)


@pytest.fixture
def settings() -> SupervisionSettings:
    return load_supervision_settings()


@pytest.fixture
def sup(service: TicketService, settings: SupervisionSettings) -> Supervision:
    service._supervision = settings
    return Supervision(service, settings)


def urges(view: TicketView) -> list[dict[str, Any]]:
    return [
        {"actor": e.actor, "reason": e.reason, **e.data} for e in view.events if e.kind == "urge"
    ]


# ---------------------------------------------------------------------------- levels


def test_config_defaults_and_bad_levels_name_the_key(tmp_path: Any) -> None:
    cfg = load_supervision_settings()
    assert (cfg.levels.orange, cfg.levels.red, cfg.auto_confirm) == (2, 5, False)
    bad = tmp_path / "supervision.yaml"
    bad.write_text("levels:\n  orange: 5\n  red: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="levels"):
        load_supervision_settings(bad)


@pytest.mark.parametrize(
    ("now", "level", "days"),
    [
        (datetime(2026, 9, 30, 23, 0, tzinfo=SHANGHAI), None, None),  # not yet due
        (at(date(2026, 10, 7)), UrgeLevel.BLUE, 0),  # the whole holiday counts nothing
        (at(date(2026, 10, 8)), UrgeLevel.BLUE, 1),
        (at(date(2026, 10, 9)), UrgeLevel.ORANGE, 2),
        (at(date(2026, 10, 11)), UrgeLevel.ORANGE, 3),  # Saturday 10-10 was a working day
        (at(date(2026, 10, 13)), UrgeLevel.RED, 5),
    ],
)
def test_levels_count_working_days_past_due_across_the_holiday(
    calendar: WorkCalendar, now: datetime, level: UrgeLevel | None, days: int | None
) -> None:
    found = level_for(CONTACT_DUE, now, calendar, LevelSettings())
    assert (found[0] if found else None, found[1] if found else None) == (level, days)


def test_level_names_parse_in_chinese_and_english() -> None:
    assert UrgeLevel.parse("红") is UrgeLevel.RED
    assert UrgeLevel.parse("橙色督办") is UrgeLevel.ORANGE
    assert UrgeLevel.parse("blue") is UrgeLevel.BLUE
    with pytest.raises(ValueError, match="蓝、橙、红"):
        UrgeLevel.parse("紫")


def test_a_tickets_level_is_its_earliest_overdue_clock(
    make_ticket: MakeTicket, sup: Supervision, clock: MovableClock
) -> None:
    clock.set(BEFORE_HOLIDAY)
    view = make_ticket()
    assert sup.level(view) is None
    clock.set(at(date(2026, 10, 9)))
    found = sup.level(view)
    assert found is not None and found.clock.kind is ClockKind.CONTACT
    assert found.text == "橙色督办 · 对接企业时限超期 2 个工作日"


# ----------------------------------------------------------------------- suggestions


def test_the_tick_suggests_then_raises_the_level_and_政务办_confirms(
    make_ticket: MakeTicket, sup: Supervision, service: TicketService, clock: MovableClock
) -> None:
    clock.set(BEFORE_HOLIDAY)
    view = make_ticket()
    on_time = make_ticket("另一个诉求")
    service.accept(on_time.number, actor="张敏")
    assert service.tick(at(date(2026, 9, 30))).urges_suggested == 0
    clock.set(at(date(2026, 10, 8)))
    assert service.tick().urges_suggested == 1
    assert service.tick().urges_suggested == 0  # idempotent
    (blue,) = sup.suggestions()
    assert (blue.number, blue.level, blue.days_late) == (view.number, UrgeLevel.BLUE, 1)
    assert blue.clock_kind is ClockKind.CONTACT  # the accepted ticket is not late yet
    clock.set(at(date(2026, 10, 9)))
    assert service.tick().urges_suggested == 1
    (orange,) = sup.suggestions()  # the blue one gave way
    assert orange.level is UrgeLevel.ORANGE and orange.days_late == 2
    with pytest.raises(TicketError, match="已失效"):
        sup.confirm(blue.id, actor="政务办李")
    urged = sup.confirm(orange.id, actor="政务办李")
    (event,) = urges(urged)
    assert event["level"] == "orange" and event["suggestion"] == orange.id
    assert event["actor"] == "政务办李" and "已超期 2 个工作日" in event["reason"]
    assert urged.state is S.NEW  # 督办 changes no state
    assert sup.suggestions() == []
    with pytest.raises(TicketError, match="已由政务办李"):
        sup.confirm(orange.id, actor="政务办李")
    clock.set(at(date(2026, 10, 12)))
    assert service.tick().urges_suggested == 0  # still orange: already urged
    clock.set(at(date(2026, 10, 13)))
    assert service.tick().urges_suggested == 1
    assert [s.level for s in sup.suggestions()] == [UrgeLevel.RED]


def test_a_suggestion_lapses_when_the_ticket_is_handled(
    make_ticket: MakeTicket, sup: Supervision, service: TicketService, clock: MovableClock
) -> None:
    clock.set(BEFORE_HOLIDAY)
    view = make_ticket()
    clock.set(at(date(2026, 10, 8)))
    service.tick()
    (pending,) = sup.suggestions()
    service.accept(view.number, actor="张敏")  # contact met late; done clock not yet due
    assert sup.suggestions() == []
    with pytest.raises(TicketError):
        sup.confirm(pending.id, actor="政务办")
    report = sup.suggest()
    assert (report.suggested, report.dropped) == (0, 1)


def test_auto_confirm_urges_from_the_tick(
    make_ticket: MakeTicket, service: TicketService, clock: MovableClock
) -> None:
    service._supervision = SupervisionSettings(auto_confirm=True, actor="自动督办")
    clock.set(BEFORE_HOLIDAY)
    view = make_ticket()
    clock.set(at(date(2026, 10, 13)))
    report = service.tick()
    assert (report.urges_suggested, report.urges_confirmed) == (1, 1)
    (event,) = urges(service.get(view.number))
    assert event["level"] == "red" and event["actor"] == "自动督办"
    assert service.tick().urges_confirmed == 0


def test_a_manual_urge_takes_the_suggested_level_and_covers_the_suggestion(
    make_ticket: MakeTicket, sup: Supervision, service: TicketService, clock: MovableClock
) -> None:
    clock.set(BEFORE_HOLIDAY)
    view = make_ticket()
    fresh = make_ticket("刚提交的诉求")
    clock.set(at(date(2026, 10, 9)))
    service.tick()
    assert len(sup.suggestions()) == 2
    urged = sup.urge(view.number, actor="政务办")
    assert urges(urged)[0]["level"] == "orange"
    assert [s.number for s in sup.suggestions()] == [fresh.number]
    plain = sup.urge(fresh.number, actor="政务办", level="红", note="请今天办结")
    assert urges(plain)[0] | {"reason": "请今天办结", "level": "red"} == urges(plain)[0]
    with pytest.raises(TicketError, match="督办等级"):
        sup.urge(view.number, actor="政务办", level="紫")


def test_an_urge_at_a_level_reaches_the_commissioner_and_the_head_in_wecom(
    app: App, make_commissioner: Callable[..., Commissioner], clock: MovableClock
) -> None:
    from bot.channels.wecom import WeComAdapter, WeComConfig
    from bot.delivery import OutboxWorker
    from tests.fakes.wecom_api import FakeWeComApi

    zhang = make_commissioner("张敏", "市场监管局", bindings=(("wecom", "zhangmin"),))
    make_commissioner("王局", "市场监管局", role=CommissionerRole.HEAD,
                      bindings=(("wecom", "wangju"),))  # fmt: skip
    make_commissioner("赵六", "商务局", bindings=(("wecom", "zhaoliu"),))
    view = app.tickets.create(
        "办理营业执照变更需要哪些材料？",
        department="市场监管局",
        rule="topic",
        reason="诉求涉及营业执照",
        actor="测试员",
        commissioner_id=zhang.id,
    )
    with app.db.begin() as session:  # the new-ticket notices are not what this test is about
        for row in session.scalars(select(OutboxMessage)):
            session.delete(row)
    clock.advance(days=10)
    Supervision(app.tickets).urge(view.number, actor="政务办李")
    with FakeWeComApi("corp", "secret", 1000002, users=("zhangmin", "wangju", "zhaoliu")) as api:
        config = WeComConfig(corp_id="corp", agent_id=1000002, secret="secret",
                             console_url="https://yxby.example.gov.cn", api_base=api.base_url,
                             http_timeout=2.0)  # fmt: skip
        worker = OutboxWorker(app.db.sessions, {"wecom": WeComAdapter(config).sender()}, app.clock)
        assert asyncio.run(worker.run_once()).sent == 2
        for user in ("zhangmin", "wangju"):
            (card,) = api.cards(user)
            assert card["title"] == f"【红色督办】{view.number}"
            assert "承办部门：市场监管局" in card["description"]
        assert api.cards("zhaoliu") == []


# -------------------------------------------------------------------------- callbacks


def test_a_callback_is_a_ticket_event_with_two_answers(
    make_ticket: MakeTicket, service: TicketService, sup: Supervision, db: Database
) -> None:
    view = make_ticket(state=S.FEEDBACK_SENT)
    with pytest.raises(TicketError, match="须记录"):
        service.record_callback(view.number, reached=True, actor="政务办",
                                reply_satisfaction="满意")  # fmt: skip
    with pytest.raises(TicketError, match="未接通"):
        service.record_callback(view.number, reached=False, actor="政务办",
                                reply_satisfaction="满意")  # fmt: skip
    with pytest.raises(TicketError, match="回访结果应为"):
        service.record_callback(view.number, reached=True, actor="政务办",
                                reply_satisfaction="还行", result_satisfaction="满意")  # fmt: skip
    open_one = make_ticket("还在办的诉求", state=S.IN_PROGRESS)
    with pytest.raises(TicketError, match="办结后才能回访"):
        service.record_callback(open_one.number, reached=False, actor="政务办")
    service.record_callback(view.number, reached=False, actor="政务办李", note="无人接听")
    after = service.record_callback(
        view.number,
        reached=True,
        actor="政务办李",
        reply_satisfaction="满意",
        result_satisfaction="基本满意",
        note="企业认可答复，希望加快进度",
    )
    assert after.state is S.FEEDBACK_SENT  # no state change
    event = after.events[-1]
    assert event.kind == "callback" and event.reason == "企业认可答复，希望加快进度"
    assert event.data["reply_satisfaction"] == "满意"
    assert event.data["result_satisfaction"] == "基本满意"
    rows = sup.callbacks(view.number)
    assert [(r.reached, r.reply_satisfaction, r.result_satisfaction) for r in rows] == [
        (False, None, None),
        (True, "满意", "基本满意"),
    ]
    with db.sessions() as session:
        assert session.query(CallbackSurvey).count() == 2


def test_the_callback_list_has_every_unsatisfied_and_a_reproducible_sample(
    make_ticket: MakeTicket, service: TicketService, sup: Supervision, clock: MovableClock
) -> None:
    unhappy = make_ticket("不满意的诉求", state=S.FEEDBACK_SENT)
    service.record_survey(unhappy.number, result="不满意", actor="企业")
    closed = [make_ticket(f"已结案诉求{i}", state=S.CLOSED).number for i in range(12)]
    day = clock.now.astimezone(SHANGHAI).date()
    period = f"{day}~{day}"
    everyone = sup.callback_list(day, day, percent=100)
    assert [(c.number, c.why) for c in everyone][:1] == [(unhappy.number, "不满意")]
    assert sorted(c.number for c in everyone[1:]) == sorted(closed)
    assert [c.number for c in sup.callback_list(day, day, percent=0)] == [unhappy.number]
    half = sup.callback_list(day, day, percent=50, seed="s")
    expected = [n for n in sorted(closed) if sampled(n, period, "s", 50)]
    assert [c.number for c in half[1:]] == expected and 0 < len(expected) < 12
    assert sup.callback_list(day, day, percent=50, seed="s") == half  # reproducible
    other_day = day - timedelta(days=1)
    assert sup.callback_list(other_day, other_day, percent=100) == []
    # an unanswered call keeps the ticket on the list; a reached one takes it off
    service.record_callback(unhappy.number, reached=False, actor="政务办")
    (first, *_) = sup.callback_list(day, day, percent=0)
    assert (first.number, first.attempts) == (unhappy.number, 1)
    service.record_callback(unhappy.number, reached=True, actor="政务办",
                            reply_satisfaction="不满意", result_satisfaction="不满意")  # fmt: skip
    service.record_callback(closed[0], reached=True, actor="政务办",
                            reply_satisfaction="满意", result_satisfaction="满意")  # fmt: skip
    remaining = {c.number for c in sup.callback_list(day, day, percent=100)}
    assert remaining == set(closed[1:])
    with pytest.raises(TicketError, match="0 到 100"):
        sup.callback_list(day, day, percent=120)
    with pytest.raises(TicketError, match="早于"):
        sup.callback_list(day, other_day)


# ---------------------------------------------------------------------- 联席会议


def test_escalation_waits_for_the_next_meeting_with_opinions_then_the_decision(
    make_ticket: MakeTicket, service: TicketService, sup: Supervision, clock: MovableClock
) -> None:
    first = make_ticket("跨部门的疑难诉求", state=S.IN_PROGRESS)
    service.add_helpers(first.number, departments=["商务局"], actor="张敏")
    escalated = service.escalate(first.number, actor="张敏", reason="涉及规划与招商政策")
    assert escalated.state is S.ESCALATED
    assert escalated.clock(ClockKind.DONE) is not None  # the department's clock runs on
    assert escalated.clock(ClockKind.ESCALATION) is None
    (waiting,) = sup.waiting()
    assert (waiting.number, waiting.meeting_id, waiting.reason) == (
        first.number,
        None,
        "涉及规划与招商政策",
    )
    meeting = sup.schedule(date(2026, 11, 27), doc_number="〔2026〕3号",
                           attendance=["政务办 李华", "发改局 钱七"])  # fmt: skip
    assert [i.number for i in meeting.items] == [first.number] and sup.waiting() == []
    second = make_ticket("另一个疑难诉求", state=S.IN_PROGRESS, department="商务局")
    service.escalate(second.number, actor="赵六", reason="需联席会议明确牵头")
    agenda = sup.meeting()
    assert agenda is not None and agenda.id == meeting.id
    assert [i.number for i in agenda.items] == [first.number, second.number]

    service.record_opinion(first.number, department="市场监管局", opinion="建议发改局牵头",
                           actor="张敏")  # fmt: skip
    service.record_opinion(first.number, department="商务局", opinion="同意协办", actor="赵六")
    with pytest.raises(TicketError, match="不是工单"):
        service.record_opinion(first.number, department="科技局", opinion="x", actor="x")
    item = sup.item(first.number)
    assert item is not None and item.involved == ("市场监管局", "商务局")
    assert {d: o["opinion"] for d, o in item.opinions.items()} == {
        "市场监管局": "建议发改局牵头",
        "商务局": "同意协办",
    }

    clock.advance(days=3)
    with pytest.raises(TicketError, match="已过"):
        service.decide(first.number, lead_department="发改局", deadline=date(2026, 11, 1),
                       actor="政务办")  # fmt: skip
    with pytest.raises(TicketError, match="牵头部门"):
        service.decide(first.number, lead_department="发改局", helpers=["发改局"],
                       deadline=date(2026, 12, 20), actor="政务办")  # fmt: skip
    decided = service.decide(
        first.number,
        lead_department="发改局",
        helpers=["商务局", "工信局"],
        deadline=date(2026, 12, 20),
        decision="由发改局牵头，商务局、工信局配合，12月20日前办结",
        actor="政务办李华",
    )
    escalation = decided.clock(ClockKind.ESCALATION)
    assert escalation is not None and escalation.department == "发改局"
    assert escalation.started_at == clock.now
    assert escalation.due_at == datetime(2026, 12, 20, 23, 59, 59, tzinfo=SHANGHAI)
    assert decided.clock(ClockKind.DONE) is None  # superseded by the meeting's deadline
    assert decided.escalation_lead_department == "发改局"
    assert {h.department for h in decided.helpers} == {"商务局", "工信局"}
    event = decided.events[-1]
    assert event.kind == "decide" and event.data["helpers"] == ["商务局", "工信局"]
    assert event.data["meeting_id"] == meeting.id
    with pytest.raises(TicketError, match="已于"):
        service.decide(first.number, lead_department="发改局", deadline=date(2026, 12, 21),
                       actor="政务办")  # fmt: skip
    with pytest.raises(TicketError, match="已对工单"):
        service.record_opinion(first.number, department="商务局", opinion="补充", actor="赵六")
    after = sup.item(first.number)
    assert after is not None and after.decided and after.decided_helpers == ("商务局", "工信局")
    resumed = service.start(first.number, actor="钱七", note="按会议决定办理")
    assert resumed.state is S.IN_PROGRESS
    # the new clock is the one the tick watches now
    report = service.tick(datetime(2026, 12, 21, 9, 0, tzinfo=SHANGHAI))
    assert report.breaches >= 1
    late = service.get(first.number).clock(ClockKind.ESCALATION)
    assert late is not None and late.breached_at is not None


def test_opinions_and_decisions_need_an_escalated_ticket(
    make_ticket: MakeTicket, service: TicketService
) -> None:
    view = make_ticket(state=S.IN_PROGRESS)
    with pytest.raises(TicketError, match="只有提请"):
        service.record_opinion(view.number, department="市场监管局", opinion="x", actor="x")
    with pytest.raises(TicketError, match="只能对提请"):
        service.decide(view.number, lead_department="发改局", deadline=date(2027, 1, 1),
                       actor="x")  # fmt: skip
    with pytest.raises(TicketError, match="同时给出"):
        service.escalate(view.number, actor="x", lead_department="发改局")


def test_a_past_meeting_date_is_refused_and_undecided_items_move_on(
    make_ticket: MakeTicket, service: TicketService, sup: Supervision, clock: MovableClock
) -> None:
    with pytest.raises(TicketError, match="已过"):
        sup.schedule(date(2026, 11, 1))
    view = make_ticket(state=S.IN_PROGRESS)
    service.escalate(view.number, actor="张敏", reason="疑难")
    first = sup.schedule(date(2026, 11, 24))
    clock.set(datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI))
    second = sup.schedule(date(2026, 12, 3), title="第二次联席会议")
    assert [i.number for i in second.items] == [view.number]
    again = sup.meeting(first.id)
    assert again is not None and again.items == ()
    with pytest.raises(TicketError, match="没有编号"):
        sup.meeting(9999)


def test_the_one_step_escalation_records_both_events(
    make_ticket: MakeTicket, service: TicketService, db: Database
) -> None:
    view = make_ticket(state=S.IN_PROGRESS)
    done = service.escalate(view.number, actor="政务办", reason="专题研究已议定",
                            lead_department="发改局", deadline=date(2026, 12, 20))  # fmt: skip
    assert [e.kind for e in done.events[-2:]] == ["escalate", "decide"]
    with db.sessions() as session:
        (item,) = session.scalars(select(MeetingItem))
        assert item.lead_department == "发改局" and item.decided_at is not None


def test_the_new_events_are_worded_for_staff_and_the_enterprise(
    make_ticket: MakeTicket, service: TicketService, sup: Supervision
) -> None:
    from bot.console.public import timeline
    from bot.events import describe_event

    view = make_ticket(state=S.IN_PROGRESS)
    service.escalate(view.number, actor="张敏", reason="需多部门研究")
    service.record_opinion(view.number, department="市场监管局", opinion="建议商务局牵头",
                           actor="张敏")  # fmt: skip
    service.decide(view.number, lead_department="商务局", helpers=["工信局"],
                   deadline=date(2026, 12, 20), decision="商务局牵头", actor="政务办")  # fmt: skip
    sup.urge(view.number, actor="政务办", level="橙", note="请加快")
    done = service.resolve(view.number, result="已解决", actor="钱七")
    done = service.record_callback(view.number, reached=False, actor="政务办")
    rows = {e.kind: describe_event(e) for e in done.events}
    assert rows["escalate"].detail == "列入下一次联席会议议程；理由：需多部门研究"
    assert rows["opinion"].detail == "市场监管局意见：建议商务局牵头" and rows["opinion"].internal
    assert rows["decide"].detail == (
        "牵头部门：商务局；协办部门：工信局；完成时限：2026-12-20 23:59；会议决定：商务局牵头"
    )
    assert rows["urge"].detail == "橙色督办；请加快"
    assert rows["callback"].detail == "未接通" and rows["callback"].internal
    public = {e.title: e.text for e in timeline(done)}
    assert public["已提请联席会议"] == "列入优化营商环境工作联席会议专题研究"
    assert public["联席会议已明确办理"] == "牵头部门：商务局，限期 2026年12月20日"
    assert not any("督办" in t or "回访" in t for t in public)  # internal steps stay out
