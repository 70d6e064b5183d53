"""What the Telegram adapter remembers between updates (no channel library imported here).

* :class:`TelegramUpdate` — each ``update_id`` whose replies went out (sent or queued), so a
  redelivered update is answered once.
* :class:`TelegramMessageRef` — the reference (``handoff:12``, ``ticket:YX-…``) that a sent
  Telegram message carried, so a commissioner's reply to a relayed message finds its
  conversation.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from handoff.models import Base

__all__ = [
    "TelegramMessageRef",
    "TelegramUpdate",
    "mark_update",
    "prune_updates",
    "ref_of",
    "remember_ref",
    "update_done",
]


class TelegramUpdate(Base):
    """An update of one bot that has been handled and answered."""

    __tablename__ = "telegram_update"
    __table_args__ = (UniqueConstraint("bot_id", "update_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(32))
    update_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(index=True)


class TelegramMessageRef(Base):
    """The reference a message sent to a Telegram chat carried."""

    __tablename__ = "telegram_message_ref"
    __table_args__ = (UniqueConstraint("chat_id", "message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[int] = mapped_column(BigInteger)
    ref: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column()


def _insert_ignoring_duplicates(
    session: Session, model: type[Base], values: dict[str, Any], keys: list[str]
) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(model).values(**values)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(model).values(**values)
    session.execute(stmt.on_conflict_do_nothing(index_elements=keys))


def update_done(session: Session, bot_id: str, update_id: int) -> bool:
    """Whether *update_id* of *bot_id* was handled and answered already."""
    stmt = select(TelegramUpdate.id).where(
        TelegramUpdate.bot_id == bot_id, TelegramUpdate.update_id == update_id
    )
    return session.scalars(stmt).first() is not None


def mark_update(session: Session, bot_id: str, update_id: int, now: datetime) -> None:
    """Record that *update_id* was handled (a second record of it is ignored)."""
    _insert_ignoring_duplicates(
        session,
        TelegramUpdate,
        {"bot_id": bot_id, "update_id": update_id, "at": now},
        ["bot_id", "update_id"],
    )


def prune_updates(session: Session, before: datetime) -> int:
    """Forget updates handled before *before* (Telegram redelivers for a day at most)."""
    result: Any = session.execute(delete(TelegramUpdate).where(TelegramUpdate.at < before))
    return int(result.rowcount or 0)


def remember_ref(
    session: Session, chat_id: str, message_ids: Iterable[int], ref: str, now: datetime
) -> None:
    """Remember that the messages *message_ids* sent to *chat_id* carried *ref*."""
    for message_id in message_ids:
        _insert_ignoring_duplicates(
            session,
            TelegramMessageRef,
            {"chat_id": chat_id, "message_id": message_id, "ref": ref[:200], "at": now},
            ["chat_id", "message_id"],
        )


def ref_of(session: Session, chat_id: str, message_id: int) -> str | None:
    """The reference the message *message_id* of *chat_id* carried, if it carried one."""
    stmt = select(TelegramMessageRef.ref).where(
        TelegramMessageRef.chat_id == chat_id, TelegramMessageRef.message_id == message_id
    )
    return session.scalars(stmt).first()
