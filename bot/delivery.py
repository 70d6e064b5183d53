"""The outbox worker: sends queued pushes through their channel, exactly once each.

Messages are claimed in small batches under a lease (``handoff.outbox.claim``), sent by the
channel's :class:`Sender` outside any transaction, then marked sent, retried with
exponential backoff (or the channel's ``retry_after``), held until the user writes again,
or failed with the reason kept for operators. Safe with several workers: a claimed message
belongs to one worker until its lease runs out, and a worker stops sending a batch before
its lease could run out. Pushes to one recipient keep their order: when one of them has to
wait, the later ones of the batch wait with it.

A crash after a message was committed and before it was sent loses nothing (it is sent
after the restart, once); a crash between the channel accepting a message and the worker
recording it sends that one message again after the lease — no chat API offers a way to
tell, so delivery is at least once in that window and exactly once everywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from handoff.outbox import (
    LEASE_SECONDS,
    HoldForUser,
    PermanentFailure,
    RetryLater,
    claim,
    mark_failed,
    mark_held,
    mark_retry,
    mark_sent,
    release,
)

__all__ = ["DeliveryReport", "OutboxWorker", "Sender"]

log = logging.getLogger("yxby.delivery")


class Sender(Protocol):
    """Delivers one outbox payload to one recipient of a channel.

    Raise ``RetryLater`` for transient failures, ``PermanentFailure`` when it can never
    work, ``HoldForUser`` when the channel needs the user to write first. A sender that
    delivers a payload in several messages may record its progress in *payload* itself
    (e.g. ``parts_sent``); the worker stores the payload with a retry, so the next attempt
    does not send again what already went out.
    """

    async def send(self, recipient: str, payload: dict[str, Any]) -> None: ...


@dataclass
class DeliveryReport:
    """What one pass of the worker did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    held: int = 0
    deferred: int = 0  # handed back unsent: behind a waiting push, or the lease ran short

    @property
    def handled(self) -> int:
        """Messages whose state changed in this pass."""
        return self.sent + self.retried + self.failed + self.held


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
        send_timeout: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.senders = dict(senders)
        self.clock = clock
        self.batch = batch
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.send_timeout = min(send_timeout, LEASE_SECONDS / 2)
        self.passes = 0  # completed passes (tests wait on it instead of sleeping)

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
        if not self.senders:
            return report
        jobs = await asyncio.to_thread(self._claim)
        # stop sending while the lease still certainly holds (a slow channel must not let
        # another worker take, and send again, what this one is still sending)
        deadline = time.monotonic() + LEASE_SECONDS - self.send_timeout
        waiting: dict[tuple[str, str], float] = {}  # recipient → delay of its pending push
        for job in jobs:
            key = (job.channel, job.recipient)
            if time.monotonic() > deadline:
                await asyncio.to_thread(self._release, job, 0.0)
                report.deferred += 1
            elif key in waiting:
                # an earlier push to this recipient has to wait: keep the order, wait with it
                await asyncio.to_thread(self._release, job, waiting[key])
                report.deferred += 1
            else:
                outcome = await self._deliver(job)
                if outcome[0] == "retried":
                    waiting[key] = outcome[2]
                await asyncio.to_thread(self._record, job, *outcome)
                setattr(report, outcome[0], getattr(report, outcome[0]) + 1)
        self.passes += 1
        return report

    async def _deliver(self, job: _Job) -> tuple[str, str, float]:
        sender = self.senders[job.channel]
        try:
            await asyncio.wait_for(sender.send(job.recipient, job.payload), self.send_timeout)
        except RetryLater as exc:
            if job.attempts >= self.max_attempts:
                return "failed", f"重试 {job.attempts} 次后仍失败：{exc.reason}", 0.0
            delay = exc.after if exc.after is not None else self._backoff(job.attempts)
            return "retried", exc.reason, delay
        except PermanentFailure as exc:
            return "failed", exc.reason, 0.0
        except HoldForUser as exc:
            return "held", exc.reason, 0.0
        except TimeoutError:
            if job.attempts >= self.max_attempts:
                return "failed", f"重试 {job.attempts} 次后仍超时", 0.0
            return "retried", f"发送超时（{self.send_timeout:g} 秒）", self._backoff(job.attempts)
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
                at = now + timedelta(seconds=delay)
                mark_retry(session, job.id, at, reason, payload=job.payload)
            elif outcome == "held":
                mark_held(session, job.id, reason)
            else:
                log.warning("outbox message %s failed permanently: %s", job.id, reason)
                mark_failed(session, job.id, reason)

    def _release(self, job: _Job, delay: float) -> None:
        with self.sessions.begin() as session:
            release(session, job.id, self.clock() + timedelta(seconds=delay))

    async def run(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Deliver until *stop* is set, polling every *interval* seconds when idle."""
        while not stop.is_set():
            try:
                report = await self.run_once()
            except Exception:
                log.exception("outbox pass failed")
                report = DeliveryReport()
            if report.handled == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
