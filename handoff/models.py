"""SQLAlchemy models of the ticket loop: enterprises, commissioners, tickets and their trail.

Every timestamp is timezone-aware (:class:`UTCDateTime` stores UTC and always returns an
aware value, also on SQLite). Nothing is deleted: ticket events are append-only (the ORM
refuses to update or delete them), clocks are superseded rather than overwritten.
The first Alembic migration creates exactly these tables.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from yxby.errors import TicketError

__all__ = [
    "Base",
    "CallbackSurvey",
    "ChannelIdentity",
    "ClockKind",
    "Commissioner",
    "CommissionerBinding",
    "CommissionerInvite",
    "CommissionerRole",
    "Direction",
    "Enterprise",
    "EnterpriseKind",
    "JointMeeting",
    "KnowledgeDraft",
    "KnowledgeDraftKind",
    "KnowledgeDraftStatus",
    "MeetingItem",
    "OutboxMessage",
    "OutboxStatus",
    "RegisterChange",
    "RegisterRejection",
    "RegisterSync",
    "SharedValue",
    "SlaClock",
    "Survey",
    "SurveyResult",
    "Ticket",
    "TicketCounter",
    "TicketDepartment",
    "TicketEvent",
    "TicketSource",
    "TicketState",
    "TranscriptLine",
    "UTCDateTime",
    "UrgeLevel",
    "UrgeSuggestion",
    "import_all_models",
    "ticket_unverified",
    "utcnow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def import_all_models() -> MetaData:
    """Import every ``handoff`` module so that all mapped tables are registered.

    Other modules (e.g. ``handoff.conversations``) add tables to :class:`Base`; Alembic's
    ``env.py`` and the schema test call this to see the whole schema.
    """
    import importlib
    import pkgutil

    import handoff

    for module in pkgutil.iter_modules(handoff.__path__):
        importlib.import_module(f"handoff.{module.name}")
    return Base.metadata


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime cannot be stored: {value!r}")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class EnterpriseKind(StrEnum):
    """市场主体类型."""

    ENTERPRISE = "企业"
    INDIVIDUAL = "个体工商户"


class CommissionerRole(StrEnum):
    """What a commissioner is in the loop: handles tickets, leads a department, oversees all,
    (管理员) manages the console accounts and sees no ticket, or (编辑) keeps the knowledge
    base: sees the knowledge pages and masked conversation logs, no ticket's personal data."""

    COMMISSIONER = "专员"
    HEAD = "负责人"
    OVERSIGHT = "政务办"
    ADMIN = "管理员"
    EDITOR = "编辑"


class TicketState(StrEnum):
    """States of a ticket (see ``handoff.tickets`` for the allowed moves)."""

    NEW = "new"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    FEEDBACK_SENT = "feedback_sent"
    SURVEYED = "surveyed"
    CLOSED = "closed"

    @property
    def label(self) -> str:
        """Chinese name of the state."""
        return _STATE_LABELS[self]

    @classmethod
    def options(cls) -> str:
        """Every state as ``待签收(new)``, joined with 、 (for help texts and errors)."""
        return "、".join(f"{s.label}({s.value})" for s in cls)

    @classmethod
    def parse(cls, text: str | TicketState) -> TicketState:
        """The state named by its value (``new``) or Chinese label (``待签收``).

        ``ValueError`` (Chinese, listing every option) for anything else.
        """
        if isinstance(text, cls):
            return text
        wanted = str(text).strip()
        for state in cls:
            if wanted.lower() == state.value or wanted == state.label:
                return state
        raise ValueError(f"未知的工单状态「{text}」（应为 {cls.options()} 之一）")


_STATE_LABELS = {
    TicketState.NEW: "待签收",
    TicketState.ACCEPTED: "已签收",
    TicketState.IN_PROGRESS: "办理中",
    TicketState.ESCALATED: "已提请联席会议",
    TicketState.RESOLVED: "已办结",
    TicketState.FEEDBACK_SENT: "已反馈",
    TicketState.SURVEYED: "已回访",
    TicketState.CLOSED: "已关闭",
}


class TicketSource(StrEnum):
    """Where a need came in (附件2 service means; chat tickets get their channel)."""

    WECHAT = "wechat"
    TELEGRAM = "telegram"
    TERMINAL = "terminal"
    PHONE = "phone"
    HOTLINE = "hotline_12345"
    SHUANGWAN = "shuangwan"
    MAILBOX = "mailbox"
    PORTAL = "portal"
    VISIT = "visit"
    OTHER = "other"

    @property
    def label(self) -> str:
        """Chinese name of the source."""
        return _SOURCE_LABELS[self]

    @classmethod
    def of_channel(cls, channel: str | None) -> TicketSource:
        """The source of a ticket filed from a chat on *channel*."""
        try:
            return cls(channel or "")
        except ValueError:
            return cls.OTHER

    @classmethod
    def parse(cls, text: str | TicketSource) -> TicketSource:
        """A source from its value or its Chinese label; ``ValueError`` lists the options."""
        if isinstance(text, TicketSource):
            return text
        wanted = str(text).strip()
        for source in cls:
            if wanted in (source.value, source.label):
                return source
        options = "、".join(f"{s.label}（{s.value}）" for s in cls)
        raise ValueError(f"未知的诉求来源「{text}」，应为 {options} 之一")


_SOURCE_LABELS = {
    TicketSource.WECHAT: "微信公众号",
    TicketSource.TELEGRAM: "Telegram",
    TicketSource.TERMINAL: "终端对话",
    TicketSource.PHONE: "电话",
    TicketSource.HOTLINE: "12345转办",
    TicketSource.SHUANGWAN: "双万双服",
    TicketSource.MAILBOX: "主任信箱",
    TicketSource.PORTAL: "门户网站",
    TicketSource.VISIT: "走访来访",
    TicketSource.OTHER: "其他",
}


class ClockKind(StrEnum):
    """The deadlines a ticket runs against."""

    CONTACT = "contact"
    DONE = "done"
    FEEDBACK = "feedback"
    ESCALATION = "escalation"

    @property
    def label(self) -> str:
        """Chinese name of the clock."""
        return _CLOCK_LABELS[self]


_CLOCK_LABELS = {
    ClockKind.CONTACT: "对接企业",
    ClockKind.DONE: "办结",
    ClockKind.FEEDBACK: "反馈结果",
    ClockKind.ESCALATION: "联席会议限期",
}


class Direction(StrEnum):
    """Direction of a transcript line, seen from the bot."""

    IN = "in"
    OUT = "out"


class SurveyResult(StrEnum):
    """满意度回访 results."""

    SATISFIED = "满意"
    MOSTLY_SATISFIED = "基本满意"
    UNSATISFIED = "不满意"

    @classmethod
    def options(cls) -> str:
        """Every result, joined with 、 (for help texts and errors)."""
        return "、".join(r.value for r in cls)

    @classmethod
    def parse(cls, text: str | SurveyResult) -> SurveyResult:
        """The result named by *text* (``满意`` …, also ``satisfied``-style member names).

        ``ValueError`` (Chinese, listing every option) for anything else.
        """
        if isinstance(text, cls):
            return text
        wanted = str(text).strip()
        for result in cls:
            if wanted == result.value or wanted.upper() == result.name:
                return result
        raise ValueError(f"回访结果应为 {cls.options()} 之一，收到「{text}」")


class OutboxStatus(StrEnum):
    """Delivery state of an outbox message."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    HELD = "held"
    CANCELLED = "cancelled"  # withdrawn before delivery (e.g. an offer for a chat that ended)


def _enum(cls: type[StrEnum], name: str) -> SAEnum:
    return SAEnum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations have stable names."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        list[Any]: JSON(),
        list[dict[str, Any]]: JSON(),
    }


class Commissioner(Base):
    """企业服务专员, a department head (负责人) or a 政务办 overseer."""

    __tablename__ = "commissioner"
    __table_args__ = (UniqueConstraint("name", "department"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    department: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[CommissionerRole] = mapped_column(_enum(CommissionerRole, "commissioner_role"))
    phone: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 亮职责: what this commissioner helps enterprises with (shown on 我的专员)
    duties: Mapped[str | None] = mapped_column(Text)

    bindings: Mapped[list[CommissionerBinding]] = relationship(
        back_populates="commissioner", order_by="CommissionerBinding.id"
    )


class CommissionerInvite(Base):
    """A one-time code with which a commissioner links a chat account; only its hash is kept."""

    __tablename__ = "commissioner_invite"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    commissioner_id: Mapped[int] = mapped_column(ForeignKey("commissioner.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    used_channel: Mapped[str | None] = mapped_column(String(32))
    used_user_key: Mapped[str | None] = mapped_column(String(128))

    commissioner: Mapped[Commissioner] = relationship()


class CommissionerBinding(Base):
    """A channel account of a commissioner (where notices and relays reach them)."""

    __tablename__ = "commissioner_binding"
    __table_args__ = (UniqueConstraint("channel", "user_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    commissioner_id: Mapped[int] = mapped_column(ForeignKey("commissioner.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    user_key: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    commissioner: Mapped[Commissioner] = relationship(back_populates="bindings")


class Enterprise(Base):
    """One market entity (一企一档)."""

    __tablename__ = "enterprise"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[EnterpriseKind] = mapped_column(_enum(EnterpriseKind, "enterprise_kind"))
    industry: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[list[str]] = mapped_column(default=list)
    commissioner_id: Mapped[int | None] = mapped_column(ForeignKey("commissioner.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # the 名录库 as the 市场监管局 export has it (see handoff.register)
    status: Mapped[str] = mapped_column(
        String(8), default="存续", server_default="存续", index=True
    )  # 存续 / 注销 / 吊销 / 迁出
    status_changed_on: Mapped[date | None] = mapped_column(Date)
    zombie: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0", index=True)
    zombie_reason: Mapped[str | None] = mapped_column(String(200))
    building: Mapped[str | None] = mapped_column(String(100), index=True)  # 楼宇/园区
    grid: Mapped[str | None] = mapped_column(String(100), index=True)  # 网格
    recruited_by: Mapped[str | None] = mapped_column(String(64))  # 招商落户部门
    industry_code: Mapped[str | None] = mapped_column(String(8))  # GB/T 4754-2017
    registered_address: Mapped[str | None] = mapped_column(String(300))  # 住所
    legal_representative: Mapped[str | None] = mapped_column(String(64))
    established_on: Mapped[date | None] = mapped_column(Date)
    contact_name: Mapped[str | None] = mapped_column(String(64))
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    annual_report_year: Mapped[int | None] = mapped_column(Integer)  # 最近年报年度
    left_on: Mapped[date | None] = mapped_column(Date)  # absent from a full export since
    synced_at: Mapped[datetime | None] = mapped_column()  # last seen in a register sync

    commissioner: Mapped[Commissioner | None] = relationship()


class RegisterSync(Base):
    """One run of a 名录库 sync (also dry runs): the file, its hash and what it changed."""

    __tablename__ = "register_sync"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column()
    by: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64))
    full: Mapped[bool] = mapped_column(Boolean, default=True)  # absent entities have left
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    left: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    zombies: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float | None] = mapped_column(Float)

    rejections: Mapped[list[RegisterRejection]] = relationship(
        back_populates="sync", order_by="RegisterRejection.row"
    )


class RegisterRejection(Base):
    """A row of a sync file that was not taken, with its reason and raw values."""

    __tablename__ = "register_rejection"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sync_id: Mapped[int] = mapped_column(ForeignKey("register_sync.id"), index=True)
    row: Mapped[int] = mapped_column(Integer)
    uscc: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)

    sync: Mapped[RegisterSync] = relationship(back_populates="rejections")


class RegisterChange(Base):
    """What one sync did to one enterprise: new, changed (field → [old, new]) or left."""

    __tablename__ = "register_change"
    __table_args__ = (Index(None, "enterprise_id", "sync_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sync_id: Mapped[int] = mapped_column(ForeignKey("register_sync.id"), index=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id"))
    kind: Mapped[str] = mapped_column(String(8))  # new / changed / left
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ChannelIdentity(Base):
    """A user as one channel knows them (WeChat openid, Telegram chat id, …)."""

    __tablename__ = "channel_identity"
    __table_args__ = (UniqueConstraint("channel", "user_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    user_key: Mapped[str] = mapped_column(String(128))
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprise.id"), index=True)
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    display_name: Mapped[str | None] = mapped_column(String(100))
    # when the user last wrote (WeChat allows customer-service pushes only within 48 hours)
    last_inbound_at: Mapped[datetime | None] = mapped_column()
    # False after a WeChat unsubscribe or a Telegram block: no pushes until they come back
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # verified 绑定 (handoff.binding): None = 未核验; how = code / console
    verified_at: Mapped[datetime | None] = mapped_column()
    verified_by: Mapped[str | None] = mapped_column(String(64))
    verified_how: Mapped[str | None] = mapped_column(String(16))
    verify_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    verify_locked_until: Mapped[datetime | None] = mapped_column()
    # 退订通知: no notices (handoff.notices); messages about their own tickets still go
    notices_off: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    enterprise: Mapped[Enterprise | None] = relationship()


class TicketCounter(Base):
    """Last ticket sequence number issued on a (Shanghai) calendar day."""

    __tablename__ = "ticket_counter"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)


class Ticket(Base):
    """A need the bot could not settle, handled by a lead department."""

    __tablename__ = "ticket"
    __table_args__ = (Index(None, "created_at"),)  # the assessment's cohorts by period

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprise.id"), index=True)
    channel_identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("channel_identity.id"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    department: Mapped[str] = mapped_column(String(64), index=True)
    route_rule: Mapped[str] = mapped_column(String(20))
    route_reason: Mapped[str] = mapped_column(Text)
    commissioner_id: Mapped[int | None] = mapped_column(ForeignKey("commissioner.id"), index=True)
    state: Mapped[TicketState] = mapped_column(_enum(TicketState, "ticket_state"), index=True)
    source: Mapped[TicketSource] = mapped_column(
        _enum(TicketSource, "ticket_source"),
        default=TicketSource.OTHER,
        server_default=TicketSource.OTHER.value,
        index=True,
    )
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    # filed from a chat identity not verified for this enterprise (handoff.binding)
    unverified: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    escalation_lead_department: Mapped[str | None] = mapped_column(String(64))
    escalation_deadline: Mapped[datetime | None] = mapped_column()
    result: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()

    enterprise: Mapped[Enterprise | None] = relationship()
    channel_identity: Mapped[ChannelIdentity | None] = relationship()
    commissioner: Mapped[Commissioner | None] = relationship()
    events: Mapped[list[TicketEvent]] = relationship(
        back_populates="ticket", order_by="(TicketEvent.at, TicketEvent.id)"
    )
    clocks: Mapped[list[SlaClock]] = relationship(back_populates="ticket", order_by="SlaClock.id")
    helpers: Mapped[list[TicketDepartment]] = relationship(
        back_populates="ticket", order_by="TicketDepartment.id"
    )
    surveys: Mapped[list[Survey]] = relationship(back_populates="ticket", order_by="Survey.id")


class TicketDepartment(Base):
    """A helper department of a co-handled (协同) ticket, with its acknowledgement."""

    __tablename__ = "ticket_department"
    __table_args__ = (UniqueConstraint("ticket_id", "department"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    department: Mapped[str] = mapped_column(String(64), index=True)
    added_at: Mapped[datetime] = mapped_column()
    added_by: Mapped[str] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None] = mapped_column()
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))

    ticket: Mapped[Ticket] = relationship(back_populates="helpers")


class TicketEvent(Base):
    """One change of a ticket: who, when, from, to, why. Append-only."""

    __tablename__ = "ticket_event"
    __table_args__ = (Index(None, "ticket_id", "at"), Index(None, "kind", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    at: Mapped[datetime] = mapped_column()
    actor: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[TicketState | None] = mapped_column(_enum(TicketState, "from_state"))
    to_state: Mapped[TicketState | None] = mapped_column(_enum(TicketState, "to_state"))
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    ticket: Mapped[Ticket] = relationship(back_populates="events")


@event.listens_for(TicketEvent, "before_update")
@event.listens_for(TicketEvent, "before_delete")
def _events_are_append_only(_mapper: Any, _conn: Any, target: TicketEvent) -> None:
    raise TicketError(f"工单事件不可修改或删除（事件 {target.id}）")


class SlaClock(Base):
    """One deadline of a ticket; due, met and breach are stored when they happen."""

    __tablename__ = "sla_clock"
    __table_args__ = (Index(None, "active", "due_at"), Index(None, "kind", "due_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    kind: Mapped[ClockKind] = mapped_column(_enum(ClockKind, "clock_kind"))
    department: Mapped[str] = mapped_column(String(64), index=True)
    workdays: Mapped[int | None] = mapped_column(Integer)
    calendar_fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column()
    due_at: Mapped[datetime] = mapped_column()
    remind_at: Mapped[datetime | None] = mapped_column()
    met_at: Mapped[datetime | None] = mapped_column()
    breached_at: Mapped[datetime | None] = mapped_column()
    reminded_at: Mapped[datetime | None] = mapped_column()
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    superseded_at: Mapped[datetime | None] = mapped_column()

    ticket: Mapped[Ticket] = relationship(back_populates="clocks")


class TranscriptLine(Base):
    """One line of a conversation, kept for the enterprise's file and the ticket."""

    __tablename__ = "transcript_line"
    __table_args__ = (Index(None, "channel_identity_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identity.id"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    at: Mapped[datetime] = mapped_column()
    direction: Mapped[Direction] = mapped_column(_enum(Direction, "direction"))
    text: Mapped[str] = mapped_column(Text)
    # set when handoff.retention masked the text (personal data) after the retention period
    masked_at: Mapped[datetime | None] = mapped_column()


class Survey(Base):
    """A satisfaction callback (满意度回访) for one round of a ticket."""

    __tablename__ = "survey"
    __table_args__ = (Index(None, "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    result: Mapped[SurveyResult] = mapped_column(_enum(SurveyResult, "survey_result"))
    comment: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column()
    # given in the chat of an identity not verified for the enterprise: counted apart
    unverified: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")

    ticket: Mapped[Ticket] = relationship(back_populates="surveys")


class OutboxMessage(Base):
    """A push that must survive a crash or a channel outage; sent by a worker."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        Index(None, "status", "created_at"),  # the worker's stuck-alert scan
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column()
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[OutboxStatus] = mapped_column(
        _enum(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    # sends that timed out ("maybe sent"): one is resent once, a second one fails the push
    timeouts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # when an operator last put it back in the queue: the retry horizon counts from here
    requeued_at: Mapped[datetime | None] = mapped_column()
    requeues: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # when the 负责人/政务办 were told it is stuck or failed (each once per requeue round)
    stuck_alerted_at: Mapped[datetime | None] = mapped_column()
    failed_alerted_at: Mapped[datetime | None] = mapped_column()


# ------------------------------------------------------------------ verified 绑定 (issue 14)


def ticket_unverified(ticket_enterprise_id: int | None, identity: ChannelIdentity | None) -> bool:
    """Whether a ticket for *ticket_enterprise_id* filed from *identity* is 未核验.

    A ticket without a chat identity (entered by staff) is not; one from a chat is unless
    that identity was verified (code or commissioner) for the very enterprise of the ticket.
    """
    if identity is None:
        return False
    return (
        identity.verified_at is None
        or ticket_enterprise_id is None
        or identity.enterprise_id != ticket_enterprise_id
    )


@event.listens_for(Session, "before_flush")
def _mark_unverified(session: Session, _context: Any, _instances: Any) -> None:
    """New tickets and chat ratings carry whether their identity was verified."""
    for obj in list(session.new):
        if isinstance(obj, Ticket) and obj.channel_identity_id is not None:
            identity = obj.channel_identity or session.get(ChannelIdentity, obj.channel_identity_id)
            enterprise_id = obj.enterprise_id
            if enterprise_id is None and obj.enterprise is not None:
                enterprise_id = obj.enterprise.id
            obj.unverified = ticket_unverified(enterprise_id, identity)
        elif isinstance(obj, Survey):
            ticket = obj.ticket or session.get(Ticket, obj.ticket_id)
            identity = ticket.channel_identity if ticket is not None else None
            if ticket is not None and identity is not None:
                by_chat = obj.actor == f"{identity.channel}:{identity.user_key}"
                obj.unverified = by_chat and ticket.unverified


class KnowledgeDraftKind(StrEnum):
    """What a knowledge draft proposes."""

    WORDING = "wording"  # one more wording (question) of an existing entry
    ENTRY = "entry"  # a new entry
    CASE = "case"  # a 服务案例 drawn from a resolved ticket

    @property
    def label(self) -> str:
        """Chinese name of the kind."""
        return {"wording": "补充问法", "entry": "新条目", "case": "服务案例"}[self.value]


class KnowledgeDraftStatus(StrEnum):
    """Where a draft stands: drafted, reviewed, written into the YAML, or dropped."""

    DRAFT = "draft"
    REVIEWED = "reviewed"
    WRITTEN = "written"
    DISCARDED = "discarded"

    @property
    def label(self) -> str:
        """Chinese name of the status."""
        labels = {"draft": "草稿", "reviewed": "已审核", "written": "已写入", "discarded": "已放弃"}
        return labels[self.value]


class KnowledgeDraft(Base):
    """A proposed change to the 企业服务知识库, made by an editor from a conversation log
    line, a gap group or a resolved ticket; the YAML in git stays the source of truth."""

    __tablename__ = "knowledge_draft"
    __table_args__ = (Index(None, "status", "updated_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[KnowledgeDraftKind] = mapped_column(_enum(KnowledgeDraftKind, "draft_kind"))
    status: Mapped[KnowledgeDraftStatus] = mapped_column(
        _enum(KnowledgeDraftStatus, "draft_status"), default=KnowledgeDraftStatus.DRAFT
    )
    target_entry_id: Mapped[str | None] = mapped_column(String(80))
    """The entry a wording is added to."""
    target_file: Mapped[str | None] = mapped_column(String(200))
    """Where a new entry goes: a file name relative to the knowledge directory."""
    entry: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The proposed entry (the fields of ``knowledge.schema.Entry``; a wording: its question)."""
    source_kind: Mapped[str] = mapped_column(String(16))
    """turn, gap, ticket or manual."""
    source_ref: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None] = mapped_column()
    written_by: Mapped[str | None] = mapped_column(String(64))
    written_at: Mapped[datetime | None] = mapped_column()
    written_path: Mapped[str | None] = mapped_column(String(200))


# ------------------------------------------------------- 督办, 回访 and 联席会议 (issue 12)


class UrgeLevel(StrEnum):
    """督办 levels by how far past due a ticket is (thresholds in ``config/supervision.yaml``)."""

    BLUE = "blue"
    ORANGE = "orange"
    RED = "red"

    @property
    def label(self) -> str:
        """The colour's Chinese name (蓝色督办 …)."""
        return {"blue": "蓝色督办", "orange": "橙色督办", "red": "红色督办"}[self.value]

    @property
    def rank(self) -> int:
        """0 (blue) < 1 (orange) < 2 (red)."""
        return list(UrgeLevel).index(self)

    @classmethod
    def parse(cls, text: str | UrgeLevel) -> UrgeLevel:
        """The level named by *text* (``red``, ``红``, ``红色督办`` …); Chinese ``ValueError``."""
        if isinstance(text, cls):
            return text
        wanted = str(text).strip().lower()
        for level in cls:
            if wanted in (level.value, level.label, level.label[:1], level.label[:2]):
                return level
        raise ValueError(f"督办等级应为 蓝、橙、红 之一，收到「{text}」")


class UrgeSuggestion(Base):
    """An urge the SLA tick suggests for an overdue clock, at one level; 政务办 confirms it
    (or config confirms it automatically). One row per (clock, level): the tick is idempotent."""

    __tablename__ = "urge_suggestion"
    __table_args__ = (UniqueConstraint("clock_id", "level"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    clock_id: Mapped[int] = mapped_column(ForeignKey("sla_clock.id"))
    level: Mapped[UrgeLevel] = mapped_column(_enum(UrgeLevel, "urge_level"))
    days_late: Mapped[int] = mapped_column(Integer)
    suggested_at: Mapped[datetime] = mapped_column()
    confirmed_at: Mapped[datetime | None] = mapped_column()
    confirmed_by: Mapped[str | None] = mapped_column(String(64))
    # a higher level suggested later, or the ticket no longer open: no longer to confirm
    dropped_at: Mapped[datetime | None] = mapped_column(index=True)

    ticket: Mapped[Ticket] = relationship()
    clock: Mapped[SlaClock] = relationship()


class CallbackSurvey(Base):
    """政务办's phone callback (回访调查) on one ticket: reply and result satisfaction."""

    __tablename__ = "callback_survey"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    called_at: Mapped[datetime] = mapped_column(index=True)
    caller_id: Mapped[int | None] = mapped_column(ForeignKey("commissioner.id"))
    caller: Mapped[str] = mapped_column(String(64))
    reached: Mapped[bool] = mapped_column(Boolean)
    reply_satisfaction: Mapped[SurveyResult | None] = mapped_column(
        _enum(SurveyResult, "reply_satisfaction")
    )
    result_satisfaction: Mapped[SurveyResult | None] = mapped_column(
        _enum(SurveyResult, "result_satisfaction")
    )
    note: Mapped[str | None] = mapped_column(Text)

    ticket: Mapped[Ticket] = relationship()


class JointMeeting(Base):
    """A 营商环境联席会议 sitting: the escalated tickets on its agenda and their decisions."""

    __tablename__ = "joint_meeting"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    held_on: Mapped[date] = mapped_column(Date, index=True)
    title: Mapped[str] = mapped_column(String(200))
    doc_number: Mapped[str | None] = mapped_column(String(64))
    attendance: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column()

    items: Mapped[list[MeetingItem]] = relationship(
        back_populates="meeting", order_by="MeetingItem.id"
    )


class MeetingItem(Base):
    """One escalated ticket on the agenda (提请): the reason, each department's opinion and
    the meeting's decision (lead department, helpers, deadline)."""

    __tablename__ = "meeting_item"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # null until a meeting is scheduled: the item waits for the next one
    meeting_id: Mapped[int | None] = mapped_column(ForeignKey("joint_meeting.id"), index=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[datetime] = mapped_column()
    # {department: {"opinion": text, "by": name, "at": iso}}
    opinions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    decision: Mapped[str | None] = mapped_column(Text)
    lead_department: Mapped[str | None] = mapped_column(String(64))
    helpers: Mapped[list[str]] = mapped_column(default=list)
    deadline: Mapped[datetime | None] = mapped_column()
    decided_at: Mapped[datetime | None] = mapped_column(index=True)
    decided_by: Mapped[str | None] = mapped_column(String(64))

    meeting: Mapped[JointMeeting | None] = relationship(back_populates="items")
    ticket: Mapped[Ticket] = relationship()


class SharedValue(Base):
    """A small value every server process sees (the WeChat access token, a "全文" rest, who
    answers a MsgId), until ``expires_at``; :mod:`handoff.shared_state` reads and writes it.

    Used when no Redis is configured (``YXBY_REDIS_URL``); an expired row counts as absent
    and is overwritten or pruned.
    """

    __tablename__ = "shared_value"
    __table_args__ = (Index(None, "expires_at"),)

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column()
