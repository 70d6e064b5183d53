"""Console accounts: passwords, sign-in with lockout, server-side sessions, set-password links.

A commissioner (:class:`~handoff.models.Commissioner`) signs in to the web console by name
and password. The password is kept as an argon2id hash (argon2-cffi); five failures in a
row lock the account for fifteen minutes (``config/console.yaml``); a success resets the
count. A sign-in opens a server-side :class:`ConsoleSession` row: the browser holds a random
token, the database only its SHA-256, and the session ends after an idle time, after an
absolute lifetime, at sign-out, or when it is revoked (a new password, a deactivation).
A one-time set-password link (a random code, stored hashed, with an expiry) lets a new
person choose their own password. Every sign-in, failure, lock, sign-out and password
change is an audit event (:mod:`handoff.audit`) written in the same transaction.

Inactive commissioners cannot sign in, and their open sessions stop working.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import Field
from sqlalchemy import ForeignKey, Index, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, sessionmaker

from handoff import audit
from handoff.audit import AuditAction
from handoff.calendar import SHANGHAI
from handoff.models import Base, Commissioner, CommissionerRole
from yxby.errors import InputError
from yxby.yamlconf import StrictModel, load_model

__all__ = [
    "AccountInactive",
    "AccountLocked",
    "Accounts",
    "AmbiguousName",
    "BadCredentials",
    "ConsoleAccount",
    "ConsoleSession",
    "ConsoleSettings",
    "LinkInvalid",
    "PasswordLink",
    "PasswordPolicyError",
    "SignInError",
    "SignedIn",
    "Staff",
    "csrf_for",
    "hash_token",
    "load_console_settings",
]

MAX_PASSWORD_LENGTH = 128
TOUCH_SECONDS = 30
"""A session's ``last_seen_at`` is written at most this often (not on every request)."""


# ---------------------------------------------------------------------------- settings


class SessionSettings(StrictModel):
    """How long a console session lives."""

    idle_minutes: int = Field(30, ge=1, le=24 * 60)
    """A session unused for this long ends."""
    absolute_hours: float = Field(12, gt=0, le=7 * 24)
    """A session ends this long after sign-in, however busy."""


class SignInSettings(StrictModel):
    """Lockout after failed sign-ins."""

    max_failures: int = Field(5, ge=1, le=100)
    """This many wrong passwords in a row lock the account …"""
    lock_minutes: int = Field(15, ge=1, le=24 * 60)
    """… for this long."""


class PasswordSettings(StrictModel):
    """Password policy and set-password links."""

    min_length: int = Field(10, ge=8, le=MAX_PASSWORD_LENGTH)
    link_hours: int = Field(72, ge=1, le=30 * 24)
    """A set-password link works once, for this long."""


class Argon2Settings(StrictModel):
    """argon2id cost (defaults: argon2-cffi's, RFC 9106 low-memory profile)."""

    time_cost: int = Field(3, ge=1, le=20)
    memory_kib: int = Field(65536, ge=8, le=1024 * 1024)
    parallelism: int = Field(4, ge=1, le=16)


class ConsoleSettings(StrictModel):
    """The whole ``config/console.yaml``."""

    session: SessionSettings = SessionSettings()
    sign_in: SignInSettings = SignInSettings()
    password: PasswordSettings = PasswordSettings()
    argon2: Argon2Settings = Argon2Settings()


def load_console_settings(path: Path) -> ConsoleSettings:
    """Load ``config/console.yaml`` (or *path*); ``ConfigError`` naming the bad key."""
    return load_model(path, ConsoleSettings)


# ------------------------------------------------------------------------------ tables


class ConsoleAccount(Base):
    """The console credentials of one commissioner and their failed-sign-in count."""

    __tablename__ = "console_account"

    commissioner_id: Mapped[int] = mapped_column(ForeignKey("commissioner.id"), primary_key=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_set_at: Mapped[datetime | None] = mapped_column()
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime | None] = mapped_column()
    locked_until: Mapped[datetime | None] = mapped_column()
    last_sign_in_at: Mapped[datetime | None] = mapped_column()

    commissioner: Mapped[Commissioner] = relationship()


class ConsoleSession(Base):
    """A signed-in browser; only the SHA-256 of its token is stored."""

    __tablename__ = "console_session"
    __table_args__ = (Index(None, "commissioner_id", "ended_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    commissioner_id: Mapped[int] = mapped_column(ForeignKey("commissioner.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    """The absolute end (created + ``absolute_hours``); idle expiry is computed."""
    ended_at: Mapped[datetime | None] = mapped_column()
    end_reason: Mapped[str | None] = mapped_column(String(20))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(200))

    commissioner: Mapped[Commissioner] = relationship()


class PasswordLink(Base):
    """A one-time set-password link; only the SHA-256 of its code is stored."""

    __tablename__ = "console_password_link"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    commissioner_id: Mapped[int] = mapped_column(ForeignKey("commissioner.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    superseded_at: Mapped[datetime | None] = mapped_column()
    """A newer link was issued for the same person: this one no longer works."""

    commissioner: Mapped[Commissioner] = relationship()


# ------------------------------------------------------------------------------ errors


class PasswordPolicyError(InputError):
    """The chosen password does not meet the policy (Chinese message, safe to show)."""


class LinkInvalid(InputError):
    """A set-password link is unknown, used, replaced or expired."""


class SignInError(InputError):
    """A sign-in was refused; the message is Chinese and safe to show on the login page."""


class BadCredentials(SignInError):
    """Unknown name or wrong password (the message does not say which)."""

    def __init__(self, max_failures: int, lock_minutes: int) -> None:
        super().__init__(
            f"姓名或密码不正确。连续输错 {max_failures} 次将锁定 {lock_minutes} 分钟。"
        )


class AccountLocked(SignInError):
    """Too many failures: the account is locked until ``until``."""

    def __init__(self, until: datetime, *, just_locked: bool) -> None:
        self.until = until
        self.just_locked = just_locked
        local = until.astimezone(SHANGHAI)
        when = f"{local.month}月{local.day}日 {local:%H:%M}"
        why = "密码连续输错次数过多，" if just_locked else ""
        super().__init__(f"{why}账号已锁定，请于 {when} 后再试。")


class AccountInactive(SignInError):
    """The password was right but the person is deactivated."""

    def __init__(self) -> None:
        super().__init__("该账号已停用，不能登录。如有疑问请联系管理员。")


class AmbiguousName(SignInError):
    """Several people have this name: the department must be chosen."""

    def __init__(self, name: str, departments: tuple[str, ...]) -> None:
        self.name = name
        self.departments = departments
        super().__init__(f"有多位人员名为「{name}」，请选择所在部门后再登录。")


# ------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Staff:
    """The signed-in person as pages and scope rules see them."""

    id: int
    name: str
    department: str
    role: CommissionerRole
    session_id: int | None = None
    csrf: str = ""
    """The form token bound to this session (empty outside a session)."""

    @classmethod
    def of(cls, person: Commissioner, *, session_id: int | None = None, csrf: str = "") -> Staff:
        """The snapshot of *person*."""
        return cls(
            id=person.id,
            name=person.name,
            department=person.department,
            role=person.role,
            session_id=session_id,
            csrf=csrf,
        )


@dataclass(frozen=True)
class SignedIn:
    """A successful sign-in: who, and the session token to hand to the browser (once)."""

    staff: Staff
    token: str
    expires_at: datetime


def hash_token(token: str) -> str:
    """The stored form of a session token or link code: hex SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def csrf_for(secret: str) -> str:
    """The form token bound to *secret* (a session token, or a pre-session cookie)."""
    return hmac.new(secret.encode("utf-8", "replace"), b"yxby-console-csrf", "sha256").hexdigest()


# ------------------------------------------------------------------------------ service


class Accounts:
    """Console accounts and sessions on *sessions*, with time from *clock*."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        settings: ConsoleSettings | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.settings = settings or ConsoleSettings()
        cost = self.settings.argon2
        self._hasher = PasswordHasher(
            time_cost=cost.time_cost, memory_cost=cost.memory_kib, parallelism=cost.parallelism
        )
        self._dummy: str | None = None

    # -------------------------------------------------------------------- passwords

    def check_policy(self, password: str) -> None:
        """``PasswordPolicyError`` (Chinese) unless *password* meets the policy."""
        least = self.settings.password.min_length
        if len(password) < least:
            raise PasswordPolicyError(f"密码至少需要 {least} 个字符（当前 {len(password)} 个）")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise PasswordPolicyError(f"密码不能超过 {MAX_PASSWORD_LENGTH} 个字符")
        if password != password.strip():
            raise PasswordPolicyError("密码首尾不能是空格")
        if password.isdigit():
            raise PasswordPolicyError("密码不能全是数字，请加入字母或符号")
        if len(set(password)) == 1:
            raise PasswordPolicyError("密码不能由同一个字符重复组成")

    def hash_password(self, password: str) -> str:
        """The argon2id hash of *password*."""
        return self._hasher.hash(password)

    def set_password(
        self, commissioner_id: int, password: str, *, by: str | None = None, ip: str | None = None
    ) -> Staff:
        """Give the person a new password (policy-checked); their open sessions end."""
        self.check_policy(password)
        hashed = self.hash_password(password)  # slow: outside the transaction
        with self._sessions.begin() as session:
            person = session.get(Commissioner, commissioner_id)
            if person is None:
                raise InputError(f"没有编号为 {commissioner_id} 的人员")
            if not person.active:
                raise InputError(f"{person.name}已停用，不能设置密码")
            self._store_password(session, person, hashed, via="cli", by=by, ip=ip)
            return Staff.of(person)

    def _store_password(
        self,
        session: Session,
        person: Commissioner,
        hashed: str,
        *,
        via: str,
        by: str | None,
        ip: str | None,
    ) -> None:
        now = self._clock()
        account = self._account(session, person.id)
        account.password_hash = hashed
        account.password_set_at = now
        account.failed_attempts = 0
        account.locked_until = None
        ended = self._end_sessions(session, person.id, reason="password", now=now)
        audit.record(
            session,
            AuditAction.PASSWORD_SET,
            at=now,
            person=person,
            ip=ip,
            via=via,
            by=by,
            sessions_ended=ended,
        )

    def _account(self, session: Session, commissioner_id: int) -> ConsoleAccount:
        account = session.scalars(
            select(ConsoleAccount)
            .where(ConsoleAccount.commissioner_id == commissioner_id)
            .with_for_update()
        ).one_or_none()
        if account is None:
            account = ConsoleAccount(commissioner_id=commissioner_id, failed_attempts=0)
            session.add(account)
            session.flush()
        return account

    def has_password(self, commissioner_id: int) -> bool:
        """Whether the person has set a console password."""
        with self._sessions() as session:
            account = session.get(ConsoleAccount, commissioner_id)
            return account is not None and account.password_hash is not None

    def _verify(self, hashed: str | None, password: str) -> bool:
        if hashed is None:  # the same work as a real check: the answer time tells nothing
            if self._dummy is None:
                self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
            self._check(self._dummy, password)
            return False
        return self._check(hashed, password)

    def _check(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    # ---------------------------------------------------------------------- sign-in

    def sign_in(
        self,
        name: str,
        password: str,
        *,
        department: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> SignedIn:
        """Check *name* (in canonical *department* when names clash) and *password*.

        Success resets the failure count and opens a session. Raises :class:`BadCredentials`
        (unknown name or wrong password alike), :class:`AccountLocked` (with ``until``),
        :class:`AccountInactive` or :class:`AmbiguousName`; every outcome is audited and
        committed before the error is raised.
        """
        outcome: SignedIn | SignInError
        with self._sessions.begin() as session:
            outcome = self._sign_in(session, name.strip(), password, department, ip, user_agent)
        if isinstance(outcome, SignInError):
            raise outcome
        return outcome

    def _sign_in(
        self,
        session: Session,
        name: str,
        password: str,
        department: str | None,
        ip: str | None,
        user_agent: str | None,
    ) -> SignedIn | SignInError:
        now = self._clock()
        rules = self.settings.sign_in
        bad = BadCredentials(rules.max_failures, rules.lock_minutes)
        stmt = select(Commissioner).where(Commissioner.name == name).order_by(Commissioner.id)
        if department:
            stmt = stmt.where(Commissioner.department == department)
        people = list(session.scalars(stmt)) if name else []
        active = [p for p in people if p.active]
        if len(active) > 1:
            return AmbiguousName(name, tuple(p.department for p in active))
        person = active[0] if active else (people[0] if people else None)
        if person is None:
            self._verify(None, password)
            audit.record(
                session, AuditAction.SIGN_IN_FAILED, at=now, ip=ip, name=name[:64],
                department=department, reason="unknown_name",
            )  # fmt: skip
            return bad
        account = self._account(session, person.id)
        if account.locked_until is not None and account.locked_until > now:
            audit.record(
                session, AuditAction.SIGN_IN_FAILED, at=now, person=person, ip=ip, reason="locked"
            )
            return AccountLocked(account.locked_until, just_locked=False)
        if not self._verify(account.password_hash, password):
            account.failed_attempts = (account.failed_attempts or 0) + 1
            account.last_failed_at = now
            reason = "no_password" if account.password_hash is None else "wrong_password"
            audit.record(
                session, AuditAction.SIGN_IN_FAILED, at=now, person=person, ip=ip,
                reason=reason, failures=account.failed_attempts,
            )  # fmt: skip
            if account.failed_attempts < rules.max_failures:
                return bad
            account.failed_attempts = 0
            account.locked_until = now + timedelta(minutes=rules.lock_minutes)
            audit.record(
                session, AuditAction.LOCKED, at=now, person=person, ip=ip,
                until=account.locked_until.isoformat(), minutes=rules.lock_minutes,
            )  # fmt: skip
            return AccountLocked(account.locked_until, just_locked=True)
        if not person.active:
            audit.record(
                session, AuditAction.SIGN_IN_FAILED, at=now, person=person, ip=ip, reason="inactive"
            )
            return AccountInactive()
        assert account.password_hash is not None
        if self._hasher.check_needs_rehash(account.password_hash):
            account.password_hash = self.hash_password(password)
        account.failed_attempts = 0
        account.locked_until = None
        account.last_sign_in_at = now
        token = secrets.token_urlsafe(32)
        expires = now + timedelta(hours=self.settings.session.absolute_hours)
        row = ConsoleSession(
            commissioner_id=person.id,
            token_hash=hash_token(token),
            created_at=now,
            last_seen_at=now,
            expires_at=expires,
            ip=(ip or None) and ip[:64],
            user_agent=(user_agent or None) and user_agent[:200],
        )
        session.add(row)
        session.flush()
        audit.record(session, AuditAction.SIGN_IN, at=now, person=person, ip=ip, session_id=row.id)
        staff = Staff.of(person, session_id=row.id, csrf=csrf_for(token))
        return SignedIn(staff=staff, token=token, expires_at=expires)

    def locked_until(self, commissioner_id: int) -> datetime | None:
        """When the person's lock ends, if they are locked now."""
        with self._sessions() as session:
            account = session.get(ConsoleAccount, commissioner_id)
            until = account.locked_until if account is not None else None
            return until if until is not None and until > self._clock() else None

    # --------------------------------------------------------------------- sessions

    def staff_for(self, token: str | None) -> Staff | None:
        """The person signed in with *token*, or ``None`` (unknown, ended, idle, expired,
        deactivated). A live session's last-seen time moves forward."""
        if not token:
            return None
        now = self._clock()
        with self._sessions.begin() as session:
            row = session.scalars(
                select(ConsoleSession).where(ConsoleSession.token_hash == hash_token(token))
            ).one_or_none()
            if row is None or row.ended_at is not None:
                return None
            reason = self._why_over(row, now)
            if reason is not None:
                row.ended_at = now
                row.end_reason = reason
                return None
            if now - row.last_seen_at >= timedelta(seconds=TOUCH_SECONDS):
                row.last_seen_at = now
            return Staff.of(row.commissioner, session_id=row.id, csrf=csrf_for(token))

    def _why_over(self, row: ConsoleSession, now: datetime) -> str | None:
        if now >= row.expires_at:
            return "expired"
        if now - row.last_seen_at >= timedelta(minutes=self.settings.session.idle_minutes):
            return "idle"
        if not row.commissioner.active:
            return "inactive"
        return None

    def sign_out(self, token: str | None, *, ip: str | None = None) -> bool:
        """End the session of *token*; whether there was one to end."""
        if not token:
            return False
        now = self._clock()
        with self._sessions.begin() as session:
            row = session.scalars(
                select(ConsoleSession)
                .where(ConsoleSession.token_hash == hash_token(token))
                .with_for_update()
            ).one_or_none()
            if row is None or row.ended_at is not None:
                return False
            row.ended_at = now
            row.end_reason = "sign_out"
            audit.record(
                session,
                AuditAction.SIGN_OUT,
                at=now,
                person=row.commissioner,
                ip=ip,
                session_id=row.id,
            )
            return True

    def revoke_all(
        self, commissioner_id: int, *, reason: str = "revoked", by: str | None = None
    ) -> int:
        """End every open session of the person; how many were ended."""
        now = self._clock()
        with self._sessions.begin() as session:
            person = session.get(Commissioner, commissioner_id)
            if person is None:
                raise InputError(f"没有编号为 {commissioner_id} 的人员")
            ended = self._end_sessions(session, commissioner_id, reason=reason, now=now)
            audit.record(
                session, AuditAction.SESSIONS_REVOKED, at=now, person=person, by=by,
                reason=reason, sessions_ended=ended,
            )  # fmt: skip
            return ended

    def deactivate(self, commissioner_id: int, *, by: str | None = None) -> int:
        """Mark the person inactive and end their sessions; how many sessions were ended."""
        now = self._clock()
        with self._sessions.begin() as session:
            person = session.get(Commissioner, commissioner_id)
            if person is None:
                raise InputError(f"没有编号为 {commissioner_id} 的人员")
            person.active = False
            ended = self._end_sessions(session, commissioner_id, reason="inactive", now=now)
            audit.record(
                session, AuditAction.DEACTIVATED, at=now, person=person, by=by, sessions_ended=ended
            )
            return ended

    def _end_sessions(
        self, session: Session, commissioner_id: int, *, reason: str, now: datetime
    ) -> int:
        result = session.execute(
            update(ConsoleSession)
            .where(
                ConsoleSession.commissioner_id == commissioner_id, ConsoleSession.ended_at.is_(None)
            )
            .values(ended_at=now, end_reason=reason)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def open_sessions(self, commissioner_id: int) -> list[ConsoleSession]:
        """The person's sessions not yet ended (idle ones included until next use)."""
        with self._sessions() as session:
            stmt = (
                select(ConsoleSession)
                .where(
                    ConsoleSession.commissioner_id == commissioner_id,
                    ConsoleSession.ended_at.is_(None),
                )
                .order_by(ConsoleSession.id)
            )
            rows = list(session.scalars(stmt))
            session.expunge_all()
            return rows

    # ----------------------------------------------------------- set-password links

    def create_link(
        self, commissioner_id: int, *, by: str = "管理员", valid_for: timedelta | None = None
    ) -> str:
        """A new one-time set-password code for the person (earlier unused ones stop working)."""
        now = self._clock()
        span = valid_for or timedelta(hours=self.settings.password.link_hours)
        if span <= timedelta(0):
            raise InputError("设置密码链接的有效期必须大于 0")
        code = secrets.token_urlsafe(24)
        with self._sessions.begin() as session:
            person = session.get(Commissioner, commissioner_id)
            if person is None:
                raise InputError(f"没有编号为 {commissioner_id} 的人员")
            if not person.active:
                raise InputError(f"{person.name}已停用，不能发放设置密码链接")
            session.execute(
                update(PasswordLink)
                .where(
                    PasswordLink.commissioner_id == commissioner_id,
                    PasswordLink.used_at.is_(None),
                    PasswordLink.superseded_at.is_(None),
                )
                .values(superseded_at=now)
                .execution_options(synchronize_session=False)
            )
            session.add(
                PasswordLink(
                    commissioner_id=commissioner_id,
                    code_hash=hash_token(code),
                    created_at=now,
                    created_by=by[:64],
                    expires_at=now + span,
                )
            )
            audit.record(
                session, AuditAction.PASSWORD_LINK, at=now, person=person, by=by,
                expires=(now + span).isoformat(),
            )  # fmt: skip
        return code

    def _link(self, session: Session, code: str, now: datetime) -> PasswordLink:
        link = session.scalars(
            select(PasswordLink).where(PasswordLink.code_hash == hash_token(code)).with_for_update()
        ).one_or_none()
        if link is None:
            raise LinkInvalid("设置密码链接无效，请核对链接或联系管理员重新发放。")
        if link.used_at is not None:
            raise LinkInvalid("该设置密码链接已使用过，请直接登录；忘记密码请联系管理员重新发放。")
        if link.superseded_at is not None:
            raise LinkInvalid("该设置密码链接已被新的链接取代，请使用最新的链接。")
        if link.expires_at <= now:
            raise LinkInvalid("设置密码链接已过期，请联系管理员重新发放。")
        if not link.commissioner.active:
            raise LinkInvalid(f"{link.commissioner.name}已停用，链接不能使用")
        return link

    def link_owner(self, code: str) -> Staff:
        """Whom the set-password link *code* is for; ``LinkInvalid`` when it cannot be used."""
        with self._sessions() as session:
            return Staff.of(self._link(session, code, self._clock()).commissioner)

    def use_link(self, code: str, password: str, *, ip: str | None = None) -> Staff:
        """Set the password through the link *code*, which is spent; open sessions end."""
        with self._sessions() as session:  # fail fast on a dead link, before the slow hash
            self._link(session, code, self._clock())
        self.check_policy(password)
        hashed = self.hash_password(password)
        with self._sessions.begin() as session:
            now = self._clock()
            link = self._link(session, code, now)
            link.used_at = now
            self._store_password(
                session, link.commissioner, hashed, via="link", by=link.created_by, ip=ip
            )
            return Staff.of(link.commissioner)
