"""The conversation's states, the moves between them, and what a handler gets and returns.

A handler is ``(services, turn) -> Outcome``: it reads the turn (the message, the user's state
and data), may call services (knowledge base, router, tickets, live handoff), and says where
the conversation goes next and what to answer. It never writes the conversation row: the
engine alone applies an :class:`Outcome`, checking it against :data:`TRANSITIONS`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.types import Incoming, Reply
from yxby.errors import YxbyError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from bot.replies import Replies
    from bot.settings import DialogueSettings
    from handoff.conversations import DialogueTurn
    from handoff.live import LiveHandoffs
    from handoff.models import ChannelIdentity
    from handoff.sla import SlaSettings
    from handoff.tickets import TicketService
    from knowledge import KnowledgeBase
    from routing import Router

__all__ = [
    "TRANSITIONS",
    "IllegalConversationMove",
    "Outcome",
    "Services",
    "State",
    "Turn",
]


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
    UNSATISFIED_REASON = "unsatisfied_reason"  # rated 不满意; asked what was wrong
    WORK_ORDER_NEEDS = "work_order_needs"  # answering a 为企服务工作单: the needs
    WORK_ORDER_CONTACT = "work_order_contact"  # … then the contact person


S = State
_ASKING = frozenset(
    {S.IDLE, S.CHOOSING, S.CONFIRMING, S.OFFERING, S.COLLECTING, S.CONFIRM_TICKET, S.WAITING}
)
"""Where a new question (or a command) can lead: anywhere but straight into a live chat."""
_WORK_ORDER = frozenset({S.WORK_ORDER_NEEDS, S.WORK_ORDER_CONTACT})
"""Answering a 为企服务工作单 (``bot.dialogue.workorder``): entered by a command anywhere."""
_AFTER_QUESTION = _ASKING | {S.RATING_COMMENT, S.UNSATISFIED_REASON} | _WORK_ORDER

TRANSITIONS: dict[State, frozenset[State]] = {
    S.IDLE: _AFTER_QUESTION,
    S.CHOOSING: _AFTER_QUESTION,
    S.CONFIRMING: _AFTER_QUESTION,
    S.OFFERING: _AFTER_QUESTION,
    S.RATING_COMMENT: _AFTER_QUESTION,
    S.UNSATISFIED_REASON: _AFTER_QUESTION,
    S.WORK_ORDER_NEEDS: _AFTER_QUESTION,
    S.WORK_ORDER_CONTACT: _AFTER_QUESTION,
    # filing a ticket: only forward, back to an earlier field, to a person, to a work
    # order's form (a command), or out
    S.COLLECTING: frozenset({S.IDLE, S.COLLECTING, S.CONFIRM_TICKET, S.WAITING}) | _WORK_ORDER,
    S.CONFIRM_TICKET: frozenset({S.IDLE, S.COLLECTING, S.CONFIRM_TICKET, S.WAITING}) | _WORK_ORDER,
    # waiting for a person: joined, given up (or a ticket instead), or still waiting
    S.WAITING: frozenset({S.IDLE, S.WAITING, S.WITH_PERSON, S.COLLECTING, S.CONFIRM_TICKET})
    | _WORK_ORDER,
    S.WITH_PERSON: frozenset({S.IDLE, S.WITH_PERSON}),
}
"""For each state, the states the conversation may move to. Anything else is a bug."""

INTERRUPTIBLE = frozenset(
    {S.IDLE, S.CHOOSING, S.CONFIRMING, S.OFFERING, S.RATING_COMMENT, S.UNSATISFIED_REASON}
)
"""States a rating may replace (a step in progress — filing, a person — is kept)."""


class IllegalConversationMove(YxbyError):
    """A handler asked for a state change the transition table does not allow (a bug)."""

    def __init__(self, source: State, target: State) -> None:
        self.source = source
        self.target = target
        allowed = "、".join(sorted(TRANSITIONS[source]))
        super().__init__(f"conversation cannot go from {source} to {target} (allowed: {allowed})")


@dataclass
class Outcome:
    """What a handler decided: the next state and its data (``None``: stay), and replies."""

    state: State | None = None
    data: dict[str, Any] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)

    def say(self, text: str, **kw: Any) -> Outcome:
        """Add a reply; returns the outcome, so ``Outcome(...).say(a).say(b)`` reads in order."""
        self.replies.append(Reply(text, **kw))
        return self

    def after(self, *first: Reply) -> Outcome:
        """The same outcome with *first* said before its own replies."""
        self.replies[:0] = first
        return self


def stay(text: str | None = None, **kw: Any) -> Outcome:
    """Remain in the current state (keeping its data), optionally saying *text*."""
    out = Outcome()
    return out.say(text, **kw) if text is not None else out


def goto(state: State, **data: Any) -> Outcome:
    """Move to *state* with *data* (``None`` values are dropped)."""
    return Outcome(state, {k: v for k, v in data.items() if v is not None})


@dataclass(frozen=True)
class Turn:
    """One enterprise message while it is handled: read-only for handlers (but the log row)."""

    s: Session
    msg: Incoming
    identity: ChannelIdentity
    state: State
    data: dict[str, Any]
    now: datetime
    text: str
    log: DialogueTurn

    def fresh(self, text: str | None = None) -> Turn:
        """The same message seen from an idle conversation (a new question after a step)."""
        return dataclasses.replace(
            self, state=State.IDLE, data={}, text=self.text if text is None else text
        )

    def with_text(self, text: str) -> Turn:
        """The same turn with *text* (a tapped button's meaning)."""
        return dataclasses.replace(self, text=text)

    @property
    def actor(self) -> str:
        """How the enterprise user is recorded in ticket events."""
        return f"{self.identity.channel}:{self.identity.user_key}"


@dataclass(frozen=True)
class Services:
    """What handlers may call, built once by :func:`bot.app.build_app`."""

    kb: KnowledgeBase
    router: Router
    tickets: TicketService
    live: LiveHandoffs
    r: Replies
    settings: DialogueSettings
    sla: SlaSettings
