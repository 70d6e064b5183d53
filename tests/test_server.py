"""The ASGI app of ``yxby serve``: ``/healthz`` (200 when the database is at the current schema
and the knowledge base has entries, 503 otherwise; each channel ok, starting or degraded) and
the lifespan that starts the channel adapters — each on its own, retried in the background
when it fails — and the outbox worker.

Runs on SQLite, and on PostgreSQL when ``YXBY_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import asyncio
import copy as _copy
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from bot.app import App
from bot.delivery import Sender
from bot.server import ChannelUnavailable, ServerOptions, create_asgi, retry_delay
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
    assert body["channels"] == {"fake": {"status": "ok"}}


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


# ------------------------------------------------------------- channels start independently

FAST_RETRY = ServerOptions(
    run_worker=False, run_tick=False, startup_retry_first=0.01, startup_retry_cap=0.05
)


class FlakyAdapter(FakeAdapter):
    """A channel whose start-up fails *failures* times (``None``: always), then works."""

    name = "flaky"

    def __init__(self, failures: int | None, error: Exception | None = None) -> None:
        super().__init__()
        self.failures = failures
        self.error = error or ChannelUnavailable("无法连接 Flaky API：connection refused")
        self.attempts = 0

    async def startup(self) -> None:
        self.attempts += 1
        if self.failures is None or self.attempts <= self.failures:
            raise self.error
        await super().startup()


async def _healthz(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/healthz")
    assert response.status_code == 200  # a degraded channel does not make the server unhealthy
    body: dict[str, Any] = response.json()
    return body


async def _until(check: Any, what: str) -> None:
    for _ in range(500):  # bounded: five seconds at most
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_channel_that_cannot_start_is_degraded_retried_and_the_others_serve(app: App) -> None:
    healthy, flaky = FakeAdapter(), FlakyAdapter(failures=3)
    asgi = create_asgi(app, [flaky, healthy], FAST_RETRY)
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        async with asgi.router.lifespan_context(asgi):
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://yxby") as client:
                body = await _healthz(client)
                seen.append(body)
                assert healthy.events == ["startup"]  # started although flaky failed first
                await _until(lambda: flaky.events == ["startup"], "flaky to start")
                seen.append(await _healthz(client))

    asyncio.run(main())
    first, later = seen
    assert first["status"] == "ok"
    assert first["channels"]["fake"] == {"status": "ok"}
    degraded = first["channels"]["flaky"]
    assert degraded["status"] == "degraded" and degraded["attempts"] >= 1
    assert degraded["detail"] == "无法连接 Flaky API：connection refused"
    assert 0 <= degraded["retry_in"] <= 0.1
    assert later["channels"] == {"flaky": {"status": "ok"}, "fake": {"status": "ok"}}
    assert flaky.attempts == 4
    assert flaky.events == ["startup", "shutdown"] and healthy.events == ["startup", "shutdown"]


def test_an_unexpected_start_up_error_is_named_but_its_message_not_shown(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyAdapter(None, RuntimeError("connect to postgresql://admin:hunter2@db failed"))
    asgi = create_asgi(app, [flaky], FAST_RETRY)
    body = get(asgi, "/healthz").json()
    assert body["status"] == "ok"
    assert body["channels"]["flaky"]["status"] == "degraded"
    assert body["channels"]["flaky"]["detail"] == "RuntimeError（详见日志）"
    assert "hunter2" not in json.dumps(body)
    assert "channel flaky not started (attempt 1)" in caplog.text  # the log has the traceback


def test_shutdown_stops_the_retries_of_a_channel_that_never_starts(app: App) -> None:
    flaky = FlakyAdapter(None)
    options = dataclasses.replace(FAST_RETRY, startup_retry_first=0.01, startup_retry_cap=0.01)
    asgi = create_asgi(app, [flaky], options)

    async def main() -> int:
        async with asgi.router.lifespan_context(asgi):
            await _until(lambda: flaky.attempts >= 3, "a few attempts")
        stopped_at = flaky.attempts
        await asyncio.sleep(0.1)
        return stopped_at

    started = time.monotonic()
    stopped_at = asyncio.run(main())
    assert time.monotonic() - started < 5
    assert flaky.attempts == stopped_at  # no attempt after the server stopped
    assert flaky.events == ["shutdown"]  # shut down although it never started


def test_a_slow_channel_does_not_hold_up_the_server(app: App) -> None:
    release = asyncio.Event()

    class Slow(FakeAdapter):
        name = "slow"

        async def startup(self) -> None:
            await release.wait()
            await super().startup()

    slow, healthy = Slow(), FakeAdapter()
    options = dataclasses.replace(FAST_RETRY, startup_wait=0.05)
    asgi = create_asgi(app, [slow, healthy], options)

    async def main() -> list[dict[str, Any]]:
        bodies = []
        async with asgi.router.lifespan_context(asgi):
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://yxby") as client:
                bodies.append((await _healthz(client))["channels"])
                release.set()
                await _until(lambda: slow.events == ["startup"], "the slow channel")
                bodies.append((await _healthz(client))["channels"])
        return bodies

    before, after = asyncio.run(main())
    assert before == {"slow": {"status": "starting"}, "fake": {"status": "ok"}}
    assert after["slow"] == {"status": "ok"}


def test_retry_delay_doubles_up_to_its_cap() -> None:
    assert [retry_delay(n, 1.0, 60.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert retry_delay(1, 0.5, 0.2) == 0.2
