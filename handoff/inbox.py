"""What every channel adapter needs from the database, as one service.

* inbound de-duplication: each channel message id is recorded once with the replies it got,
  so a redelivered message is answered the same way and changes nothing;
* the push window: when a user last wrote (WeChat allows customer-service messages for 48
  hours after that, at most a few per user message), and releasing pushes held for it;
* queued replies: a reply sent directly by an adapter is first written to the outbox (under a
  short lease), then marked sent, retried or failed — so a crash never loses it;
* answers owed: a message acknowledged before its answer was ready (WeChat's ``success``) is
  stored first (:meth:`Inbox.defer`, with a bounded wait), its answer is queued and the row
  closed in one transaction (:meth:`Inbox.complete_deferred`), and rows a stopped process
  left open are claimed under a lease to be completed (:meth:`Inbox.claim_deferred`);
* Telegram's update ids and the references its sent messages carried.

Adapters call these methods and never open a database session themselves. Each method runs
in its own short transaction unless it takes the caller's *session*.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from handoff import telegram_state
from handoff.conversations import DeferredMessage, ProcessedMessage, get_or_create_identity
from handoff.db import BUSY_TIMEOUT_MS, READ_ONLY_OPTION, read_only
from handoff.invites import redeem_invite
from handoff.models import ChannelIdentity, OutboxMessage, OutboxStatus
from handoff.outbox import enqueue, mark_failed, mark_retry, mark_sent, release_held, take_local

__all__ = ["DeferredWork", "Inbox", "LinkedStaff", "PushWindow"]

_LOCK_POLL = 0.005
"""Seconds between attempts of a bounded write on a locked SQLite file."""


# the statements of every message's path, built once
_REPLIES = select(ProcessedMessage.replies).where(
    ProcessedMessage.channel == bindparam("channel"),
    ProcessedMessage.msg_id == bindparam("msg_id"),
)
_ANSWERED_LATER = select(
    or_(
        exists().where(
            DeferredMessage.channel == bindparam("channel"),
            DeferredMessage.msg_id == bindparam("msg_id"),
        ),
        exists().where(OutboxMessage.dedupe_key == bindparam("key")),
    ),
    exists().where(
        ProcessedMessage.channel == bindparam("channel"),
        ProcessedMessage.msg_id == bindparam("msg_id"),
    ),
)
_RECORD = insert(cast(Table, ProcessedMessage.__table__))


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


@dataclass(frozen=True)
class DeferredWork:
    """An owed answer claimed for completion: the message as its channel stored it."""

    msg_id: str
    user_key: str
    message: dict[str, Any]
    received_at: datetime
    attempts: int


class Inbox:
    """Inbound dedupe, push windows and queued replies for the channel adapters."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.clock = clock
        engine: Engine = sessions.kw["bind"]
        self._engine = engine
        # PostgreSQL answers a lone read without BEGIN/ROLLBACK round trips
        self._read_options: dict[str, Any] = (
            {READ_ONLY_OPTION: True}
            if engine.dialect.name == "sqlite"
            else {"isolation_level": "AUTOCOMMIT"}
        )
        self._fresh = threading.local()

    # -- inbound de-duplication

    def replayed(self, channel: str, msg_id: str) -> list[dict[str, Any]] | None:
        """The stored reply payloads of a message seen before, or ``None`` if it is new.

        Right after :meth:`answered_later` found *msg_id* new in this thread, the first call
        takes that answer instead of asking again (a concurrent handler of the same id is
        still caught: its claim fails, and the next call asks the database).
        """
        if getattr(self._fresh, "key", None) == (channel, msg_id):
            self._fresh.key = None
            return None
        with self._reader() as conn:
            row = conn.execute(_REPLIES, {"channel": channel, "msg_id": msg_id}).first()
            return None if row is None else list(row.replies)

    def _reader(self) -> Connection:
        """A pooled connection for one read (every message's path: no ORM session)."""
        return self._engine.connect().execution_options(**self._read_options)

    @staticmethod
    def record(
        session: Session,
        channel: str,
        msg_id: str,
        now: datetime,
        replies: list[dict[str, Any]],
    ) -> None:
        """Record *msg_id* as handled, with its *replies*, in *session*'s transaction (one
        ``INSERT``, no ORM object).

        A concurrent handler of the same id makes it (or the commit) fail with
        ``IntegrityError``: the caller then answers with :meth:`replayed`.
        """
        session.connection().execute(
            _RECORD, {"channel": channel, "msg_id": msg_id, "at": now, "replies": replies}
        )

    # -- the push window

    def user_wrote(
        self,
        channel: str,
        user_key: str,
        *,
        session: Session | None = None,
        identity: ChannelIdentity | None = None,
        at: datetime | None = None,
    ) -> ChannelIdentity:
        """The user wrote now (or *at*): their push window opens and pushes held for it are
        released. *identity* is theirs when the caller has it already."""
        if session is None:
            with self.sessions.begin() as own:
                return self.user_wrote(channel, user_key, session=own, identity=identity, at=at)
        if identity is None:
            identity = get_or_create_identity(session, channel, user_key)
        when = self.clock() if at is None else at
        if identity.last_inbound_at != when:
            identity.last_inbound_at = when
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

    # -- answers owed (acknowledged, to be pushed)

    def defer(
        self,
        channel: str,
        msg_id: str,
        user_key: str,
        message: dict[str, Any],
        *,
        received_at: datetime,
        within: float | None = None,
        also: Callable[[Session], None] | None = None,
    ) -> None:
        """Store that the answer to *msg_id* is owed (done before the platform hears
        "received"); storing it again changes nothing.

        *message* is what the channel needs to replay it. With *within*, the write waits at
        most that many seconds for a busy database (a locked SQLite file, a locked row on
        PostgreSQL) and raises ``OperationalError`` rather than block, or ``TimeoutError``
        when the write is ready only after that (it is rolled back): the caller must then
        not acknowledge the message. *also* runs in the same transaction (an exception
        from it undoes the store).
        """

        def write(s: Session) -> None:
            found = s.scalar(
                select(DeferredMessage.id).where(
                    DeferredMessage.channel == channel, DeferredMessage.msg_id == msg_id
                )
            )
            if found is None:
                s.add(
                    DeferredMessage(
                        channel=channel,
                        msg_id=msg_id,
                        user_key=user_key,
                        message=message,
                        received_at=received_at,
                        attempts=0,
                    )
                )
                s.flush()
            if also is not None:
                also(s)

        # IntegrityError: stored concurrently by another delivery of the same message
        with contextlib.suppress(IntegrityError):
            self._write(write, within)

    def complete_deferred(
        self,
        channel: str,
        msg_id: str,
        recipient: str,
        payload: dict[str, Any] | None,
        key: str,
    ) -> bool:
        """Queue the owed answer *payload* under *key* and close the row, in one transaction.

        ``payload=None`` (nothing to say) only closes it. True when the answer was queued
        now, False when *key* was queued before (it is pushed once either way).
        """
        now = self.clock()
        with self.sessions.begin() as s:
            queued = payload is not None and enqueue(
                s, channel, recipient, "reply", payload, key, now=now
            )
            s.execute(
                update(DeferredMessage)
                .where(
                    DeferredMessage.channel == channel,
                    DeferredMessage.msg_id == msg_id,
                    DeferredMessage.done_at.is_(None),
                )
                .values(done_at=now, claimed_until=None)
            )
            return queued

    def claim_deferred(
        self,
        channel: str,
        *,
        older_than: timedelta,
        lease: timedelta,
        limit: int = 20,
        exclude: Iterable[str] = (),
    ) -> list[DeferredWork]:
        """Open rows received more than *older_than* ago and not claimed by anyone now,
        oldest first, each claimed for *lease* (after which another process may take it).

        *exclude* names messages the caller is still answering itself. Two processes
        claiming at once get different rows (``SKIP LOCKED`` on PostgreSQL; SQLite has one
        writer at a time).
        """
        now = self.clock()
        skip = list(exclude)
        with self.sessions.begin() as s:
            stmt = (
                select(DeferredMessage)
                .where(
                    DeferredMessage.channel == channel,
                    DeferredMessage.done_at.is_(None),
                    DeferredMessage.received_at <= now - older_than,
                    or_(
                        DeferredMessage.claimed_until.is_(None),
                        DeferredMessage.claimed_until <= now,
                    ),
                )
                .order_by(DeferredMessage.received_at, DeferredMessage.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            if skip:
                stmt = stmt.where(DeferredMessage.msg_id.not_in(skip))
            rows = list(s.scalars(stmt))
            for row in rows:
                row.claimed_until = now + lease
                row.attempts += 1
            return [
                DeferredWork(r.msg_id, r.user_key, dict(r.message), r.received_at, r.attempts)
                for r in rows
            ]

    def answered_later(self, channel: str, msg_id: str, key: str) -> bool:
        """True when *msg_id*'s answer is owed or was queued under *key*: it goes out as a
        push, never as a second direct answer. One read, which also tells the next
        :meth:`replayed` in this thread whether the message is new."""
        with self._reader() as conn:
            row = conn.execute(
                _ANSWERED_LATER, {"channel": channel, "msg_id": msg_id, "key": key}
            ).one()
        later, before = bool(row[0]), bool(row[1])
        self._fresh.key = None if before or later else (channel, msg_id)
        return later

    def owed(self, channel: str) -> int:
        """How many answers of *channel* are owed (stored and not yet queued)."""
        with self.sessions() as s:
            read_only(s)
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(DeferredMessage)
                    .where(DeferredMessage.channel == channel, DeferredMessage.done_at.is_(None))
                )
                or 0
            )

    def _write(self, work: Callable[[Session], None], within: float | None) -> None:
        """Run *work* in a write transaction that waits at most *within* seconds for locks."""
        if within is None:
            with self.sessions.begin() as s:
                work(s)
            return
        engine: Engine = self.sessions.kw["bind"]
        deadline = time.monotonic() + within

        def in_time(s: Session) -> None:
            work(s)
            if time.monotonic() > deadline:  # raised inside the transaction: rolled back
                raise TimeoutError(f"the write was ready after its {within:.3f} s")

        if engine.dialect.name != "sqlite":
            with self.sessions.begin() as s:
                ms = f"{max(1, int(within * 1000))}ms"
                # both bounded: waiting for a row lock, and any statement on a stalled server
                s.execute(text("SELECT set_config('lock_timeout', :v, true)"), {"v": ms})
                s.execute(text("SELECT set_config('statement_timeout', :v, true)"), {"v": ms})
                in_time(s)
            return
        # SQLite's own busy handler backs off to 100 ms sleeps; short attempts in a loop take
        # a moment's gap in a busy writer's work, and stop at the deadline.
        while True:
            try:
                with self._sqlite_session(engine, 20) as s:
                    in_time(s)
                return
            except OperationalError as exc:
                if "locked" not in str(exc.orig) or time.monotonic() + _LOCK_POLL >= deadline:
                    raise
            time.sleep(_LOCK_POLL)

    @staticmethod
    @contextlib.contextmanager
    def _sqlite_session(engine: Engine, busy_ms: int) -> Iterator[Session]:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
            try:
                with Session(bind=conn, expire_on_commit=False) as s, s.begin():
                    yield s
            finally:
                raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

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
