"""``/healthz`` answers within a second whatever the database is doing, and says what is slow.

A write lock held on the SQLite file by another connection (a long migration, a stuck
``yxby`` command) does not hold up the probe: its reads never wait for the lock, and it
reports the held lock. A database that does not answer at all (a PostgreSQL table lock, a
stalled check) is reported ``slow`` within the second, and the probe starts no second
check while the first still waits.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

import bot.server
from bot.app import App
from bot.server import HEALTH_DB_TIMEOUT, ServerOptions, create_asgi
from tests.servers import LiveServer

OPTIONS = ServerOptions(run_worker=False, run_tick=False)


@contextmanager
def served(app: App) -> Iterator[httpx.Client]:
    with (
        LiveServer(create_asgi(app, [], OPTIONS)) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        yield http


def probe(http: httpx.Client) -> tuple[float, int, dict[str, Any]]:
    started = time.monotonic()
    response = http.get("/healthz")
    body: dict[str, Any] = response.json()
    return time.monotonic() - started, response.status_code, body


@contextmanager
def sqlite_write_lock(db_url: str, mode: str = "IMMEDIATE") -> Iterator[None]:
    """Another connection holds the SQLite write lock meanwhile (and has written)."""
    conn = sqlite3.connect(make_url(db_url).database or "", isolation_level=None, timeout=5)
    try:
        conn.execute(f"BEGIN {mode}")
        conn.execute("UPDATE outbox_message SET attempts = attempts WHERE 0")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_healthz_answers_at_once_while_another_connection_holds_the_sqlite_write_lock(
    app: App, db_url: str, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("the SQLite write lock")
    with served(app) as http:
        took, status, body = probe(http)
        assert status == 200 and body["status"] == "ok"
        assert body["database_writer"] == "ok"
        for mode in ("IMMEDIATE", "EXCLUSIVE"):
            with sqlite_write_lock(db_url, mode):
                took, status, body = probe(http)
                assert took < 1.0, took
                assert status == 200
                assert body["database"].startswith("ok (revision")
                assert body["database_writer"].startswith("busy")
                assert "write lock" in body["database_writer"]
                assert body["outbox"] == {}
        took, status, body = probe(http)
        assert took < 1.0 and body["database_writer"] == "ok"


def test_healthz_reports_a_database_that_does_not_answer_as_slow_within_a_second(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    calls: list[float] = []
    real = bot.server._database_health

    def stalled(*args: Any) -> Any:
        calls.append(time.monotonic())
        release.wait(timeout=20)
        return real(*args)

    monkeypatch.setattr(bot.server, "_database_health", stalled)
    with served(app) as http:
        took, status, body = probe(http)
        assert HEALTH_DB_TIMEOUT <= took < 1.0
        assert status == 200 and body["status"] == "degraded"
        assert body["slow"] == ["database"]
        assert body["database"].startswith("slow: no answer within 0.8 s")
        assert body["knowledge"]["entries"] > 0 and "channels" in body
        time.sleep(0.3)
        took, status, body = probe(http)  # the same check is still waiting: no second one
        assert took < 1.0 and body["status"] == "degraded"
        assert "waited 1." in body["database"] or "waited 2." in body["database"]
        assert len(calls) == 1
        release.set()
        time.sleep(0.2)
        took, status, body = probe(http)
        assert status == 200 and body["status"] == "ok" and "slow" not in body


def test_healthz_answers_while_a_postgresql_table_is_locked(app: App, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("a PostgreSQL table lock")
    url = app.db.engine.url
    locker = create_engine(url)
    try:
        with served(app) as http:
            assert probe(http)[2]["status"] == "ok"
            with locker.connect() as conn:
                trans = conn.begin()
                conn.exec_driver_sql("LOCK TABLE outbox_message IN ACCESS EXCLUSIVE MODE")
                took, status, body = probe(http)
                assert took < 1.0
                assert status == 200 and body["slow"] == ["database"]
                trans.rollback()
            time.sleep(0.3)
            took, status, body = probe(http)
            assert body["status"] == "ok", body
    finally:
        locker.dispose()
