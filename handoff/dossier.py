"""一企一档: one enterprise's file as a given person may see it.

:func:`dossier` reads the registry data (name, code, kind, industry, tags, the 包保
commissioner), the enterprise's tickets, its conversations (the transcript lines of every chat
identity linked to it, newest first, a page at a time), the ratings (surveys) and the internal
notes. Tickets follow :mod:`handoff.scope`: those outside the person's scope are counted, not
shown, and so are their ratings, notes and the conversation lines filed under them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from handoff.models import (
    ChannelIdentity,
    CommissionerRole,
    Direction,
    Enterprise,
    Survey,
    Ticket,
    TicketEvent,
    TicketSource,
    TicketState,
    TranscriptLine,
)
from handoff.registry import find_enterprise, normalise_uscc
from handoff.scope import Person, visible_filter
from yxby.errors import InputError

__all__ = [
    "NOTE_KIND",
    "Dossier",
    "DossierChat",
    "DossierLine",
    "DossierNote",
    "DossierSurvey",
    "DossierTicket",
    "EnterpriseNotFound",
    "dossier",
]

NOTE_KIND = "note"
"""The ticket event kind of an internal note (内部备注)."""
PER_PAGE = 30


class EnterpriseNotFound(InputError):
    """No enterprise of the registry has this 统一社会信用代码."""

    def __init__(self, uscc: str) -> None:
        self.uscc = uscc
        super().__init__(f"企业库中没有统一社会信用代码为 {uscc} 的企业")


@dataclass(frozen=True)
class DossierTicket:
    """One ticket of the enterprise, as a line of its file."""

    number: str
    title: str
    state: TicketState
    department: str
    source: TicketSource
    commissioner: str | None
    created_at: datetime
    rating: str | None
    """The latest survey result (满意 …), if rated."""


@dataclass(frozen=True)
class DossierChat:
    """A chat identity linked to the enterprise."""

    channel: str
    name: str
    last_inbound_at: datetime | None
    subscribed: bool


@dataclass(frozen=True)
class DossierLine:
    """One line of a conversation (``in``: the enterprise wrote it)."""

    at: datetime
    direction: Direction
    text: str
    channel: str
    ticket_number: str | None


@dataclass(frozen=True)
class DossierSurvey:
    """A rating of one round of a ticket."""

    number: str
    round: int
    result: str
    comment: str | None
    at: datetime


@dataclass(frozen=True)
class DossierNote:
    """An internal note on a ticket (never sent to the enterprise)."""

    number: str
    at: datetime
    actor: str
    text: str


@dataclass(frozen=True)
class Dossier:
    """The file of one enterprise for one person (see the module docstring)."""

    uscc: str
    name: str
    kind: str
    industry: str | None
    tags: tuple[str, ...]
    commissioner: str | None
    commissioner_department: str | None
    commissioner_phone: str | None
    created_at: datetime
    updated_at: datetime
    tickets: tuple[DossierTicket, ...]
    hidden_tickets: int
    """Tickets of the enterprise outside the person's scope (counted, not shown)."""
    chats: tuple[DossierChat, ...]
    lines: tuple[DossierLine, ...]
    lines_total: int
    hidden_lines: int
    page: int
    pages: int
    surveys: tuple[DossierSurvey, ...]
    notes: tuple[DossierNote, ...]
    status: str = "存续"
    """登记状态 from the 名录库 (存续/注销/吊销/迁出)."""
    zombie_reason: str | None = None
    """Why the register rules flag it a 僵尸企业 (``None``: not one)."""
    register: tuple[tuple[str, str], ...] = ()
    """What the 名录库 knows, as (label, value) pairs in display order (only known facts)."""


def _register_facts(enterprise: Enterprise) -> tuple[tuple[str, str], ...]:
    code = f"（{enterprise.industry_code}）" if enterprise.industry_code else ""
    status = enterprise.status + (
        f"（{enterprise.status_changed_on.isoformat()} 起）" if enterprise.status_changed_on else ""
    )
    facts = [
        ("行业代码", f"{enterprise.industry or ''}{code}" if code else ""),
        ("登记状态", status),
        ("楼宇/园区", enterprise.building or ""),
        ("网格", enterprise.grid or ""),
        ("招商部门", enterprise.recruited_by or ""),
        ("住所", enterprise.registered_address or ""),
        ("法定代表人", enterprise.legal_representative or ""),
        ("成立日期", enterprise.established_on.isoformat() if enterprise.established_on else ""),
        ("登记联系人", enterprise.contact_name or ""),
        ("登记电话", enterprise.contact_phone or ""),
        (
            "最近年报",
            f"{enterprise.annual_report_year} 年度" if enterprise.annual_report_year else "",
        ),
    ]
    return tuple((label, value) for label, value in facts if value)


_CHANNELS = {"wechat": "微信公众号", "telegram": "Telegram", "terminal": "终端对话"}


def _chat_name(identity: ChannelIdentity) -> str:
    label = _CHANNELS.get(identity.channel, identity.channel)
    who = identity.display_name or f"用户{identity.user_key[-4:]}"
    return f"{label} · {who}"


def dossier(
    session: Session, person: Person, uscc: str, *, page: int = 1, per_page: int = PER_PAGE
) -> Dossier:
    """The file of the enterprise *uscc* as *person* may see it; conversations paged
    (*page* from 1, *per_page* lines, newest first). :class:`EnterpriseNotFound` if unknown."""
    enterprise = find_enterprise(session, uscc)
    if enterprise is None or person.role is CommissionerRole.EDITOR:
        # an editor works on masked logs only: no enterprise's file exists for them
        raise EnterpriseNotFound(normalise_uscc(uscc))
    all_tickets = select(Ticket.id).where(Ticket.enterprise_id == enterprise.id)
    total = session.scalar(select(func.count()).select_from(all_tickets.subquery())) or 0
    rows = list(
        session.scalars(
            select(Ticket)
            .where(Ticket.enterprise_id == enterprise.id, visible_filter(person))
            .options(selectinload(Ticket.commissioner), selectinload(Ticket.surveys))
            .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        )
    )
    visible = {t.id: t.number for t in rows}
    tickets = tuple(
        DossierTicket(
            number=t.number,
            title=t.title,
            state=t.state,
            department=t.department,
            source=t.source,
            commissioner=t.commissioner.name if t.commissioner else None,
            created_at=t.created_at,
            rating=t.surveys[-1].result.value if t.surveys else None,
        )
        for t in rows
    )
    surveys = tuple(
        DossierSurvey(visible[s.ticket_id], s.round, s.result.value, s.comment, s.at)
        for s in session.scalars(
            select(Survey)
            .where(Survey.ticket_id.in_(list(visible)))
            .order_by(Survey.at.desc(), Survey.id.desc())
        )
    )
    notes = tuple(
        DossierNote(visible[e.ticket_id], e.at, e.actor, e.reason or "")
        for e in session.scalars(
            select(TicketEvent)
            .where(TicketEvent.ticket_id.in_(list(visible)), TicketEvent.kind == NOTE_KIND)
            .order_by(TicketEvent.at.desc(), TicketEvent.id.desc())
        )
    )
    identities = list(
        session.scalars(
            select(ChannelIdentity)
            .where(ChannelIdentity.enterprise_id == enterprise.id)
            .order_by(ChannelIdentity.id)
        )
    )
    channel_of = {i.id: i.channel for i in identities}
    lines: tuple[DossierLine, ...] = ()
    shown_total = hidden_lines = 0
    if identities and person.role is not CommissionerRole.ADMIN:
        of_chats = TranscriptLine.channel_identity_id.in_(list(channel_of))
        readable = or_(
            TranscriptLine.ticket_id.is_(None), TranscriptLine.ticket_id.in_(list(visible))
        )
        every = (
            session.scalar(select(func.count()).select_from(TranscriptLine).where(of_chats)) or 0
        )
        shown_total = (
            session.scalar(
                select(func.count()).select_from(TranscriptLine).where(of_chats, readable)
            )
            or 0
        )
        hidden_lines = every - shown_total
    pages = max(1, -(-shown_total // per_page))
    page = min(max(1, page), pages)
    if shown_total:
        found = session.scalars(
            select(TranscriptLine)
            .where(of_chats, readable)
            .order_by(TranscriptLine.at.desc(), TranscriptLine.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
        lines = tuple(
            DossierLine(
                at=line.at,
                direction=line.direction,
                text=line.text,
                channel=_CHANNELS.get(channel_of[line.channel_identity_id], "对话"),
                ticket_number=visible.get(line.ticket_id) if line.ticket_id else None,
            )
            for line in found
        )
    person_row = enterprise.commissioner
    return Dossier(
        uscc=enterprise.uscc,
        name=enterprise.name,
        kind=enterprise.kind.value,
        industry=enterprise.industry,
        tags=tuple(enterprise.tags or ()),
        commissioner=person_row.name if person_row else None,
        commissioner_department=person_row.department if person_row else None,
        commissioner_phone=person_row.phone if person_row else None,
        created_at=enterprise.created_at,
        updated_at=enterprise.updated_at,
        tickets=tickets,
        hidden_tickets=int(total) - len(tickets),
        chats=tuple(
            DossierChat(i.channel, _chat_name(i), i.last_inbound_at, i.subscribed)
            for i in identities
        ),
        lines=lines,
        lines_total=int(shown_total),
        hidden_lines=int(hidden_lines),
        page=page,
        pages=pages,
        surveys=surveys,
        notes=notes,
        status=enterprise.status,
        zombie_reason=enterprise.zombie_reason if enterprise.zombie else None,
        register=_register_facts(enterprise),
    )
