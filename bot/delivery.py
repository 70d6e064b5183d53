"""The outbox worker: sends queued pushes through their channel, exactly once each.

Messages are claimed in small batches under a lease (``handoff.outbox.claim``), sent by the
channel's :class:`Sender` outside any transaction, then marked sent, retried with
exponential backoff (or the channel's ``retry_after``), held until the user writes again,
or failed with the reason kept for operators. Safe with several workers: a claimed message
belongs to one worker until its lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from handoff.outbox import (
    HoldForUser,
    PermanentFailure,
    RetryLater,
    claim,
    mark_failed,
    mark_held,
    mark_retry,
    mark_sent,
)

__all__ = ["DeliveryReport", "OutboxWorker", "Sender"]

log = logging.getLogger("yxby.delivery")


class Sender(Protocol):
    """Delivers one outbox payload to one recipient of a channel.

    Raise ``RetryLater`` for transient failures, ``PermanentFailure`` when it can never
    work, ``HoldForUser`` when the channel needs the user to write first.
    """

    async def send(self, recipient: str, payload: dict[str, Any]) -> None: ...


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    held: int = 0


@dataclass(frozen=True)
class _Job:
    id: int
    channel: str
    recipient: str
    payload: dict[str, Any]
    attempts: int


class OutboxWorker:
    """Claims and sends outbox messages for the channels it has senders for."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        senders: Mapping[str, Sender],
        clock: Callable[[], datetime],
        *,
        batch: int = 20,
        max_attempts: int = 10,
        backoff_base: float = 2.0,
        backoff_cap: float = 600.0,
    ) -> None:
        self.sessions = sessions
        self.senders = dict(senders)
        self.clock = clock
        self.batch = batch
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap

    def _claim(self) -> list[_Job]:
        with self.sessions.begin() as session:
            rows = claim(session, self.clock(), self.batch, channels=self.senders)
            return [
                _Job(row.id, row.channel, row.recipient, dict(row.payload), row.attempts)
                for row in rows
            ]

    def _backoff(self, attempts: int) -> float:
        delay = min(self.backoff_cap, self.backoff_base ** max(attempts - 1, 0))
        return delay * (0.8 + 0.4 * random.random())

    async def run_once(self) -> DeliveryReport:
        """Claim one batch and deliver it."""
        report = DeliveryReport()
        jobs = await asyncio.to_thread(self._claim)
        for job in jobs:
            outcome = await self._deliver(job)
            await asyncio.to_thread(self._record, job, *outcome)
            setattr(report, outcome[0], getattr(report, outcome[0]) + 1)
        return report

    async def _deliver(self, job: _Job) -> tuple[str, str, float]:
        sender = self.senders[job.channel]
        try:
            await sender.send(job.recipient, job.payload)
        except RetryLater as exc:
            if job.attempts >= self.max_attempts:
                return "failed", f"重试 {job.attempts} 次后仍失败：{exc.reason}", 0.0
            delay = exc.after if exc.after is not None else self._backoff(job.attempts)
            return "retried", exc.reason, delay
        except PermanentFailure as exc:
            return "failed", exc.reason, 0.0
        except HoldForUser as exc:
            return "held", exc.reason, 0.0
        except Exception as exc:  # a bug in a sender must not stop delivery of the rest
            log.exception("sender for %s failed on message %s", job.channel, job.id)
            if job.attempts >= self.max_attempts:
                return "failed", f"{type(exc).__name__}: {exc}", 0.0
            return "retried", f"{type(exc).__name__}: {exc}", self._backoff(job.attempts)
        return "sent", "", 0.0

    def _record(self, job: _Job, outcome: str, reason: str, delay: float) -> None:
        now = self.clock()
        with self.sessions.begin() as session:
            if outcome == "sent":
                mark_sent(session, job.id, now)
            elif outcome == "retried":
                mark_retry(session, job.id, now + timedelta(seconds=delay), reason)
            elif outcome == "held":
                mark_held(session, job.id, reason)
            else:
                log.warning("outbox message %s failed permanently: %s", job.id, reason)
                mark_failed(session, job.id, reason)

    async def run(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Deliver until *stop* is set, polling every *interval* seconds when idle."""
        while not stop.is_set():
            try:
                report = await self.run_once()
            except Exception:
                log.exception("outbox pass failed")
                report = DeliveryReport()
            if report.sent + report.retried + report.failed + report.held == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
