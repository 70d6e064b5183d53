"""The one place that makes the database engine and sessions, and runs migrations.

SQLite (``yxby.sqlite3`` under :func:`yxby.paths.data_dir`) by default, in WAL mode with
foreign keys on; PostgreSQL through psycopg 3 when ``YXBY_DATABASE_URL`` is set. The schema
is owned by Alembic (``migrations/``): :func:`upgrade` brings a database to the head
revision and :func:`check_schema` refuses to work against one that is not there.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from yxby.errors import DatabaseError
from yxby.paths import PROJECT_ROOT, data_dir

__all__ = [
    "DATABASE_URL_ENV",
    "MIGRATIONS_DIR",
    "READ_ONLY_OPTION",
    "SQLITE_FILENAME",
    "Database",
    "alembic_config",
    "check_schema",
    "current_revision",
    "database_url",
    "head_revision",
    "make_engine",
    "make_session_factory",
    "open_database",
    "read_only",
    "sqlite_write_lock_free",
    "upgrade",
]

DATABASE_URL_ENV = "YXBY_DATABASE_URL"
SQLITE_FILENAME = "yxby.sqlite3"
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
BUSY_TIMEOUT_MS = 30_000
PG_POOL_SIZE = 24
PING_IDLE_AFTER = 5.0
"""Seconds a pooled PostgreSQL connection may sit unused before it is pinged on checkout."""

_READ_ONLY = "yxby_read_only"
READ_ONLY_OPTION = _READ_ONLY
"""The execution option marking a Core connection a reader (see :func:`read_only`)."""

NOT_AT_HEAD = "数据库尚未初始化或版本过旧，请先运行 yxby db upgrade"


def database_url() -> str:
    """``YXBY_DATABASE_URL`` if set, else the SQLite file under the data directory."""
    env = os.environ.get(DATABASE_URL_ENV, "").strip()
    if env:
        return env
    return f"sqlite:///{data_dir() / SQLITE_FILENAME}"


def _parse(url: str | URL | None) -> URL:
    try:
        parsed = make_url(url if url is not None else database_url())
    except ArgumentError as exc:
        raise DatabaseError(f"数据库地址无法解析：{exc}") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed
    if backend == "sqlite":
        return parsed
    raise DatabaseError(f"不支持的数据库类型：{backend}（仅支持 SQLite 和 PostgreSQL）")


def _sqlite_events(engine: Engine, *, memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy (not pysqlite) emit BEGIN, so savepoints and DDL behave.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front, so read-then-write transactions (a ticket
        # change, the per-day counter) cannot fail on a lock upgrade; readers marked
        # with read_only() stay deferred and, in WAL mode, never wait for a writer.
        if conn.get_execution_options().get(_READ_ONLY):
            conn.exec_driver_sql("BEGIN DEFERRED")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str | URL | None = None, *, echo: bool = False) -> Engine:
    """Create an engine for *url* (default :func:`database_url`) with the project's settings."""
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        if not memory and parsed.database:
            from pathlib import Path

            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            echo=echo,
            connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        _sqlite_events(engine, memory=memory)
        return engine
    # as many connections as the server has threads for blocking work (bot.server.THREADS)
    engine = create_engine(parsed, echo=echo, pool_size=PG_POOL_SIZE, max_overflow=8)
    _ping_when_idle(engine, PING_IDLE_AFTER)
    return engine


def _ping_when_idle(engine: Engine, after: float) -> None:
    """Ping a pooled connection on checkout only when it sat unused for *after* seconds.

    ``pool_pre_ping`` pings at every checkout: a round trip before each transaction, three
    per WeChat message. A connection that was in use a moment ago is known to be alive;
    one that idled may have been dropped (a restarted server, a proxy's idle timeout) and is
    replaced before anyone uses it. A connection that dies while busy fails its statement;
    SQLAlchemy then invalidates the pool, so the next checkout connects afresh.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["yxby_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("yxby_idle_since")
        if since is None or time.monotonic() - since < after:
            return  # new, or in use a moment ago
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_conn, None):
                raise DisconnectionError("a pooled connection was dropped while idle") from exc
            raise


def sqlite_write_lock_free(engine: Engine) -> bool | None:
    """On SQLite, True when no other connection holds the write lock now (asked without
    waiting); ``None`` on other databases."""
    if engine.dialect.name != "sqlite":
        return None
    import sqlite3

    database = engine.url.database
    if not database or database == ":memory:":
        return True
    conn = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return False
        raise
    finally:
        conn.close()


def read_only(session: Session) -> Session:
    """Mark a fresh *session* as a reader (call before its first query).

    On SQLite its transaction then starts deferred instead of taking the write lock;
    other databases ignore the mark.
    """
    session.connection(execution_options={_READ_ONLY: True})
    return session


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to *engine*; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | URL | None = None) -> Any:
    """An ``alembic.config.Config`` for the project's migrations, usable from any cwd."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = make_url(url).render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


@functools.cache
def _scripts() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest migration revision shipped with the code."""
    head = _scripts().get_current_head()
    if head is None:  # pragma: no cover - the project always ships migrations
        raise DatabaseError(f"找不到数据库迁移脚本：{MIGRATIONS_DIR}")
    return head


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` for an un-migrated database.

    A reader: on SQLite it does not wait for the write lock.
    """
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect().execution_options(**{_READ_ONLY: True}) as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"无法连接数据库 {_describe(engine)}：{exc.__class__.__name__}"
        ) from exc


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Apply migrations up to *revision* (``head``); return the revision reached."""
    from alembic import command

    cfg = alembic_config(engine.url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"数据库升级失败（{_describe(engine)}）：{exc}") from exc
    return current_revision(engine)


def check_schema(engine: Engine) -> str:
    """Return the current revision, or raise ``DatabaseError`` unless it is the head."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return head
    if current is None:
        raise DatabaseError(f"{NOT_AT_HEAD}（当前：未初始化，需要：{head}）")
    from alembic.util import CommandError

    try:
        known = _scripts().get_revision(current)
    except CommandError:
        known = None
    if known is None:
        raise DatabaseError(
            f"数据库版本 {current} 不在本程序的迁移脚本中（程序需要 {head}），请升级程序"
        )
    raise DatabaseError(f"{NOT_AT_HEAD}（当前：{current}，需要：{head}）")


@dataclass(frozen=True)
class Database:
    """An engine and its session factory."""

    engine: Engine
    sessions: sessionmaker[Session]

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """A session inside one transaction, committed on success."""
        with self.sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def open_database(url: str | URL | None = None, *, check: bool = True) -> Database:
    """Connect to *url* (default :func:`database_url`); with *check*, require the head schema."""
    engine = make_engine(url)
    if check:
        try:
            check_schema(engine)
        except DatabaseError:
            engine.dispose()
            raise
    return Database(engine=engine, sessions=make_session_factory(engine))
