"""Questions: small talk, the knowledge base's answer, numbered choices and "did it help?"."""

from __future__ import annotations

from collections.abc import Sequence

from bot import parsing
from bot.dialogue import filing, person
from bot.dialogue.common import decide, log_decision, set_turn_outcome, turn_id
from bot.dialogue.states import Outcome, Services, State, Turn, goto
from bot.types import Button, Reply
from handoff.conversations import TurnOutcome
from knowledge import Action
from knowledge.base import Hit
from yxby.errors import InputError

__all__ = ["answer", "answerable", "ask", "choosing", "confirming", "small_talk"]


def small_talk(svc: Services, t: Turn) -> Outcome | None:
    """你好, 谢谢, 好的 …: a short friendly reply (not a question, not a knowledge gap)."""
    kind = parsing.small_talk_of(t.text)
    if kind is None:
        return None
    t.log.outcome = TurnOutcome.SMALLTALK
    return goto(State.IDLE).say(svc.r(f"small_talk_{kind.value}"))


def ask(svc: Services, t: Turn) -> Outcome:
    """A new question (from an idle conversation): answer, suggest, offer a ticket or a person."""
    chat = small_talk(svc, t)
    if chat is not None:
        return chat
    if parsing.parse_choice(t.text) is not None:
        # a bare number with no choices on offer: not a question
        t.log.outcome = TurnOutcome.INVALID
        return goto(State.IDLE).say(svc.r("number_without_choices"))
    try:
        decision = svc.kb.decide(t.text)
    except InputError as exc:
        t.log.outcome = TurnOutcome.INVALID
        return goto(State.IDLE).say(str(exc))
    log_decision(t, decision)
    if decision.action is Action.HANDOFF:
        t.log.outcome = TurnOutcome.HANDOFF
        return person.request(svc, t)
    if decision.action is Action.ANSWER and decision.top is not None:
        return answer(svc, t, decision.top.entry.id, t.text, related=decision.suggestions)
    if decision.action is Action.SUGGEST:
        t.log.outcome = TurnOutcome.SUGGESTED
        ids = [h.entry.id for h in decision.suggestions]
        titles = tuple(h.entry.title for h in decision.suggestions)
        return (
            goto(State.CHOOSING, question=t.text, choices=ids, turn=turn_id(t))
            .say(
                svc.r("suggest"),
                choices=(*titles, svc.r("suggest_none_of_these")),
                buttons=tuple(Button(f"{i}", f"choose:{i}") for i in range(1, len(titles) + 2)),
            )
            .say(svc.r("suggest_hint"))
        )
    t.log.outcome = TurnOutcome.NONE
    return filing.offer(svc, t, question=t.text).after(Reply(svc.r("not_found")))


def answer(
    svc: Services, t: Turn, entry_id: str, question: str, related: Sequence[Hit] = ()
) -> Outcome:
    """Answer with entry *entry_id* and ask whether it solved the need."""
    entry = svc.kb.get(entry_id)
    if entry is None:  # the knowledge base changed under a stored choice
        return ask(svc, t.fresh())
    t.log.outcome = TurnOutcome.ANSWERED
    t.log.entry_id = entry.id
    source = entry.source.document + (f" {entry.source.section}" if entry.source.section else "")
    text = svc.r("answer", answer=entry.answer, source=source, department=entry.department)
    if entry.source.url:  # on a line of its own: every channel shows it as a link
        text += "\n" + entry.source.url
    if related:
        text += "\n" + svc.r("answer_related", titles="；".join(h.entry.title for h in related))
    return (
        goto(State.CONFIRMING, entry=entry.id, question=question, turn=turn_id(t))
        .say(text)
        .say(
            svc.r("ask_solved"),
            buttons=(
                Button(svc.r("solved_buttons_yes"), "solved:yes"),
                Button(svc.r("solved_buttons_no"), "solved:no"),
            ),
        )
    )


def choosing(svc: Services, t: Turn) -> Outcome:
    """The user picks one of the numbered suggestions (or none, or asks something else)."""
    choices: list[str] = t.data.get("choices", [])
    number = parsing.parse_choice(t.text)
    if number is None:
        if parsing.is_no(t.text):
            return _none_of_these(svc, t)
        return ask(svc, t.fresh())
    if number == len(choices) + 1:
        return _none_of_these(svc, t)
    if not 1 <= number <= len(choices):
        t.log.outcome = TurnOutcome.INVALID
        return Outcome().say(svc.r("choice_out_of_range", number=number, count=len(choices) + 1))
    set_turn_outcome(t, t.data.get("turn"), TurnOutcome.ANSWERED)
    return answer(svc, t, choices[number - 1], t.data.get("question", ""))


def _none_of_these(svc: Services, t: Turn) -> Outcome:
    set_turn_outcome(t, t.data.get("turn"), TurnOutcome.UNSOLVED)
    return filing.offer(svc, t, question=t.data.get("question", ""), turn=t.data.get("turn"))


def confirming(svc: Services, t: Turn) -> Outcome:
    """ "是否解决了您的问题？": yes (or thanks) closes it; no offers a ticket."""
    if parsing.is_yes(t.text) or parsing.small_talk_of(t.text) is parsing.SmallTalk.THANKS:
        set_turn_outcome(t, t.data.get("turn"), TurnOutcome.SOLVED)
        return goto(State.IDLE).say(svc.r("solved_thanks"))
    if parsing.is_no(t.text):
        set_turn_outcome(t, t.data.get("turn"), TurnOutcome.UNSOLVED)
        return filing.offer(
            svc,
            t,
            question=t.data.get("question", ""),
            entry=t.data.get("entry"),
            turn=t.data.get("turn"),
        )
    return ask(svc, t.fresh())


def answerable(svc: Services, t: Turn) -> bool:
    """True when *t*'s text reads as a new question the knowledge base can answer."""
    d = decide(svc, t.text)
    return d is not None and d.action is Action.ANSWER
