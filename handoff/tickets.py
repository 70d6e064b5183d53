"""Tickets: the state machine, the SLA clocks and the event trail.

States::

    new → accepted (签收) → in_progress → resolved (办结) → feedback_sent → surveyed → closed
    in_progress → escalated (提请联席会议) → in_progress | resolved
    new | accepted | in_progress → new   (转派/退单: the contact clock restarts)
    surveyed → new                       (重办, once, after 不满意: fresh contact and done clocks)

Every change writes a :class:`~handoff.models.TicketEvent` in the same transaction.
Deadlines are computed once, when a clock starts, from the working-day calendar, and
stored with the clock; they are never recomputed.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from handoff.db import read_only
from handoff.models import (
    ClockKind,
    Commissioner,
    Enterprise,
    SlaClock,
    Survey,
    SurveyResult,
    Ticket,
    TicketCounter,
    TicketDepartment,
    TicketEvent,
    TicketState,
)
from handoff.sla import SlaSettings, load_sla_settings
from yxby.errors import RoutingError, TicketError

if TYPE_CHECKING:
    from handoff.calendar import WorkCalendar
    from routing.departments import DepartmentDirectory

__all__ = [
    "MANUAL_RULE",
    "MAX_REOPENS",
    "SYSTEM_ACTOR",
    "TRANSITIONS",
    "Action",
    "ClockView",
    "EventView",
    "HelperView",
    "IllegalTransition",
    "SurveyView",
    "TicketNotFound",
    "TicketNotifier",
    "TicketService",
    "TicketState",
    "TicketView",
    "next_ticket_number",
]

MANUAL_RULE = "manual"
"""Route rule recorded when a person chose the department by hand."""
MAX_REOPENS = 1
"""A ticket is reopened (重办) at most once; a second 不满意 closes it."""
TITLE_LENGTH = 40


class Action(StrEnum):
    """Things done to a ticket; each is written as an event of that kind."""

    CREATE = "create"
    ACCEPT = "accept"
    START = "start"
    RESOLVE = "resolve"
    SEND_FEEDBACK = "send_feedback"
    RECORD_SURVEY = "record_survey"
    CLOSE = "close"
    ESCALATE = "escalate"
    TRANSFER = "transfer"
    REOPEN = "reopen"
    ASSIST = "assist"
    ACKNOWLEDGE = "acknowledge"
    SURVEY_COMMENT = "survey_comment"

    @property
    def label(self) -> str:
        """Chinese name of the action."""
        return _ACTION_LABELS[self]


_ACTION_LABELS = {
    Action.CREATE: "创建",
    Action.ACCEPT: "签收",
    Action.START: "开始办理",
    Action.RESOLVE: "办结",
    Action.SEND_FEEDBACK: "反馈结果",
    Action.RECORD_SURVEY: "记录回访",
    Action.CLOSE: "关闭",
    Action.ESCALATE: "提请联席会议",
    Action.TRANSFER: "转派",
    Action.REOPEN: "重办",
    Action.ASSIST: "协同",
    Action.ACKNOWLEDGE: "协办确认",
    Action.SURVEY_COMMENT: "补充回访意见",
}

S = TicketState
TRANSITIONS: Mapping[Action, Mapping[TicketState, TicketState]] = MappingProxyType(
    {
        Action.ACCEPT: {S.NEW: S.ACCEPTED},
        Action.START: {S.ACCEPTED: S.IN_PROGRESS, S.ESCALATED: S.IN_PROGRESS},
        Action.RESOLVE: {S.IN_PROGRESS: S.RESOLVED, S.ESCALATED: S.RESOLVED},
        Action.SEND_FEEDBACK: {S.RESOLVED: S.FEEDBACK_SENT},
        Action.RECORD_SURVEY: {S.FEEDBACK_SENT: S.SURVEYED},
        Action.CLOSE: {S.SURVEYED: S.CLOSED, S.FEEDBACK_SENT: S.CLOSED},
        Action.ESCALATE: {S.IN_PROGRESS: S.ESCALATED},
        Action.TRANSFER: {S.NEW: S.NEW, S.ACCEPTED: S.NEW, S.IN_PROGRESS: S.NEW},
        Action.REOPEN: {S.SURVEYED: S.NEW},
    }
)
"""For each state-changing action: from-state → to-state. Anything else is illegal."""

HELPER_STATES = frozenset({S.NEW, S.ACCEPTED, S.IN_PROGRESS, S.ESCALATED})
"""States in which helper departments may be added or acknowledge."""


SYSTEM_ACTOR = "有需必应助手"


class TicketNotifier(Protocol):
    """Who tells people about ticket changes (the bot layer implements it).

    Called inside the ticket's transaction, so pushes written to the outbox commit or roll
    back together with the change.
    """

    def created(self, session: Session, ticket: Ticket, now: datetime) -> None:
        """A ticket was opened for, or transferred to, ``ticket.department``."""

    def resolved(self, session: Session, ticket: Ticket, now: datetime) -> str | None:
        """The ticket was resolved; return a note when the result was pushed to the enterprise."""


class TicketNotFound(TicketError):
    """No ticket has the given number."""

    def __init__(self, number: str) -> None:
        self.number = number
        super().__init__(f"找不到工单 {number}")


class IllegalTransition(TicketError):
    """The action is not allowed from the ticket's current state."""

    def __init__(self, number: str, action: Action, state: TicketState) -> None:
        self.number = number
        self.action = action
        self.state = state
        moves = TRANSITIONS.get(action, {})
        targets = sorted({t.label for t in moves.values()})
        allowed = "、".join(f"「{s.label}」" for s in moves) or "任何"
        to = f"「{'／'.join(targets)}」" if targets else "新状态"
        super().__init__(
            f"工单 {number} 不能从「{state.label}」变为{to}（{action.label}）："
            f"{action.label}只能在{allowed}状态下进行"
        )


# ------------------------------------------------------------------------------ views


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    from handoff.calendar import SHANGHAI

    return moment.astimezone(SHANGHAI).isoformat()


@dataclass(frozen=True)
class ClockView:
    """One SLA clock as stored."""

    id: int
    kind: ClockKind
    department: str
    workdays: int | None
    calendar_fallback: bool
    started_at: datetime
    due_at: datetime
    remind_at: datetime | None
    met_at: datetime | None
    breached_at: datetime | None
    reminded_at: datetime | None
    active: bool
    superseded_at: datetime | None

    @property
    def running(self) -> bool:
        """Active and not yet met."""
        return self.active and self.met_at is None

    @property
    def late(self) -> bool:
        """Breached, or met after its due time."""
        return self.breached_at is not None or (
            self.met_at is not None and self.met_at > self.due_at
        )

    def overdue(self, now: datetime) -> bool:
        """Running and past its due time at *now*."""
        return self.running and self.due_at < now

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (times in Asia/Shanghai ISO 8601)."""
        return {
            "kind": self.kind.value,
            "label": self.kind.label,
            "department": self.department,
            "workdays": self.workdays,
            "calendar_fallback": self.calendar_fallback,
            "started_at": _iso(self.started_at),
            "due_at": _iso(self.due_at),
            "remind_at": _iso(self.remind_at),
            "met_at": _iso(self.met_at),
            "breached_at": _iso(self.breached_at),
            "reminded_at": _iso(self.reminded_at),
            "active": self.active,
            "superseded_at": _iso(self.superseded_at),
            "late": self.late,
        }

    @classmethod
    def of(cls, clock: SlaClock) -> ClockView:
        """Snapshot of a clock row."""
        return cls(
            id=clock.id,
            kind=clock.kind,
            department=clock.department,
            workdays=clock.workdays,
            calendar_fallback=clock.calendar_fallback,
            started_at=clock.started_at,
            due_at=clock.due_at,
            remind_at=clock.remind_at,
            met_at=clock.met_at,
            breached_at=clock.breached_at,
            reminded_at=clock.reminded_at,
            active=clock.active,
            superseded_at=clock.superseded_at,
        )


@dataclass(frozen=True)
class EventView:
    """One event of the trail."""

    at: datetime
    actor: str
    kind: str
    from_state: TicketState | None
    to_state: TicketState | None
    reason: str | None
    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "at": _iso(self.at),
            "actor": self.actor,
            "kind": self.kind,
            "from_state": self.from_state.value if self.from_state else None,
            "to_state": self.to_state.value if self.to_state else None,
            "reason": self.reason,
            "data": dict(self.data),
        }


@dataclass(frozen=True)
class HelperView:
    """A helper department of a co-handled ticket."""

    department: str
    added_at: datetime
    added_by: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "department": self.department,
            "added_at": _iso(self.added_at),
            "added_by": self.added_by,
            "acknowledged_at": _iso(self.acknowledged_at),
            "acknowledged_by": self.acknowledged_by,
        }


@dataclass(frozen=True)
class SurveyView:
    """A satisfaction callback."""

    round: int
    result: SurveyResult
    comment: str | None
    actor: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "round": self.round,
            "result": self.result.value,
            "comment": self.comment,
            "actor": self.actor,
            "at": _iso(self.at),
        }


@dataclass(frozen=True)
class TicketView:
    """A ticket with its clocks, helpers, surveys and events, read in one transaction."""

    number: str
    state: TicketState
    title: str
    description: str
    department: str
    route_rule: str
    route_reason: str
    enterprise_uscc: str | None
    enterprise_name: str | None
    commissioner: str | None
    reopen_count: int
    escalation_lead_department: str | None
    escalation_deadline: datetime | None
    result: str | None
    created_at: datetime
    updated_at: datetime
    clocks: tuple[ClockView, ...] = ()
    helpers: tuple[HelperView, ...] = ()
    surveys: tuple[SurveyView, ...] = ()
    events: tuple[EventView, ...] = field(default=(), repr=False)

    def running_clocks(self) -> list[ClockView]:
        """Clocks still ticking, earliest due first."""
        return sorted((c for c in self.clocks if c.running), key=lambda c: c.due_at)

    def next_due(self) -> ClockView | None:
        """The running clock that falls due first, if any."""
        running = self.running_clocks()
        return running[0] if running else None

    def clock(self, kind: ClockKind) -> ClockView | None:
        """The active clock of *kind* (the newest one), if any."""
        found = [c for c in self.clocks if c.kind is kind and c.active]
        return found[-1] if found else None

    def overdue(self, now: datetime) -> bool:
        """True if any running clock is past due at *now*."""
        return any(c.overdue(now) for c in self.clocks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (times in Asia/Shanghai ISO 8601)."""
        return {
            "number": self.number,
            "state": self.state.value,
            "state_label": self.state.label,
            "title": self.title,
            "description": self.description,
            "department": self.department,
            "route_rule": self.route_rule,
            "route_reason": self.route_reason,
            "enterprise_uscc": self.enterprise_uscc,
            "enterprise_name": self.enterprise_name,
            "commissioner": self.commissioner,
            "reopen_count": self.reopen_count,
            "escalation_lead_department": self.escalation_lead_department,
            "escalation_deadline": _iso(self.escalation_deadline),
            "result": self.result,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "clocks": [c.to_dict() for c in self.clocks],
            "helpers": [h.to_dict() for h in self.helpers],
            "surveys": [s.to_dict() for s in self.surveys],
            "events": [e.to_dict() for e in self.events],
        }

    @classmethod
    def of(cls, ticket: Ticket) -> TicketView:
        """Snapshot of a ticket row and its children (load them first)."""
        return cls(
            number=ticket.number,
            state=ticket.state,
            title=ticket.title,
            description=ticket.description,
            department=ticket.department,
            route_rule=ticket.route_rule,
            route_reason=ticket.route_reason,
            enterprise_uscc=ticket.enterprise.uscc if ticket.enterprise else None,
            enterprise_name=ticket.enterprise.name if ticket.enterprise else None,
            commissioner=ticket.commissioner.name if ticket.commissioner else None,
            reopen_count=ticket.reopen_count,
            escalation_lead_department=ticket.escalation_lead_department,
            escalation_deadline=ticket.escalation_deadline,
            result=ticket.result,
            created_at=ticket.created_at,
            updated_at=ticket.updated_at,
            clocks=tuple(ClockView.of(c) for c in ticket.clocks),
            helpers=tuple(
                HelperView(
                    h.department, h.added_at, h.added_by, h.acknowledged_at, h.acknowledged_by
                )
                for h in ticket.helpers
            ),
            surveys=tuple(
                SurveyView(s.round, s.result, s.comment, s.actor, s.at) for s in ticket.surveys
            ),
            events=tuple(
                EventView(e.at, e.actor, e.kind, e.from_state, e.to_state, e.reason, e.data or {})
                for e in ticket.events
            ),
        )


_LOAD = (
    selectinload(Ticket.enterprise),
    selectinload(Ticket.commissioner),
    selectinload(Ticket.clocks),
    selectinload(Ticket.helpers),
    selectinload(Ticket.surveys),
    selectinload(Ticket.events),
)


# ---------------------------------------------------------------------------- numbers


def next_ticket_number(session: Session, day: date) -> str:
    """Reserve the next number of *day* (``YX-20261126-0007``) in the current transaction.

    One counter row per day, bumped with ``INSERT … ON CONFLICT DO UPDATE … RETURNING``:
    concurrent transactions queue on the row lock, so no number is issued twice.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(TicketCounter)
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(TicketCounter)
    else:  # pragma: no cover - make_engine only builds the two dialects above
        raise NotImplementedError(dialect)
    stmt = (
        stmt.values(day=day, seq=1)
        .on_conflict_do_update(
            index_elements=[TicketCounter.day], set_={"seq": TicketCounter.seq + 1}
        )
        .returning(TicketCounter.seq)
    )
    seq = session.execute(stmt).scalar_one()
    return f"YX-{day:%Y%m%d}-{seq:04d}"


# ---------------------------------------------------------------------------- service


def _text(value: str | None, what: str) -> str:
    cleaned = (value or "").strip()
    if not cleaned:
        raise TicketError(f"{what}不能为空")
    return cleaned


def _route_rules() -> frozenset[str]:
    from routing import RouteRule

    return frozenset(rule.value for rule in RouteRule) | {MANUAL_RULE}


class TicketService:
    """Creates tickets and moves them through their states; one transaction per call.

    *clock* returns the current aware time (injected so tests move time instead of
    sleeping); *calendar* counts working days; *settings* come from ``config/sla.yaml``;
    *departments* validates department names (default: ``config/departments.yaml``).
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        calendar: WorkCalendar,
        clock: Callable[[], datetime],
        *,
        settings: SlaSettings | None = None,
        departments: DepartmentDirectory | None = None,
        notifier: TicketNotifier | None = None,
    ) -> None:
        self._notifier = notifier
        self._sessions = session_factory
        self._calendar = calendar
        self._clock = clock
        self._settings = settings or load_sla_settings()
        if departments is None:
            from routing.departments import load_departments

            departments = load_departments()
        self._departments = departments

    # -- helpers

    @contextmanager
    def _transaction(self, session: Session | None) -> Iterator[Session]:
        """Our own transaction, or a savepoint inside the caller's *session*.

        With a caller's session nothing is committed here: the change becomes part of the
        caller's transaction, and an error undoes only this call's writes.
        """
        if session is None:
            with self._sessions.begin() as own:
                yield own
        else:
            with session.begin_nested():
                yield session

    @contextmanager
    def _reading(self, session: Session | None) -> Iterator[Session]:
        if session is None:
            with self._sessions() as own:
                yield read_only(own)
        else:
            yield session

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return now

    def _department(self, name: str) -> str:
        try:
            return self._departments.canonical(_text(name, "部门"))
        except RoutingError as exc:
            raise TicketError(str(exc)) from None

    def _load(self, session: Session, number: str) -> Ticket:
        """The ticket, locked for update, with its clocks, helpers and surveys."""
        stmt = (
            select(Ticket)
            .where(Ticket.number == number.strip().upper())
            .options(
                selectinload(Ticket.enterprise).selectinload(Enterprise.commissioner),
                selectinload(Ticket.clocks),
                selectinload(Ticket.helpers),
                selectinload(Ticket.surveys),
            )
            # fresh rows even if the caller's session already holds this ticket
            .execution_options(populate_existing=True)
            .with_for_update(of=Ticket)
        )
        ticket = session.scalars(stmt).one_or_none()
        if ticket is None:
            raise TicketNotFound(number.strip())
        return ticket

    def _view(self, session: Session, ticket_id: int) -> TicketView:
        session.flush()
        stmt = (
            select(Ticket)
            .where(Ticket.id == ticket_id)
            .options(*_LOAD)
            .execution_options(populate_existing=True)
        )
        return TicketView.of(session.scalars(stmt).one())

    @staticmethod
    def _event(
        session: Session,
        ticket: Ticket,
        now: datetime,
        actor: str,
        kind: Action,
        from_state: TicketState | None,
        reason: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        session.add(
            TicketEvent(
                ticket_id=ticket.id,
                at=now,
                actor=actor,
                kind=kind.value,
                from_state=from_state,
                to_state=ticket.state,
                reason=reason,
                data=dict(data or {}),
            )
        )
        ticket.updated_at = now

    @staticmethod
    def _move(ticket: Ticket, action: Action) -> TicketState:
        """Apply *action* to the ticket's state; return the previous state."""
        before = ticket.state
        after = TRANSITIONS[action].get(before)
        if after is None:
            raise IllegalTransition(ticket.number, action, before)
        ticket.state = after
        return before

    def _start_clock(
        self,
        session: Session,
        ticket: Ticket,
        kind: ClockKind,
        start: datetime,
        *,
        due: datetime | None = None,
        department: str | None = None,
    ) -> dict[str, Any]:
        workdays: int | None = None
        fallback: tuple[int, ...] = ()
        if due is None:
            workdays = self._settings.limit(kind)
            result = self._calendar.due(start, workdays)
            due, fallback = result.at, result.fallback_years
        lead = self._settings.reminder.lead_workdays
        remind_at = self._calendar.sub_workdays(due, lead) if lead else None
        session.add(
            SlaClock(
                ticket_id=ticket.id,
                kind=kind,
                department=department or ticket.department,
                workdays=workdays,
                calendar_fallback=bool(fallback),
                started_at=start,
                due_at=due,
                remind_at=remind_at,
                active=True,
            )
        )
        note: dict[str, Any] = {"due_at": _iso(due)}
        if fallback:
            note["calendar_fallback_years"] = list(fallback)
        return note

    @staticmethod
    def _active_clocks(ticket: Ticket, kinds: Iterable[ClockKind]) -> list[SlaClock]:
        wanted = set(kinds)
        return [c for c in ticket.clocks if c.active and c.kind in wanted]

    def _meet(self, ticket: Ticket, kinds: Iterable[ClockKind], now: datetime) -> list[str]:
        """Stop running clocks of *kinds*; a late stop records the breach too."""
        met = []
        for clock in self._active_clocks(ticket, kinds):
            if clock.met_at is None:
                clock.met_at = now
                if now > clock.due_at and clock.breached_at is None:
                    clock.breached_at = now
                met.append(clock.kind.value)
        return met

    def _supersede(
        self,
        ticket: Ticket,
        kinds: Iterable[ClockKind],
        now: datetime,
        *,
        running_only: bool = False,
    ) -> None:
        """Retire the active clocks of *kinds* (rows are kept, never rewritten)."""
        for clock in self._active_clocks(ticket, kinds):
            if running_only and clock.met_at is not None:
                continue
            clock.active = False
            clock.superseded_at = now

    def _assigned_commissioner(self, enterprise: Enterprise | None, department: str) -> int | None:
        person = enterprise.commissioner if enterprise else None
        if person is not None and person.active and person.department == department:
            return person.id
        return None

    def _commissioner_named(self, session: Session, name: str, department: str) -> Commissioner:
        person = session.scalars(
            select(Commissioner).where(
                Commissioner.name == name.strip(),
                Commissioner.department == department,
                Commissioner.active.is_(True),
            )
        ).one_or_none()
        if person is None:
            raise TicketError(f"{department}没有名为「{name.strip()}」的在岗专员")
        return person

    # -- creation

    def create(
        self,
        description: str,
        *,
        department: str,
        rule: str,
        reason: str,
        actor: str,
        title: str | None = None,
        enterprise_uscc: str | None = None,
        channel_identity_id: int | None = None,
        commissioner_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """Open a ticket for the department a routing decision (*rule*, *reason*) chose."""
        text = _text(description, "诉求内容")
        dept = self._department(department)
        rule = rule.strip()
        if rule not in _route_rules():
            known = "、".join(sorted(_route_rules()))
            raise TicketError(f"未知的分派规则「{rule}」（应为 {known} 之一）")
        why = _text(reason, "分派理由")
        who = _text(actor, "操作人")
        heading = (title or "").strip() or text.splitlines()[0].strip()[:TITLE_LENGTH]
        now = self._now()
        from handoff.calendar import SHANGHAI

        with self._transaction(session) as session:
            enterprise = None
            if enterprise_uscc:
                from handoff.registry import find_enterprise

                enterprise = find_enterprise(session, enterprise_uscc)
                if enterprise is None:
                    raise TicketError(f"企业库中没有统一社会信用代码为 {enterprise_uscc} 的企业")
            if commissioner_id is None:
                commissioner_id = self._assigned_commissioner(enterprise, dept)
            ticket = Ticket(
                number=next_ticket_number(session, now.astimezone(SHANGHAI).date()),
                enterprise_id=enterprise.id if enterprise else None,
                channel_identity_id=channel_identity_id,
                title=heading[:200],
                description=text,
                department=dept,
                route_rule=rule,
                route_reason=why,
                commissioner_id=commissioner_id,
                state=TicketState.NEW,
                reopen_count=0,
                created_at=now,
                updated_at=now,
            )
            session.add(ticket)
            session.flush()
            data: dict[str, Any] = {"department": dept, "rule": rule}
            data["contact"] = self._start_clock(session, ticket, ClockKind.CONTACT, now)
            data["done"] = self._start_clock(session, ticket, ClockKind.DONE, now)
            self._event(session, ticket, now, who, Action.CREATE, None, why, data)
            if self._notifier is not None:
                self._notifier.created(session, ticket, now)
            return self._view(session, ticket.id)

    # -- the main line

    def accept(
        self,
        number: str,
        *,
        actor: str,
        commissioner: str | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """签收: contact with the enterprise is made; stops the contact clock."""
        who = _text(actor, "操作人")
        now = self._now()
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            before = self._move(ticket, Action.ACCEPT)
            data: dict[str, Any] = {"met": self._meet(ticket, [ClockKind.CONTACT], now)}
            if commissioner:
                person = self._commissioner_named(session, commissioner, ticket.department)
                ticket.commissioner_id = person.id
                data["commissioner"] = person.name
            self._event(session, ticket, now, who, Action.ACCEPT, before, None, data)
            return self._view(session, ticket.id)

    def start(
        self, number: str, *, actor: str, note: str | None = None, session: Session | None = None
    ) -> TicketView:
        """Start (or, after the meeting, resume) handling."""
        who = _text(actor, "操作人")
        now = self._now()
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            before = self._move(ticket, Action.START)
            self._event(session, ticket, now, who, Action.START, before, note)
            return self._view(session, ticket.id)

    def resolve(
        self, number: str, *, result: str, actor: str, session: Session | None = None
    ) -> TicketView:
        """办结 with a result text; stops the done clock and starts the feedback clock."""
        outcome = _text(result, "办理结果")
        who = _text(actor, "操作人")
        now = self._now()
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            before = self._move(ticket, Action.RESOLVE)
            ticket.result = outcome
            data: dict[str, Any] = {
                "result": outcome,
                "met": self._meet(ticket, [ClockKind.DONE, ClockKind.ESCALATION], now),
            }
            data["feedback"] = self._start_clock(session, ticket, ClockKind.FEEDBACK, now)
            self._event(session, ticket, now, who, Action.RESOLVE, before, None, data)
            pushed = self._notifier.resolved(session, ticket, now) if self._notifier else None
            if pushed:
                # the result went to the enterprise's chat (平台留言): that is the feedback
                before = self._move(ticket, Action.SEND_FEEDBACK)
                met = {"met": self._meet(ticket, [ClockKind.FEEDBACK], now)}
                self._event(
                    session, ticket, now, SYSTEM_ACTOR, Action.SEND_FEEDBACK, before, pushed, met
                )
            return self._view(session, ticket.id)

    def send_feedback(
        self, number: str, *, actor: str, note: str | None = None, session: Session | None = None
    ) -> TicketView:
        """The result was told to the enterprise; stops the feedback clock."""
        who = _text(actor, "操作人")
        now = self._now()
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            before = self._move(ticket, Action.SEND_FEEDBACK)
            data = {"met": self._meet(ticket, [ClockKind.FEEDBACK], now)}
            self._event(session, ticket, now, who, Action.SEND_FEEDBACK, before, note, data)
            return self._view(session, ticket.id)

    def record_survey(
        self,
        number: str,
        *,
        result: SurveyResult | str,
        actor: str,
        comment: str | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """Record the satisfaction callback; a second 不满意 (after 重办) closes the ticket."""
        try:
            verdict = SurveyResult(str(result).strip())
        except ValueError:
            options = "、".join(r.value for r in SurveyResult)
            raise TicketError(f"回访结果应为 {options} 之一，收到「{result}」") from None
        who = _text(actor, "操作人")
        remark = (comment or "").strip() or None
        now = self._now()
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            before = self._move(ticket, Action.RECORD_SURVEY)
            session.add(
                Survey(
                    ticket_id=ticket.id,
                    round=ticket.reopen_count,
                    result=verdict,
                    comment=remark,
                    actor=who,
                    at=now,
                )
            )
            data = {"result": verdict.value, "comment": remark, "round": ticket.reopen_count}
            self._event(session, ticket, now, who, Action.RECORD_SURVEY, before, remark, data)
            if verdict is SurveyResult.UNSATISFIED and ticket.reopen_count >= MAX_REOPENS:
                before = self._move(ticket, Action.CLOSE)
                self._supersede(ticket, list(ClockKind), now, running_only=True)
                self._event(
                    session,
                    ticket,
                    now,
                    who,
                    Action.CLOSE,
                    before,
                    "重办后企业仍不满意，按规定结案（不再重办）",
                    {"result": verdict.value, "automatic": True},
                )
            return self._view(session, ticket.id)

    def add_survey_comment(
        self, number: str, *, comment: str, actor: str, session: Session | None = None
    ) -> TicketView:
        """Add the enterprise's remarks to the latest callback (given after the rating)."""
        remark = _text(comment, "回访意见")
        who = _text(actor, "操作人")
        now = self._now()
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            survey = ticket.surveys[-1] if ticket.surveys else None
            if survey is None:
                raise TicketError(f"工单 {ticket.number} 还没有回访记录，无法补充意见")
            survey.comment = f"{survey.comment}\n{remark}" if survey.comment else remark
            data = {"round": survey.round, "comment": remark}
            self._event(session, ticket, now, who, Action.SURVEY_COMMENT, ticket.state, None, data)
            return self._view(session, ticket.id)

    def close(
        self, number: str, *, actor: str, reason: str | None = None, session: Session | None = None
    ) -> TicketView:
        """Close after the callback (or after feedback when the enterprise did not answer)."""
        who = _text(actor, "操作人")
        now = self._now()
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            before = self._move(ticket, Action.CLOSE)
            self._supersede(ticket, list(ClockKind), now, running_only=True)
            self._event(session, ticket, now, who, Action.CLOSE, before, reason)
            return self._view(session, ticket.id)

    # -- side roads

    def escalate(
        self,
        number: str,
        *,
        lead_department: str,
        deadline: datetime | date,
        actor: str,
        reason: str | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """提请联席会议: record the meeting's lead department and deadline.

        The deadline replaces the done clock (which is superseded, keeping any breach);
        a date means 24:00 of that day, Asia/Shanghai.
        """
        from handoff.calendar import END_OF_DAY, SHANGHAI

        lead = self._department(lead_department)
        who = _text(actor, "操作人")
        if isinstance(deadline, datetime):
            if deadline.tzinfo is None or deadline.utcoffset() is None:
                deadline = deadline.replace(tzinfo=SHANGHAI)
            due = deadline
        else:
            due = datetime.combine(deadline, END_OF_DAY, tzinfo=SHANGHAI)
        now = self._now()
        if due <= now:
            raise TicketError(f"联席会议完成时限 {_iso(due)} 已过，请给出将来的时间")
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            before = self._move(ticket, Action.ESCALATE)
            ticket.escalation_lead_department = lead
            ticket.escalation_deadline = due
            self._supersede(ticket, [ClockKind.DONE, ClockKind.ESCALATION], now)
            data = {
                "lead_department": lead,
                "deadline": _iso(due),
                "escalation": self._start_clock(
                    session, ticket, ClockKind.ESCALATION, now, due=due, department=lead
                ),
            }
            self._event(session, ticket, now, who, Action.ESCALATE, before, reason, data)
            return self._view(session, ticket.id)

    def transfer(
        self,
        number: str,
        *,
        to_department: str,
        reason: str,
        actor: str,
        session: Session | None = None,
    ) -> TicketView:
        """转派/退单 to another department: back to ``new``, the contact clock restarts."""
        target = self._department(to_department)
        why = _text(reason, "转派理由")
        who = _text(actor, "操作人")
        now = self._now()
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            if ticket.department == target and ticket.state in TRANSITIONS[Action.TRANSFER]:
                raise TicketError(f"工单 {ticket.number} 已由{target}承办，无需转派")
            before = self._move(ticket, Action.TRANSFER)
            source = ticket.department
            ticket.department = target
            ticket.commissioner_id = self._assigned_commissioner(ticket.enterprise, target)
            self._supersede(ticket, [ClockKind.CONTACT], now)
            data: dict[str, Any] = {"from_department": source, "to_department": target}
            data["contact"] = self._start_clock(session, ticket, ClockKind.CONTACT, now)
            self._event(session, ticket, now, who, Action.TRANSFER, before, why, data)
            if self._notifier is not None:
                self._notifier.created(session, ticket, now)
            return self._view(session, ticket.id)

    def add_helpers(
        self,
        number: str,
        *,
        departments: Sequence[str],
        actor: str,
        reason: str | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """协同: add helper departments to the lead department; each must acknowledge."""
        names: list[str] = []
        for name in departments:
            dept = self._department(name)
            if dept not in names:
                names.append(dept)
        if not names:
            raise TicketError("请至少指定一个协办部门")
        who = _text(actor, "操作人")
        now = self._now()
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            if ticket.state not in HELPER_STATES:
                raise TicketError(
                    f"工单 {ticket.number} 当前状态为「{ticket.state.label}」，不能再增加协办部门"
                )
            if ticket.department in names:
                raise TicketError(f"{ticket.department}是牵头部门，不能同时作为协办部门")
            present = {h.department for h in ticket.helpers}
            added = [n for n in names if n not in present]
            if not added:
                raise TicketError(f"{'、'.join(names)}已是本工单的协办部门")
            for dept in added:
                session.add(
                    TicketDepartment(
                        ticket_id=ticket.id, department=dept, added_at=now, added_by=who
                    )
                )
            data = {"departments": added}
            self._event(session, ticket, now, who, Action.ASSIST, ticket.state, reason, data)
            return self._view(session, ticket.id)

    def acknowledge_helper(
        self, number: str, *, department: str, actor: str, session: Session | None = None
    ) -> TicketView:
        """A helper department acknowledges its part of a co-handled ticket."""
        dept = self._department(department)
        who = _text(actor, "操作人")
        now = self._now()
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            if ticket.state not in HELPER_STATES:
                raise TicketError(
                    f"工单 {ticket.number} 当前状态为「{ticket.state.label}」，无需协办确认"
                )
            helper = next((h for h in ticket.helpers if h.department == dept), None)
            if helper is None:
                raise TicketError(f"{dept}不是工单 {ticket.number} 的协办部门")
            if helper.acknowledged_at is not None:
                raise TicketError(f"{dept}已于 {_iso(helper.acknowledged_at)} 确认协办")
            helper.acknowledged_at = now
            helper.acknowledged_by = who
            data = {"department": dept}
            self._event(session, ticket, now, who, Action.ACKNOWLEDGE, ticket.state, None, data)
            return self._view(session, ticket.id)

    def reopen(
        self, number: str, *, actor: str, reason: str | None = None, session: Session | None = None
    ) -> TicketView:
        """重办 after an unsatisfied callback, once: fresh contact and done clocks."""
        who = _text(actor, "操作人")
        now = self._now()
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            if ticket.state is TicketState.SURVEYED:
                last = ticket.surveys[-1] if ticket.surveys else None
                if last is None or last.result is not SurveyResult.UNSATISFIED:
                    raise TicketError(f"工单 {ticket.number} 的回访结果不是「不满意」，不能重办")
                if ticket.reopen_count >= MAX_REOPENS:
                    raise TicketError(
                        f"工单 {ticket.number} 已重办过 {MAX_REOPENS} 次，不能再次重办"
                    )
            before = self._move(ticket, Action.REOPEN)
            previous = ticket.result
            ticket.reopen_count += 1
            ticket.result = None
            self._supersede(ticket, list(ClockKind), now)
            data: dict[str, Any] = {"round": ticket.reopen_count, "previous_result": previous}
            data["contact"] = self._start_clock(session, ticket, ClockKind.CONTACT, now)
            data["done"] = self._start_clock(session, ticket, ClockKind.DONE, now)
            self._event(session, ticket, now, who, Action.REOPEN, before, reason, data)
            return self._view(session, ticket.id)

    # -- reading

    def get(self, number: str, *, session: Session | None = None) -> TicketView:
        """One ticket with its clocks, helpers, surveys and events."""
        with self._reading(session) as session:
            stmt = select(Ticket).where(Ticket.number == number.strip().upper()).options(*_LOAD)
            ticket = session.scalars(stmt).one_or_none()
            if ticket is None:
                raise TicketNotFound(number.strip())
            return TicketView.of(ticket)

    def list(
        self,
        *,
        state: TicketState | str | None = None,
        department: str | None = None,
        overdue: bool = False,
        now: datetime | None = None,
        limit: int | None = None,
        session: Session | None = None,
    ) -> builtins.list[TicketView]:
        """Tickets, newest first; filter by state, lead department or overdue at *now*."""
        stmt = select(Ticket).options(*_LOAD).order_by(Ticket.created_at.desc(), Ticket.id.desc())
        if state is not None:
            try:
                wanted = TicketState(str(state).strip())
            except ValueError:
                options = "、".join(s.value for s in TicketState)
                raise TicketError(f"未知的工单状态「{state}」（应为 {options} 之一）") from None
            stmt = stmt.where(Ticket.state == wanted)
        if department is not None:
            stmt = stmt.where(Ticket.department == self._department(department))
        if overdue:
            at = now or self._now()
            stmt = stmt.where(
                exists().where(
                    and_(
                        SlaClock.ticket_id == Ticket.id,
                        SlaClock.active.is_(True),
                        SlaClock.met_at.is_(None),
                        SlaClock.due_at < at,
                    )
                )
            )
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._reading(session) as session:
            return [TicketView.of(t) for t in session.scalars(stmt)]
