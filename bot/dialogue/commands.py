"""Commands an enterprise user can give in any state: 菜单, 取消, 查询, 绑定, 转人工, 提交诉求,
and chasing a filed need that nobody has acted on (催办). (核验, 我的专员 and the notice
commands are :mod:`bot.dialogue.outreach`'s.)"""

from __future__ import annotations

from bot import parsing
from bot.dialogue import filing, outreach, person
from bot.dialogue.common import my_tickets
from bot.dialogue.states import Outcome, Services, State, Turn, goto, stay
from bot.parsing import Command
from bot.replies import clock_due, format_due
from bot.types import Button
from handoff.binding import BindingError
from handoff.conversations import TurnOutcome
from handoff.models import TicketState
from handoff.registry import bind_identity, validate_uscc
from yxby.errors import InputError

__all__ = ["OPEN_STATES", "command"]

OPEN_STATES = frozenset(
    {TicketState.NEW, TicketState.ACCEPTED, TicketState.IN_PROGRESS, TicketState.ESCALATED}
)


def command(svc: Services, t: Turn) -> Outcome | None:
    """The outcome of a command in *t*, or ``None`` when *t* is not one."""
    cmd = parsing.command_of(t.text)
    number = parsing.TICKET_NUMBER.search(t.text)
    wanted = number.group(0).upper() if number else None
    if cmd is None and parsing.chases_ticket(t.text):
        chased = _chase(svc, t, wanted)
        if chased is not None:
            return chased
    if cmd is None and wanted is not None and len(t.text) <= 40:
        t.log.outcome = TurnOutcome.COMMAND
        return _status(svc, t, wanted)
    filing_now = t.state in (
        State.COLLECTING, State.CONFIRM_TICKET, State.WORK_ORDER_NEEDS, State.WORK_ORDER_CONTACT
    )  # fmt: skip
    if cmd is None and not filing_now and svc.kb.wants_person(t.text):
        cmd = Command.HUMAN
    if cmd is None:
        return None
    t.log.outcome = TurnOutcome.COMMAND
    if cmd is Command.CANCEL:
        return _cancel(svc, t)
    if cmd is Command.START:
        return goto(State.IDLE).say(svc.r("welcome")).say(svc.r("menu"))
    if cmd is Command.HELP:
        return stay(svc.r("menu"))
    if cmd is Command.STATUS:
        return _status(svc, t, None)
    if cmd is Command.BIND:
        return _bind(svc, t, parsing.command_argument(t.text))
    if cmd is Command.HUMAN:
        return person.request(svc, t)
    if cmd is Command.NEW_TICKET:
        return _new_ticket(svc, t)
    return stay(svc.r("nothing_to_cancel"))  # Command.END outside a live chat


def _cancel(svc: Services, t: Turn) -> Outcome:
    if t.state is State.WAITING:  # leaving the wait withdraws the request (the engine)
        return goto(State.IDLE).say(svc.r("handoff_cancelled"))
    if t.state is State.IDLE:
        return stay(svc.r("nothing_to_cancel"))
    return goto(State.IDLE).say(svc.r("cancelled"))


def _new_ticket(svc: Services, t: Turn) -> Outcome:
    if t.state is State.CONFIRM_TICKET:  # the details are all there: this is the confirmation
        return filing.confirm_ticket(svc, t.with_text("确认提交"))
    if t.state is State.COLLECTING:  # already filing one: ask again for what is missing
        draft = dict(t.data.get("draft", {}))
        return filing.next_field(svc, t, draft, int(t.data.get("invalid", 0)))
    # keep the question being discussed (after an answer, choices or an offer), if any
    keep = t.state in (State.CONFIRMING, State.OFFERING, State.CHOOSING)
    return filing.start(
        svc,
        t,
        question=t.data.get("question", "") if keep else "",
        entry=t.data.get("entry") if keep else None,
        turn=t.data.get("turn") if keep else None,
    )


def _status(svc: Services, t: Turn, number: str | None) -> Outcome:
    mine = my_tickets(t)
    if number is not None:
        if not any(x.number == number for x in mine):
            return stay(svc.r("status_not_found", number=number))
        view = svc.tickets.get(number, session=t.s)
        lines = [
            svc.r(
                "status_detail",
                number=view.number,
                state=view.state.label,
                department=view.department,
                created=format_due(view.created_at),
                description=view.description.split("\n（")[0][:200],
            )
        ]
        nxt = view.next_due()
        if nxt is not None:
            lines.append(svc.r("status_due", clock=nxt.kind.label, due=clock_due(nxt)))
        if view.result:
            lines.append(svc.r("status_result", result=view.result))
        return stay("\n".join(lines))
    if not mine:
        return stay(svc.r("status_none"))
    shown = mine[: svc.settings.status_limit]
    lines = [svc.r("status_header", count=len(shown))]
    lines += [
        svc.r(
            "status_line",
            number=x.number,
            state=x.state.label,
            department=x.department,
            title=x.title[:30],
        )
        for x in shown
    ]
    return stay("\n".join(lines), buttons=tuple(Button(x.number, x.number) for x in shown))


def _bind(svc: Services, t: Turn, raw: str) -> Outcome:
    """``绑定 USCC`` claims the enterprise (未核验); ``绑定 USCC 核验码`` also proves it."""
    if not raw:
        return stay(svc.r("bind_usage"))
    uscc, code = raw, ""
    if len(raw.replace(" ", "")) != 18:  # not a code typed with spaces: 代码 核验码
        uscc, _, code = raw.partition(" ")
    try:
        enterprise = bind_identity(t.s, t.identity, uscc)
    except BindingError as exc:
        t.log.outcome = TurnOutcome.INVALID
        return stay(svc.r("bind_refused", reason=str(exc)))
    except InputError as exc:
        t.log.outcome = TurnOutcome.INVALID
        return stay(svc.r("bind_invalid", value=uscc[:30], reason=str(exc)))
    if enterprise is None:
        return stay(svc.r("bind_unknown", uscc=validate_uscc(uscc)))
    if code.strip():
        return outreach.verify(svc, t, code.strip())
    if t.identity.verified_at is not None:
        return stay(svc.r("bind_verified_already", name=enterprise.name, uscc=enterprise.uscc))
    done = svc.r("bind_done", name=enterprise.name, uscc=enterprise.uscc)
    return stay(done).say(outreach.commissioner_card(svc, enterprise, verified=False))


def _chase(svc: Services, t: Turn, number: str | None) -> Outcome | None:
    """催办: tell the ticket's commissioner now, with the ticket number."""
    open_ones = [x for x in my_tickets(t) if x.state in OPEN_STATES]
    target = next((x for x in open_ones if x.number == number), None) if number else None
    if target is None and number is None and open_ones:
        target = open_ones[0]
    if target is None:
        return None
    view = svc.tickets.urge(target.number, actor=t.actor, note=t.text[:500], session=t.s)
    t.log.outcome = TurnOutcome.COMMAND
    nxt = view.next_due()
    return stay(
        svc.r(
            "urge_sent",
            number=view.number,
            department=view.department,
            due=f"{nxt.kind.label} {clock_due(nxt)}" if nxt else "—",
        )
    )
