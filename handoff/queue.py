"""The commissioners' queue as a service: the tickets a person may see, nearest deadline first,
the live-chat requests waiting for them, and a cheap version stamp to tell what changed.

Every interface (the console page, its polling endpoint, a CLI) calls :class:`QueueService`;
the scope comes from :func:`handoff.scope.visible_filter`, the countdowns from the working-day
calendar (:func:`countdown`). A page is one query for the rows (each with its next running
clock) and one for the waiting requests.

Countdowns count *working* time: every hour of a working day counts, the hours of weekends
and holidays do not, and a deadline written 23:59:59 is taken as 24:00 of its day. So a
ticket due at the end of Monday is amber (within one working day) from the end of Friday on,
and on Saturday it still has "1 个工作日" left.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Select,
    Subquery,
    case,
    func,
    or_,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from handoff import live
from handoff.calendar import END_OF_DAY, SHANGHAI, WorkCalendar
from handoff.conversations import LiveHandoff, LiveHandoffState
from handoff.db import read_only
from handoff.models import (
    ChannelIdentity,
    ClockKind,
    Commissioner,
    Enterprise,
    SlaClock,
    Ticket,
    TicketDepartment,
    TicketSource,
    TicketState,
)
from handoff.scope import Person, visible_filter

T = TypeVar("T")

__all__ = [
    "DONE_STATES",
    "PAGE_SIZE",
    "SOON",
    "Countdown",
    "QueueFilter",
    "QueuePage",
    "QueueRow",
    "QueueService",
    "QueueVersion",
    "Urgency",
    "WaitingRequest",
    "countdown",
    "working_seconds",
]

PAGE_SIZE = 50
SOON = timedelta(days=1)
"""Amber from here: one working day (24 working hours) or less left."""
DONE_STATES = (TicketState.FEEDBACK_SENT, TicketState.SURVEYED, TicketState.CLOSED)
"""States listed after the open ones (nothing is left for the department to do)."""

_DAY = 86_400


# --------------------------------------------------------------------------- countdowns


class Urgency(StrEnum):
    """The colour of a countdown."""

    OK = "ok"  # green: more than one working day left
    SOON = "soon"  # amber: one working day or less
    LATE = "late"  # red: past due
    NONE = "none"  # no running clock

    @property
    def label(self) -> str:
        """Chinese word shown next to the colour (the colour is never the only sign)."""
        return {"ok": "正常", "soon": "临期", "late": "超时", "none": "无时限"}[self.value]


def _midnight_after(moment: datetime) -> datetime:
    local = moment.astimezone(SHANGHAI)
    return datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), SHANGHAI)


def _as_deadline(due: datetime) -> datetime:
    """A due time written 23:59:59 (the calendar's "24:00") as the midnight after it."""
    local = due.astimezone(SHANGHAI)
    if local.time().replace(microsecond=0) == END_OF_DAY:
        return _midnight_after(local)
    return local


@lru_cache(maxsize=32)
def _year_prefix(calendar: WorkCalendar, year: int) -> tuple[int, ...]:
    """``prefix[n]``: working days among the first *n* days of *year* (``prefix[0] == 0``)."""
    counts = [0]
    day = date(year, 1, 1)
    while day.year == year:
        counts.append(counts[-1] + calendar.is_workday(day))
        day += timedelta(days=1)
    return tuple(counts)


def _workdays(calendar: WorkCalendar, first: date, last: date) -> int:
    """Working days from *first* to *last*, both included (0 when *last* is earlier)."""
    if last < first:
        return 0
    head = _year_prefix(calendar, first.year)
    start = first.timetuple().tm_yday - 1  # days of first.year before *first*
    if first.year == last.year:
        return head[last.timetuple().tm_yday] - head[start]
    total = head[-1] - head[start]
    for year in range(first.year + 1, last.year):
        total += _year_prefix(calendar, year)[-1]
    return total + _year_prefix(calendar, last.year)[last.timetuple().tm_yday]


def working_seconds(calendar: WorkCalendar, start: datetime, end: datetime) -> float:
    """Seconds of working days between *start* and *end* (negative when *end* is earlier)."""
    if end < start:
        return -working_seconds(calendar, end, start)
    start, end = start.astimezone(SHANGHAI), end.astimezone(SHANGHAI)
    if start.date() == end.date():
        return (end - start).total_seconds() if calendar.is_workday(start.date()) else 0.0
    total = 0.0
    if calendar.is_workday(start.date()):
        total += (_midnight_after(start) - start).total_seconds()
    if calendar.is_workday(end.date()):
        total += (end - _midnight_after(end - timedelta(days=1))).total_seconds()
    middle = _workdays(calendar, start.date() + timedelta(days=1), end.date() - timedelta(days=1))
    return total + middle * _DAY


def _span(seconds: float) -> str:
    """``1 个工作日 3 小时``, ``5 小时``, ``20 分钟`` (whole units, rounded down)."""
    whole = int(seconds)
    days, rest = divmod(whole, _DAY)
    hours = rest // 3600
    if days:
        return f"{days} 个工作日 {hours} 小时" if hours else f"{days} 个工作日"
    if hours:
        return f"{hours} 小时"
    minutes = rest // 60
    return f"{minutes} 分钟" if minutes else ""


@dataclass(frozen=True)
class Countdown:
    """How long a running clock has left, in working time, and its colour."""

    kind: ClockKind
    due_at: datetime
    seconds: float
    """Working seconds left; negative once overdue."""
    urgency: Urgency
    provisional: bool = False
    """Counted over a year without a published holiday schedule (shown 暂定)."""

    @property
    def text(self) -> str:
        """``剩 1 个工作日 3 小时`` or ``已超时 2 小时``."""
        if self.urgency is Urgency.LATE:
            span = _span(-self.seconds)
            return f"已超时 {span}" if span else "已超时"
        return f"剩 {_span(self.seconds) or '不足 1 分钟'}"


def countdown(
    calendar: WorkCalendar,
    now: datetime,
    kind: ClockKind,
    due: datetime,
    *,
    provisional: bool = False,
) -> Countdown:
    """The countdown of a clock of *kind* due at *due*, seen at *now*.

    Red once *now* is past *due* (as :meth:`ClockView.overdue` decides); amber with one
    working day (:data:`SOON`) or less left; green otherwise.
    """
    if now > due:
        late = -working_seconds(calendar, due, now)
        return Countdown(kind, due, late, Urgency.LATE, provisional)
    left = working_seconds(calendar, now, _as_deadline(due))
    urgency = Urgency.SOON if left <= SOON.total_seconds() else Urgency.OK
    return Countdown(kind, due, left, urgency, provisional)


# ------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class QueueFilter:
    """What to list: every field narrows the queue; the defaults list everything in scope."""

    states: tuple[TicketState, ...] = ()
    overdue: bool = False
    """Only tickets whose next running clock is past due."""
    mine: bool = False
    """Only tickets the person holds."""
    cohandling: bool = False
    """Only tickets on which the person's department is a helper (协同)."""
    source: TicketSource | None = None
    text: str = ""
    """A ticket number, an enterprise's name or USCC, or words of the title/description."""
    page: int = 1
    page_size: int = PAGE_SIZE


@dataclass(frozen=True)
class QueueRow:
    """One ticket of the queue."""

    id: int
    number: str
    title: str
    state: TicketState
    source: TicketSource
    department: str
    enterprise_name: str | None
    enterprise_uscc: str | None
    commissioner: str | None
    created_at: datetime
    updated_at: datetime
    helping: bool
    """The person's department co-handles it (and does not lead it)."""
    countdown: Countdown | None

    @property
    def urgency(self) -> Urgency:
        """The colour of the row's countdown."""
        return self.countdown.urgency if self.countdown else Urgency.NONE


@dataclass(frozen=True)
class QueuePage:
    """One page of the queue."""

    rows: tuple[QueueRow, ...]
    total: int
    page: int
    page_size: int
    now: datetime

    @property
    def pages(self) -> int:
        """How many pages the whole result has (at least 1)."""
        return max(1, math.ceil(self.total / self.page_size))


@dataclass(frozen=True)
class WaitingRequest:
    """An enterprise waiting for a person in a live chat."""

    id: int
    department: str
    question: str
    who: str
    """The enterprise's name, else the chat's display name, else its channel."""
    channel: str
    created_at: datetime
    expires_at: datetime

    def waited(self, now: datetime) -> str:
        """``已等待 3 分钟``."""
        minutes = max(0, int((now - self.created_at).total_seconds() // 60))
        return f"已等待 {minutes} 分钟" if minutes else "刚刚发起"


@dataclass(frozen=True)
class QueueVersion:
    """What a person's queue looks like, cheaply: changes whenever a row or a request does."""

    max_id: int
    count: int
    updated: datetime | None
    waiting: tuple[int, ...] = field(default=())

    @property
    def token(self) -> str:
        """A short opaque stamp (equal stamps: nothing changed)."""
        stamp = f"{self.max_id}|{self.count}|{self.updated}|{','.join(map(str, self.waiting))}"
        return hashlib.sha256(stamp.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ service


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _helper_of(department: str) -> Select[Any]:
    """Ids of the tickets *department* co-handles."""
    return select(TicketDepartment.ticket_id).where(TicketDepartment.department == department)


class QueueService:
    """Reads the queue of a person (scope, filters, paging, countdowns) and their waiting chats."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        calendar: WorkCalendar,
        clock: Callable[[], datetime],
    ) -> None:
        self.sessions = sessions
        self.calendar = calendar
        self.clock = clock

    # -- tickets

    @staticmethod
    def _running() -> Subquery:
        """Per ticket, the earliest due time of its running clocks (``ticket_id``,
        ``due_at``): one hash aggregate over the running clocks, joined to the tickets."""
        return (
            select(SlaClock.ticket_id, func.min(SlaClock.due_at).label("due_at"))
            .where(SlaClock.active.is_(True), SlaClock.met_at.is_(None))
            .group_by(SlaClock.ticket_id)
            .subquery("running")
        )

    @staticmethod
    def _next(column: InstrumentedAttribute[T]) -> ScalarSelect[T]:
        """*column* of the ticket's running clock due first (a correlated subquery that
        PostgreSQL evaluates for the page's rows only, after the sort)."""
        return (
            select(column)
            .where(
                SlaClock.ticket_id == Ticket.id,
                # IS NOT false rather than IS true: the same rows (the column is NOT NULL),
                # and SQLite then probes ix_sla_clock_ticket_id instead of walking the
                # (active, due_at) index for every ticket
                SlaClock.active.is_not(False),
                SlaClock.met_at.is_(None),
            )
            .order_by(SlaClock.due_at, SlaClock.id)
            .limit(1)
            .scalar_subquery()
        )

    def _where(
        self, person: Person, wanted: QueueFilter, due: ColumnElement[datetime], now: datetime
    ) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = [visible_filter(person)]
        if wanted.states:
            where.append(Ticket.state.in_(wanted.states))
        if wanted.overdue:
            where.append(due < now)
        if wanted.mine:
            where.append(Ticket.commissioner_id == person.id)
        if wanted.cohandling:
            where.append(Ticket.id.in_(_helper_of(person.department)))
        if wanted.source is not None:
            where.append(Ticket.source == wanted.source)
        text = wanted.text.strip()
        if text:
            pattern = _like(text)
            where.append(
                or_(
                    Ticket.number.ilike(pattern, escape="\\"),
                    Ticket.title.ilike(pattern, escape="\\"),
                    Ticket.description.ilike(pattern, escape="\\"),
                    Enterprise.name.ilike(pattern, escape="\\"),
                    Enterprise.uscc == text.upper(),
                )
            )
        return where

    def page(self, person: Person, wanted: QueueFilter = QueueFilter()) -> QueuePage:
        """One page of *person*'s queue: open tickets first, nearest running deadline first
        (equal deadlines: the older ticket first; finished ones by age)."""
        now = self.clock()
        size = max(1, wanted.page_size)
        number = max(1, wanted.page)
        kind = self._next(SlaClock.kind)
        provisional = self._next(SlaClock.calendar_fallback)
        running = self._running()
        due_at = running.c.due_at
        due = due_at.label("due")  # selected once; ORDER BY names the label
        done = case((Ticket.state.in_(DONE_STATES), 1), else_=0)
        # a scalar EXISTS, not a join: PostgreSQL evaluates it for the page's rows only
        helping = (
            select(TicketDepartment.id)
            .where(
                TicketDepartment.ticket_id == Ticket.id,
                TicketDepartment.department == person.department,
            )
            .exists()
        )
        stmt = (
            select(
                Ticket.id,
                Ticket.number,
                Ticket.title,
                Ticket.state,
                Ticket.source,
                Ticket.department,
                Ticket.commissioner_id,
                Ticket.created_at,
                Ticket.updated_at,
                Enterprise.name,
                Enterprise.uscc,
                Commissioner.name,
                kind,
                due,
                helping,
                func.count().over(),
                provisional,
            )
            .outerjoin(running, running.c.ticket_id == Ticket.id)
            .outerjoin(Enterprise, Enterprise.id == Ticket.enterprise_id)
            .outerjoin(Commissioner, Commissioner.id == Ticket.commissioner_id)
            .where(*self._where(person, wanted, due_at, now))
            .order_by(done, due.nulls_last(), Ticket.created_at, Ticket.id)
            .limit(size)
            .offset((number - 1) * size)
        )
        with self.sessions() as session:
            read_only(session)
            result = session.execute(stmt).all()
        rows = []
        total = 0
        for r in result:
            total = r[15]
            kind, due = r[12], r[13]
            rows.append(
                QueueRow(
                    id=r[0],
                    number=r[1],
                    title=r[2],
                    state=r[3],
                    source=r[4],
                    department=r[5],
                    created_at=r[7],
                    updated_at=r[8],
                    enterprise_name=r[9],
                    enterprise_uscc=r[10],
                    commissioner=r[11],
                    helping=bool(r[14]) and r[5] != person.department and r[6] != person.id,
                    countdown=countdown(self.calendar, now, kind, due, provisional=bool(r[16]))
                    if due
                    else None,
                )
            )
        return QueuePage(tuple(rows), total, number, size, now)

    # -- live-chat requests

    @staticmethod
    def _waiting_filter(person: Person, now: datetime) -> list[ColumnElement[bool]]:
        """Requests still waiting at *now* that *person* may take (the live service's rule)."""
        return [
            LiveHandoff.state == LiveHandoffState.WAITING,
            LiveHandoff.expires_at > now,
            live.visible_filter(person),
        ]

    def waiting(self, person: Person) -> list[WaitingRequest]:
        """Live-chat requests *person* may take, the longest waiting first."""
        now = self.clock()
        stmt = (
            select(
                LiveHandoff.id,
                LiveHandoff.department,
                LiveHandoff.question,
                LiveHandoff.created_at,
                LiveHandoff.expires_at,
                ChannelIdentity.channel,
                ChannelIdentity.display_name,
                Enterprise.name,
            )
            .join(ChannelIdentity, ChannelIdentity.id == LiveHandoff.channel_identity_id)
            .outerjoin(Enterprise, Enterprise.id == ChannelIdentity.enterprise_id)
            .where(*self._waiting_filter(person, now))
            .order_by(LiveHandoff.created_at, LiveHandoff.id)
        )
        with self.sessions() as session:
            read_only(session)
            found = session.execute(stmt).all()
        return [
            WaitingRequest(
                id=r[0],
                department=r[1],
                question=r[2],
                created_at=r[3],
                expires_at=r[4],
                channel=r[5],
                who=r[7] or r[6] or _CHANNELS.get(r[5], r[5]),
            )
            for r in found
        ]

    # -- what changed

    def version(self, person: Person) -> QueueVersion:
        """The stamp of *person*'s queue and waiting requests (two small aggregate queries)."""
        now = self.clock()
        with self.sessions() as session:
            read_only(session)
            max_id, count, updated = session.execute(
                select(func.max(Ticket.id), func.count(), func.max(Ticket.updated_at)).where(
                    visible_filter(person)
                )
            ).one()
            waiting = session.scalars(
                select(LiveHandoff.id)
                .where(*self._waiting_filter(person, now))
                .order_by(LiveHandoff.id)
            ).all()
        return QueueVersion(int(max_id or 0), int(count or 0), updated, tuple(waiting))

    def new_since(self, person: Person, after_id: int) -> int:
        """How many tickets in *person*'s scope were created after ticket id *after_id*."""
        with self.sessions() as session:
            read_only(session)
            found = session.scalar(
                select(func.count()).where(visible_filter(person), Ticket.id > after_id)
            )
        return int(found or 0)


_CHANNELS = {"wechat": "微信用户", "telegram": "Telegram 用户", "terminal": "终端用户"}
