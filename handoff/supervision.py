"""政务办's 督办/催办, 回访调查 and the 联席会议 agenda (``config/supervision.yaml``).

* 督办 levels — 蓝/橙/红 by the working days since the due time of the ticket's earliest
  overdue running clock (:func:`level_for`). The SLA tick suggests an urge per overdue ticket
  and level (:meth:`Supervision.suggest`, one row per clock and level, so ticking twice
  suggests nothing twice); 政务办 confirms it in one click (:meth:`Supervision.confirm`), or
  config confirms it at once. Every urge is a ticket event (``urge``, ``data["level"]``).
* 回访调查 — :meth:`Supervision.callback_list`: every ticket the enterprise rated 不满意 in
  the period, and a reproducible random sample of the other tickets closed in it, none
  called back yet; the callback itself is :meth:`TicketService.record_callback`.
* 联席会议 — 提请 (:meth:`TicketService.escalate`) puts a ticket on the agenda of the next
  meeting; :meth:`Supervision.schedule` creates a meeting and takes the waiting items;
  opinions and decisions are ticket events (:meth:`TicketService.record_opinion`,
  :meth:`TicketService.decide`); the minutes are :mod:`handoff.minutes`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session, selectinload

from handoff.calendar import SHANGHAI
from handoff.models import (
    CallbackSurvey,
    ClockKind,
    JointMeeting,
    MeetingItem,
    SlaClock,
    SurveyResult,
    Ticket,
    TicketEvent,
    TicketState,
    UrgeLevel,
    UrgeSuggestion,
)
from handoff.tickets import OPEN_STATES, Action, ClockView, TicketView
from yxby.errors import TicketError
from yxby.paths import config_dir
from yxby.yamlconf import StrictModel, load_model

if TYPE_CHECKING:
    from handoff.calendar import WorkCalendar
    from handoff.tickets import TicketService

__all__ = [
    "AgendaItem",
    "CallbackCandidate",
    "CallbackSettings",
    "LevelSettings",
    "MeetingView",
    "Suggested",
    "Supervision",
    "SupervisionSettings",
    "UrgeSuggestionView",
    "level_for",
    "load_supervision_settings",
    "sampled",
    "suggested_level",
]

log = logging.getLogger("yxby.supervision")

TICKET_RESULT_STATES = frozenset(
    {TicketState.RESOLVED, TicketState.FEEDBACK_SENT, TicketState.SURVEYED, TicketState.CLOSED}
)


# ------------------------------------------------------------------------------ settings


class LevelSettings(StrictModel):
    """Working days past due from which a 督办 turns 橙 and 红 (蓝 from the first moment)."""

    orange: int = Field(default=2, ge=1, le=60)
    red: int = Field(default=5, ge=2, le=120)

    @model_validator(mode="after")
    def _red_after_orange(self) -> LevelSettings:
        if self.red <= self.orange:
            raise ValueError(f"red ({self.red}) must be more than orange ({self.orange})")
        return self


class CallbackSettings(StrictModel):
    """The callback list's random sample of the tickets not rated 不满意."""

    sample_percent: float = Field(default=20, ge=0, le=100)
    seed: str = Field(default="yxby-callback", min_length=1)


class SupervisionSettings(StrictModel):
    """The whole ``config/supervision.yaml``."""

    levels: LevelSettings = LevelSettings()
    auto_confirm: bool = False
    actor: str = Field(default="政务办（自动督办）", min_length=1, max_length=64)
    callbacks: CallbackSettings = CallbackSettings()


def load_supervision_settings(path: Path | None = None) -> SupervisionSettings:
    """Load ``config/supervision.yaml`` (or *path*); ``ConfigError`` naming the bad key."""
    return load_model(path or config_dir() / "supervision.yaml", SupervisionSettings)


# -------------------------------------------------------------------------------- levels


def level_for(
    due: datetime, now: datetime, calendar: WorkCalendar, levels: LevelSettings
) -> tuple[UrgeLevel, int] | None:
    """The 督办 level of a clock due at *due*, at *now*, and the working days it is late
    (working days after the due date up to today); ``None`` when not yet due."""
    if now <= due:
        return None
    days = calendar.workdays_between(due, now)
    if days >= levels.red:
        return UrgeLevel.RED, days
    if days >= levels.orange:
        return UrgeLevel.ORANGE, days
    return UrgeLevel.BLUE, days


@dataclass(frozen=True)
class Suggested:
    """The level a ticket's 督办 would have now, with the clock that decides it."""

    level: UrgeLevel
    days_late: int
    clock: ClockView

    @property
    def text(self) -> str:
        """``红色督办 · 办结超期 6 个工作日`` (words beside the colour)."""
        late = f"超期 {self.days_late} 个工作日" if self.days_late else "已超期"
        return f"{self.level.label} · {self.clock.kind.label}时限{late}"


def _urgeable(clock: ClockView | SlaClock) -> bool:
    return clock.kind is not ClockKind.FEEDBACK


def suggested_level(
    view: TicketView, now: datetime, calendar: WorkCalendar, levels: LevelSettings
) -> Suggested | None:
    """The 督办 level of an open ticket at *now*: its earliest-due overdue running clock
    decides (the feedback clock runs after 办结, when there is nothing left to urge)."""
    if view.state not in OPEN_STATES:
        return None
    late = [c for c in view.running_clocks() if c.due_at < now and _urgeable(c)]
    if not late:
        return None
    clock = late[0]
    found = level_for(clock.due_at, now, calendar, levels)
    if found is None:  # pragma: no cover - late clocks are due before now
        return None
    return Suggested(found[0], found[1], clock)


def _insert_new(s: Session) -> Any:
    """``INSERT … ON CONFLICT (clock_id, level) DO NOTHING RETURNING id, ticket_id, level``."""
    from sqlalchemy.dialects import postgresql, sqlite

    pg = s.get_bind().dialect.name == "postgresql"
    stmt: Any = postgresql.insert(UrgeSuggestion) if pg else sqlite.insert(UrgeSuggestion)
    return stmt.on_conflict_do_nothing(index_elements=["clock_id", "level"]).returning(
        UrgeSuggestion.id, UrgeSuggestion.ticket_id, UrgeSuggestion.level
    )


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def sampled(number: str, period: str, seed: str, percent: float) -> bool:
    """Whether ticket *number* is in the callback sample of *period* (reproducible: the
    same seed, period and percentage always pick the same tickets, whatever else exists)."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"{seed}|{period}|{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10_000 < round(percent * 100)


# --------------------------------------------------------------------------------- views


def _local(moment: datetime | None) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if moment else "—"


@dataclass(frozen=True)
class UrgeSuggestionView:
    """A pending 督办 suggestion as the console and the CLI list it."""

    id: int
    number: str
    title: str
    department: str
    commissioner: str | None
    clock_kind: ClockKind
    due_at: datetime
    level: UrgeLevel
    days_late: int
    suggested_at: datetime

    @property
    def note(self) -> str:
        """The urge's default wording."""
        return (
            f"{self.level.label}：工单「{self.clock_kind.label}」时限已于 {_local(self.due_at)} "
            f"到期，已超期 {self.days_late} 个工作日，请立即办理并反馈进度。"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "number": self.number,
            "title": self.title,
            "department": self.department,
            "commissioner": self.commissioner,
            "clock": self.clock_kind.value,
            "due_at": self.due_at.astimezone(SHANGHAI).isoformat(),
            "level": self.level.value,
            "level_label": self.level.label,
            "days_late": self.days_late,
            "suggested_at": self.suggested_at.astimezone(SHANGHAI).isoformat(),
        }


@dataclass(frozen=True)
class CallbackCandidate:
    """A ticket on the callback list, and why it is there."""

    number: str
    title: str
    department: str
    enterprise: str | None
    state: TicketState
    why: str
    """``不满意`` (the enterprise rated it so) or ``抽样`` (in the random sample)."""
    attempts: int
    """Callbacks tried without reaching the enterprise."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "number": self.number,
            "title": self.title,
            "department": self.department,
            "enterprise": self.enterprise,
            "state": self.state.value,
            "why": self.why,
            "attempts": self.attempts,
        }


@dataclass(frozen=True)
class AgendaItem:
    """One escalated ticket on a meeting's agenda."""

    id: int
    number: str
    title: str
    department: str
    helpers: tuple[str, ...]
    reason: str
    proposed_by: str
    proposed_at: datetime
    opinions: dict[str, dict[str, Any]]
    state: TicketState
    meeting_id: int | None
    decision: str | None = None
    lead_department: str | None = None
    decided_helpers: tuple[str, ...] = ()
    deadline: datetime | None = None
    decided_at: datetime | None = None

    @property
    def involved(self) -> tuple[str, ...]:
        """The departments asked for an opinion: the lead, then the helpers."""
        return (self.department, *[h for h in self.helpers if h != self.department])

    @property
    def decided(self) -> bool:
        """Whether the meeting decided this item."""
        return self.decided_at is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "number": self.number,
            "title": self.title,
            "department": self.department,
            "helpers": list(self.helpers),
            "reason": self.reason,
            "proposed_by": self.proposed_by,
            "proposed_at": self.proposed_at.astimezone(SHANGHAI).isoformat(),
            "opinions": self.opinions,
            "state": self.state.value,
            "meeting_id": self.meeting_id,
            "decision": self.decision,
            "lead_department": self.lead_department,
            "decided_helpers": list(self.decided_helpers),
            "deadline": self.deadline.astimezone(SHANGHAI).isoformat() if self.deadline else None,
            "decided_at": (
                self.decided_at.astimezone(SHANGHAI).isoformat() if self.decided_at else None
            ),
        }

    @classmethod
    def of(cls, item: MeetingItem) -> AgendaItem:
        """Snapshot of an item row (with its ticket and the ticket's helpers loaded)."""
        ticket = item.ticket
        return cls(
            id=item.id,
            number=ticket.number,
            title=ticket.title,
            department=ticket.department,
            helpers=tuple(h.department for h in ticket.helpers),
            reason=item.reason,
            proposed_by=item.proposed_by,
            proposed_at=item.proposed_at,
            opinions=dict(item.opinions or {}),
            state=ticket.state,
            meeting_id=item.meeting_id,
            decision=item.decision,
            lead_department=item.lead_department,
            decided_helpers=tuple(item.helpers or ()),
            deadline=item.deadline,
            decided_at=item.decided_at,
        )


@dataclass(frozen=True)
class MeetingView:
    """A 联席会议 with its agenda."""

    id: int
    held_on: date
    title: str
    doc_number: str | None
    attendance: tuple[str, ...]
    items: tuple[AgendaItem, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "held_on": self.held_on.isoformat(),
            "title": self.title,
            "doc_number": self.doc_number,
            "attendance": list(self.attendance),
            "items": [i.to_dict() for i in self.items],
        }

    @classmethod
    def of(cls, meeting: JointMeeting, items: Iterable[MeetingItem] | None = None) -> MeetingView:
        """Snapshot of a meeting row (and *items*, default its own)."""
        rows = meeting.items if items is None else items
        return cls(
            id=meeting.id,
            held_on=meeting.held_on,
            title=meeting.title,
            doc_number=meeting.doc_number,
            attendance=tuple(meeting.attendance or ()),
            items=tuple(AgendaItem.of(i) for i in rows),
        )


@dataclass(frozen=True)
class SuggestReport:
    """What one :meth:`Supervision.suggest` pass did."""

    suggested: int = 0
    confirmed: int = 0
    dropped: int = 0


_ITEM_LOAD = (selectinload(MeetingItem.ticket).selectinload(Ticket.helpers),)


# ------------------------------------------------------------------------------- service


class Supervision:
    """督办, 回访 and 联席会议 on top of a :class:`TicketService` (its sessions, calendar,
    clock); every change to a ticket goes through the ticket service as an event."""

    def __init__(self, tickets: TicketService, settings: SupervisionSettings | None = None):
        self.tickets = tickets
        self.settings = settings or load_supervision_settings()
        self._sessions = tickets._sessions
        self.calendar: WorkCalendar = tickets._calendar

    def now(self) -> datetime:
        """The service's clock."""
        return self.tickets._now()

    def _tx(self, session: Session | None) -> Any:
        """Our own transaction, or a savepoint in the caller's (an audit row may join it)."""
        return self.tickets._transaction(session)

    # -- levels and suggestions

    def level(self, view: TicketView, now: datetime | None = None) -> Suggested | None:
        """The level :func:`suggested_level` gives *view* now."""
        return suggested_level(view, now or self.now(), self.calendar, self.settings.levels)

    def suggest(self, now: datetime | None = None) -> SuggestReport:
        """Suggest a 督办 for every open ticket with an overdue clock, at its level now.

        Idempotent: one suggestion per clock and level; a higher level drops the lower one
        still waiting; an urge 政务办 already made at that level or above (since the clock
        fell due) makes none. With ``auto_confirm`` each new one is urged at once.
        """
        at = now or self.now()
        levels = self.settings.levels
        suggested = dropped = 0
        made: list[int] = []
        with self._sessions.begin() as s:
            clocks = s.scalars(
                select(SlaClock)
                .join(SlaClock.ticket)
                .options(selectinload(SlaClock.ticket))
                .where(
                    SlaClock.active.is_(True),
                    SlaClock.met_at.is_(None),
                    SlaClock.due_at < at,
                    SlaClock.kind != ClockKind.FEEDBACK,
                    Ticket.state.in_(list(OPEN_STATES)),
                )
                .order_by(SlaClock.due_at, SlaClock.id)
            ).all()
            deciding: dict[int, SlaClock] = {}
            for clock in clocks:
                deciding.setdefault(clock.ticket_id, clock)
            pending = s.scalars(
                select(UrgeSuggestion).where(
                    UrgeSuggestion.confirmed_at.is_(None), UrgeSuggestion.dropped_at.is_(None)
                )
            ).all()
            for row in pending:
                current = deciding.get(row.ticket_id)
                if current is None or current.id != row.clock_id:
                    row.dropped_at = at
                    dropped += 1
            highest = self._highest(s, list(deciding.values()))
            wanted: list[dict[str, Any]] = []
            for ticket_id, clock in deciding.items():
                found = level_for(clock.due_at, at, self.calendar, levels)
                if found is None:  # pragma: no cover - selected as overdue
                    continue
                level, days = found
                if highest.get(clock.id, -1) < level.rank:
                    wanted.append({"ticket_id": ticket_id, "clock_id": clock.id, "level": level,
                                   "days_late": days, "suggested_at": at})  # fmt: skip
            # one statement; a row another worker inserted meanwhile is skipped, not an error
            for chunk in range(0, len(wanted), 500):
                for sid, ticket_id, level in s.execute(
                    _insert_new(s).values(wanted[chunk : chunk + 500])
                ):
                    rank = UrgeLevel(level).rank
                    for old in pending:
                        lower = old.level.rank < rank
                        if old.ticket_id == ticket_id and old.dropped_at is None and lower:
                            old.dropped_at = at
                            dropped += 1
                    suggested += 1
                    made.append(sid)
        confirmed = 0
        if self.settings.auto_confirm:
            for sid in made:
                try:
                    self.confirm(sid, actor=self.settings.actor)
                    confirmed += 1
                except TicketError as exc:
                    log.warning("automatic 督办 %s not made: %s", sid, exc)
        return SuggestReport(suggested, confirmed, dropped)

    @staticmethod
    def _highest(s: Session, clocks: Sequence[SlaClock]) -> dict[int, int]:
        """Per clock id: the highest level rank already suggested for it, or urged by 政务办
        on its ticket since it fell due (two queries for the whole pass)."""
        found: dict[int, int] = {}
        by_id = {c.id: c for c in clocks}
        for chunk in _chunks(list(by_id), 500):
            for clock_id, level in s.execute(
                select(UrgeSuggestion.clock_id, UrgeSuggestion.level).where(
                    UrgeSuggestion.clock_id.in_(chunk)
                )
            ):
                found[clock_id] = max(found.get(clock_id, -1), UrgeLevel(level).rank)
            deciding = {by_id[i].ticket_id: by_id[i] for i in chunk}
            for ticket_id, at, data in s.execute(
                select(TicketEvent.ticket_id, TicketEvent.at, TicketEvent.data).where(
                    TicketEvent.ticket_id.in_(list(deciding)),
                    TicketEvent.kind == Action.URGE.value,
                )
            ):
                clock = deciding[ticket_id]
                named = (data or {}).get("level")
                if named and at >= clock.due_at:
                    rank = UrgeLevel(named).rank
                    found[clock.id] = max(found.get(clock.id, -1), rank)
        return found

    def suggestions(self) -> list[UrgeSuggestionView]:
        """Pending suggestions on tickets still open, reddest and latest first."""
        with self._sessions() as s:
            rows = s.scalars(
                select(UrgeSuggestion)
                .join(UrgeSuggestion.ticket)
                .join(UrgeSuggestion.clock)
                .options(
                    selectinload(UrgeSuggestion.ticket).selectinload(Ticket.commissioner),
                    selectinload(UrgeSuggestion.clock),
                )
                .where(
                    UrgeSuggestion.confirmed_at.is_(None),
                    UrgeSuggestion.dropped_at.is_(None),
                    Ticket.state.in_(list(OPEN_STATES)),
                    SlaClock.active.is_(True),
                    SlaClock.met_at.is_(None),
                )
            ).all()
            views = [
                UrgeSuggestionView(
                    id=r.id,
                    number=r.ticket.number,
                    title=r.ticket.title,
                    department=r.ticket.department,
                    commissioner=r.ticket.commissioner.name if r.ticket.commissioner else None,
                    clock_kind=r.clock.kind,
                    due_at=r.clock.due_at,
                    level=r.level,
                    days_late=r.days_late,
                    suggested_at=r.suggested_at,
                )
                for r in rows
            ]
        return sorted(views, key=lambda v: (-v.level.rank, -v.days_late, v.number))

    def confirm(
        self,
        suggestion_id: int,
        *,
        actor: str,
        note: str | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """Urge as suggested (one click): the urge event names the level and the suggestion."""
        with self._tx(session) as s:
            row = s.scalars(
                select(UrgeSuggestion)
                .where(UrgeSuggestion.id == suggestion_id)
                .options(selectinload(UrgeSuggestion.ticket), selectinload(UrgeSuggestion.clock))
                .with_for_update(of=UrgeSuggestion)
            ).one_or_none()
            if row is None:
                raise TicketError(f"没有编号为 {suggestion_id} 的督办建议")
            if row.confirmed_at is not None:
                raise TicketError(
                    f"督办建议 {suggestion_id} 已由{row.confirmed_by}于 "
                    f"{_local(row.confirmed_at)} 确认"
                )
            lapsed = not row.clock.active or row.clock.met_at is not None
            if row.dropped_at is not None or lapsed:
                raise TicketError(f"督办建议 {suggestion_id} 已失效（工单已办理或已升级督办）")
            view = UrgeSuggestionView(
                row.id, row.ticket.number, row.ticket.title, row.ticket.department, None,
                row.clock.kind, row.clock.due_at, row.level, row.days_late, row.suggested_at,
            )  # fmt: skip
            result = self.tickets.urge(
                view.number,
                actor=actor,
                note=(note or "").strip() or view.note,
                level=row.level,
                suggestion=row.id,
                session=s,
            )
            row.confirmed_at = self.now()
            row.confirmed_by = actor
            return result

    def urge(
        self,
        number: str,
        *,
        actor: str,
        note: str | None = None,
        level: UrgeLevel | str | None = None,
        session: Session | None = None,
    ) -> TicketView:
        """政务办's own 督办 of a ticket: at *level*, by default the suggested one (蓝 when
        the ticket is not overdue); waiting suggestions it covers count as confirmed."""
        with self._tx(session) as s:
            current = self.tickets.get(number, session=s)
            found = self.level(current)
            try:
                grade = UrgeLevel.parse(level) if level else None
            except ValueError as exc:
                raise TicketError(str(exc)) from None
            grade = grade or (found.level if found else UrgeLevel.BLUE)
            text = (note or "").strip()
            if not text:
                text = f"{grade.label}：请立即办理并反馈进度。"
                if found is not None:
                    text = f"{grade.label}：{found.text.split(' · ')[1]}，请立即办理并反馈进度。"
            view = self.tickets.urge(number, actor=actor, note=text, level=grade, session=s)
            ticket_id = s.scalar(select(Ticket.id).where(Ticket.number == view.number))
            for row in s.scalars(
                select(UrgeSuggestion).where(
                    UrgeSuggestion.ticket_id == ticket_id,
                    UrgeSuggestion.confirmed_at.is_(None),
                    UrgeSuggestion.dropped_at.is_(None),
                )
            ):
                if row.level.rank <= grade.rank:
                    row.confirmed_at = self.now()
                    row.confirmed_by = actor
            return view

    # -- callbacks

    def callback_list(
        self,
        start: date,
        end: date,
        *,
        percent: float | None = None,
        seed: str | None = None,
    ) -> list[CallbackCandidate]:
        """Tickets to call back for the period *start*–*end* (dates, Shanghai, inclusive):
        every one the enterprise rated 不满意 in it, then a sample of the others closed in
        it (``percent`` of them, default from config), none reached by a callback since."""
        if end < start:
            raise TicketError(f"回访期间的结束日期 {end} 早于开始日期 {start}")
        pct = self.settings.callbacks.sample_percent if percent is None else percent
        if not 0 <= pct <= 100:
            raise TicketError(f"抽样比例应在 0 到 100 之间，收到 {pct:g}")
        salt = seed or self.settings.callbacks.seed
        since = datetime.combine(start, datetime.min.time(), tzinfo=SHANGHAI)
        until = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=SHANGHAI)
        period = f"{start.isoformat()}~{end.isoformat()}"
        from handoff.models import Survey

        with self._sessions() as s:
            unhappy = (
                s.scalars(
                    select(Ticket)
                    .join(Survey, Survey.ticket_id == Ticket.id)
                    .options(selectinload(Ticket.enterprise))
                    .where(
                        Survey.result == SurveyResult.UNSATISFIED,
                        Survey.at >= since,
                        Survey.at < until,
                        ~exists().where(
                            and_(
                                CallbackSurvey.ticket_id == Ticket.id,
                                CallbackSurvey.reached.is_(True),
                                CallbackSurvey.called_at >= Survey.at,
                            )
                        ),
                    )
                    .order_by(Ticket.number)
                )
                .unique()
                .all()
            )
            closed = (
                s.scalars(
                    select(Ticket)
                    .join(TicketEvent, TicketEvent.ticket_id == Ticket.id)
                    .options(selectinload(Ticket.enterprise))
                    .where(
                        TicketEvent.kind == Action.CLOSE.value,
                        TicketEvent.at >= since,
                        TicketEvent.at < until,
                        ~exists().where(
                            and_(
                                CallbackSurvey.ticket_id == Ticket.id,
                                CallbackSurvey.reached.is_(True),
                            )
                        ),
                    )
                    .order_by(Ticket.number)
                )
                .unique()
                .all()
            )
            chosen: list[tuple[Ticket, str]] = [(t, "不满意") for t in unhappy]
            seen = {t.id for t in unhappy}
            chosen += [
                (t, "抽样")
                for t in closed
                if t.id not in seen and sampled(t.number, period, salt, pct)
            ]
            ids = [t.id for t, _ in chosen]
            tries: dict[int, int] = {}
            for tid in s.scalars(
                select(CallbackSurvey.ticket_id).where(
                    CallbackSurvey.ticket_id.in_(ids), CallbackSurvey.reached.is_(False)
                )
            ):
                tries[tid] = tries.get(tid, 0) + 1
            return [
                CallbackCandidate(
                    number=t.number,
                    title=t.title,
                    department=t.department,
                    enterprise=t.enterprise.name if t.enterprise else None,
                    state=t.state,
                    why=why,
                    attempts=tries.get(t.id, 0),
                )
                for t, why in chosen
            ]

    def callbacks(self, number: str) -> list[CallbackSurvey]:
        """The callbacks recorded on a ticket, oldest first (detached rows)."""
        with self._sessions() as s:
            rows = s.scalars(
                select(CallbackSurvey)
                .join(CallbackSurvey.ticket)
                .where(Ticket.number == number.strip().upper())
                .order_by(CallbackSurvey.called_at, CallbackSurvey.id)
            ).all()
            s.expunge_all()
            return list(rows)

    # -- the 联席会议

    def schedule(
        self,
        held_on: date,
        *,
        title: str | None = None,
        doc_number: str | None = None,
        attendance: Sequence[str] = (),
        session: Session | None = None,
    ) -> MeetingView:
        """Call a meeting on *held_on*; every item still waiting (never on a meeting, or on
        an earlier one that did not decide it) goes on its agenda."""
        today = self.now().astimezone(SHANGHAI).date()
        if held_on < today:
            raise TicketError(f"会议日期 {held_on} 已过，请给出今天或以后的日期")
        day = f"{held_on.year}年{held_on.month}月{held_on.day}日"
        name = (title or "").strip() or f"优化营商环境工作联席会议（{day}）"
        people = [p.strip() for p in attendance if p and p.strip()]
        with self._tx(session) as s:
            meeting = JointMeeting(
                held_on=held_on,
                title=name[:200],
                doc_number=(doc_number or "").strip() or None,
                attendance=people,
                created_at=self.now(),
            )
            s.add(meeting)
            s.flush()
            earlier = select(JointMeeting.id).where(JointMeeting.held_on < held_on)
            for item in s.scalars(
                select(MeetingItem)
                .join(MeetingItem.ticket)
                .where(
                    MeetingItem.decided_at.is_(None),
                    Ticket.state == TicketState.ESCALATED,
                    or_(MeetingItem.meeting_id.is_(None), MeetingItem.meeting_id.in_(earlier)),
                )
            ):
                item.meeting_id = meeting.id
            s.flush()
            s.refresh(meeting, ["items"])
            return self._meeting(s, meeting)

    def _meeting(self, s: Session, meeting: JointMeeting) -> MeetingView:
        items = s.scalars(
            select(MeetingItem)
            .where(MeetingItem.meeting_id == meeting.id)
            .options(*_ITEM_LOAD)
            .order_by(MeetingItem.id)
        ).all()
        return MeetingView.of(meeting, items)

    def meetings(self) -> list[MeetingView]:
        """Every meeting, the latest first, with its agenda."""
        with self._sessions() as s:
            rows = s.scalars(
                select(JointMeeting).order_by(JointMeeting.held_on.desc(), JointMeeting.id.desc())
            ).all()
            return [self._meeting(s, m) for m in rows]

    def meeting(self, meeting_id: int | None = None) -> MeetingView | None:
        """Meeting *meeting_id*, or by default the next one (today or later, else the
        latest); ``None`` when there is none."""
        with self._sessions() as s:
            if meeting_id is not None:
                found = s.get(JointMeeting, meeting_id)
                if found is None:
                    raise TicketError(f"没有编号为 {meeting_id} 的联席会议")
                return self._meeting(s, found)
            today = self.now().astimezone(SHANGHAI).date()
            found = (
                s.scalars(
                    select(JointMeeting)
                    .where(JointMeeting.held_on >= today)
                    .order_by(JointMeeting.held_on, JointMeeting.id)
                    .limit(1)
                ).first()
                or s.scalars(
                    select(JointMeeting).order_by(JointMeeting.held_on.desc()).limit(1)
                ).first()
            )
            return self._meeting(s, found) if found is not None else None

    def waiting(self) -> list[AgendaItem]:
        """Escalated tickets waiting for a meeting to be called (on no meeting yet)."""
        with self._sessions() as s:
            rows = s.scalars(
                select(MeetingItem)
                .where(MeetingItem.meeting_id.is_(None), MeetingItem.decided_at.is_(None))
                .options(*_ITEM_LOAD)
                .order_by(MeetingItem.id)
            ).all()
            return [AgendaItem.of(i) for i in rows]

    def item(self, number: str) -> AgendaItem | None:
        """The latest agenda item of ticket *number*, if it was ever escalated."""
        with self._sessions() as s:
            row = s.scalars(
                select(MeetingItem)
                .join(MeetingItem.ticket)
                .where(Ticket.number == number.strip().upper())
                .options(*_ITEM_LOAD)
                .order_by(MeetingItem.id.desc())
                .limit(1)
            ).first()
            return AgendaItem.of(row) if row is not None else None

    def minutes(self, meeting_id: int | None = None) -> bytes:
        """The meeting's minutes as a Word document (:func:`handoff.minutes.render`)."""
        from handoff.minutes import render

        found = self.meeting(meeting_id)
        if found is None:
            raise TicketError("还没有召开过联席会议，无法生成会议纪要")
        return render(found)
