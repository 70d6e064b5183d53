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
    ChannelIdentity,
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
    TicketSource,
    TicketState,
    TranscriptLine,
    UrgeLevel,
)
from yxby.errors import RoutingError, TicketError

if TYPE_CHECKING:
    from handoff.calendar import WorkCalendar
    from handoff.sla import SlaSettings, TickReport
    from handoff.supervision import SupervisionSettings
    from routing.departments import DepartmentDirectory

__all__ = [
    "CLAIMING",
    "MANUAL_RULE",
    "MAX_REOPENS",
    "OPEN_STATES",
    "SYSTEM_ACTOR",
    "TRANSITIONS",
    "Action",
    "ClockView",
    "EventView",
    "HelperView",
    "IllegalTransition",
    "Rating",
    "StaleTicket",
    "SurveyView",
    "TicketNotFound",
    "TicketNotifier",
    "TicketRuleError",
    "TicketService",
    "TicketState",
    "TicketView",
    "conversation_lines",
    "next_ticket_number",
    "possible",
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
    URGE = "urge"
    PROGRESS = "progress"
    REPLY = "reply"
    NOTE = "note"
    ASSIGN = "assign"
    OPINION = "opinion"
    DECIDE = "decide"
    CALLBACK = "callback"
    RECALCULATE = "recalculate"

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
    Action.URGE: "催办",
    Action.PROGRESS: "进度反馈",
    Action.REPLY: "回复企业",
    Action.NOTE: "内部备注",
    Action.ASSIGN: "指派",
    Action.OPINION: "联席会议部门意见",
    Action.DECIDE: "联席会议决定",
    Action.CALLBACK: "政务办电话回访",
    Action.RECALCULATE: "按公布的放假安排重算时限",
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

OPEN_STATES = frozenset({S.NEW, S.ACCEPTED, S.IN_PROGRESS, S.ESCALATED})
"""States in which the department still works on the ticket (no result yet)."""
HELPER_STATES = OPEN_STATES
"""States in which helper departments may be added or acknowledge."""
ANY_STATE = frozenset(TicketState)

_STATE_RULES: Mapping[Action, frozenset[TicketState]] = MappingProxyType(
    {
        Action.PROGRESS: OPEN_STATES,
        Action.REPLY: ANY_STATE - {S.CLOSED},
        Action.NOTE: ANY_STATE,
        Action.ASSIGN: OPEN_STATES,
        Action.ASSIST: HELPER_STATES,
        Action.ACKNOWLEDGE: HELPER_STATES,
        Action.URGE: OPEN_STATES,
        Action.OPINION: frozenset({S.ESCALATED}),
        Action.DECIDE: frozenset({S.ESCALATED}),
        Action.CALLBACK: frozenset({S.RESOLVED, S.FEEDBACK_SENT, S.SURVEYED, S.CLOSED}),
        # 办结 straight after 签收 starts the work on the way (``resolve(start=True)``)
        Action.RESOLVE: frozenset({S.ACCEPTED, *TRANSITIONS[Action.RESOLVE]}),
    }
)
"""The states each action without a transition of its own (or with a shortcut) fits."""


def possible(view: TicketView) -> frozenset[Action]:
    """The actions the ticket's state (and its chat account) allows now — who may do them
    is the console's scope rule (:mod:`handoff.scope`), not this one."""
    found = {a for a, moves in TRANSITIONS.items() if view.state in moves}
    found |= {a for a, states in _STATE_RULES.items() if view.state in states}
    if view.channel_identity_id is None:
        found.discard(Action.REPLY)
    return frozenset(found)


CLAIMING = frozenset({Action.START, Action.RESOLVE, Action.ESCALATE, Action.SEND_FEEDBACK})
"""Actions by which the acting commissioner takes a ticket that nobody holds yet
(签收 always makes them the holder; 转派 re-assigns by the target department's 包保)."""


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

    def reopened(
        self, session: Session, ticket: Ticket, comment: str | None, now: datetime
    ) -> None:
        """重办 after 不满意: the handling commissioner must hear of it at once."""

    def survey_commented(
        self, session: Session, ticket: Ticket, comment: str, now: datetime
    ) -> None:
        """The enterprise said why it rated as it did: the handling commissioner hears it."""

    def closed_unsatisfied(self, session: Session, ticket: Ticket, now: datetime) -> None:
        """A second 不满意 closed the ticket: 政务办 is told (it goes into the assessment)."""

    def urged(
        self,
        session: Session,
        ticket: Ticket,
        note: str,
        now: datetime,
        *,
        level: UrgeLevel | None = None,
    ) -> None:
        """催办: someone chased the ticket; its handler hears it at once (督办 with a
        *level*: the department's commissioners and 负责人 too)."""

    def replied(self, session: Session, ticket: Ticket, text: str, now: datetime) -> None:
        """回复企业: a commissioner's message goes to the ticket's chat account."""

    def helpers_invited(
        self,
        session: Session,
        ticket: Ticket,
        departments: Sequence[str],
        reason: str | None,
        now: datetime,
    ) -> None:
        """协同: the invited helper departments' staff hear of the request at once."""

    def assigned(self, session: Session, ticket: Ticket, now: datetime) -> None:
        """指派: the commissioner now holding the ticket hears of it."""

    def accepted(self, session: Session, ticket: Ticket, now: datetime) -> None:
        """签收: the enterprise hears that a commissioner has taken its ticket."""

    def progressed(self, session: Session, ticket: Ticket, note: str, now: datetime) -> None:
        """进度: what the department says about the work so far reaches the enterprise."""

    def overdue(
        self,
        session: Session,
        ticket: Ticket,
        clock: SlaClock,
        expected: datetime | None,
        now: datetime,
    ) -> None:
        """The 办结 clock was breached: the enterprise gets an apology (once per clock) with
        when it may now expect the result (*expected*, ``None`` when not known)."""


class TicketNotFound(TicketError):
    """No ticket has the given number."""

    def __init__(self, number: str) -> None:
        self.number = number
        super().__init__(f"找不到工单 {number}")


class IllegalTransition(TicketError):
    """The action is not allowed from the ticket's current state.

    ``allowed`` holds the states the action could have been done from.
    """

    def __init__(self, number: str, action: Action, state: TicketState) -> None:
        moves = TRANSITIONS.get(action, {})
        self.number = number
        self.action = action
        self.state = state
        self.allowed: tuple[TicketState, ...] = tuple(moves)
        targets = sorted({t.label for t in moves.values()})
        allowed = "、".join(f"「{s.label}」" for s in moves) or "任何"
        to = f"「{'／'.join(targets)}」" if targets else "新状态"
        super().__init__(
            f"工单 {number} 不能从「{state.label}」变为{to}（{action.label}）："
            f"{action.label}只能在{allowed}状态下进行"
        )


class StaleTicket(TicketError):
    """The ticket changed since the person looked at it (a form older than its last event).

    ``expected`` is the version the form was made at, ``actual`` the ticket's version now.
    """

    def __init__(self, number: str, expected: int, actual: int) -> None:
        self.number = number
        self.expected = expected
        self.actual = actual
        super().__init__("该诉求已被他人更新，请查看最新状态后再操作")


class TicketRuleError(TicketError):
    """A rule other than the transition table refuses the action on this ticket.

    Already at that department, helper rules, reopen rules, an unknown commissioner…;
    ``number`` and ``state`` say which ticket and where it stood, ``action`` what was tried.
    """

    def __init__(
        self, number: str, state: TicketState, message: str, *, action: Action | None = None
    ) -> None:
        self.number = number
        self.state = state
        self.action = action
        super().__init__(message)


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
    opinion: str | None = None
    """What the helper department said when it acknowledged (协办意见)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "department": self.department,
            "added_at": _iso(self.added_at),
            "added_by": self.added_by,
            "acknowledged_at": _iso(self.acknowledged_at),
            "acknowledged_by": self.acknowledged_by,
            "opinion": self.opinion,
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
    channel_identity_id: int | None = None
    """The chat account the ticket was filed from (whom its pushes and links are for)."""
    source: TicketSource = TicketSource.OTHER
    """Where the need came in (a chat channel, the phone, 12345 …)."""
    clocks: tuple[ClockView, ...] = ()
    helpers: tuple[HelperView, ...] = ()
    surveys: tuple[SurveyView, ...] = ()
    events: tuple[EventView, ...] = field(default=(), repr=False)

    @property
    def version(self) -> int:
        """How many events the ticket has: it grows with every change (events are never
        deleted), so a form made at one version is stale at any other."""
        return len(self.events)

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
            "source": self.source.value,
            "source_label": self.source.label,
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
        opinions = {
            str(e.data.get("department")): e.data.get("opinion")
            for e in ticket.events
            if e.kind == Action.ACKNOWLEDGE.value and e.data
        }
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
            channel_identity_id=ticket.channel_identity_id,
            source=ticket.source,
            clocks=tuple(ClockView.of(c) for c in ticket.clocks),
            helpers=tuple(
                HelperView(
                    h.department,
                    h.added_at,
                    h.added_by,
                    h.acknowledged_at,
                    h.acknowledged_by,
                    opinions.get(h.department),
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


# ---------------------------------------------------------------------- conversation


def conversation_lines(session: Session, ticket: Ticket) -> builtins.list[TranscriptLine]:
    """The conversation around *ticket*: every line of its chat account from the question
    that led to it (its first dialogue turn, else its creation) until now, oldest first.
    Empty when the ticket has no chat account (filed from the phone, 12345 …)."""
    from handoff.conversations import DialogueTurn

    if ticket.channel_identity_id is None:
        return []
    since = session.scalar(
        select(DialogueTurn.at)
        .where(DialogueTurn.ticket_id == ticket.id)
        .order_by(DialogueTurn.at)
        .limit(1)
    )
    start = min(since, ticket.created_at) if since is not None else ticket.created_at
    return list(
        session.scalars(
            select(TranscriptLine)
            .where(
                TranscriptLine.channel_identity_id == ticket.channel_identity_id,
                TranscriptLine.at >= start,
            )
            .order_by(TranscriptLine.at, TranscriptLine.id)
        )
    )


# ---------------------------------------------------------------------------- service


def _text(value: str | None, what: str) -> str:
    cleaned = (value or "").strip()
    if not cleaned:
        raise TicketError(f"{what}不能为空")
    return cleaned


def _shanghai() -> Any:
    from handoff.calendar import SHANGHAI

    return SHANGHAI


def _verdict(result: SurveyResult | str) -> SurveyResult:
    try:
        return SurveyResult.parse(result)
    except ValueError as exc:
        raise TicketError(str(exc)) from None


@dataclass(frozen=True)
class Rating:
    """What :meth:`TicketService.rate` did: the ticket after it, and whether it was reopened."""

    view: TicketView
    verdict: SurveyResult
    reopened: bool = False

    @property
    def closed(self) -> bool:
        """A second 不满意 closed the ticket (no further 重办)."""
        return self.view.state is TicketState.CLOSED


def _route_rules() -> frozenset[str]:
    from routing import RouteRule

    return frozenset(rule.value for rule in RouteRule) | {MANUAL_RULE}


@dataclass
class _Step:
    """One action under way: the locked ticket, its session, the moment and who acts."""

    session: Session
    ticket: Ticket
    now: datetime
    actor: str
    action: Action
    before: TicketState
    commissioner: Commissioner | None = None
    """The registered commissioner performing the action, when the caller named one."""

    def refuse(self, message: str) -> TicketRuleError:
        """The error for a rule that forbids this action on this ticket."""
        return TicketRuleError(self.ticket.number, self.before, message, action=self.action)


_Body = Callable[[_Step], tuple[str | None, dict[str, Any]]]
"""What one action does beyond load → move → event → view: returns (reason, event data)."""


class _NothingToDo(Exception):
    """Raised by an action's body to write nothing (the transaction is rolled back)."""


def _nothing(step: _Step) -> tuple[str | None, dict[str, Any]]:
    return None, {}


class TicketService:
    """Creates tickets and moves them through their states; one transaction per call.

    *clock* returns the current aware time (injected so tests move time instead of
    sleeping); *calendar* counts working days; *settings* are the SLA settings
    (``config/sla.yaml``); *departments* validates department names.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        calendar: WorkCalendar,
        clock: Callable[[], datetime],
        *,
        settings: SlaSettings,
        departments: DepartmentDirectory,
        notifier: TicketNotifier | None = None,
        supervision: SupervisionSettings | None = None,
    ) -> None:
        self._notifier = notifier
        self._supervision = supervision
        self._sessions = session_factory
        self._calendar = calendar
        self._clock = clock
        self._settings = settings
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

    def _act(
        self,
        number: str,
        action: Action,
        actor: str,
        session: Session | None,
        body: _Body = _nothing,
        *,
        commissioner_id: int | None = None,
        then: Callable[[_Step], None] | None = None,
    ) -> TicketView:
        """The one path of every action: load (locked) → move → *body* → event → view.

        *body* does what is specific to the action and returns the event's reason and data;
        *then* runs after the event (follow-up moves, notices). *commissioner_id* is the
        registered commissioner performing the action: named in the event data and, for
        the :data:`CLAIMING` actions, made the ticket's commissioner when it has none.
        """
        who = _text(actor, "操作人")
        now = self._now()
        with self._transaction(session) as session:
            ticket = self._load(session, number)
            step = _Step(session, ticket, now, who, action, ticket.state)
            if commissioner_id is not None:
                step.commissioner = self._acting(step, commissioner_id)
            extra: dict[str, Any] = {}
            if step.commissioner is not None:
                extra["commissioner"] = step.commissioner.name
                if action in CLAIMING and ticket.commissioner_id is None:
                    self._assign(ticket, step.commissioner)
                    extra["assigned"] = step.commissioner.name
            self._apply(step, action, body, extra)
            if then is not None:
                then(step)
            return self._view(session, ticket.id)

    def _apply(
        self,
        step: _Step,
        action: Action,
        body: _Body = _nothing,
        extra: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> None:
        """Move the ticket by *action* (if it changes state), run *body*, write the event."""
        ticket = step.ticket
        step.action = action
        step.before = ticket.state
        if action in TRANSITIONS:
            self._move(ticket, action)
        reason, data = body(step)
        data = {**(extra or {}), **data}
        self._event(step, action, step.before, reason, data, actor=actor)

    @staticmethod
    def _event(
        step: _Step,
        kind: Action,
        from_state: TicketState | None,
        reason: str | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> None:
        ticket = step.ticket
        step.session.add(
            TicketEvent(
                ticket_id=ticket.id,
                at=step.now,
                actor=actor or step.actor,
                kind=kind.value,
                from_state=from_state,
                to_state=ticket.state,
                reason=reason,
                data=dict(data or {}),
            )
        )
        ticket.updated_at = step.now

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
        step: _Step,
        kind: ClockKind,
        *,
        due: datetime | None = None,
        department: str | None = None,
    ) -> dict[str, Any]:
        """Start a clock of *kind* now; it joins ``ticket.clocks`` so later steps of the
        same call (meeting it, superseding it) see it."""
        ticket, start = step.ticket, step.now
        workdays: int | None = None
        fallback: tuple[int, ...] = ()
        if due is None:
            workdays = self._settings.limit(kind)
            result = self._calendar.due(start, workdays)
            # weekends-only or statutory-rule years: the deadline is provisional
            due, fallback = result.at, result.fallback_years + result.statutory_years
        lead = self._settings.reminder.lead_workdays
        remind_at = self._calendar.sub_workdays(due, lead) if lead else None
        ticket.clocks.append(
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

    def _meet(self, step: _Step, *kinds: ClockKind) -> list[str]:
        """Stop running clocks of *kinds*; a late stop records the breach too."""
        met = []
        now = step.now
        for clock in self._active_clocks(step.ticket, kinds):
            if clock.met_at is None:
                clock.met_at = now
                if now > clock.due_at and clock.breached_at is None:
                    clock.breached_at = now
                met.append(clock.kind.value)
        return met

    def _supersede(self, step: _Step, *kinds: ClockKind, running_only: bool = False) -> None:
        """Retire the active clocks of *kinds* (rows are kept, never rewritten)."""
        for clock in self._active_clocks(step.ticket, kinds or list(ClockKind)):
            if running_only and clock.met_at is not None:
                continue
            clock.active = False
            clock.superseded_at = step.now

    @staticmethod
    def _assigned_commissioner(
        enterprise: Enterprise | None, department: str
    ) -> Commissioner | None:
        """The enterprise's 包保 commissioner, if active and in *department*."""
        person = enterprise.commissioner if enterprise else None
        if person is not None and person.active and person.department == department:
            return person
        return None

    @staticmethod
    def _assign(ticket: Ticket, person: Commissioner | None) -> None:
        ticket.commissioner = person
        ticket.commissioner_id = person.id if person else None

    def _acting(self, step: _Step, commissioner_id: int) -> Commissioner:
        person = step.session.get(Commissioner, commissioner_id)
        if person is None or not person.active:
            raise step.refuse(f"专员（编号 {commissioner_id}）未登记或已停用，不能办理工单")
        return person

    def _commissioner_named(self, step: _Step, name: str) -> Commissioner:
        department = step.ticket.department
        person = step.session.scalars(
            select(Commissioner).where(
                Commissioner.name == name.strip(),
                Commissioner.department == department,
                Commissioner.active.is_(True),
            )
        ).one_or_none()
        if person is None:
            raise step.refuse(f"{department}没有名为「{name.strip()}」的在岗专员")
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
        source: TicketSource | str | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """Open a ticket for the department a routing decision (*rule*, *reason*) chose.

        *source* is where the need came in (value or Chinese label); a ticket filed from a
        chat takes that chat's channel when no source is given.
        """
        text = _text(description, "诉求内容")
        try:
            origin = TicketSource.parse(source) if source is not None else None
        except ValueError as exc:
            raise TicketError(str(exc)) from None
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
                assigned = self._assigned_commissioner(enterprise, dept)
                commissioner_id = assigned.id if assigned else None
            if origin is None:
                channel = None
                if channel_identity_id is not None:
                    identity = session.get(ChannelIdentity, channel_identity_id)
                    channel = identity.channel if identity is not None else None
                origin = TicketSource.of_channel(channel)
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
                source=origin,
                reopen_count=0,
                created_at=now,
                updated_at=now,
                clocks=[],
            )
            session.add(ticket)
            session.flush()
            step = _Step(session, ticket, now, who, Action.CREATE, TicketState.NEW)
            data: dict[str, Any] = {"department": dept, "rule": rule, "source": origin.value}
            data["contact"] = self._start_clock(step, ClockKind.CONTACT)
            data["done"] = self._start_clock(step, ClockKind.DONE)
            self._event(step, Action.CREATE, None, why, data)
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
        commissioner_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """签收: contact with the enterprise is made; stops the contact clock.

        The ticket's commissioner becomes *commissioner* (a name in the lead department)
        or else the registered commissioner performing the action (*commissioner_id*).
        """

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            data: dict[str, Any] = {"met": self._meet(step, ClockKind.CONTACT)}
            holder = self._commissioner_named(step, commissioner) if commissioner else None
            holder = holder or step.commissioner
            if holder is not None:
                self._assign(step.ticket, holder)
                data["commissioner"] = holder.name
                if step.commissioner is not None and step.commissioner is not holder:
                    data["acting_commissioner"] = step.commissioner.name
            return None, data

        def then(step: _Step) -> None:
            if self._notifier is not None:
                self._notifier.accepted(step.session, step.ticket, step.now)

        return self._act(
            number,
            Action.ACCEPT,
            actor,
            session,
            body,
            commissioner_id=commissioner_id,
            then=then,
        )

    def progress(
        self,
        number: str,
        *,
        note: str,
        actor: str,
        commissioner_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """进度反馈: tell the enterprise how the work goes; no state changes.

        Allowed while the ticket is open (before 办结); the note is pushed to the enterprise.
        """
        remark = _text(note, "进度说明")

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            if step.ticket.state not in OPEN_STATES:
                raise step.refuse(
                    f"工单 {step.ticket.number} 已{step.ticket.state.label}，不能再反馈进度"
                )
            return remark, {}

        def then(step: _Step) -> None:
            if self._notifier is not None:
                self._notifier.progressed(step.session, step.ticket, remark, step.now)

        return self._act(
            number,
            Action.PROGRESS,
            actor,
            session,
            body,
            commissioner_id=commissioner_id,
            then=then,
        )

    def start(
        self,
        number: str,
        *,
        actor: str,
        note: str | None = None,
        commissioner_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """Start (or, after the meeting, resume) handling."""
        return self._act(
            number,
            Action.START,
            actor,
            session,
            lambda step: (note, {}),
            commissioner_id=commissioner_id,
        )

    def resolve(
        self,
        number: str,
        *,
        result: str,
        actor: str,
        commissioner_id: int | None = None,
        start: bool = False,
        session: Session | None = None,
    ) -> TicketView:
        """办结 with a result text; stops the done clock and starts the feedback clock.

        When the notifier pushed the result to the enterprise's chat, that is the feedback:
        the ticket moves on to ``feedback_sent`` and the feedback clock is met at once.
        With *start*, a ticket still ``accepted`` is started first (办结 straight after 签收:
        the work happened meanwhile), in the same transaction.
        """
        outcome = _text(result, "办理结果")
        if start:
            with self._transaction(session) as own:
                if self._load(own, number).state is TicketState.ACCEPTED:
                    self.start(
                        number,
                        actor=actor,
                        note="办结时开始办理",
                        commissioner_id=commissioner_id,
                        session=own,
                    )
                return self.resolve(
                    number,
                    result=outcome,
                    actor=actor,
                    commissioner_id=commissioner_id,
                    session=own,
                )

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            step.ticket.result = outcome
            data: dict[str, Any] = {
                "result": outcome,
                "met": self._meet(step, ClockKind.DONE, ClockKind.ESCALATION),
            }
            data["feedback"] = self._start_clock(step, ClockKind.FEEDBACK)
            return None, data

        def then(step: _Step) -> None:
            if self._notifier is None:
                return
            pushed = self._notifier.resolved(step.session, step.ticket, step.now)
            if pushed:  # the result went to the enterprise's chat (平台留言)
                self._apply(
                    step,
                    Action.SEND_FEEDBACK,
                    lambda step: (pushed, {"met": self._meet(step, ClockKind.FEEDBACK)}),
                    actor=SYSTEM_ACTOR,
                )

        return self._act(
            number, Action.RESOLVE, actor, session, body, commissioner_id=commissioner_id, then=then
        )

    def send_feedback(
        self,
        number: str,
        *,
        actor: str,
        note: str | None = None,
        commissioner_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """The result was told to the enterprise; stops the feedback clock."""
        return self._act(
            number,
            Action.SEND_FEEDBACK,
            actor,
            session,
            lambda step: (note, {"met": self._meet(step, ClockKind.FEEDBACK)}),
            commissioner_id=commissioner_id,
        )

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
        verdict = _verdict(result)
        remark = (comment or "").strip() or None

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            ticket = step.ticket
            ticket.surveys.append(
                Survey(
                    ticket_id=ticket.id,
                    round=ticket.reopen_count,
                    result=verdict,
                    comment=remark,
                    actor=step.actor,
                    at=step.now,
                )
            )
            return remark, {
                "result": verdict.value,
                "comment": remark,
                "round": ticket.reopen_count,
            }

        def then(step: _Step) -> None:
            if verdict is SurveyResult.UNSATISFIED and step.ticket.reopen_count >= MAX_REOPENS:
                self._apply(step, Action.CLOSE, closing)
                if self._notifier is not None:
                    self._notifier.closed_unsatisfied(step.session, step.ticket, step.now)

        def closing(step: _Step) -> tuple[str | None, dict[str, Any]]:
            self._supersede(step, running_only=True)
            reason = "重办后企业仍不满意，按规定结案（不再重办）"
            return reason, {"result": verdict.value, "automatic": True}

        return self._act(number, Action.RECORD_SURVEY, actor, session, body, then=then)

    def add_survey_comment(
        self, number: str, *, comment: str, actor: str, session: Session | None = None
    ) -> TicketView:
        """Add the enterprise's remarks to the latest callback (given after the rating)."""
        remark = _text(comment, "回访意见")

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            survey = step.ticket.surveys[-1] if step.ticket.surveys else None
            if survey is None:
                raise step.refuse(f"工单 {step.ticket.number} 还没有回访记录，无法补充意见")
            survey.comment = f"{survey.comment}\n{remark}" if survey.comment else remark
            return None, {"round": survey.round, "comment": remark}

        def then(step: _Step) -> None:
            if self._notifier is not None:
                self._notifier.survey_commented(step.session, step.ticket, remark, step.now)

        return self._act(number, Action.SURVEY_COMMENT, actor, session, body, then=then)

    def rate(
        self,
        number: str,
        *,
        result: SurveyResult | str,
        actor: str,
        comment: str | None = None,
        session: Session | None = None,
    ) -> Rating:
        """The enterprise's say on a result, as every interface takes it (one transaction).

        Records the callback; after 不满意 the ticket is reopened (重办) when it still may be
        — a second 不满意 closes it instead (:meth:`record_survey`); a *comment* is then
        added (:meth:`add_survey_comment`), so the handling commissioner hears it.
        ``IllegalTransition`` when the ticket is not awaiting a rating.
        """
        verdict = _verdict(result)
        with self._transaction(session) as session:
            view = self.record_survey(number, result=verdict, actor=actor, session=session)
            reopened = False
            if verdict is SurveyResult.UNSATISFIED and view.state is not TicketState.CLOSED:
                view = self.reopen(
                    number, actor=actor, reason="企业评价不满意，重办", session=session
                )
                reopened = True
            remark = (comment or "").strip()
            if remark:
                view = self.add_survey_comment(
                    number, comment=remark[:1000], actor=actor, session=session
                )
            return Rating(view, verdict, reopened=reopened)

    def urge(
        self,
        number: str,
        *,
        actor: str,
        note: str,
        level: UrgeLevel | str | None = None,
        suggestion: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """催办: chase an open ticket (the enterprise, or 政务办's 督办); no state changes.

        The ticket's commissioner — or, with none, its department — is told at once. A
        *level* (蓝/橙/红, 政务办's 督办) is kept in the event's ``data["level"]`` and the
        department's 负责人 hear it too; *suggestion* names the tick's suggestion confirmed.
        """
        remark = _text(note, "催办内容")
        try:
            grade = UrgeLevel.parse(level) if level is not None else None
        except ValueError as exc:
            raise TicketError(str(exc)) from None

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            if step.ticket.state in (TicketState.RESOLVED, TicketState.FEEDBACK_SENT,
                                     TicketState.SURVEYED, TicketState.CLOSED):  # fmt: skip
                raise step.refuse(
                    f"工单 {step.ticket.number} 已{step.ticket.state.label}，无需催办"
                )
            data: dict[str, Any] = {}
            if grade is not None:
                data["level"] = grade.value
            if suggestion is not None:
                data["suggestion"] = suggestion
            return remark, data

        def then(step: _Step) -> None:
            if self._notifier is not None:
                self._notifier.urged(step.session, step.ticket, remark, step.now, level=grade)

        return self._act(number, Action.URGE, actor, session, body, then=then)

    def close(
        self, number: str, *, actor: str, reason: str | None = None, session: Session | None = None
    ) -> TicketView:
        """Close after the callback (or after feedback when the enterprise did not answer)."""

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            self._supersede(step, running_only=True)
            return reason, {}

        return self._act(number, Action.CLOSE, actor, session, body)

    # -- side roads

    def escalate(
        self,
        number: str,
        *,
        actor: str,
        reason: str | None = None,
        lead_department: str | None = None,
        deadline: datetime | date | None = None,
        helpers: Sequence[str] = (),
        commissioner_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """提请联席会议: the ticket goes on the agenda of the next meeting with *reason*.

        The department keeps its done clock until the meeting decides (:meth:`decide`).
        Given *lead_department* and *deadline* as well, the decision is recorded at once in
        the same transaction (a 专题研究 held outside the system): two events.
        """
        if (lead_department is None) != (deadline is None):
            raise TicketError("联席会议的牵头部门和完成时限须同时给出")
        why = (reason or "").strip() or "承办单位提请联席会议专题研究"
        if lead_department is not None and deadline is not None:
            self._deadline(deadline)  # refuse a past deadline before changing anything
            self._department(lead_department)
            with self._transaction(session) as own:
                self.escalate(
                    number, actor=actor, reason=why, commissioner_id=commissioner_id, session=own
                )
                return self.decide(
                    number,
                    lead_department=lead_department,
                    deadline=deadline,
                    helpers=helpers,
                    actor=actor,
                    decision=why,
                    session=own,
                )

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            from handoff.models import JointMeeting, MeetingItem

            today = step.now.astimezone(_shanghai()).date()
            meeting = step.session.scalars(
                select(JointMeeting)
                .where(JointMeeting.held_on >= today)
                .order_by(JointMeeting.held_on, JointMeeting.id)
                .limit(1)
            ).first()
            item = MeetingItem(
                meeting_id=meeting.id if meeting else None,
                ticket_id=step.ticket.id,
                reason=why,
                proposed_by=step.actor,
                proposed_at=step.now,
                opinions={},
                helpers=[],
            )
            step.session.add(item)
            step.session.flush()
            data: dict[str, Any] = {"item": item.id}
            if meeting is not None:
                data["meeting"] = meeting.title
                data["held_on"] = meeting.held_on.isoformat()
            return why, data

        return self._act(
            number, Action.ESCALATE, actor, session, body, commissioner_id=commissioner_id
        )

    def _deadline(self, deadline: datetime | date) -> datetime:
        """A meeting's deadline as an aware moment (a date: 24:00 Shanghai); refused if past."""
        from handoff.calendar import END_OF_DAY, SHANGHAI

        if isinstance(deadline, datetime):
            if deadline.tzinfo is None or deadline.utcoffset() is None:
                deadline = deadline.replace(tzinfo=SHANGHAI)
            due = deadline
        else:
            due = datetime.combine(deadline, END_OF_DAY, tzinfo=SHANGHAI)
        if due <= self._now():
            raise TicketError(f"联席会议完成时限 {_iso(due)} 已过，请给出将来的时间")
        return due

    @staticmethod
    def _agenda_item(step: _Step) -> Any:
        from handoff.models import MeetingItem

        item = step.session.scalars(
            select(MeetingItem)
            .where(MeetingItem.ticket_id == step.ticket.id)
            .order_by(MeetingItem.id.desc())
            .limit(1)
            .with_for_update()
        ).first()
        if item is None:
            raise step.refuse(f"工单 {step.ticket.number} 不在联席会议议程上")
        return item

    def record_opinion(
        self,
        number: str,
        *,
        department: str,
        opinion: str,
        actor: str,
        commissioner_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """An involved department (the lead or a helper) gives its opinion on an escalated
        ticket for the meeting (研判意见); a later opinion of the same department replaces
        its earlier one on the agenda, both stay in the events."""
        dept = self._department(department)
        said = _text(opinion, "部门意见")

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            ticket = step.ticket
            if ticket.state is not TicketState.ESCALATED:
                raise step.refuse(
                    f"工单 {ticket.number} 当前状态为「{ticket.state.label}」，"
                    "只有提请联席会议的工单才能提交部门意见"
                )
            involved = {ticket.department, *(h.department for h in ticket.helpers)}
            if dept not in involved:
                raise step.refuse(f"{dept}不是工单 {ticket.number} 的承办或协办部门")
            item = self._agenda_item(step)
            if item.decided_at is not None:
                raise step.refuse(f"联席会议已对工单 {ticket.number} 作出决定，不能再提交意见")
            item.opinions = {
                **(item.opinions or {}),
                dept: {"opinion": said, "by": step.actor, "at": _iso(step.now)},
            }
            return said, {"department": dept, "item": item.id}

        return self._act(
            number, Action.OPINION, actor, session, body, commissioner_id=commissioner_id
        )

    def decide(
        self,
        number: str,
        *,
        lead_department: str,
        deadline: datetime | date,
        actor: str,
        helpers: Sequence[str] = (),
        decision: str | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """联席会议决定: lead department, helper departments and deadline for an escalated
        ticket. The done clock is superseded (keeping any breach) and the escalation clock
        starts, due at the deadline, answered for by the lead; new helpers join the ticket."""
        lead = self._department(lead_department)
        due = self._deadline(deadline)
        names: list[str] = []
        for name in helpers:
            dept = self._department(name)
            if dept == lead:
                raise TicketError(f"{lead}是牵头部门，不能同时作为协办部门")
            if dept not in names:
                names.append(dept)
        text = (decision or "").strip() or None

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            ticket = step.ticket
            if ticket.state is not TicketState.ESCALATED:
                raise step.refuse(
                    f"工单 {ticket.number} 当前状态为「{ticket.state.label}」，"
                    "只能对提请联席会议的工单作出决定"
                )
            item = self._agenda_item(step)
            if item.decided_at is not None:
                raise step.refuse(
                    f"联席会议已于 {_iso(item.decided_at)} 对工单 {ticket.number} 作出决定"
                )
            item.lead_department = lead
            item.helpers = list(names)
            item.deadline = due
            item.decision = text
            item.decided_at = step.now
            item.decided_by = step.actor
            ticket.escalation_lead_department = lead
            ticket.escalation_deadline = due
            present = {h.department for h in ticket.helpers}
            for dept in names:
                if dept not in present and dept != ticket.department:
                    ticket.helpers.append(
                        TicketDepartment(
                            ticket_id=ticket.id,
                            department=dept,
                            added_at=step.now,
                            added_by=step.actor,
                        )
                    )
            self._supersede(step, ClockKind.DONE, ClockKind.ESCALATION)
            clock = self._start_clock(step, ClockKind.ESCALATION, due=due, department=lead)
            data: dict[str, Any] = {
                "lead_department": lead,
                "helpers": names,
                "deadline": _iso(due),
                "escalation": clock,
                "item": item.id,
            }
            if item.meeting_id is not None:
                data["meeting_id"] = item.meeting_id
            return text, data

        return self._act(number, Action.DECIDE, actor, session, body)

    def record_callback(
        self,
        number: str,
        *,
        reached: bool,
        actor: str,
        reply_satisfaction: SurveyResult | str | None = None,
        result_satisfaction: SurveyResult | str | None = None,
        note: str | None = None,
        caller_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """政务办's phone callback (回访调查) on a ticket that has a result: whether the
        enterprise was reached and, if so, its satisfaction with the reply and with the
        result. Apart from the enterprise's own rating; no state changes."""
        from handoff.models import CallbackSurvey

        remark = (note or "").strip() or None
        if reached:
            if reply_satisfaction is None or result_satisfaction is None:
                raise TicketError("已接通的回访须记录对答复和对办理结果的满意度")
            on_reply: SurveyResult | None = _verdict(reply_satisfaction)
            on_result: SurveyResult | None = _verdict(result_satisfaction)
        else:
            if reply_satisfaction is not None or result_satisfaction is not None:
                raise TicketError("未接通的回访不能记录满意度")
            on_reply = on_result = None

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            ticket = step.ticket
            if ticket.state not in _STATE_RULES[Action.CALLBACK]:
                raise step.refuse(
                    f"工单 {ticket.number} 当前状态为「{ticket.state.label}」，办结后才能回访"
                )
            row = CallbackSurvey(
                ticket_id=ticket.id,
                called_at=step.now,
                caller_id=caller_id,
                caller=step.actor,
                reached=reached,
                reply_satisfaction=on_reply,
                result_satisfaction=on_result,
                note=remark,
            )
            step.session.add(row)
            step.session.flush()
            return remark, {
                "callback": row.id,
                "reached": reached,
                "reply_satisfaction": on_reply.value if on_reply else None,
                "result_satisfaction": on_result.value if on_result else None,
            }

        return self._act(number, Action.CALLBACK, actor, session, body)

    def transfer(
        self,
        number: str,
        *,
        to_department: str,
        reason: str,
        actor: str,
        commissioner_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """转派/退单 to another department: back to ``new``, the contact clock restarts.

        The ticket's commissioner becomes the enterprise's 包保 commissioner in the target
        department, else nobody; *commissioner_id* (who transfers) is only recorded.
        """
        target = self._department(to_department)
        why = _text(reason, "转派理由")

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            ticket = step.ticket
            if ticket.department == target:
                raise step.refuse(f"工单 {ticket.number} 已由{target}承办，无需转派")
            source = ticket.department
            ticket.department = target
            self._assign(ticket, self._assigned_commissioner(ticket.enterprise, target))
            self._supersede(step, ClockKind.CONTACT)
            data: dict[str, Any] = {"from_department": source, "to_department": target}
            data["contact"] = self._start_clock(step, ClockKind.CONTACT)
            return why, data

        def then(step: _Step) -> None:
            if self._notifier is not None:
                self._notifier.created(step.session, step.ticket, step.now)

        return self._act(
            number,
            Action.TRANSFER,
            actor,
            session,
            body,
            commissioner_id=commissioner_id,
            then=then,
        )

    def add_helpers(
        self,
        number: str,
        *,
        departments: Sequence[str],
        actor: str,
        reason: str | None = None,
        commissioner_id: int | None = None,
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

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            ticket = step.ticket
            if ticket.state not in HELPER_STATES:
                raise step.refuse(
                    f"工单 {ticket.number} 当前状态为「{ticket.state.label}」，不能再增加协办部门"
                )
            if ticket.department in names:
                raise step.refuse(f"{ticket.department}是牵头部门，不能同时作为协办部门")
            present = {h.department for h in ticket.helpers}
            added = [n for n in names if n not in present]
            if not added:
                raise step.refuse(f"{'、'.join(names)}已是本工单的协办部门")
            for dept in added:
                ticket.helpers.append(
                    TicketDepartment(
                        ticket_id=ticket.id, department=dept, added_at=step.now, added_by=step.actor
                    )
                )
            invited.extend(added)
            return reason, {"departments": added}

        def then(step: _Step) -> None:
            if self._notifier is not None:
                self._notifier.helpers_invited(step.session, step.ticket, invited, reason, step.now)

        invited: list[str] = []
        return self._act(
            number,
            Action.ASSIST,
            actor,
            session,
            body,
            commissioner_id=commissioner_id,
            then=then,
        )

    def acknowledge_helper(
        self,
        number: str,
        *,
        department: str,
        actor: str,
        opinion: str | None = None,
        commissioner_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """A helper department acknowledges its part of a co-handled ticket, optionally with
        its opinion (协办意见: kept in the event, shown with the helper)."""
        dept = self._department(department)
        said = (opinion or "").strip() or None

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            ticket = step.ticket
            if ticket.state not in HELPER_STATES:
                raise step.refuse(
                    f"工单 {ticket.number} 当前状态为「{ticket.state.label}」，无需协办确认"
                )
            helper = next((h for h in ticket.helpers if h.department == dept), None)
            if helper is None:
                raise step.refuse(f"{dept}不是工单 {ticket.number} 的协办部门")
            if helper.acknowledged_at is not None:
                raise step.refuse(f"{dept}已于 {_iso(helper.acknowledged_at)} 确认协办")
            helper.acknowledged_at = step.now
            helper.acknowledged_by = step.actor
            data: dict[str, Any] = {"department": dept}
            if said is not None:
                data["opinion"] = said
            return said, data

        return self._act(
            number, Action.ACKNOWLEDGE, actor, session, body, commissioner_id=commissioner_id
        )

    def reply(
        self,
        number: str,
        *,
        text: str,
        actor: str,
        commissioner_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """回复企业: a message to the enterprise through the ticket's chat account (the outbox
        holds it while the channel may not push); no state changes. Refused when the
        ticket has no chat account or is closed."""
        message = _text(text, "回复内容")

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            ticket = step.ticket
            if ticket.channel_identity_id is None:
                raise step.refuse(f"工单 {ticket.number} 没有企业的对话账号，无法在线回复")
            if ticket.state not in _STATE_RULES[Action.REPLY]:
                raise step.refuse(f"工单 {ticket.number} 已{ticket.state.label}，不能再回复")
            return message, {}

        def then(step: _Step) -> None:
            if self._notifier is not None:
                self._notifier.replied(step.session, step.ticket, message, step.now)

        return self._act(
            number,
            Action.REPLY,
            actor,
            session,
            body,
            commissioner_id=commissioner_id,
            then=then,
        )

    def note(
        self,
        number: str,
        *,
        text: str,
        actor: str,
        commissioner_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """内部备注: a note on the ticket for the staff only, in any state; never sent."""
        remark = _text(text, "备注内容")
        return self._act(
            number,
            Action.NOTE,
            actor,
            session,
            lambda step: (remark, {}),
            commissioner_id=commissioner_id,
        )

    def assign(
        self,
        number: str,
        *,
        commissioner: int,
        actor: str,
        reason: str | None = None,
        commissioner_id: int | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """指派: make the active commissioner *commissioner* (an id) of the lead department
        the ticket's holder while it is open; that person is told."""

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            ticket = step.ticket
            if ticket.state not in _STATE_RULES[Action.ASSIGN]:
                raise step.refuse(f"工单 {ticket.number} 已{ticket.state.label}，不能再指派")
            person = step.session.get(Commissioner, commissioner)
            if person is None or not person.active or person.department != ticket.department:
                raise step.refuse(f"只能指派给{ticket.department}的在岗专员")
            if ticket.commissioner_id == person.id:
                raise step.refuse(f"工单 {ticket.number} 已由{person.name}承办")
            before = ticket.commissioner.name if ticket.commissioner else None
            self._assign(ticket, person)
            return reason, {"from_commissioner": before, "to_commissioner": person.name}

        def then(step: _Step) -> None:
            if self._notifier is not None:
                self._notifier.assigned(step.session, step.ticket, step.now)

        return self._act(
            number,
            Action.ASSIGN,
            actor,
            session,
            body,
            commissioner_id=commissioner_id,
            then=then,
        )

    def check_version(self, number: str, version: int, *, session: Session) -> None:
        """Lock the ticket in *session* and raise :class:`StaleTicket` unless it is still at
        *version* (:attr:`TicketView.version`): call it first in the transaction of an
        action taken from a form, so a form older than the ticket makes no second change."""
        from sqlalchemy import func

        ticket = self._load(session, number)
        actual = session.scalar(
            select(func.count()).select_from(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
        )
        if int(actual or 0) != version:
            raise StaleTicket(ticket.number, version, int(actual or 0))

    def reopen(
        self, number: str, *, actor: str, reason: str | None = None, session: Session | None = None
    ) -> TicketView:
        """重办 after an unsatisfied callback, once: fresh contact and done clocks."""

        def body(step: _Step) -> tuple[str | None, dict[str, Any]]:
            ticket = step.ticket
            last = ticket.surveys[-1] if ticket.surveys else None
            if last is None or last.result is not SurveyResult.UNSATISFIED:
                raise step.refuse(f"工单 {ticket.number} 的回访结果不是「不满意」，不能重办")
            if ticket.reopen_count >= MAX_REOPENS:
                raise step.refuse(f"工单 {ticket.number} 已重办过 {MAX_REOPENS} 次，不能再次重办")
            previous = ticket.result
            ticket.reopen_count += 1
            ticket.result = None
            self._supersede(step)
            data: dict[str, Any] = {"round": ticket.reopen_count, "previous_result": previous}
            data["contact"] = self._start_clock(step, ClockKind.CONTACT)
            data["done"] = self._start_clock(step, ClockKind.DONE)
            return reason, data

        def then(step: _Step) -> None:
            if self._notifier is not None:
                self._notifier.reopened(step.session, step.ticket, reason, step.now)

        return self._act(number, Action.REOPEN, actor, session, body, then=then)

    # -- clocks

    def settle_provisional(self, actor: str = "系统") -> list[str]:
        """Recount the running deadlines that were provisional (counted over a year without
        a published holiday schedule) once the calendar has that year's schedule: each
        ticket so settled gets one event naming the old and new deadlines. Returns the
        ticket numbers. Idempotent; cheap when nothing is provisional (run by the tick)."""
        with self._sessions() as session:
            read_only(session)
            candidates = session.execute(
                select(SlaClock.ticket_id, SlaClock.started_at, SlaClock.workdays).where(
                    SlaClock.calendar_fallback.is_(True),
                    SlaClock.active.is_(True),
                    SlaClock.met_at.is_(None),
                    SlaClock.workdays.is_not(None),
                )
            ).all()
            ids = sorted(
                {
                    ticket_id
                    for ticket_id, start, n in candidates
                    if n is not None and not self._calendar.due(start, n).provisional
                }
            )
            numbers = session.scalars(select(Ticket.number).where(Ticket.id.in_(ids))).all()
        settled = []
        for number in sorted(numbers):
            try:
                self._act(number, Action.RECALCULATE, actor, None, self._recount)
            except _NothingToDo:  # another worker settled it first: nothing is written
                continue
            settled.append(number)
        return settled

    def _recount(self, step: _Step) -> tuple[str | None, dict[str, Any]]:
        changed = []
        lead = self._settings.reminder.lead_workdays
        for clock in step.ticket.clocks:
            if not (clock.calendar_fallback and clock.active and clock.met_at is None):
                continue
            if clock.workdays is None:
                continue
            result = self._calendar.due(clock.started_at, clock.workdays)
            if result.provisional:
                continue
            before = clock.due_at
            clock.due_at = result.at
            clock.remind_at = self._calendar.sub_workdays(result.at, lead) if lead else None
            clock.calendar_fallback = False
            changed.append({"kind": clock.kind.value, "from": _iso(before), "to": _iso(result.at)})
        if not changed:
            raise _NothingToDo
        return "国务院放假安排已公布，时限按正式安排重新计算", {"clocks": changed}

    def tick(self, now: datetime | None = None) -> TickReport:
        """One :func:`handoff.sla.tick` pass at *now* (default: the clock), with this
        service's settings, calendar and notifier (the enterprise's overdue apology), then
        the 督办 suggestions for overdue tickets (:meth:`handoff.supervision.Supervision.suggest`;
        ``config/supervision.yaml`` unless settings were given)."""
        from dataclasses import replace

        from handoff.sla import tick
        from handoff.supervision import Supervision, load_supervision_settings

        at = now or self._now()
        self.settle_provisional()
        report = tick(
            self._sessions,
            at,
            self._settings,
            notifier=self._notifier,
            calendar=self._calendar,
        )
        if self._supervision is None:
            self._supervision = load_supervision_settings()
        urges = Supervision(self, self._supervision).suggest(at)
        return replace(report, urges_suggested=urges.suggested, urges_confirmed=urges.confirmed)

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
        """Tickets, newest first; filter by state (value or Chinese label), lead department
        or overdue at *now*."""
        stmt = select(Ticket).options(*_LOAD).order_by(Ticket.created_at.desc(), Ticket.id.desc())
        if state is not None:
            try:
                wanted = TicketState.parse(state)
            except ValueError as exc:
                raise TicketError(str(exc)) from None
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
