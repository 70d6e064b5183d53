"""The assessment figures over a small known history around 中秋/国庆 2026, both backends.

Every expected value below is worked out by hand from the history in :func:`build_history`
(due times: N working days after the start, 23:59:59 Shanghai; 2026-09-25 is 中秋,
10-01…10-07 国庆, Saturday 10-10 a make-up working day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from handoff.assessment import (
    Assessment,
    AssessmentError,
    AssessmentSettings,
    Period,
    load_assessment_settings,
    parse_period,
)
from handoff.calendar import SHANGHAI
from handoff.conversations import DialogueTurn, TurnOutcome
from handoff.db import Database
from handoff.models import CallbackSurvey, ChannelIdentity, Survey, Ticket
from handoff.tickets import TicketService
from tests.conftest import MovableClock
from yxby.errors import ConfigError

A = "市场监管局"
B = "商务局"


def at(day: str, hm: str = "10:00") -> datetime:
    """A Shanghai moment: ``at("09-21", "10:00")`` is 2026-09-21 10:00."""
    return datetime.fromisoformat(f"2026-{day}T{hm}:00").replace(tzinfo=SHANGHAI)


NOW = at("12-01", "09:00")


@dataclass
class History:
    """The ticket numbers of the known history."""

    t1: str
    t2: str
    t3: str
    t4: str
    t5: str


def build_history(service: TicketService, clock: MovableClock, db: Database) -> History:
    """Five tickets and eight bot questions; ends with the clock at :data:`NOW`."""

    def create(when: datetime, dept: str, text: str, source: str = "phone") -> str:
        clock.set(when)
        return service.create(
            text, department=dept, rule="manual", reason="测试", actor="测试员", source=source
        ).number

    def do(when: datetime, action: str, number: str, **kw: object) -> None:
        clock.set(when)
        getattr(service, action)(number, actor="测试员", **kw)

    # T1 (A): everything on time; rated 满意 in September.
    t1 = create(at("09-21"), A, "营业执照变更需要哪些材料？")
    do(at("09-22", "09:00"), "accept", t1)  # contact due 09-23: on time
    do(at("09-22", "09:30"), "start", t1)
    do(at("09-29"), "resolve", t1, result="已告知材料清单")  # done due 10-08: on time
    do(at("09-30", "09:00"), "send_feedback", t1)  # feedback due 10-08: on time
    do(at("09-30", "11:00"), "record_survey", t1, result="满意")
    do(at("09-30", "12:00"), "close", t1)

    # T2 (A, 12345): late contact, late done, late feedback, 不满意 → 重办, then all on time.
    t2 = create(at("09-21", "11:00"), A, "食品经营许可证延续", source="hotline_12345")
    do(at("09-24"), "accept", t2)  # contact due 09-23: late
    do(at("09-24", "11:00"), "start", t2)
    do(at("10-09"), "resolve", t2, result="已延续")  # done due 10-08: late
    do(at("10-13", "09:00"), "send_feedback", t2)  # feedback due 10-12: late
    do(at("10-13", "11:00"), "rate", t2, result="不满意")  # reopen: contact 10-15, done 10-22
    do(at("10-14"), "accept", t2)  # on time
    do(at("10-14", "11:00"), "start", t2)
    do(at("10-20"), "resolve", t2, result="已重新办理")  # on time; feedback due 10-22
    do(at("10-21", "09:00"), "send_feedback", t2)  # on time
    do(at("10-21", "12:00"), "record_survey", t2, result="基本满意")

    # T3 (B): escalated; the meeting's deadline (商务局 leads) is met.
    t3 = create(at("09-29"), B, "跨境电商仓储用地")  # contact due 10-08, done due 10-14
    do(at("09-30"), "accept", t3)  # on time
    do(at("09-30", "11:00"), "start", t3)
    do(at("10-09"), "escalate", t3, lead_department=B, deadline=at("10-20").date())
    do(at("10-19"), "resolve", t3, result="会议协调解决")  # escalation due 10-20: on time
    do(at("10-20"), "send_feedback", t3)  # feedback due 10-21: on time

    # T4 (B): late contact, urged, done breached, resolved only in November, no feedback.
    t4 = create(at("09-30", "15:00"), B, "外贸企业出口退税进度")  # contact 10-09, done 10-15
    do(at("10-12", "09:00"), "urge", t4, note="请尽快签收", level="orange")  # 政务办's 督办
    do(at("10-12", "09:10"), "urge", t4, note="企业催问进度")  # the enterprise's 催办
    do(at("10-12"), "accept", t4)  # late
    do(at("10-12", "11:00"), "start", t4)
    do(at("11-03"), "resolve", t4, result="已退税")  # feedback due 11-05: never sent

    # T5 (A → B): transferred before its contact fell due; B handles it on time.
    t5 = create(at("10-10", "09:00"), A, "进口冷链食品备案")  # contact 10-13, done 10-20
    do(at("10-12"), "transfer", t5, to_department=B, reason="属商务局职责")  # contact → 10-14
    do(at("10-14"), "accept", t5)  # on time
    do(at("10-14", "11:00"), "start", t5)
    do(at("10-16"), "resolve", t5, result="已备案")  # A's done clock (10-20): on time
    do(at("10-19"), "send_feedback", t5)  # feedback due 10-20: on time
    do(at("10-19", "11:00"), "record_survey", t5, result="满意")

    # 政务办's phone callbacks (rows of the supervision table; T3's escalation with a lead
    # and a deadline already recorded the 联席会议's decision on 10-09).
    with db.begin() as session:
        ids = {number: tid for number, tid in session.execute(select(Ticket.number, Ticket.id))}
        session.add_all(
            [
                # T2's second 办结 (10-20): reached, reply 满意, result 不满意
                CallbackSurvey(ticket_id=ids[t2], called_at=at("10-22"), caller="周督",
                               reached=True, reply_satisfaction="满意",
                               result_satisfaction="不满意"),
                # T5 (办结 10-16): not reached on 10-20, reached on 10-21, both 基本满意
                CallbackSurvey(ticket_id=ids[t5], called_at=at("10-20"), caller="周督",
                               reached=False),
                CallbackSurvey(ticket_id=ids[t5], called_at=at("10-21"), caller="周督",
                               reached=True, reply_satisfaction="基本满意",
                               result_satisfaction="基本满意"),
                # T3 (办结 10-19) is called back only in November: not in October's 回访率
                CallbackSurvey(ticket_id=ids[t3], called_at=at("11-02"), caller="周督",
                               reached=True, reply_satisfaction="满意",
                               result_satisfaction="满意"),
            ]
        )  # fmt: skip

    # The bot's questions (one in September, seven turns in October, one not a question).
    with db.begin() as session:
        identity = ChannelIdentity(channel="terminal", user_key="assess-user")
        session.add(identity)
        session.flush()
        turns = [
            ("09-15", "answer", TurnOutcome.SOLVED, "k1", None),
            ("10-15", "answer", TurnOutcome.SOLVED, "k1", None),
            ("10-15", "answer", TurnOutcome.ANSWERED, "k2", None),
            ("10-16", "answer", TurnOutcome.TICKET, "k1", t5),
            ("10-16", "answer", TurnOutcome.UNSOLVED, "k1", None),
            ("10-17", "none", TurnOutcome.NONE, None, None),
            ("10-17", "handoff", TurnOutcome.HANDOFF, None, None),
            ("10-18", None, TurnOutcome.SMALLTALK, None, None),
        ]
        for day, action, outcome, entry, ticket in turns:
            ticket_id = None
            if ticket is not None:
                ticket_id = session.query(Ticket.id).filter(Ticket.number == ticket).scalar()
            session.add(
                DialogueTurn(
                    channel_identity_id=identity.id,
                    at=at(day),
                    state="idle",
                    text=f"问题 {day} {outcome.value}",
                    action=action,
                    entry_id=entry,
                    outcome=outcome,
                    ticket_id=ticket_id,
                )
            )
    clock.set(NOW)
    return History(t1, t2, t3, t4, t5)


@pytest.fixture
def history(service: TicketService, clock: MovableClock, db: Database) -> History:
    return build_history(service, clock, db)


@pytest.fixture
def assessment(db: Database, clock: MovableClock, departments: object) -> Assessment:
    names = [d.name for d in departments]  # type: ignore[attr-defined]
    return Assessment(db.sessions, names, AssessmentSettings(), clock=clock)


def dept(report: dict, name: str) -> dict:
    return next(r for r in report["departments"] if r["department"] == name)


SEPTEMBER = Period(at("09-01").date(), at("09-30").date())
OCTOBER = parse_period("2026-10")


def test_september(history: History, assessment: Assessment) -> None:
    report = assessment.report(SEPTEMBER)
    a, b, zone = dept(report, A), dept(report, B), report["zone"]
    assert (a["created"], b["created"], zone["created"]) == (2, 2, 4)
    assert a["created_by"] == {"phone": 1, "hotline_12345": 1}
    assert zone["created_by"] == {"phone": 3, "hotline_12345": 1}
    # contact clocks due in September: T1 on time, T2 late
    assert a["contact_on_time_rate"] == 0.5
    assert b["contact_on_time_rate"] is None
    assert zone["done_on_time_rate"] is None  # nothing fell due
    # resolved by 09-30: only T1
    assert (a["resolved_rate"], b["resolved_rate"], zone["resolved_rate"]) == (0.5, 0.0, 0.25)
    # late changes: T2 (10-09), T3 (10-19), T4 (11-03) were resolved after the period
    assert (a["resolved_after_period"], b["resolved_after_period"]) == (1, 2)
    assert a["satisfaction_rate"] == 1.0 and a["rated"] == 1 and a["unsatisfied"] == 0
    assert a["reopen_rate"] == 0.0 and a["reopened"] == 0
    assert b["reopen_rate"] is None
    assert report["bot"]["questions"] == 1 and report["bot"]["instant_resolution_rate"] == 1.0
    assert report["period"]["closed"] is True


def test_october(history: History, assessment: Assessment) -> None:
    report = assessment.report(OCTOBER)
    a, b, zone = dept(report, A), dept(report, B), report["zone"]
    # T5 was received by A but is counted where it was at the end of October: 商务局
    assert (a["created"], b["created"]) == (0, 1)
    # contact: A = T2 again (on time) → 1/1; B = T3 ✓, T4 ✗, T5 ✓ → 2/3; T5's first
    # contact clock was superseded by the transfer before it fell due and does not count
    assert a["contact_on_time_rate_counts"] == {"numerator": 1, "denominator": 1}
    assert b["contact_on_time_rate_counts"] == {"numerator": 2, "denominator": 3}
    assert zone["contact_on_time_rate"] == 0.75
    # done: A = T1 ✓, T2 ✗, T2 again ✓, T5 (clock started for A) ✓; B = T4 ✗; T3's done
    # clock was replaced by the meeting's deadline before it fell due
    assert a["done_on_time_rate_counts"] == {"numerator": 3, "denominator": 4}
    assert b["done_on_time_rate"] == 0.0
    assert zone["done_on_time_rate"] == 0.6
    # feedback: A = T1 ✓, T2 ✗, T2 again ✓; B = T3 ✓, T5 ✓
    assert a["feedback_on_time_rate_counts"] == {"numerator": 2, "denominator": 3}
    assert b["feedback_on_time_rate"] == 1.0
    assert zone["feedback_on_time_rate"] == 0.8
    assert a["resolved_rate"] is None and b["resolved_rate"] == 1.0
    # ratings: A = 不满意 + 基本满意; B = 满意
    assert (a["rated"], a["unsatisfied"], a["satisfaction_rate"]) == (2, 1, 0.5)
    assert (b["rated"], b["satisfaction_rate"]) == (1, 1.0)
    assert zone["satisfaction_rate"] == pytest.approx(2 / 3)
    # 重办: A resolved twice (T2, T2) and reopened once; B resolved T3, T5
    assert (a["reopened"], a["reopen_rate"]) == (1, 0.5)
    assert b["reopen_rate"] == 0.0
    assert b["urged"] == 2 and a["urged"] == 0
    assert b["urged_by_level"] == {"blue": 0, "orange": 1, "red": 0}
    # 回访率: A resolved T2 twice in October, one of them called back (reached) → 1/2;
    # B resolved T3 and T5, only T5 was reached in October → 1/2
    assert a["callback_rate_counts"] == {"numerator": 1, "denominator": 2}
    assert b["callback_rate"] == 0.5
    # callback answers in October: A 满意/不满意, B 基本满意/基本满意 (not reached: not counted)
    assert (a["callback_reply_rate"], a["callback_result_rate"]) == (1.0, 0.0)
    assert (b["callback_reply_rate"], b["callback_result_rate"]) == (1.0, 1.0)
    assert zone["callback_result_rate"] == 0.5
    assert b["meeting_decided"] == 1 and zone["meeting_decided"] == 1
    assert b["escalated"] == 1 and zone["escalated"] == 1
    assert b["meeting_on_time_rate"] == 1.0
    # overdue now (12-01): T4's feedback clock (due 11-05) still runs
    assert (a["overdue_now"], b["overdue_now"], zone["overdue_now"]) == (0, 1, 1)
    # score: A = (.10·1 + .25·.75 + .05·2/3 + .45·.5) / .85; B = .10·2/3 + .15 + .05 + .45
    assert a["score"] == pytest.approx(round(100 * 0.5458333 / 0.85, 2))
    assert b["score"] == pytest.approx(71.67)
    assert (b["rank"], a["rank"]) == (1, 2)
    others = [r for r in report["departments"] if r["department"] not in (A, B)]
    assert all(r["rank"] is None and r["score"] is None for r in others)
    bot = report["bot"]
    assert (bot["questions"], bot["solved_instantly"], bot["handed_off"]) == (6, 2, 2)
    assert bot["instant_resolution_rate"] == pytest.approx(1 / 3)
    assert bot["handoff_rate"] == pytest.approx(1 / 3)
    assert bot["unsolved_entries"] == [{"entry_id": "k1", "unsolved": 2}]


def test_closed_period_is_reproducible(
    service: TicketService, clock: MovableClock, db: Database, assessment: Assessment
) -> None:
    history = build_history(service, clock, db)
    early = assessment.report(SEPTEMBER, now=at("10-01", "00:00"))
    late = assessment.report(SEPTEMBER, now=NOW)
    for key in ("contact_on_time_rate", "resolved_rate", "satisfaction_rate", "score", "rank"):
        assert [r[key] for r in early["departments"]] == [r[key] for r in late["departments"]]
    # what changed since is shown apart, not folded into the period
    assert early["zone"]["resolved_after_period"] == 0
    assert late["zone"]["resolved_after_period"] == 3
    drill = assessment.drill("resolved_after_period", SEPTEMBER, department=B)
    assert sorted(r.number for r in drill.denominator) == sorted([history.t3, history.t4])


def test_drill_down_lists_the_rows_behind_a_figure(
    history: History, assessment: Assessment
) -> None:
    drill = assessment.drill("contact_on_time_rate", OCTOBER, department=B)
    assert sorted(r.number for r in drill.denominator) == sorted(
        [history.t3, history.t4, history.t5]
    )
    assert sorted(r.number for r in drill.numerator) == sorted([history.t3, history.t5])
    zone = assessment.drill("reopen_rate", OCTOBER)
    assert [r.number for r in zone.numerator] == [history.t2]
    assert len(zone.denominator) == 4
    counts = assessment.report(OCTOBER)["zone"]["created_by"]
    assert counts == {"phone": 1}


def test_month_trend(history: History, assessment: Assessment) -> None:
    trend = assessment.trend(Period(at("09-01").date(), at("10-31").date()), department=A)
    assert [m["month"] for m in trend] == ["2026-09", "2026-10"]
    assert [m["contact_on_time_rate"] for m in trend] == [0.5, 1.0]
    assert [m["satisfaction_rate"] for m in trend] == [1.0, 0.5]
    assert trend[1]["instant_resolution_rate"] == pytest.approx(1 / 3)


def test_department_filter_keeps_the_zone_and_the_rank(
    history: History, assessment: Assessment
) -> None:
    report = assessment.report(OCTOBER, department=A)
    assert [r["department"] for r in report["departments"]] == [A]
    assert report["departments"][0]["rank"] == 2
    assert report["zone"]["created"] == 1


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("2026-12", "2026-12-01", "2026-12-31"),
        ("2026q4", "2026-10-01", "2026-12-31"),
        ("2026Q1", "2026-01-01", "2026-03-31"),
        ("2026", "2026-01-01", "2026-12-31"),
        ("2026-02-03", "2026-02-03", "2026-02-03"),
        ("2028-2", "2028-02-01", "2028-02-29"),
    ],
)
def test_periods(text: str, first: str, last: str) -> None:
    period = parse_period(text)
    assert (period.first.isoformat(), period.last.isoformat()) == (first, last)


def test_period_bounds_are_shanghai_days() -> None:
    period = parse_period("2026-10")
    assert period.start.isoformat() == "2026-09-30T16:00:00+00:00"
    assert period.end.isoformat() == "2026-10-31T16:00:00+00:00"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"period": "2026-13"}, "无法识别的考核期间"),
        ({"period": "去年"}, "无法识别的考核期间"),
        ({"first": "2026-12-31", "last": "2026-12-01"}, "晚于结束日期"),
        ({"first": "2026-12-01", "last": "12/31"}, "不是有效日期"),
        ({"first": "2026-12-01"}, "同时给出"),
        ({"period": "2026", "first": "2026-01-01"}, "二选一"),
    ],
)
def test_bad_periods(kwargs: dict, message: str) -> None:
    with pytest.raises(AssessmentError, match=message):
        parse_period(**kwargs)


def test_unknown_department_and_figure(assessment: Assessment) -> None:
    with pytest.raises(AssessmentError, match="未知的部门「不存在局」"):
        assessment.report(OCTOBER, department="不存在局")
    with pytest.raises(AssessmentError, match="未知的考核指标"):
        assessment.drill("nope", OCTOBER)


def test_settings_load_and_validate(tmp_path: Path) -> None:
    settings = load_assessment_settings()
    assert sum(settings.weights.model_dump().values()) == pytest.approx(1.0)
    bad = tmp_path / "assessment.yaml"
    bad.write_text("weights:\n  satisfaction_rate: -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="satisfaction_rate"):
        load_assessment_settings(bad)
    bad.write_text("weights:\n  speed: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="speed"):
        load_assessment_settings(bad)


def test_ratings_from_an_unverified_chat_are_counted_apart(
    history: History, assessment: Assessment, db: Database
) -> None:
    """A rating from a chat not verified for the enterprise (issue 14) leaves 满意率 and the
    score, and shows in its own figure."""
    before = dept(assessment.report(SEPTEMBER), A)
    assert before["satisfaction_rate_counts"] == {"numerator": 1, "denominator": 1}
    assert before["unverified_satisfaction_rate"] is None
    with db.begin() as session:
        survey = session.scalars(
            select(Survey).where(Survey.at < at("10-01", "00:00")).order_by(Survey.at)
        ).first()
        assert survey is not None
        survey.unverified = True
    after = dept(assessment.report(SEPTEMBER), A)
    assert after["satisfaction_rate"] is None and after["rated"] == 0
    assert after["unverified_satisfaction_rate_counts"] == {"numerator": 1, "denominator": 1}
