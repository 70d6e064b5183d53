"""A commissioner writing from a chat: 接入, the relay, 待办, 对话 and ticket actions.

Every rule lives in a service — :class:`handoff.live.LiveHandoffs` for the chat,
:class:`handoff.tickets.TicketService` for tickets — so a console button does the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import parsing
from bot.dialogue.states import Services
from bot.notify import who_is
from bot.replies import clock_due
from bot.types import Incoming, Reply
from handoff.calendar import SHANGHAI
from handoff.conversations import LiveHandoff
from handoff.live import TakeResult, may_act
from handoff.models import Commissioner, Direction, Ticket, TicketState
from handoff.tickets import TicketView, conversation_lines
from yxby.errors import InputError, RoutingError, TicketError

__all__ = ["TRANSCRIPT_LIMIT", "staff_turn"]

TRANSCRIPT_LIMIT = 60
"""Lines of a ticket's conversation shown in a chat (the console shows all)."""

_PROMPTS = {
    "resolve": "staff_prompt_resolve",
    "transfer": "staff_prompt_transfer",
    "assist": "staff_prompt_assist",
}
_ACTIONS = ("签收", "办结", "转派", "协同")


def staff_turn(svc: Services, s: Session, staff: Commissioner, msg: Incoming, now: datetime,
               text: str) -> list[Reply]:  # fmt: skip
    """Answer one message of a commissioner."""
    head, _, rest = text.partition(":")
    if head == "take" and rest.isdigit():
        return [_take(svc, s, staff, int(rest), now)]
    if parsing.TICKET_NUMBER.fullmatch(rest.lower()):
        number = rest.upper()
        if head == "accept":
            return [_ticket_action(svc, s, staff, "签收", number, "")]
        if head == "transcript":
            return [transcript(svc, s, staff, number)]
        if head in _PROMPTS:
            return [Reply(svc.r(_PROMPTS[head], number=number))]
    words = text.replace("：", " ").split()
    word = words[0] if words else ""
    if word in ("接入", "/take"):
        waiting = svc.live.first_waiting(s, staff.department, now)
        if waiting is None:
            return [Reply(svc.r("staff_nobody_waiting"))]
        return [_take(svc, s, staff, waiting.id, now)]
    active = svc.live.active_for(s, staff)
    if word in ("/end", "结束", "结束对话"):
        target = _pick(active, msg)
        if target is None:
            return [Reply(svc.r("staff_no_chat"))]
        svc.live.end(s, target, now, by_staff=True)
        return [Reply(svc.r("staff_chat_ended", who=who_is(target.identity)))]
    if word in ("待办", "列表", "/queue"):
        return [_queue(svc, s, staff)]
    if word in ("对话", "记录") and len(words) >= 2:
        return [transcript(svc, s, staff, words[1].upper())]
    if word in _ACTIONS and len(words) >= 2:
        return [_ticket_action(svc, s, staff, word, words[1].upper(), " ".join(words[2:]))]
    target = _pick(active, msg)
    if target is not None and text:
        svc.live.relay_from_staff(s, target, text)
        return []
    return [Reply(svc.r("staff_unknown", name=staff.name))]


def _pick(active: Sequence[LiveHandoff], msg: Incoming) -> LiveHandoff | None:
    """The chat a message is for: the one it replies to, else the latest taken."""
    if msg.reply_to and msg.reply_to.startswith("handoff:"):
        wanted = msg.reply_to.partition(":")[2]
        for handoff in active:
            if str(handoff.id) == wanted:
                return handoff
    return active[0] if active else None


def _take(svc: Services, s: Session, staff: Commissioner, handoff_id: int, now: datetime) -> Reply:
    taken = svc.live.take(s, staff, handoff_id, now)
    handoff = taken.handoff
    if taken.result is TakeResult.NOT_FOUND or handoff is None:
        return Reply(svc.r("staff_handoff_not_found"))
    if taken.result is TakeResult.NOT_YOURS:
        return Reply(svc.r("staff_not_your_department", department=handoff.department))
    if taken.result is TakeResult.TAKEN_BY_OTHER:
        name = handoff.commissioner.name if handoff.commissioner else "其他专员"
        return Reply(svc.r("staff_handoff_taken_by_other", name=name))
    if taken.result is TakeResult.CLOSED:
        return Reply(svc.r("staff_handoff_closed"))
    return Reply(
        svc.r("staff_handoff_taken", who=who_is(handoff.identity)), ref=f"handoff:{handoff.id}"
    )


def _queue(svc: Services, s: Session, staff: Commissioner) -> Reply:
    open_states = (TicketState.NEW, TicketState.ACCEPTED, TicketState.IN_PROGRESS,
                   TicketState.ESCALATED)  # fmt: skip
    views = [
        v
        for state in open_states
        for v in svc.tickets.list(state=state, department=staff.department, session=s)
    ]
    if not views:
        return Reply(svc.r("staff_queue_empty", department=staff.department))

    def deadline(v: TicketView) -> datetime:
        nxt = v.next_due()
        return nxt.due_at if nxt is not None else v.created_at

    views.sort(key=deadline)
    lines = [svc.r("staff_queue_header", department=staff.department)]
    for v in views[:10]:
        nxt = v.next_due()
        due = f"{nxt.kind.label} {clock_due(nxt)}" if nxt else ""
        holder = v.commissioner or "未指定"
        lines.append(f"{v.number}｜{v.state.label}｜{v.title[:20]}｜{holder}｜{due}")
    return Reply("\n".join(lines))


def transcript(svc: Services, s: Session, staff: Commissioner, number: str) -> Reply:
    """The conversation around a ticket: from the question that led to it until now."""
    ticket = s.scalars(select(Ticket).where(Ticket.number == number)).one_or_none()
    if ticket is None:
        return Reply(svc.r("staff_ticket_not_found", number=number))
    helpers = {h.department for h in ticket.helpers}
    if not may_act(staff, ticket.department) and staff.department not in helpers:
        return Reply(svc.r("staff_not_your_department", department=ticket.department))
    if ticket.channel_identity_id is None:
        return Reply(svc.r("staff_no_transcript", number=number))
    rows = conversation_lines(s, ticket)
    shown = rows[-TRANSCRIPT_LIMIT:]
    lines = [
        f"{line.at.astimezone(SHANGHAI):%m-%d %H:%M} "
        f"{'企业' if line.direction is Direction.IN else '助手'}：{line.text[:200]}"
        for line in shown
    ]
    head = svc.r("staff_transcript_header", number=number, count=len(rows), shown=len(shown))
    return Reply("\n".join([head, *lines]))


def _ticket_action(
    svc: Services, s: Session, staff: Commissioner, word: str, number: str, rest: str
) -> Reply:
    t = svc.tickets
    by: dict[str, Any] = {"actor": staff.name, "commissioner_id": staff.id, "session": s}
    try:
        current = t.get(number, session=s)
        if not may_act(staff, current.department):
            return Reply(svc.r("staff_not_your_department", department=current.department))
        if word == "签收":
            view = t.accept(number, **by)
            return Reply(svc.r("staff_accepted", number=view.number))
        if word == "转派":
            target, _, why = rest.partition(" ")
            if not target or not why.strip():
                return Reply(svc.r("staff_prompt_transfer", number=number))
            view = t.transfer(number, to_department=target, reason=why.strip(), **by)
            return Reply(svc.r("staff_transferred_done", number=view.number,
                               department=view.department))  # fmt: skip
        if word == "协同":
            names = [n for n in re.split(r"[,，、\s]+", rest) if n]
            if not names:
                return Reply(svc.r("staff_prompt_assist", number=number))
            view = t.add_helpers(number, departments=names, **by)
            helpers = "、".join(h.department for h in view.helpers)
            return Reply(svc.r("staff_assist_done", number=view.number, helpers=helpers))
        if not rest:
            return Reply(svc.r("staff_prompt_resolve", number=number))
        if current.state in (TicketState.NEW, TicketState.ACCEPTED):
            # 办结 straight from the chat: the contact and the work happened meanwhile
            if current.state is TicketState.NEW:
                t.accept(number, **by)
            t.start(number, **by)
        view = t.resolve(number, result=rest, **by)
        return Reply(svc.r("staff_resolved", number=view.number))
    except (TicketError, RoutingError, InputError) as exc:
        return Reply(svc.r("staff_action_failed", reason=str(exc)))
