"""Answering a 为企服务工作单 in the chat: the needs, then the contact person.

``填写工单`` (or the notice's button) starts the form for the newest work order sent to this
chat (or the one numbered). Each line of the answer that states a need becomes a ticket,
routed as every ticket is (the knowledge entry it matches, keyword rules, the enterprise's
commissioner, industry …) with the chat's channel as its source; ``无`` records that the
enterprise has no needs. The answer and its tickets are kept on the notice's receipt.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from bot import parsing
from bot.dialogue.common import decide, route
from bot.dialogue.states import Outcome, Services, State, Turn, goto, stay
from handoff.conversations import TurnOutcome
from handoff.models import Enterprise
from handoff.notices import Notice, NoticeReceipt, latest_work_order, record_answer
from knowledge import Action
from knowledge.tokenizer import normalize

__all__ = ["contact", "needs", "parse_contact", "split_needs", "start"]

_NONE = re.compile(r"^(无|没有|暂无|暂无需求|没有需求|无需求|不需要|没|都没有|暂时没有)[。.!！]?$")
_SPLIT = re.compile(r"[\n；;]+|(?:^|\s)\d{1,2}[、.．)）]\s*")
_PHONE = re.compile(r"(?:\+?86[\s-]?)?(1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}|0\d{2,3}[\s-]?\d{7,8})")
_NAME_NOISE = re.compile(
    r"^(联系人|姓名|名字)[:：\s]*|[,，。:：;；、\s]+|(电话|手机|联系电话)[:：]?$"
)


def start(svc: Services, t: Turn, notice_id: int | None) -> Outcome:
    """Open the form of the work order *notice_id* (else the newest) sent to this chat."""
    found = latest_work_order(t.s, t.identity.id, notice_id)
    if found is None:
        return stay(svc.r("workorder_none"))
    notice, receipt = found
    return goto(State.WORK_ORDER_NEEDS, notice=notice.id, receipt=receipt.id).say(
        svc.r("workorder_start", title=notice.title)
    )


def split_needs(text: str) -> list[str]:
    """The needs in an answer: one per line (or ``；``, or a numbered list), each one that
    describes a need."""
    parts = [p.strip(" ，,。") for p in _SPLIT.split(text) if p and p.strip(" ，,。")]
    return [p for p in parts if parsing.describes_need(p)]


def needs(svc: Services, t: Turn) -> Outcome:
    """The needs of the answer (or that there are none)."""
    receipt = t.s.get(NoticeReceipt, t.data.get("receipt"))
    if receipt is None:
        return goto(State.IDLE).say(svc.r("workorder_none"))
    if _NONE.match(normalize(t.text)):
        record_answer(receipt, "无需求", [], t.now)
        return goto(State.IDLE).say(svc.r("workorder_no_need"))
    found = split_needs(t.text)
    if not found:
        t.log.outcome = TurnOutcome.INVALID
        invalid = int(t.data.get("invalid", 0)) + 1
        if invalid >= svc.settings.max_invalid_attempts:
            return goto(State.IDLE).say(svc.r("too_many_invalid"))
        return goto(State.WORK_ORDER_NEEDS, **{**t.data, "invalid": invalid}).say(
            svc.r("workorder_need_unclear")
        )
    return goto(
        State.WORK_ORDER_CONTACT, notice=t.data.get("notice"), receipt=receipt.id, needs=found
    ).say(svc.r("workorder_contact"))


def parse_contact(text: str) -> tuple[str, str] | None:
    """``(name, phone)`` from ``张三 13800138000`` (any order, any separators), or ``None``."""
    norm = normalize(text)
    m = _PHONE.search(norm)
    if m is None:
        return None
    phone = parsing.parse_phone(m.group(0))
    if phone is None:
        return None
    rest = (norm[: m.start()] + " " + norm[m.end() :]).strip()
    name = _NAME_NOISE.sub("", rest).strip()
    letters = sum(1 for ch in name if ch.isalpha())
    if not 1 <= len(name) <= 20 or letters < 1:
        return None
    # keep the name as typed (normalize lower-cases Latin letters)
    original = re.sub(r"\s+", "", text)
    at = original.lower().find(name)
    if at >= 0:
        name = original[at : at + len(name)]
    return name, phone


def contact(svc: Services, t: Turn) -> Outcome:
    """The contact person: then every need becomes a ticket."""
    parsed = parse_contact(t.text)
    if parsed is None:
        t.log.outcome = TurnOutcome.INVALID
        invalid = int(t.data.get("invalid", 0)) + 1
        if invalid >= svc.settings.max_invalid_attempts:
            return goto(State.IDLE).say(svc.r("too_many_invalid"))
        return goto(State.WORK_ORDER_CONTACT, **{**t.data, "invalid": invalid}).say(
            svc.r("workorder_contact_invalid")
        )
    name, phone = parsed
    receipt = t.s.get(NoticeReceipt, t.data.get("receipt"))
    notice = t.s.get(Notice, t.data.get("notice"))
    if receipt is None or notice is None:
        return goto(State.IDLE).say(svc.r("workorder_none"))
    uscc = t.s.scalar(select(Enterprise.uscc).where(Enterprise.id == receipt.enterprise_id))
    t.identity.contact_phone = phone
    lines, numbers = [], []
    for need in list(t.data.get("needs") or []):
        view = _file(svc, t, need, uscc, notice.title, name, phone)
        numbers.append(view.number)
        lines.append(
            svc.r(
                "workorder_done_line",
                number=view.number,
                department=view.department,
                title=view.title,
            )
        )
    record_answer(receipt, "\n".join([*t.data.get("needs", []), f"联系人：{name} {phone}"]),
                  numbers, t.now)  # fmt: skip
    t.log.outcome = TurnOutcome.TICKET
    return goto(State.IDLE).say(
        svc.r(
            "workorder_done",
            count=len(numbers),
            lines="\n".join(lines),
            contact_days=svc.sla.limits.contact,
        )
    )


def _file(
    svc: Services, t: Turn, need: str, uscc: str | None, title: str, name: str, phone: str
) -> Any:
    d = decide(svc, need)
    entry = d.top.entry.id if d is not None and d.action is Action.ANSWER and d.top else None
    decision = route(svc, t, {"question": need, "description": "", "uscc": uscc, "entry": entry})
    return svc.tickets.create(
        f"{need}\n（为企服务工作单「{title}」的回复；联系人：{name}，联系电话：{phone}）",
        title=need[:60],
        department=decision.department,
        rule=decision.rule.value,
        reason=decision.reason,
        actor=t.actor,
        enterprise_uscc=uscc,
        channel_identity_id=t.identity.id,
        session=t.s,
    )
