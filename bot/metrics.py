"""``/metrics`` in Prometheus' text format, for one process or several.

Counted as they happen (per process; summed over processes in multiprocess mode, when
``PROMETHEUS_MULTIPROC_DIR`` is set, as ``yxby serve --workers N`` does):

* ``yxby_http_requests_total{channel,status}`` and ``yxby_http_request_seconds{channel}`` —
  every request, by the channel its path belongs to (``wechat``, ``telegram`` …, or
  ``console``, ``healthz``, ``metrics``, ``other``);
* ``yxby_dialogue_turns_total{outcome}`` — what came of each user turn when it was handled
  (a ``dialogue_turn`` row committed: answered, ticket, handoff, none, smalltalk …).

Read from the database at each scrape (bounded: a slow database makes the scrape say so in
``yxby_metrics_database_ok`` rather than hang):

* ``yxby_outbox_messages{status}``, ``yxby_outbox_oldest_pending_seconds``;
* ``yxby_sla_clocks_due`` (active, past due, not yet marked breached) and
  ``yxby_sla_clocks_breached`` (active and breached);
* ``yxby_knowledge_entries``, ``yxby_knowledge_problems``, ``yxby_knowledge_loaded`` (1 when
  the knowledge base is loaded and has entries), ``yxby_knowledge_reload_ok`` (0 while a
  broken edit is refused) and ``yxby_knowledge_loaded_timestamp_seconds``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handoff.db import read_only
from handoff.models import OutboxMessage, OutboxStatus, SlaClock

if TYPE_CHECKING:
    from bot.app import App

__all__ = [
    "DIALOGUE_TURNS",
    "MULTIPROC_ENV",
    "REQUESTS",
    "REQUEST_SECONDS",
    "MetricsMiddleware",
    "metrics_endpoint",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SCRAPE_DB_TIMEOUT = 2.0
"""Seconds the database part of a scrape may take."""

REQUESTS = Counter(
    "yxby_http_requests", "HTTP requests answered, by channel and status", ["channel", "status"]
)
REQUEST_SECONDS = Histogram(
    "yxby_http_request_seconds",
    "Time to answer an HTTP request, by channel",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DIALOGUE_TURNS = Counter(
    "yxby_dialogue_turns", "User turns handled by the dialogue engine, by outcome", ["outcome"]
)


_NEW_TURNS = "yxby_new_turns"


def _note_turns(session: Session, *_: Any) -> None:
    # turns are flushed as "input" and given their outcome later in the transaction:
    # remember the new ones and count what they say when the transaction commits
    from handoff.conversations import DialogueTurn

    new = [obj for obj in session.new if isinstance(obj, DialogueTurn)]
    if new:
        session.info.setdefault(_NEW_TURNS, []).extend(new)


def _count_turns(session: Session) -> None:
    try:
        for turn in session.info.pop(_NEW_TURNS, ()):
            outcome = getattr(turn.outcome, "value", turn.outcome)
            DIALOGUE_TURNS.labels(outcome=str(outcome)).inc()
    except Exception:  # counting must never break a committed turn
        logging.getLogger("yxby.metrics").exception("cannot count dialogue turns")


def _forget_turns(session: Session) -> None:
    session.info.pop(_NEW_TURNS, None)


def _listen_turns() -> None:
    for name, listener in (
        ("before_flush", _note_turns),
        ("after_commit", _count_turns),
        ("after_rollback", _forget_turns),
    ):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


_listen_turns()


class MetricsMiddleware:
    """ASGI middleware: count and time every HTTP request by the channel of its path."""

    def __init__(self, app: ASGIApp, channels: Mapping[str, str]) -> None:
        self.app = app
        self.channels = dict(channels)

    def channel_of(self, path: str) -> str:
        """The channel label of *path*."""
        found = self.channels.get(path)
        if found is not None:
            return found
        if path == "/healthz":
            return "healthz"
        if path == "/metrics":
            return "metrics"
        if path.startswith(("/console", "/static", "/t/", "/login", "/logout")):
            return "console"
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        channel = self.channel_of(scope.get("path", ""))
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            REQUEST_SECONDS.labels(channel=channel).observe(time.perf_counter() - started)
            REQUESTS.labels(channel=channel, status=str(status)).inc()


class _DatabaseCollector(Collector):
    """Outbox, SLA-clock and knowledge gauges, read when scraped."""

    def __init__(self, app: App, pool: ThreadPoolExecutor) -> None:
        self.app = app
        self.pool = pool

    def collect(self) -> Iterable[GaugeMetricFamily]:
        ok = GaugeMetricFamily(
            "yxby_metrics_database_ok",
            "1 when the database answered the scrape's queries in time",
        )
        try:
            figures = self.pool.submit(self._read).result(timeout=SCRAPE_DB_TIMEOUT)
        except FutureTimeout:
            figures = None
        except Exception:  # an unreachable database: the gauge says so
            figures = None
        ok.add_metric([], 0.0 if figures is None else 1.0)
        yield ok
        if figures is not None:
            by_status, oldest, due, breached = figures
            outbox = GaugeMetricFamily(
                "yxby_outbox_messages", "Outbox messages by status", labels=["status"]
            )
            for status in OutboxStatus:
                outbox.add_metric([status.value], float(by_status.get(status.value, 0)))
            yield outbox
            yield GaugeMetricFamily(
                "yxby_outbox_oldest_pending_seconds",
                "Age of the oldest pending push (0 when none is pending)",
                value=oldest,
            )
            yield GaugeMetricFamily(
                "yxby_sla_clocks_due", "Active deadlines past due, not yet breached", value=due
            )
            yield GaugeMetricFamily(
                "yxby_sla_clocks_breached", "Active deadlines that are breached", value=breached
            )
        kb = self.app.__dict__.get("kb")  # never load it for a scrape
        entries = float(len(kb)) if kb is not None else 0.0
        problems = float(len(kb.problems)) if kb is not None else 0.0
        yield GaugeMetricFamily(
            "yxby_knowledge_entries", "Knowledge entries being served", value=entries
        )
        yield GaugeMetricFamily(
            "yxby_knowledge_problems", "Knowledge entries left out as broken", value=problems
        )
        yield GaugeMetricFamily(
            "yxby_knowledge_loaded",
            "1 when the knowledge base is loaded and has entries",
            value=1.0 if entries else 0.0,
        )
        reload_status = getattr(kb, "status", None)  # a LiveKnowledge: how the last reload went
        if reload_status is not None:
            yield GaugeMetricFamily(
                "yxby_knowledge_reload_ok",
                "0 while the last edit of the knowledge files is broken (the old index serves)",
                value=1.0 if reload_status.ok else 0.0,
            )
            built = reload_status.loaded_at
            loaded = built.timestamp() if built else 0.0
            yield GaugeMetricFamily(
                "yxby_knowledge_loaded_timestamp_seconds",
                "When the index being served was built (Unix time)",
                value=loaded,
            )

    def _read(self) -> tuple[dict[str, int], float, float, float]:
        now = self.app.clock()
        with self.app.db.sessions() as s:
            read_only(s)
            rows = s.execute(
                select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
            ).all()
            oldest = s.scalar(
                select(func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.status == OutboxStatus.PENDING
                )
            )
            due = s.scalar(
                select(func.count())
                .select_from(SlaClock)
                .where(
                    SlaClock.active.is_(True),
                    SlaClock.due_at <= now,
                    SlaClock.breached_at.is_(None),
                )
            )
            breached = s.scalar(
                select(func.count())
                .select_from(SlaClock)
                .where(SlaClock.active.is_(True), SlaClock.breached_at.is_not(None))
            )
        by_status = {str(getattr(st, "value", st)): int(n) for st, n in rows}
        age = 0.0
        if oldest is not None:
            if oldest.tzinfo is None:  # pragma: no cover - UTCDateTime is always aware
                oldest = oldest.replace(tzinfo=now.tzinfo)
            age = max(0.0, (now - oldest).total_seconds())
        return by_status, age, float(due or 0), float(breached or 0)


def _registry(app: App, pool: ThreadPoolExecutor) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (REQUESTS, REQUEST_SECONDS, DIALOGUE_TURNS):
            registry.register(collector)
    registry.register(_DatabaseCollector(app, pool))
    return registry


def metrics_endpoint(app: App) -> Callable[[Request], Any]:
    """The ``GET /metrics`` handler for *app*."""
    import asyncio

    pool = ThreadPoolExecutor(2, thread_name_prefix="metrics")
    registry = _registry(app, pool)

    async def metrics(_: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


def mark_process_dead(pid: int) -> None:
    """Forget a stopped worker's live gauges (multiprocess mode; counters are kept)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
