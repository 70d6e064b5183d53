"""Who sees what: the console's access rules, as pure functions used by every page and action.

* 专员 — the tickets of their own department (the lead department), tickets they hold, and
  tickets on which their department is a co-handler (协同: a helper may read, acknowledge
  and add its opinion or a note, not act for the lead department);
* 负责人 — the same, and may assign (指派) the department's tickets;
* 政务办 — every ticket: read, 督办/催办 (urge, with a level: only 政务办 urges from the
  console), 提请联席会议 (escalate), the meeting's decision (decide) and the phone callback
  (回访调查); on the tickets of their own department (政务办 is also the 兜底 department)
  they work like a 专员;
* the lead and the helper departments give their opinion (opinion) on an escalated ticket;
* 管理员 — accounts only: no ticket at all (and the knowledge pages, like an editor);
* 编辑 — the knowledge pages: the masked conversation log, entry figures, drafts and the
  hit test; no ticket at all (a draft from a resolved ticket shows it masked, see
  :mod:`handoff.editors`), whatever their department.

A ticket outside a person's scope does not exist for them: :func:`visible_ticket` raises
:class:`OutOfScope`, a :class:`~handoff.tickets.TicketNotFound` with the same message as for
a number nobody issued, and pages answer 404 for both. A visible ticket on which the action is
not allowed raises :class:`NotAllowed` (403). Whether the action fits the ticket's *state*
is the ticket service's rule, not this module's.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Protocol

from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.orm import Session

from handoff.models import CommissionerRole, Ticket, TicketDepartment
from handoff.tickets import TicketNotFound
from yxby.errors import YxbyError

__all__ = [
    "HELPER_ACTS",
    "KNOWLEDGE_EDITORS",
    "LEAD_ACTS",
    "NO_TICKETS",
    "OVERSIGHT_ACTS",
    "Act",
    "NotAllowed",
    "OutOfScope",
    "Person",
    "Relation",
    "allowed",
    "can",
    "can_edit_knowledge",
    "can_manage_accounts",
    "can_see",
    "relation",
    "require",
    "visible_filter",
    "visible_ticket",
]


class Person(Protocol):
    """Anyone the rules apply to (a :class:`~handoff.accounts.Staff` or a Commissioner)."""

    @property
    def id(self) -> int: ...

    @property
    def department(self) -> str: ...

    @property
    def role(self) -> CommissionerRole: ...


class Act(StrEnum):
    """What a person may try on a ticket in the console (values match ``tickets.Action``)."""

    VIEW = "view"
    ACCEPT = "accept"  # 签收
    START = "start"
    PROGRESS = "progress"  # 进度
    REPLY = "reply"  # reply to the enterprise
    LIVE = "live"  # take and hold a live conversation
    TRANSFER = "transfer"  # 转派
    ASSIST = "assist"  # 协同: invite helper departments
    ACKNOWLEDGE = "acknowledge"  # a helper department acknowledges / gives its opinion
    RESOLVE = "resolve"  # 办结
    SEND_FEEDBACK = "send_feedback"
    CLOSE = "close"
    ESCALATE = "escalate"  # 提请联席会议
    URGE = "urge"  # 催办
    ASSIGN = "assign"  # 指派 to a person of the department
    NOTE = "note"  # internal note, never sent
    OPINION = "opinion"  # a department's opinion for the 联席会议
    DECIDE = "decide"  # 联席会议决定: lead, helpers, deadline
    CALLBACK = "callback"  # 政务办's phone callback (回访调查)


class Relation(StrEnum):
    """How a person stands to a ticket (the strongest that applies)."""

    LEAD = "lead"  # their department handles it, or they hold it
    HELPER = "helper"  # their department co-handles it
    OVERSIGHT = "oversight"  # 政务办 role, any other ticket
    NONE = "none"


LEAD_ACTS = frozenset(Act) - {Act.ACKNOWLEDGE, Act.ASSIGN, Act.URGE, Act.DECIDE, Act.CALLBACK}
"""A 专员 (or anyone) of the lead department, or the holder of the ticket."""
HELPER_ACTS = frozenset({Act.VIEW, Act.ACKNOWLEDGE, Act.NOTE, Act.OPINION})
"""Someone of a co-handling department."""
OVERSIGHT_ACTS = frozenset({Act.VIEW, Act.URGE, Act.ESCALATE, Act.DECIDE, Act.CALLBACK})
"""政务办 on every ticket."""
HEAD_EXTRA = frozenset({Act.ASSIGN})
"""What a 负责人 adds on the tickets their department leads."""
NO_TICKETS = frozenset({CommissionerRole.ADMIN, CommissionerRole.EDITOR})
"""Roles that see no ticket at all."""
KNOWLEDGE_EDITORS = frozenset({CommissionerRole.EDITOR, CommissionerRole.ADMIN})
"""Roles that may use the editors' pages (the log, figures, drafts, writing YAML)."""


class OutOfScope(TicketNotFound):
    """The ticket is not visible to this person (worded exactly like a missing number)."""


class NotAllowed(YxbyError):
    """The ticket is visible, but this person may not do *act* on it."""

    def __init__(self, number: str, act: Act) -> None:
        self.number = number
        self.act = act
        super().__init__(f"您无权对工单 {number} 进行此操作")


def _helper_departments(ticket: Ticket) -> Iterable[str]:
    return (h.department for h in ticket.helpers)


def relation(person: Person, ticket: Ticket) -> Relation:
    """How *person* stands to *ticket* (uses ``ticket.helpers``)."""
    if person.role in NO_TICKETS:
        return Relation.NONE
    if ticket.department == person.department or ticket.commissioner_id == person.id:
        return Relation.LEAD
    if person.department in _helper_departments(ticket):
        return Relation.HELPER
    if person.role is CommissionerRole.OVERSIGHT:
        return Relation.OVERSIGHT
    return Relation.NONE


def allowed(person: Person, ticket: Ticket) -> frozenset[Act]:
    """Everything *person* may try on *ticket* (empty: they may not even see it)."""
    rel = relation(person, ticket)
    acts: frozenset[Act] = frozenset()
    if rel is Relation.LEAD:
        acts = LEAD_ACTS | (HEAD_EXTRA if person.role is CommissionerRole.HEAD else frozenset())
    elif rel is Relation.HELPER:
        acts = HELPER_ACTS
    if person.role is CommissionerRole.OVERSIGHT and rel is not Relation.NONE:
        acts = acts | OVERSIGHT_ACTS
    return acts


def can_see(person: Person, ticket: Ticket) -> bool:
    """Whether *ticket* exists for *person*."""
    return Act.VIEW in allowed(person, ticket)


def can(person: Person, act: Act | str, ticket: Ticket) -> bool:
    """Whether *person* may do *act* (an :class:`Act` or a ``tickets.Action``) on *ticket*."""
    return Act(str(act)) in allowed(person, ticket)


def can_manage_accounts(person: Person) -> bool:
    """Whether *person* may manage console accounts (管理员 only)."""
    return person.role is CommissionerRole.ADMIN


def can_edit_knowledge(person: Person) -> bool:
    """Whether *person* may use the editors' pages: 编辑 and 管理员."""
    return person.role in KNOWLEDGE_EDITORS


def visible_filter(person: Person) -> ColumnElement[bool]:
    """A ``WHERE`` clause for ``select(Ticket)`` keeping the tickets *person* may see."""
    if person.role in NO_TICKETS:
        return false()
    if person.role is CommissionerRole.OVERSIGHT:
        return true()
    return or_(
        Ticket.department == person.department,
        Ticket.commissioner_id == person.id,
        Ticket.id.in_(
            select(TicketDepartment.ticket_id).where(
                TicketDepartment.department == person.department
            )
        ),
    )


def visible_ticket(session: Session, person: Person, number: str) -> Ticket:
    """The ticket *number* if *person* may see it; :class:`OutOfScope` (a ``TicketNotFound``)
    when it does not exist or is outside their scope, so a page answers 404 for both."""
    wanted = number.strip().upper()
    ticket = session.scalars(select(Ticket).where(Ticket.number == wanted)).one_or_none()
    if ticket is None or not can_see(person, ticket):
        raise OutOfScope(number.strip())
    return ticket


def require(person: Person, act: Act | str, ticket: Ticket) -> None:
    """Raise :class:`OutOfScope` (404) if *ticket* is invisible to *person*, and
    :class:`NotAllowed` (403) if it is visible but *act* is not theirs to do."""
    acts = allowed(person, ticket)
    if Act.VIEW not in acts:
        raise OutOfScope(ticket.number)
    wanted = Act(str(act))
    if wanted not in acts:
        raise NotAllowed(ticket.number, wanted)
