"""The ASGI application behind ``yxby serve``: channel webhooks, health, and background work.

One Starlette app hosts every channel adapter's routes; its lifespan starts the adapters,
the outbox worker (pushes to every channel that has a sender) and the periodic SLA tick.
Everything is built from the :class:`bot.app.App` passed in — no globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bot.app import App
from bot.delivery import OutboxWorker, Sender
from handoff.db import NOT_AT_HEAD, current_revision, head_revision
from handoff.models import OutboxMessage
from yxby.errors import DatabaseError, YxbyError

__all__ = ["ChannelAdapter", "ServerOptions", "create_asgi"]

log = logging.getLogger("yxby.server")


class ChannelAdapter(Protocol):
    """A channel: its HTTP routes, how it pushes, and what it does at start and stop."""

    name: str

    def routes(self) -> Sequence[BaseRoute]: ...

    def sender(self) -> Sender | None: ...

    async def startup(self) -> None: ...

    async def shutdown(self) -> None: ...


@dataclass(frozen=True)
class ServerOptions:
    """Background work settings (tests turn the loops off or speed them up)."""

    run_worker: bool = True
    worker_interval: float = 1.0
    run_tick: bool = True
    tick_interval: float = 60.0


def create_asgi(
    app: App, adapters: Sequence[ChannelAdapter], options: ServerOptions | None = None
) -> Starlette:
    """The ASGI app for *app* with *adapters*' routes and the background tasks."""
    opts = options or ServerOptions()
    senders = {a.name: s for a in adapters if (s := a.sender()) is not None}
    worker = OutboxWorker(app.db.sessions, senders, app.clock, app.delivery)

    head = head_revision()  # read the migration scripts once, not on every probe

    async def healthz(_: Request) -> JSONResponse:
        checks: dict[str, object] = {}
        ok = True
        try:
            checks["database"], checks["outbox"] = await asyncio.to_thread(
                _database_health, app, head
            )
        except Exception as exc:  # report, don't crash the probe (nor leak connection details)
            detail = f": {exc}" if isinstance(exc, YxbyError) else ""
            checks["database"] = f"error: {type(exc).__name__}{detail}"
            ok = False
        knowledge: dict[str, object] = {"entries": len(app.kb)}
        if app.kb.problems:  # broken entries are left out, the rest is served: say which
            knowledge["problems"] = [str(p) for p in app.kb.problems[:20]]
        checks["knowledge"] = knowledge
        if not len(app.kb):
            ok = False
        checks["channels"] = [a.name for a in adapters]
        checks["status"] = "ok" if ok else "unavailable"
        return JSONResponse(checks, status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        for adapter in adapters:
            await adapter.startup()
        if opts.run_worker and senders:
            tasks.append(asyncio.create_task(worker.run(stop, opts.worker_interval)))
        if opts.run_tick:
            tasks.append(asyncio.create_task(_tick_loop(app, stop, opts.tick_interval)))
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await task
            for adapter in reversed(adapters):
                await adapter.shutdown()

    from bot.console import routes as console_routes

    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"]), *console_routes(app)]
    for adapter in adapters:
        routes.extend(adapter.routes())
    asgi = Starlette(routes=routes, lifespan=lifespan)
    asgi.state.worker = worker
    asgi.state.app = app
    return asgi


def _database_health(app: App, head: str) -> tuple[str, dict[str, int]]:
    """The schema revision (raises unless reachable and at *head*) and outbox counts."""
    revision = current_revision(app.db.engine)
    if revision != head:
        raise DatabaseError(f"{NOT_AT_HEAD}（当前：{revision or '未初始化'}，需要：{head}）")
    with app.db.engine.connect() as conn:
        rows = conn.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        ).all()
    counts = {str(getattr(status, "value", status)): int(n) for status, n in rows}
    return f"ok (revision {revision})", counts


async def _tick_loop(app: App, stop: asyncio.Event, interval: float) -> None:
    from handoff.sla import tick

    while not stop.is_set():
        try:
            report = await asyncio.to_thread(tick, app.db.sessions, app.clock(), app.sla)
            log.debug("sla tick: %s", report)
        except Exception:
            log.exception("sla tick failed")
        try:
            # requests for a person that nobody took in time become tickets
            await asyncio.to_thread(app.live.expire)
        except Exception:
            log.exception("handoff expiry failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
