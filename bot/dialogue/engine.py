"""The engine: one brain for every channel, and the only writer of a conversation's state.

``Dialogue.handle(Incoming) -> list[Reply]``. Each call runs in one database transaction:
the message id is claimed (a redelivery gets the stored replies and changes nothing), live
requests nobody took in time become tickets, the conversation row is locked, the message
goes through the ordered dispatch — guards → buttons → the live chat → commands → ratings →
the current state's handler (python-telegram-bot's ``ConversationHandler`` order) — and the
handler's :class:`~bot.dialogue.states.Outcome` is applied after checking
:data:`~bot.dialogue.states.TRANSITIONS`. The turn is logged and the transcript written.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot import parsing
from bot.dialogue import commands, filing, outreach, person, questions, rating, workorder
from bot.dialogue.staff import staff_turn
from bot.dialogue.states import (
    TRANSITIONS,
    IllegalConversationMove,
    Outcome,
    Services,
    State,
    Turn,
    goto,
    stay,
)
from bot.replies import Replies
from bot.settings import DialogueSettings
from bot.types import Incoming, MessageKind, Reply, reply_from_payload, reply_payload
from handoff.conversations import (
    Conversation,
    DialogueTurn,
    TurnOutcome,
    first_look,
    identity_of,
    load_conversation,
    new_conversation,
    record_transcript_lines,
    save_conversation,
    write_turn,
)
from handoff.inbox import Inbox
from handoff.live import LiveHandoffs
from handoff.models import ChannelIdentity, Direction
from handoff.sla import SlaSettings
from handoff.tickets import TicketService
from knowledge import KnowledgeBase
from routing import Router
from yxby.redact import tag

__all__ = ["HANDLERS", "Dialogue"]

log = logging.getLogger("yxby.dialogue")

Handler = Callable[[Services, Turn], Outcome]
HANDLERS: dict[State, Handler] = {
    State.IDLE: questions.ask,
    State.CHOOSING: questions.choosing,
    State.CONFIRMING: questions.confirming,
    State.OFFERING: filing.offering,
    State.COLLECTING: filing.collecting,
    State.CONFIRM_TICKET: filing.confirm_ticket,
    State.WAITING: person.waiting,
    State.RATING_COMMENT: rating.rating_comment,
    State.UNSATISFIED_REASON: rating.unsatisfied_reason,
    State.WORK_ORDER_NEEDS: workorder.needs,
    State.WORK_ORDER_CONTACT: workorder.contact,
}
"""The handler of each state (``WITH_PERSON`` is the live chat, which takes every message)."""

_BUTTON_STATES = {
    "choose": State.CHOOSING,
    "solved": State.CONFIRMING,
    "offer": State.OFFERING,
    "confirm": State.CONFIRM_TICKET,
    "edit": State.CONFIRM_TICKET,
}
_NO_TEXT = (MessageKind.IMAGE, MessageKind.FILE, MessageKind.LOCATION)
_STEADY = (State.IDLE, State.WAITING, State.WITH_PERSON)
"""States that do not time out (a person may take minutes; idle is idle)."""


class Dialogue:
    """The conversation engine shared by every channel. Build it with ``bot.app.build_app``."""

    def __init__(
        self,
        *,
        kb: KnowledgeBase,
        router: Router,
        tickets: TicketService,
        live: LiveHandoffs,
        inbox: Inbox,
        sessions: sessionmaker[Session],
        replies: Replies,
        settings: DialogueSettings,
        clock: Callable[[], datetime],
        sla: SlaSettings,
    ) -> None:
        self.svc = Services(kb, router, tickets, live, replies, settings, sla)
        self.inbox = inbox
        self.sessions = sessions
        self.clock = clock

    # ------------------------------------------------------------------ entry point

    def handle(self, msg: Incoming) -> list[Reply]:
        """Answer one message. Never raises: failures become a friendly Chinese reply."""
        try:
            return self._handle(msg)
        except Exception:
            log.exception("dialogue failed for %s:%s", msg.channel, tag(msg.user_key))
            return [Reply(self.svc.r("internal_error"))]

    def _replayed(self, msg: Incoming) -> list[Reply] | None:
        seen = self.inbox.replayed(msg.channel, msg.msg_id) if msg.msg_id else None
        return None if seen is None else [reply_from_payload(p) for p in seen]

    def _handle(self, msg: Incoming) -> list[Reply]:
        seen = self._replayed(msg)
        if seen is not None:
            return seen
        now = self.clock()
        try:
            with self.sessions.begin() as s:
                self.svc.live.expire(s)  # requests nobody took in time become tickets
                staff, identity = first_look(s, msg.channel, msg.user_key)
                if staff is not None:
                    # a commissioner writing opens the channel's reply window too
                    self.inbox.user_wrote(msg.channel, msg.user_key, session=s)
                    text = _text_of(msg).strip()
                    replies = staff_turn(self.svc, s, staff, msg, now, text)
                else:
                    replies = self._enterprise_turn(s, msg, now, identity)
                if msg.msg_id:
                    # last, with its replies: a concurrent handler of the same id fails here
                    # (or waits here for the first to commit) and answers as it was answered
                    self.inbox.record(
                        s, msg.channel, msg.msg_id, now, [reply_payload(r) for r in replies]
                    )
                return replies
        except IntegrityError:
            # the same message id was handled concurrently: answer as it was answered
            seen = self._replayed(msg)
            if seen is None:
                raise
            return seen

    # ------------------------------------------------------------------ enterprise side

    def _enterprise_turn(
        self, s: Session, msg: Incoming, now: datetime, found: ChannelIdentity | None
    ) -> list[Reply]:
        subscribed = msg.kind is not MessageKind.UNSUBSCRIBE
        name = msg.display_name[:100] if msg.display_name else None
        identity, created = identity_of(
            s, msg.channel, msg.user_key,
            subscribed=subscribed, last_inbound_at=now, display_name=name or None, found=found,
        )  # fmt: skip
        if identity.subscribed is not subscribed:
            identity.subscribed = subscribed
        if not subscribed:
            identity.last_inbound_at = now
        else:
            # the user wrote: the push window opens and pushes held for it go now
            self.inbox.user_wrote(msg.channel, msg.user_key, session=s, identity=identity, at=now)
        if name and identity.display_name != name:
            identity.display_name = name
        conv = new_conversation(identity, now) if created else load_conversation(s, identity, now)
        shown = _shown(msg)
        turn_log = DialogueTurn(
            channel_identity_id=identity.id,
            at=now,
            state=conv.state,
            text=shown[:4000],
            tokens=[],
            hits=[],
            outcome=TurnOutcome.INPUT,
        )
        t = Turn(s, msg, identity, State(conv.state), dict(conv.data), now,
                 _text_of(msg).strip(), turn_log)  # fmt: skip
        replies = self._run(conv, t)
        conv.updated_at = now
        save_conversation(s, conv)
        write_turn(s, turn_log)
        lines = [(Direction.IN, shown or f"[{msg.kind.value}]")]
        lines += [(Direction.OUT, reply.render_plain()) for reply in replies]
        record_transcript_lines(s, identity.id, lines, now)
        return replies

    def _run(self, conv: Conversation, t: Turn) -> list[Reply]:
        replies: list[Reply] = []
        moved = person.reconcile(self.svc, t)  # the handoff was taken, ended or expired
        if moved is not None:
            t = self._apply(conv, t, moved)
        limit = timedelta(minutes=self.svc.settings.idle_timeout_minutes)
        if t.state not in _STEADY and t.now - conv.updated_at > limit:
            timeout = goto(State.IDLE).say(self.svc.r("timeout_reset"))
            t = self._apply(conv, t, timeout)
            replies += timeout.replies
        out = self._dispatch(t)
        self._apply(conv, t, out)
        return replies + out.replies

    def _apply(self, conv: Conversation, t: Turn, out: Outcome) -> Turn:
        """Move the conversation as *out* says — the only place ``conv.state`` is written."""
        if out.state is None:
            return t
        if out.state not in TRANSITIONS[t.state]:
            raise IllegalConversationMove(t.state, out.state)
        if t.state is State.WAITING and out.state not in (State.WAITING, State.WITH_PERSON):
            # leaving the wait for a person in any other way withdraws the request
            self.svc.live.withdraw(t.s, self.svc.live.get(t.s, t.data.get("handoff")), t.now)
        conv.state = out.state.value
        conv.data = dict(out.data)
        return dataclasses.replace(t, state=out.state, data=dict(out.data))

    def _dispatch(self, t: Turn) -> Outcome:
        """Guards → buttons → the live chat → commands → ratings → the state's handler."""
        r = self.svc.r
        kind = t.msg.kind
        if kind is MessageKind.SUBSCRIBE:
            t.log.outcome = TurnOutcome.COMMAND
            return stay(r("welcome")).say(r("menu"))
        if kind is MessageKind.UNSUBSCRIBE:
            t.log.outcome = TurnOutcome.COMMAND
            return stay()
        if kind in _NO_TEXT:
            t.log.outcome = TurnOutcome.INVALID
            if t.state is State.WITH_PERSON:
                return person.end_or_relay(self.svc, t, f"[{kind.value}]")
            return stay(r("no_text"))
        if kind is MessageKind.VOICE and not t.text:
            t.log.outcome = TurnOutcome.INVALID
            return stay(r("voice_unrecognised"))
        if not t.text:
            t.log.outcome = TurnOutcome.INVALID
            return stay(r("empty_message"))
        limit = self.svc.settings.max_message_chars
        if len(t.text) > limit:
            t.log.outcome = TurnOutcome.INVALID
            return stay(r("too_long", length=len(t.text), limit=limit))
        pressed = self._button(t)
        if isinstance(pressed, Outcome):
            return pressed
        t = pressed
        if t.state is State.WITH_PERSON:
            return person.end_or_relay(self.svc, t, t.text)
        if not parsing.meaningful(t.text):
            t.log.outcome = TurnOutcome.INVALID
            return stay(r("emoji_only"))
        for step in (outreach.command, commands.command, rating.rating_text):
            out = step(self.svc, t)
            if out is not None:
                return out
        return HANDLERS[t.state](self.svc, t)

    def _button(self, t: Turn) -> Turn | Outcome:
        """A tapped button: its meaning as text, or the outcome when it settles everything."""
        kind, sep, arg = t.text.partition(":")
        if not sep:
            return t
        if kind == "rate":
            number, _, result = arg.partition(":")
            return rating.rate(self.svc, t, number, result)
        if kind == "cmd":
            return t.with_text(arg)
        expected = _BUTTON_STATES.get(kind)
        if expected is None:
            return t
        if t.state is not expected:
            # a button from an earlier step: it no longer applies
            t.log.outcome = TurnOutcome.INVALID
            return stay(self.svc.r("button_expired"))
        if kind == "edit":
            return t.with_text(t.text)
        return t.with_text({"yes": "是", "no": "不"}.get(arg, arg))


def _text_of(msg: Incoming) -> str:
    """What the engine reads: a button's or menu's payload, else the text."""
    if msg.kind in (MessageKind.BUTTON, MessageKind.MENU) and msg.payload:
        return msg.payload
    return msg.text or ""


def _shown(msg: Incoming) -> str:
    """What the user saw themselves send: a button's label rather than its payload."""
    if msg.kind is MessageKind.BUTTON and msg.text:
        return msg.text
    return _text_of(msg)
