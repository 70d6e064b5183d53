"""The outbox: pushes written in the same transaction as the change that causes them.

A message is queued once per ``dedupe_key`` (a unique column; the insert is
``ON CONFLICT DO NOTHING``, so a duplicate neither fails nor breaks the surrounding
transaction). A sending worker (a later issue) picks up :func:`pending` messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from handoff.models import OutboxMessage, OutboxStatus, utcnow

__all__ = ["CONSOLE_CHANNEL", "enqueue", "pending", "take_local"]

CONSOLE_CHANNEL = "console"
"""Pseudo-channel for people with no bound chat account: shown in the web console."""


def _insert_ignoring_duplicates(session: Session, values: dict[str, Any]) -> bool:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(OutboxMessage).values(**values)
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(OutboxMessage).values(**values)
    else:  # pragma: no cover - make_engine only builds the two dialects above
        raise NotImplementedError(dialect)
    stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(OutboxMessage.id)
    return session.execute(stmt).scalar_one_or_none() is not None


def enqueue(
    session: Session,
    channel: str,
    recipient: str,
    kind: str,
    payload: dict[str, Any],
    dedupe_key: str,
    *,
    now: datetime | None = None,
) -> bool:
    """Queue a message; ``False`` (and nothing written) if *dedupe_key* was queued before."""
    at = now or utcnow()
    return _insert_ignoring_duplicates(
        session,
        {
            "channel": channel,
            "recipient": recipient,
            "kind": kind,
            "payload": payload,
            "dedupe_key": dedupe_key,
            "status": OutboxStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": None,
            "created_at": at,
        },
    )


def pending(session: Session, now: datetime, limit: int = 100) -> list[OutboxMessage]:
    """Pending messages due for an attempt at *now*, oldest first."""
    stmt = (
        select(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.PENDING,
            or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now),
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def take_local(
    session: Session, channel: str, recipient: str, now: datetime
) -> list[dict[str, Any]]:
    """Pending messages for one local recipient (the terminal chat), marked sent, oldest first.

    Local channels deliver by printing, which cannot fail, so claiming and sending are one
    step; the row lock keeps two terminals of the same user from printing a message twice.
    """
    stmt = (
        select(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.channel == channel,
            OutboxMessage.recipient == recipient,
        )
        .order_by(OutboxMessage.id)
        .with_for_update(skip_locked=True)
    )
    payloads = []
    for message in session.scalars(stmt):
        message.status = OutboxStatus.SENT
        message.attempts += 1
        message.sent_at = now
        payloads.append(message.payload)
    return payloads
