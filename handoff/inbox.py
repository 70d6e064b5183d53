"""What every channel adapter needs from the database, as one service.

* inbound de-duplication: each channel message id is recorded once with the replies it got,
  so a redelivered message is answered the same way and changes nothing;
* the push window: when a user last wrote (WeChat allows customer-service messages for 48
  hours after that, at most a few per user message), and releasing pushes held for it;
* queued replies: a reply sent directly by an adapter is first written to the outbox (under a
  short lease), then marked sent, retried or failed — so a crash never loses it;
* Telegram's update ids and the references its sent messages carried.

Adapters call these methods and never open a database session themselves. Each method runs
in its own short transaction unless it takes the caller's *session*.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from handoff import telegram_state
from handoff.conversations import ProcessedMessage, get_or_create_identity
from handoff.db import read_only
from handoff.invites import redeem_invite
from handoff.models import ChannelIdentity, OutboxMessage, OutboxStatus
from handoff.outbox import enqueue, mark_failed, mark_retry, mark_sent, release_held, take_local

__all__ = ["Inbox", "LinkedStaff", "PushWindow"]


class PushWindow(enum.Enum):
    """Whether a channel may push to a user now."""

    OPEN = "open"
    CLOSED = "closed"  # the user has not written recently enough (or the quota is used up)
    UNSUBSCRIBED = "unsubscribed"
    UNKNOWN = "unknown"  # never wrote


@dataclass(frozen=True)
class LinkedStaff:
    """Who a chat account was just linked to."""

    name: str
    department: str
    role: str


class Inbox:
    """Inbound dedupe, push windows and queued replies for the channel adapters."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.clock = clock

    # -- inbound de-duplication

    def replayed(self, channel: str, msg_id: str) -> list[dict[str, Any]] | None:
        """The stored reply payloads of a message seen before, or ``None`` if it is new."""
        with self.sessions() as s:
            read_only(s)
            row = s.scalars(
                select(ProcessedMessage).where(
                    ProcessedMessage.channel == channel, ProcessedMessage.msg_id == msg_id
                )
            ).one_or_none()
            return None if row is None else list(row.replies)

    @staticmethod
    def claim(session: Session, channel: str, msg_id: str, now: datetime) -> ProcessedMessage:
        """Record *msg_id* as being handled in *session*'s transaction.

        A concurrent handler of the same id makes the flush (or the commit) fail with
        ``IntegrityError``: the caller then answers with :meth:`replayed`.
        """
        row = ProcessedMessage(channel=channel, msg_id=msg_id, at=now, replies=[])
        session.add(row)
        session.flush()
        return row

    # -- the push window

    def user_wrote(
        self, channel: str, user_key: str, *, session: Session | None = None
    ) -> ChannelIdentity:
        """The user wrote now: their push window opens and pushes held for it are released."""
        if session is None:
            with self.sessions.begin() as own:
                return self.user_wrote(channel, user_key, session=own)
        identity = get_or_create_identity(session, channel, user_key)
        identity.last_inbound_at = self.clock()
        release_held(session, channel, user_key)
        return identity

    def window(
        self, channel: str, recipient: str, *, length: timedelta, per_message: int
    ) -> PushWindow:
        """May *channel* push to *recipient* now: within *length* of their last message and
        fewer than *per_message* pushes sent since it."""
        now = self.clock()
        with self.sessions() as s:
            read_only(s)
            identity = s.scalars(
                select(ChannelIdentity).where(
                    ChannelIdentity.channel == channel, ChannelIdentity.user_key == recipient
                )
            ).one_or_none()
            if identity is None:
                return PushWindow.UNKNOWN
            if not identity.subscribed:
                return PushWindow.UNSUBSCRIBED
            last = identity.last_inbound_at
            if last is None or now - last > length:
                return PushWindow.CLOSED
            sent = s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.channel == channel,
                    OutboxMessage.recipient == recipient,
                    OutboxMessage.status == OutboxStatus.SENT,
                    OutboxMessage.sent_at >= last,
                )
            )
            return PushWindow.CLOSED if (sent or 0) >= per_message else PushWindow.OPEN

    # -- queued replies

    def queue_reply(
        self,
        channel: str,
        recipient: str,
        payload: dict[str, Any],
        key: str,
        *,
        lease: timedelta | None = None,
    ) -> int | None:
        """Queue a reply under *key* (leased for *lease* when the adapter sends it itself);
        its outbox id, or ``None`` when *key* was queued before."""
        now = self.clock()
        not_before = None if lease is None else now + lease
        with self.sessions.begin() as s:
            if not enqueue(
                s, channel, recipient, "reply", payload, key, now=now, not_before=not_before
            ):
                return None
            return s.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key))

    def queued(self, key: str) -> bool:
        """True when a message was queued under *key*."""
        with self.sessions() as s:
            read_only(s)
            found = s.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key))
            return found is not None

    def pending_for(self, channel: str, recipient: str) -> bool:
        """True when pushes to *recipient* are still waiting to be sent (order must hold)."""
        with self.sessions() as s:
            read_only(s)
            waiting = s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.channel == channel,
                    OutboxMessage.recipient == recipient,
                    OutboxMessage.status == OutboxStatus.PENDING,
                )
            )
            return bool(waiting)

    def sent(self, message_id: int) -> None:
        """A queued reply went out."""
        with self.sessions.begin() as s:
            mark_sent(s, message_id, self.clock())

    def retry(
        self,
        message_id: int,
        reason: str,
        *,
        after: float | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """A queued reply could not go out now: the worker tries again *after* seconds."""
        at = self.clock() + timedelta(seconds=after or 0)
        with self.sessions.begin() as s:
            mark_retry(s, message_id, at, reason, payload=payload)

    def failed(self, message_id: int, reason: str) -> None:
        """A queued reply can never be delivered."""
        with self.sessions.begin() as s:
            mark_failed(s, message_id, reason)

    def take_local(self, channel: str, recipient: str) -> list[dict[str, Any]]:
        """Pushes waiting for a local channel's user (the terminal), marked sent."""
        with self.sessions.begin() as s:
            return take_local(s, channel, recipient, self.clock())

    # -- commissioners linking a chat account

    def redeem_invite(self, code: str, channel: str, user_key: str) -> LinkedStaff:
        """Link a chat account to the commissioner a one-time code was made for.

        Raises ``InputError`` with a reason the user can act on (see
        :func:`handoff.invites.redeem_invite`).
        """
        with self.sessions.begin() as s:
            person = redeem_invite(s, code, channel=channel, user_key=user_key, now=self.clock())
            return LinkedStaff(person.name, person.department, person.role.value)

    # -- Telegram bookkeeping

    def update_done(self, bot_id: str, update_id: int) -> bool:
        """True when this Telegram update was handled and answered before."""
        with self.sessions() as s:
            read_only(s)
            return telegram_state.update_done(s, bot_id, update_id)

    def mark_update(self, bot_id: str, update_id: int) -> None:
        """Record a Telegram update as handled."""
        with self.sessions.begin() as s:
            telegram_state.mark_update(s, bot_id, update_id, self.clock())

    def prune_updates(self, older_than: timedelta) -> None:
        """Forget handled Telegram updates older than *older_than*."""
        with self.sessions.begin() as s:
            telegram_state.prune_updates(s, self.clock() - older_than)

    def ref_of(self, chat_key: str, message_id: int) -> str | None:
        """The reference a message sent to a chat carried (``handoff:12``, ``ticket:…``)."""
        with self.sessions() as s:
            read_only(s)
            return telegram_state.ref_of(s, chat_key, message_id)

    def remember_ref(self, chat_key: str, message_ids: Iterable[int], ref: str) -> None:
        """Remember the reference of messages just sent to a chat."""
        with self.sessions.begin() as s:
            telegram_state.remember_ref(s, chat_key, list(message_ids), ref, self.clock())
