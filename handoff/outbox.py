"""The outbox: pushes written in the same transaction as the change that causes them.

A message is queued once per ``dedupe_key`` (a unique column; the insert is
``ON CONFLICT DO NOTHING``, so a duplicate neither fails nor breaks the surrounding
transaction). The sending worker (``bot.delivery``) claims due messages (:func:`claim`) under a
lease and records each outcome with :func:`mark_sent`, :func:`mark_retry`,
:func:`mark_held` or :func:`mark_failed`; a push is retried until its horizon
(:class:`DeliverySettings`), and :func:`queue_alerts` tells the department's 负责人 and the
政务办 once about every push that failed or is stuck. Operators (the CLI, the console) list,
requeue and cancel with :func:`list_messages`, :func:`stuck`, :func:`requeue` and
:func:`cancel`. The policy is written down in ``docs/delivery.md``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from pydantic import Field
from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.orm import Session, aliased, selectinload

from handoff.models import (
    ChannelIdentity,
    Commissioner,
    CommissionerBinding,
    CommissionerRole,
    Enterprise,
    OutboxMessage,
    OutboxStatus,
    Ticket,
    utcnow,
)
from yxby.errors import InputError
from yxby.yamlconf import StrictModel, load_model

__all__ = [
    "ALERT_KIND",
    "CONSOLE_CHANNEL",
    "FALLBACK_DEPARTMENT",
    "LEASE_SECONDS",
    "QUIET_KINDS",
    "AlertReport",
    "DeliveryProblem",
    "DeliverySettings",
    "HoldForUser",
    "OutboxActionError",
    "PermanentFailure",
    "RetryLater",
    "SendTimedOut",
    "alert_department",
    "cancel",
    "channel_label",
    "claim",
    "enqueue",
    "horizon_of",
    "list_messages",
    "load_delivery_settings",
    "mark_failed",
    "mark_held",
    "mark_retry",
    "mark_sent",
    "mask_recipient",
    "pending",
    "problems",
    "queue_alerts",
    "release",
    "release_held",
    "requeue",
    "requeue_failed",
    "status_label",
    "stuck",
    "take_local",
    "withdraw",
]

log = logging.getLogger("yxby.outbox")

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


class SendTimedOut(DeliveryProblem):
    """The request went out but no answer came in time: the message may have been delivered.

    Neither WeChat nor Telegram can be asked whether it arrived, so the worker resends once
    and then gives up as "可能已送达" (see ``docs/delivery.md``); a sender raises this for a
    read timeout of its HTTP client (a connect timeout is a plain :class:`RetryLater`).
    """


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


def _note_followers(session: Session, row: OutboxMessage) -> None:
    """Pending pushes behind *row* to the same recipient say what they wait for."""
    session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.channel == row.channel,
            OutboxMessage.recipient == row.recipient,
            OutboxMessage.id > row.id,
        )
        .values(last_error=f"等待此前的消息 #{row.id} 送达")
        .execution_options(synchronize_session=False)
    )


def mark_retry(
    session: Session,
    message_id: int,
    at: datetime,
    reason: str,
    *,
    payload: dict[str, Any] | None = None,
    timed_out: bool = False,
) -> None:
    """Try again at *at*; *payload*, when given, replaces the stored one (send progress).

    *timed_out* counts the attempt as a timeout ("maybe sent"). The pushes queued behind it
    for the same recipient wait, and their ``last_error`` says so.
    """
    row = session.get(OutboxMessage, message_id)
    if row is not None and row.status is OutboxStatus.PENDING:
        if payload is not None and payload != row.payload:
            row.payload = dict(payload)
        row.next_attempt_at = at
        row.last_error = reason[:1000]
        if timed_out:
            row.timeouts += 1
        _note_followers(session, row)


def release(session: Session, message_id: int, at: datetime) -> None:
    """Give a claimed message back unsent (its claim does not count as an attempt).

    Any worker may take it from *at* on.
    """
    row = session.get(OutboxMessage, message_id)
    if row is not None and row.status is OutboxStatus.PENDING:
        row.next_attempt_at = at
        row.attempts = max(row.attempts - 1, 0)


def mark_failed(session: Session, message_id: int, reason: str, *, timed_out: bool = False) -> None:
    """Give up: the reason stays visible to operators (and :func:`queue_alerts` reports it)."""
    row = session.get(OutboxMessage, message_id)
    if row is not None and row.status is OutboxStatus.PENDING:
        row.status = OutboxStatus.FAILED
        row.last_error = reason[:1000]
        row.next_attempt_at = None
        if timed_out:
            row.timeouts += 1


def mark_held(session: Session, message_id: int, reason: str) -> None:
    """Park the message until the recipient writes again (see :func:`release_held`)."""
    row = session.get(OutboxMessage, message_id)
    if row is not None and row.status is OutboxStatus.PENDING:
        row.status = OutboxStatus.HELD
        row.last_error = reason[:1000]
        row.next_attempt_at = None


_OUTBOX = cast(Table, OutboxMessage.__table__)
_RELEASE_HELD = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.status == OutboxStatus.HELD,
        _OUTBOX.c.channel == bindparam("held_channel"),
        _OUTBOX.c.recipient == bindparam("held_recipient"),
    )
    .values(status=OutboxStatus.PENDING, next_attempt_at=None)
)  # built once and without the ORM: it runs for every message a user writes


def release_held(session: Session, channel: str, recipient: str) -> int:
    """The recipient wrote again: their held messages go back to pending. Returns how many.

    One UPDATE of the table (messages of the recipient already loaded in *session* are not
    refreshed: the dialogue turn that calls this holds none)."""
    done = session.execute(_RELEASE_HELD, {"held_channel": channel, "held_recipient": recipient})
    return int(done.rowcount)  # type: ignore[attr-defined]


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
    rate_per_second: dict[str, float] = Field(
        default_factory=lambda: {"wechat": 20.0, "telegram": 25.0}
    )
    """At most this many sends per second on a channel (one worker); channels not named
    are not limited. WeChat and Telegram both throttle bursts (a notice to thousands)."""


def load_delivery_settings(path: Path) -> DeliverySettings:
    """Load ``config/delivery.yaml`` (or *path*)."""
    return load_model(path, DeliverySettings)


def horizon_of(message: OutboxMessage, settings: DeliverySettings) -> datetime:
    """When *message* is given up: its horizon counts from its queueing or its last requeue."""
    since = max(message.created_at, message.requeued_at or message.created_at)
    return since + timedelta(hours=settings.horizon_hours)


# ----------------------------------------------------------------------------- operators

ALERT_KIND = "delivery_alert"
"""The outbox kind of an alert about a push; an alert's own failure is never alerted."""
QUIET_KINDS = (ALERT_KIND, "outreach")
"""Kinds never alerted about: alerts themselves, and notices to enterprises (thousands at a
time; their failures and holds are shown on the notice's receipts, ``handoff.notices``)."""

FALLBACK_DEPARTMENT = "政务办"
"""Who answers for a push that names no department and no ticket."""

UNDELIVERED = (OutboxStatus.PENDING, OutboxStatus.HELD)

_STATUS_LABELS = {
    OutboxStatus.PENDING: "待发送",
    OutboxStatus.SENT: "已送达",
    OutboxStatus.FAILED: "失败",
    OutboxStatus.HELD: "待用户留言",
    OutboxStatus.CANCELLED: "已取消",
}

_CHANNEL_LABELS = {
    "wechat": "微信",
    "telegram": "Telegram",
    "terminal": "终端",
    "wecom": "企业微信",
    CONSOLE_CHANNEL: "工作台",
}


def status_label(status: OutboxStatus) -> str:
    """Chinese name of an outbox status."""
    return _STATUS_LABELS[status]


def channel_label(channel: str) -> str:
    """Chinese name of a channel (the name itself for one not known here)."""
    return _CHANNEL_LABELS.get(channel, channel)


def mask_recipient(recipient: str) -> str:
    """A recipient key shown to operators: only its last four characters."""
    return "…" + recipient[-4:] if len(recipient) > 4 else "…" + recipient


class OutboxActionError(InputError):
    """An operator named messages that do not exist or cannot take the action; nothing changed.

    ``unknown`` are ids not in the outbox, ``refused`` maps ids to their current status.
    """

    def __init__(
        self, action: str, unknown: Sequence[int], refused: dict[int, OutboxStatus]
    ) -> None:
        parts = []
        if unknown:
            parts.append("没有编号为 " + "、".join(f"#{i}" for i in unknown) + " 的推送")
        for message_id, status in refused.items():
            parts.append(f"#{message_id} {status_label(status)}，不能{action}")
        super().__init__("；".join(parts) + "（均未改动）")
        self.action = action
        self.unknown = tuple(unknown)
        self.refused = dict(refused)


def list_messages(
    session: Session,
    statuses: Iterable[OutboxStatus] | None = None,
    *,
    limit: int = 50,
) -> list[OutboxMessage]:
    """Messages in *statuses* (default: everything not delivered), newest first."""
    wanted = list(statuses) if statuses is not None else [*UNDELIVERED, OutboxStatus.FAILED]
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.status.in_(wanted))
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def _stuck_query(older_than: datetime, channels: Iterable[str] | None) -> Any:
    stmt = select(OutboxMessage).where(
        OutboxMessage.status.in_(UNDELIVERED),
        OutboxMessage.created_at <= older_than,
        or_(OutboxMessage.requeued_at.is_(None), OutboxMessage.requeued_at <= older_than),
    )
    if channels is not None:
        stmt = stmt.where(OutboxMessage.channel.in_(list(channels)))
    return stmt


def stuck(
    session: Session,
    now: datetime,
    settings: DeliverySettings,
    *,
    limit: int = 50,
    channels: Iterable[str] | None = None,
) -> list[OutboxMessage]:
    """Pending or held messages undelivered for ``stuck_alert_minutes`` or longer, oldest first.

    Console messages (read in the web console, never "sent") are not stuck.
    """
    cutoff = now - timedelta(minutes=settings.stuck_alert_minutes)
    stmt = (
        _stuck_query(cutoff, channels)
        .where(OutboxMessage.channel != CONSOLE_CHANNEL)
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def _local(moment: datetime) -> str:
    from handoff.calendar import SHANGHAI

    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _rows_for(
    session: Session, ids: Iterable[int], allowed: Iterable[OutboxStatus], action: str
) -> list[OutboxMessage]:
    wanted = list(dict.fromkeys(ids))
    rows = {
        row.id: row
        for row in session.scalars(
            select(OutboxMessage).where(OutboxMessage.id.in_(wanted)).with_for_update()
        )
    }
    ok = set(allowed)
    unknown = [i for i in wanted if i not in rows]
    refused = {i: rows[i].status for i in wanted if i in rows and rows[i].status not in ok}
    if unknown or refused:
        raise OutboxActionError(action, unknown, refused)
    return [rows[i] for i in wanted]


def requeue(
    session: Session, ids: Iterable[int], now: datetime, *, actor: str
) -> list[OutboxMessage]:
    """Put failed or held messages back in the queue, due at *now*; all or nothing.

    The attempt count is kept; the horizon, the timeout allowance and the alerts start
    afresh (a requeued push that fails again is reported again). ``last_error`` records who
    requeued it and what it said before. :class:`OutboxActionError` for unknown ids or
    messages in another state.
    """
    rows = _rows_for(session, ids, (OutboxStatus.FAILED, OutboxStatus.HELD), "重新发送")
    for row in rows:
        before = f"（此前：{row.last_error}）" if row.last_error else ""
        row.status = OutboxStatus.PENDING
        row.next_attempt_at = None
        row.requeued_at = now
        row.requeues += 1
        row.timeouts = 0
        row.stuck_alerted_at = None
        row.failed_alerted_at = None
        row.last_error = f"{_local(now)} 由{actor}重新排队{before}"[:1000]
    return rows


def requeue_failed(
    session: Session, now: datetime, *, actor: str, limit: int = 1000
) -> list[OutboxMessage]:
    """Requeue every failed message (up to *limit*, oldest first); see :func:`requeue`."""
    ids = session.scalars(
        select(OutboxMessage.id)
        .where(OutboxMessage.status == OutboxStatus.FAILED)
        .order_by(OutboxMessage.id)
        .limit(limit)
    ).all()
    return requeue(session, ids, now, actor=actor) if ids else []


def cancel(
    session: Session, ids: Iterable[int], now: datetime, *, actor: str
) -> list[OutboxMessage]:
    """Cancel messages not delivered (pending, held or failed); all or nothing.

    A push already being sent when it is cancelled may still arrive (it is then marked
    sent). :class:`OutboxActionError` for unknown ids or messages in another state.
    """
    rows = _rows_for(session, ids, (*UNDELIVERED, OutboxStatus.FAILED), "取消")
    for row in rows:
        before = f"（此前：{row.last_error}）" if row.last_error else ""
        row.status = OutboxStatus.CANCELLED
        row.next_attempt_at = None
        row.last_error = f"{_local(now)} 由{actor}取消{before}"[:1000]
    return rows


# ----------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class AlertReport:
    """What one :func:`queue_alerts` pass did."""

    failed: int = 0
    """Failed messages reported."""
    stuck: int = 0
    """Stuck messages reported."""
    alerts: int = 0
    """Alert messages queued."""
    unaddressed: int = 0
    """Messages reported to nobody: no 负责人 and no 政务办 registered."""

    def to_dict(self) -> dict[str, int]:
        """Plain counts, for JSON."""
        return asdict(self)


_TICKET_REF = re.compile(r"^ticket:(?P<number>\S+)$")


def _ticket_number(message: OutboxMessage) -> str | None:
    payload = message.payload or {}
    ref = payload.get("ref")
    if isinstance(ref, str) and (m := _TICKET_REF.match(ref)):
        return m.group("number")
    ticket = payload.get("ticket")
    return ticket if isinstance(ticket, str) and ticket else None


def alert_department(session: Session, message: OutboxMessage) -> str:
    """The department answering for *message*: its payload's ``department``, else its
    ticket's (``ref`` ``ticket:<number>``), else :data:`FALLBACK_DEPARTMENT`."""
    named = (message.payload or {}).get("department")
    if isinstance(named, str) and named.strip():
        return named.strip()
    number = _ticket_number(message)
    if number is not None:
        found = session.scalar(select(Ticket.department).where(Ticket.number == number))
        if found:
            return found
    return FALLBACK_DEPARTMENT


def _who(session: Session, message: OutboxMessage) -> str:
    """The recipient as a department head would recognise them."""
    where = f"{channel_label(message.channel)} {mask_recipient(message.recipient)}"
    staff = session.scalar(
        select(Commissioner.name)
        .join(CommissionerBinding, CommissionerBinding.commissioner_id == Commissioner.id)
        .where(
            CommissionerBinding.channel == message.channel,
            CommissionerBinding.user_key == message.recipient,
        )
    )
    if staff:
        return f"{staff}（{where}）"
    identity = session.scalar(
        select(ChannelIdentity)
        .options(selectinload(ChannelIdentity.enterprise))
        .where(
            ChannelIdentity.channel == message.channel,
            ChannelIdentity.user_key == message.recipient,
        )
    )
    if identity is not None:
        enterprise: Enterprise | None = identity.enterprise
        name = enterprise.name if enterprise is not None else identity.display_name
        if name:
            return f"{name}（{where}）"
    return where


def _excerpt(message: OutboxMessage, size: int = 40) -> str:
    text = str((message.payload or {}).get("text") or "").replace("\n", " ").strip()
    return text if len(text) <= size else text[:size] + "…"


def _alert_text(
    session: Session, message: OutboxMessage, what: str, now: datetime, settings: DeliverySettings
) -> str:
    number = _ticket_number(message)
    about = f"（工单 {number}）" if number else ""
    head = (
        f"推送 #{message.id}{about}发给 {_who(session, message)}，"
        f"{_local(message.created_at)} 排队，内容：「{_excerpt(message)}」。"
    )
    if what == "failed":
        return (
            f"【推送失败】{head}已放弃发送：{message.last_error or '原因未知'}。"
            f"请通过其他方式联系对方；确认可重发后用 yxby outbox retry {message.id}。"
        )
    minutes = int((now - message.created_at).total_seconds() // 60)
    state = (
        "等待对方再次留言后才能发送"
        if message.status is OutboxStatus.HELD
        else f"仍在重试，最迟 {_local(horizon_of(message, settings))} 放弃"
    )
    return (
        f"【推送积压】{head}已 {minutes} 分钟未送达（尝试 {message.attempts} 次；"
        f"最近：{message.last_error or '无'}），{state}。"
    )


def _alert_people(session: Session, department: str) -> list[Commissioner]:
    stmt = (
        select(Commissioner)
        .options(selectinload(Commissioner.bindings))
        .where(
            Commissioner.active.is_(True),
            or_(
                (Commissioner.role == CommissionerRole.HEAD)
                & (Commissioner.department == department),
                Commissioner.role == CommissionerRole.OVERSIGHT,
            ),
        )
        .order_by(Commissioner.id)
    )
    return list(session.scalars(stmt))


def _alert_targets(person: Commissioner, failing: str) -> list[tuple[str, str, str]]:
    """(channel, recipient, key part) for *person*: accounts on another channel than
    *failing* where they have one, else on the same one, else the console."""
    other = [b for b in person.bindings if b.channel != failing]
    chosen = other or list(person.bindings)
    if chosen:
        return [(b.channel, b.user_key, f"b{b.id}") for b in chosen]
    return [(CONSOLE_CHANNEL, f"commissioner:{person.id}", f"c{person.id}")]


def _report(
    session: Session, message: OutboxMessage, what: str, now: datetime, settings: DeliverySettings
) -> tuple[int, bool]:
    """Queue the alert about *message*; (alerts queued, whether anybody was there to tell)."""
    department = alert_department(session, message)
    people = _alert_people(session, department)
    text = _alert_text(session, message, what, now, settings)
    payload: dict[str, Any] = {
        "text": text,
        "choices": [],
        "buttons": [],
        "ref": (message.payload or {}).get("ref"),
        "department": department,
        "about": message.id,
        "alert": what,
    }
    queued = 0
    for person in people:
        for channel, recipient, part in _alert_targets(person, message.channel):
            key = f"{ALERT_KIND}:{message.id}:{what}:r{message.requeues}:{part}"
            queued += enqueue(session, channel, recipient, ALERT_KIND, payload, key, now=now)
    if not people:
        log.warning("nobody to tell that outbox message %s %s", message.id, what)
    return queued, bool(people)


def queue_alerts(
    session: Session,
    now: datetime,
    settings: DeliverySettings,
    *,
    channels: Iterable[str] | None = None,
    limit: int = 50,
) -> AlertReport:
    """Report each failed push, and each push of *channels* stuck for ``stuck_alert_minutes``,
    once to its department's 负责人 and the 政务办 (as ``delivery_alert`` outbox messages).

    Idempotent (``failed_alerted_at``/``stuck_alerted_at`` and per-message dedupe keys); an
    alert about an alert is never queued. Both scans use the ``(status, …)`` indexes.
    """
    failed = list(
        session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.status == OutboxStatus.FAILED,
                OutboxMessage.failed_alerted_at.is_(None),
                OutboxMessage.kind.notin_(QUIET_KINDS),
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    cutoff = now - timedelta(minutes=settings.stuck_alert_minutes)
    late = list(
        session.scalars(
            _stuck_query(cutoff, channels)
            .where(
                OutboxMessage.channel != CONSOLE_CHANNEL,
                OutboxMessage.stuck_alerted_at.is_(None),
                OutboxMessage.kind.notin_(QUIET_KINDS),
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    alerts = unaddressed = 0
    for message in failed:
        queued, told = _report(session, message, "failed", now, settings)
        message.failed_alerted_at = now
        alerts += queued
        unaddressed += not told
    for message in late:
        queued, told = _report(session, message, "stuck", now, settings)
        message.stuck_alerted_at = now
        alerts += queued
        unaddressed += not told
    return AlertReport(len(failed), len(late), alerts, unaddressed)
