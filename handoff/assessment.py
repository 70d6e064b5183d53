"""政务办's assessment figures (考核): per department and for the whole zone, any period.

Every figure is a count of *rows* (tickets, clocks, events, ratings) chosen by a cohort
rule, or a rate ``numerator / denominator`` of two such row sets. Each figure's rows are
defined once (:data:`FIGURES`, a ``select`` per role) and used twice: aggregated for the
report (one ``UNION ALL … GROUP BY`` query for all figures) and listed for the drill-down
(:meth:`Assessment.drill`), so a number and the tickets behind it never disagree.

Cohort rules (``docs/assessment.md`` has the full text) make a closed period reproducible:
every row is judged only by what was recorded up to the period's end (``cut`` =
min(period end, now)), and rows are tied to the period by a time that never changes once
written (a clock's due time, an event's time, a rating's time). What happens later to a
period's cohort is shown apart (``late``: e.g. tickets of the period resolved after it).

Nothing here writes. Timestamps are compared in UTC; periods are Asia/Shanghai days.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from sqlalchemy import (
    Integer,
    Select,
    String,
    and_,
    case,
    exists,
    func,
    literal,
    null,
    or_,
    select,
)
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from handoff.calendar import SHANGHAI
from handoff.conversations import DialogueTurn, TurnOutcome
from handoff.models import (
    CallbackSurvey,
    ClockKind,
    MeetingItem,
    SlaClock,
    Survey,
    SurveyResult,
    Ticket,
    TicketEvent,
    TicketSource,
)
from yxby.errors import YxbyError
from yxby.paths import config_dir
from yxby.yamlconf import StrictModel, load_model

__all__ = [
    "FIGURES",
    "RATES",
    "Assessment",
    "AssessmentError",
    "AssessmentSettings",
    "DrillDown",
    "DrillRow",
    "Figure",
    "Period",
    "load_assessment_settings",
    "parse_period",
]

SATISFIED = (SurveyResult.SATISFIED.value, SurveyResult.MOSTLY_SATISFIED.value)
QUESTION_ACTIONS = ("answer", "suggest", "none", "handoff")
"""``dialogue_turn.action`` of a turn the knowledge base was asked about (a question)."""
SOLVED_OUTCOMES = (TurnOutcome.SOLVED, TurnOutcome.ANSWERED)
"""Answered, and confirmed 已解决 or not followed by a ticket or a person: 即时解决."""
HANDOFF_OUTCOMES = (TurnOutcome.TICKET, TurnOutcome.HANDOFF)
UNSOLVED_OUTCOMES = (TurnOutcome.UNSOLVED, TurnOutcome.TICKET)
URGE_LEVELS = ("blue", "orange", "red")
URGE_LABELS = {"blue": "蓝色督办", "orange": "橙色督办", "red": "红色督办"}


class AssessmentError(YxbyError):
    """Bad input to the assessment (period, department, figure): one Chinese line."""


# -- settings


class Weights(StrictModel):
    """Weights of the composite score (any non-negative numbers; they are normalised)."""

    contact_on_time_rate: float = Field(default=0.10, ge=0, le=100)
    done_on_time_rate: float = Field(default=0.25, ge=0, le=100)
    resolved_rate: float = Field(default=0.15, ge=0, le=100)
    feedback_on_time_rate: float = Field(default=0.05, ge=0, le=100)
    satisfaction_rate: float = Field(default=0.45, ge=0, le=100)

    @model_validator(mode="after")
    def _some_weight(self) -> Weights:
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("at least one weight must be greater than 0")
        return self


class AssessmentSettings(StrictModel):
    """The whole ``config/assessment.yaml``."""

    weights: Weights = Weights()
    reopen_penalty: float = Field(default=0, ge=0, le=100)
    min_cases_to_rank: int = Field(default=1, ge=0, le=100000)
    """Rows under the weighted rates (clocks due, tickets received, ratings) a department
    needs in the period to be ranked."""
    top_unsolved_entries: int = Field(default=10, ge=1, le=100)


def load_assessment_settings(path: Path | None = None) -> AssessmentSettings:
    """Load ``config/assessment.yaml`` (or *path*); ``ConfigError`` naming the bad key."""
    return load_model(path or config_dir() / "assessment.yaml", AssessmentSettings)


# -- periods


@dataclass(frozen=True)
class Period:
    """Shanghai calendar days ``first`` … ``last`` (inclusive)."""

    first: date
    last: date
    label: str = ""

    def __post_init__(self) -> None:
        if self.first > self.last:
            raise AssessmentError(f"起始日期 {self.first} 晚于结束日期 {self.last}")
        if not self.label:
            object.__setattr__(self, "label", f"{self.first} 至 {self.last}")

    @property
    def start(self) -> datetime:
        """The first instant (UTC)."""
        return datetime.combine(self.first, datetime.min.time(), SHANGHAI).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The instant after the last day (UTC, exclusive)."""
        after = self.last + timedelta(days=1)
        return datetime.combine(after, datetime.min.time(), SHANGHAI).astimezone(UTC)

    def cut(self, now: datetime) -> datetime:
        """Where the period's evidence stops: its end, or *now* while it runs."""
        return min(self.end, now)

    def closed(self, now: datetime) -> bool:
        """Whether the period is over at *now*."""
        return now >= self.end

    def months(self) -> list[Period]:
        """The calendar months overlapping the period, each clipped to it."""
        out = []
        year, month = self.first.year, self.first.month
        while date(year, month, 1) <= self.last:
            nxt = date(year + month // 12, month % 12 + 1, 1)
            first = max(self.first, date(year, month, 1))
            last = min(self.last, nxt - timedelta(days=1))
            out.append(Period(first, last, f"{year}-{month:02d}"))
            year, month = nxt.year, nxt.month
        return out

    def to_dict(self) -> dict[str, Any]:
        """For JSON."""
        return {
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "label": self.label,
            "timezone": "Asia/Shanghai",
        }


_PERIOD_FORMS = "YYYY-MM-DD（日）、YYYY-MM（月）、YYYYQn（季度，如 2026Q4）或 YYYY（年）"


def _day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise AssessmentError(f"{what}「{text}」不是有效日期，应为 YYYY-MM-DD") from None


def parse_period(
    period: str | None = None, *, first: str | None = None, last: str | None = None
) -> Period:
    """A period from ``--period`` (day, month, quarter, year) or ``--from``/``--to``."""
    if period is not None and (first is not None or last is not None):
        raise AssessmentError("--period 与 --from/--to 只能二选一")
    if period is None:
        if first is None or last is None:
            raise AssessmentError("请给出 --period，或同时给出 --from 与 --to")
        return Period(_day(first, "起始日期"), _day(last, "结束日期"))
    text = period.strip().upper()
    try:
        if m := re.fullmatch(r"(\d{4})", text):
            year = int(m[1])
            return Period(date(year, 1, 1), date(year, 12, 31), f"{year}年")
        if m := re.fullmatch(r"(\d{4})Q([1-4])", text):
            year, q = int(m[1]), int(m[2])
            start = date(year, 3 * q - 2, 1)
            end = date(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1) - timedelta(days=1)
            return Period(start, end, f"{year}年第{q}季度")
        if m := re.fullmatch(r"(\d{4})-(\d{1,2})", text):
            year, month = int(m[1]), int(m[2])
            start = date(year, month, 1)
            end = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
            return Period(start, end, f"{year}年{month}月")
        if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", text):
            day = date.fromisoformat(
                "-".join(p.zfill(2) if i else p for i, p in enumerate(text.split("-")))
            )
            return Period(day, day, day.isoformat())
    except ValueError:
        pass
    raise AssessmentError(f"无法识别的考核期间「{period}」，应为 {_PERIOD_FORMS}")


# -- figures


@dataclass(frozen=True)
class Ctx:
    """What a figure's row query depends on."""

    period: Period
    now: datetime

    @property
    def start(self) -> datetime:
        return self.period.start

    @property
    def cut(self) -> datetime:
        return self.period.cut(self.now)


RowQuery = Callable[[Ctx], Select[Any]]
"""Rows ``(ticket_id, department, at, note, hit)`` of a figure: ``hit`` is 1 for the rows
that also count in the figure's numerator (when the numerator is a subset of the rows)."""

HIT = "hit"
"""A figure whose numerator is the rows of its denominator with ``hit = 1``."""


@dataclass(frozen=True)
class Figure:
    """One figure: a count (rows of ``rows``) or a rate (numerator / those rows)."""

    key: str
    label: str
    rate: bool
    rows: RowQuery
    numerator: RowQuery | str | None = None
    """:data:`HIT`, or rows of their own (e.g. 重办 events over 办结 events)."""
    denominator_label: str = ""
    numerator_label: str = ""
    definition: str = ""
    by_note: dict[str, str] = field(default_factory=dict)
    """Labels of the ``note`` values counted separately (source, level, result)."""
    columns: tuple[str, str] = ("时间", "备注")
    """What a row's ``at`` and ``note`` are, for the drill-down's headers."""


def _dept_as_of(moment: datetime) -> tuple[Any, ColumnElement[str]]:
    """(join target, department expression): a ticket's lead department at *moment*.

    That is the ``from_department`` of its first 转派 after *moment*, or its department
    now when it was not transferred since; transfers are rare, so this stays cheap.
    """
    earlier = aliased(TicketEvent)
    first_after = (
        select(
            TicketEvent.ticket_id.label("ticket_id"),
            TicketEvent.data["from_department"].as_string().label("department"),
        )
        .where(
            TicketEvent.kind == "transfer",
            TicketEvent.at >= moment,
            ~select(earlier.id)
            .where(
                earlier.ticket_id == TicketEvent.ticket_id,
                earlier.kind == "transfer",
                earlier.at >= moment,
                earlier.id < TicketEvent.id,
            )
            .correlate(TicketEvent)
            .exists(),
        )
        .subquery("later_transfer")
    )
    joined = Ticket.__table__.outerjoin(first_after, first_after.c.ticket_id == Ticket.id)
    department = func.coalesce(first_after.c.department, Ticket.department)
    return joined, department


def _flag(condition: ColumnElement[bool] | None) -> ColumnElement[int]:
    if condition is None:
        return literal(0, Integer)
    return case((condition, 1), else_=0)


def _rows(
    ticket_id: Any,
    department: Any,
    at: Any,
    note: Any = None,
    hit: ColumnElement[bool] | None = None,
) -> list[ColumnElement[Any]]:
    return [
        ticket_id.label("ticket_id"),
        department.label("department"),
        at.label("at"),
        (note if note is not None else null()).label("note"),
        _flag(hit).label("hit"),
    ]


def _event_exists(kind: str, ticket: Any, after: Any, before: datetime) -> ColumnElement[bool]:
    return exists().where(
        TicketEvent.ticket_id == ticket,
        TicketEvent.kind == kind,
        TicketEvent.at >= after,
        TicketEvent.at < before,
    )


def _resolving(after: datetime, before: datetime, name: str) -> Any:
    """Tickets with a 办结 event in ``[after, before)`` (one row each)."""
    return (
        select(TicketEvent.ticket_id)
        .where(TicketEvent.kind == "resolve", TicketEvent.at >= after, TicketEvent.at < before)
        .group_by(TicketEvent.ticket_id)
        .subquery(name)
    )


def _created(ctx: Ctx) -> Select[Any]:
    """Tickets received in the period; hit: resolved before the period's end."""
    joined, dept = _dept_as_of(ctx.cut)
    resolved = _resolving(ctx.start, ctx.cut, "resolved_by_cut")
    return (
        select(
            *_rows(
                Ticket.id, dept, Ticket.created_at, Ticket.source, resolved.c.ticket_id.is_not(None)
            )
        )
        .select_from(joined.outerjoin(resolved, resolved.c.ticket_id == Ticket.id))
        .where(Ticket.created_at >= ctx.start, Ticket.created_at < ctx.cut)
    )


def _resolved_after(ctx: Ctx) -> Select[Any]:
    """Tickets received in the period, not resolved by its end, resolved since."""
    joined, dept = _dept_as_of(ctx.cut)
    resolved = _resolving(ctx.start, ctx.cut, "resolved_by_cut")
    later = _resolving(ctx.cut, ctx.now, "resolved_later")
    return (
        select(*_rows(Ticket.id, dept, Ticket.created_at))
        .select_from(
            joined.outerjoin(resolved, resolved.c.ticket_id == Ticket.id).join(
                later, later.c.ticket_id == Ticket.id
            )
        )
        .where(
            Ticket.created_at >= ctx.start,
            Ticket.created_at < ctx.cut,
            resolved.c.ticket_id.is_(None),
        )
    )


@dataclass(frozen=True)
class Family:
    """Row queries that differ only by one value (a clock's kind, an event's kind): the
    report reads all members in one pass, grouped by ``member``."""

    name: str
    build: Callable[[Ctx, tuple[str, ...]], Select[Any]]
    """Rows of the given members, with a ``member`` column."""


def _member(family: Family, member: str) -> RowQuery:
    def query(ctx: Ctx) -> Select[Any]:
        return family.build(ctx, (member,))

    query.__name__ = f"{family.name}_{member}"
    query.family = family  # type: ignore[attr-defined]
    query.member = member  # type: ignore[attr-defined]
    return query


def _clock_rows(ctx: Ctx, kinds: tuple[str, ...]) -> Select[Any]:
    """Clocks of *kinds* that fell due in the period (and were not retired before that);
    hit: met no later than due."""
    on_time = and_(SlaClock.met_at.is_not(None), SlaClock.met_at <= SlaClock.due_at)
    rows = _rows(SlaClock.ticket_id, SlaClock.department, SlaClock.due_at, SlaClock.met_at, on_time)
    return select(*rows, SlaClock.kind.label("member")).where(
        SlaClock.kind.in_(kinds),
        SlaClock.due_at >= ctx.start,
        SlaClock.due_at < ctx.cut,
        or_(
            SlaClock.met_at.is_not(None),
            SlaClock.superseded_at.is_(None),
            SlaClock.superseded_at >= SlaClock.due_at,
        ),
    )


CLOCKS = Family("clocks", _clock_rows)


def _clocks(kind: ClockKind) -> RowQuery:
    """The clocks of one kind (see :func:`_clock_rows`)."""
    return _member(CLOCKS, kind.value)


def _overdue_now(ctx: Ctx) -> Select[Any]:
    responsible = case(
        (SlaClock.kind == ClockKind.ESCALATION, SlaClock.department), else_=Ticket.department
    )
    return (
        select(*_rows(Ticket.id, func.min(responsible), func.min(SlaClock.due_at)))
        .join(SlaClock, SlaClock.ticket_id == Ticket.id)
        .where(SlaClock.active.is_(True), SlaClock.met_at.is_(None), SlaClock.due_at < ctx.now)
        .group_by(Ticket.id)
    )


_EVENT_NOTES: dict[str, Callable[[], Any]] = {}
EventHit = tuple[Any, ColumnElement[bool], ColumnElement[bool]]
"""(what to outer-join, on what, the hit condition) of one event kind."""
_EVENT_HITS: dict[str, Callable[[Ctx], EventHit]] = {}


def _event_rows(ctx: Ctx, kinds: tuple[str, ...]) -> Select[Any]:
    """Events of *kinds* recorded in the period, for the ticket's department at the end;
    each kind's note and hit as registered by :func:`_events`."""
    joined, dept = _dept_as_of(ctx.cut)
    notes = [(TicketEvent.kind == k, _EVENT_NOTES[k]()) for k in kinds if k in _EVENT_NOTES]
    note = case(*notes, else_=null()) if notes else None
    source = joined.join(TicketEvent, TicketEvent.ticket_id == Ticket.id)
    flags = []
    for kind in kinds:
        if kind in _EVENT_HITS:
            target, on, flag = _EVENT_HITS[kind](ctx)
            source = source.outerjoin(target, and_(TicketEvent.kind == kind, on))
            flags.append(and_(TicketEvent.kind == kind, flag))
    hit = or_(*flags) if flags else None
    return (
        select(*_rows(Ticket.id, dept, TicketEvent.at, note, hit), TicketEvent.kind.label("member"))
        .select_from(source)
        .where(TicketEvent.kind.in_(kinds), TicketEvent.at >= ctx.start, TicketEvent.at < ctx.cut)
    )


EVENTS = Family("events", _event_rows)


def _events(
    kind: str,
    note: Callable[[], Any] | None = None,
    hit: Callable[[Ctx], EventHit] | None = None,
) -> RowQuery:
    """Events of *kind* (see :func:`_event_rows`); *note* and *hit* are that kind's."""
    if note is not None:
        _EVENT_NOTES[kind] = note
    if hit is not None:
        _EVENT_HITS[kind] = hit
    return _member(EVENTS, kind)


def _surveys(ctx: Ctx, *, unverified: bool = False) -> Select[Any]:
    """The enterprise's ratings made in the period; hit: 满意 or 基本满意. Ratings from a
    chat not verified for the enterprise (未核验) are counted apart (*unverified*)."""
    joined, dept = _dept_as_of(ctx.cut)
    return (
        select(*_rows(Ticket.id, dept, Survey.at, Survey.result, Survey.result.in_(SATISFIED)))
        .select_from(joined)
        .join(Survey, Survey.ticket_id == Ticket.id)
        .where(
            Survey.at >= ctx.start,
            Survey.at < ctx.cut,
            Survey.unverified.is_(unverified),
        )
    )


def _unverified_surveys(ctx: Ctx) -> Select[Any]:
    return _surveys(ctx, unverified=True)


def _urge_level() -> Any:
    return TicketEvent.data["level"].as_string()


def _called_back(ctx: Ctx) -> EventHit:
    """A 办结 event followed, before the period's end and before any later 办结 of the
    ticket, by a callback that reached the enterprise.

    Read from the callbacks' side (there are far fewer of them than of 办结 events): each
    reached callback before the cut names the latest 办结 of its ticket at its time, and
    the 办结 events so named are the hits.
    """
    latest = (
        select(func.max(TicketEvent.at))
        .where(
            TicketEvent.ticket_id == CallbackSurvey.ticket_id,
            TicketEvent.kind == "resolve",
            TicketEvent.at <= CallbackSurvey.called_at,
        )
        .correlate(CallbackSurvey)
        .scalar_subquery()
    )
    named = (
        select(CallbackSurvey.ticket_id.label("ticket_id"), latest.label("resolved_at"))
        .where(CallbackSurvey.reached.is_(True), CallbackSurvey.called_at < ctx.cut)
        .distinct()
        .subquery("called_back")
    )
    on = and_(named.c.ticket_id == TicketEvent.ticket_id, named.c.resolved_at == TicketEvent.at)
    return named, on, named.c.ticket_id.is_not(None)


def _callback_answers(column: str) -> RowQuery:
    """政务办's callbacks in the period with an answer to *column*; hit: satisfied."""

    def query(ctx: Ctx) -> Select[Any]:
        joined, dept = _dept_as_of(ctx.cut)
        answer = getattr(CallbackSurvey, column)
        return (
            select(*_rows(Ticket.id, dept, CallbackSurvey.called_at, answer, answer.in_(SATISFIED)))
            .select_from(joined)
            .join(CallbackSurvey, CallbackSurvey.ticket_id == Ticket.id)
            .where(
                CallbackSurvey.called_at >= ctx.start,
                CallbackSurvey.called_at < ctx.cut,
                answer.is_not(None),
            )
        )

    query.__name__ = f"callback_{column}"
    return query


def _meeting_decided(ctx: Ctx) -> Select[Any]:
    """Agenda items the 联席会议 decided in the period, for the lead it named."""
    lead = func.coalesce(MeetingItem.lead_department, Ticket.department)
    return (
        select(*_rows(Ticket.id, lead, MeetingItem.decided_at))
        .join(MeetingItem, MeetingItem.ticket_id == Ticket.id)
        .where(MeetingItem.decided_at >= ctx.start, MeetingItem.decided_at < ctx.cut)
    )


_SOURCE_LABELS = {s.value: s.label for s in TicketSource}
_RESULT_LABELS = {r.value: r.value for r in SurveyResult}
_resolves = _events("resolve", hit=_called_back)

FIGURES: dict[str, Figure] = {
    f.key: f
    for f in (
        Figure(
            "created",
            "受理量",
            False,
            _created,
            denominator_label="期间内受理的工单",
            definition="创建时间在期间内的工单；按来源分列；部门取期末的承办部门。",
            by_note=_SOURCE_LABELS,
        ),
        Figure(
            "overdue_now",
            "当前超期件数",
            False,
            _overdue_now,
            denominator_label="现在有时限已过仍未完成的工单",
            definition="查询时刻有时限（签收、办结、反馈、联席会议）已到期仍在运行的工单；"
            "是当下的快照，不随期间变化，重跑结果会变。",
        ),
        Figure(
            "contact_on_time_rate",
            "按时签收率",
            True,
            _clocks(ClockKind.CONTACT),
            HIT,
            "期间内到期的签收时限",
            "其中按时签收的",
            "签收（对接企业）时限到期时间在期间内的，按时完成（完成时间不晚于到期时间）的比例；"
            "到期前已被转派等取代的时限不计。",
        ),
        Figure(
            "done_on_time_rate",
            "按时办结率",
            True,
            _clocks(ClockKind.DONE),
            HIT,
            "期间内到期的办结时限（7个工作日）",
            "其中按时办结的",
            "办结时限到期时间在期间内的，到期前办结的比例；提请联席会议后由会议时限取代的不计。",
        ),
        Figure(
            "resolved_rate",
            "办结率",
            True,
            _created,
            HIT,
            "期间内受理的工单",
            "其中期末前已办结的",
            "期间内受理的工单中，期末前有办结记录的比例；期末后才办结的另列为「期后办结」。",
        ),
        Figure(
            "resolved_after_period",
            "期后办结",
            False,
            _resolved_after,
            denominator_label="期间内受理、期末后才办结的工单",
            definition="迟到的变化：期间内受理、期末时未办结、此后才办结的工单。"
            "不改写本期办结率，只在此列出。",
        ),
        Figure(
            "feedback_on_time_rate",
            "按时反馈率",
            True,
            _clocks(ClockKind.FEEDBACK),
            HIT,
            "期间内到期的反馈时限（2个工作日）",
            "其中按时反馈的",
            "反馈结果时限到期时间在期间内的，按时反馈的比例。",
        ),
        Figure(
            "satisfaction_rate",
            "满意率",
            True,
            _surveys,
            HIT,
            "期间内企业的评价",
            "其中满意与基本满意的",
            "企业在期间内作出的评价（每轮一次）中，满意与基本满意所占比例；"
            "未核验身份的对话账号所作评价不计入，另列。",
            by_note=_RESULT_LABELS,
        ),
        Figure(
            "unverified_satisfaction_rate",
            "未核验评价满意率",
            True,
            _unverified_surveys,
            HIT,
            "期间内未核验身份的对话账号所作评价",
            "其中满意与基本满意的",
            "绑定尚未核验（未凭核验码或专员确认）的对话账号在期间内作出的评价，"
            "单独统计，不计入满意率与综合得分。",
            by_note=_RESULT_LABELS,
        ),
        Figure(
            "reopen_rate",
            "重办率",
            True,
            _resolves,
            _events("reopen"),
            "期间内的办结",
            "期间内的重办",
            "期间内的重办次数 ÷ 期间内的办结次数。",
        ),
        Figure(
            "urged",
            "督办件次",
            False,
            _events("urge", _urge_level),
            denominator_label="期间内的催办、督办",
            definition="期间内的催办事件；政务办督办按蓝、橙、红级别分列。",
            by_note=URGE_LABELS,
        ),
        Figure(
            "callback_rate",
            "回访率",
            True,
            _resolves,
            HIT,
            "期间内的办结",
            "其中期末前已电话回访（接通）的",
            "期间内的办结中，办结后、期末前政务办已电话回访并接通的比例。",
        ),
        Figure(
            "callback_reply_rate",
            "回访答复满意率",
            True,
            _callback_answers("reply_satisfaction"),
            HIT,
            "期间内回访到的答复评价",
            "其中满意与基本满意的",
            "政务办期间内电话回访中，对答复的满意与基本满意所占比例（未接通的不计）。",
            by_note=_RESULT_LABELS,
        ),
        Figure(
            "callback_result_rate",
            "回访结果满意率",
            True,
            _callback_answers("result_satisfaction"),
            HIT,
            "期间内回访到的结果评价",
            "其中满意与基本满意的",
            "政务办期间内电话回访中，对办理结果的满意与基本满意所占比例（未接通的不计）。",
            by_note=_RESULT_LABELS,
        ),
        Figure(
            "escalated",
            "提请联席会议",
            False,
            _events("escalate"),
            denominator_label="期间内提请联席会议的工单",
            definition="期间内提请联席会议的事件。",
        ),
        Figure(
            "meeting_decided",
            "联席会议已决定",
            False,
            _meeting_decided,
            denominator_label="期间内联席会议作出决定的事项",
            definition="联席会议在期间内作出决定的事项，计入会议指定的牵头部门。",
        ),
        Figure(
            "meeting_on_time_rate",
            "会议时限内完成率",
            True,
            _clocks(ClockKind.ESCALATION),
            HIT,
            "期间内到期的联席会议时限",
            "其中按时完成的",
            "联席会议限期在期间内到期的，到期前办结的比例；计入会议指定的牵头部门。",
        ),
    )
}
_COLUMNS = {
    "created": ("受理时间", "来源"),
    "overdue_now": ("最早到期时间", ""),
    "resolved_rate": ("受理时间", ""),
    "resolved_after_period": ("受理时间", ""),
    "satisfaction_rate": ("评价时间", "评价"),
    "unverified_satisfaction_rate": ("评价时间", "评价"),
    "reopen_rate": ("时间", ""),
    "urged": ("催办时间", "督办级别"),
    "callback_rate": ("办结时间", ""),
    "callback_reply_rate": ("回访时间", "答复评价"),
    "callback_result_rate": ("回访时间", "结果评价"),
    "escalated": ("提请时间", ""),
    "meeting_decided": ("决定时间", ""),
}
for _key, _figure in FIGURES.items():
    if _figure.rows.__name__.startswith("clocks_"):
        FIGURES[_key] = replace(_figure, columns=("到期时间", "完成时间"))
    elif _key in _COLUMNS:
        FIGURES[_key] = replace(_figure, columns=_COLUMNS[_key])
RATES = tuple(k for k, f in FIGURES.items() if f.rate)


# -- results


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


@dataclass
class Counts:
    """Row counts by (figure, role, department, note)."""

    rows: dict[tuple[str, str, str, str | None], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    _index: dict[tuple[str, str, str | None, str | None], int] | None = None

    def _build(self) -> dict[tuple[str, str, str | None, str | None], int]:
        index: dict[tuple[str, str, str | None, str | None], int] = defaultdict(int)
        for (f, r, d, t), n in self.rows.items():
            for dept in {d, None}:
                index[(f, r, dept, t)] += n
                index[(f, r, dept, "*")] += n
        return index

    def get(self, figure: str, role: str, department: str | None, note: str | None = "*") -> int:
        """The count for one department (``None``: all) and note (``"*"``: any)."""
        if self._index is None:
            self._index = self._build()
        return self._index.get((figure, role, department, note), 0)


@dataclass(frozen=True)
class DrillRow:
    """One row behind a figure: a ticket and what about it counted."""

    number: str
    title: str
    department: str
    at: datetime | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        """For JSON."""
        return {
            "number": self.number,
            "title": self.title,
            "department": self.department,
            "at": self.at.isoformat() if self.at else None,
            "note": self.note,
        }


@dataclass(frozen=True)
class DrillDown:
    """The rows behind one figure of one department (or the zone)."""

    figure: Figure
    department: str | None
    period: Period
    denominator: list[DrillRow]
    numerator: list[DrillRow]


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _note(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    if hasattr(value, "value"):
        return str(value.value)
    return str(value)


class Assessment:
    """Computes the assessment of a period; reads only."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        departments: Iterable[str],
        settings: AssessmentSettings | None = None,
        *,
        clock: Callable[[], datetime],
        canonical: Callable[[str], str] | None = None,
    ) -> None:
        self._sessions = sessions
        self.departments = list(departments)
        self.settings = settings or load_assessment_settings()
        self._clock = clock
        self._canonical = canonical

    @classmethod
    def of(cls, app: Any) -> Assessment:
        """The assessment of a :class:`bot.app.App` (its database, departments, clock and
        ``assessment.yaml`` from its config directory)."""
        directory = app.router.departments
        return cls(
            app.db.sessions,
            [d.name for d in directory],
            load_assessment_settings(Path(app.settings.config_dir) / "assessment.yaml"),
            clock=app.clock,
            canonical=directory.canonical,
        )

    def now(self) -> datetime:
        """The injected clock's now."""
        return self._clock()

    # -- inputs

    def department(self, name: str) -> str:
        """The department named *name*; ``AssessmentError`` listing the known ones."""
        wanted = name.strip()
        if wanted in self.departments:
            return wanted
        if self._canonical is not None and wanted:
            try:
                found = self._canonical(wanted)
            except YxbyError:  # an unknown name: the error below says so
                found = ""
            if found in self.departments:
                return found
        raise AssessmentError(f"未知的部门「{name}」，应为 {'、'.join(self.departments)} 之一")

    def figure(self, key: str) -> Figure:
        """The figure *key*; ``AssessmentError`` listing the known ones."""
        found = FIGURES.get(key.strip())
        if found is None:
            raise AssessmentError(f"未知的考核指标「{key}」，应为 {'、'.join(FIGURES)} 之一")
        return found

    def _ctx(self, period: Period, now: datetime | None) -> Ctx:
        return Ctx(period, now or self._clock())

    # -- aggregate

    def counts(self, period: Period, *, now: datetime | None = None) -> Counts:
        """Every figure's row counts: one grouped query per row set, each run once
        however many figures share it."""
        ctx = self._ctx(period, now)
        queries: dict[RowQuery, bool] = {}
        for figure in FIGURES.values():
            queries[figure.rows] = queries.get(figure.rows, False) or bool(figure.by_note)
            if callable(figure.numerator):
                queries.setdefault(figure.numerator, False)
        # members of a family are read in one pass, the others one query each
        groups: dict[Any, list[RowQuery]] = defaultdict(list)
        for query in queries:
            groups[getattr(query, "family", query)].append(query)
        found: dict[RowQuery, list[tuple[str, str | None, int, int]]] = defaultdict(list)
        with self._sessions() as session:
            for key, members in groups.items():
                by_member = {getattr(q, "member", None): q for q in members}
                if isinstance(key, Family):
                    sub = key.build(ctx, tuple(m for m in by_member if m is not None)).subquery()
                    member: Any = sub.c.member.cast(String)
                else:
                    sub = members[0](ctx).subquery()
                    member = null().cast(String)
                wanted = any(queries[q] for q in members)
                grouping = sub.c.note.cast(String) if wanted else null().cast(String)
                stmt = select(
                    member.label("member"),
                    sub.c.department,
                    grouping.label("note"),
                    func.count().label("n"),
                    func.coalesce(func.sum(sub.c.hit), 0).label("hits"),
                ).group_by(member, sub.c.department, grouping)
                for name, dept, note, n, hits in session.execute(stmt):
                    found[by_member[name]].append((dept, note, int(n), int(hits)))
        counts = Counts()
        for figure in FIGURES.values():
            for dept, note, n, hits in found[figure.rows]:
                counts.rows[(figure.key, "den", dept, note)] += n
                if figure.numerator == HIT:
                    counts.rows[(figure.key, "num", dept, note)] += hits
            if callable(figure.numerator):
                for dept, note, n, _ in found[figure.numerator]:
                    counts.rows[(figure.key, "num", dept, note)] += n
        return counts

    def report(
        self, period: Period, *, department: str | None = None, now: datetime | None = None
    ) -> dict[str, Any]:
        """The whole assessment of *period* as plain data (the JSON contract)."""
        now = now or self._clock()
        if department is not None:
            department = self.department(department)
        counts = self.counts(period, now=now)
        present = sorted({d for (_, _, d, _) in counts.rows if d is not None}, key=self._order)
        names = list(dict.fromkeys([*self.departments, *present]))
        rows = [self._figures(counts, name) for name in names]
        self._rank(rows)
        if department is not None:
            rows = [r for r in rows if r["department"] == department]
        zone = self._figures(counts, None)
        zone.pop("department")
        return {
            "period": {**period.to_dict(), "as_of": now.isoformat(), "closed": period.closed(now)},
            "zone": zone,
            "departments": rows,
            "bot": self.bot(period, now=now),
        }

    def _order(self, name: str) -> tuple[int, str]:
        try:
            return (self.departments.index(name), name)
        except ValueError:
            return (len(self.departments), name)

    def _figures(self, counts: Counts, department: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"department": department}
        for key, figure in FIGURES.items():
            den = counts.get(key, "den", department)
            if figure.rate:
                num = counts.get(key, "num", department)
                out[key] = _ratio(num, den)
                out[f"{key}_counts"] = {"numerator": num, "denominator": den}
            else:
                out[key] = den
            if figure.by_note:
                breakdown = {
                    note: counts.get(key, "den", department, note) for note in figure.by_note
                }
                out[f"{key}_by"] = {k: v for k, v in breakdown.items() if v or figure.rate}
        out["rated"] = out["satisfaction_rate_counts"]["denominator"]
        out["unsatisfied"] = out["satisfaction_rate_by"].get(SurveyResult.UNSATISFIED.value, 0)
        out["reopened"] = out["reopen_rate_counts"]["numerator"]
        out["resolved"] = out["resolved_rate_counts"]["numerator"]
        out["urged_by_level"] = {lvl: out["urged_by"].get(lvl, 0) for lvl in URGE_LEVELS}
        out["late"] = {"resolved_after_period": out["resolved_after_period"]}
        return out

    def score(self, row: dict[str, Any]) -> float | None:
        """The composite score (0–100) of a department's figures, or ``None`` without data."""
        weights = self.settings.weights.model_dump()
        total = weight = 0.0
        for key, w in weights.items():
            value = row.get(key)
            if value is None or w == 0:
                continue
            total += w * value
            weight += w
        if weight == 0:
            return None
        score = 100 * total / weight - self.settings.reopen_penalty * row.get("reopened", 0)
        return round(max(score, 0.0), 2)

    def _rank(self, rows: list[dict[str, Any]]) -> None:
        weighted = [k for k, w in self.settings.weights.model_dump().items() if w > 0]
        for row in rows:
            row["score"] = self.score(row)
            cases = sum(row[f"{k}_counts"]["denominator"] for k in weighted)
            if cases < self.settings.min_cases_to_rank:
                row["score_unranked"] = True
        ranked = [r for r in rows if r["score"] is not None and not r.get("score_unranked")]
        ranked.sort(key=lambda r: (-r["score"], self._order(r["department"])))
        previous: float | None = None
        rank = 0
        for i, row in enumerate(ranked, start=1):
            if row["score"] != previous:
                rank = i
                previous = row["score"]
            row["rank"] = rank
        for row in rows:
            row.setdefault("rank", None)
            row.pop("score_unranked", None)

    # -- the bot

    def _questions(self, period: Period, now: datetime) -> Select[Any]:
        cut = period.cut(now)
        return select(DialogueTurn).where(
            DialogueTurn.at >= period.start,
            DialogueTurn.at < cut,
            DialogueTurn.action.in_(QUESTION_ACTIONS),
        )

    def bot(self, period: Period, *, now: datetime | None = None) -> dict[str, Any]:
        """即时解决率, 转人工率 and the entries most often marked 未解决, over the period."""
        now = now or self._clock()
        cut = period.cut(now)
        where = (
            DialogueTurn.at >= period.start,
            DialogueTurn.at < cut,
            DialogueTurn.action.in_(QUESTION_ACTIONS),
        )
        with self._sessions() as session:
            questions, solved, handed = session.execute(
                select(
                    func.count(),
                    func.coalesce(
                        func.sum(case((DialogueTurn.outcome.in_(SOLVED_OUTCOMES), 1), else_=0)),
                        0,
                    ),
                    func.coalesce(
                        func.sum(case((DialogueTurn.outcome.in_(HANDOFF_OUTCOMES), 1), else_=0)),
                        0,
                    ),
                ).where(*where)
            ).one()
            top = session.execute(
                select(DialogueTurn.entry_id, func.count().label("n"))
                .where(
                    DialogueTurn.at >= period.start,
                    DialogueTurn.at < cut,
                    DialogueTurn.entry_id.is_not(None),
                    DialogueTurn.outcome.in_(UNSOLVED_OUTCOMES),
                )
                .group_by(DialogueTurn.entry_id)
                .order_by(func.count().desc(), DialogueTurn.entry_id)
                .limit(self.settings.top_unsolved_entries)
            ).all()
        return {
            "questions": int(questions),
            "solved_instantly": int(solved),
            "instant_resolution_rate": _ratio(int(solved), int(questions)),
            "handed_off": int(handed),
            "handoff_rate": _ratio(int(handed), int(questions)),
            "unsolved_entries": [{"entry_id": e, "unsolved": int(n)} for e, n in top],
        }

    def bot_questions(
        self, period: Period, *, outcome: str | None = None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The questions behind the bot's figures (``outcome``: solved / handoff / all)."""
        now = now or self._clock()
        stmt = self._questions(period, now).order_by(DialogueTurn.at, DialogueTurn.id)
        if outcome == "solved":
            stmt = stmt.where(DialogueTurn.outcome.in_(SOLVED_OUTCOMES))
        elif outcome == "handoff":
            stmt = stmt.where(DialogueTurn.outcome.in_(HANDOFF_OUTCOMES))
        with self._sessions() as session:
            numbers = {}
            turns = list(session.scalars(stmt.limit(2000)))
            ids = {t.ticket_id for t in turns if t.ticket_id}
            if ids:
                found = session.execute(select(Ticket.id, Ticket.number).where(Ticket.id.in_(ids)))
                numbers = {tid: number for tid, number in found}
            return [
                {
                    "at": _aware(t.at),
                    "text": t.text,
                    "outcome": t.outcome.value,
                    "entry_id": t.entry_id,
                    "ticket": numbers.get(t.ticket_id) if t.ticket_id else None,
                }
                for t in turns
            ]

    # -- trends

    def trend(
        self, period: Period, *, department: str | None = None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Month by month: the three rates of the score and the bot's 即时解决率."""
        now = now or self._clock()
        out = []
        for month in period.months():
            if month.start >= now:
                break
            counts = self.counts(month, now=now)
            figures = self._figures(counts, department)
            out.append(
                {
                    "month": month.label,
                    "from": month.first.isoformat(),
                    "to": month.last.isoformat(),
                    "contact_on_time_rate": figures["contact_on_time_rate"],
                    "done_on_time_rate": figures["done_on_time_rate"],
                    "satisfaction_rate": figures["satisfaction_rate"],
                    "created": figures["created"],
                    "instant_resolution_rate": self.bot(month, now=now)["instant_resolution_rate"],
                }
            )
        return out

    # -- drill-down

    def drill(
        self,
        key: str,
        period: Period,
        *,
        department: str | None = None,
        visible: ColumnElement[bool] | None = None,
        now: datetime | None = None,
        limit: int | None = None,
    ) -> DrillDown:
        """The rows behind figure *key* (of *department*, or the zone); *visible* limits
        the tickets to those a person may see (:func:`handoff.scope.visible_filter`)."""
        figure = self.figure(key)
        if department is not None:
            department = self.department(department)
        ctx = self._ctx(period, now)
        with self._sessions() as session:

            def rows(query: RowQuery, *, hits: bool = False) -> list[DrillRow]:
                sub = query(ctx).subquery()
                listing = (
                    select(Ticket.number, Ticket.title, sub.c.department, sub.c.at, sub.c.note)
                    .join(sub, sub.c.ticket_id == Ticket.id)
                    .order_by(sub.c.at, Ticket.number)
                )
                if hits:
                    listing = listing.where(sub.c.hit == 1)
                if department is not None:
                    listing = listing.where(sub.c.department == department)
                if visible is not None:
                    listing = listing.where(visible)
                if limit is not None:
                    listing = listing.limit(limit)
                labels = figure.by_note
                return [
                    DrillRow(number, title, dept, _aware(at), labels.get(n, n) if n else n)
                    for number, title, dept, at, note in session.execute(listing)
                    for n in (_note(note),)
                ]

            numerator: list[DrillRow] = []
            if figure.numerator == HIT:
                numerator = rows(figure.rows, hits=True)
            elif callable(figure.numerator):
                numerator = rows(figure.numerator)
            return DrillDown(figure, department, period, rows(figure.rows), numerator)

    def definitions(self) -> list[dict[str, str]]:
        """(key, label, kind, denominator, numerator, definition) of every figure."""
        return [
            {
                "key": f.key,
                "label": f.label,
                "kind": "比率" if f.rate else "件数",
                "denominator": f.denominator_label,
                "numerator": f.numerator_label,
                "definition": f.definition,
            }
            for f in FIGURES.values()
        ]


def rate_text(value: float | None) -> str:
    """A rate as ``87.5%`` (``—`` without a denominator)."""
    return "—" if value is None else f"{value * 100:.1f}%"


def labels() -> dict[str, str]:
    """Chinese label of every figure key."""
    return {k: f.label for k, f in FIGURES.items()}


def sort_departments(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Departments by rank (unranked last, in configured order)."""
    return sorted(rows, key=lambda r: (r["rank"] is None, r["rank"] or 0))
