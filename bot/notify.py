"""Pushes about tickets: new tickets to commissioners, results and the rating to enterprises.

Implements :class:`handoff.tickets.TicketNotifier`; every push is an outbox row written in
the ticket's own transaction, so it is sent exactly when the change commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.replies import Replies
from bot.types import Button, Reply
from handoff.models import ClockKind, Commissioner, CommissionerBinding, SlaClock, Ticket
from handoff.outbox import enqueue

__all__ = ["Notifier", "reply_payload"]


def reply_payload(reply: Reply) -> dict[str, Any]:
    """The outbox payload of a reply (adapters render it natively)."""
    return {
        "text": reply.text,
        "choices": list(reply.choices),
        "buttons": [{"label": b.label, "payload": b.payload} for b in reply.buttons],
        "ref": reply.ref,
    }


def _due(ticket: Ticket, kind: ClockKind) -> str:
    from bot.dialogue import format_due

    clocks: list[SlaClock] = [c for c in ticket.clocks if c.kind is kind and c.active]
    return format_due(clocks[-1].due_at) if clocks else "—"


class Notifier:
    """Writes ticket pushes to the outbox, worded by ``config/replies.yaml``."""

    def __init__(self, replies: Replies) -> None:
        self.r = replies

    def created(self, session: Session, ticket: Ticket, now: datetime) -> None:
        """Tell the department's commissioners (the assigned one first) about a new ticket."""
        enterprise = ticket.enterprise.name if ticket.enterprise else "（未登记企业）"
        session.refresh(ticket, ["clocks"])
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
        buttons = (
            Button("查看对话", f"transcript:{ticket.number}"),
            Button("签收", f"accept:{ticket.number}"),
            Button("转派", f"transfer:{ticket.number}"),
            Button("申请协同", f"assist:{ticket.number}"),
            Button("办结", f"resolve:{ticket.number}"),
        )
        reply = Reply(text, buttons=buttons, ref=f"ticket:{ticket.number}")
        stmt = (
            select(CommissionerBinding)
            .join(Commissioner, CommissionerBinding.commissioner_id == Commissioner.id)
            .where(Commissioner.department == ticket.department, Commissioner.active.is_(True))
            .order_by(Commissioner.id, CommissionerBinding.id)
        )
        round_key = f"{ticket.department}:{len(ticket.events)}"
        for binding in session.scalars(stmt):
            enqueue(
                session,
                binding.channel,
                binding.user_key,
                "ticket_new",
                reply_payload(reply),
                f"ticket_new:{ticket.number}:{round_key}:{binding.id}",
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
        enqueue(
            session,
            identity.channel,
            identity.user_key,
            "ticket_result",
            reply_payload(reply),
            f"ticket_result:{ticket.number}:{ticket.reopen_count}",
            now=now,
        )
        return f"办理结果已通过{identity.channel}推送企业，并邀请评价"
