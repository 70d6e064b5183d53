"""The one place that wires everything: knowledge base, router, calendar, database, tickets,
notifier and dialogue engine. No module-level singletons: callers hold the :class:`App`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import URL

from bot.dialogue import Dialogue
from bot.notify import Notifier
from bot.replies import Replies, load_replies
from bot.settings import load_dialogue_settings
from handoff.calendar import WorkCalendar, load_calendar
from handoff.db import Database, open_database
from handoff.sla import load_sla_settings
from handoff.tickets import TicketService
from knowledge import KnowledgeBase
from routing import Router, load_router

__all__ = ["App", "build", "system_clock"]


def system_clock() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


@dataclass
class App:
    """Everything a channel adapter or a command needs, built once."""

    kb: KnowledgeBase
    router: Router
    calendar: WorkCalendar
    db: Database
    replies: Replies
    tickets: TicketService
    dialogue: Dialogue
    clock: Callable[[], datetime]

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()


def build(
    *,
    database_url: str | URL | None = None,
    clock: Callable[[], datetime] = system_clock,
    kb: KnowledgeBase | None = None,
    check_schema: bool = True,
) -> App:
    """Build the app from config files and the environment (``YXBY_*`` variables).

    Raises ``DatabaseError`` when the database is not at the current schema (run
    ``yxby db upgrade``) and ``ConfigError``/``KnowledgeError`` for bad files.
    """
    import knowledge

    base = kb or knowledge.load()
    router = load_router()
    calendar = load_calendar()
    replies = load_replies()
    settings = load_dialogue_settings()
    db = open_database(database_url, check=check_schema)
    sla = load_sla_settings()
    tickets = TicketService(db.sessions, calendar, clock, settings=sla, notifier=Notifier(replies))
    dialogue = Dialogue(
        kb=base,
        router=router,
        tickets=tickets,
        sessions=db.sessions,
        replies=replies,
        settings=settings,
        clock=clock,
        sla_contact_days=sla.limits.contact,
        sla_done_days=sla.limits.done,
    )
    return App(base, router, calendar, db, replies, tickets, dialogue, clock)
