"""SLA settings (``config/sla.yaml``) and the ``tick`` pass over running clocks.

:func:`tick` is idempotent: it queues a reminder one working day before a due time,
marks breaches (``breached_at``) and queues overdue notices to the department's 负责人
and the 政务办 — all through the outbox with dedupe keys, so running it twice (or on two
workers at once) sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from handoff.models import ClockKind, Commissioner, CommissionerRole, SlaClock, Ticket
from handoff.outbox import CONSOLE_CHANNEL, enqueue
from yxby.paths import config_dir
from yxby.yamlconf import StrictModel, load_model

if TYPE_CHECKING:
    from handoff.calendar import WorkCalendar
    from handoff.tickets import TicketNotifier

__all__ = [
    "Limits",
    "OverdueSettings",
    "ReminderSettings",
    "SlaSettings",
    "TickReport",
    "load_sla_settings",
    "tick",
]


class Limits(StrictModel):
    """Time limits in working days."""

    contact: int = Field(default=2, ge=1, le=60)
    done: int = Field(default=7, ge=1, le=60)
    feedback: int = Field(default=2, ge=1, le=60)


class ReminderSettings(StrictModel):
    """When reminders go out and to whom when no commissioner is assigned."""

    lead_workdays: int = Field(default=1, ge=0, le=30)
    department_roles: tuple[CommissionerRole, ...] = (CommissionerRole.COMMISSIONER,)


class OverdueSettings(StrictModel):
    """Who is told when a clock is breached, and what the enterprise is promised then."""

    department_roles: tuple[CommissionerRole, ...] = (CommissionerRole.HEAD,)
    oversight_roles: tuple[CommissionerRole, ...] = (CommissionerRole.OVERSIGHT,)
    apology_workdays: int = Field(default=2, ge=1, le=30)
    """When the 办结 clock is breached the enterprise is told to expect the result within
    this many more working days (the department and 政务办 are told at the same time)."""


class SlaSettings(StrictModel):
    """The whole ``config/sla.yaml``."""

    limits: Limits = Limits()
    reminder: ReminderSettings = ReminderSettings()
    overdue: OverdueSettings = OverdueSettings()

    @model_validator(mode="after")
    def _lead_shorter_than_limits(self) -> SlaSettings:
        shortest = min(self.limits.contact, self.limits.done, self.limits.feedback)
        if self.reminder.lead_workdays >= shortest:
            raise ValueError(
                f"reminder.lead_workdays ({self.reminder.lead_workdays}) must be shorter "
                f"than the shortest limit ({shortest})"
            )
        return self

    def limit(self, kind: ClockKind) -> int:
        """The limit in working days for a counted clock kind."""
        if kind is ClockKind.CONTACT:
            return self.limits.contact
        if kind is ClockKind.DONE:
            return self.limits.done
        if kind is ClockKind.FEEDBACK:
            return self.limits.feedback
        raise ValueError(f"{kind} has no fixed limit")


def load_sla_settings(path: Path | None = None) -> SlaSettings:
    """Load ``config/sla.yaml`` (or *path*); ``ConfigError`` naming the bad key."""
    return load_model(path or config_dir() / "sla.yaml", SlaSettings)


@dataclass(frozen=True)
class TickReport:
    """What one :func:`tick` did."""

    reminders: int = 0
    """Reminder messages queued."""
    breaches: int = 0
    """Clocks newly marked as breached."""
    notices: int = 0
    """Overdue notices queued."""
    unaddressed: int = 0
    """Reminders or breaches for which nobody could be found to tell."""
    urges_suggested: int = 0
    """督办 suggestions made for overdue tickets (:mod:`handoff.supervision`)."""
    urges_confirmed: int = 0
    """Of them, urged at once (``auto_confirm`` in ``config/supervision.yaml``)."""

    def to_dict(self) -> dict[str, int]:
        """Plain counts, for JSON."""
        return asdict(self)


def _local(moment: datetime) -> str:
    from handoff.calendar import SHANGHAI

    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _targets(people: Iterable[Commissioner]) -> Iterator[tuple[str, str]]:
    """(channel, recipient) for every bound account; the console for people without one."""
    seen: set[int] = set()
    for person in people:
        if person.id in seen:
            continue
        seen.add(person.id)
        if person.bindings:
            for binding in person.bindings:
                yield binding.channel, binding.user_key
        else:
            yield CONSOLE_CHANNEL, f"commissioner:{person.id}"


def _people(
    session: Session, roles: Iterable[CommissionerRole], department: str | None
) -> list[Commissioner]:
    wanted = list(roles)
    if not wanted:
        return []
    stmt = (
        select(Commissioner)
        .options(selectinload(Commissioner.bindings))
        .where(Commissioner.active.is_(True), Commissioner.role.in_(wanted))
        .order_by(Commissioner.id)
    )
    if department is not None:
        stmt = stmt.where(Commissioner.department == department)
    return list(session.scalars(stmt))


def _responsible_department(clock: SlaClock) -> str:
    # The meeting names the lead for an escalation; other clocks follow the ticket.
    if clock.kind is ClockKind.ESCALATION:
        return clock.department
    return clock.ticket.department


def _payload(clock: SlaClock, text: str) -> dict[str, Any]:
    return {
        "text": text,
        "ticket": clock.ticket.number,
        "clock": clock.kind.value,
        "due_at": clock.due_at.isoformat(),
        "department": _responsible_department(clock),
    }


def _reminder_text(clock: SlaClock) -> str:
    ticket = clock.ticket
    return (
        f"【工单提醒】工单 {ticket.number}（{ticket.title}）的「{clock.kind.label}」时限"
        f"将于 {_local(clock.due_at)} 到期，请及时处理。"
        f"承办部门：{_responsible_department(clock)}。"
    )


def _assigned(clock: SlaClock) -> Commissioner | None:
    """The ticket's commissioner, if active and in the department answering for *clock*."""
    person = clock.ticket.commissioner
    if person is not None and person.active and person.department == _responsible_department(clock):
        return person
    return None


def _breach_text(clock: SlaClock, heads: Iterable[Commissioner] = ()) -> str:
    """The overdue notice; it names who answers for the clock: the ticket's commissioner,
    else the department's 负责人 (*heads*), else says that nobody was assigned."""
    ticket = clock.ticket
    person = _assigned(clock)
    names = "、".join(dict.fromkeys(h.name for h in heads))
    if person is not None:
        who = f"专员 {person.name}"
    elif names:
        who = f"部门负责人 {names}（未指定专员）"
    else:
        who = "未指定专员（请部门负责人指定）"
    return (
        f"【超时通报】工单 {ticket.number}（{ticket.title}）的「{clock.kind.label}」时限"
        f"已于 {_local(clock.due_at)} 到期未完成。承办部门：{_responsible_department(clock)}；"
        f"责任人：{who}。"
    )


def _open_clocks() -> Any:
    return (
        select(SlaClock)
        .join(SlaClock.ticket)
        .options(
            selectinload(SlaClock.ticket)
            .selectinload(Ticket.commissioner)
            .selectinload(Commissioner.bindings),
            selectinload(SlaClock.ticket).selectinload(Ticket.channel_identity),
        )
        .where(
            SlaClock.active.is_(True),
            SlaClock.met_at.is_(None),
            SlaClock.breached_at.is_(None),
        )
        .order_by(SlaClock.id)
        # two workers ticking at once split the clocks instead of racing on them
        .with_for_update(of=SlaClock, skip_locked=True)
    )


def _remind(session: Session, clock: SlaClock, now: datetime, settings: SlaSettings) -> int | None:
    """Queue reminders; the number queued, or ``None`` if nobody could be found."""
    assigned = _assigned(clock)
    if assigned is not None:
        people = [assigned]
    else:
        people = _people(
            session, settings.reminder.department_roles, _responsible_department(clock)
        )
    text = _reminder_text(clock)
    queued = 0
    for channel, recipient in _targets(people):
        key = f"remind:{clock.id}:{channel}:{recipient}"
        if enqueue(
            session, channel, recipient, "sla_reminder", _payload(clock, text), key, now=now
        ):
            queued += 1
    clock.reminded_at = now
    return queued if people else None


def _notify_breach(
    session: Session, clock: SlaClock, now: datetime, settings: SlaSettings
) -> int | None:
    """Mark the breach and queue notices; the number queued, or ``None`` if nobody."""
    department = _responsible_department(clock)
    heads = _people(session, (CommissionerRole.HEAD,), department)
    people = _people(session, settings.overdue.department_roles, department)
    people += _people(session, settings.overdue.oversight_roles, None)
    text = _breach_text(clock, heads)
    queued = 0
    for channel, recipient in _targets(people):
        key = f"breach:{clock.id}:{channel}:{recipient}"
        if enqueue(session, channel, recipient, "sla_overdue", _payload(clock, text), key, now=now):
            queued += 1
    clock.breached_at = now
    return queued if people else None


def _apologise(
    session: Session,
    clock: SlaClock,
    now: datetime,
    settings: SlaSettings,
    notifier: TicketNotifier,
    calendar: WorkCalendar | None,
) -> None:
    """A breached 办结 clock of a ticket filed from a chat: the enterprise hears it."""
    if clock.kind is not ClockKind.DONE or clock.ticket.channel_identity is None:
        return
    expected = None
    if calendar is not None:
        expected = calendar.due(now, settings.overdue.apology_workdays).at
    notifier.overdue(session, clock.ticket, clock, expected, now)


def tick(
    sessions: sessionmaker[Session],
    now: datetime,
    settings: SlaSettings,
    *,
    notifier: TicketNotifier | None = None,
    calendar: WorkCalendar | None = None,
) -> TickReport:
    """One idempotent pass at *now* (aware): reminders, breaches and overdue notices.

    With a *notifier*, an enterprise whose 办结 clock is breached gets an apology naming
    when it may expect the result (``overdue.apology_workdays`` working days on, counted
    by *calendar*; without one the apology names no date).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    cfg = settings
    reminders = breaches = notices = unaddressed = 0
    with sessions.begin() as session:
        clocks = list(session.scalars(_open_clocks()))
        for clock in clocks:
            if clock.due_at < now:
                breaches += 1
                queued = _notify_breach(session, clock, now, cfg)
                notices += queued or 0
                if notifier is not None:
                    _apologise(session, clock, now, cfg, notifier, calendar)
            elif clock.reminded_at is None and clock.remind_at and clock.remind_at <= now:
                queued = _remind(session, clock, now, cfg)
                reminders += queued or 0
            else:
                continue
            if queued is None:
                unaddressed += 1
    return TickReport(
        reminders=reminders,
        breaches=breaches,
        notices=notices,
        unaddressed=unaddressed,
    )
