"""Engine, sessions, migrations, the schema check, aware timestamps and the outbox."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import OperationalError

from handoff import outbox
from handoff.calendar import SHANGHAI
from handoff.db import (
    MIGRATIONS_DIR,
    NOT_AT_HEAD,
    Database,
    alembic_config,
    check_schema,
    current_revision,
    database_url,
    head_revision,
    make_engine,
    open_database,
    upgrade,
)
from handoff.models import (
    Base,
    OutboxMessage,
    OutboxStatus,
    TicketCounter,
    import_all_models,
)
from yxby.errors import DatabaseError

SH_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=SHANGHAI)


def test_default_url_is_the_sqlite_file_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("YXBY_DATABASE_URL", raising=False)
    monkeypatch.setenv("YXBY_DATA_DIR", str(tmp_path / "data"))
    assert database_url() == f"sqlite:///{tmp_path / 'data' / 'yxby.sqlite3'}"
    monkeypatch.setenv("YXBY_DATABASE_URL", "postgresql://u@db.example/yxby")
    assert database_url() == "postgresql://u@db.example/yxby"


def test_postgresql_urls_use_psycopg_3() -> None:
    engine = make_engine("postgresql://u:secret@127.0.0.1:1/yxby")
    assert engine.url.drivername == "postgresql+psycopg"
    assert engine.dialect.driver == "psycopg"


@pytest.mark.parametrize(("url", "message"), [("mysql://x/y", "不支持"), ("::", "无法解析")])
def test_unsupported_urls(url: str, message: str) -> None:
    with pytest.raises(DatabaseError, match=message):
        make_engine(url)


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.sqlite3'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        engine.dispose()


def test_upgrade_yields_a_schema_matching_the_models(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) is None
        assert upgrade(engine) == head_revision()
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, import_all_models()) == []
        tables = set(inspect(engine).get_table_names())
        assert tables == {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"}
        assert upgrade(engine) == head_revision()  # idempotent
    finally:
        engine.dispose()


def test_unmigrated_database_is_refused(empty_db_url: str) -> None:
    with pytest.raises(DatabaseError) as info:
        open_database(empty_db_url)
    assert NOT_AT_HEAD in str(info.value)
    assert "yxby db upgrade" in str(info.value)


def test_unknown_revision_is_refused(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
        with pytest.raises(DatabaseError, match="不在本程序的迁移脚本中"):
            check_schema(engine)
    finally:
        engine.dispose()


def test_unreachable_server_is_a_database_error() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=1")
    try:
        with pytest.raises(DatabaseError, match="无法连接数据库"):
            check_schema(engine)
    finally:
        engine.dispose()


def test_alembic_config_works_from_any_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = alembic_config("postgresql+psycopg://u:p%25w@h/db")
    assert Path(cfg.get_main_option("script_location")).is_absolute()
    assert cfg.get_main_option("sqlalchemy.url") == "postgresql+psycopg://u:p%25w@h/db"
    newest = max(p.name.split("_")[0] for p in (MIGRATIONS_DIR / "versions").glob("0*.py"))
    assert head_revision() == newest


def test_aware_datetimes_round_trip(db: Database) -> None:
    with db.begin() as session:
        outbox.enqueue(session, "telegram", "1", "t", {"text": "你好"}, "k1", now=SH_NOON)
    with db.sessions() as session:
        row = session.scalars(select(OutboxMessage)).one()
        assert row.created_at == SH_NOON
        assert row.created_at.utcoffset() == timedelta(0)
        assert row.created_at.tzinfo is not None
        assert row.payload == {"text": "你好"}
        assert row.status is OutboxStatus.PENDING
        # comparisons in SQL see the same instant whatever the zone of the parameter
        found = session.scalars(
            select(OutboxMessage).where(OutboxMessage.created_at == SH_NOON.astimezone(UTC))
        ).all()
        assert len(found) == 1


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"), db.begin() as session:
        outbox.enqueue(session, "telegram", "1", "t", {}, "k", now=datetime(2026, 1, 1))


def test_foreign_keys_are_enforced(db: Database) -> None:
    from sqlalchemy.exc import IntegrityError

    from handoff.models import ChannelIdentity

    with pytest.raises(IntegrityError), db.begin() as session:
        session.add(ChannelIdentity(channel="wechat", user_key="o1", enterprise_id=999))


# ----------------------------------------------------------------------------- outbox


def test_enqueue_dedupes_without_breaking_the_transaction(db: Database) -> None:
    with db.begin() as session:
        assert outbox.enqueue(session, "telegram", "1", "k", {"n": 1}, "same", now=SH_NOON)
        assert not outbox.enqueue(session, "telegram", "1", "k", {"n": 2}, "same", now=SH_NOON)
        assert outbox.enqueue(session, "wechat", "2", "k", {"n": 3}, "other", now=SH_NOON)
        session.add(TicketCounter(day=SH_NOON.date(), seq=1))  # the transaction goes on
    with db.begin() as session:
        assert not outbox.enqueue(session, "telegram", "1", "k", {"n": 4}, "same")
    with db.sessions() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        assert [(r.dedupe_key, r.payload["n"]) for r in rows] == [("same", 1), ("other", 3)]
        assert session.get(TicketCounter, SH_NOON.date()) is not None


def test_pending_lists_due_messages_oldest_first(db: Database) -> None:
    with db.begin() as session:
        for key in ("a", "b", "c", "d"):
            outbox.enqueue(session, "telegram", "1", "k", {}, key, now=SH_NOON)
        rows = {r.dedupe_key: r for r in session.scalars(select(OutboxMessage))}
        rows["b"].next_attempt_at = SH_NOON + timedelta(hours=1)
        rows["c"].status = OutboxStatus.SENT
        rows["d"].next_attempt_at = SH_NOON - timedelta(minutes=1)
    with db.sessions() as session:
        assert [m.dedupe_key for m in outbox.pending(session, SH_NOON)] == ["a", "d"]
        later = SH_NOON + timedelta(hours=2)
        assert [m.dedupe_key for m in outbox.pending(session, later)] == ["a", "b", "d"]
        assert [m.dedupe_key for m in outbox.pending(session, later, limit=1)] == ["a"]


def test_readers_do_not_wait_for_a_writer(db: Database) -> None:
    from handoff.db import read_only

    with db.begin() as writer:
        outbox.enqueue(writer, "telegram", "1", "k", {}, "held", now=SH_NOON)
        writer.flush()  # the writer now holds the write lock (SQLite) or a row lock
        with db.sessions() as reader:
            assert read_only(reader) is reader
            assert reader.scalars(select(OutboxMessage)).all() == []
    with db.sessions() as reader:
        read_only(reader)
        assert len(reader.scalars(select(OutboxMessage)).all()) == 1


def _pooled_backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _terminate(db_url: str, pid: int) -> None:
    killer = make_engine(db_url)
    try:
        with killer.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        killer.dispose()


def _count_pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        pings.append(1)
        return ping(dbapi_conn)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return pings


def test_a_connection_dropped_while_idle_is_replaced_before_use(
    db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no server to drop connections")
    monkeypatch.setattr("handoff.db.PING_IDLE_AFTER", 0.05)
    engine = make_engine(db_url)
    try:
        pings = _count_pings(engine, monkeypatch)
        first = _pooled_backend_pid(engine)
        assert pings == []  # a new connection is not pinged
        _terminate(db_url, first)  # a restarted server, a proxy's idle timeout
        time.sleep(0.1)
        second = _pooled_backend_pid(engine)  # no error: pinged, found dead, replaced
        assert second != first and pings == [1]
    finally:
        engine.dispose()


def test_a_connection_in_use_a_moment_ago_is_not_pinged(
    db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("only PostgreSQL connections are pinged")
    engine = make_engine(db_url)  # idle for 5 s before a ping
    try:
        pings = _count_pings(engine, monkeypatch)
        pids = {_pooled_backend_pid(engine) for _ in range(20)}
        assert len(pids) == 1 and pings == []  # the same connection, no round trip added
        # dropped while busy: its statement fails once, then the pool connects afresh
        _terminate(db_url, pids.pop())
        with pytest.raises(OperationalError):
            _pooled_backend_pid(engine)
        assert _pooled_backend_pid(engine) > 0
    finally:
        engine.dispose()
