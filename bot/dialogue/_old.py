"""The dialogue engine: one brain for every channel.

``Dialogue.handle(Incoming) -> list[Reply]`` decides everything a user experiences — answers
from the 企业服务知识库, numbered suggestions, the "solved?" question, turning a need into a
ticket (collecting what is missing), progress queries, binding an enterprise, live handoff
to a commissioner and the satisfaction rating — and everything a commissioner does from a
chat (taking a handoff, relaying, 签收, 办结). Channel adapters only translate.

Each call runs in one database transaction: the conversation row is locked, the state moves
along an explicit transition table, the turn is logged, pushes to other people go to the
outbox, and the channel message id is recorded with the replies it got — so a redelivered
message gets the same replies and changes nothing, and a restart or a second worker
continues the same conversation.
"""

from __future__ import annotations

import enum
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot import parsing
from bot.notify import reply_payload
from bot.parsing import Command
from bot.replies import Replies
from bot.settings import DialogueSettings
from bot.types import Button, Incoming, MessageKind, Reply
from handoff.calendar import SHANGHAI
from handoff.conversations import (
    Conversation,
    DialogueTurn,
    LiveHandoff,
    LiveHandoffState,
    ProcessedMessage,
    TurnOutcome,
    get_or_create_identity,
    load_conversation,
)
from handoff.models import (
    ChannelIdentity,
    Commissioner,
    CommissionerBinding,
    CommissionerRole,
    Direction,
    Enterprise,
    Ticket,
    TicketState,
    TranscriptLine,
)
from handoff.outbox import enqueue, release_held
from handoff.registry import find_enterprise, kind_from_uscc, route_facts, validate_uscc
from handoff.tickets import SYSTEM_ACTOR, TicketService, TicketView
from knowledge import Action, Decision, KnowledgeBase
from knowledge.base import Hit
from routing import RouteDecision, RouteFacts, Router
from yxby.errors import InputError, RoutingError, TicketError, YxbyError

__all__ = ["Dialogue", "IllegalConversationMove", "State", "format_due"]

log = logging.getLogger("yxby.dialogue")

WEEKDAYS = "一二三四五六日"


class State(enum.StrEnum):
    """Where an enterprise user is in the conversation."""

    IDLE = "idle"
    CHOOSING = "choosing"  # picking one of the numbered suggestions
    CONFIRMING = "confirming"  # asked "是否解决了您的问题？"
    OFFERING = "offering"  # offered to open a ticket
    COLLECTING = "collecting"  # collecting ticket details (description, enterprise, phone)
    CONFIRM_TICKET = "confirm_ticket"  # showing the summary before creating the ticket
    WAITING = "waiting_person"  # asked for a person, waiting for a commissioner
    WITH_PERSON = "with_person"  # talking with a commissioner through the relay
    RATING_COMMENT = "rating_comment"  # rated; an optional comment may follow


_ANY = frozenset(State)
TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: _ANY,
    State.CHOOSING: _ANY,
    State.CONFIRMING: _ANY,
    State.OFFERING: _ANY,
    State.COLLECTING: frozenset(
        {State.IDLE, State.COLLECTING, State.CONFIRM_TICKET, State.WAITING, State.WITH_PERSON}
    ),
    State.CONFIRM_TICKET: frozenset(
        {State.IDLE, State.COLLECTING, State.CONFIRM_TICKET, State.WAITING, State.WITH_PERSON}
    ),
    State.WAITING: frozenset(
        {State.IDLE, State.WAITING, State.WITH_PERSON, State.COLLECTING, State.CONFIRM_TICKET}
    ),
    State.WITH_PERSON: frozenset({State.IDLE, State.WITH_PERSON}),
    State.RATING_COMMENT: _ANY,
}


_STAFF_BUTTONS = {
    "accept": "",
    "transcript": "",
    "resolve": "请回复：办结 {number} 办理结果（例如：办结 {number} 已协调解决……）",
    "transfer": "请回复：转派 {number} 目标部门 理由（例如：转派 {number} 商务局 属贸易业事项）",
    "assist": "请回复：协同 {number} 部门1、部门2",
}
TRANSCRIPT_LINES = 30
_INTERRUPTIBLE = frozenset(
    {State.IDLE, State.CHOOSING, State.CONFIRMING, State.OFFERING, State.RATING_COMMENT}
)
_BUTTON_PREFIXES = ("rate:", "choose:", "solved:", "offer:", "confirm:", "cmd:")


class IllegalConversationMove(YxbyError):
    """The engine tried a state change its transition table does not allow (a bug)."""


def format_due(at: datetime) -> str:
    """``11月30日（周一）`` in Shanghai time: a deadline as users read it."""
    local = at.astimezone(SHANGHAI)
    return f"{local.year}年{local.month}月{local.day}日（周{WEEKDAYS[local.weekday()]}）"


@dataclass
class _Turn:
    """Everything one enterprise message needs while it is being handled."""

    s: Session
    msg: Incoming
    identity: ChannelIdentity
    conv: Conversation
    now: datetime
    text: str
    log: DialogueTurn
    replies: list[Reply] = field(default_factory=list)

    @property
    def state(self) -> State:
        return State(self.conv.state)

    @property
    def data(self) -> dict[str, Any]:
        return self.conv.data


def reply_from_payload(payload: dict[str, Any]) -> Reply:
    """The :class:`Reply` an outbox payload (or a stored reply) describes."""
    return Reply(
        text=str(payload.get("text", "")),
        choices=tuple(payload.get("choices") or ()),
        buttons=tuple(Button(b["label"], b["payload"]) for b in payload.get("buttons") or ()),
        ref=payload.get("ref"),
    )


class Dialogue:
    """The conversation engine shared by every channel. Build it with ``bot.app.build``."""

    def __init__(
        self,
        *,
        kb: KnowledgeBase,
        router: Router,
        tickets: TicketService,
        sessions: sessionmaker[Session],
        replies: Replies,
        settings: DialogueSettings,
        clock: Callable[[], datetime],
        sla_contact_days: int = 2,
        sla_done_days: int = 7,
    ) -> None:
        self.kb = kb
        self.router = router
        self.tickets = tickets
        self.sessions = sessions
        self.r = replies
        self.settings = settings
        self.clock = clock
        self.contact_days = sla_contact_days
        self.done_days = sla_done_days

    # ------------------------------------------------------------------ entry point

    def handle(self, msg: Incoming) -> list[Reply]:
        """Answer one message. Never raises: failures become a friendly Chinese reply."""
        try:
            return self._handle(msg)
        except Exception:
            log.exception("dialogue failed for %s:%s", msg.channel, msg.user_key)
            return [Reply(self.r("internal_error"))]

    def _handle(self, msg: Incoming) -> list[Reply]:
        now = self.clock()
        if msg.msg_id:
            seen = self._replayed(msg)
            if seen is not None:
                return seen
        try:
            with self.sessions.begin() as s:
                if msg.msg_id:
                    s.add(ProcessedMessage(channel=msg.channel, msg_id=msg.msg_id, at=now))
                    s.flush()
                staff = self._staff_of(s, msg)
                if staff is not None:
                    replies = self._staff_turn(s, staff, msg, now)
                else:
                    replies = self._enterprise_turn(s, msg, now)
                if msg.msg_id:
                    self._remember(s, msg, replies)
                return replies
        except IntegrityError:
            # the same message id was handled concurrently: answer as it was answered
            seen = self._replayed(msg) if msg.msg_id else None
            if seen is None:
                raise
            return seen

    def _replayed(self, msg: Incoming) -> list[Reply] | None:
        with self.sessions() as s:
            row = s.scalars(
                select(ProcessedMessage).where(
                    ProcessedMessage.channel == msg.channel, ProcessedMessage.msg_id == msg.msg_id
                )
            ).one_or_none()
            if row is None:
                return None
            return [reply_from_payload(p) for p in row.replies]

    @staticmethod
    def _remember(s: Session, msg: Incoming, replies: Sequence[Reply]) -> None:
        row = s.scalars(
            select(ProcessedMessage).where(
                ProcessedMessage.channel == msg.channel, ProcessedMessage.msg_id == msg.msg_id
            )
        ).one()
        row.replies = [reply_payload(r) for r in replies]

    # ------------------------------------------------------------------ enterprise side

    def _enterprise_turn(self, s: Session, msg: Incoming, now: datetime) -> list[Reply]:
        identity = get_or_create_identity(s, msg.channel, msg.user_key)
        identity.last_inbound_at = now
        if msg.display_name:
            identity.display_name = msg.display_name[:100]
        if msg.kind is MessageKind.UNSUBSCRIBE:
            identity.subscribed = False
        else:
            identity.subscribed = True
            # the user wrote: pushes held for the channel's reply window can go now
            release_held(s, msg.channel, msg.user_key)
        conv = load_conversation(s, identity, now)
        text = self._text_of(msg)
        turn_log = DialogueTurn(
            channel_identity_id=identity.id,
            at=now,
            state=conv.state,
            text=text[:4000],
            tokens=[],
            hits=[],
            outcome=TurnOutcome.INPUT,
        )
        t = _Turn(s, msg, identity, conv, now, text.strip(), turn_log)
        self._expire_if_idle(t)
        self._dispatch(t)
        conv.updated_at = now
        s.add(turn_log)
        self._transcript(s, identity.id, Direction.IN, text or f"[{msg.kind.value}]", now)
        for reply in t.replies:
            self._transcript(s, identity.id, Direction.OUT, reply.render_plain(), now)
        return t.replies

    @staticmethod
    def _text_of(msg: Incoming) -> str:
        if msg.kind in (MessageKind.BUTTON, MessageKind.MENU) and msg.payload:
            return msg.payload
        return msg.text or ""

    def _move(self, t: _Turn, state: State, **data: Any) -> None:
        if state not in TRANSITIONS[t.state]:
            raise IllegalConversationMove(f"conversation cannot go from {t.state} to {state}")
        if t.state is State.WAITING and state not in (State.WAITING, State.WITH_PERSON):
            # leaving the wait for a person in any other way withdraws the request
            waiting = t.s.get(LiveHandoff, t.data.get("handoff"))
            if waiting is not None and waiting.state is LiveHandoffState.WAITING:
                waiting.state = LiveHandoffState.CANCELLED
                waiting.ended_at = t.now
        t.conv.state = state.value
        t.conv.data = {k: v for k, v in data.items() if v is not None}

    def _say(self, t: _Turn, text: str, **kw: Any) -> None:
        t.replies.append(Reply(text, **kw))

    def _expire_if_idle(self, t: _Turn) -> None:
        if t.state in (State.IDLE, State.WAITING, State.WITH_PERSON):
            return
        limit = timedelta(minutes=self.settings.idle_timeout_minutes)
        if t.now - t.conv.updated_at > limit:
            self._move(t, State.IDLE)
            self._say(t, self.r("timeout_reset"))

    def _dispatch(self, t: _Turn) -> None:
        kind = t.msg.kind
        if kind is MessageKind.SUBSCRIBE:
            t.log.outcome = TurnOutcome.COMMAND
            self._say(t, self.r("welcome"))
            self._say(t, self.r("menu"))
            return
        if kind is MessageKind.UNSUBSCRIBE:
            t.log.outcome = TurnOutcome.COMMAND
            return
        if kind in (MessageKind.IMAGE, MessageKind.FILE, MessageKind.LOCATION):
            t.log.outcome = TurnOutcome.INVALID
            if t.state is State.WITH_PERSON:
                self._relay_to_staff(t, f"[{kind.value}]")
                return
            self._say(t, self.r("no_text"))
            return
        if kind is MessageKind.VOICE and not t.text:
            t.log.outcome = TurnOutcome.INVALID
            self._say(t, self.r("voice_unrecognised"))
            return
        if not t.text:
            t.log.outcome = TurnOutcome.INVALID
            self._say(t, self.r("empty_message"))
            return
        if len(t.text) > self.settings.max_message_chars:
            t.log.outcome = TurnOutcome.INVALID
            self._say(
                t, self.r("too_long", length=len(t.text), limit=self.settings.max_message_chars)
            )
            return
        if t.text.startswith(_BUTTON_PREFIXES) and self._button(t):
            return
        if t.state is State.WITH_PERSON:
            self._with_person(t)
            return
        if not parsing.meaningful(t.text):
            t.log.outcome = TurnOutcome.INVALID
            self._say(t, self.r("emoji_only"))
            return
        if self._command(t):
            return
        if self._rating_text(t):
            return
        handler = {
            State.IDLE: self._question,
            State.CHOOSING: self._choosing,
            State.CONFIRMING: self._confirming,
            State.OFFERING: self._offering,
            State.COLLECTING: self._collecting,
            State.CONFIRM_TICKET: self._confirm_ticket,
            State.WAITING: self._waiting,
            State.RATING_COMMENT: self._rating_comment,
        }[t.state]
        handler(t)

    # -- buttons: payloads chosen by the engine itself

    def _button(self, t: _Turn) -> bool:
        kind, _, arg = t.text.partition(":")
        if kind == "rate":
            number, _, result = arg.partition(":")
            self._rate(t, number, result)
            return True
        if kind == "cmd":
            t.text = arg
            return False
        expected = {
            "choose": State.CHOOSING,
            "solved": State.CONFIRMING,
            "offer": State.OFFERING,
            "confirm": State.CONFIRM_TICKET,
        }[kind]
        if t.state is not expected:
            # a button from an earlier step: it no longer applies
            t.log.outcome = TurnOutcome.INVALID
            self._say(t, self.r("button_expired"))
            return True
        t.text = {"yes": "是", "no": "不"}.get(arg, arg)
        return False

    # -- commands

    def _command(self, t: _Turn) -> bool:
        cmd = parsing.command_of(t.text)
        number = parsing.TICKET_NUMBER.search(t.text)
        if cmd is None and number is not None and len(t.text) <= 40:
            t.log.outcome = TurnOutcome.COMMAND
            self._status(t, number.group(0).upper())
            return True
        collecting = t.state in (State.COLLECTING, State.CONFIRM_TICKET)
        if cmd is None and not collecting and self.kb.wants_person(t.text):
            cmd = Command.HUMAN
        if cmd is None:
            return False
        t.log.outcome = TurnOutcome.COMMAND
        if cmd is Command.CANCEL:
            self._cancel(t)
        elif cmd is Command.START:
            self._move(t, State.IDLE)
            self._say(t, self.r("welcome"))
            self._say(t, self.r("menu"))
        elif cmd is Command.HELP:
            self._say(t, self.r("menu"))
        elif cmd is Command.STATUS:
            self._status(t, None)
        elif cmd is Command.BIND:
            self._bind(t, parsing.command_argument(t.text))
        elif cmd is Command.HUMAN:
            t.log.outcome = TurnOutcome.HANDOFF
            self._request_person(t)
        elif cmd is Command.NEW_TICKET and t.state is State.CONFIRM_TICKET:
            t.text = "确认提交"  # the details are all there: this is the confirmation
            self._confirm_ticket(t)
        elif cmd is Command.NEW_TICKET and t.state is State.COLLECTING:
            # already filing one: ask again for what is missing
            self._next_field(t, dict(t.data.get("draft", {})), int(t.data.get("invalid", 0)))
        elif cmd is Command.NEW_TICKET:
            # keep the question being discussed (after an answer or an offer), if any
            keep = t.state in (State.CONFIRMING, State.OFFERING, State.CHOOSING)
            question = t.data.get("question", "") if keep else ""
            entry = t.data.get("entry") if keep else None
            self._start_collecting(t, question=question, entry=entry, turn=t.data.get("turn"))
        elif cmd is Command.END:
            self._say(t, self.r("nothing_to_cancel"))
        return True

    def _cancel(self, t: _Turn) -> None:
        if t.state is State.WAITING:
            self._cancel_waiting(t)
            return
        if t.state is State.IDLE:
            self._say(t, self.r("nothing_to_cancel"))
            return
        self._move(t, State.IDLE)
        self._say(t, self.r("cancelled"))

    # -- questions

    def _question(self, t: _Turn) -> None:
        if parsing.parse_choice(t.text) is not None:
            # a bare number with no choices on offer: not a question
            t.log.outcome = TurnOutcome.INVALID
            self._say(t, self.r("number_without_choices"))
            return
        try:
            decision = self.kb.decide(t.text)
        except InputError as exc:
            t.log.outcome = TurnOutcome.INVALID
            self._say(t, str(exc))
            return
        self._log_decision(t, decision)
        if decision.action is Action.HANDOFF:
            t.log.outcome = TurnOutcome.HANDOFF
            self._request_person(t)
        elif decision.action is Action.ANSWER and decision.top is not None:
            self._answer(t, decision.top.entry.id, t.text, related=decision.suggestions)
        elif decision.action is Action.SUGGEST:
            t.log.outcome = TurnOutcome.SUGGESTED
            ids = [h.entry.id for h in decision.suggestions]
            self._move(t, State.CHOOSING, question=t.text, choices=ids, turn=self._turn_id(t))
            titles = tuple(h.entry.title for h in decision.suggestions)
            none_label = self.r("suggest_none_of_these")
            self._say(
                t,
                self.r("suggest"),
                choices=(*titles, none_label),
                buttons=tuple(Button(f"{i}", f"choose:{i}") for i in range(1, len(titles) + 2)),
            )
            self._say(t, self.r("suggest_hint"))
        else:
            t.log.outcome = TurnOutcome.NONE
            self._say(t, self.r("not_found"))
            self._offer_ticket(t, question=t.text)

    @staticmethod
    def _turn_id(t: _Turn) -> int:
        t.s.add(t.log)
        t.s.flush()
        return t.log.id

    def _log_decision(self, t: _Turn, d: Decision) -> None:
        t.log.tokens = list(d.tokens)
        t.log.action = d.action.value
        t.log.hits = [
            {"id": h.entry.id, "score": round(h.score, 3), "coverage": round(h.coverage, 3)}
            for h in d.hits[:5]
        ]
        t.log.entry_id = d.top.entry.id if d.action is Action.ANSWER and d.top else None

    def _answer(self, t: _Turn, entry_id: str, question: str, related: Sequence[Hit] = ()) -> None:
        entry = self.kb.get(entry_id)
        if entry is None:  # the knowledge base changed under a stored choice
            self._move(t, State.IDLE)
            self._question(t)
            return
        t.log.outcome = TurnOutcome.ANSWERED
        t.log.entry_id = entry.id
        source = entry.source.document + (
            f" {entry.source.section}" if entry.source.section else ""
        )
        text = self.r("answer", answer=entry.answer, source=source, department=entry.department)
        if related:
            text += "\n" + self.r(
                "answer_related", titles="；".join(h.entry.title for h in related)
            )
        self._say(t, text)
        self._say(
            t,
            self.r("ask_solved"),
            buttons=(
                Button(self.r("solved_buttons_yes"), "solved:yes"),
                Button(self.r("solved_buttons_no"), "solved:no"),
            ),
        )
        self._move(t, State.CONFIRMING, entry=entry.id, question=question, turn=self._turn_id(t))

    def _choosing(self, t: _Turn) -> None:
        choices: list[str] = t.data.get("choices", [])
        number = parsing.parse_choice(t.text)
        if number is None:
            if parsing.is_no(t.text):
                self._none_of_these(t)
                return
            self._move(t, State.IDLE)
            self._question(t)
            return
        if number == len(choices) + 1:
            self._none_of_these(t)
            return
        if not 1 <= number <= len(choices):
            t.log.outcome = TurnOutcome.INVALID
            self._say(t, self.r("choice_out_of_range", number=number, count=len(choices) + 1))
            return
        self._set_turn_outcome(t, t.data.get("turn"), TurnOutcome.ANSWERED)
        self._answer(t, choices[number - 1], t.data.get("question", ""))

    def _none_of_these(self, t: _Turn) -> None:
        self._set_turn_outcome(t, t.data.get("turn"), TurnOutcome.UNSOLVED)
        self._offer_ticket(t, question=t.data.get("question", ""))

    def _confirming(self, t: _Turn) -> None:
        if parsing.is_yes(t.text):
            self._set_turn_outcome(t, t.data.get("turn"), TurnOutcome.SOLVED)
            self._move(t, State.IDLE)
            self._say(t, self.r("solved_thanks"))
        elif parsing.is_no(t.text):
            self._set_turn_outcome(t, t.data.get("turn"), TurnOutcome.UNSOLVED)
            self._offer_ticket(
                t,
                question=t.data.get("question", ""),
                entry=t.data.get("entry"),
                turn=t.data.get("turn"),
            )
        else:
            self._move(t, State.IDLE)
            self._question(t)

    def _set_turn_outcome(self, t: _Turn, turn_id: object, outcome: TurnOutcome) -> None:
        if isinstance(turn_id, int):
            row = t.s.get(DialogueTurn, turn_id)
            if row is not None and row.channel_identity_id == t.identity.id:
                row.outcome = outcome

    # -- tickets

    def _offer_ticket(
        self, t: _Turn, *, question: str, entry: str | None = None, turn: int | None = None
    ) -> None:
        self._move(t, State.OFFERING, question=question, entry=entry, turn=turn or self._turn_id(t))
        self._say(
            t,
            self.r("offer_ticket", contact_days=self.contact_days, done_days=self.done_days),
            buttons=(
                Button(self.r("offer_ticket_yes"), "offer:yes"),
                Button(self.r("offer_ticket_no"), "offer:no"),
            ),
        )

    def _offering(self, t: _Turn) -> None:
        if parsing.is_yes(t.text):
            self._set_turn_outcome(t, t.data.get("turn"), TurnOutcome.TICKET)
            self._start_collecting(
                t,
                question=t.data.get("question", ""),
                entry=t.data.get("entry"),
                turn=t.data.get("turn"),
            )
        elif parsing.is_no(t.text):
            self._move(t, State.IDLE)
            self._say(t, self.r("offer_declined"))
        else:
            self._move(t, State.IDLE)
            self._question(t)

    def _start_collecting(
        self, t: _Turn, *, question: str, entry: str | None = None, turn: int | None = None
    ) -> None:
        draft: dict[str, Any] = {"question": question, "entry": entry, "turn": turn}
        if len(question.strip()) >= self.settings.min_description_chars:
            draft["description"] = question.strip()
        enterprise = t.identity.enterprise
        if enterprise is not None:
            draft["uscc"] = enterprise.uscc
            draft["enterprise_name"] = enterprise.name
        if t.identity.contact_phone:
            draft["phone"] = t.identity.contact_phone
        self._next_field(t, draft)

    def _next_field(self, t: _Turn, draft: dict[str, Any], invalid: int = 0) -> None:
        if "description" not in draft:
            self._move(t, State.COLLECTING, field="description", draft=draft, invalid=invalid)
            self._say(
                t, self.r("collect_description", min_chars=self.settings.min_description_chars)
            )
        elif "uscc" not in draft and "enterprise_name" not in draft:
            self._move(t, State.COLLECTING, field="enterprise", draft=draft, invalid=invalid)
            self._say(t, self.r("collect_enterprise"))
        elif "phone" not in draft:
            self._move(t, State.COLLECTING, field="phone", draft=draft, invalid=invalid)
            self._say(t, self.r("collect_phone"))
        else:
            decision = self._route(t, draft)
            draft["route"] = {
                "department": decision.department,
                "rule": decision.rule.value,
                "reason": decision.reason,
            }
            self._move(t, State.CONFIRM_TICKET, draft=draft)
            enterprise = draft.get("enterprise_name") or ""
            if draft.get("uscc"):
                enterprise = f"{enterprise}（{draft['uscc']}）" if enterprise else draft["uscc"]
            self._say(
                t,
                self.r(
                    "collect_confirm",
                    description=draft["description"],
                    enterprise=enterprise,
                    phone=draft["phone"],
                    department=decision.department,
                ),
                buttons=(
                    Button(self.r("collect_confirm_yes"), "confirm:yes"),
                    Button(self.r("collect_confirm_no"), "confirm:no"),
                ),
            )

    def _collecting(self, t: _Turn) -> None:
        draft: dict[str, Any] = dict(t.data.get("draft", {}))
        field_name = t.data.get("field")
        invalid = int(t.data.get("invalid", 0))
        error: str | None = None
        value = t.text.strip()
        if field_name == "description":
            if len(value) < self.settings.min_description_chars:
                error = self.r(
                    "collect_description_short", min_chars=self.settings.min_description_chars
                )
            else:
                draft["description"] = value
        elif field_name == "enterprise":
            error = self._take_enterprise(t, draft, value)
        elif field_name == "phone":
            phone = parsing.parse_phone(value)
            if phone is None:
                error = self.r("collect_phone_invalid", value=value[:30])
            else:
                draft["phone"] = phone
                t.identity.contact_phone = phone
        if error is None:
            self._next_field(t, draft)
            return
        t.log.outcome = TurnOutcome.INVALID
        invalid += 1
        if invalid >= self.settings.max_invalid_attempts:
            self._move(t, State.IDLE)
            self._say(t, self.r("too_many_invalid"))
            return
        self._move(t, State.COLLECTING, field=field_name, draft=draft, invalid=invalid)
        self._say(t, error)

    def _take_enterprise(self, t: _Turn, draft: dict[str, Any], value: str) -> str | None:
        compact = value.replace(" ", "").upper()
        looks_like_code = len(compact) == 18 and compact.isascii() and compact.isalnum()
        if looks_like_code or (compact.isascii() and compact.isalnum() and len(compact) >= 15):
            try:
                code = validate_uscc(compact)
            except YxbyError as exc:
                return self.r("collect_enterprise_invalid", value=value[:30], reason=str(exc))
            draft["uscc"] = code
            known = find_enterprise(t.s, code)
            if known is not None:
                draft["enterprise_name"] = known.name
            return None
        letters = sum(1 for ch in value if ch.isalpha())
        if not 2 <= len(value) <= 100 or letters < 2:
            return self.r("collect_enterprise_name_invalid")
        draft["enterprise_name"] = value
        named = t.s.scalars(select(Enterprise).where(Enterprise.name == value).limit(2)).all()
        if len(named) == 1:  # the registry knows this exact name: file the ticket there
            draft["uscc"] = named[0].uscc
        return None

    def _route(self, t: _Turn, draft: dict[str, Any]) -> RouteDecision:
        facts: dict[str, Any] = {}
        if draft.get("uscc"):
            facts = route_facts(t.s, draft["uscc"]) or {}
            if not facts:
                facts = {"enterprise_kind": kind_from_uscc(draft["uscc"]).value}
        matched_id = matched_dept = None
        entry = self.kb.get(draft["entry"]) if draft.get("entry") else None
        if entry is not None and "programme" not in entry.tags:
            matched_id, matched_dept = entry.id, entry.department
        text = " ".join(x for x in (draft.get("question", ""), draft["description"]) if x)
        return self.router.route(
            RouteFacts(
                text=text,
                enterprise_kind=facts.get("enterprise_kind"),
                enterprise_industry=facts.get("enterprise_industry"),
                assigned_department=facts.get("assigned_department"),
                assigned_commissioner=facts.get("assigned_commissioner"),
                matched_entry_id=matched_id,
                matched_department=matched_dept,
            )
        )

    def _confirm_ticket(self, t: _Turn) -> None:
        if parsing.is_no(t.text):
            self._move(t, State.IDLE)
            self._say(t, self.r("cancelled"))
            return
        if not parsing.is_yes(t.text):
            t.log.outcome = TurnOutcome.INVALID
            self._move(t, State.CONFIRM_TICKET, draft=t.data.get("draft", {}))
            self._say(t, self.r("collect_confirm_hint"))
            return
        draft = dict(t.data.get("draft", {}))
        view = self._create_ticket(t, draft)
        t.log.outcome = TurnOutcome.TICKET
        self._move(t, State.IDLE)
        self._say(t, self._created_text(view))

    def _create_ticket(self, t: _Turn, draft: dict[str, Any]) -> TicketView:
        route = draft["route"]
        uscc = draft.get("uscc")
        known = find_enterprise(t.s, uscc) if uscc else None
        if known is not None:
            t.identity.enterprise_id = known.id  # next time the enterprise is not asked again
        elif uscc:
            # an enterprise not yet in the registry: file it (一企一档) so the ticket has a home
            enterprise = Enterprise(
                uscc=uscc,
                name=draft.get("enterprise_name") or f"未登记企业 {uscc}",
                kind=kind_from_uscc(uscc),
                industry=None,
                tags=["渠道登记"],
                created_at=t.now,
                updated_at=t.now,
            )
            t.s.add(enterprise)
            t.s.flush()
            t.identity.enterprise_id = enterprise.id
        description = draft["description"]
        if not uscc and draft.get("enterprise_name"):
            description = f"{description}\n（企业：{draft['enterprise_name']}）"
        description += f"\n（联系电话：{draft['phone']}）"
        view = self.tickets.create(
            description,
            title=(draft.get("question") or draft["description"])[:60],
            department=route["department"],
            rule=route["rule"],
            reason=route["reason"],
            actor=f"{t.identity.channel}:{t.identity.user_key}",
            enterprise_uscc=uscc,
            channel_identity_id=t.identity.id,
            session=t.s,
        )
        ticket_id = t.s.scalars(select(Ticket.id).where(Ticket.number == view.number)).one()
        t.log.ticket_id = ticket_id
        self._set_turn_outcome(t, draft.get("turn"), TurnOutcome.TICKET)
        return view

    def _created_text(self, view: TicketView) -> str:
        from handoff.models import ClockKind

        contact = view.clock(ClockKind.CONTACT)
        done = view.clock(ClockKind.DONE)
        return self.r(
            "ticket_created",
            number=view.number,
            department=view.department,
            contact_due=format_due(contact.due_at) if contact else "—",
            done_due=format_due(done.due_at) if done else "—",
        )

    # -- progress

    def _my_tickets(self, t: _Turn) -> list[Ticket]:
        # Only tickets filed from this chat: binding an enterprise (whose code is printed on
        # its licence) must not reveal, or let anyone rate, another person's tickets.
        stmt = (
            select(Ticket)
            .where(Ticket.channel_identity_id == t.identity.id)
            .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        )
        return list(t.s.scalars(stmt.limit(50)))

    def _status(self, t: _Turn, number: str | None) -> None:
        mine = self._my_tickets(t)
        if number is not None:
            match = [x for x in mine if x.number == number]
            if not match:
                self._say(t, self.r("status_not_found", number=number))
                return
            view = self.tickets.get(number, session=t.s)
            lines = [
                self.r(
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
                lines.append(self.r("status_due", clock=nxt.kind.label, due=format_due(nxt.due_at)))
            if view.result:
                lines.append(self.r("status_result", result=view.result))
            self._say(t, "\n".join(lines))
            return
        if not mine:
            self._say(t, self.r("status_none"))
            return
        shown = mine[: self.settings.status_limit]
        lines = [self.r("status_header", count=len(shown))]
        for ticket in shown:
            lines.append(
                self.r(
                    "status_line",
                    number=ticket.number,
                    state=ticket.state.label,
                    department=ticket.department,
                    title=ticket.title[:30],
                )
            )
        self._say(t, "\n".join(lines), buttons=tuple(Button(x.number, x.number) for x in shown))

    # -- binding

    def _bind(self, t: _Turn, raw: str) -> None:
        if not raw:
            self._say(t, self.r("bind_usage"))
            return
        try:
            code = validate_uscc(raw)
        except YxbyError as exc:
            t.log.outcome = TurnOutcome.INVALID
            self._say(t, self.r("bind_invalid", value=raw[:30], reason=str(exc)))
            return
        enterprise = find_enterprise(t.s, code)
        if enterprise is None:
            self._say(t, self.r("bind_unknown", uscc=code))
            return
        t.identity.enterprise_id = enterprise.id
        self._say(t, self.r("bind_done", name=enterprise.name, uscc=code))

    # -- ratings

    def _awaiting_rating(self, t: _Turn, number: str | None = None) -> Ticket | None:
        for ticket in self._my_tickets(t):
            if ticket.state is TicketState.FEEDBACK_SENT and number in (None, ticket.number):
                return ticket
        return None

    def _rating_text(self, t: _Turn) -> bool:
        result = parsing.rating_of(t.text)
        if result is None:
            return False
        ticket = self._awaiting_rating(t)
        if ticket is None:
            if t.state is State.IDLE:
                self._say(t, self.r("rate_nothing"))
                return True
            return False
        self._rate(t, ticket.number, result)
        return True

    def _rate(self, t: _Turn, number: str, result: str) -> None:
        t.log.outcome = TurnOutcome.INPUT
        number = number.strip().upper()
        verdict = parsing.rating_of(result)
        if verdict is None:
            t.log.outcome = TurnOutcome.INVALID
            self._say(t, self.r("rate_nothing"))
            return
        result = verdict
        ticket = self._awaiting_rating(t, number)
        if ticket is None:
            self._say(t, self.r("rate_nothing"))
            return
        actor = f"{t.identity.channel}:{t.identity.user_key}"
        view = self.tickets.record_survey(number, result=result, actor=actor, session=t.s)
        # a result push can be rated at any time; a step in progress (ticket details, a
        # person being called, a live chat) is kept, other states return to the bot
        interruptible = t.state in _INTERRUPTIBLE
        if result == "不满意":
            if interruptible:
                self._move(t, State.IDLE)
            if view.state is TicketState.CLOSED:
                self._say(t, self.r("rate_closed_after_reopen", number=number))
                return
            view = self.tickets.reopen(
                number, actor=actor, reason="企业评价不满意，重办", session=t.s
            )
            from handoff.models import ClockKind

            contact = view.clock(ClockKind.CONTACT)
            self._say(
                t,
                self.r(
                    "rate_reopened",
                    number=number,
                    contact_due=format_due(contact.due_at) if contact else "—",
                ),
            )
            return
        if interruptible:
            self._move(t, State.RATING_COMMENT, ticket=number)
            self._say(t, self.r("rate_thanks"))
        else:
            self._say(t, self.r("rate_thanks_short"))

    def _rating_comment(self, t: _Turn) -> None:
        number = t.data.get("ticket")
        if parsing.is_no(t.text) or t.text in ("跳过", "没有", "无"):
            self._move(t, State.IDLE)
            self._say(t, self.r("solved_thanks"))
            return
        if (
            parsing.parse_choice(t.text) is not None
            or getattr(self._decide(t.text), "action", None) is Action.ANSWER
        ):
            # looks like a new question rather than a comment
            self._move(t, State.IDLE)
            self._question(t)
            return
        if isinstance(number, str):
            self.tickets.add_survey_comment(
                number,
                comment=t.text[:1000],
                actor=f"{t.identity.channel}:{t.identity.user_key}",
                session=t.s,
            )
        self._move(t, State.IDLE)
        self._say(t, self.r("rate_comment_saved"))

    # -- live handoff (enterprise side)

    def _request_person(self, t: _Turn) -> None:
        if t.state is State.WAITING:
            waiting = t.s.get(LiveHandoff, t.data.get("handoff"))
            if waiting is not None and waiting.state is LiveHandoffState.WAITING:
                self._say(t, self.r("handoff_waiting", department=waiting.department))
                return
        # the need under discussion, if any; "转人工" itself is not a description of it
        question = t.data.get("question") or ""
        decision = self._route(
            t,
            {
                "question": question,
                "description": "",
                "uscc": t.identity.enterprise.uscc if t.identity.enterprise else None,
                "entry": t.data.get("entry"),
            },
        )
        staff = self._reachable_staff(t.s, decision.department)
        if not staff:
            self._say(t, self.r("handoff_no_one", contact_days=self.contact_days))
            self._start_collecting(t, question=question)
            return
        handoff = LiveHandoff(
            channel_identity_id=t.identity.id,
            department=decision.department,
            route_rule=decision.rule.value,
            route_reason=decision.reason,
            question=question or "（未说明）",
            state=LiveHandoffState.WAITING,
            created_at=t.now,
            expires_at=t.now + timedelta(minutes=self.settings.handoff_wait_minutes),
        )
        t.s.add(handoff)
        t.s.flush()
        who = self._who(t.identity)
        for _person, binding in staff:
            self._push(
                t.s,
                binding.channel,
                binding.user_key,
                Reply(
                    self.r(
                        "staff_handoff_offer",
                        who=who,
                        department=decision.department,
                        question=handoff.question,
                    ),
                    buttons=(Button("接入", f"take:{handoff.id}"),),
                    ref=f"handoff:{handoff.id}",
                ),
                kind="handoff_offer",
                now=t.now,
            )
        self._move(t, State.WAITING, handoff=handoff.id, question=question)
        self._say(t, self.r("handoff_waiting", department=decision.department))

    def _waiting(self, t: _Turn) -> None:
        # still waiting: a new question is answered by the bot meanwhile
        handoff = t.s.get(LiveHandoff, t.data.get("handoff"))
        if handoff is None or handoff.state is not LiveHandoffState.WAITING:
            self._move(t, State.IDLE)
        self._question(t) if t.state is State.IDLE else self._answer_while_waiting(t)

    def _decide(self, text: str) -> Decision | None:
        """The knowledge base's decision, or ``None`` for text it refuses (e.g. too long)."""
        try:
            return self.kb.decide(text)
        except InputError:
            return None

    def _answer_while_waiting(self, t: _Turn) -> None:
        d = self._decide(t.text)
        if d is not None:
            self._log_decision(t, d)
        if d is not None and d.action is Action.ANSWER and d.top is not None:
            t.log.outcome = TurnOutcome.ANSWERED
            e = d.top.entry
            self._say(
                t,
                self.r(
                    "answer", answer=e.answer, source=e.source.document, department=e.department
                ),
            )
        handoff = t.s.get(LiveHandoff, t.data.get("handoff"))
        self._say(t, self.r("handoff_waiting", department=handoff.department if handoff else ""))

    def _cancel_waiting(self, t: _Turn) -> None:
        handoff = t.s.get(LiveHandoff, t.data.get("handoff"))
        if handoff is not None and handoff.state is LiveHandoffState.WAITING:
            handoff.state = LiveHandoffState.CANCELLED
            handoff.ended_at = t.now
        self._move(t, State.IDLE)
        self._say(t, self.r("handoff_cancelled"))

    def _with_person(self, t: _Turn) -> None:
        handoff = t.s.get(LiveHandoff, t.data.get("handoff"))
        if handoff is None or handoff.state is not LiveHandoffState.ACTIVE:
            self._move(t, State.IDLE)
            self._question(t)
            return
        t.log.outcome = TurnOutcome.HANDOFF
        if parsing.command_of(t.text) in (Command.CANCEL, Command.END):
            self._end_handoff(t.s, handoff, t.now, by_staff=False)
            self._move(t, State.IDLE)
            self._say(t, self.r("handoff_user_ended"))
            return
        self._relay_to_staff(t, t.text)

    def _relay_to_staff(self, t: _Turn, text: str) -> None:
        handoff = t.s.get(LiveHandoff, t.data.get("handoff"))
        if handoff is None or handoff.commissioner is None:
            return
        for binding in handoff.commissioner.bindings:
            self._push(
                t.s,
                binding.channel,
                binding.user_key,
                Reply(
                    self.r("staff_relay", who=self._who(t.identity), text=text),
                    ref=f"handoff:{handoff.id}",
                ),
                kind="relay",
                now=t.now,
            )

    def expire_handoffs(self) -> int:
        """Turn requests for a person that nobody took in time into tickets; how many.

        The enterprise is told the ticket number and by when it will be contacted (a push
        through the outbox). Safe to run on several workers: each handoff is locked.
        """
        now = self.clock()
        expired = 0
        with self.sessions.begin() as s:
            rows = s.scalars(
                select(LiveHandoff)
                .where(LiveHandoff.state == LiveHandoffState.WAITING, LiveHandoff.expires_at <= now)
                .order_by(LiveHandoff.id)
                .with_for_update(skip_locked=True)
            ).all()
            for handoff in rows:
                self._expire(s, handoff, now)
                expired += 1
        return expired

    def _expire(self, s: Session, handoff: LiveHandoff, now: datetime) -> None:
        identity = handoff.identity
        phone = identity.contact_phone or "未提供（请通过对话联系）"
        question = handoff.question if handoff.question != "（未说明）" else ""
        need = question or "企业请求人工服务，等待专员接入超时"
        description = f"{need}\n（联系电话：{phone}）"
        view = self.tickets.create(
            description,
            title=(question or "企业请求人工服务")[:60],
            department=handoff.department,
            rule=handoff.route_rule,
            reason=handoff.route_reason,
            actor=SYSTEM_ACTOR,
            enterprise_uscc=identity.enterprise.uscc if identity.enterprise else None,
            channel_identity_id=identity.id,
            session=s,
        )
        handoff.state = LiveHandoffState.EXPIRED
        handoff.ended_at = now
        handoff.ticket_id = s.scalars(select(Ticket.id).where(Ticket.number == view.number)).one()
        conv = load_conversation(s, identity, now)
        if conv.state == State.WAITING.value:
            conv.state = State.IDLE.value
            conv.data = {}
            conv.updated_at = now
        from handoff.models import ClockKind

        contact = view.clock(ClockKind.CONTACT)
        self._push(
            s,
            identity.channel,
            identity.user_key,
            Reply(
                self.r(
                    "handoff_timeout",
                    number=view.number,
                    contact_due=format_due(contact.due_at) if contact else "—",
                )
            ),
            kind="handoff_timeout",
            now=now,
        )

    # ------------------------------------------------------------------ commissioner side

    @staticmethod
    def _staff_of(s: Session, msg: Incoming) -> Commissioner | None:
        binding = s.scalars(
            select(CommissionerBinding).where(
                CommissionerBinding.channel == msg.channel,
                CommissionerBinding.user_key == msg.user_key,
            )
        ).one_or_none()
        if binding is None or not binding.commissioner.active:
            return None
        return binding.commissioner

    def _staff_turn(
        self, s: Session, staff: Commissioner, msg: Incoming, now: datetime
    ) -> list[Reply]:
        # a commissioner writing opens the channel's reply window too (WeChat's 48 hours)
        get_or_create_identity(s, msg.channel, msg.user_key).last_inbound_at = now
        release_held(s, msg.channel, msg.user_key)
        text = self._text_of(msg).strip()
        head, _, rest = text.partition(":")
        if head == "take" and rest.isdigit():
            return self._take(s, staff, int(rest), now)
        if head in _STAFF_BUTTONS and parsing.TICKET_NUMBER.fullmatch(rest.lower()):
            if head == "accept":
                return [self._staff_ticket_action(s, staff, "签收", rest, "")]
            if head == "transcript":
                return [self._transcript_reply(s, staff, rest.upper())]
            return [Reply(_STAFF_BUTTONS[head].format(number=rest.upper()))]
        norm = text.replace("：", " ").split()
        word = norm[0] if norm else ""
        active = self._active_handoffs(s, staff)
        if word in ("接入", "/take"):
            waiting = s.scalars(
                select(LiveHandoff)
                .where(
                    LiveHandoff.state == LiveHandoffState.WAITING,
                    LiveHandoff.department == staff.department,
                    LiveHandoff.expires_at > now,
                )
                .order_by(LiveHandoff.created_at)
            ).first()
            if waiting is None:
                return [Reply("当前没有等待接入的企业。")]
            return self._take(s, staff, waiting.id, now)
        if word in ("/end", "结束", "结束对话"):
            target = self._pick_handoff(active, msg)
            if target is None:
                return [Reply("您当前没有进行中的对话。")]
            self._end_handoff(s, target, now, by_staff=True)
            return [Reply(f"已结束与{self._who(target.identity)}的对话。")]
        if word in ("待办", "列表", "/queue"):
            return [self._queue(staff)]
        if word in ("对话", "记录") and len(norm) >= 2:
            return [self._transcript_reply(s, staff, norm[1].upper())]
        if word in ("签收", "办结", "转派", "协同") and len(norm) >= 2:
            return [self._staff_ticket_action(s, staff, word, norm[1], " ".join(norm[2:]))]
        target = self._pick_handoff(active, msg)
        if target is not None and text:
            self._push(
                s,
                target.identity.channel,
                target.identity.user_key,
                Reply(text),
                kind="relay",
                now=now,
            )
            self._transcript(
                s, target.channel_identity_id, Direction.OUT, f"[{staff.name}] {text}", now
            )
            return []
        return [Reply(self.r("staff_unknown", name=staff.name))]

    @staticmethod
    def _active_handoffs(s: Session, staff: Commissioner) -> list[LiveHandoff]:
        return list(
            s.scalars(
                select(LiveHandoff)
                .where(
                    LiveHandoff.state == LiveHandoffState.ACTIVE,
                    LiveHandoff.commissioner_id == staff.id,
                )
                .order_by(LiveHandoff.taken_at.desc(), LiveHandoff.id.desc())
            )
        )

    @staticmethod
    def _pick_handoff(active: Sequence[LiveHandoff], msg: Incoming) -> LiveHandoff | None:
        if msg.reply_to and msg.reply_to.startswith("handoff:"):
            wanted = msg.reply_to.partition(":")[2]
            for h in active:
                if str(h.id) == wanted:
                    return h
        return active[0] if active else None

    def _take(self, s: Session, staff: Commissioner, handoff_id: int, now: datetime) -> list[Reply]:
        handoff = s.scalars(
            select(LiveHandoff).where(LiveHandoff.id == handoff_id).with_for_update()
        ).one_or_none()
        if handoff is None:
            return [Reply("没有找到这个人工请求。")]
        if not self._may_act(staff, handoff.department):
            return [Reply(self.r("staff_not_your_department", department=handoff.department))]
        if handoff.state is LiveHandoffState.ACTIVE:
            if handoff.commissioner_id == staff.id:
                return [Reply(self.r("staff_handoff_taken", who=self._who(handoff.identity)))]
            name = handoff.commissioner.name if handoff.commissioner else "其他专员"
            return [Reply(self.r("staff_handoff_taken_by_other", name=name))]
        conv = load_conversation(s, handoff.identity, now)
        still_waiting = conv.state == State.WAITING.value and conv.data.get("handoff") == handoff.id
        if handoff.state is not LiveHandoffState.WAITING or not still_waiting:
            if handoff.state is LiveHandoffState.WAITING:  # the user has moved on meanwhile
                handoff.state = LiveHandoffState.CANCELLED
                handoff.ended_at = now
            return [Reply(self.r("staff_handoff_closed"))]
        handoff.state = LiveHandoffState.ACTIVE
        handoff.commissioner_id = staff.id
        handoff.taken_at = now
        s.flush()
        conv.state = State.WITH_PERSON.value
        conv.data = {"handoff": handoff.id}
        conv.updated_at = now
        self._push(
            s,
            handoff.identity.channel,
            handoff.identity.user_key,
            Reply(self.r("handoff_joined", name=staff.name, department=staff.department)),
            kind="handoff_joined",
            now=now,
        )
        return [
            Reply(
                self.r("staff_handoff_taken", who=self._who(handoff.identity)),
                ref=f"handoff:{handoff.id}",
            )
        ]

    def _end_handoff(
        self, s: Session, handoff: LiveHandoff, now: datetime, *, by_staff: bool
    ) -> None:
        handoff.state = LiveHandoffState.ENDED
        handoff.ended_at = now
        conv = load_conversation(s, handoff.identity, now)
        if conv.state == State.WITH_PERSON.value:
            conv.state = State.IDLE.value
            conv.data = {}
            conv.updated_at = now
        if by_staff:
            self._push(
                s,
                handoff.identity.channel,
                handoff.identity.user_key,
                Reply(self.r("handoff_ended")),
                kind="handoff_ended",
                now=now,
            )
        elif handoff.commissioner is not None:
            for binding in handoff.commissioner.bindings:
                self._push(
                    s,
                    binding.channel,
                    binding.user_key,
                    Reply(f"{self._who(handoff.identity)}已结束对话。"),
                    kind="handoff_ended",
                    now=now,
                )

    def _queue(self, staff: Commissioner) -> Reply:
        open_states = [
            TicketState.NEW,
            TicketState.ACCEPTED,
            TicketState.IN_PROGRESS,
            TicketState.ESCALATED,
        ]
        views = [
            v
            for state in open_states
            for v in self.tickets.list(state=state, department=staff.department)
        ]
        if not views:
            return Reply(f"{staff.department}当前没有待办诉求。")

        def deadline(v: TicketView) -> datetime:
            nxt = v.next_due()
            return nxt.due_at if nxt is not None else v.created_at

        views.sort(key=deadline)
        lines = [f"{staff.department}待办诉求（按时限排序）："]
        for v in views[:10]:
            nxt = v.next_due()
            due = f"{nxt.kind.label} {format_due(nxt.due_at)}" if nxt else ""
            lines.append(f"{v.number}｜{v.state.label}｜{v.title[:20]}｜{due}")
        return Reply("\n".join(lines))

    def _transcript_reply(self, s: Session, staff: Commissioner, number: str) -> Reply:
        """The enterprise's conversation behind a ticket (the commissioner's 一企一档 view)."""
        ticket = s.scalars(select(Ticket).where(Ticket.number == number)).one_or_none()
        if ticket is None:
            return Reply(f"找不到工单 {number}")
        helpers = {h.department for h in ticket.helpers}
        if not self._may_act(staff, ticket.department) and staff.department not in helpers:
            return Reply(self.r("staff_not_your_department", department=ticket.department))
        if ticket.channel_identity_id is None:
            return Reply(f"工单 {number} 不是从对话中提交的，没有对话记录。")
        lines = s.scalars(
            select(TranscriptLine)
            .where(TranscriptLine.channel_identity_id == ticket.channel_identity_id)
            .order_by(TranscriptLine.at.desc(), TranscriptLine.id.desc())
            .limit(TRANSCRIPT_LINES)
        ).all()
        shown = [
            f"{line.at.astimezone(SHANGHAI):%m-%d %H:%M} "
            f"{'企业' if line.direction is Direction.IN else '助手'}：{line.text[:200]}"
            for line in reversed(lines)
        ]
        head = f"工单 {number} 的对话记录（最近 {len(shown)} 条）："
        return Reply("\n".join([head, *shown]))

    @staticmethod
    def _may_act(staff: Commissioner, department: str) -> bool:
        """A commissioner acts for their own department; the 政务办 overseers for all."""
        return staff.department == department or staff.role is CommissionerRole.OVERSIGHT

    def _staff_ticket_action(
        self, s: Session, staff: Commissioner, word: str, number: str, rest: str
    ) -> Reply:
        number = number.upper()
        try:
            lead = self.tickets.get(number, session=s).department
            if not self._may_act(staff, lead):
                return Reply(self.r("staff_not_your_department", department=lead))
            if word == "签收":
                view = self.tickets.accept(number, actor=staff.name, session=s)
                return Reply(f"已签收 {view.number}，请尽快与企业联系。")
            if word == "转派":
                target, _, why = rest.partition(" ")
                if not target or not why.strip():
                    return Reply(_STAFF_BUTTONS["transfer"].format(number=number))
                view = self.tickets.transfer(
                    number, to_department=target, reason=why.strip(), actor=staff.name, session=s
                )
                return Reply(f"已将 {view.number} 转派至{view.department}。")
            if word == "协同":
                names = [n for n in re.split(r"[,，、\s]+", rest) if n]
                if not names:
                    return Reply(_STAFF_BUTTONS["assist"].format(number=number))
                view = self.tickets.add_helpers(
                    number, departments=names, actor=staff.name, session=s
                )
                helpers = "、".join(h.department for h in view.helpers)
                return Reply(f"已为 {view.number} 申请协同：{helpers}。")
            if not rest:
                return Reply("请写明办理结果，例如：办结 YX-20261126-0001 已协调解决……")
            current = self.tickets.get(number, session=s)
            if current.state in (TicketState.NEW, TicketState.ACCEPTED):
                # 办结 straight from the chat: the contact and the work happened meanwhile
                if current.state is TicketState.NEW:
                    self.tickets.accept(number, actor=staff.name, session=s)
                self.tickets.start(number, actor=staff.name, session=s)
            view = self.tickets.resolve(number, result=rest, actor=staff.name, session=s)
            return Reply(f"已办结 {view.number}，办理结果已反馈企业并请其评价。")
        except (TicketError, RoutingError, InputError) as exc:
            return Reply(f"操作未完成：{exc}")

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _who(identity: ChannelIdentity) -> str:
        if identity.enterprise is not None:
            return identity.enterprise.name
        return f"{identity.channel}用户{identity.user_key[-4:]}"

    @staticmethod
    def _reachable_staff(
        s: Session, department: str
    ) -> list[tuple[Commissioner, CommissionerBinding]]:
        rows = s.execute(
            select(Commissioner, CommissionerBinding)
            .join(CommissionerBinding, CommissionerBinding.commissioner_id == Commissioner.id)
            .where(Commissioner.department == department, Commissioner.active.is_(True))
            .order_by(Commissioner.id)
        ).all()
        return [(c, b) for c, b in rows]

    @staticmethod
    def _push(
        s: Session, channel: str, recipient: str, reply: Reply, *, kind: str, now: datetime
    ) -> None:
        enqueue(
            s, channel, recipient, kind, reply_payload(reply), f"{kind}:{uuid.uuid4()}", now=now
        )

    @staticmethod
    def _transcript(
        s: Session, identity_id: int, direction: Direction, text: str, now: datetime
    ) -> None:
        s.add(
            TranscriptLine(
                channel_identity_id=identity_id, at=now, direction=direction, text=text[:4000]
            )
        )
