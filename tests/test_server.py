"""The ASGI app of ``yxby serve``: ``/healthz`` (200 when the database is at the current schema
and the knowledge base has entries, 503 otherwise) and the lifespan that starts the channel
adapters and the outbox worker.

Runs on SQLite, and on PostgreSQL when ``YXBY_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import asyncio
import copy as _copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from bot.app import App
from bot.delivery import Sender
from bot.server import ServerOptions, create_asgi
from handoff.db import open_database
from handoff.outbox import enqueue
from knowledge import KnowledgeBase

DATA = Path(__file__).parent / "data"
QUIET = ServerOptions(run_worker=False, run_tick=False)


def altered(app: App, **members: Any) -> App:
    """A shallow copy of *app* with some members replaced (a broken database, no entries)."""
    copy = _copy.copy(app)
    copy.__dict__.update(members)
    return copy


def get(asgi: Starlette, path: str) -> httpx.Response:
    """GET *path* from *asgi* with its lifespan running."""

    async def main() -> httpx.Response:
        async with asgi.router.lifespan_context(asgi):
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://yxby") as client:
                return await client.get(path)

    return asyncio.run(main())


class ListSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        self.sent.append((recipient, payload))


class FakeAdapter:
    """A channel with no routes whose pushes land in a list."""

    name = "fake"

    def __init__(self) -> None:
        self.events: list[str] = []
        self.out = ListSender()

    def routes(self) -> Sequence[BaseRoute]:
        return []

    def sender(self) -> Sender:
        return self.out

    async def startup(self) -> None:
        self.events.append("startup")

    async def shutdown(self) -> None:
        self.events.append("shutdown")


def test_healthz_reports_database_knowledge_and_outbox(app: App) -> None:
    with app.db.begin() as session:
        enqueue(session, "telegram", "1", "t", {"text": "甲"}, "k1", now=app.clock())
    response = get(create_asgi(app, [FakeAdapter()], QUIET), "/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"].startswith("ok (revision 0")
    assert body["knowledge"]["entries"] == len(app.kb) > 0
    assert body["outbox"] == {"pending": 1}
    assert body["channels"] == ["fake"]


def test_healthz_is_503_when_the_database_is_not_migrated(app: App, empty_db_url: str) -> None:
    broken = altered(app, db=open_database(empty_db_url, check=False))
    try:
        response = get(create_asgi(broken, [], QUIET), "/healthz")
    finally:
        broken.db.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and "DatabaseError" in body["database"]


def test_healthz_is_503_when_the_database_is_unreachable(app: App) -> None:
    unreachable = open_database("postgresql+psycopg://nobody@127.0.0.1:1/none", check=False)
    broken = altered(app, db=unreachable)
    try:
        response = get(create_asgi(broken, [], QUIET), "/healthz")
    finally:
        unreachable.dispose()
    assert response.status_code == 503
    assert response.json()["database"].startswith("error: ")


def test_healthz_is_503_with_an_empty_knowledge_base(app: App, kb: KnowledgeBase) -> None:
    empty = KnowledgeBase((), kb.settings, kb.tokenizer)
    response = get(create_asgi(altered(app, kb=empty), [], QUIET), "/healthz")
    assert response.status_code == 503
    assert response.json()["knowledge"] == {"entries": 0}


def test_lifespan_starts_adapters_and_the_worker(app: App) -> None:
    adapter = FakeAdapter()
    with app.db.begin() as session:
        enqueue(session, "fake", "u1", "t", {"text": "你好"}, "k1", now=app.clock())
    asgi = create_asgi(app, [adapter], ServerOptions(worker_interval=0.01, run_tick=False))

    async def main() -> None:
        async with asgi.router.lifespan_context(asgi):
            assert adapter.events == ["startup"]
            for _ in range(1000):  # bounded: ten seconds at most
                if adapter.out.sent:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(main())
    assert adapter.out.sent == [("u1", {"text": "你好"})]
    assert adapter.events == ["startup", "shutdown"]


def test_healthz_names_broken_entries_but_serves_the_rest(app: App) -> None:
    import knowledge

    partial = knowledge.load(DATA / "kb_broken", today=app.today())
    assert len(partial) > 0 and partial.problems
    response = get(create_asgi(altered(app, kb=partial), [], QUIET), "/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["knowledge"]["entries"] == len(partial)
    problems = body["knowledge"]["problems"]
    assert problems and all("kb_broken" in p and "错误" in p for p in problems)
