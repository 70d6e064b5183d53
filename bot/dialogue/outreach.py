"""Who is who and what goes out, from the enterprise's side of the chat.

* ``核验 核验码`` — prove a 绑定 with the code the commissioner gave (:mod:`handoff.binding`);
* ``我的专员`` (also the WeChat menu key ``MY_COMMISSIONER``) — 亮身份: the enterprise's
  commissioner, department, office phone and what they help with;
* ``退订通知`` / ``订阅通知`` — notices off and on (:mod:`handoff.notices`); messages about
  the user's own tickets are not notices and keep coming;
* ``填写工单`` — answer a 为企服务工作单 (:mod:`bot.dialogue.workorder`).
"""

from __future__ import annotations

import enum
import re

from bot.dialogue import workorder
from bot.dialogue.states import Outcome, Services, Turn, stay
from handoff.binding import BindingError, redeem_code
from handoff.conversations import TurnOutcome
from handoff.models import Enterprise
from handoff.notices import set_notices_off
from knowledge.tokenizer import normalize

__all__ = ["Word", "command", "commissioner_card", "word_of"]


class Word(enum.StrEnum):
    """The commands of this module."""

    VERIFY = "verify"
    MY_COMMISSIONER = "my_commissioner"
    NOTICES_OFF = "notices_off"
    NOTICES_ON = "notices_on"
    WORK_ORDER = "work_order"


_WORDS: tuple[tuple[Word, re.Pattern[str]], ...] = tuple(
    (word, re.compile(pattern))
    for word, pattern in (
        (Word.VERIFY, r"^(/verify|核验码|核验)(\s|$|[:：])"),
        (
            Word.MY_COMMISSIONER,
            r"^(/commissioner|我的专员|我的服务专员|服务专员|专员是谁)[?？。]?$",
        ),
        (Word.NOTICES_OFF, r"^(/unsubscribe|退订通知|退订|取消订阅|不再接收通知)[。!！]?$"),
        (Word.NOTICES_ON, r"^(/subscribe|订阅通知|恢复通知|接收通知)[。!！]?$"),
        (Word.WORK_ORDER, r"^(/workorder|填写工单|回复工单|填写为企服务工作单)(\s*\d+)?[。]?$"),
    )
)


def word_of(text: str) -> tuple[Word, str] | None:
    """The command *text* is, with what follows the command word."""
    norm = normalize(text)
    for word, pattern in _WORDS:
        m = pattern.search(norm)
        if m:
            return word, norm[m.end(1) :].strip(" :：")
    return None


def command(svc: Services, t: Turn) -> Outcome | None:
    """The outcome of one of this module's commands, or ``None`` when *t* is not one."""
    found = word_of(t.text)
    if found is None:
        return None
    word, argument = found
    t.log.outcome = TurnOutcome.COMMAND
    if word is Word.VERIFY:
        return verify(svc, t, argument)
    if word is Word.MY_COMMISSIONER:
        return stay(my_commissioner(svc, t))
    if word is Word.WORK_ORDER:
        return workorder.start(svc, t, int(argument) if argument.isdigit() else None)
    off = word is Word.NOTICES_OFF
    changed = set_notices_off(t.s, t.identity, off)
    key = ("notices_off" if off else "notices_on") + ("_done" if changed else "_already")
    return stay(svc.r(key))


def verify(svc: Services, t: Turn, code: str) -> Outcome:
    """``核验 CODE``: bind and verify with the commissioner's one-time code."""
    if not code:
        return stay(svc.r("verify_usage"))
    try:
        enterprise = redeem_code(t.s, t.identity, code, now=t.now)
    except BindingError as exc:
        t.log.outcome = TurnOutcome.INVALID
        return stay(svc.r("verify_failed", reason=str(exc)))
    done = svc.r("verify_done", name=enterprise.name, uscc=enterprise.uscc)
    return stay(done).say(commissioner_card(svc, enterprise, verified=True))


def my_commissioner(svc: Services, t: Turn) -> str:
    """我的专员: the bound enterprise's commissioner, or how to get there."""
    enterprise = t.identity.enterprise
    if enterprise is None:
        return svc.r("my_commissioner_unbound")
    return commissioner_card(svc, enterprise, verified=t.identity.verified_at is not None)


def commissioner_card(svc: Services, enterprise: Enterprise, *, verified: bool) -> str:
    """亮身份、亮职责: name, department, office phone and duties of the 包保 commissioner."""
    person = enterprise.commissioner
    if person is None or not person.active:
        text = svc.r("my_commissioner_unassigned", enterprise=enterprise.name)
    else:
        text = svc.r(
            "my_commissioner",
            enterprise=enterprise.name,
            name=person.name,
            department=person.department,
            phone=person.phone or svc.r("my_commissioner_no_phone"),
            duties=(person.duties or "").strip() or svc.r("my_commissioner_duties_default"),
        )
    if not verified:
        text += "\n" + svc.r("my_commissioner_unverified")
    return text
