"""The console's audit trail: who did what, when, from where. Append-only.

Every sign-in, failed sign-in, lock, sign-out and password change is an
:class:`AuditEvent`, written in the same transaction as the change it records; every console
action on a ticket is to be recorded the same way (``action`` is an open vocabulary:
:class:`AuditAction` names the ones the sign-in code writes). Rows are never updated or
deleted (the ORM refuses, as for ticket events).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import ForeignKey, Index, Integer, String, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from handoff.models import Base
from yxby.errors import YxbyError

__all__ = [
    "ANONYMOUS",
    "AuditAction",
    "AuditEvent",
    "AuditImmutable",
    "recent",
    "record",
]

ANONYMOUS = "anonymous"
"""The actor name of an event without a known person (a sign-in under an unknown name)."""


class AuditAction(StrEnum):
    """What the sign-in code records (console actions add their own names)."""

    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    LOCKED = "locked"
    SIGN_OUT = "sign_out"
    PASSWORD_SET = "password_set"
    PASSWORD_LINK = "password_link"
    SESSIONS_REVOKED = "sessions_revoked"
    DEACTIVATED = "deactivated"


class AuditImmutable(YxbyError):
    """An audit event cannot be changed or deleted."""


class AuditEvent(Base):
    """One audited event: who (person or ``anonymous``), what, when, from which address."""

    __tablename__ = "audit_event"
    __table_args__ = (Index(None, "commissioner_id", "at"), Index(None, "action", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    commissioner_id: Mapped[int | None] = mapped_column(ForeignKey("commissioner.id"))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))
    ip: Mapped[str | None] = mapped_column(String(64))
    ticket_number: Mapped[str | None] = mapped_column(String(32), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


@event.listens_for(AuditEvent, "before_update")
@event.listens_for(AuditEvent, "before_delete")
def _append_only(_mapper: Any, _conn: Any, target: AuditEvent) -> None:
    raise AuditImmutable(f"审计记录不可修改或删除（记录 {target.id}）")


class _Person(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...


def record(
    session: Session,
    action: str,
    *,
    at: datetime,
    person: _Person | None = None,
    ip: str | None = None,
    ticket_number: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Add one event (flushed with the caller's transaction); *detail* must be JSON-ready."""
    row = AuditEvent(
        at=at,
        commissioner_id=person.id if person is not None else None,
        actor=person.name if person is not None else ANONYMOUS,
        action=str(action),
        ip=(ip or None) and ip[:64],
        ticket_number=ticket_number,
        detail=detail,
    )
    session.add(row)
    return row


def recent(
    session: Session,
    *,
    commissioner_id: int | None = None,
    action: str | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """Events newest first, optionally of one person and/or one action."""
    stmt = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
    if commissioner_id is not None:
        stmt = stmt.where(AuditEvent.commissioner_id == commissioner_id)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == str(action))
    return list(session.scalars(stmt))
