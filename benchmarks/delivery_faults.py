"""Delivery under faults: how many pushes were accepted, delivered, duplicated and lost.

Every scenario runs the real senders (wechatpy and python-telegram-bot clients) against the
fake WeChat and Telegram APIs of ``tests/fakes`` — real HTTP servers on 127.0.0.1 — reached
through a small TCP proxy that can cut the line or make it slow. The outbox worker's clock is
moved, not slept, except where the API itself is slow (that costs real seconds).

* ``outage``: both APIs unreachable for 11 minutes (the old worker gave up after about 8.5),
  then back; pushes queued before and during the outage, three per recipient.
* ``outage_3_days``: Telegram unreachable for 71 hours (just inside the 72-hour horizon).
* ``slow_api``: WeChat answers each send after 8 seconds (the issue's measurement: 12
  deliveries for 10 pushes, because the client gave up at 5 s and the worker sent again).
* ``kill_9``: ``yxby serve`` killed while WeChat answers are owed, then restarted (the same
  procedure as ``tests/test_wechat_durable.py``), counting what WeChat received.

Run with ``python -m benchmarks.run --only delivery_faults`` (about three minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["report", "run"]


# ----------------------------------------------------------------------------- the line


class Line:
    """A TCP proxy on 127.0.0.1 in front of *target*: up, cut, or slow (seconds per request).

    Cut: connections are accepted and closed at once (the client sees a reset). Slow: each
    connection's first bytes are held for *delay* real seconds before they are forwarded —
    the API does the work, but too late for a client with a shorter timeout.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.cut = False
        self.delay = 0.0
        self.slow_path = b""  # with a delay: only requests for this path are slow
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the API base the clients are given."""
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> Line:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, self.delay), daemon=True).start()

    def _pipe(self, client: socket.socket, delay: float) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=30)
        except OSError:
            client.close()
            return

        def forward(src: socket.socket, dst: socket.socket, hold: float) -> None:
            first = True
            try:
                while chunk := src.recv(65536):
                    if first and hold and self.slow_path in chunk.split(b"\r\n", 1)[0]:
                        time.sleep(hold)
                    first = False
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=forward, args=(upstream, client, 0.0), daemon=True)
        back.start()
        forward(client, upstream, delay)
        back.join(timeout=60)
        client.close()
        upstream.close()


# ----------------------------------------------------------------------------- counting


@dataclass
class Tally:
    """What became of the pushes of one scenario."""

    accepted: int = 0  # queued in the outbox (or, for kill_9: answered "success")
    delivered: int = 0  # distinct pushes the API received
    deliveries: int = 0  # API receipts, duplicates included
    duplicated: int = 0  # deliveries beyond the first of a push
    lost: int = 0  # accepted but never delivered (failed, or still waiting at the end)
    out_of_order: int = 0  # recipients whose pushes arrived in another order
    failed: int = 0  # outbox rows FAILED
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def count(self, queued: dict[str, list[str]], received: dict[str, list[str]]) -> None:
        """Fill in from the texts queued and received per recipient."""
        self.accepted = sum(len(v) for v in queued.values())
        seen: Counter[str] = Counter()
        for recipient, texts in received.items():
            seen.update(texts)
            wanted = [t for t in queued.get(recipient, []) if t in texts]
            firsts = list(dict.fromkeys(texts))
            if firsts != wanted:
                self.out_of_order += 1
        self.deliveries = sum(seen.values())
        self.delivered = sum(1 for texts in queued.values() for t in texts if seen[t])
        self.duplicated = sum(n - 1 for n in seen.values() if n > 1)
        self.lost = self.accepted - self.delivered


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@contextlib.contextmanager
def _app(clock: Callable[[], datetime]) -> Iterator[Any]:
    from bot.app import AppSettings, build_app
    from handoff.db import make_engine, upgrade

    with tempfile.TemporaryDirectory(prefix="yxby-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'yxby.sqlite3'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        app = build_app(AppSettings.from_env(database_url=url), clock)
        try:
            yield app
        finally:
            app.close()


def _queue(app: Any, channel: str, recipient: str, text: str) -> None:
    from bot.types import Reply, reply_payload
    from handoff.conversations import get_or_create_identity
    from handoff.outbox import enqueue

    with app.db.begin() as session:
        identity = get_or_create_identity(session, channel, recipient)
        identity.last_inbound_at = app.clock()  # inside WeChat's 48-hour window
        payload = reply_payload(Reply(text))
        enqueue(session, channel, recipient, "bench", payload, f"bench:{text}", now=app.clock())


def _failed(app: Any) -> int:
    from sqlalchemy import func, select

    from handoff.models import OutboxMessage, OutboxStatus

    with app.db.sessions() as session:
        n = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.FAILED)
        )
        return int(n or 0)


# ----------------------------------------------------------------------------- scenarios


async def _outage(hours: float, step: float, channels: tuple[str, ...]) -> Tally:
    from bot.channels.telegram import TelegramAdapter, TelegramSettings
    from bot.channels.wechat import WeChatAdapter, WeChatConfig
    from bot.delivery import OutboxWorker
    from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI
    from tests.fakes.wechat_api import FakeWeChatApi

    tally = Tally()
    started = time.perf_counter()
    clock = _Clock()
    with (
        _app(clock) as app,
        FakeWeChatApi(appid="wx-bench", secret="bench-secret") as wechat_api,
        FakeTelegramAPI() as telegram_api,
    ):
        wechat_host = wechat_api.base_url.removeprefix("http://").split(":")
        telegram_host = telegram_api.base_url.removeprefix("http://").split(":")
        with (
            Line((wechat_host[0], int(wechat_host[1]))) as wechat_line,
            Line((telegram_host[0], int(telegram_host[1]))) as telegram_line,
        ):
            wechat = WeChatAdapter(
                app,
                WeChatConfig(
                    token="bench", appid="wx-bench", secret="bench-secret", api_base=wechat_line.url
                ),
            )
            telegram = TelegramAdapter(
                app, TelegramSettings(token=TOKEN, api_base=telegram_line.url)
            )
            await telegram.startup()
            senders: dict[str, Any] = {}
            if "wechat" in channels:
                senders["wechat"] = wechat.sender()
            if "telegram" in channels:
                senders["telegram"] = telegram.sender()
            worker = OutboxWorker(app.db.sessions, senders, clock, app.delivery)
            queued: dict[str, list[str]] = {}
            wechat_line.cut = telegram_line.cut = True
            outage_end = clock() + timedelta(hours=hours)
            n = 0
            while clock() < outage_end:
                if n < 18:  # 18 pushes to 6 people, queued while the APIs are down
                    channel = channels[n % len(channels)]
                    recipient = f"o-bench-{n % 6}" if channel == "wechat" else str(7000 + n % 6)
                    text = f"推送{n:02d}"
                    _queue(app, channel, recipient, text)
                    queued.setdefault(f"{channel}:{recipient}", []).append(text)
                    n += 1
                await worker.run_once()
                clock.advance(step)
            failed_during = _failed(app)
            wechat_line.cut = telegram_line.cut = False
            for _ in range(8):  # recovery: every backoff has run out after the cap
                clock.advance(app.delivery.backoff_cap_seconds)
                await worker.run_once()
            await telegram.shutdown()
            received: dict[str, list[str]] = {}
            for message in wechat_api.sent:
                received.setdefault(f"wechat:{message['touser']}", []).append(
                    message["text"]["content"]
                )
            for message in telegram_api.messages():
                chat = str(message["chat"]["id"])
                received.setdefault(f"telegram:{chat}", []).append(message["text"])
            tally.count(queued, received)
            tally.failed = _failed(app)
            tally.notes.append(f"FAILED during the outage: {failed_during}")
    tally.seconds = time.perf_counter() - started
    return tally


async def _slow_api(pushes: int, delay: float) -> Tally:
    from bot.channels.wechat import WeChatAdapter, WeChatConfig
    from bot.delivery import OutboxWorker
    from tests.fakes.wechat_api import FakeWeChatApi

    tally = Tally()
    started = time.perf_counter()
    clock = _Clock()
    with _app(clock) as app, FakeWeChatApi(appid="wx-bench", secret="bench-secret") as api:
        host, port = api.base_url.removeprefix("http://").split(":")
        with Line((host, int(port))) as line:
            adapter = WeChatAdapter(
                app,
                WeChatConfig(token="bench", appid="wx-bench", secret="bench-secret",
                             api_base=line.url),
            )  # fmt: skip
            worker = OutboxWorker(app.db.sessions, {"wechat": adapter.sender()}, clock,
                                  app.delivery)  # fmt: skip
            queued: dict[str, list[str]] = {}
            for i in range(pushes):
                text = f"慢接口推送{i:02d}"
                _queue(app, "wechat", f"o-slow-{i}", text)
                queued[f"o-slow-{i}"] = [text]
            line.delay = delay
            line.slow_path = b"/message/custom/send"
            deadline = time.monotonic() + pushes * (delay + 2) * 3
            while time.monotonic() < deadline:
                await worker.run_once()
                clock.advance(app.delivery.backoff_cap_seconds)
                with app.db.sessions() as session:
                    from sqlalchemy import func, select

                    from handoff.models import OutboxMessage, OutboxStatus

                    left = session.scalar(
                        select(func.count())
                        .select_from(OutboxMessage)
                        .where(OutboxMessage.status == OutboxStatus.PENDING)
                    )
                if not left:
                    break
            time.sleep(delay + 1)  # requests still in the line reach the API (and count)
            received: dict[str, list[str]] = {}
            for message in api.sent:
                received.setdefault(message["touser"], []).append(message["text"]["content"])
            tally.count(queued, received)
            tally.failed = _failed(app)
            tally.notes.append(f"API delay {delay:g} s per send, {pushes} pushes")
    tally.seconds = time.perf_counter() - started
    return tally


def _kill_9() -> Tally:
    """The kill -9 procedure of tests/test_wechat_durable.py, run by pytest; its figures."""
    import re
    import subprocess
    import sys

    tally = Tally()
    started = time.perf_counter()
    test = (
        "tests/test_wechat_durable.py::"
        "test_kill_9_while_answers_are_owed_then_every_answer_is_pushed_once"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-s", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    found = re.search(
        r"sent (\d+), success (\d+), .*owed at kill (\d+), .*pushed in all (\d+), "
        r"duplicates (\d+), owed after restart (\d+)",
        done.stdout,
    )
    if found is None:
        tally.notes.append(f"the kill -9 procedure did not report: {done.stdout[-500:]}")
    else:
        sent, success, owed, pushed, duplicates, left = map(int, found.groups())
        tally.accepted, tally.delivered, tally.duplicated = success, pushed, duplicates
        tally.deliveries = pushed + duplicates
        tally.lost = success - pushed
        tally.notes.append(
            f"{sent} messages sent, {success} answered success, {owed} answers owed at the "
            f"kill, {left} owed after the restart; pytest exit {done.returncode}"
        )
    tally.seconds = time.perf_counter() - started
    return tally


def run() -> dict[str, Any]:
    """Run every scenario; the tallies as plain data."""
    import logging

    logging.getLogger("yxby").setLevel(logging.ERROR)  # the alerts of a long outage are many
    results: dict[str, Any] = {}
    scenarios: dict[str, Callable[[], Tally]] = {
        "outage_11_minutes": lambda: asyncio.run(_outage(11 / 60, 30, ("wechat", "telegram"))),
        "outage_3_days_telegram": lambda: asyncio.run(_outage(71, 1800, ("telegram",))),
        "slow_api_8s": lambda: asyncio.run(_slow_api(10, 8.0)),
        "kill_9": _kill_9,
    }
    for name, scenario in scenarios.items():
        tally = scenario()
        results[name] = tally.__dict__ | {"seconds": round(tally.seconds, 1)}
    return results


def report(results: dict[str, Any]) -> str:
    """The tallies as a table."""
    head = f"{'scenario':<24}{'accepted':>9}{'delivered':>10}{'dup':>5}{'lost':>6}"
    head += f"{'order':>7}{'failed':>8}{'s':>7}"
    lines = [head]
    for name, t in results.items():
        if not isinstance(t, dict):  # the runner's own figures (elapsed_s)
            continue
        lines.append(
            f"{name:<24}{t['accepted']:>9}{t['delivered']:>10}{t['duplicated']:>5}{t['lost']:>6}"
            f"{t['out_of_order']:>7}{t['failed']:>8}{t['seconds']:>7}"
        )
        lines += [f"    {note}" for note in t["notes"]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
