"""Small pieces every handler module uses: the turn log, knowledge decisions and routing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.dialogue.states import Services, Turn
from handoff.conversations import DialogueTurn, TurnOutcome, write_turn
from handoff.models import Ticket
from handoff.registry import kind_from_uscc, route_facts
from knowledge import Action, Decision
from routing import RouteDecision, RouteFacts
from yxby.errors import InputError

__all__ = ["decide", "log_decision", "my_tickets", "route", "set_turn_outcome", "turn_id"]


def turn_id(t: Turn) -> int:
    """The id of this turn's log row (written now, so later turns can refer to it)."""
    return write_turn(t.s, t.log)


def set_turn_outcome(
    t: Turn, turn: object, outcome: TurnOutcome, *, ticket_id: int | None = None
) -> None:
    """Record what finally came of an earlier turn of the same user (its question)."""
    if isinstance(turn, int):
        row = t.s.get(DialogueTurn, turn)
        if row is not None and row.channel_identity_id == t.identity.id:
            row.outcome = outcome
            if ticket_id is not None:
                row.ticket_id = ticket_id


def decide(svc: Services, text: str) -> Decision | None:
    """The knowledge base's decision, or ``None`` for text it refuses (e.g. too long)."""
    try:
        return svc.kb.decide(text)
    except InputError:
        return None


def log_decision(t: Turn, d: Decision) -> None:
    """Keep the tokens, top hits and decision on the turn log (for 即时解决率 and gaps)."""
    t.log.tokens = list(d.tokens)
    t.log.action = d.action.value
    t.log.hits = [
        {"id": h.entry.id, "score": round(h.score, 3), "coverage": round(h.coverage, 3)}
        for h in d.hits[:5]
    ]
    t.log.entry_id = d.top.entry.id if d.action is Action.ANSWER and d.top else None


def route(svc: Services, t: Turn, draft: dict[str, Any]) -> RouteDecision:
    """Which department handles the need in *draft*, and the rule that chose it."""
    facts: dict[str, Any] = {}
    uscc = draft.get("uscc")
    if uscc:
        facts = route_facts(t.s, uscc) or {"enterprise_kind": kind_from_uscc(uscc).value}
    matched_id = matched_dept = None
    entry = svc.kb.get(draft["entry"]) if draft.get("entry") else None
    if entry is not None and "programme" not in entry.tags:
        matched_id, matched_dept = entry.id, entry.department
    text = " ".join(x for x in (draft.get("question", ""), draft.get("description", "")) if x)
    return svc.router.route(
        RouteFacts.of(text, facts, matched_entry_id=matched_id, matched_department=matched_dept)
    )


def my_tickets(t: Turn, limit: int = 50) -> list[Ticket]:
    """Tickets filed from this chat, newest first.

    Only these: binding an enterprise (whose code is printed on its licence) must not reveal,
    or let anyone rate, another person's tickets.
    """
    stmt = (
        select(Ticket)
        .where(Ticket.channel_identity_id == t.identity.id)
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        .limit(limit)
    )
    return list(t.s.scalars(stmt))
