"""The outbox: pushes written in the same transaction as the change that causes them.

A message is queued once per ``dedupe_key`` (a unique column; the insert is
``ON CONFLICT DO NOTHING``, so a duplicate neither fails nor breaks the surrounding
transaction). The sending worker (``bot.delivery``) claims due messages (:func:`claim`) under a
lease and records each outcome with :func:`mark_sent`, :func:`mark_retry`,
:func:`mark_held` or :func:`mark_failed`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from handoff.models import OutboxMessage, OutboxStatus, utcnow
from yxby.yamlconf import StrictModel, load_model

__all__ = [
    "CONSOLE_CHANNEL",
    "LEASE_SECONDS",
    "DeliveryProblem",
    "DeliverySettings",
    "HoldForUser",
    "PermanentFailure",
    "RetryLater",
    "claim",
    "enqueue",
    "load_delivery_settings",
    "mark_failed",
    "mark_held",
    "mark_retry",
    "mark_sent",
    "pending",
    "problems",
    "release",
    "release_held",
    "take_local",
    "withdraw",
]

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
    not_before: datetime | None = None,
) -> bool:
    """Queue a message; ``False`` (and nothing written) if *dedupe_key* was queued before.

    With *not_before* no worker takes the message before that time (a channel's
    ``retry_after``, or a lease held by whoever queued it and is sending it directly).
    """
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
            "next_attempt_at": not_before,
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


# ----------------------------------------------------------------------------- delivery


class DeliveryProblem(Exception):
    """Raised by a channel sender to say how a failed send should be handled."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(DeliveryProblem):
    """A transient failure (network, 5xx, 429): try again, after *after* seconds if known."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class PermanentFailure(DeliveryProblem):
    """The message can never be delivered (the user blocked the bot, bad recipient)."""


class HoldForUser(DeliveryProblem):
    """The channel only allows pushes after the user writes again (WeChat's 48-hour window)."""


LEASE_SECONDS = 60
"""How long a claimed message is reserved for the worker that claimed it."""


def claim(
    session: Session, now: datetime, limit: int = 20, channels: Iterable[str] | None = None
) -> list[OutboxMessage]:
    """Reserve up to *limit* due pending messages (of *channels*) for this worker, oldest first.

    The reservation is a lease (``next_attempt_at`` moves past *now*), taken under a row lock
    with SKIP LOCKED on PostgreSQL (SQLite serialises writers), so concurrent workers never
    take the same message; a worker that dies leaves the message to be retried after the
    lease. A message is taken only when every older pending message to the same recipient
    is taken with it (ahead of it in the batch): one leased or backing off blocks it, and so
    does one another worker is claiming right now (its uncommitted lease is invisible here,
    the row merely locked). So a conversation's pushes arrive in order. Commit the session
    right after claiming.
    """
    from datetime import timedelta

    earlier = aliased(OutboxMessage)
    blocked = (
        select(earlier.id)
        .where(
            earlier.channel == OutboxMessage.channel,
            earlier.recipient == OutboxMessage.recipient,
            earlier.status == OutboxStatus.PENDING,
            earlier.id < OutboxMessage.id,
            earlier.next_attempt_at > now,
        )
        .exists()
    )
    stmt = (
        select(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.PENDING,
            or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now),
            ~blocked,
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if channels is not None:
        stmt = stmt.where(OutboxMessage.channel.in_(list(channels)))
    rows = _in_order(session, list(session.scalars(stmt)))
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + timedelta(seconds=LEASE_SECONDS)
    return rows


def _in_order(session: Session, rows: list[OutboxMessage]) -> list[OutboxMessage]:
    """*rows* without those behind an older pending message to the same recipient not in *rows*.

    The rows stay locked (unchanged) until the claim commits; the ones left out wait.
    """
    if not rows:
        return rows
    mine = {row.id for row in rows}
    others = session.execute(
        select(OutboxMessage.channel, OutboxMessage.recipient, func.min(OutboxMessage.id))
        .where(
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.recipient.in_({row.recipient for row in rows}),
            OutboxMessage.id < max(mine),
            OutboxMessage.id.not_in(mine),
        )
        .group_by(OutboxMessage.channel, OutboxMessage.recipient)
    )
    oldest_other = {(channel, recipient): first for channel, recipient, first in others}
    return [row for row in rows if oldest_other.get((row.channel, row.recipient), row.id) >= row.id]


def mark_sent(session: Session, message_id: int, now: datetime) -> None:
    """The channel accepted the message."""
    row = session.get(OutboxMessage, message_id)
    if row is not None:
        row.status = OutboxStatus.SENT
        row.sent_at = now
        row.last_error = None
        row.next_attempt_at = None


def mark_retry(
    session: Session,
    message_id: int,
    at: datetime,
    reason: str,
    *,
    payload: dict[str, Any] | None = None,
) -> None:
    """Try again at *at*; *payload*, when given, replaces the stored one (send progress)."""
    row = session.get(OutboxMessage, message_id)
    if row is not None:
        if payload is not None and payload != row.payload:
            row.payload = dict(payload)
        row.next_attempt_at = at
        row.last_error = reason[:1000]


def release(session: Session, message_id: int, at: datetime) -> None:
    """Give a claimed message back unsent (its claim does not count as an attempt).

    Any worker may take it from *at* on.
    """
    row = session.get(OutboxMessage, message_id)
    if row is not None and row.status is OutboxStatus.PENDING:
        row.next_attempt_at = at
        row.attempts = max(row.attempts - 1, 0)


def mark_failed(session: Session, message_id: int, reason: str) -> None:
    """Give up: the reason stays visible to operators."""
    row = session.get(OutboxMessage, message_id)
    if row is not None:
        row.status = OutboxStatus.FAILED
        row.last_error = reason[:1000]
        row.next_attempt_at = None


def mark_held(session: Session, message_id: int, reason: str) -> None:
    """Park the message until the recipient writes again (see :func:`release_held`)."""
    row = session.get(OutboxMessage, message_id)
    if row is not None:
        row.status = OutboxStatus.HELD
        row.last_error = reason[:1000]
        row.next_attempt_at = None


def release_held(session: Session, channel: str, recipient: str) -> int:
    """The recipient wrote again: their held messages go back to pending. Returns how many."""
    rows = session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.status == OutboxStatus.HELD,
            OutboxMessage.channel == channel,
            OutboxMessage.recipient == recipient,
        )
    ).all()
    for row in rows:
        row.status = OutboxStatus.PENDING
        row.next_attempt_at = None
    return len(rows)


def problems(session: Session, limit: int = 100) -> list[OutboxMessage]:
    """Failed and held messages, newest first (for operators)."""
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.status.in_([OutboxStatus.FAILED, OutboxStatus.HELD]))
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def withdraw(session: Session, key_prefix: str) -> int:
    """Cancel messages not yet delivered whose dedupe key starts with *key_prefix*; how many.

    For pushes that lose their point once something happened (an offer to take a chat
    that has ended); messages already sent are left as they are.
    """
    rows = session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.status.in_([OutboxStatus.PENDING, OutboxStatus.HELD]),
            OutboxMessage.dedupe_key.startswith(key_prefix, autoescape=True),
        )
    ).all()
    for row in rows:
        row.status = OutboxStatus.CANCELLED
        row.next_attempt_at = None
        row.last_error = "已撤回：对应的事项已结束"
    return len(rows)


# ----------------------------------------------------------------------------- settings


class DeliverySettings(StrictModel):
    """``config/delivery.yaml``: how long and how hard the outbox tries."""

    horizon_hours: float = Field(72, gt=0, le=24 * 30)
    """A push is retried for this long after it was queued before it is given up."""
    backoff_cap_seconds: float = Field(600, ge=1, le=24 * 3600)
    """The longest wait between two attempts."""
    send_timeout_seconds: float = Field(25, gt=0, le=LEASE_SECONDS / 2)
    """How long one send may take before it counts as timed out ("maybe sent")."""
    stuck_alert_minutes: float = Field(60, gt=0, le=7 * 24 * 60)
    """A push still undelivered after this long is reported to the department and 政务办."""


def load_delivery_settings(path: Path) -> DeliverySettings:
    """Load ``config/delivery.yaml`` (or *path*)."""
    return load_model(path, DeliverySettings)
