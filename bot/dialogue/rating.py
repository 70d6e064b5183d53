"""The enterprise's say on a result: 满意 / 基本满意 / 不满意, and what it adds after.

After 不满意 the ticket is reopened (重办, once) and the enterprise is asked what was wrong;
its words go to the handling commissioner. A second 不满意 closes the ticket and 政务办 is
told (the ticket service's notifier does both, so the console and the CLI behave the same).
"""

from __future__ import annotations

from bot import parsing
from bot.dialogue import questions
from bot.dialogue.common import my_tickets
from bot.dialogue.states import INTERRUPTIBLE, Outcome, Services, State, Turn, goto, stay
from bot.replies import clock_due
from handoff.conversations import TurnOutcome
from handoff.models import ClockKind, Ticket, TicketState

__all__ = ["rate", "rating_comment", "rating_text", "unsatisfied_reason"]

_SKIP = ("跳过", "没有", "无", "没了", "没有了", "算了")


def _awaiting(t: Turn, number: str | None = None) -> Ticket | None:
    for ticket in my_tickets(t):
        if ticket.state is TicketState.FEEDBACK_SENT and number in (None, ticket.number):
            return ticket
    return None


def rating_text(svc: Services, t: Turn) -> Outcome | None:
    """A typed 满意/基本满意/不满意 rates the ticket waiting for it (``None``: not a rating)."""
    result = parsing.rating_of(t.text)
    if result is None:
        return None
    ticket = _awaiting(t)
    if ticket is None:
        return stay(svc.r("rate_nothing")) if t.state is State.IDLE else None
    return rate(svc, t, ticket.number, result)


def rate(svc: Services, t: Turn, number: str, result: str) -> Outcome:
    """Record the rating of ticket *number* (a button or typed text)."""
    t.log.outcome = TurnOutcome.INPUT
    number = number.strip().upper()
    verdict = parsing.rating_of(result)
    ticket = _awaiting(t, number) if verdict is not None else None
    if verdict is None or ticket is None:
        t.log.outcome = TurnOutcome.INVALID if verdict is None else TurnOutcome.INPUT
        return stay(svc.r("rate_nothing"))
    # the same path as the ticket page: record, and 重办 after 不满意 while it still may
    rating = svc.tickets.rate(number, result=verdict, actor=t.actor, session=t.s)
    view = rating.view
    # a result can be rated at any time; a step in progress (ticket details, a person being
    # called, a live chat) is kept, other states give way to the rating's own questions
    interruptible = t.state in INTERRUPTIBLE
    if verdict == "不满意":
        if rating.closed:
            text = svc.r("rate_closed_after_reopen", number=number)
        else:
            contact = view.clock(ClockKind.CONTACT)
            due = clock_due(contact) if contact else "—"
            text = svc.r("rate_reopened", number=number, contact_due=due)
        if not interruptible:
            return stay(text)
        return goto(State.UNSATISFIED_REASON, ticket=number).say(text).say(svc.r("rate_ask_reason"))
    if interruptible:
        return goto(State.RATING_COMMENT, ticket=number).say(svc.r("rate_thanks"))
    return stay(svc.r("rate_thanks_short"))


def _comment_or_question(svc: Services, t: Turn) -> Outcome | None:
    """``None`` when *t* is a comment; else how to go on (skipped, or a new question)."""
    skip = t.text.strip(" 。.!！") in _SKIP or parsing.small_talk_of(t.text) is not None
    if parsing.is_no(t.text) or skip:
        return goto(State.IDLE).say(svc.r("solved_thanks"))
    if parsing.parse_choice(t.text) is not None or questions.answerable(svc, t):
        return questions.ask(svc, t.fresh())
    return None


def _keep_comment(svc: Services, t: Turn) -> Outcome | None:
    """Keep *t* as the remark on the rated ticket; ``None`` when it was a comment, else how
    the conversation goes on instead (skipped, or a new question)."""
    other = _comment_or_question(svc, t)
    if other is not None:
        return other
    number = t.data.get("ticket")
    if isinstance(number, str):
        svc.tickets.add_survey_comment(number, comment=t.text[:1000], actor=t.actor, session=t.s)
    return None


def rating_comment(svc: Services, t: Turn) -> Outcome:
    """An optional remark after a rating, kept with the callback."""
    return _keep_comment(svc, t) or goto(State.IDLE).say(svc.r("rate_comment_saved"))


def unsatisfied_reason(svc: Services, t: Turn) -> Outcome:
    """What was wrong, after 不满意: kept with the callback and passed to the commissioner."""
    number = t.data.get("ticket") or ""
    return _keep_comment(svc, t) or goto(State.IDLE).say(svc.r("rate_reason_saved", number=number))
