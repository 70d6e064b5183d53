"""Every push about a ticket or a live handoff, worded by ``config/replies.yaml``.

Implements :class:`handoff.tickets.TicketNotifier` and :class:`handoff.live.LiveNotifier`:
each push is an outbox row written in the transaction of the change that causes it, so it
is sent exactly when the change commits. Who is told follows the seed's chain: the
department's commissioners with a chat account; when it has none, its 负责人; when it has
none either, 政务办 — a new ticket is never left unseen until it is overdue.

Every push to an enterprise about its ticket (受理, 进度, 办结 + 评价邀请, 超期致歉) also
carries a ``notice`` in its payload — number, title, state, event, a short body, the time
and the signed link to the ticket page — from which a channel may build a richer message
(WeChat's template messages outside the 48-hour window); the text itself ends with the
same link, so every channel shows it.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.replies import Replies, clock_due, format_due
from bot.types import Button, Reply, reply_payload
from handoff.calendar import SHANGHAI
from handoff.conversations import LiveHandoff
from handoff.links import TicketLinks
from handoff.models import (
    ChannelIdentity,
    ClockKind,
    Commissioner,
    CommissionerBinding,
    CommissionerRole,
    SlaClock,
    Ticket,
    TicketEvent,
    UrgeLevel,
)
from handoff.outbox import enqueue, withdraw
from handoff.tickets import TicketView

__all__ = ["NOTICE_FIELDS", "NoticeEvent", "Notifier", "staff_label", "who_is"]

log = logging.getLogger("yxby.notify")


def who_is(identity: ChannelIdentity) -> str:
    """How an enterprise user is named to staff: the enterprise, else the channel account."""
    if identity.enterprise is not None:
        return identity.enterprise.name
    return f"{identity.channel}用户{identity.user_key[-4:]}"


def staff_label(person: Commissioner) -> str:
    """``张敏（市场监管局）``: a commissioner as an enterprise sees them."""
    return f"{person.name}（{person.department}）"


def _due(ticket: Ticket, kind: ClockKind) -> str:
    clocks: list[SlaClock] = [c for c in ticket.clocks if c.kind is kind and c.active]
    if not clocks:
        return "—"
    return clock_due(clocks[-1])


def _accepted_key(ticket: Ticket) -> str:
    return f"ticket_accepted:{ticket.number}:{ticket.reopen_count}:"


def _bindings(
    session: Session, *, department: str | None, roles: Sequence[CommissionerRole]
) -> list[CommissionerBinding]:
    stmt = (
        select(CommissionerBinding)
        .join(Commissioner, CommissionerBinding.commissioner_id == Commissioner.id)
        .where(Commissioner.active.is_(True), Commissioner.role.in_(list(roles)))
        .order_by(Commissioner.id, CommissionerBinding.id)
    )
    if department is not None:
        stmt = stmt.where(Commissioner.department == department)
    return list(session.scalars(stmt))


class NoticeEvent(StrEnum):
    """What a notice to an enterprise is about (a WeChat template may be chosen per event)."""

    ACCEPTED = "受理"
    PROGRESS = "进度"
    RESULT = "办结"
    OVERDUE = "超期"


NOTICE_FIELDS = ("number", "title", "state", "event", "body", "time", "link")
"""The keys of a payload's ``notice``."""

BODY_LENGTH = 200


def _short(text: str, limit: int = BODY_LENGTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Notifier:
    """Writes ticket and live-handoff pushes to the outbox.

    *links* makes the signed ticket-page links that notices to enterprises carry (or a
    function returning it, called on the first notice: the link secret may live in the data
    directory, which commands that push nothing need not touch); without it the notices
    carry no link.
    """

    def __init__(
        self,
        replies: Replies,
        clock: Callable[[], datetime],
        links: TicketLinks | Callable[[], TicketLinks] | None = None,
    ) -> None:
        self.r = replies
        self.clock = clock
        self._links = links

    @property
    def links(self) -> TicketLinks | None:
        """The ticket links (``None``: notices carry no link)."""
        if self._links is not None and not isinstance(self._links, TicketLinks):
            self._links = self._links()
        return self._links

    @links.setter
    def links(self, value: TicketLinks | Callable[[], TicketLinks] | None) -> None:
        self._links = value

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _push(
        session: Session,
        channel: str,
        recipient: str,
        reply: Reply,
        *,
        kind: str,
        key: str,
        now: datetime,
    ) -> None:
        enqueue(session, channel, recipient, kind, reply_payload(reply), key, now=now)

    def _to_bindings(
        self,
        session: Session,
        bindings: Sequence[CommissionerBinding],
        reply: Reply,
        *,
        kind: str,
        key: str,
        now: datetime,
    ) -> None:
        """Push *reply* to each chat account (dedupe key: *key* + the binding's id)."""
        for binding in bindings:
            self._push(
                session,
                binding.channel,
                binding.user_key,
                reply,
                kind=kind,
                key=f"{key}{binding.id}",
                now=now,
            )

    def _to_identity(
        self, session: Session, identity: ChannelIdentity, reply: Reply, *, kind: str, key: str
    ) -> None:
        self._push(
            session,
            identity.channel,
            identity.user_key,
            reply,
            kind=kind,
            key=key,
            now=self.clock(),
        )

    def _to_enterprise(
        self,
        session: Session,
        ticket: Ticket,
        identity: ChannelIdentity,
        reply: Reply,
        *,
        event: NoticeEvent,
        body: str,
        kind: str,
        key: str,
        now: datetime,
    ) -> None:
        """Push *reply* about *ticket* to the enterprise, with its ``notice`` and link."""
        link = self.links.url(ticket.number, identity.id) if self.links is not None else ""
        if link:
            reply = dataclasses.replace(
                reply, text=reply.text + "\n" + self.r("notice_link", link=link)
            )
        payload: dict[str, Any] = reply_payload(reply)
        payload["notice"] = {
            "number": ticket.number,
            "title": ticket.title,
            "state": ticket.state.label,
            "event": event.value,
            "body": _short(body),
            "time": now.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"),
            "link": link,
        }
        enqueue(session, identity.channel, identity.user_key, kind, payload, key, now=now)

    def department_recipients(
        self, session: Session, department: str
    ) -> tuple[list[CommissionerBinding], str]:
        """Who hears about new work of *department*, and a note when it is not its staff.

        Commissioners (and the 负责人) of the department with a chat account; else the
        department's 负责人 — which then means nobody: 政务办, with a note saying so.
        """
        staff = _bindings(
            session,
            department=department,
            roles=(CommissionerRole.COMMISSIONER, CommissionerRole.HEAD),
        )
        if any(b.commissioner.role is CommissionerRole.COMMISSIONER for b in staff):
            return staff, ""
        if staff:  # only the 负责人 can be reached
            return staff, self.r("staff_no_commissioner_head", department=department)
        oversight = _bindings(session, department=None, roles=(CommissionerRole.OVERSIGHT,))
        if oversight:
            return oversight, self.r("staff_no_commissioner_oversight", department=department)
        log.warning("nobody can be told about new work of %s: no bound staff at all", department)
        return [], ""

    # ------------------------------------------------------------------ tickets

    def created(self, session: Session, ticket: Ticket, now: datetime) -> None:
        """Tell the department (the chain above) about a ticket opened or transferred to it."""
        session.refresh(ticket, ["clocks", "events"])
        enterprise = ticket.enterprise.name if ticket.enterprise else "（未登记企业）"
        text = self.r(
            "staff_new_ticket",
            number=ticket.number,
            enterprise=enterprise,
            description=ticket.description[:500],
            department=ticket.department,
            reason=ticket.route_reason,
            contact_due=_due(ticket, ClockKind.CONTACT),
            done_due=_due(ticket, ClockKind.DONE),
        )
        last: TicketEvent | None = ticket.events[-1] if ticket.events else None
        if last is not None and last.kind == "transfer":
            source = (last.data or {}).get("from_department", "")
            text += "\n" + self.r(
                "staff_transferred", actor=last.actor, source=source, reason=last.reason or "—"
            )
        recipients, note = self.department_recipients(session, ticket.department)
        if note:
            text += "\n" + note
        buttons = (
            Button("查看对话", f"transcript:{ticket.number}"),
            Button("签收", f"accept:{ticket.number}"),
            Button("转派", f"transfer:{ticket.number}"),
            Button("申请协同", f"assist:{ticket.number}"),
            Button("办结", f"resolve:{ticket.number}"),
        )
        reply = Reply(text, buttons=buttons, ref=f"ticket:{ticket.number}")
        round_key = f"{ticket.department}:{len(ticket.events)}"
        self._to_bindings(
            session,
            recipients,
            reply,
            kind="ticket_new",
            key=f"ticket_new:{ticket.number}:{round_key}:",
            now=now,
        )

    def resolved(self, session: Session, ticket: Ticket, now: datetime) -> str | None:
        """Push the result and the rating buttons to the enterprise's chat, if it has one."""
        identity = ticket.channel_identity
        if identity is None:
            return None
        rates = ("rate_satisfied", "rate_basic", "rate_unsatisfied")
        reply = Reply(
            self.r("result_notice", number=ticket.number, result=ticket.result or ""),
            buttons=tuple(Button(self.r(k), f"rate:{ticket.number}:{self.r(k)}") for k in rates),
            ref=f"ticket:{ticket.number}",
        )
        # a 签收 notice still waiting to go out has lost its point: the result says more
        withdraw(session, f"{_accepted_key(ticket)}")
        self._to_enterprise(
            session,
            ticket,
            identity,
            reply,
            event=NoticeEvent.RESULT,
            body=ticket.result or "",
            kind="ticket_result",
            key=f"ticket_result:{ticket.number}:{ticket.reopen_count}",
            now=now,
        )
        return f"办理结果已通过{identity.channel}推送企业，并邀请评价"

    def accepted(self, session: Session, ticket: Ticket, now: datetime) -> None:
        """签收: the enterprise hears who has taken its ticket and by when the result comes."""
        identity = ticket.channel_identity
        if identity is None:
            return
        session.refresh(ticket, ["clocks"])
        person = ticket.commissioner
        who = f"企业服务专员{staff_label(person)}" if person is not None else ticket.department
        reply = Reply(
            self.r(
                "notice_accepted",
                number=ticket.number,
                who=who,
                done_due=_due(ticket, ClockKind.DONE),
            ),
            ref=f"ticket:{ticket.number}",
        )
        self._to_enterprise(
            session,
            ticket,
            identity,
            reply,
            event=NoticeEvent.ACCEPTED,
            body=f"{who}已签收，正在办理",
            kind="ticket_accepted",
            key=_accepted_key(ticket),
            now=now,
        )

    def progressed(self, session: Session, ticket: Ticket, note: str, now: datetime) -> None:
        """进度: the department's note on the work so far goes to the enterprise."""
        identity = ticket.channel_identity
        if identity is None:
            return
        reply = Reply(
            self.r(
                "notice_progress", number=ticket.number, department=ticket.department, note=note
            ),
            ref=f"ticket:{ticket.number}",
        )
        self._to_enterprise(
            session,
            ticket,
            identity,
            reply,
            event=NoticeEvent.PROGRESS,
            body=note,
            kind="ticket_progress",
            key=f"ticket_progress:{ticket.number}:{uuid.uuid4().hex}",
            now=now,
        )

    def overdue(
        self,
        session: Session,
        ticket: Ticket,
        clock: SlaClock,
        expected: datetime | None,
        now: datetime,
    ) -> None:
        """超期致歉: the 办结 clock was breached; the enterprise hears it, with when to expect
        the result now (once per clock)."""
        identity = ticket.channel_identity
        if identity is None:
            return
        expect = f"{format_due(expected)}前" if expected is not None else "尽快"
        reply = Reply(
            self.r(
                "notice_overdue",
                number=ticket.number,
                department=ticket.department,
                due=clock_due(clock),
                expect=expect,
            ),
            ref=f"ticket:{ticket.number}",
        )
        self._to_enterprise(
            session,
            ticket,
            identity,
            reply,
            event=NoticeEvent.OVERDUE,
            body=self.r("notice_overdue_body", department=ticket.department, expect=expect),
            kind="ticket_overdue",
            key=f"ticket_overdue:{ticket.number}:{clock.id}",
            now=now,
        )

    def _to_handler(
        self, session: Session, ticket: Ticket, text: str, *, kind: str, key: str, now: datetime
    ) -> None:
        """To the ticket's commissioner when it has one with a chat, else the department."""
        person = ticket.commissioner
        targets = [b for b in person.bindings if person.active] if person is not None else []
        if not targets:
            targets, note = self.department_recipients(session, ticket.department)
            if note:
                text += "\n" + note
        reply = Reply(text, ref=f"ticket:{ticket.number}")
        self._to_bindings(session, targets, reply, kind=kind, key=f"{key}:", now=now)

    def reopened(
        self, session: Session, ticket: Ticket, comment: str | None, now: datetime
    ) -> None:
        """重办 after 不满意: the handling commissioner hears it, with what was wrong."""
        text = self.r(
            "staff_reopened",
            number=ticket.number,
            title=ticket.title,
            contact_due=_due(ticket, ClockKind.CONTACT),
            done_due=_due(ticket, ClockKind.DONE),
        )
        self._to_handler(
            session,
            ticket,
            text,
            kind="ticket_reopened",
            key=f"ticket_reopened:{ticket.number}:{ticket.reopen_count}",
            now=now,
        )

    def survey_commented(
        self, session: Session, ticket: Ticket, comment: str, now: datetime
    ) -> None:
        """What the enterprise said after rating (why it was unhappy) goes to the handler."""
        survey = ticket.surveys[-1] if ticket.surveys else None
        verdict = survey.result.value if survey is not None else "—"
        text = self.r("staff_survey_comment", number=ticket.number, result=verdict, comment=comment)
        self._to_handler(
            session,
            ticket,
            text,
            kind="survey_comment",
            key=f"survey_comment:{ticket.number}:{len(ticket.events)}",
            now=now,
        )

    def closed_unsatisfied(self, session: Session, ticket: Ticket, now: datetime) -> None:
        """A second 不满意 closed the ticket: 政务办 is told (the enterprise was told so)."""
        text = self.r(
            "oversight_unsatisfied",
            number=ticket.number,
            title=ticket.title,
            department=ticket.department,
            commissioner=ticket.commissioner.name if ticket.commissioner else "未指定",
        )
        reply = Reply(text, ref=f"ticket:{ticket.number}")
        self._to_bindings(
            session,
            _bindings(session, department=None, roles=(CommissionerRole.OVERSIGHT,)),
            reply,
            kind="oversight_unsatisfied",
            key=f"oversight_unsatisfied:{ticket.number}:",
            now=now,
        )

    def urged(
        self,
        session: Session,
        ticket: Ticket,
        note: str,
        now: datetime,
        *,
        level: UrgeLevel | None = None,
    ) -> None:
        """催办: the enterprise (or 政务办) chases a ticket; its handler hears it at once.

        政务办's 督办 (with a *level*) reaches the handling commissioner — or, with none, every
        commissioner of the answering department — and the department's 负责人 as well.
        """
        key = f"ticket_urged:{ticket.number}:{len(ticket.events)}"
        if level is None:
            text = self.r("staff_urged", number=ticket.number, title=ticket.title, note=note)
            self._to_handler(session, ticket, text, kind="ticket_urged", key=key, now=now)
            return
        department = ticket.department
        if ticket.state.value == "escalated" and ticket.escalation_lead_department:
            department = ticket.escalation_lead_department
        person = ticket.commissioner
        bindings: list[CommissionerBinding] = []
        if person is not None and person.active and person.department == department:
            bindings += person.bindings
        else:
            bindings += _bindings(
                session, department=department, roles=(CommissionerRole.COMMISSIONER,)
            )
        bindings += _bindings(session, department=department, roles=(CommissionerRole.HEAD,))
        unique = list({b.id: b for b in bindings}.values())
        if not unique:
            log.warning("督办 of %s reaches nobody in %s", ticket.number, department)
        text = self.r(
            "staff_supervised",
            level=level.label,
            number=ticket.number,
            title=ticket.title,
            department=department,
            note=note,
        )
        reply = Reply(text, ref=f"ticket:{ticket.number}")
        self._to_bindings(session, unique, reply, kind="ticket_urged", key=f"{key}:", now=now)

    def replied(self, session: Session, ticket: Ticket, text: str, now: datetime) -> None:
        """回复企业: a commissioner's message reaches the ticket's chat account (held by the
        outbox while the channel may not push, as every customer-service message)."""
        identity = ticket.channel_identity
        if identity is None:
            return
        person = ticket.commissioner
        session.flush()
        session.refresh(ticket, ["events"])
        last = ticket.events[-1] if ticket.events else None
        data = (last.data or {}) if last is not None and last.kind == "reply" else {}
        name = data.get("commissioner")
        if isinstance(name, str) and name:
            who = f"企业服务专员{name}（{ticket.department}）"
        elif person is not None:
            who = f"企业服务专员{staff_label(person)}"
        else:
            who = ticket.department
        reply = Reply(
            self.r("notice_reply", number=ticket.number, who=who, text=text),
            ref=f"ticket:{ticket.number}",
        )
        self._to_identity(
            session,
            identity,
            reply,
            kind="ticket_reply",
            key=f"ticket_reply:{ticket.number}:{uuid.uuid4().hex}",
        )

    def helpers_invited(
        self,
        session: Session,
        ticket: Ticket,
        departments: Sequence[str],
        reason: str | None,
        now: datetime,
    ) -> None:
        """协同: each invited department's staff (the chain of :meth:`department_recipients`)
        hear of the request, with a link to the ticket page in WeCom."""
        for department in departments:
            text = self.r(
                "staff_assist_invited",
                number=ticket.number,
                title=ticket.title,
                lead=ticket.department,
                reason=f"理由：{reason}" if reason else "",
            )
            recipients, note = self.department_recipients(session, department)
            if note:
                text += "\n" + note
            reply = Reply(text, ref=f"ticket:{ticket.number}")
            self._to_bindings(
                session,
                recipients,
                reply,
                kind="ticket_assist",
                key=f"ticket_assist:{ticket.number}:{department}:",
                now=now,
            )

    def assigned(self, session: Session, ticket: Ticket, now: datetime) -> None:
        """指派: the commissioner now holding the ticket hears of it (their chat accounts)."""
        person = ticket.commissioner
        if person is None or not person.active:
            return
        session.flush()
        session.refresh(ticket, ["events"])
        last = ticket.events[-1] if ticket.events else None
        actor = last.actor if last is not None else "负责人"
        text = self.r("staff_assigned", number=ticket.number, title=ticket.title, actor=actor)
        self._to_bindings(
            session,
            person.bindings,
            Reply(text, ref=f"ticket:{ticket.number}"),
            kind="ticket_assigned",
            key=f"ticket_assigned:{ticket.number}:{len(ticket.events)}:",
            now=now,
        )

    # ------------------------------------------------------------------ live handoff

    def handoff_offered(
        self, session: Session, handoff: LiveHandoff, staff: Sequence[CommissionerBinding]
    ) -> None:
        """Ask the department's staff to take the chat (withdrawn once it is taken or over)."""
        from handoff.live import offer_key

        reply = Reply(
            self.r(
                "staff_handoff_offer",
                who=who_is(handoff.identity),
                department=handoff.department,
                question=handoff.question,
            ),
            buttons=(Button("接入", f"take:{handoff.id}"),),
            ref=f"handoff:{handoff.id}",
        )
        self._to_bindings(
            session,
            staff,
            reply,
            kind="handoff_offer",
            key=f"{offer_key(handoff.id)}",
            now=self.clock(),
        )

    def handoff_joined(self, session: Session, handoff: LiveHandoff, staff: Commissioner) -> None:
        """Tell the enterprise who joined."""
        reply = Reply(self.r("handoff_joined", name=staff.name, department=staff.department))
        self._to_identity(
            session,
            handoff.identity,
            reply,
            kind="handoff_joined",
            key=f"handoff_joined:{handoff.id}",
        )

    def relayed(
        self, session: Session, handoff: LiveHandoff, text: str, *, from_staff: bool
    ) -> None:
        """One message across the relay, named by who wrote it."""
        seq = f"{handoff.id}:{uuid.uuid4().hex}"
        if from_staff:
            person = handoff.commissioner
            label = staff_label(person) if person is not None else "企业服务专员"
            reply = Reply(self.r("relay_from_staff", who=label, text=text))
            self._to_identity(session, handoff.identity, reply, kind="relay", key=f"relay:{seq}")
            return
        person = handoff.commissioner
        if person is None:
            return
        reply = Reply(
            self.r("staff_relay", who=who_is(handoff.identity), text=text),
            ref=f"handoff:{handoff.id}",
        )
        self._to_bindings(
            session, person.bindings, reply, kind="relay", key=f"relay:{seq}:", now=self.clock()
        )

    def handoff_ended(self, session: Session, handoff: LiveHandoff, *, by_staff: bool) -> None:
        """Tell the other side that the chat is over."""
        if by_staff:
            self._to_identity(
                session,
                handoff.identity,
                Reply(self.r("handoff_ended")),
                kind="handoff_ended",
                key=f"handoff_ended:{handoff.id}",
            )
            return
        person = handoff.commissioner
        if person is None:
            return
        reply = Reply(self.r("staff_handoff_user_ended", who=who_is(handoff.identity)))
        self._to_bindings(
            session,
            person.bindings,
            reply,
            kind="handoff_ended",
            key=f"handoff_ended:{handoff.id}:",
            now=self.clock(),
        )

    def handoff_expired(self, session: Session, handoff: LiveHandoff, ticket: TicketView) -> None:
        """Nobody took the chat in time: the enterprise gets the ticket filed instead."""
        contact = ticket.clock(ClockKind.CONTACT)
        reply = Reply(
            self.r(
                "handoff_timeout",
                number=ticket.number,
                contact_due=clock_due(contact) if contact else "—",
            )
        )
        row = session.scalars(select(Ticket).where(Ticket.number == ticket.number)).one()
        self._to_enterprise(
            session,
            row,
            handoff.identity,
            reply,
            event=NoticeEvent.ACCEPTED,
            body=f"诉求已登记，由{ticket.department}办理",
            kind="handoff_timeout",
            key=f"handoff_timeout:{handoff.id}",
            now=self.clock(),
        )

    def intake_filed(
        self, session: Session, ticket: Ticket, identity: ChannelIdentity, now: datetime
    ) -> None:
        """A need recorded in the console (电话, 12345转办 …): the enterprise's chat is told
        the ticket's number, the department and both deadlines."""
        session.refresh(ticket, ["clocks"])
        reply = Reply(
            self.r(
                "intake_filed",
                number=ticket.number,
                source=ticket.source.label,
                department=ticket.department,
                contact_due=_due(ticket, ClockKind.CONTACT),
                done_due=_due(ticket, ClockKind.DONE),
            ),
            ref=f"ticket:{ticket.number}",
        )
        self._to_enterprise(
            session,
            ticket,
            identity,
            reply,
            event=NoticeEvent.ACCEPTED,
            body=f"您通过{ticket.source.label}反映的诉求已登记，由{ticket.department}办理",
            kind="ticket_intake",
            key=f"ticket_intake:{ticket.number}",
            now=now,
        )
