"""The live handoff: an enterprise user asks for a person and a commissioner takes the chat.

One service for every interface — the chat engine and the web console call the same methods::

    request → waiting ─ take ──→ active ─ end ──→ ended
                 │ withdraw (the user moved on / cancelled) → cancelled
                 └ expire (nobody took it in time: a ticket is filed) → expired

Every method works inside the caller's transaction (*session*), except :meth:`expire`,
which opens its own and is safe on several workers (rows are locked, ``SKIP LOCKED``).
Pushes go through a :class:`LiveNotifier` (the bot layer words them) into the outbox, in the
same transaction. An offer to a commissioner that was not delivered before the request ended
is withdrawn from the outbox, so nobody is asked to take a chat that is already over.

The conversation's own state (waiting / with a person) belongs to the dialogue engine, which
reads the handoff's state at the start of the enterprise's next turn.

Both sides' messages are in the enterprise's transcript (:class:`~handoff.models.TranscriptLine`)
exactly once: the dialogue engine records every line the enterprise writes (so
:meth:`LiveHandoffs.relay_from_enterprise` does not), :meth:`LiveHandoffs.relay_from_staff`
records the commissioner's line as the enterprise is shown it. A commissioner working in the
web console, with no chat account at all, reads the chat from there.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import ColumnElement, false, func, or_, select, true
from sqlalchemy.orm import Session, sessionmaker

from handoff.accounts import ConsoleAccount
from handoff.conversations import LiveHandoff, LiveHandoffState, record_transcript
from handoff.models import (
    ChannelIdentity,
    Commissioner,
    CommissionerBinding,
    CommissionerRole,
    Direction,
    Ticket,
)
from handoff.outbox import withdraw
from handoff.scope import NO_TICKETS
from handoff.tickets import SYSTEM_ACTOR, TicketService, TicketView
from yxby.errors import YxbyError

if TYPE_CHECKING:
    from handoff.scope import Person
    from routing import RouteDecision

__all__ = [
    "NO_QUESTION",
    "ChatNotHeld",
    "LiveHandoffs",
    "LiveNotifier",
    "TakeResult",
    "Taken",
    "can_see",
    "holds",
    "may_act",
    "staff_label",
    "visible_filter",
]

NO_QUESTION = "（未说明）"
"""Stored as the question of a request made before the user asked anything."""


def offer_key(handoff_id: int) -> str:
    """Outbox dedupe-key prefix of the offers of one request."""
    return f"handoff_offer:{handoff_id}:"


def may_act(person: Commissioner, department: str) -> bool:
    """A commissioner acts for their own department; 政务办 overseers for every department;
    管理员 and 编辑 for none."""
    if person.role in NO_TICKETS:
        return False
    return person.department == department or person.role is CommissionerRole.OVERSIGHT


def visible_filter(person: Person) -> ColumnElement[bool]:
    """A ``WHERE`` clause for ``select(LiveHandoff)``: the requests *person* may see and take
    (their department's, every department's for 政务办, none for 管理员; always their own)."""
    if person.role in NO_TICKETS:  # 管理员 and 编辑 handle no enterprise's needs
        return false()
    if person.role is CommissionerRole.OVERSIGHT:
        return true()
    return or_(
        LiveHandoff.department == person.department, LiveHandoff.commissioner_id == person.id
    )


def can_see(person: Commissioner, handoff: LiveHandoff) -> bool:
    """Whether *handoff* exists for *person* (the same rule as :func:`visible_filter`)."""
    if handoff.commissioner_id == person.id:
        return True
    return person.role not in NO_TICKETS and may_act(person, handoff.department)


def holds(person: Commissioner, handoff: LiveHandoff) -> bool:
    """Whether *person* is the commissioner in this chat now (only they write and end it)."""
    return handoff.state is LiveHandoffState.ACTIVE and handoff.commissioner_id == person.id


def staff_label(person: Commissioner | None) -> str:
    """``张敏（市场监管局）``: who the enterprise is told it is talking to."""
    return f"{person.name}（{person.department}）" if person is not None else "企业服务专员"


class ChatNotHeld(YxbyError):
    """Someone who is not the commissioner in an active chat tried to write in it or end it."""

    def __init__(self, handoff_id: int, state: LiveHandoffState, holder: str | None) -> None:
        self.handoff_id = handoff_id
        self.state = state
        self.holder = holder
        if state is not LiveHandoffState.ACTIVE:
            message = "该对话当前不在进行中"
        else:
            message = f"该对话已由{holder or '其他专员'}接入"
        super().__init__(message)


class LiveNotifier(Protocol):
    """Who tells people about a live handoff (the bot layer implements it)."""

    def handoff_offered(
        self, session: Session, handoff: LiveHandoff, staff: Sequence[CommissionerBinding]
    ) -> None:
        """Ask *staff* (their chat accounts) to take the request; keys start ``offer_key``."""

    def handoff_joined(self, session: Session, handoff: LiveHandoff, staff: Commissioner) -> None:
        """Tell the enterprise who joined."""

    def relayed(
        self, session: Session, handoff: LiveHandoff, text: str, *, from_staff: bool
    ) -> None:
        """Pass one message across the relay."""

    def handoff_ended(self, session: Session, handoff: LiveHandoff, *, by_staff: bool) -> None:
        """Tell the other side that the chat is over."""

    def handoff_expired(self, session: Session, handoff: LiveHandoff, ticket: TicketView) -> None:
        """Tell the enterprise that a ticket was filed instead, with its number and deadline."""


class TakeResult(enum.StrEnum):
    """What came of a commissioner's 接入."""

    TAKEN = "taken"
    ALREADY_YOURS = "already_yours"
    TAKEN_BY_OTHER = "taken_by_other"
    CLOSED = "closed"  # cancelled, expired or ended
    NOT_FOUND = "not_found"
    NOT_YOURS = "not_yours"  # another department's request


@dataclass(frozen=True)
class Taken:
    """The result of :meth:`LiveHandoffs.take` with the handoff it concerns."""

    result: TakeResult
    handoff: LiveHandoff | None = None


class LiveHandoffs:
    """Requests for a person, the relay between enterprise and commissioner, and expiry."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        tickets: TicketService,
        notifier: LiveNotifier,
        clock: Callable[[], datetime],
        *,
        wait_minutes: int,
    ) -> None:
        self.sessions = sessions
        self.tickets = tickets
        self.notifier = notifier
        self.clock = clock
        self.wait = timedelta(minutes=wait_minutes)
        self._quiet_until: datetime | None = None
        """Before this moment no request can be due: :meth:`expire` need not look."""

    # -- reading

    @staticmethod
    def get(session: Session, handoff_id: object) -> LiveHandoff | None:
        """The handoff with id *handoff_id* (``None`` for anything else)."""
        return session.get(LiveHandoff, handoff_id) if isinstance(handoff_id, int) else None

    @staticmethod
    def reachable_staff(session: Session, department: str) -> list[CommissionerBinding]:
        """Chat accounts of the department's active commissioners, in registration order."""
        return list(
            session.scalars(
                select(CommissionerBinding)
                .join(Commissioner, CommissionerBinding.commissioner_id == Commissioner.id)
                .where(Commissioner.department == department, Commissioner.active.is_(True))
                .order_by(Commissioner.id, CommissionerBinding.id)
            )
        )

    @staticmethod
    def console_staff(session: Session, department: str) -> list[Commissioner]:
        """The department's active commissioners who work in the web console (have a password).

        They see waiting requests in the console, so a department reachable only there can
        still be asked for a person.
        """
        return list(
            session.scalars(
                select(Commissioner)
                .join(ConsoleAccount, ConsoleAccount.commissioner_id == Commissioner.id)
                .where(
                    Commissioner.department == department,
                    Commissioner.active.is_(True),
                    ConsoleAccount.password_hash.is_not(None),
                )
                .order_by(Commissioner.id)
            )
        )

    @staticmethod
    def waiting_for(session: Session, person: Commissioner, now: datetime) -> list[LiveHandoff]:
        """Requests still waiting at *now* that *person* may take, the oldest first."""
        return list(
            session.scalars(
                select(LiveHandoff)
                .where(
                    LiveHandoff.state == LiveHandoffState.WAITING,
                    LiveHandoff.expires_at > now,
                    visible_filter(person),
                )
                .order_by(LiveHandoff.created_at, LiveHandoff.id)
            )
        )

    @staticmethod
    def active_for(session: Session, staff: Commissioner) -> list[LiveHandoff]:
        """The chats *staff* is in, the most recently taken first."""
        return list(
            session.scalars(
                select(LiveHandoff)
                .where(
                    LiveHandoff.state == LiveHandoffState.ACTIVE,
                    LiveHandoff.commissioner_id == staff.id,
                )
                .order_by(LiveHandoff.taken_at.desc(), LiveHandoff.id.desc())
            )
        )

    @staticmethod
    def first_waiting(session: Session, department: str, now: datetime) -> LiveHandoff | None:
        """The oldest request of *department* still waiting at *now*."""
        return session.scalars(
            select(LiveHandoff)
            .where(
                LiveHandoff.state == LiveHandoffState.WAITING,
                LiveHandoff.department == department,
                LiveHandoff.expires_at > now,
            )
            .order_by(LiveHandoff.created_at, LiveHandoff.id)
        ).first()

    # -- the enterprise side

    def request(
        self,
        session: Session,
        identity: ChannelIdentity,
        decision: RouteDecision,
        question: str,
        now: datetime,
    ) -> LiveHandoff | None:
        """Ask the routed department for a person; ``None`` when nobody there can be reached
        (no chat account and no console account)."""
        staff = self.reachable_staff(session, decision.department)
        if not staff and not self.console_staff(session, decision.department):
            return None
        handoff = LiveHandoff(
            channel_identity_id=identity.id,
            department=decision.department,
            route_rule=decision.rule.value,
            route_reason=decision.reason,
            question=question.strip() or NO_QUESTION,
            state=LiveHandoffState.WAITING,
            created_at=now,
            expires_at=now + self.wait,
        )
        session.add(handoff)
        session.flush()
        self.notifier.handoff_offered(session, handoff, staff)
        return handoff

    def withdraw(self, session: Session, handoff: LiveHandoff | None, now: datetime) -> None:
        """The user stopped waiting (cancelled, or went on with something else)."""
        if handoff is not None and handoff.state is LiveHandoffState.WAITING:
            self._finish(session, handoff, LiveHandoffState.CANCELLED, now)

    def relay_from_enterprise(self, session: Session, handoff: LiveHandoff, text: str) -> None:
        """Pass the enterprise's message to the commissioner's chat accounts, if they have any.

        Not recorded here: the dialogue engine already keeps every line the enterprise
        writes in its transcript, which is where the console reads it.
        """
        if handoff.state is LiveHandoffState.ACTIVE:
            self.notifier.relayed(session, handoff, text, from_staff=False)

    # -- the commissioner side

    def take(self, session: Session, staff: Commissioner, handoff_id: int, now: datetime) -> Taken:
        """接入: *staff* takes a waiting request (the first one to do so wins)."""
        handoff = session.scalars(
            select(LiveHandoff).where(LiveHandoff.id == handoff_id).with_for_update()
        ).one_or_none()
        if handoff is None:
            return Taken(TakeResult.NOT_FOUND)
        if not may_act(staff, handoff.department):
            return Taken(TakeResult.NOT_YOURS, handoff)
        if handoff.state is LiveHandoffState.ACTIVE:
            mine = handoff.commissioner_id == staff.id
            return Taken(TakeResult.ALREADY_YOURS if mine else TakeResult.TAKEN_BY_OTHER, handoff)
        if handoff.state is not LiveHandoffState.WAITING or handoff.expires_at <= now:
            return Taken(TakeResult.CLOSED, handoff)
        handoff.state = LiveHandoffState.ACTIVE
        handoff.commissioner_id = staff.id
        handoff.taken_at = now
        session.flush()
        withdraw(session, offer_key(handoff.id))  # the other offers are moot now
        self.notifier.handoff_joined(session, handoff, staff)
        return Taken(TakeResult.TAKEN, handoff)

    def relay_from_staff(
        self,
        session: Session,
        handoff: LiveHandoff,
        text: str,
        *,
        by: Commissioner | None = None,
    ) -> bool:
        """Pass the commissioner's message to the enterprise and keep it in its transcript
        as the enterprise sees it (``【张敏（市场监管局）】…``); whether it was passed.

        With *by* (the console), :class:`ChatNotHeld` unless *by* holds the active chat.
        """
        if by is not None and not holds(by, handoff):
            holder = handoff.commissioner.name if handoff.commissioner is not None else None
            raise ChatNotHeld(handoff.id, handoff.state, holder)
        if handoff.state is not LiveHandoffState.ACTIVE:
            return False
        self.notifier.relayed(session, handoff, text, from_staff=True)
        record_transcript(
            session,
            handoff.channel_identity_id,
            Direction.OUT,
            f"【{staff_label(handoff.commissioner)}】{text}",
            self.clock(),
        )
        return True

    # -- either side

    def end(
        self,
        session: Session,
        handoff: LiveHandoff,
        now: datetime,
        *,
        by_staff: bool,
        by: Commissioner | None = None,
    ) -> bool:
        """End an active chat; the other side is told. Whether it was ended by this call.

        With *by* (the console), :class:`ChatNotHeld` unless *by* holds the chat — except
        that ending a chat that is already over is not an error (a second click).
        """
        if handoff.state is not LiveHandoffState.ACTIVE:
            return False
        if by is not None and not holds(by, handoff):
            holder = handoff.commissioner.name if handoff.commissioner is not None else None
            raise ChatNotHeld(handoff.id, handoff.state, holder)
        self._finish(session, handoff, LiveHandoffState.ENDED, now)
        self.notifier.handoff_ended(session, handoff, by_staff=by_staff)
        return True

    # -- expiry

    def expire(self, session: Session | None = None) -> int:
        """Turn requests nobody took in time into tickets; how many.

        The enterprise is told the ticket number and by when it will be contacted. Runs in
        the caller's *session* (the dialogue engine's turn) or in its own transaction (the
        server's tick, the terminal's poller).

        Every dialogue turn calls it, so it remembers when the next request can be due at
        the earliest — the soonest waiting one, and at most ``wait`` from now, since a request
        made later (by any process) expires later still — and looks only from then on.
        """
        now = self.clock()
        quiet = self._quiet_until
        if quiet is not None and now < quiet:
            return 0
        if session is None:
            with self.sessions.begin() as own:
                return self._expire(own, now)
        return self._expire(session, now)

    def _expire(self, session: Session, now: datetime) -> int:
        rows = session.scalars(
            select(LiveHandoff)
            .where(LiveHandoff.state == LiveHandoffState.WAITING, LiveHandoff.expires_at <= now)
            .order_by(LiveHandoff.id)
            .with_for_update(skip_locked=True)
        ).all()
        for handoff in rows:
            self._file_ticket(session, handoff, now)
        soonest = session.scalar(
            select(func.min(LiveHandoff.expires_at)).where(
                LiveHandoff.state == LiveHandoffState.WAITING, LiveHandoff.expires_at > now
            )
        )
        horizon = now + self.wait
        # a row another process holds locked (SKIP LOCKED) is looked at again next time
        self._quiet_until = None if rows else min(soonest or horizon, horizon)
        return len(rows)

    def _file_ticket(self, session: Session, handoff: LiveHandoff, now: datetime) -> None:
        identity = handoff.identity
        phone = identity.contact_phone or "未提供（请通过对话联系）"
        question = "" if handoff.question == NO_QUESTION else handoff.question
        need = question or "企业请求人工服务，等待专员接入超时"
        view = self.tickets.create(
            f"{need}\n（联系电话：{phone}）",
            title=(question or "企业请求人工服务")[:60],
            department=handoff.department,
            rule=handoff.route_rule,
            reason=handoff.route_reason,
            actor=SYSTEM_ACTOR,
            enterprise_uscc=identity.enterprise.uscc if identity.enterprise else None,
            channel_identity_id=identity.id,
            session=session,
        )
        handoff.ticket_id = session.scalars(
            select(Ticket.id).where(Ticket.number == view.number)
        ).one()
        self._finish(session, handoff, LiveHandoffState.EXPIRED, now)
        self.notifier.handoff_expired(session, handoff, view)

    @staticmethod
    def _finish(
        session: Session, handoff: LiveHandoff, state: LiveHandoffState, now: datetime
    ) -> None:
        handoff.state = state
        handoff.ended_at = now
        withdraw(session, offer_key(handoff.id))
