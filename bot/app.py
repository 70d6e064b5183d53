"""The one place that wires everything: settings, knowledge base, router, calendar, database,
ticket service, live handoff, inbox, notifier and dialogue engine.

``build_app(settings, clock)`` is called by ``yxby serve``, ``yxby chat``, the demo and every
CLI command; no other module builds a :class:`~handoff.tickets.TicketService` or reads the
clock. No module-level singletons: callers hold the :class:`App`. Settings files are read at
once (a broken file stops start-up); the database, the knowledge base (slow to load: jieba)
and everything built on them are made on first use, so ``yxby route`` needs no database and
a command that only moves tickets loads no knowledge base.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL

from bot.notify import Notifier
from bot.replies import Replies, load_replies
from bot.settings import DialogueSettings, load_dialogue_settings
from handoff.accounts import Accounts, ConsoleSettings, load_console_settings
from handoff.calendar import WorkCalendar, load_calendar
from handoff.db import Database, open_database
from handoff.inbox import Inbox
from handoff.links import PUBLIC_URL_ENV, TicketLinks, link_secret
from handoff.live import LiveHandoffs
from handoff.outbox import DeliverySettings, load_delivery_settings
from handoff.sla import SlaSettings, load_sla_settings
from handoff.tickets import TicketService
from knowledge.cache import kb_cache_dir
from routing import Router, load_router
from yxby import paths

if TYPE_CHECKING:
    from bot.dialogue import Dialogue
    from handoff.shared_state import SharedState
    from knowledge import KnowledgeBase
    from knowledge.live import LiveKnowledge

__all__ = ["App", "AppSettings", "build_app", "kb_cache_dir", "system_clock"]


def system_clock() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class AppSettings:
    """Where the app finds its database, shipped settings and knowledge entries.

    :meth:`from_env` reads the ``YXBY_*`` variables; tests pass values directly.
    """

    database_url: str | URL | None = None
    config_dir: Path = field(default_factory=paths.config_dir)
    knowledge_dir: Path = field(default_factory=paths.entries_dir)
    check_schema: bool = True
    public_url: str = ""
    """Where enterprises reach the server (``YXBY_PUBLIC_URL``): the base of ticket links."""
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The environment the secrets come from (``YXBY_LINK_SECRET`` …)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> AppSettings:
        """Settings from *env* (default ``os.environ``); *overrides* win."""
        source = os.environ if env is None else env
        values: dict[str, object] = {
            "database_url": (source.get("YXBY_DATABASE_URL") or "").strip() or None,
            "config_dir": Path(source["YXBY_CONFIG_DIR"])
            if source.get("YXBY_CONFIG_DIR")
            else paths.PROJECT_ROOT / "config",
            "knowledge_dir": Path(source["YXBY_KNOWLEDGE_DIR"])
            if source.get("YXBY_KNOWLEDGE_DIR")
            else paths.PROJECT_ROOT / "knowledge" / "entries",
            "public_url": (source.get(PUBLIC_URL_ENV) or "").strip(),
            "env": {k: v for k, v in source.items() if k.startswith("YXBY_")},
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


class App:
    """Everything a channel adapter, a console page or a command needs, built once."""

    def __init__(
        self,
        settings: AppSettings,
        clock: Callable[[], datetime],
        *,
        kb: KnowledgeBase | None = None,
    ) -> None:
        cfg = settings.config_dir
        self.settings = settings
        self.clock = clock
        self.router: Router = load_router(cfg)
        self.calendar: WorkCalendar = load_calendar(cfg / "holidays.yaml")
        self.replies: Replies = load_replies(cfg / "replies.yaml")
        self.dialogue_settings: DialogueSettings = load_dialogue_settings(cfg / "dialogue.yaml")
        self.sla: SlaSettings = load_sla_settings(cfg / "sla.yaml")
        self.delivery: DeliverySettings = load_delivery_settings(cfg / "delivery.yaml")
        self.console: ConsoleSettings = load_console_settings(cfg / "console.yaml")
        # links are made on the first notice (reading the secret needs the data directory)
        self.notifier = Notifier(self.replies, clock, links=lambda: self.links)
        if kb is not None:
            self.__dict__["kb"] = kb

    @cached_property
    def db(self) -> Database:
        """The database (opened on first use; refuses one that is not at the current schema)."""
        return open_database(self.settings.database_url, check=self.settings.check_schema)

    @cached_property
    def tickets(self) -> TicketService:
        """Tickets, their clocks and events; pushes go through the notifier."""
        return TicketService(
            self.db.sessions,
            self.calendar,
            self.clock,
            settings=self.sla,
            departments=self.router.departments,
            notifier=self.notifier,
        )

    @cached_property
    def accounts(self) -> Accounts:
        """Console accounts: passwords, lockout, sessions and set-password links."""
        return Accounts(self.db.sessions, self.clock, self.console)

    @cached_property
    def links(self) -> TicketLinks:
        """Signed, expiring links to a ticket's page for the enterprise that filed it."""
        secret = link_secret(self.settings.env, paths.data_dir)
        return TicketLinks(secret, self.clock, public_url=self.settings.public_url)

    @cached_property
    def inbox(self) -> Inbox:
        """Inbound dedupe, push windows and queued replies for the channel adapters."""
        return Inbox(self.db.sessions, self.clock)

    @cached_property
    def shared(self) -> SharedState:
        """Values every server process sees: Redis when ``YXBY_REDIS_URL`` is set, else the
        database's ``shared_value`` table (WeChat access token, "全文" rests, answers)."""
        from handoff.shared_state import shared_state_from_env

        return shared_state_from_env(self.settings.env, lambda: self.db.sessions, self.clock)

    @cached_property
    def live(self) -> LiveHandoffs:
        """The live handoff between enterprises and commissioners."""
        return LiveHandoffs(
            self.db.sessions,
            self.tickets,
            self.notifier,
            self.clock,
            wait_minutes=self.dialogue_settings.handoff_wait_minutes,
        )

    @cached_property
    def kb(self) -> KnowledgeBase:
        """The 企业服务知识库 (loaded on first use), live: a :class:`~knowledge.live.LiveKnowledge`
        that every caller shares, so a reload or a new day reaches the dialogue at once.

        ``yxby serve`` starts its watcher (``bot.server``); ``app.live_kb`` has
        ``reload()`` (blocking), ``request_reload()`` and ``status``. A knowledge base passed
        to :func:`build_app` is served as is (``app.live_kb`` is then ``None``).
        """
        from knowledge.live import LiveKnowledge

        return LiveKnowledge(
            self.settings.knowledge_dir,
            today=self.today,
            clock=self.clock,
            config_dir=self.settings.config_dir,
            cache_dir=kb_cache_dir(),
        )

    @property
    def live_kb(self) -> LiveKnowledge | None:
        """The knowledge base when it reloads (``None`` for one passed in fixed)."""
        from knowledge.live import LiveKnowledge

        kb = self.kb
        return kb if isinstance(kb, LiveKnowledge) else None

    @cached_property
    def dialogue(self) -> Dialogue:
        """The conversation engine shared by every channel (built on first use)."""
        from bot.dialogue import Dialogue

        return Dialogue(
            kb=self.kb,
            router=self.router,
            tickets=self.tickets,
            live=self.live,
            inbox=self.inbox,
            sessions=self.db.sessions,
            replies=self.replies,
            settings=self.dialogue_settings,
            clock=self.clock,
            sla=self.sla,
        )

    def today(self) -> date:
        """Today in Asia/Shanghai, by the app's clock."""
        from handoff.calendar import SHANGHAI

        return self.clock().astimezone(SHANGHAI).date()

    def close(self) -> None:
        """Release database connections (if the database was opened)."""
        shared = self.__dict__.get("shared")
        if shared is not None and hasattr(shared, "close"):
            shared.close()
        db = self.__dict__.get("db")
        if db is not None:
            db.dispose()


def build_app(
    settings: AppSettings | None = None,
    clock: Callable[[], datetime] = system_clock,
    *,
    kb: KnowledgeBase | None = None,
) -> App:
    """Build the app (settings default to the environment's ``YXBY_*`` variables).

    Raises ``DatabaseError`` when the database is not at the current schema (run
    ``yxby db upgrade``) and ``ConfigError``/``KnowledgeError`` for bad files.
    """
    return App(settings or AppSettings.from_env(), clock, kb=kb)
