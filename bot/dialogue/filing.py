"""Filing a ticket: the offer, collecting what is missing, the summary and its corrections.

The draft keeps the question under discussion (its knowledge entry and turn), the
description, the enterprise and the phone. The summary lets the user correct or add to any
of them before submitting: ``修改诉求``/``补充说明``/``修改企业``/``修改电话`` (with the new
value in the same message or the next one).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot import parsing
from bot.dialogue import questions
from bot.dialogue.common import route, set_turn_outcome, turn_id
from bot.dialogue.states import Outcome, Services, State, Turn, goto
from bot.replies import clock_due
from bot.types import Button
from handoff.conversations import TurnOutcome
from handoff.models import ClockKind, Ticket
from handoff.registry import find_by_name, find_enterprise, register_from_channel, validate_uscc
from handoff.tickets import TicketView
from yxby.errors import YxbyError

__all__ = ["collecting", "confirm_ticket", "offer", "offering", "start"]

_SKIP = ("没有", "无", "跳过", "不用", "不用了", "没有了")


def offer(
    svc: Services, t: Turn, *, question: str, entry: str | None = None, turn: int | None = None
) -> Outcome:
    """Ask whether to file a ticket for *question*."""
    return goto(State.OFFERING, question=question, entry=entry, turn=turn or turn_id(t)).say(
        svc.r(
            "offer_ticket",
            contact_days=svc.sla.limits.contact,
            done_days=svc.sla.limits.done,
        ),
        buttons=(
            Button(svc.r("offer_ticket_yes"), "offer:yes"),
            Button(svc.r("offer_ticket_no"), "offer:no"),
        ),
    )


def offering(svc: Services, t: Turn) -> Outcome:
    """The answer to the offer: yes starts filing; no, or thanks, declines."""
    thanks = parsing.small_talk_of(t.text) is parsing.SmallTalk.THANKS
    if parsing.is_yes(t.text) and not thanks:
        return start(
            svc,
            t,
            question=t.data.get("question", ""),
            entry=t.data.get("entry"),
            turn=t.data.get("turn"),
        )
    if parsing.is_no(t.text) or thanks:
        return goto(State.IDLE).say(svc.r("offer_declined"))
    return questions.ask(svc, t.fresh())


def start(
    svc: Services, t: Turn, *, question: str = "", entry: str | None = None, turn: int | None = None
) -> Outcome:
    """Start a draft from the question under discussion (if it describes a need at all)."""
    need = question.strip() if parsing.describes_need(question) else ""
    draft: dict[str, Any] = {"question": need, "entry": entry if need else None, "turn": turn}
    if need and entry:
        # the knowledge base's answer did not settle it: ask what is still missing
        draft["description"] = need
        draft["ask_detail"] = True
    elif len(need) >= svc.settings.min_description_chars:
        draft["description"] = need
    enterprise = t.identity.enterprise
    if enterprise is not None:
        draft["uscc"] = enterprise.uscc
        draft["enterprise_name"] = enterprise.name
    if t.identity.contact_phone:
        draft["phone"] = t.identity.contact_phone
    return next_field(svc, t, draft)


def next_field(svc: Services, t: Turn, draft: dict[str, Any], invalid: int = 0) -> Outcome:
    """Ask for the first missing detail, or show the summary when nothing is missing."""
    if draft.pop("ask_detail", False):
        return goto(State.COLLECTING, field="detail", draft=draft, invalid=invalid).say(
            svc.r("collect_detail", question=draft["description"]),
            buttons=(Button(svc.r("collect_detail_skip"), "cmd:没有"),),
        )
    if "description" not in draft:
        key = "collect_description_after" if draft.get("question") else "collect_description"
        return goto(State.COLLECTING, field="description", draft=draft, invalid=invalid).say(
            svc.r(key, min_chars=svc.settings.min_description_chars, question=draft["question"])
        )
    if "uscc" not in draft and "enterprise_name" not in draft:
        return goto(State.COLLECTING, field="enterprise", draft=draft, invalid=invalid).say(
            svc.r("collect_enterprise")
        )
    if "phone" not in draft:
        return goto(State.COLLECTING, field="phone", draft=draft, invalid=invalid).say(
            svc.r("collect_phone")
        )
    return _summary(svc, t, draft)


def _summary(svc: Services, t: Turn, draft: dict[str, Any]) -> Outcome:
    decision = route(svc, t, draft)
    draft["route"] = {
        "department": decision.department,
        "rule": decision.rule.value,
        "reason": decision.reason,
    }
    enterprise = draft.get("enterprise_name") or ""
    if draft.get("uscc"):
        enterprise = f"{enterprise}（{draft['uscc']}）" if enterprise else draft["uscc"]
    labels = ("collect_confirm_yes", "collect_edit_add", "collect_edit_enterprise",
              "collect_edit_phone", "collect_confirm_no")  # fmt: skip
    payloads = ("confirm:yes", "edit:detail", "edit:enterprise", "edit:phone", "confirm:no")
    return goto(State.CONFIRM_TICKET, draft=draft).say(
        svc.r(
            "collect_confirm",
            description=draft["description"],
            enterprise=enterprise,
            phone=draft["phone"],
            department=decision.department,
        ),
        buttons=tuple(Button(svc.r(k), p) for k, p in zip(labels, payloads, strict=True)),
    )


def _take(svc: Services, t: Turn, draft: dict[str, Any], field: str, value: str) -> str | None:
    """Put *value* into the draft's *field*; the Chinese reason when it is not usable."""
    if field == "detail":
        # "没有", "确认提交", a tapped button's word …: nothing to add
        if value and value not in _SKIP and parsing.describes_need(value):
            draft["description"] = f"{draft['description']}\n补充说明：{value}"
        return None
    if field == "description":
        if not parsing.describes_need(value):
            return svc.r("collect_description_not_need", value=value[:30])
        if len(value) < svc.settings.min_description_chars:
            return svc.r("collect_description_short", min_chars=svc.settings.min_description_chars)
        question = draft.get("question") or ""
        draft["description"] = (
            f"{question}\n{value}" if question and question not in value else value
        )
        return None
    if field == "enterprise":
        return _take_enterprise(svc, t, draft, value)
    phone = parsing.parse_phone(value)
    if phone is None:
        return svc.r("collect_phone_invalid", value=value[:30])
    draft["phone"] = phone
    return None


def _take_enterprise(svc: Services, t: Turn, draft: dict[str, Any], value: str) -> str | None:
    compact = value.replace(" ", "").upper()
    if compact.isascii() and compact.isalnum() and len(compact) >= 15:
        try:
            code = validate_uscc(compact)
        except YxbyError as exc:
            return svc.r("collect_enterprise_invalid", value=value[:30], reason=str(exc))
        draft.pop("enterprise_name", None)
        draft["uscc"] = code
        known = find_enterprise(t.s, code)
        if known is not None:
            draft["enterprise_name"] = known.name
        return None
    letters = sum(1 for ch in value if ch.isalpha())
    if not 2 <= len(value) <= 100 or letters < 2:
        return svc.r("collect_enterprise_name_invalid")
    draft.pop("uscc", None)
    draft["enterprise_name"] = value
    named = find_by_name(t.s, value)
    if named is not None:  # the registry knows this exact name: file the ticket there
        draft["uscc"] = named.uscc
    return None


def collecting(svc: Services, t: Turn) -> Outcome:
    """One detail of the draft: checked, stored, and the next one asked for."""
    draft: dict[str, Any] = dict(t.data.get("draft", {}))
    field = str(t.data.get("field"))
    error = _take(svc, t, draft, field, t.text.strip())
    if error is None:
        return next_field(svc, t, draft)
    t.log.outcome = TurnOutcome.INVALID
    invalid = int(t.data.get("invalid", 0)) + 1
    if invalid >= svc.settings.max_invalid_attempts:
        return goto(State.IDLE).say(svc.r("too_many_invalid"))
    return goto(State.COLLECTING, field=field, draft=draft, invalid=invalid).say(error)


def confirm_ticket(svc: Services, t: Turn) -> Outcome:
    """The summary: submit, cancel, or correct a detail."""
    draft: dict[str, Any] = dict(t.data.get("draft", {}))
    edit = parsing.edit_of(t.text)
    if edit is not None:
        field, value = edit
        if field == "enterprise":
            draft.pop("uscc", None)
            draft.pop("enterprise_name", None)
        if field == "description":
            draft.pop("description", None)
            draft["question"] = ""
        if not value:
            return next_field(svc, t, _asking(draft, field))
        error = _take(svc, t, draft, field, value)
        if error is not None:
            t.log.outcome = TurnOutcome.INVALID
            return goto(State.COLLECTING, field=field, draft=draft, invalid=1).say(error)
        return next_field(svc, t, draft)
    if parsing.is_no(t.text):
        return goto(State.IDLE).say(svc.r("cancelled"))
    if not parsing.is_yes(t.text):
        t.log.outcome = TurnOutcome.INVALID
        return goto(State.CONFIRM_TICKET, draft=draft).say(svc.r("collect_confirm_hint"))
    view = create(svc, t, draft)
    t.log.outcome = TurnOutcome.TICKET
    return goto(State.IDLE).say(created_text(svc, view))


def _asking(draft: dict[str, Any], field: str) -> dict[str, Any]:
    """The draft with *field* about to be asked again (the summary follows the answer)."""
    if field == "detail":
        draft["ask_detail"] = True
    elif field == "phone":
        draft.pop("phone", None)
    return draft


def create(svc: Services, t: Turn, draft: dict[str, Any]) -> TicketView:
    """File the ticket of a complete draft (registering the enterprise if needed)."""
    uscc = draft.get("uscc")
    if uscc:
        register_from_channel(t.s, t.identity, uscc, draft.get("enterprise_name"), t.now)
    t.identity.contact_phone = draft["phone"]
    description = draft["description"]
    if not uscc and draft.get("enterprise_name"):
        description = f"{description}\n（企业：{draft['enterprise_name']}）"
    description += f"\n（联系电话：{draft['phone']}）"
    chosen = draft["route"]
    view = svc.tickets.create(
        description,
        title=(draft.get("question") or draft["description"]).splitlines()[0][:60],
        department=chosen["department"],
        rule=chosen["rule"],
        reason=chosen["reason"],
        actor=t.actor,
        enterprise_uscc=uscc,
        channel_identity_id=t.identity.id,
        session=t.s,
    )
    ticket_id = t.s.scalars(select(Ticket.id).where(Ticket.number == view.number)).one()
    t.log.ticket_id = ticket_id
    set_turn_outcome(t, draft.get("turn"), TurnOutcome.TICKET, ticket_id=ticket_id)
    return view


def created_text(svc: Services, view: TicketView) -> str:
    """The confirmation of a new ticket: number, department and both deadlines."""
    contact = view.clock(ClockKind.CONTACT)
    done = view.clock(ClockKind.DONE)
    return svc.r(
        "ticket_created",
        number=view.number,
        department=view.department,
        contact_due=clock_due(contact) if contact else "—",
        done_due=clock_due(done) if done else "—",
    )
