"""Verified 绑定: which chat identities speak for an enterprise, and how that was proven.

Anyone may *claim* an enterprise in the chat (``绑定 统一社会信用代码``): the identity is then
linked to it but 未核验 — its tickets carry ``Ticket.unverified`` and its ratings
``Survey.unverified`` (see :func:`handoff.models.ticket_unverified`), so the assessment can
count them apart. The claim becomes verified by proof:

* a one-time 核验码 that the enterprise's commissioner hands out (console button on the
  一企一档 page, or ``yxby enterprises code USCC``): only its SHA-256 is stored, it expires,
  works once, and an identity that keeps typing wrong codes is locked for a while
  (:data:`MAX_FAILURES`, :data:`LOCK`); the code pattern is :mod:`handoff.invites`'s;
* or the commissioner confirms the identity in the console (:func:`confirm`).

One identity is bound to one enterprise at a time; an enterprise may have several
identities (its staff). A verified identity cannot be moved to another enterprise by a bare
claim — only by a code of the other enterprise. Verifying clears the 未核验 mark of the
identity's tickets for that enterprise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from handoff.invites import format_code, hash_code, make_code, normalize_code
from handoff.models import (
    Base,
    ChannelIdentity,
    Commissioner,
    CommissionerRole,
    Enterprise,
    Ticket,
)
from handoff.registry import find_enterprise, validate_uscc
from yxby.errors import InputError

__all__ = [
    "DEFAULT_VALID_HOURS",
    "LOCK",
    "MAX_FAILURES",
    "BindingError",
    "EnterpriseCode",
    "IdentityView",
    "can_verify",
    "claim",
    "confirm",
    "create_code",
    "identities_of",
    "link",
    "redeem_code",
    "revoke",
]

DEFAULT_VALID_HOURS = 72
MAX_VALID_HOURS = 30 * 24
MAX_FAILURES = 5
"""Wrong codes an identity may type before it is locked for :data:`LOCK`."""
LOCK = timedelta(hours=1)


class BindingError(InputError):
    """A binding step that cannot be done; the Chinese message says what to do instead."""


class EnterpriseCode(Base):
    """A one-time 核验码 for binding a chat identity to an enterprise; only its hash is kept."""

    __tablename__ = "enterprise_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprise.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    used_identity_id: Mapped[int | None] = mapped_column(ForeignKey("channel_identity.id"))


# --------------------------------------------------------------------------- who may


def can_verify(person: Commissioner | object, enterprise: Enterprise) -> bool:
    """Whether *person* may hand out codes for, and confirm identities of, *enterprise*.

    Its 包保 commissioner, a 负责人 of that commissioner's department, and the 政务办.
    """
    role = getattr(person, "role", None)
    if role is CommissionerRole.OVERSIGHT:
        return True
    keeper = enterprise.commissioner
    if keeper is None:
        return False
    if getattr(person, "id", None) == keeper.id:
        return True
    return role is CommissionerRole.HEAD and getattr(person, "department", None) == (
        keeper.department
    )


def _who(person: object) -> str:
    name = str(getattr(person, "name", "") or "")
    department = str(getattr(person, "department", "") or "")
    return f"{name}（{department}）" if department else name or "系统"


def _require(person: object, enterprise: Enterprise) -> None:
    if not can_verify(person, enterprise):
        raise BindingError(
            f"只有{enterprise.name}的包保专员、其所在部门负责人或政务办可以核验该企业的绑定"
        )


# --------------------------------------------------------------------------- codes


def create_code(
    session: Session,
    enterprise: Enterprise,
    person: object,
    *,
    now: datetime,
    valid_for: timedelta = timedelta(hours=DEFAULT_VALID_HOURS),
    check: bool = True,
) -> tuple[str, EnterpriseCode]:
    """A new 核验码 for *enterprise*, made by *person* (shown once: ``ABCD-EFGH-JKMN``).

    *check* ``False`` skips the permission check (the CLI runs as the operator).
    """
    if check:
        _require(person, enterprise)
    if valid_for <= timedelta(0) or valid_for > timedelta(hours=MAX_VALID_HOURS):
        raise BindingError(f"核验码有效期应在 1–{MAX_VALID_HOURS} 小时之间")
    status = getattr(enterprise, "status", "存续") or "存续"
    if status != "存续":
        raise BindingError(f"{enterprise.name}的登记状态为「{status}」，不能发放核验码")
    code = make_code()
    row = EnterpriseCode(
        enterprise_id=enterprise.id,
        code_hash=hash_code(code),
        created_at=now,
        created_by=_who(person)[:64],
        expires_at=now + valid_for,
    )
    session.add(row)
    session.flush()
    return format_code(code), row


def _fail(identity: ChannelIdentity, now: datetime, reason: str) -> BindingError:
    identity.verify_failures = (identity.verify_failures or 0) + 1
    if identity.verify_failures >= MAX_FAILURES:
        identity.verify_locked_until = now + LOCK
        identity.verify_failures = 0
        minutes = int(LOCK.total_seconds() // 60)
        return BindingError(f"{reason}。输错次数过多，请 {minutes} 分钟后再试")
    left = MAX_FAILURES - identity.verify_failures
    return BindingError(f"{reason}（还可尝试 {left} 次）")


def redeem_code(
    session: Session, identity: ChannelIdentity, code: str, *, now: datetime
) -> Enterprise:
    """Bind and verify *identity* with *code*; the code is spent.

    The same identity redeeming its code again gets the same answer (a redelivered
    message). ``BindingError`` with a reason otherwise; wrong, spent and expired codes count
    toward the lock. The caller commits even on error, so failures are counted.
    """
    canonical = normalize_code(code)
    if not canonical:
        raise BindingError("请在“核验”后附上专员提供的核验码，例如：核验 ABCD-EFGH-JKMN")
    locked = identity.verify_locked_until
    if locked is not None and locked > now:
        minutes = max(1, int((locked - now).total_seconds() // 60) + 1)
        raise BindingError(f"核验码输错次数过多，请 {minutes} 分钟后再试")
    row = session.scalars(
        select(EnterpriseCode).where(EnterpriseCode.code_hash == hash_code(canonical))
        .with_for_update()
    ).one_or_none()  # fmt: skip
    if row is None:
        raise _fail(identity, now, "核验码不正确，请核对后重试")
    enterprise = session.get(Enterprise, row.enterprise_id)
    assert enterprise is not None
    if row.used_at is not None:
        if row.used_identity_id == identity.id and identity.enterprise_id == enterprise.id:
            return enterprise
        raise _fail(identity, now, "该核验码已被使用，请向企业服务专员重新索取")
    if row.expires_at <= now:
        raise _fail(identity, now, "核验码已过期，请向企业服务专员重新索取")
    row.used_at = now
    row.used_identity_id = identity.id
    _verify(session, identity, enterprise, how="code", by=row.created_by, now=now)
    return enterprise


# --------------------------------------------------------------------------- claims


def claim(session: Session, identity: ChannelIdentity, uscc: str) -> Enterprise | None:
    """Link *identity* to the registered enterprise *uscc*, 未核验 (``None``: not registered).

    ``InputError`` for a malformed code; ``BindingError`` when the identity is verified for
    another enterprise (moving it needs that enterprise's code).
    """
    enterprise = find_enterprise(session, validate_uscc(uscc))
    if enterprise is None:
        return None
    link(identity, enterprise)
    return enterprise


def link(identity: ChannelIdentity, enterprise: Enterprise) -> None:
    """Point *identity* at *enterprise*; a change of enterprise drops the verification.

    ``BindingError`` when *identity* is verified for another enterprise.
    """
    if identity.enterprise_id == enterprise.id:
        return
    if identity.verified_at is not None and identity.enterprise_id is not None:
        current = identity.enterprise
        name = current.name if current is not None else "其他企业"
        raise BindingError(
            f"本账号已核验绑定{name}。如需改绑{enterprise.name}，"
            "请向其企业服务专员索取核验码后回复：核验 核验码"
        )
    identity.enterprise_id = enterprise.id
    identity.enterprise = enterprise
    identity.verified_at = None
    identity.verified_by = None
    identity.verified_how = None


def _verify(
    session: Session,
    identity: ChannelIdentity,
    enterprise: Enterprise,
    *,
    how: str,
    by: str,
    now: datetime,
) -> None:
    identity.enterprise_id = enterprise.id
    identity.enterprise = enterprise
    identity.verified_at = now
    identity.verified_by = by[:64]
    identity.verified_how = how
    identity.verify_failures = 0
    identity.verify_locked_until = None
    session.flush()
    session.execute(
        update(Ticket)
        .where(Ticket.channel_identity_id == identity.id, Ticket.enterprise_id == enterprise.id)
        .values(unverified=False)
        .execution_options(synchronize_session="fetch")
    )


def _identity_of(session: Session, enterprise: Enterprise, identity_id: int) -> ChannelIdentity:
    identity = session.get(ChannelIdentity, identity_id)
    if identity is None or identity.enterprise_id != enterprise.id:
        raise BindingError(f"该账号未申请绑定{enterprise.name}")
    return identity


def confirm(
    session: Session, enterprise: Enterprise, identity_id: int, person: object, *, now: datetime
) -> ChannelIdentity:
    """The commissioner confirms that the identity which claimed *enterprise* speaks for it."""
    _require(person, enterprise)
    identity = _identity_of(session, enterprise, identity_id)
    if identity.verified_at is None:
        _verify(session, identity, enterprise, how="console", by=_who(person), now=now)
    return identity


def revoke(
    session: Session, enterprise: Enterprise, identity_id: int, person: object
) -> ChannelIdentity:
    """Unbind an identity from *enterprise* (a former employee, a mistaken claim)."""
    _require(person, enterprise)
    identity = _identity_of(session, enterprise, identity_id)
    identity.enterprise_id = None
    identity.enterprise = None
    identity.verified_at = None
    identity.verified_by = None
    identity.verified_how = None
    return identity


@dataclass(frozen=True)
class IdentityView:
    """A chat identity linked to an enterprise, for the 一企一档 page."""

    id: int
    channel: str
    user_key: str
    display_name: str | None
    verified: bool
    verified_how: str | None
    verified_by: str | None
    verified_at: datetime | None
    notices_off: bool

    @property
    def how_label(self) -> str:
        """核验码 / 专员确认 / —."""
        return {"code": "核验码", "console": "专员确认"}.get(self.verified_how or "", "—")


def identities_of(session: Session, enterprise_id: int) -> list[IdentityView]:
    """Every identity linked to the enterprise, unverified first."""
    rows = session.scalars(
        select(ChannelIdentity)
        .where(ChannelIdentity.enterprise_id == enterprise_id)
        .order_by(ChannelIdentity.verified_at.is_not(None), ChannelIdentity.id)
    )
    return [
        IdentityView(
            r.id,
            r.channel,
            r.user_key,
            r.display_name,
            r.verified_at is not None,
            r.verified_how,
            r.verified_by,
            r.verified_at,
            bool(r.notices_off),
        )
        for r in rows
    ]
