"""The ASGI application behind ``yxby serve``: channel webhooks, health, and background work.

One Starlette app hosts every channel adapter's routes; its lifespan starts the adapters,
the outbox worker (pushes to every channel that has a sender) and the periodic SLA tick.
Everything is built from the :class:`bot.app.App` passed in — no globals.

Channels start independently: each adapter's ``startup`` runs under a supervisor that,
when it fails (an unreachable API, say), logs why and tries again in the background with
a capped backoff until it works or the server stops. Meanwhile the other channels serve,
the failed channel's pushes wait in the outbox (its sender says ``RetryLater``) and
``/healthz`` shows the channel as ``degraded`` with the reason.

``/healthz`` answers within :data:`HEALTH_DB_TIMEOUT` seconds whatever the database is doing:
its checks only read (on SQLite they never wait for the write lock), and a check that does
not finish in time is reported as slow (``"slow": ["database"]``, status ``degraded``) while
it goes on behind. ``/metrics`` serves Prometheus metrics (:mod:`bot.metrics`).

Several processes (``yxby serve --workers N``, on PostgreSQL) each run this app: pushes are
claimed under row locks (``SKIP LOCKED``), the SLA tick and the handoff expiry lock the rows
they change the same way, and shared values (the WeChat token …) live in ``App.shared``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bot.app import App
from bot.delivery import OutboxWorker, Sender
from bot.metrics import MetricsMiddleware, metrics_endpoint
from handoff.db import NOT_AT_HEAD, current_revision, head_revision, sqlite_write_lock_free
from handoff.models import OutboxMessage
from yxby.errors import ConfigError, DatabaseError, YxbyError

__all__ = [
    "HEALTH_DB_TIMEOUT",
    "ChannelAdapter",
    "ChannelState",
    "ChannelStatus",
    "ChannelUnavailable",
    "ServerOptions",
    "asgi_from_env",
    "create_asgi",
    "retry_delay",
]

HEALTH_DB_TIMEOUT = 0.8
"""Seconds ``/healthz`` waits for its database check before it reports the database slow."""
THREADS = 8
"""Threads per server process for blocking work (see :attr:`ServerOptions.threads`);
``YXBY_THREADS`` overrides it."""
THREADS_ENV = "YXBY_THREADS"


def threads_from_env(environ: Mapping[str, str] | None = None) -> int:
    """The thread count of ``YXBY_THREADS`` (1–256), else :data:`THREADS`."""
    raw = (os.environ if environ is None else environ).get(THREADS_ENV, "").strip()
    if not raw:
        return THREADS
    if not raw.isdigit() or not 1 <= int(raw) <= 256:
        raise ConfigError("expected a whole number of threads from 1 to 256", key=THREADS_ENV)
    return int(raw)


log = logging.getLogger("yxby.server")


class ChannelAdapter(Protocol):
    """A channel: its HTTP routes, how it pushes, and what it does at start and stop.

    ``startup`` may fail (raise :class:`ChannelUnavailable` with a reason to show, or any
    error): the server then calls it again later, so it must leave nothing half-started.
    Until it succeeds the adapter's routes and sender must cope (answer 503, raise
    ``RetryLater``). ``shutdown`` is called once at the end, whether startup succeeded or not.
    """

    name: str

    def routes(self) -> Sequence[BaseRoute]: ...

    def sender(self) -> Sender | None: ...

    async def startup(self) -> None: ...

    async def shutdown(self) -> None: ...


class ChannelUnavailable(YxbyError):
    """A channel cannot start now (its API is unreachable, refuses the credentials…).

    ``reason`` is shown in ``/healthz`` and the log, so it must not hold secrets.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChannelState(StrEnum):
    """Where a channel's start-up stands."""

    STARTING = "starting"  # the first attempt is under way
    OK = "ok"  # started
    DEGRADED = "degraded"  # an attempt failed; retrying in the background


@dataclass(frozen=True)
class ChannelStatus:
    """A channel's state as ``/healthz`` shows it."""

    state: ChannelState
    detail: str = ""
    attempts: int = 0
    retry_at: float | None = None  # time.monotonic() of the next attempt

    def as_json(self, now: float) -> dict[str, object]:
        """``{"status": …}``; when degraded also the reason, attempts and seconds to retry."""
        out: dict[str, object] = {"status": self.state.value}
        if self.state is ChannelState.DEGRADED:
            out["detail"] = self.detail
            out["attempts"] = self.attempts
            if self.retry_at is not None:
                out["retry_in"] = round(max(0.0, self.retry_at - now), 1)
        return out


def retry_delay(attempt: int, first: float, cap: float) -> float:
    """Seconds to wait after failed *attempt* (1, 2, …): *first*, doubling, at most *cap*."""
    return float(min(cap, first * 2 ** max(attempt - 1, 0)))


@dataclass(frozen=True)
class ServerOptions:
    """Background work settings (tests turn the loops off or speed them up).

    A channel whose start-up fails is tried again after ``startup_retry_first`` seconds,
    doubling up to ``startup_retry_cap``; the server starts serving once every channel's
    first attempt ended, or after ``startup_wait`` seconds (the slow ones go on behind).
    """

    run_worker: bool = True
    worker_interval: float = 1.0
    run_tick: bool = True
    tick_interval: float = 60.0
    startup_retry_first: float = 1.0
    startup_retry_cap: float = 60.0
    startup_wait: float = 5.0
    reload_knowledge: bool = True
    """Run the knowledge reloader (SIGHUP, console button, midnight roll-over)."""
    watch_knowledge: bool = True
    """Also reload when the knowledge or lexicon files change (``YXBY_KB_WATCH=0`` turns off)."""
    close_app: bool = False
    """Close the app's connections when the server stops (a worker built by
    :func:`asgi_from_env` owns its app)."""
    threads: int = field(default_factory=threads_from_env)
    """Threads for the blocking work (dialogue turns, database calls, pushes). More than
    cores, since much of their time is spent waiting for the database or a chat API — but
    not many more: every thread that wakes up competes for the GIL, and on two cores 24
    threads carried about a third fewer messages per second than 8 (docs/load.md)."""


class _Supervisor:
    """Starts one adapter, and keeps trying in the background until it starts."""

    def __init__(self, adapter: ChannelAdapter, opts: ServerOptions) -> None:
        self.adapter = adapter
        self.opts = opts
        self.status = ChannelStatus(ChannelState.STARTING)
        self.first_attempt = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Call ``startup`` until it succeeds or *stop* is set; the status says how it went."""
        self.status = ChannelStatus(ChannelState.STARTING)
        self.first_attempt.clear()
        attempt = 0
        while not stop.is_set():
            attempt += 1
            try:
                await self.adapter.startup()
            except Exception as exc:  # any failure leaves the channel degraded, not the server
                reason = _describe(exc)
                delay = retry_delay(
                    attempt, self.opts.startup_retry_first, self.opts.startup_retry_cap
                )
                self.status = ChannelStatus(
                    ChannelState.DEGRADED, reason, attempt, time.monotonic() + delay
                )
                if isinstance(exc, ChannelUnavailable):
                    log.warning(
                        "channel %s not started (attempt %d), retrying in %gs: %s",
                        self.adapter.name, attempt, delay, reason,
                    )  # fmt: skip
                else:
                    log.exception(
                        "channel %s not started (attempt %d), retrying in %gs",
                        self.adapter.name, attempt, delay,
                    )  # fmt: skip
            else:
                if attempt > 1:
                    log.info("channel %s started after %d attempts", self.adapter.name, attempt)
                self.status = ChannelStatus(ChannelState.OK, attempts=attempt)
                return
            finally:
                self.first_attempt.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)


def _describe(exc: Exception) -> str:
    # our own errors say what is wrong; others are named only (they may carry secrets)
    if isinstance(exc, ChannelUnavailable):
        return exc.reason
    if isinstance(exc, YxbyError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}（详见日志）"


def create_asgi(
    app: App, adapters: Sequence[ChannelAdapter], options: ServerOptions | None = None
) -> Starlette:
    """The ASGI app for *app* with *adapters*' routes and the background tasks."""
    opts = options or ServerOptions()
    senders = {a.name: s for a in adapters if (s := a.sender()) is not None}
    worker = OutboxWorker(app.db.sessions, senders, app.clock, app.delivery)

    head = head_revision()  # read the migration scripts once, not on every probe
    supervisors = {a.name: _Supervisor(a, opts) for a in adapters}

    probe = _HealthProbe(app, head)

    async def healthz(_: Request) -> JSONResponse:
        checks: dict[str, object] = {}
        ok = True
        slow: list[str] = []
        try:
            found = await probe.check(HEALTH_DB_TIMEOUT)
        except Exception as exc:  # report, don't crash the probe (nor leak connection details)
            detail = f": {exc}" if isinstance(exc, YxbyError) else ""
            checks["database"] = f"error: {type(exc).__name__}{detail}"
            ok = False
        else:
            if found is None:
                waited = probe.waiting_for()
                checks["database"] = (
                    f"slow: no answer within {HEALTH_DB_TIMEOUT:g} s "
                    f"(the check has waited {waited:.1f} s)"
                )
                slow.append("database")
            else:
                checks["database"], checks["outbox"], writer = found
                if writer is not None:  # a held write lock: writes wait, reads do not
                    checks["database_writer"] = writer
        live = app.live_kb
        knowledge: dict[str, object] = {"entries": len(app.kb)}
        if live is not None:  # a reloading base: how the last reload went (error: file:line)
            knowledge.update(live.status.as_json())
        elif app.kb.problems:  # broken entries are left out, the rest is served: say which
            knowledge["problems"] = [str(p) for p in app.kb.problems[:20]]
        checks["knowledge"] = knowledge
        if not len(app.kb):
            ok = False
        now = time.monotonic()
        checks["channels"] = {name: s.status.as_json(now) for name, s in supervisors.items()}
        checks["pid"] = os.getpid()
        if slow:
            checks["slow"] = slow
        checks["status"] = ("degraded" if slow else "ok") if ok else "unavailable"
        return JSONResponse(checks, status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        from concurrent.futures import ThreadPoolExecutor

        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(opts.threads, thread_name_prefix="yxby")
        )
        live = app.live_kb if opts.reload_knowledge else None
        if live is not None:  # file changes, SIGHUP and the console reload the knowledge base
            live.start(watch=opts.watch_knowledge)
            _on_sighup(live.request_reload)
        stop = asyncio.Event()
        starting = [asyncio.create_task(s.run(stop)) for s in supervisors.values()]
        with contextlib.suppress(TimeoutError):  # a slow channel goes on starting behind
            await asyncio.wait_for(
                asyncio.gather(*(s.first_attempt.wait() for s in supervisors.values())),
                timeout=opts.startup_wait,
            )
        tasks: list[asyncio.Task[None]] = []
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
            for task in starting:  # one still in its attempt is stopped there
                task.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task
            for adapter in reversed(adapters):
                try:
                    await adapter.shutdown()
                except Exception:
                    log.exception("channel %s did not shut down cleanly", adapter.name)
            if live is not None:
                _on_sighup(None)
                await asyncio.to_thread(live.stop)
            probe.close()
            if opts.close_app:
                app.close()

    from bot.console import routes as console_routes

    # the channels' webhooks first: every message is matched against the routes before it
    routes: list[BaseRoute] = []
    channel_paths: dict[str, str] = {}
    for adapter in adapters:
        for route in adapter.routes():
            routes.append(route)
            path = getattr(route, "path", None)
            if isinstance(path, str):
                channel_paths[path] = adapter.name
    taken = set(channel_paths)
    for route in [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint(app), methods=["GET"]),
        *console_routes(app),
    ]:
        if getattr(route, "path", None) in taken:
            raise ValueError(f"route {getattr(route, 'path', '')} is taken by a channel")
        routes.append(route)
    asgi = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(MetricsMiddleware, channels=channel_paths)],
    )
    asgi.state.worker = worker
    asgi.state.app = app
    return asgi


def _on_sighup(handler: Callable[[], None] | None) -> None:
    """Reload the knowledge base on ``SIGHUP`` (only where signals can be caught: the main
    thread of a Unix process, as under ``yxby serve``; a test server in a thread skips it)."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
        if handler is None:
            loop.remove_signal_handler(signal.SIGHUP)
        else:
            loop.add_signal_handler(signal.SIGHUP, handler)
            log.info("SIGHUP reloads the knowledge base")


class _HealthProbe:
    """The database part of ``/healthz``, in its own thread, never more than one at a time.

    A check that does not end in time goes on behind; the next probes report it slow
    (with how long it has been waiting) instead of starting another one.
    """

    def __init__(self, app: App, head: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.app = app
        self.head = head
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="healthz")
        self._running: asyncio.Future[tuple[str, dict[str, int], str | None]] | None = None
        self._since = 0.0

    async def check(self, timeout: float) -> tuple[str, dict[str, int], str | None] | None:
        """``(database, outbox counts, writer)``, or ``None`` when not done in *timeout*."""
        if self._running is None or self._running.done():
            loop = asyncio.get_running_loop()
            self._running = loop.run_in_executor(self._pool, _database_health, self.app, self.head)
            self._since = time.monotonic()
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), timeout)
        except TimeoutError:
            return None

    def waiting_for(self) -> float:
        """Seconds the running check has been waiting."""
        return time.monotonic() - self._since

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _database_health(app: App, head: str) -> tuple[str, dict[str, int], str | None]:
    """The schema revision (raises unless reachable and at *head*), outbox counts, and on
    SQLite whether another connection holds the write lock (asked without waiting)."""
    engine = app.db.engine
    revision = current_revision(engine)
    if revision != head:
        raise DatabaseError(f"{NOT_AT_HEAD}（当前：{revision or '未初始化'}，需要：{head}）")
    with engine.connect().execution_options(yxby_read_only=True) as conn:
        rows = conn.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        ).all()
    counts = {str(getattr(status, "value", status)): int(n) for status, n in rows}
    writer: str | None = None
    free = sqlite_write_lock_free(engine)
    if free is not None:
        writer = "ok" if free else "busy: another connection holds the SQLite write lock"
    return f"ok (revision {revision})", counts, writer


async def _tick_loop(app: App, stop: asyncio.Event, interval: float) -> None:
    while not stop.is_set():
        try:
            # reminders, breaches, and the overdue apology to the enterprise
            report = await asyncio.to_thread(app.tickets.tick, app.clock())
            log.debug("sla tick: %s", report)
        except Exception:
            log.exception("sla tick failed")
        try:
            # requests for a person that nobody took in time become tickets
            await asyncio.to_thread(app.live.expire)
        except Exception:
            log.exception("handoff expiry failed")
        try:
            await asyncio.to_thread(app.shared.prune)  # expired shared values
        except Exception:
            log.exception("pruning shared values failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


SERVE_OPTIONS_ENV = "YXBY_SERVE_OPTIONS"
"""What ``yxby serve`` passes to each worker process (JSON: ``telegram_polling`` …)."""


def asgi_from_env() -> Starlette:
    """The served app of one worker process of ``yxby serve --workers N`` (a uvicorn
    factory): the app and adapters from the ``YXBY_*`` environment, owned by the server."""
    import json

    from bot.app import build_app
    from bot.channels.registry import adapters_from_env
    from bot.logs import configure_logging

    options = json.loads(os.environ.get(SERVE_OPTIONS_ENV) or "{}")
    configure_logging(options.get("log_level", "info"), options.get("log_format", "text"))
    app = build_app()
    try:
        app.db  # noqa: B018 - refuse to start on a database that is not migrated
        adapters = adapters_from_env(app, telegram_polling=bool(options.get("telegram_polling")))
    except BaseException:
        app.close()
        raise
    watch = bool(options.get("watch_knowledge", True))
    return create_asgi(app, adapters, ServerOptions(close_app=True, watch_knowledge=watch))
