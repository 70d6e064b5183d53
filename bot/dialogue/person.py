"""Asking for a person, waiting for one, and talking with one through the relay.

The live handoff itself is :class:`handoff.live.LiveHandoffs`; this module only decides what
the enterprise user is told and where the conversation goes. A commissioner taking the chat,
ending it or the request expiring changes the handoff row; the engine brings the
conversation in line at the user's next message (:func:`reconcile`).
"""

from __future__ import annotations

from bot import parsing
from bot.dialogue import filing
from bot.dialogue.common import decide, log_decision, route
from bot.dialogue.states import Outcome, Services, State, Turn, goto, stay
from bot.types import Reply
from handoff.conversations import LiveHandoffState, TurnOutcome
from knowledge import Action

__all__ = ["end_or_relay", "reconcile", "request", "waiting"]


def reconcile(svc: Services, t: Turn) -> Outcome | None:
    """The move that matches the conversation to its handoff (taken, ended, expired)."""
    if t.state not in (State.WAITING, State.WITH_PERSON):
        return None
    handoff = svc.live.get(t.s, t.data.get("handoff"))
    state = handoff.state if handoff is not None else None
    if t.state is State.WAITING:
        if state is LiveHandoffState.ACTIVE and handoff is not None:
            return goto(State.WITH_PERSON, handoff=handoff.id)
        if state is not LiveHandoffState.WAITING:
            return goto(State.IDLE)
        return None
    return None if state is LiveHandoffState.ACTIVE else goto(State.IDLE)


def request(svc: Services, t: Turn) -> Outcome:
    """The user asked for a person: offer the chat to the routed department's staff."""
    t.log.outcome = TurnOutcome.HANDOFF
    if t.state is State.WAITING:
        waiting_for = svc.live.get(t.s, t.data.get("handoff"))
        if waiting_for is not None and waiting_for.state is LiveHandoffState.WAITING:
            return stay(svc.r("handoff_waiting", department=waiting_for.department))
    # the need under discussion, if any; "转人工" itself is not a description of it
    question = str(t.data.get("question") or "")
    enterprise = t.identity.enterprise
    decision = route(
        svc,
        t,
        {
            "question": question,
            "description": "",
            "uscc": enterprise.uscc if enterprise else None,
            "entry": t.data.get("entry"),
        },
    )
    handoff = svc.live.request(t.s, t.identity, decision, question, t.now)
    if handoff is None:
        no_one = svc.r("handoff_no_one", contact_days=svc.sla.limits.contact)
        return filing.start(svc, t, question=question).after(Reply(no_one))
    return goto(State.WAITING, handoff=handoff.id, question=question).say(
        svc.r("handoff_waiting", department=decision.department)
    )


def waiting(svc: Services, t: Turn) -> Outcome:
    """Still waiting for a person: the bot answers what it can meanwhile."""
    handoff = svc.live.get(t.s, t.data.get("handoff"))
    department = handoff.department if handoff is not None else ""
    out = stay()
    kind = parsing.small_talk_of(t.text)
    if kind is not None:
        t.log.outcome = TurnOutcome.SMALLTALK
        out.say(svc.r(f"small_talk_{kind.value}"))
    else:
        d = decide(svc, t.text)
        if d is not None:
            log_decision(t, d)
        if d is not None and d.action is Action.ANSWER and d.top is not None:
            t.log.outcome = TurnOutcome.ANSWERED
            e = d.top.entry
            out.say(
                svc.r("answer", answer=e.answer, source=e.source.document, department=e.department)
            )
    return out.say(svc.r("handoff_waiting", department=department))


def end_or_relay(svc: Services, t: Turn, text: str) -> Outcome:
    """In a live chat: ``取消``/``结束`` ends it, anything else goes to the commissioner."""
    handoff = svc.live.get(t.s, t.data.get("handoff"))
    t.log.outcome = TurnOutcome.HANDOFF
    if handoff is None:
        return goto(State.IDLE)
    if parsing.command_of(text) in (parsing.Command.CANCEL, parsing.Command.END):
        svc.live.end(t.s, handoff, t.now, by_staff=False)
        return goto(State.IDLE).say(svc.r("handoff_user_ended"))
    svc.live.relay_from_enterprise(t.s, handoff, text)
    return stay()
