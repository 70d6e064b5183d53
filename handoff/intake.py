"""Needs that arrive outside the chat (电话, 12345转办, 双万双服, 主任信箱, 门户网站, 走访来访),
recorded by a person in the console and filed as ordinary tickets.

:meth:`Intake.check` validates what the person typed (every problem worded in Chinese and
keyed by its field, so the form can say it next to the field) and works out the routing
suggestion exactly as the chat does: the registry's facts, the knowledge entry the
description matches, :meth:`routing.Router.route`. :meth:`Intake.file` opens the ticket
through :meth:`~handoff.tickets.TicketService.create` (same routing rules, same clocks),
files an enterprise the registry lacks (as the chat does), ties the ticket to the
enterprise's chat when it has one — so the number and every later notice reach it — and
audits the intake, all in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from handoff import audit
from handoff.models import (
    ChannelIdentity,
    CommissionerRole,
    Enterprise,
    Ticket,
    TicketSource,
)
from handoff.registry import (
    find_by_name,
    find_enterprise,
    kind_from_uscc,
    normalise_uscc,
    route_facts,
    validate_uscc,
)
from handoff.scope import NO_TICKETS
from handoff.tickets import MANUAL_RULE, TicketService, TicketView
from knowledge.base import Action
from routing import RouteDecision, RouteFacts, Router
from yxby.errors import InputError, RoutingError

if TYPE_CHECKING:
    from knowledge import KnowledgeBase

__all__ = [
    "INTAKE_ACTION",
    "INTAKE_SOURCES",
    "PROVISIONAL_TAG",
    "Checked",
    "EnterpriseFound",
    "Filed",
    "Intake",
    "IntakeForm",
    "IntakeInvalid",
    "IntakeNotifier",
    "chat_identity_of",
]

INTAKE_SOURCES = (
    TicketSource.PHONE,
    TicketSource.HOTLINE,
    TicketSource.SHUANGWAN,
    TicketSource.MAILBOX,
    TicketSource.PORTAL,
    TicketSource.VISIT,
    TicketSource.OTHER,
)
"""The sources a person may record (the chat channels file their own tickets)."""
INTAKE_ACTION = "intake"
"""The audit action of a recorded need."""
PROVISIONAL_TAG = "渠道登记"
"""Tag of an enterprise filed from a ticket before the registry knew it (as the chat does)."""
MIN_DESCRIPTION = 5
MAX_DESCRIPTION = 4000
TITLE_LENGTH = 60

_CHANNEL_LABELS = {"wechat": "微信公众号", "telegram": "Telegram", "terminal": "终端对话"}


class IntakeNotifier(Protocol):
    """Tells an enterprise, through its chat, the number of a ticket recorded for it."""

    def intake_filed(
        self, session: Session, ticket: Ticket, identity: ChannelIdentity, now: datetime
    ) -> None: ...


class _Person(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> CommissionerRole: ...


@dataclass(frozen=True)
class IntakeForm:
    """What the person typed, as typed (the form shows it again on an error)."""

    source: str = TicketSource.PHONE.value
    enterprise: str = ""
    """A 统一社会信用代码, or the exact registered name."""
    enterprise_name: str = ""
    """The name of an enterprise whose code the registry does not know yet."""
    phone: str = ""
    description: str = ""
    department: str = ""
    """Empty: take the suggestion; else the department chosen by hand."""
    reason: str = ""
    """Why the department was chosen by hand (required then)."""

    @classmethod
    def of(cls, data: dict[str, str]) -> IntakeForm:
        """The form from posted fields (unknown fields ignored, values stripped)."""
        names = cls.__dataclass_fields__
        return cls(**{k: str(v).strip() for k, v in data.items() if k in names})


@dataclass(frozen=True)
class EnterpriseFound:
    """The enterprise a form names: registered (``known``) or to be filed with the ticket."""

    uscc: str
    name: str
    known: bool
    chat_channel: str | None = None
    """The channel of its chat identity (``None``: it has none, tell it by phone)."""

    @property
    def chat_label(self) -> str | None:
        """The chat's channel in Chinese."""
        if self.chat_channel is None:
            return None
        return _CHANNEL_LABELS.get(self.chat_channel, self.chat_channel)


@dataclass(frozen=True)
class Checked:
    """A checked form: errors by field, and what routing suggests."""

    form: IntakeForm
    errors: dict[str, str] = field(default_factory=dict)
    source: TicketSource | None = None
    enterprise: EnterpriseFound | None = None
    phone: str | None = None
    suggestion: RouteDecision | None = None
    department: str | None = None
    """The department the ticket goes to (the suggestion's, or the one chosen by hand)."""
    manual: bool = False
    matched_entry: str | None = None
    """The title of the knowledge entry the description matched (used by routing)."""

    @property
    def ok(self) -> bool:
        """Whether the ticket can be filed."""
        return not self.errors


@dataclass(frozen=True)
class Filed:
    """A recorded need: the ticket, and how the enterprise hears its number."""

    ticket: TicketView
    enterprise: EnterpriseFound
    phone: str
    told_by_chat: bool


class IntakeInvalid(InputError):
    """The form cannot be filed; ``errors`` maps each field to its Chinese message."""

    def __init__(self, checked: Checked) -> None:
        self.checked = checked
        self.errors = dict(checked.errors)
        super().__init__("；".join(self.errors.values()))


def chat_identity_of(
    session: Session, enterprise_id: int, phone: str | None = None
) -> ChannelIdentity | None:
    """The chat that speaks for an enterprise: among its linked, subscribed identities the
    one with this contact *phone* if any, else the most recently active one."""
    rows = list(
        session.scalars(
            select(ChannelIdentity).where(
                ChannelIdentity.enterprise_id == enterprise_id,
                ChannelIdentity.subscribed.is_(True),
            )
        )
    )
    if not rows:
        return None
    if phone:
        same = [r for r in rows if r.contact_phone == phone]
        rows = same or rows

    def recency(row: ChannelIdentity) -> tuple[float, int]:
        moment = row.last_inbound_at or row.created_at
        return (moment.timestamp() if moment is not None else 0.0, row.id)

    return max(rows, key=recency)


def _parse_phone(text: str) -> str | None:
    # the same rule as the chat (bot.parsing.parse_phone), without importing the bot layer
    import re
    import unicodedata

    digits = re.sub(r"[\s\-()（）]", "", unicodedata.normalize("NFKC", text))
    digits = re.sub(r"^(\+86|0086)", "", digits)
    if re.fullmatch(r"1[3-9]\d{9}", digits):
        return digits
    if re.fullmatch(r"0\d{2,3}\d{7,8}", digits):
        short = {"010", "020", "021", "022", "023", "024", "025", "027", "028", "029"}
        area = 3 if digits[:3] in short else 4
        return f"{digits[:area]}-{digits[area:]}"
    return None


class Intake:
    """Records needs from other channels as tickets (see the module docstring).

    *kb* may be a function returning the knowledge base (it is slow to load).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        tickets: TicketService,
        router: Router,
        kb: KnowledgeBase | Callable[[], KnowledgeBase],
        notifier: IntakeNotifier | None,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._tickets = tickets
        self._router = router
        self._kb = kb
        self._notifier = notifier
        self._clock = clock

    @property
    def kb(self) -> KnowledgeBase:
        """The knowledge base used to match the description to an entry."""
        if callable(self._kb):
            self._kb = self._kb()
        return self._kb

    # ------------------------------------------------------------------ checking

    def check(self, form: IntakeForm, session: Session | None = None) -> Checked:
        """Validate *form* and work out the routing suggestion (nothing is written)."""
        if session is None:
            with self._sessions() as own:
                return self._check(own, form)
        return self._check(session, form)

    def _check(self, session: Session, form: IntakeForm) -> Checked:
        errors: dict[str, str] = {}
        source = None
        try:
            source = TicketSource.parse(form.source)
            if source not in INTAKE_SOURCES:
                raise ValueError
        except ValueError:
            errors["source"] = "请选择诉求来源"
            source = None
        enterprise = self._enterprise(session, form, errors)
        phone = None
        if not form.phone:
            errors["phone"] = "请填写联系电话"
        else:
            phone = _parse_phone(form.phone)
            if phone is None:
                errors["phone"] = (
                    f"「{form.phone[:30]}」不是有效的电话号码"
                    "（手机 11 位，固话带区号，如 022-12345678）"
                )
        text = form.description
        if len(text) < MIN_DESCRIPTION:
            errors["description"] = f"请填写诉求内容（至少 {MIN_DESCRIPTION} 个字）"
        elif len(text) > MAX_DESCRIPTION:
            errors["description"] = (
                f"诉求内容太长（{len(text)} 字），请精简到 {MAX_DESCRIPTION} 字以内"
            )
        suggestion = matched = None
        if "description" not in errors:
            suggestion, matched = self._suggest(session, text, enterprise)
        department = suggestion.department if suggestion else None
        manual = False
        if form.department:
            try:
                chosen = self._router.departments.canonical(form.department)
            except RoutingError:
                errors["department"] = f"没有名为「{form.department[:30]}」的部门"
            else:
                if suggestion is None or chosen != suggestion.department:
                    department, manual = chosen, True
                    if not form.reason:
                        errors["reason"] = "改派到其他部门时，请写明理由"
        return Checked(
            form=form,
            errors=errors,
            source=source,
            enterprise=enterprise,
            phone=phone,
            suggestion=suggestion,
            department=department,
            manual=manual,
            matched_entry=matched,
        )

    def _enterprise(
        self, session: Session, form: IntakeForm, errors: dict[str, str]
    ) -> EnterpriseFound | None:
        given = form.enterprise
        if not given:
            errors["enterprise"] = "请填写统一社会信用代码或企业名称"
            return None
        compact = normalise_uscc(given)
        if compact.isascii() and compact.isalnum():
            try:
                code = validate_uscc(compact)
            except InputError as exc:
                errors["enterprise"] = str(exc)
                return None
            known = find_enterprise(session, code)
            if known is not None:
                return self._found(session, known, form)
            if not form.enterprise_name:
                errors["enterprise_name"] = "企业库中没有这个统一社会信用代码，请填写企业名称"
                return None
            return EnterpriseFound(code, form.enterprise_name[:200], known=False)
        named = find_by_name(session, given)
        if named is None:
            errors["enterprise"] = (
                f"企业库中没有名称为「{given[:60]}」的企业（或有重名），请填写统一社会信用代码"
            )
            return None
        return self._found(session, named, form)

    @staticmethod
    def _found(session: Session, enterprise: Enterprise, form: IntakeForm) -> EnterpriseFound:
        identity = chat_identity_of(session, enterprise.id, _parse_phone(form.phone))
        return EnterpriseFound(
            enterprise.uscc,
            enterprise.name,
            known=True,
            chat_channel=identity.channel if identity is not None else None,
        )

    def _suggest(
        self, session: Session, text: str, enterprise: EnterpriseFound | None
    ) -> tuple[RouteDecision, str | None]:
        facts: dict[str, Any] = {}
        if enterprise is not None:
            facts = route_facts(session, enterprise.uscc) or {
                "enterprise_kind": kind_from_uscc(enterprise.uscc).value
            }
        entry = None
        try:
            decision = self.kb.decide(text)
        except InputError:
            decision = None
        top = decision.top if decision is not None else None
        answered = decision is not None and decision.action is Action.ANSWER
        if answered and top is not None and "programme" not in top.entry.tags:
            entry = top.entry
        route = self._router.route(
            RouteFacts.of(
                text,
                facts,  # kind, industry, commissioner, 招商部门, 楼宇/园区, 网格
                matched_entry_id=entry.id if entry else None,
                matched_department=entry.department if entry else None,
            )
        )
        return route, entry.title if entry else None

    # ------------------------------------------------------------------ filing

    def file(self, form: IntakeForm, *, person: _Person, ip: str | None = None) -> Filed:
        """Open the ticket of *form* for *person*; :class:`IntakeInvalid` when it cannot be.

        An enterprise the registry lacks is filed (tagged ``渠道登记``); when the enterprise
        has a chat identity the ticket is tied to it and the chat is told the number.
        """
        if person.role in NO_TICKETS:
            raise InputError(f"{person.role.value}账号不能登记诉求")
        now = self._clock()
        with self._sessions.begin() as session:
            checked = self._check(session, form)
            if not checked.ok:
                raise IntakeInvalid(checked)
            assert checked.enterprise is not None and checked.suggestion is not None
            assert checked.source is not None and checked.phone is not None
            assert checked.department is not None
            enterprise = self._register(session, checked.enterprise, now)
            identity = chat_identity_of(session, enterprise.id, checked.phone)
            if checked.manual:
                rule = MANUAL_RULE
                reason = (
                    f"人工指定：{form.reason}（系统建议{checked.suggestion.department}："
                    f"{checked.suggestion.reason}）"
                )
            else:
                rule = checked.suggestion.rule.value
                reason = checked.suggestion.reason
            description = form.description
            if not checked.enterprise.known:
                description += f"\n（企业：{checked.enterprise.name}）"
            description += f"\n（联系电话：{checked.phone}）"
            view = self._tickets.create(
                description,
                title=form.description.splitlines()[0][:TITLE_LENGTH],
                department=checked.department,
                rule=rule,
                reason=reason,
                actor=person.name,
                enterprise_uscc=enterprise.uscc,
                channel_identity_id=identity.id if identity is not None else None,
                source=checked.source,
                session=session,
            )
            if identity is not None and self._notifier is not None:
                ticket = session.scalars(select(Ticket).where(Ticket.number == view.number)).one()
                self._notifier.intake_filed(session, ticket, identity, now)
            found = EnterpriseFound(
                enterprise.uscc,
                enterprise.name,
                known=checked.enterprise.known,
                chat_channel=identity.channel if identity is not None else None,
            )
            audit.record(
                session,
                INTAKE_ACTION,
                at=now,
                person=person,
                ip=ip,
                ticket_number=view.number,
                source=checked.source.value,
                enterprise=enterprise.uscc,
                enterprise_name=enterprise.name,
                registered_now=not checked.enterprise.known,
                phone=checked.phone,
                department=view.department,
                rule=rule,
                told="chat" if identity is not None else "phone",
                channel=identity.channel if identity is not None else None,
            )
        return Filed(view, found, checked.phone, told_by_chat=identity is not None)

    @staticmethod
    def _register(session: Session, found: EnterpriseFound, now: datetime) -> Enterprise:
        existing = find_enterprise(session, found.uscc)
        if existing is not None:
            return existing
        enterprise = Enterprise(
            uscc=found.uscc,
            name=found.name,
            kind=kind_from_uscc(found.uscc),
            industry=None,
            tags=[PROVISIONAL_TAG],
            created_at=now,
            updated_at=now,
        )
        session.add(enterprise)
        session.flush()
        return enterprise

    # ------------------------------------------------------------------ reading

    def recent(self, person_id: int, limit: int = 8) -> list[dict[str, Any]]:
        """The needs *person_id* recorded lately, newest first (from the audit trail)."""
        with self._sessions() as session:
            rows = audit.recent(
                session, commissioner_id=person_id, action=INTAKE_ACTION, limit=limit
            )
            return [{"at": r.at, "number": r.ticket_number, **(r.detail or {})} for r in rows]
