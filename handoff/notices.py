"""Service that goes out: notices to enterprises (为企服务工作单, 政策解读, 工作动态) and receipts.

政务办 or a department's 负责人 writes a :class:`Notice` (title, text, optional link and
image), chooses its :class:`Audience` by filter (industry, kind, 楼宇/园区, 网格, 包保
commissioner, the commissioner's department; always only active, non-zombie entities —
``handoff.register.active_filter``), previews the count (:func:`count_audience`) and sends
(:func:`send_notice`). Sending writes, in one transaction, one :class:`NoticeReceipt` per
enterprise and channel identity linked to it, and one outbox push per identity that may get
it (kind ``notice``); the outbox worker delivers them with the channels' policy: a WeChat
template message where one is configured for notices, else a customer-service message inside
the 48-hour window, else held until the enterprise next writes; Telegram directly.

A receipt's state is read from its outbox push (sent, failed with the reason, held,
pending) plus what the notice itself knows: no linked chat, 退订通知, no longer following;
``opened_at`` is set when the signed link in the message is opened (:func:`mark_opened`).
Enterprises turn notices off and on from the chat (:func:`set_notices_off`); messages about
their own tickets are not notices and keep coming. A 为企服务工作单's answers arrive through
the chat (``bot.dialogue.workorder``) and are kept on the receipt with the tickets they
became (:func:`record_answer`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, cast

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from handoff.links import TicketLinks
from handoff.models import (
    Base,
    ChannelIdentity,
    Commissioner,
    CommissionerRole,
    Enterprise,
    EnterpriseKind,
    OutboxMessage,
    OutboxStatus,
)
from handoff.outbox import channel_label, mask_recipient
from yxby.errors import InputError

__all__ = [
    "NOTICE_KIND",
    "RECEIPT_LABELS",
    "Audience",
    "AudienceCount",
    "AudienceOptions",
    "Notice",
    "NoticeError",
    "NoticeKind",
    "NoticeLinks",
    "NoticeReceipt",
    "ReceiptView",
    "SendReport",
    "audience_options",
    "can_compose",
    "can_view",
    "count_audience",
    "create_notice",
    "export_csv",
    "export_rows",
    "export_xlsx",
    "get_notice",
    "latest_work_order",
    "list_notices",
    "mark_opened",
    "receipt_counts",
    "receipts",
    "record_answer",
    "send_notice",
    "set_notices_off",
]

NOTICE_KIND = "outreach"
"""The outbox kind of a notice push (its failures show on the receipt, not as alerts)."""
TITLE_LIMIT = 60
BODY_LIMIT = 2000
URL_LIMIT = 500


class NoticeError(InputError):
    """A notice that cannot be written, shown or sent as asked (Chinese, for the author)."""


class NoticeKind(StrEnum):
    """What a notice is (seed 四(一) 为企服务工作单, 四(三) 涉企政策/工作动态)."""

    WORK_ORDER = "为企服务工作单"
    POLICY = "政策解读"
    NEWS = "工作动态"

    @classmethod
    def parse(cls, text: str | NoticeKind) -> NoticeKind:
        """The kind named by *text*; ``NoticeError`` listing the kinds otherwise."""
        wanted = str(text).strip()
        for kind in cls:
            if wanted in (kind.value, kind.name.lower()):
                return kind
        raise NoticeError(f"未知的通知类型「{text}」，应为 {'、'.join(k.value for k in cls)} 之一")


class Person(Protocol):
    """Who writes or reads notices (a console ``Staff`` or a ``Commissioner``)."""

    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def department(self) -> str: ...

    @property
    def role(self) -> CommissionerRole: ...


# --------------------------------------------------------------------------- models


class Notice(Base):
    """One notice to enterprises, its audience filter and when it was sent."""

    __tablename__ = "notice"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(URL_LIMIT))
    image_url: Mapped[str | None] = mapped_column(String(URL_LIMIT))
    audience: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    department: Mapped[str] = mapped_column(String(64), index=True)  # who it is from
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    sent_by: Mapped[str | None] = mapped_column(String(64))
    enterprises: Mapped[int] = mapped_column(Integer, default=0)  # audience when sent
    queued: Mapped[int] = mapped_column(Integer, default=0)  # pushes queued when sent


class NoticeReceipt(Base):
    """One enterprise × chat identity of a sent notice (identity ``None``: no linked chat)."""

    __tablename__ = "notice_receipt"
    __table_args__ = (
        Index(None, "notice_id", "enterprise_id"),
        Index(None, "channel_identity_id", "notice_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notice.id"))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id"))
    channel_identity_id: Mapped[int | None] = mapped_column(ForeignKey("channel_identity.id"))
    status: Mapped[str] = mapped_column(String(16))  # queued / no_channel / notices_off / blocked
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    outbox_key: Mapped[str | None] = mapped_column(String(200))
    opened_at: Mapped[datetime | None] = mapped_column()
    answered_at: Mapped[datetime | None] = mapped_column()
    answer: Mapped[str | None] = mapped_column(Text)
    tickets: Mapped[list[str]] = mapped_column(JSON, default=list)


# --------------------------------------------------------------------------- audience


@dataclass(frozen=True)
class Audience:
    """Which enterprises a notice goes to; every given field must match (empty: everyone)."""

    industry: str | None = None
    kind: str | None = None  # 企业 / 个体工商户
    building: str | None = None  # 楼宇/园区
    grid: str | None = None  # 网格
    commissioner_id: int | None = None  # 包保专员
    department: str | None = None  # the 包保 commissioner's department

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Audience:
        """From a form or stored JSON: blank values are dropped, the kind is checked."""

        def text(key: str) -> str | None:
            value = str(data.get(key) or "").strip()
            return value or None

        kind = text("kind")
        if kind is not None and kind not in {k.value for k in EnterpriseKind}:
            raise NoticeError(f"未知的市场主体类型「{kind}」，应为 企业 或 个体工商户")
        raw_id = text("commissioner_id")
        try:
            commissioner_id = int(raw_id) if raw_id is not None else None
        except ValueError:
            raise NoticeError(f"包保专员「{raw_id}」无效") from None
        return cls(
            industry=text("industry"),
            kind=kind,
            building=text("building"),
            grid=text("grid"),
            commissioner_id=commissioner_id,
            department=text("department"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored form (only the fields that filter)."""
        values = {
            "industry": self.industry,
            "kind": self.kind,
            "building": self.building,
            "grid": self.grid,
            "commissioner_id": self.commissioner_id,
            "department": self.department,
        }
        return {k: v for k, v in values.items() if v is not None}

    def clauses(self) -> list[ColumnElement[bool]]:
        """``WHERE`` clauses on :class:`Enterprise` (active entities only)."""
        out: list[ColumnElement[bool]] = [_active()]
        if self.industry is not None:
            out.append(Enterprise.industry == self.industry)
        if self.kind is not None:
            out.append(Enterprise.kind == EnterpriseKind(self.kind))
        if self.building is not None:
            out.append(Enterprise.building == self.building)
        if self.grid is not None:
            out.append(Enterprise.grid == self.grid)
        if self.commissioner_id is not None:
            out.append(Enterprise.commissioner_id == self.commissioner_id)
        if self.department is not None:
            out.append(
                Enterprise.commissioner_id.in_(
                    select(Commissioner.id).where(Commissioner.department == self.department)
                )
            )
        return out

    def label(self, session: Session | None = None) -> str:
        """The filter in Chinese (``全部在册企业`` when nothing filters)."""
        parts = []
        if self.industry:
            parts.append(f"行业：{self.industry}")
        if self.kind:
            parts.append(f"类型：{self.kind}")
        if self.building:
            parts.append(f"楼宇/园区：{self.building}")
        if self.grid:
            parts.append(f"网格：{self.grid}")
        if self.commissioner_id is not None:
            person = session.get(Commissioner, self.commissioner_id) if session else None
            who = f"{person.name}（{person.department}）" if person else str(self.commissioner_id)
            parts.append(f"包保专员：{who}")
        if self.department:
            parts.append(f"包保部门：{self.department}")
        return "；".join(parts) or "全部在册企业"


def _active() -> ColumnElement[bool]:
    try:
        from handoff.register import active_filter
    except ImportError:  # pragma: no cover - the register module ships with this one
        return and_(Enterprise.status == "存续", Enterprise.zombie.is_(False))
    return active_filter()


@dataclass(frozen=True)
class AudienceCount:
    """The preview before sending: enterprises, and how many can be reached by chat."""

    enterprises: int
    reachable: int  # enterprises with at least one chat identity that takes notices
    identities: int  # chat identities that will get a push

    @property
    def unreachable(self) -> int:
        """Enterprises no chat reaches (no linked chat, all unsubscribed)."""
        return self.enterprises - self.reachable


def _takes_notices() -> ColumnElement[bool]:
    return and_(ChannelIdentity.subscribed.is_(True), ChannelIdentity.notices_off.is_(False))


def count_audience(session: Session, audience: Audience) -> AudienceCount:
    """How many enterprises *audience* selects, and how many chats a send would push to."""
    where = audience.clauses()
    enterprises = session.scalar(select(func.count(Enterprise.id)).where(*where)) or 0
    joined = (
        select(
            func.count(func.distinct(Enterprise.id)), func.count(ChannelIdentity.id)
        )
        .join(ChannelIdentity, ChannelIdentity.enterprise_id == Enterprise.id)
        .where(*where, _takes_notices())
    )  # fmt: skip
    reachable, identities = session.execute(joined).one()
    return AudienceCount(int(enterprises), int(reachable or 0), int(identities or 0))


@dataclass(frozen=True)
class AudienceOptions:
    """What the audience filter can choose from (values present in the active register)."""

    industries: list[str]
    buildings: list[str]
    grids: list[str]
    commissioners: list[tuple[int, str]]  # (id, 姓名（部门）)
    departments: list[str]


def audience_options(session: Session) -> AudienceOptions:
    """The filter's choices: industries, 楼宇/园区 and 网格 of active entities, commissioners
    who keep (包保) any, and their departments."""

    def distinct(column: Any) -> list[str]:
        stmt = select(column).where(_active(), column.is_not(None)).distinct().order_by(column)
        return [str(v) for v in session.scalars(stmt) if str(v).strip()]

    keepers = session.execute(
        select(Commissioner.id, Commissioner.name, Commissioner.department)
        .where(
            Commissioner.active.is_(True),
            Commissioner.id.in_(select(Enterprise.commissioner_id).where(_active())),
        )
        .order_by(Commissioner.department, Commissioner.name)
    ).all()
    return AudienceOptions(
        industries=distinct(Enterprise.industry),
        buildings=distinct(Enterprise.building),
        grids=distinct(Enterprise.grid),
        commissioners=[(i, f"{n}（{d}）") for i, n, d in keepers],
        departments=sorted({d for _, _, d in keepers}),
    )


# --------------------------------------------------------------------------- who may


def can_compose(person: Person) -> bool:
    """政务办 and department heads (负责人) write and send notices."""
    return person.role in (CommissionerRole.OVERSIGHT, CommissionerRole.HEAD)


def can_view(person: Person, notice: Notice) -> bool:
    """政务办 sees every notice; a 负责人 the notices of their own department."""
    if person.role is CommissionerRole.OVERSIGHT:
        return True
    return person.role is CommissionerRole.HEAD and notice.department == person.department


def _who(person: Person) -> str:
    return f"{person.name}（{person.department}）"[:64]


# --------------------------------------------------------------------------- writing


def _url(value: str | None, what: str) -> str | None:
    text = (value or "").strip()
    if not text:
        return None
    if not text.startswith(("https://", "http://")) or any(c.isspace() for c in text):
        raise NoticeError(f"{what}应为以 http:// 或 https:// 开头的完整网址")
    if len(text) > URL_LIMIT:
        raise NoticeError(f"{what}过长（最多 {URL_LIMIT} 个字符）")
    return text


def create_notice(
    session: Session,
    person: Person,
    *,
    kind: str | NoticeKind,
    title: str,
    body: str,
    audience: Audience,
    link: str | None = None,
    image_url: str | None = None,
    now: datetime,
) -> Notice:
    """A new, unsent notice by *person*; ``NoticeError`` naming the field that is wrong."""
    if not can_compose(person):
        raise NoticeError("只有政务办和部门负责人可以发布通知")
    chosen = NoticeKind.parse(kind)
    heading = " ".join((title or "").split())
    if not heading:
        raise NoticeError("请填写通知标题")
    if len(heading) > TITLE_LIMIT:
        raise NoticeError(f"标题过长：{len(heading)} 个字，最多 {TITLE_LIMIT} 个字")
    text = (body or "").strip()
    if not text:
        raise NoticeError("请填写通知正文")
    if len(text) > BODY_LIMIT:
        raise NoticeError(f"正文过长：{len(text)} 个字，最多 {BODY_LIMIT} 个字")
    if (
        audience.commissioner_id is not None
        and session.get(Commissioner, audience.commissioner_id) is None
    ):
        raise NoticeError("所选包保专员不存在")
    notice = Notice(
        kind=chosen.value,
        title=heading,
        body=text,
        link=_url(link, "链接"),
        image_url=_url(image_url, "图片地址"),
        audience=audience.to_dict(),
        department=person.department,
        created_by=_who(person),
        created_at=now,
        enterprises=0,
        queued=0,
    )
    session.add(notice)
    session.flush()
    return notice


def get_notice(session: Session, notice_id: int, person: Person | None = None) -> Notice:
    """The notice *notice_id* (seen by *person*, when given); ``NoticeError`` otherwise."""
    notice = session.get(Notice, notice_id)
    if notice is None or (person is not None and not can_view(person, notice)):
        raise NoticeError(f"没有编号为 {notice_id} 的通知")
    return notice


def list_notices(session: Session, person: Person | None = None, limit: int = 100) -> list[Notice]:
    """Notices newest first (those *person* may see)."""
    stmt = select(Notice).order_by(Notice.created_at.desc(), Notice.id.desc()).limit(limit)
    if person is not None:
        if person.role is CommissionerRole.HEAD:
            stmt = stmt.where(Notice.department == person.department)
        elif person.role is not CommissionerRole.OVERSIGHT:
            return []
    return list(session.scalars(stmt))


# --------------------------------------------------------------------------- links


class NoticeLinks:
    """Signed links ``/n/<token>`` to one notice for one chat identity (opening is recorded).

    The token is a :class:`~handoff.links.TicketLinks` token for ``N<notice id>``: the same
    secret and expiry, and a ticket page refuses it (no ticket has such a number).
    """

    def __init__(self, links: TicketLinks) -> None:
        self.links = links

    def url(self, notice_id: int, identity_id: int) -> str:
        """The link for *identity_id* (relative when no public URL is configured)."""
        return f"{self.links.public_url}/n/{self.links.token(f'N{notice_id}', identity_id)}"

    def verify(self, token: str) -> tuple[int, int]:
        """``(notice_id, identity_id)`` of a token; ``InputError`` (Chinese) otherwise."""
        target = self.links.verify(token)
        if not target.number.startswith("N") or not target.number[1:].isdigit():
            raise NoticeError("链接无效：请使用消息中的完整链接")
        return int(target.number[1:]), target.identity_id


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class SendReport:
    """What a send queued."""

    notice_id: int
    enterprises: int
    queued: int  # pushes written to the outbox
    no_channel: int  # enterprises without any linked chat
    skipped: int  # identities that turned notices off or stopped following


class Texts(Protocol):
    """The reply texts (``bot.replies.Replies``): ``texts(key, **values)``."""

    def __call__(self, key: str, **values: object) -> str: ...


_LINK = "\x00link\x00"


def _message(notice: Notice, texts: Texts) -> tuple[str, str]:
    """The message of *notice* with and without a link line (``_LINK`` marks the link):
    rendered once per notice, not once per chat."""
    head = texts("outreach_text", kind=notice.kind, title=notice.title, body=notice.body)
    tail = []
    if notice.kind == NoticeKind.WORK_ORDER.value:
        tail.append(texts("outreach_form", id=notice.id))
    tail.append(texts("outreach_footer"))
    linked = "\n".join([head, texts("outreach_link", link=_LINK), *tail])
    return linked, "\n".join([head, *tail])


def send_notice(
    session: Session,
    notice_id: int,
    person: Person,
    *,
    texts: Texts,
    link_for: Callable[[int, int], str] | None,
    now: datetime,
) -> SendReport:
    """Queue *notice_id* to its audience, once: receipts and outbox pushes in one transaction.

    *link_for(notice_id, identity_id)* makes the signed link whose opening is recorded
    (``None``: the message carries the notice's own link, and opening is not known).
    """
    notice = session.get(Notice, notice_id, with_for_update=True)
    if notice is None or not can_view(person, notice):
        raise NoticeError(f"没有编号为 {notice_id} 的通知")
    if not can_compose(person):
        raise NoticeError("只有政务办和部门负责人可以发送通知")
    if notice.sent_at is not None:
        raise NoticeError(f"通知「{notice.title}」已发送过，不能重复发送")
    audience = Audience.from_dict(notice.audience)
    rows = session.execute(
        select(
            Enterprise.id,
            ChannelIdentity.id,
            ChannelIdentity.channel,
            ChannelIdentity.user_key,
            ChannelIdentity.subscribed,
            ChannelIdentity.notices_off,
            ChannelIdentity.verified_at,
        )
        .outerjoin(ChannelIdentity, ChannelIdentity.enterprise_id == Enterprise.id)
        .where(*audience.clauses())
        .order_by(Enterprise.id, ChannelIdentity.id)
    )
    outreach = {
        "id": notice.id,
        "kind": notice.kind,
        "title": notice.title,
        "body": notice.body[:200],
        "sender": notice.department,
        "time": _local(now),
    }
    buttons = []
    if notice.kind == NoticeKind.WORK_ORDER.value:
        buttons = [{"label": texts("outreach_form_button"), "payload": f"cmd:填写工单 {notice.id}"}]
    with_link, without_link = _message(notice, texts)
    receipts: list[dict[str, Any]] = []
    pushes: list[dict[str, Any]] = []
    enterprises: set[int] = set()
    no_channel = skipped = 0
    for ent_id, ident_id, channel, user_key, subscribed, off, verified_at in rows:
        enterprises.add(ent_id)
        receipt: dict[str, Any] = {
            "notice_id": notice.id,
            "enterprise_id": ent_id,
            "channel_identity_id": ident_id,
            "verified": verified_at is not None,
            "outbox_key": None,
            "tickets": [],
        }
        receipts.append(receipt)
        if ident_id is None:
            receipt["status"] = "no_channel"
            no_channel += 1
            continue
        if off or not subscribed:
            receipt["status"] = "notices_off" if off else "blocked"
            skipped += 1
            continue
        key = f"notice:{notice.id}:{ident_id}"
        link = link_for(notice.id, ident_id) if link_for is not None else (notice.link or "")
        receipt["status"] = "queued"
        receipt["outbox_key"] = key
        pushes.append(
            {
                "channel": channel,
                "recipient": user_key,
                "kind": NOTICE_KIND,
                "payload": {
                    "text": with_link.replace(_LINK, link) if link else without_link,
                    "choices": [],
                    "buttons": buttons,
                    "ref": f"notice:{notice.id}",
                    "department": notice.department,
                    "outreach": {**outreach, "link": link},
                },
                "dedupe_key": key,
                "status": OutboxStatus.PENDING,
                "attempts": 0,
                "timeouts": 0,
                "requeues": 0,
                "next_attempt_at": None,
                "created_at": now,
            }
        )
    # Core inserts (executemany): a notice may go to tens of thousands of chats
    for chunk in _chunks(receipts, 5000):
        session.execute(insert(cast(Table, NoticeReceipt.__table__)), chunk)
    for chunk in _chunks(pushes, 5000):
        session.execute(insert(cast(Table, OutboxMessage.__table__)), chunk)
    notice.sent_at = now
    notice.sent_by = _who(person)
    notice.enterprises = len(enterprises)
    notice.queued = len(pushes)
    session.flush()
    return SendReport(notice.id, len(enterprises), len(pushes), no_channel, skipped)


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _local(moment: datetime) -> str:
    from handoff.calendar import SHANGHAI

    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


# --------------------------------------------------------------------------- receipts

RECEIPT_LABELS = {
    "pending": "待发送",
    "retrying": "重试中",
    "sent": "已送达",
    "failed": "发送失败",
    "held": "暂存，待企业发言后发送",
    "cancelled": "已撤回",
    "no_channel": "无绑定渠道",
    "notices_off": "已退订通知",
    "blocked": "已取消关注",
}
"""Chinese names of a receipt's states (also the order of the console's counts)."""


@dataclass(frozen=True)
class ReceiptView:
    """One row of a notice's receipts, as the console and the export show it."""

    uscc: str
    enterprise: str
    channel: str
    recipient: str
    verified: bool
    status: str
    reason: str
    sent_at: datetime | None
    opened_at: datetime | None
    answered_at: datetime | None
    answer: str
    tickets: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The status in Chinese."""
        return RECEIPT_LABELS.get(self.status, self.status)


def _status(receipt_status: str, outbox: OutboxStatus | None, error: str | None) -> str:
    if receipt_status != "queued":
        return receipt_status
    if outbox is None:
        return "pending"
    if outbox is OutboxStatus.PENDING:
        return "retrying" if error else "pending"
    return outbox.value


def _receipt_query(notice_id: int) -> Any:
    return (
        select(
            Enterprise.uscc,
            Enterprise.name,
            ChannelIdentity.channel,
            ChannelIdentity.user_key,
            NoticeReceipt.verified,
            NoticeReceipt.status,
            OutboxMessage.status,
            OutboxMessage.last_error,
            OutboxMessage.sent_at,
            NoticeReceipt.opened_at,
            NoticeReceipt.answered_at,
            NoticeReceipt.answer,
            NoticeReceipt.tickets,
        )
        .join(Enterprise, Enterprise.id == NoticeReceipt.enterprise_id)
        .outerjoin(ChannelIdentity, ChannelIdentity.id == NoticeReceipt.channel_identity_id)
        .outerjoin(OutboxMessage, OutboxMessage.dedupe_key == NoticeReceipt.outbox_key)
        .where(NoticeReceipt.notice_id == notice_id)
        .order_by(NoticeReceipt.id)
    )


def receipts(
    session: Session, notice_id: int, *, status: str | None = None, limit: int | None = None
) -> list[ReceiptView]:
    """The receipts of a notice in the order they were queued (optionally one status)."""
    out = []
    for row in session.execute(_receipt_query(notice_id)):
        (uscc, name, channel, user_key, verified, r_status, o_status, error, sent_at,
         opened, answered, answer, tickets) = row  # fmt: skip
        state = _status(r_status, o_status, error)
        if status is not None and state != status:
            continue
        reason = error or "" if state in ("failed", "held", "retrying") else ""
        out.append(
            ReceiptView(
                uscc=uscc,
                enterprise=name,
                channel=channel_label(channel) if channel else "—",
                recipient=mask_recipient(user_key) if user_key else "—",
                verified=bool(verified),
                status=state,
                reason=reason,
                sent_at=sent_at,
                opened_at=opened,
                answered_at=answered,
                answer=answer or "",
                tickets=list(tickets or []),
            )
        )
        if limit is not None and len(out) >= limit:
            break
    return out


def receipt_counts(session: Session, notice_id: int) -> dict[str, int]:
    """How many receipts are in each state, plus ``opened`` and ``answered``."""
    counts = dict.fromkeys(RECEIPT_LABELS, 0)
    rows = session.execute(
        select(NoticeReceipt.status, OutboxMessage.status, OutboxMessage.last_error, func.count())
        .outerjoin(OutboxMessage, OutboxMessage.dedupe_key == NoticeReceipt.outbox_key)
        .where(NoticeReceipt.notice_id == notice_id)
        .group_by(NoticeReceipt.status, OutboxMessage.status, OutboxMessage.last_error)
    )
    for r_status, o_status, error, n in rows:
        state = _status(r_status, o_status, error)
        counts[state] = counts.get(state, 0) + int(n)
    opened, answered = session.execute(
        select(func.count(NoticeReceipt.opened_at), func.count(NoticeReceipt.answered_at)).where(
            NoticeReceipt.notice_id == notice_id
        )
    ).one()
    counts["opened"] = int(opened or 0)
    counts["answered"] = int(answered or 0)
    return counts


EXPORT_HEADER = (
    "统一社会信用代码", "企业名称", "渠道", "账号", "核验", "状态", "原因",
    "送达时间", "打开时间", "回复时间", "回复内容", "生成诉求",
)  # fmt: skip


def export_rows(session: Session, notice_id: int) -> list[list[str]]:
    """The receipts as table rows (header first), times in Asia/Shanghai."""
    rows: list[list[str]] = [list(EXPORT_HEADER)]
    for r in receipts(session, notice_id):
        rows.append(
            [
                r.uscc, r.enterprise, r.channel, r.recipient, "已核验" if r.verified else "未核验",
                r.label, r.reason, _local(r.sent_at) if r.sent_at else "",
                _local(r.opened_at) if r.opened_at else "",
                _local(r.answered_at) if r.answered_at else "", r.answer, "、".join(r.tickets),
            ]
        )  # fmt: skip
    return rows


def export_csv(rows: Sequence[Sequence[str]]) -> bytes:
    """CSV with a BOM, so that Excel opens the Chinese text correctly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([_safe_cell(c) for c in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def export_xlsx(rows: Sequence[Sequence[str]], title: str = "回执") -> bytes:
    """An XLSX workbook of *rows* (first row bold, columns widened)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook(write_only=False)
    sheet = book.active
    assert sheet is not None
    sheet.title = title[:31] or "回执"
    for row in rows:
        sheet.append([_safe_cell(c) for c in row])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for index, width in enumerate((22, 30, 10, 16, 8, 18, 30, 18, 18, 18, 40, 30), start=1):
        sheet.column_dimensions[sheet.cell(1, index).column_letter].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _safe_cell(value: str) -> str:
    """A cell Excel will not run as a formula (an enterprise's answer is untrusted text)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


# --------------------------------------------------------------------------- the enterprise side


def mark_opened(session: Session, notice_id: int, identity_id: int, now: datetime) -> Notice:
    """The signed link of *notice_id* sent to *identity_id* was opened: kept once, first time."""
    notice = session.get(Notice, notice_id)
    if notice is None:
        raise NoticeError("通知不存在或已撤回")
    for receipt in session.scalars(
        select(NoticeReceipt).where(
            NoticeReceipt.notice_id == notice_id, NoticeReceipt.channel_identity_id == identity_id
        )
    ):
        if receipt.opened_at is None:
            receipt.opened_at = now
    return notice


def set_notices_off(session: Session, identity: ChannelIdentity, off: bool) -> bool:
    """退订通知 (*off*) or 订阅通知; ``False`` when it already was so. Ticket messages are
    not notices and are not affected."""
    if bool(identity.notices_off) == off:
        return False
    identity.notices_off = off
    return True


def latest_work_order(
    session: Session, identity_id: int, notice_id: int | None = None
) -> tuple[Notice, NoticeReceipt] | None:
    """The 为企服务工作单 sent to this identity (*notice_id*, else the newest one)."""
    stmt = (
        select(Notice, NoticeReceipt)
        .join(NoticeReceipt, NoticeReceipt.notice_id == Notice.id)
        .where(
            NoticeReceipt.channel_identity_id == identity_id,
            Notice.kind == NoticeKind.WORK_ORDER.value,
        )
        .order_by(Notice.sent_at.desc(), Notice.id.desc())
        .limit(1)
    )
    if notice_id is not None:
        stmt = stmt.where(Notice.id == notice_id)
    row = session.execute(stmt).first()
    return (row[0], row[1]) if row is not None else None


def record_answer(
    receipt: NoticeReceipt, answer: str, tickets: Sequence[str], now: datetime
) -> None:
    """Keep an enterprise's answer to a work order (a later answer is added to it)."""
    text = answer.strip()[:4000]
    receipt.answer = f"{receipt.answer}\n{text}" if receipt.answer else text
    receipt.answered_at = now
    receipt.tickets = [*(receipt.tickets or []), *tickets]
