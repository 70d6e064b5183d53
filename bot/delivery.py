"""The outbox worker: sends queued pushes through their channel, exactly once each.

Messages are claimed in small batches under a lease (``handoff.outbox.claim``), sent by the
channel's :class:`Sender` outside any transaction, then marked sent, retried with capped,
jittered exponential backoff (or the channel's ``retry_after``) until the message's horizon
(``DeliverySettings.horizon_hours`` after it was queued), held until the user writes again,
or failed with the reason kept for operators. Only at the horizon, or for a permanent
failure, or after a second timeout, is a push FAILED; every failed push and every push
stuck longer than ``stuck_alert_minutes`` is reported once to the department's 负责人 and
the 政务办 (``handoff.outbox.queue_alerts``, run at the end of every pass).

A send that times out is "maybe sent": no chat API says whether it arrived, so it is resent
once, and a second timeout fails it as "可能已送达" (reported). Safe with several workers: a
claimed message belongs to one worker until its lease runs out, and a worker stops sending
a batch before its lease could run out. Pushes to one recipient keep their order: while one
of them is retried, the later ones wait (and say so in ``last_error``); a failed or held one
does not block the rest (see ``docs/delivery.md``). Each channel is throttled to its
``rate_per_second`` (``DeliverySettings``; a token bucket allowing a one-second burst), so
a notice to thousands of enterprises does not run into the platforms' rate limits.

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
    AlertReport,
    DeliverySettings,
    HoldForUser,
    PermanentFailure,
    RetryLater,
    SendTimedOut,
    claim,
    horizon_of,
    mark_failed,
    mark_held,
    mark_retry,
    mark_sent,
    queue_alerts,
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
    alerts: int = 0  # alert messages queued about failed or stuck pushes

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
    timeouts: int
    horizon: datetime


@dataclass(frozen=True)
class _Outcome:
    kind: str  # a DeliveryReport counter: sent, retried, failed, held
    reason: str = ""
    at: datetime | None = None  # the next attempt, for "retried"
    timed_out: bool = False


class _Bucket:
    """A token bucket: *rate* sends per second, bursts of up to one second's worth."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.at = now

    def wait(self, now: float) -> float:
        """Take one send; the seconds to wait before it may go (0: at once)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        delay = (1.0 - self.tokens) / self.rate
        self.tokens = 0.0
        self.at = now + delay
        return delay


class OutboxWorker:
    """Claims and sends outbox messages for the channels it has senders for.

    *settings* (``config/delivery.yaml``, ``App.delivery``) give the horizon, the backoff
    cap and the send timeout; *clock* is the only source of time; *alerts* turns the
    alert pass off (for a second worker that should only send).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        senders: Mapping[str, Sender],
        clock: Callable[[], datetime],
        settings: DeliverySettings | None = None,
        *,
        batch: int = 20,
        backoff_base: float = 2.0,
        alerts: bool = True,
        jitter: Callable[[], float] = random.random,
        timer: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.sessions = sessions
        self.senders = dict(senders)
        self.clock = clock
        self.settings = settings or DeliverySettings()
        self.batch = batch
        self.backoff_base = backoff_base
        self.alerts = alerts
        self.jitter = jitter
        self.send_timeout = min(self.settings.send_timeout_seconds, LEASE_SECONDS / 2)
        self.passes = 0  # completed passes (tests wait on it instead of sleeping)
        self.timer = timer
        self.sleep = sleep
        self.buckets = {
            channel: _Bucket(rate, timer())
            for channel, rate in self.settings.rate_per_second.items()
            if rate > 0
        }
        self.throttled = 0.0  # seconds spent waiting for the rate limits

    def _claim(self) -> list[_Job]:
        with self.sessions.begin() as session:
            rows = claim(session, self.clock(), self.batch, channels=self.senders)
            return [
                _Job(
                    row.id,
                    row.channel,
                    row.recipient,
                    dict(row.payload),
                    row.attempts,
                    row.timeouts,
                    horizon_of(row, self.settings),
                )
                for row in rows
            ]

    def _backoff(self, attempts: int) -> float:
        """Seconds before the next attempt: doubling from 1 s, ±20 % jitter, capped."""
        delay = self.backoff_base ** max(attempts - 1, 0) * (0.8 + 0.4 * self.jitter())
        return min(self.settings.backoff_cap_seconds, delay)

    async def run_once(self) -> DeliveryReport:
        """Claim one batch, deliver it, then queue the alerts that are due."""
        report = DeliveryReport()
        if not self.senders:
            return report
        jobs = await asyncio.to_thread(self._claim)
        # stop sending while the lease still certainly holds (a slow channel must not let
        # another worker take, and send again, what this one is still sending)
        deadline = time.monotonic() + LEASE_SECONDS - self.send_timeout
        waiting: dict[tuple[str, str], datetime] = {}  # recipient → next try of its head
        for job in jobs:
            key = (job.channel, job.recipient)
            if time.monotonic() > deadline:
                await asyncio.to_thread(self._release, job, None)
                report.deferred += 1
            elif key in waiting:
                # an earlier push to this recipient has to wait: keep the order, wait with it
                await asyncio.to_thread(self._release, job, waiting[key])
                report.deferred += 1
            else:
                await self._throttle(job.channel)
                outcome = await self._deliver(job)
                if outcome.kind == "retried" and outcome.at is not None:
                    waiting[key] = outcome.at
                await asyncio.to_thread(self._record, job, outcome)
                setattr(report, outcome.kind, getattr(report, outcome.kind) + 1)
        if self.alerts:
            report.alerts = (await asyncio.to_thread(self._alert)).alerts
        self.passes += 1
        return report

    async def _throttle(self, channel: str) -> None:
        """Wait until *channel*'s rate limit allows one more send."""
        bucket = self.buckets.get(channel)
        if bucket is None:
            return
        delay = bucket.wait(self.timer())
        if delay > 0:
            self.throttled += delay
            await self.sleep(delay)

    async def _deliver(self, job: _Job) -> _Outcome:
        sender = self.senders[job.channel]
        try:
            await asyncio.wait_for(sender.send(job.recipient, job.payload), self.send_timeout)
        except RetryLater as exc:
            return self._retry(job, exc.reason, exc.after)
        except PermanentFailure as exc:
            return _Outcome("failed", exc.reason)
        except HoldForUser as exc:
            return _Outcome("held", exc.reason)
        except (TimeoutError, SendTimedOut) as exc:
            return self._timed_out(job, exc)
        except Exception as exc:  # a bug in a sender must not stop delivery of the rest
            log.exception("sender for %s failed on message %s", job.channel, job.id)
            return self._retry(job, f"{type(exc).__name__}: {exc}", None)
        return _Outcome("sent")

    def _retry(
        self, job: _Job, reason: str, after: float | None, *, timed_out: bool = False
    ) -> _Outcome:
        """Retry later — the last try at the horizon; past it, fail."""
        now = self.clock()
        if now >= job.horizon:
            hours = self.settings.horizon_hours
            return _Outcome(
                "failed",
                f"{hours:g} 小时内尝试 {job.attempts} 次仍未送达，已放弃：{reason}",
                timed_out=timed_out,
            )
        delay = after if after is not None else self._backoff(job.attempts)
        at = min(now + timedelta(seconds=delay), job.horizon)
        return _Outcome("retried", reason, at, timed_out)

    def _timed_out(self, job: _Job, exc: BaseException) -> _Outcome:
        """A timeout may have delivered the message: resend once, then give up."""
        if isinstance(exc, SendTimedOut):
            what = exc.reason
            if "可能已送达" not in what:
                what = f"发送超时（{what}），可能已送达"
        else:
            what = f"发送超时（{self.send_timeout:g} 秒无应答），可能已送达"
        if job.timeouts >= 1:
            return _Outcome(
                "failed",
                f"再次超时，不再重发：{what}；渠道无法查询是否送达，为免重复请向对方确认",
                timed_out=True,
            )
        return self._retry(job, f"{what}；渠道无法查询是否送达，将重发一次", None, timed_out=True)

    def _record(self, job: _Job, outcome: _Outcome) -> None:
        now = self.clock()
        with self.sessions.begin() as session:
            if outcome.kind == "sent":
                mark_sent(session, job.id, now)
            elif outcome.kind == "retried":
                at = outcome.at or now
                mark_retry(
                    session,
                    job.id,
                    at,
                    outcome.reason,
                    payload=job.payload,
                    timed_out=outcome.timed_out,
                )
            elif outcome.kind == "held":
                mark_held(session, job.id, outcome.reason)
            else:
                log.warning("outbox message %s failed: %s", job.id, outcome.reason)
                mark_failed(session, job.id, outcome.reason, timed_out=outcome.timed_out)

    def _release(self, job: _Job, at: datetime | None) -> None:
        with self.sessions.begin() as session:
            release(session, job.id, at or self.clock())

    def _alert(self) -> AlertReport:
        with self.sessions.begin() as session:
            report = queue_alerts(session, self.clock(), self.settings, channels=self.senders)
        if report.failed or report.stuck:
            log.warning("delivery alerts: %s", report)
        return report

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
