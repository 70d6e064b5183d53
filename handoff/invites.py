"""One-time codes with which a commissioner links a chat account (Telegram) to their record.

Only the SHA-256 of a code is stored; a code expires, works once, and redeeming it creates
the :class:`~handoff.models.CommissionerBinding` through which the commissioner then gets
notices, handoff offers and relays.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from handoff.models import Commissioner, CommissionerBinding, CommissionerInvite
from yxby.errors import InputError

__all__ = [
    "CODE_LENGTH",
    "DEFAULT_VALID_HOURS",
    "MAX_VALID_HOURS",
    "create_invite",
    "find_commissioner",
    "format_code",
    "hash_code",
    "make_code",
    "normalize_code",
    "redeem_invite",
]

DEFAULT_VALID_HOURS = 72
MAX_VALID_HOURS = 30 * 24
CODE_LENGTH = 12
# no 0/O, 1/I/L: a code read out over the phone survives
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_SEPARATORS = re.compile(r"[^0-9A-Za-z]+")


def normalize_code(text: str) -> str:
    """A code as typed (any case, full width, any dashes or spaces) in its canonical form."""
    folded = unicodedata.normalize("NFKC", text)  # Chinese input methods type full width
    return _SEPARATORS.sub("", folded).upper()


def hash_code(code: str) -> str:
    """The stored form of *code*: hex SHA-256 of its canonical form."""
    return hashlib.sha256(normalize_code(code).encode("ascii", "replace")).hexdigest()


def format_code(code: str) -> str:
    """A canonical code as it is shown and read out: ``ABCD-EFGH-JKMN``."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def make_code(length: int = CODE_LENGTH) -> str:
    """A new random code in canonical form (no 0/O, 1/I/L); shown once, stored hashed.

    Also used for the enterprise 核验码 of :mod:`handoff.binding`.
    """
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def find_commissioner(session: Session, name: str, department: str | None = None) -> Commissioner:
    """The active commissioner called *name* (in canonical *department*, if given)."""
    stmt = select(Commissioner).where(Commissioner.name == name.strip(), Commissioner.active)
    if department:
        stmt = stmt.where(Commissioner.department == department)
    people = list(session.scalars(stmt))
    if not people:
        raise InputError(f"没有名为「{name}」的在岗人员，请先用 yxby commissioners add 登记")
    if len(people) > 1:
        depts = "、".join(p.department for p in people)
        raise InputError(f"「{name}」在多个部门（{depts}），请用 --department 指明")
    return people[0]


def create_invite(
    session: Session,
    commissioner: Commissioner,
    *,
    now: datetime,
    valid_for: timedelta = timedelta(hours=DEFAULT_VALID_HOURS),
) -> tuple[str, CommissionerInvite]:
    """A new one-time code for *commissioner* (shown once, formatted ``ABCD-EFGH-JKMN``)."""
    if valid_for <= timedelta(0) or valid_for > timedelta(hours=MAX_VALID_HOURS):
        raise InputError(f"邀请码有效期应在 1–{MAX_VALID_HOURS} 小时之间")
    if not commissioner.active:
        raise InputError(f"{commissioner.name}已停用，不能发放邀请码")
    code = make_code()
    invite = CommissionerInvite(
        commissioner_id=commissioner.id,
        code_hash=hash_code(code),
        created_at=now,
        expires_at=now + valid_for,
    )
    session.add(invite)
    session.flush()
    return format_code(code), invite


def redeem_invite(
    session: Session, code: str, *, channel: str, user_key: str, now: datetime
) -> Commissioner:
    """Link (*channel*, *user_key*) to the commissioner *code* was made for; the code is spent.

    Redeeming a code again from the account that used it answers the same (a redelivered
    message); anything else raises ``InputError`` with a reason the user can act on.
    """
    canonical = normalize_code(code)
    if not canonical:
        raise InputError("请在指令后附上邀请码，例如：/link ABCD-EFGH-JKMN")
    invite = session.scalars(
        select(CommissionerInvite)
        .where(CommissionerInvite.code_hash == hash_code(canonical))
        .with_for_update()
    ).one_or_none()
    if invite is None:
        raise InputError("邀请码无效，请核对后重试，或请管理员重新生成")
    person = invite.commissioner
    if invite.used_at is not None:
        if (invite.used_channel, invite.used_user_key) == (channel, user_key):
            return person
        raise InputError("该邀请码已被使用，请联系管理员重新生成")
    if invite.expires_at <= now:
        raise InputError("邀请码已过期，请联系管理员重新生成")
    if not person.active:
        raise InputError(f"{person.name}已停用，邀请码不能使用")
    bound = session.scalars(
        select(CommissionerBinding).where(
            CommissionerBinding.channel == channel, CommissionerBinding.user_key == user_key
        )
    ).one_or_none()
    if bound is not None and bound.commissioner_id != person.id:
        raise InputError("该账号已绑定给其他人员，请联系管理员")
    if bound is None:
        session.add(
            CommissionerBinding(
                commissioner_id=person.id, channel=channel, user_key=user_key, created_at=now
            )
        )
    invite.used_at = now
    invite.used_channel = channel
    invite.used_user_key = user_key
    session.flush()
    return person
