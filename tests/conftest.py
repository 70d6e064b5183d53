"""Shared fixtures: migrated databases (SQLite always, PostgreSQL when configured),
a movable clock, the working-day calendar and factories for tickets and enterprises.

PostgreSQL runs when ``YXBY_TEST_DATABASE_URL`` is set (for example
``postgresql+psycopg://postgres@127.0.0.1:5432/test``): each test run creates its own
schema there, migrates it once, empties the tables after every test and drops the schema
at the end. Without the variable the PostgreSQL parameters are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import MetaData
from sqlalchemy.engine import make_url

from handoff.calendar import SHANGHAI, WorkCalendar, load_calendar
from handoff.db import Database, make_engine, open_database, upgrade
from handoff.models import Commissioner, CommissionerRole, Enterprise, EnterpriseKind
from handoff.sla import SlaSettings, load_sla_settings
from handoff.tickets import TicketService, TicketState, TicketView
from routing.departments import DepartmentDirectory, load_departments

if TYPE_CHECKING:
    from bot.app import App
    from knowledge import KnowledgeBase
    from tests.chatting import Chat

PG_ENV = "YXBY_TEST_DATABASE_URL"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

START = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
"""Monday 2026-11-23 10:00 in Shanghai: a plain working week, no holidays near."""


# ----------------------------------------------------------------------------- time


class MovableClock:
    """An injectable clock: tests set or advance it instead of sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> datetime:
        """Jump to *moment* (aware)."""
        assert moment.tzinfo is not None
        self.now = moment
        return moment

    def advance(self, **delta: float) -> datetime:
        """Move forward by ``timedelta(**delta)``."""
        self.now = self.now + timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> MovableClock:
    """A clock standing at :data:`START`."""
    return MovableClock(START)


@pytest.fixture(scope="session")
def calendar() -> WorkCalendar:
    """The project's working-day calendar (chinesecalendar + config/holidays.yaml)."""
    return load_calendar()


@pytest.fixture(scope="session")
def sla_settings() -> SlaSettings:
    """``config/sla.yaml``."""
    return load_sla_settings()


@pytest.fixture(scope="session")
def departments() -> DepartmentDirectory:
    """``config/departments.yaml``."""
    return load_departments()


# ------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for every test."""
    path = tmp_path_factory.mktemp("db-template") / "yxby.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def _pg_base_url() -> str:
    url = os.environ.get(PG_ENV, "").strip()
    if not url:
        pytest.skip(
            f"{PG_ENV} 未设置，跳过 PostgreSQL 测试（例如设为 postgresql+psycopg://postgres@127.0.0.1:5432/test）"
        )
    return url


def _schema_url(base: str, schema: str) -> str:
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@dataclass
class _PgSchemas:
    base: str
    created: list[str]

    def create(self, *, migrate: bool) -> str:
        schema = f"yxby_test_{uuid.uuid4().hex[:12]}"
        admin = make_engine(self.base)
        try:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        finally:
            admin.dispose()
        self.created.append(schema)
        url = _schema_url(self.base, schema)
        if migrate:
            engine = make_engine(url)
            try:
                upgrade(engine)
            finally:
                engine.dispose()
        return url


@pytest.fixture(scope="session")
def _pg_schemas() -> Iterator[_PgSchemas]:
    """Schemas made during this run on the PostgreSQL server; all dropped at the end."""
    schemas = _PgSchemas(_pg_base_url(), [])
    yield schemas
    if schemas.created:
        admin = make_engine(schemas.base)
        try:
            with admin.begin() as conn:
                for schema in schemas.created:
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            admin.dispose()


@pytest.fixture(scope="session")
def _pg_migrated(_pg_schemas: _PgSchemas) -> Iterator[Database]:
    """One migrated schema shared by the run (emptied after every test)."""
    database = open_database(_pg_schemas.create(migrate=True))
    yield database
    database.dispose()


_REFLECTED: dict[str, MetaData] = {}


def _empty(database: Database) -> None:
    # Every table of the migrated schema, whichever modules this run imported (reflected
    # once); DELETE is much faster than TRUNCATE on tables this small.
    key = str(database.engine.url)
    if key not in _REFLECTED:
        _REFLECTED[key] = MetaData()
        _REFLECTED[key].reflect(database.engine)
    with database.begin() as session:
        for table in reversed(_REFLECTED[key].sorted_tables):
            if table.name != "alembic_version":
                session.execute(table.delete())


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a migrated, empty database of each backend."""
    if request.param == "sqlite":
        path = tmp_path / "yxby.sqlite3"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    database: Database = request.getfixturevalue("_pg_migrated")
    try:
        yield database.engine.url.render_as_string(hide_password=False)
    finally:
        _empty(database)


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a database of each backend with no schema at all."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    schemas: _PgSchemas = request.getfixturevalue("_pg_schemas")
    return schemas.create(migrate=False)


@pytest.fixture
def db(request: pytest.FixtureRequest, db_url: str) -> Iterator[Database]:
    """An open, migrated, empty database (SQLite, and PostgreSQL when configured)."""
    if make_url(db_url).get_backend_name() == "postgresql":
        yield request.getfixturevalue("_pg_migrated")
        return
    database = open_database(db_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def backend(db_url: str) -> str:
    """``sqlite`` or ``postgresql``."""
    return make_url(db_url).get_backend_name()


# ------------------------------------------------------------------------- factories


@pytest.fixture
def service(
    db: Database,
    calendar: WorkCalendar,
    clock: MovableClock,
    sla_settings: SlaSettings,
    departments: DepartmentDirectory,
) -> TicketService:
    """A ticket service on the test database and the movable clock."""
    return TicketService(
        db.sessions, calendar, clock, settings=sla_settings, departments=departments
    )


def make_uscc(seq: int, prefix: str = "91") -> str:
    """A valid 统一社会信用代码 (prefix ``92`` for 个体工商户)."""
    from stdnum.cn import uscc

    body = f"{prefix}120116{seq:09d}"
    return body + uscc.calc_check_digit(body)


@pytest.fixture
def make_commissioner(db: Database) -> Callable[..., Commissioner]:
    """Register a commissioner: ``make_commissioner("张三", "市场监管局", role=…, bindings=…)``."""
    from handoff.registry import add_commissioner

    def make(
        name: str,
        department: str,
        *,
        role: CommissionerRole | str = CommissionerRole.COMMISSIONER,
        bindings: tuple[tuple[str, str], ...] = (),
    ) -> Commissioner:
        with db.begin() as session:
            return add_commissioner(
                session, name=name, department=department, role=role, bindings=bindings
            )

    return make


@pytest.fixture
def make_enterprise(db: Database) -> Callable[..., Enterprise]:
    """Add an enterprise: ``make_enterprise(kind=…, industry=…, commissioner=…)``."""
    counter = iter(range(1, 10_000))

    def make(
        *,
        uscc: str | None = None,
        name: str | None = None,
        kind: EnterpriseKind = EnterpriseKind.ENTERPRISE,
        industry: str | None = None,
        tags: list[str] | None = None,
        commissioner: Commissioner | None = None,
    ) -> Enterprise:
        seq = next(counter)
        prefix = "92" if kind is EnterpriseKind.INDIVIDUAL else "91"
        with db.begin() as session:
            enterprise = Enterprise(
                uscc=uscc or make_uscc(seq, prefix),
                name=name or f"测试企业{seq}",
                kind=kind,
                industry=industry,
                tags=tags or [],
                commissioner_id=commissioner.id if commissioner else None,
                created_at=START,
                updated_at=START,
            )
            session.add(enterprise)
        return enterprise

    return make


PATH_TO: dict[TicketState, list[tuple[str, dict[str, Any]]]] = {
    TicketState.NEW: [],
    TicketState.ACCEPTED: [("accept", {})],
    TicketState.IN_PROGRESS: [("accept", {}), ("start", {})],
    TicketState.ESCALATED: [
        ("accept", {}),
        ("start", {}),
        ("escalate", {"lead_department": "政务办", "deadline": START.date() + timedelta(days=30)}),
    ],
    TicketState.RESOLVED: [("accept", {}), ("start", {}), ("resolve", {"result": "已办理"})],
    TicketState.FEEDBACK_SENT: [
        ("accept", {}),
        ("start", {}),
        ("resolve", {"result": "已办理"}),
        ("send_feedback", {}),
    ],
    TicketState.SURVEYED: [
        ("accept", {}),
        ("start", {}),
        ("resolve", {"result": "已办理"}),
        ("send_feedback", {}),
        ("record_survey", {"result": "满意"}),
    ],
    TicketState.CLOSED: [
        ("accept", {}),
        ("start", {}),
        ("resolve", {"result": "已办理"}),
        ("send_feedback", {}),
        ("record_survey", {"result": "满意"}),
        ("close", {}),
    ],
}
"""The actions that bring a new ticket to each state."""


@pytest.fixture
def make_ticket(service: TicketService) -> Callable[..., TicketView]:
    """Create a ticket and drive it to *state*: ``make_ticket(state=TicketState.RESOLVED)``."""

    def make(
        text: str = "办理营业执照变更需要哪些材料？",
        *,
        state: TicketState = TicketState.NEW,
        department: str = "市场监管局",
        rule: str = "topic",
        reason: str = "诉求涉及营业执照",
        enterprise: Enterprise | None = None,
        actor: str = "测试员",
    ) -> TicketView:
        view = service.create(
            text,
            department=department,
            rule=rule,
            reason=reason,
            actor=actor,
            enterprise_uscc=enterprise.uscc if enterprise else None,
        )
        for action, kwargs in PATH_TO[state]:
            view = getattr(service, action)(view.number, actor=actor, **kwargs)
        assert view.state is state
        return view

    return make


@pytest.fixture
def app(db_url: str, clock: MovableClock, kb: KnowledgeBase) -> Iterator[App]:
    """The whole application (dialogue, tickets, notifier) on the test database and clock."""
    from bot.app import AppSettings, build_app

    application = build_app(AppSettings.from_env(database_url=db_url), clock, kb=kb)
    try:
        yield application
    finally:
        application.close()


@pytest.fixture
def chat(app: App) -> Chat:
    """An enterprise user talking to the engine on the terminal channel."""
    from tests.chatting import Chat

    return Chat(app, "user-1")


@pytest.fixture
def staff(app: App) -> Callable[..., Chat]:
    """Register a commissioner bound to the terminal and return their chat."""
    from handoff.registry import add_commissioner
    from tests.chatting import Chat

    def make(
        name: str = "张敏",
        department: str = "市场监管局",
        role: CommissionerRole | str = CommissionerRole.COMMISSIONER,
    ) -> Chat:
        key = f"staff-{name}"
        with app.db.begin() as session:
            add_commissioner(
                session,
                name=name,
                department=department,
                role=role,
                bindings=[("terminal", key)],
                departments=app.router.departments,
            )
        return Chat(app, key)

    return make


# ----------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (headless), shared by a test module.

    Module scope: while Playwright's sync API is open, ``asyncio.run`` fails in the same
    thread, so the browser must not outlive the page tests that use it.

    Skips with the reason when no Chromium is installed — except under CI
    (``YXBY_REQUIRE_BROWSER``), where ``.ci/run`` installs it and a missing browser fails.
    """
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        reason = "没有可用的 Chromium 浏览器（apt-get install chromium），跳过页面测试"
        if os.environ.get("YXBY_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()
