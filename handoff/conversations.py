"""Conversation state, the turn log, message de-duplication and live handoffs.

The dialogue engine (``bot.dialogue``) keeps each user's conversation here, so a restart or a
second worker continues the same conversation; every turn is logged (text, tokens, top hits,
decision, outcome) for the 即时解决率 and the knowledge-gap report; every channel message id
is recorded once with the replies it got, so a redelivered message gets the same answer and
changes nothing; a message whose answer a channel promised to push later is kept until it
is queued (:class:`DeferredMessage`), so a crash in between loses nothing.
"""

from __future__ import annotations

import copy
import enum
import functools
import weakref
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TextClause,
    UniqueConstraint,
    and_,
    bindparam,
    insert,
    literal,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import Mapped, Session, make_transient_to_detached, mapped_column, relationship

from handoff.models import (
    Base,
    ChannelIdentity,
    Commissioner,
    CommissionerBinding,
    Direction,
    Ticket,
    TranscriptLine,
    _enum,
)

__all__ = [
    "Conversation",
    "DeferredMessage",
    "DialogueTurn",
    "LiveHandoff",
    "LiveHandoffState",
    "ProcessedMessage",
    "TurnOutcome",
    "first_look",
    "get_or_create_identity",
    "identity_of",
    "load_conversation",
    "new_conversation",
    "record_transcript",
    "record_transcript_lines",
    "save_conversation",
    "transcript_lines",
    "write_turn",
]


class TurnOutcome(enum.StrEnum):
    """What came of one user turn (updated when the user later says whether it helped)."""

    ANSWERED = "answered"  # the bot answered; the user has not said yet whether it helped
    SOLVED = "solved"  # answered, and the user confirmed it solved the need (即时解决)
    UNSOLVED = "unsolved"  # answered or offered, and the user said it did not help
    SUGGESTED = "suggested"
    NONE = "none"  # nothing in the knowledge base
    TICKET = "ticket"  # this need became a ticket
    HANDOFF = "handoff"  # the user asked for a person
    COMMAND = "command"  # 菜单, 查询, 绑定 … (not a question)
    INPUT = "input"  # an answer to a question of the bot (ticket details, rating …)
    INVALID = "invalid"  # empty, too long, not text …
    SMALLTALK = "smalltalk"  # 你好, 谢谢, 好的 … (neither a question nor a knowledge gap)


class Conversation(Base):
    """The dialogue state of one channel identity (one row per identity)."""

    __tablename__ = "conversation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"), unique=True)
    state: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column()

    identity: Mapped[ChannelIdentity] = relationship()


class DialogueTurn(Base):
    """One user message and what the bot made of it."""

    __tablename__ = "dialogue_turn"
    __table_args__ = (Index(None, "outcome", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"), index=True)
    at: Mapped[datetime] = mapped_column(index=True)
    state: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[list[str]] = mapped_column(default=list)
    hits: Mapped[list[Any]] = mapped_column(default=list)
    action: Mapped[str | None] = mapped_column(String(16))
    entry_id: Mapped[str | None] = mapped_column(String(80))
    outcome: Mapped[TurnOutcome] = mapped_column(_enum(TurnOutcome, "turn_outcome"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    # set when handoff.retention masked the text (personal data) after the retention period
    masked_at: Mapped[datetime | None] = mapped_column()


class ProcessedMessage(Base):
    """A channel message id seen once, with the replies it got (for redeliveries)."""

    __tablename__ = "processed_message"
    __table_args__ = (UniqueConstraint("channel", "msg_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    msg_id: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(index=True)  # pruned by age (handoff.retention)
    replies: Mapped[list[Any]] = mapped_column(default=list)


class DeferredMessage(Base):
    """An inbound message a channel acknowledged without its answer, which is still owed.

    Written before the channel tells the platform "received" (WeChat's ``success``);
    ``done_at`` is set in the transaction that queues the answer to the outbox. A row left
    open by a crash is completed at the next start; ``claimed_until`` keeps two processes
    from completing the same row at once.
    """

    __tablename__ = "deferred_message"
    __table_args__ = (
        UniqueConstraint("channel", "msg_id"),
        Index(None, "channel", "done_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    msg_id: Mapped[str] = mapped_column(String(128))
    user_key: Mapped[str] = mapped_column(String(128))
    message: Mapped[dict[str, Any]] = mapped_column()  # what the channel needs to replay it
    received_at: Mapped[datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_until: Mapped[datetime | None] = mapped_column()
    done_at: Mapped[datetime | None] = mapped_column()


class LiveHandoffState(enum.StrEnum):
    """A request for a person: waiting for a commissioner, talking, or over."""

    WAITING = "waiting"
    ACTIVE = "active"
    ENDED = "ended"
    EXPIRED = "expired"  # nobody took it in time: a ticket was opened instead
    CANCELLED = "cancelled"


class LiveHandoff(Base):
    """An enterprise user talking (or waiting to talk) with a commissioner through the relay."""

    __tablename__ = "live_handoff"
    __table_args__ = (Index(None, "state", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"), index=True)
    department: Mapped[str] = mapped_column(String(64))
    route_rule: Mapped[str] = mapped_column(String(20))
    route_reason: Mapped[str] = mapped_column(Text)
    question: Mapped[str] = mapped_column(Text)
    state: Mapped[LiveHandoffState] = mapped_column(_enum(LiveHandoffState, "handoff_state"))
    commissioner_id: Mapped[int | None] = mapped_column(ForeignKey("commissioner.id"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    taken_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()

    identity: Mapped[ChannelIdentity] = relationship()
    commissioner: Mapped[Commissioner | None] = relationship()
    ticket: Mapped[Ticket | None] = relationship()


def get_or_create_identity(session: Session, channel: str, user_key: str) -> ChannelIdentity:
    """The identity for (*channel*, *user_key*), created on first contact."""
    return identity_of(session, channel, user_key)[0]


_IDENTITIES = cast(Table, ChannelIdentity.__table__)
_THE_ACCOUNT = and_(
    _IDENTITIES.c.channel == bindparam("channel"), _IDENTITIES.c.user_key == bindparam("user")
)
_IDENTITY = select(_IDENTITIES).where(_THE_ACCOUNT)
_CREATE_IDENTITY: dict[str, Any] = {}  # dialect name → its INSERT … ON CONFLICT DO NOTHING

_BOUND_STAFF = (
    select(CommissionerBinding.commissioner_id)
    .join(Commissioner, Commissioner.id == CommissionerBinding.commissioner_id)
    .where(
        CommissionerBinding.channel == bindparam("channel"),
        CommissionerBinding.user_key == bindparam("user"),
        Commissioner.active.is_(true()),
    )
    .scalar_subquery()
)
_ONE = select(literal(1).label("one")).subquery("one")
_FIRST_LOOK = select(_BOUND_STAFF.label("yxby_staff_id"), *_IDENTITIES.c).select_from(
    _ONE.outerjoin(_IDENTITIES, _THE_ACCOUNT)
)
"""Every message's first statement (built once): always one row, the active commissioner
bound to the chat account (or NULL) beside the account's identity columns (NULL if new)."""


class Unknown(enum.Enum):
    """The identity was not looked up yet (the default of :func:`identity_of`)."""

    TOKEN = 0


def first_look(
    session: Session, channel: str, user_key: str
) -> tuple[Commissioner | None, ChannelIdentity | None]:
    """Who is writing, in one statement: the active commissioner this chat account is bound
    to (``None`` for an enterprise user; loaded by a second statement only for staff), and
    the account's identity (``None`` the first time it writes)."""
    row = session.connection().execute(_FIRST_LOOK, {"channel": channel, "user": user_key}).one()
    staff_id = row.yxby_staff_id
    staff = None if staff_id is None else session.get(Commissioner, staff_id)
    if row.id is None:
        return staff, None
    values = row._asdict()
    del values["yxby_staff_id"]
    return staff, _attached(session, values)


def _attached(session: Session, values: dict[str, Any]) -> ChannelIdentity:
    """The session's identity object for a row read with Core: the one it holds already,
    else one made from *values* without the ORM's loading machinery (every column is
    loaded, nothing changed) — a quarter of a new user's turn in Python, that machinery."""
    key = session.identity_key(ChannelIdentity, (values["id"],))
    held = session.identity_map.get(key)
    if held is not None:
        return cast(ChannelIdentity, held)
    identity = ChannelIdentity(**values)
    make_transient_to_detached(identity)
    session.add(identity)
    return identity


def identity_of(
    session: Session,
    channel: str,
    user_key: str,
    *,
    subscribed: bool = True,
    last_inbound_at: datetime | None = None,
    display_name: str | None = None,
    found: ChannelIdentity | Unknown | None = Unknown.TOKEN,
) -> tuple[ChannelIdentity, bool]:
    """The identity for (*channel*, *user_key*) and whether this transaction created it
    (then with *subscribed*, *last_inbound_at* and *display_name*). *found* is what
    :func:`first_look` read in this transaction, when it was called: then it is not read again.

    A new identity is one ``INSERT … ON CONFLICT DO NOTHING RETURNING`` (no savepoint): a
    first message of the same user handled concurrently makes it return nothing, and the
    row the other one wrote is read instead. Both statements are built once.
    """
    key = {"channel": channel, "user": user_key}
    if found is Unknown.TOKEN:
        if session.new:  # what the ORM would flush before its query
            session.flush()
        row = session.connection().execute(_IDENTITY, key).one_or_none()
        found = None if row is None else _attached(session, row._asdict())
    if found is not None:
        return found, False
    dialect = session.get_bind().dialect.name
    create = _CREATE_IDENTITY.get(dialect)
    if create is None:
        table = _IDENTITIES
        create = _CREATE_IDENTITY[dialect] = (
            _insert_new(session, table)
            .values(
                channel=bindparam("channel"),
                user_key=bindparam("user"),
                subscribed=bindparam("subscribed"),
                last_inbound_at=bindparam("last_inbound_at"),
                display_name=bindparam("display_name"),
            )
            .on_conflict_do_nothing(index_elements=["channel", "user_key"])
            .returning(*table.c)
        )
    first = {
        "subscribed": subscribed,
        "last_inbound_at": last_inbound_at,
        "display_name": display_name,
    }
    row = session.execute(create, key | first).one_or_none()
    if row is None:  # written by a concurrent first message of the same user
        theirs = session.connection().execute(_IDENTITY, key).one()
        return _attached(session, theirs._asdict()), False
    return _attached(session, row._asdict()), True


def _insert_new(session: Session, model: type[Base] | Table) -> Any:
    """The dialect's ``INSERT`` of *model* that can skip a conflicting row."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(model)


_CONVERSATION_COLUMNS = ("state", "data", "updated_at")
_loaded: weakref.WeakKeyDictionary[Conversation, dict[str, Any]] = weakref.WeakKeyDictionary()


def load_conversation(
    session: Session, identity: ChannelIdentity, now: datetime, *, lock: bool = True
) -> Conversation:
    """The identity's conversation row (created idle), locked for this transaction.

    A transient copy (not in the session, no unit of work): the caller changes it and
    writes it back with :func:`save_conversation`.
    """
    table = cast(Table, Conversation.__table__)
    stmt = select(table).where(table.c.channel_identity_id == identity.id)
    if lock:
        stmt = stmt.with_for_update()
    conn = session.connection()
    row = conn.execute(stmt).first()
    if row is None:
        # a first turn of the same identity in another transaction may be creating it too
        create = (
            _insert_new(session, table)
            .values(channel_identity_id=identity.id, state="idle", data={}, updated_at=now)
            .on_conflict_do_nothing(index_elements=["channel_identity_id"])
        )
        conn.execute(create)
        row = conn.execute(stmt).one()
    conv = Conversation(
        id=row.id,
        channel_identity_id=row.channel_identity_id,
        state=row.state,
        data=row.data,
        updated_at=row.updated_at,
    )
    _loaded[conv] = {c: copy.deepcopy(getattr(conv, c)) for c in _CONVERSATION_COLUMNS}
    return conv


def new_conversation(identity: ChannelIdentity, now: datetime) -> Conversation:
    """The idle conversation of an identity created in this transaction (no other
    transaction can see the identity yet, so none can have made its conversation), not
    written yet: :func:`save_conversation` inserts it with the turn's state."""
    return Conversation(channel_identity_id=identity.id, state="idle", data={}, updated_at=now)


_CONVERSATIONS = cast(Table, Conversation.__table__)
_INSERT_CONVERSATION = insert(_CONVERSATIONS).returning(_CONVERSATIONS.c.id)
"""Built once: its cache key is computed once."""


def save_conversation(session: Session, conv: Conversation) -> None:
    """Write *conv* (from :func:`load_conversation` or :func:`new_conversation`) back: an
    ``INSERT`` when new, else an ``UPDATE`` of what changed (nothing when nothing did)."""
    table = _CONVERSATIONS
    values = {c: getattr(conv, c) for c in _CONVERSATION_COLUMNS}
    before = _loaded.get(conv)
    conn = session.connection()
    if conv.id is None:
        values["channel_identity_id"] = conv.channel_identity_id
        conv.id = conn.execute(_INSERT_CONVERSATION, values).scalar_one()
    else:
        changed = {c: v for c, v in values.items() if before is None or before[c] != v}
        if changed:
            conn.execute(update(table).where(table.c.id == conv.id).values(**changed))
    _loaded[conv] = {c: copy.deepcopy(getattr(conv, c)) for c in _CONVERSATION_COLUMNS}


_TURN_COLUMNS = (
    "channel_identity_id", "at", "state", "text", "tokens", "hits", "action", "entry_id",
    "outcome", "ticket_id",
)  # fmt: skip
_written: weakref.WeakKeyDictionary[DialogueTurn, dict[str, Any]] = weakref.WeakKeyDictionary()
_TURNS = cast(Table, DialogueTurn.__table__)
_NEW_TURNS = "yxby_new_turns"  # the session.info key of bot.metrics' turn counter
_INSERT_TURN = insert(_TURNS).returning(_TURNS.c.id)


def write_turn(session: Session, log: DialogueTurn) -> int:
    """Write the turn log *log* (a transient object the handlers fill in): inserted the
    first time, then only what changed since; its id. Core statements, no unit of work."""
    values = {c: getattr(log, c) for c in _TURN_COLUMNS}
    table = _TURNS
    before = _written.get(log)
    if before is None:
        log.id = session.connection().execute(_INSERT_TURN, values).scalar_one()
        # counted by outcome when the transaction commits (bot.metrics, which sees the
        # ORM's new turns in before_flush — this one never goes through a flush)
        session.info.setdefault(_NEW_TURNS, []).append(log)
    else:
        changed = {c: v for c, v in values.items() if before[c] != v}
        if changed:
            session.connection().execute(
                update(table).where(table.c.id == log.id).values(**changed)
            )
    _written[log] = {c: list(v) if isinstance(v, list) else v for c, v in values.items()}
    return log.id


@functools.lru_cache(maxsize=16)
def _insert_lines(n: int) -> TextClause:
    """``INSERT`` of *n* transcript lines in one statement, with the columns' types.

    Text, because SQLAlchemy compiles a multi-row ``insert().values([...])`` anew at every
    execution (it has no cache key); a text statement with typed parameters is cached.
    """
    t = cast(Table, TranscriptLine.__table__)
    rows = ", ".join(f"(:who, :at, :d{i}, :t{i})" for i in range(n))
    names = ", ".join(c.name for c in (t.c.channel_identity_id, t.c.at, t.c.direction, t.c.text))
    binds = [
        bindparam("who", type_=t.c.channel_identity_id.type),
        bindparam("at", type_=t.c.at.type),
    ]
    for i in range(n):
        binds += [
            bindparam(f"d{i}", type_=t.c.direction.type),
            bindparam(f"t{i}", type_=t.c.text.type),
        ]
    return text(f"INSERT INTO {t.name} ({names}) VALUES {rows}").bindparams(*binds)


def record_transcript_lines(
    session: Session, identity_id: int, lines: list[tuple[Direction, str]], at: datetime
) -> None:
    """Lines of a user's conversation as shown, in order: one ``INSERT`` (no ORM objects).

    One statement with a row per line, not an executemany: psycopg runs that in pipeline
    mode, which for the two or three lines of a turn cost more than the rest of the turn's
    statements together."""
    if not lines:
        return
    statement = _insert_lines(len(lines))
    params: dict[str, Any] = {"who": identity_id, "at": at}
    for i, (direction, line) in enumerate(lines):
        params[f"d{i}"], params[f"t{i}"] = direction, line[:4000]
    session.connection().execute(statement, params)


def record_transcript(
    session: Session, identity_id: int, direction: Direction, text: str, at: datetime
) -> None:
    """One line of a user's conversation as it was shown (一企一档: kept, never rewritten)."""
    session.add(
        TranscriptLine(
            channel_identity_id=identity_id, at=at, direction=direction, text=text[:4000]
        )
    )


def transcript_lines(
    session: Session,
    identity_id: int,
    *,
    since: datetime | None = None,
    after_id: int = 0,
    limit: int = 500,
) -> list[TranscriptLine]:
    """The identity's transcript lines with an id above *after_id* (and at or after *since*),
    in the order they were written; the latest *limit* of them."""
    stmt = select(TranscriptLine).where(
        TranscriptLine.channel_identity_id == identity_id, TranscriptLine.id > after_id
    )
    if since is not None:
        stmt = stmt.where(TranscriptLine.at >= since)
    newest = list(session.scalars(stmt.order_by(TranscriptLine.id.desc()).limit(limit)))
    newest.reverse()
    return newest
