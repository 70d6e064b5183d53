"""Accepted means stored: a WeChat message answered ``success`` before its answer was ready
survives a crash, and its answer is pushed exactly once after the restart.

The in-process tests run the real ASGI app under uvicorn (SQLite, and PostgreSQL when
``YXBY_TEST_DATABASE_URL`` is set); the last one runs ``yxby serve`` in a subprocess, holds
the SQLite file's write lock so the dialogue cannot finish, and kills it with SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.app import App, AppSettings, build_app
from bot.channels.wechat import WeChatAdapter
from bot.server import ServerOptions, create_asgi
from bot.types import Incoming, MessageKind, Reply
from handoff.conversations import DeferredMessage
from handoff.db import make_engine, upgrade
from handoff.models import OutboxMessage
from knowledge import KnowledgeBase
from tests.conftest import MovableClock
from tests.fakes.wechat_api import FakeWeChatApi
from tests.servers import LiveServer, eventually
from tests.test_wechat import (
    APPID,
    HOTLINE_QUESTION,
    OPENID,
    SECRET,
    TOKEN,
    WeChatSide,
    make_config,
    message_xml,
    sign,
)

# ----------------------------------------------------------------------------- helpers


class StuckEngine:
    """An engine whose answer never comes in this process: it waits until the test lets it
    die (as the work of a killed process does), then raises."""

    def __init__(self) -> None:
        self.calls = 0
        self.dead = threading.Event()

    def handle(self, message: Incoming) -> Sequence[Reply]:
        self.calls += 1
        self.dead.wait(timeout=10)
        raise RuntimeError("the process died before the answer was ready")


class SlowOnceEngine:
    """Answers from a script; the first call takes *delay* seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0

    def handle(self, message: Incoming) -> Sequence[Reply]:
        self.calls += 1
        if self.calls == 1:
            time.sleep(self.delay)
        return [Reply(f"答复：{message.text}")]


@contextlib.contextmanager
def write_locked(db_url: str) -> Iterator[None]:
    """Another client holds the write lock on the table of owed answers (on SQLite: the
    whole file) until the block ends."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()  # SQLite: BEGIN IMMEDIATE takes the write lock
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("LOCK TABLE deferred_message IN EXCLUSIVE MODE")
            else:
                conn.exec_driver_sql("SELECT 1")
            try:
                yield
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def owed_rows(app: App) -> list[DeferredMessage]:
    with app.db.sessions() as session:
        return list(session.scalars(select(DeferredMessage).order_by(DeferredMessage.id)))


def outbox_count(app: App) -> int:
    with app.db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


@pytest.fixture
def fake_api() -> Iterator[FakeWeChatApi]:
    with FakeWeChatApi(appid=APPID, secret=SECRET) as api:
        yield api


@pytest.fixture
def start(
    clock: MovableClock, fake_api: FakeWeChatApi
) -> Iterator[Callable[..., tuple[WeChatAdapter, WeChatSide, contextlib.ExitStack]]]:
    """``start(app, engine=…, **adapter_or_config_options)``: a running server for *app*;
    close the returned stack to stop it."""
    stacks: list[contextlib.ExitStack] = []

    def make(
        app: App, *, engine: Any = None, **options: Any
    ) -> tuple[WeChatAdapter, WeChatSide, contextlib.ExitStack]:
        adapter_keys = {"accept_within", "silent_until", "recover_every"}
        kwargs = {k: options.pop(k) for k in list(options) if k in adapter_keys}
        adapter = WeChatAdapter(app, make_config(fake_api, **options), engine=engine, **kwargs)
        stack = contextlib.ExitStack()
        stacks.append(stack)
        asgi = create_asgi(app, [adapter], ServerOptions(run_tick=False, worker_interval=0.05))
        server = stack.enter_context(LiveServer(asgi))
        http = stack.enter_context(httpx.Client(base_url=server.url, timeout=15))
        return adapter, WeChatSide(http, TOKEN, clock), stack

    yield make
    for stack in reversed(stacks):
        stack.close()


# ----------------------------------------------------------------------------- in process


def test_answer_deferred_when_the_server_died_is_pushed_once_after_restart(
    start: Callable[..., Any],
    app: App,
    db_url: str,
    clock: MovableClock,
    kb: KnowledgeBase,
    fake_api: FakeWeChatApi,
) -> None:
    stuck = StuckEngine()
    _, wechat, first = start(app, engine=stuck, reply_budget=0.2, recover_every=300)
    message = message_xml("text", created=wechat.now(), msg_id=9001, Content=HOTLINE_QUESTION)
    assert wechat.send(message) is None  # "success": the answer is owed …
    (row,) = owed_rows(app)  # … and stored before WeChat heard it
    assert (row.msg_id, row.user_key, row.done_at) == (f"{OPENID}:9001", OPENID, None)
    assert row.message["text"] == HOTLINE_QUESTION
    # the crash: the deferred work dies with the process, the server goes away
    stuck.dead.set()
    first.close()
    assert fake_api.sent == [] and outbox_count(app) == 0
    assert app.inbox.owed("wechat") == 1

    clock.advance(seconds=5)
    again = build_app(AppSettings.from_env(database_url=db_url), clock, kb=kb)
    try:
        _, wechat2, _ = start(again, engine=again.dialogue, reply_budget=0.2)
        sent = fake_api.wait_for_sent(1)
        assert sent[0]["touser"] == OPENID and "12345" in sent[0]["text"]["content"]
        eventually(lambda: again.inbox.owed("wechat") == 0)
        assert wechat2.send(message) is None  # a late retry: answered by that push
        time.sleep(0.3)  # a few worker rounds: nothing else goes out
        assert len(fake_api.sent) == 1 and outbox_count(again) == 1
        (done,) = owed_rows(again)
        assert done.done_at is not None and done.attempts == 1
    finally:
        again.close()
    assert stuck.calls == 1


def test_a_message_that_cannot_be_stored_gets_no_success(
    start: Callable[..., Any], app: App, db_url: str, fake_api: FakeWeChatApi
) -> None:
    engine = SlowOnceEngine(delay=0.6)
    _, wechat, _ = start(app, engine=engine, reply_budget=0.2, accept_within=0.5, silent_until=0.8)
    message = message_xml("text", created=wechat.now(), msg_id=9101, Content="社保怎么转移")
    with write_locked(db_url):
        started = time.monotonic()
        response = wechat.post(message)
        took = time.monotonic() - started
    # not stored, so not "success": no answer before WeChat gives up, and it sends it again
    assert response.status_code == 503 and response.text != "success"
    assert took >= 0.8
    assert owed_rows(app) == []
    time.sleep(0.3)  # the first dialogue run ends; its answer is not pushed
    # WeChat's retry finds the database back: this time the answer comes in time
    assert wechat.send(message) == "答复：社保怎么转移"
    time.sleep(0.2)
    assert fake_api.sent == [] and outbox_count(app) == 0 and owed_rows(app) == []


def test_retries_while_the_answer_is_owed_get_success_and_one_push(
    start: Callable[..., Any], app: App, fake_api: FakeWeChatApi
) -> None:
    engine = SlowOnceEngine(delay=0.8)
    _, wechat, _ = start(app, engine=engine, reply_budget=0.2)
    message = message_xml("text", created=wechat.now(), msg_id=9201, Content="办理许可证")
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(wechat.send, [message] * 3))
    assert answers == [None, None, None]
    sent = fake_api.wait_for_sent(1)
    assert sent[0]["text"]["content"] == "答复：办理许可证"
    assert wechat.send(message) is None
    eventually(lambda: app.inbox.owed("wechat") == 0)
    time.sleep(0.2)
    assert len(fake_api.sent) == 1 and engine.calls == 1 and len(owed_rows(app)) == 1


# ----------------------------------------------------------------------------- the inbox


def test_owed_answers_are_claimed_under_a_lease_and_closed_with_their_push(
    app: App, clock: MovableClock
) -> None:
    inbox = app.inbox
    for n in (1, 2, 3):
        record = {"channel": "wechat", "user_key": f"u{n}", "text": f"问题{n}", "msg_id": f"m{n}"}
        inbox.defer("wechat", f"m{n}", f"u{n}", record, received_at=clock(), within=2.0)
    inbox.defer("wechat", "m1", "u1", {}, received_at=clock())  # stored twice: one row
    assert inbox.owed("wechat") == 3 and inbox.answered_later("wechat", "m2", "k")
    assert not inbox.answered_later("wechat", "m9", "k")

    claim: dict[str, Any] = {"older_than": timedelta(seconds=3), "lease": timedelta(minutes=2)}
    assert inbox.claim_deferred("wechat", **claim) == []  # too young: its own process works
    clock.advance(seconds=4)
    first = inbox.claim_deferred("wechat", limit=2, exclude=["m1"], **claim)
    assert [w.msg_id for w in first] == ["m2", "m3"] and first[0].message["text"] == "问题2"
    assert [w.msg_id for w in inbox.claim_deferred("wechat", **claim)] == ["m1"]
    assert inbox.claim_deferred("wechat", **claim) == []  # a second process gets nothing

    payload: dict[str, Any] = {"text": "答复", "choices": [], "buttons": [], "ref": None}
    assert inbox.complete_deferred("wechat", "m2", "u2", payload, "wechat:reply:m2")
    assert not inbox.complete_deferred("wechat", "m2", "u2", payload, "wechat:reply:m2")
    inbox.complete_deferred("wechat", "m3", "u3", None, "wechat:reply:m3")  # nothing to say
    assert inbox.owed("wechat") == 1 and outbox_count(app) == 1

    clock.advance(minutes=3)  # the claimer of m1 died: after its lease another takes it
    (retry,) = inbox.claim_deferred("wechat", **claim)
    assert (retry.msg_id, retry.attempts) == ("m1", 2)


def test_storing_gives_up_at_its_deadline_while_the_database_is_locked(
    app: App, db_url: str, clock: MovableClock
) -> None:
    from sqlalchemy.exc import OperationalError

    assert app.inbox.owed("wechat") == 0  # connected before the lock
    with write_locked(db_url):
        started = time.monotonic()
        with pytest.raises(OperationalError):
            app.inbox.defer("wechat", "m1", "u1", {}, received_at=clock(), within=0.3)
        assert 0.25 <= time.monotonic() - started < 2.0
    assert app.inbox.owed("wechat") == 0
    app.inbox.defer("wechat", "m1", "u1", {}, received_at=clock(), within=0.3)
    assert app.inbox.owed("wechat") == 1


def test_a_store_ready_only_after_its_deadline_is_rolled_back(
    app: App, clock: MovableClock
) -> None:
    # the lock came free just too late (or the thread started late): a store committed
    # then would be pushed to a user whose message was answered "not stored"
    def slow(_: object) -> None:
        time.sleep(0.35)

    with pytest.raises(TimeoutError):
        app.inbox.defer("wechat", "m1", "u1", {}, received_at=clock(), within=0.3, also=slow)
    assert app.inbox.owed("wechat") == 0
    app.inbox.defer("wechat", "m1", "u1", {}, received_at=clock(), within=0.3)
    assert app.inbox.owed("wechat") == 1


def test_stored_messages_replay_as_they_came() -> None:
    from datetime import UTC, datetime

    from bot.channels.wechat.inbound import incoming_of_record, record_of

    msg = Incoming(
        "wechat",
        OPENID,
        "",
        kind=MessageKind.LOCATION,
        msg_id=f"{OPENID}:1",
        at=datetime(2026, 11, 23, 2, 0, tzinfo=UTC),
        extra={"label": "天津港保税区"},
    )
    assert incoming_of_record(record_of(msg)) == msg


# ----------------------------------------------------------------------------- kill -9

SERVE_MESSAGES = 6
SERVE_BUDGET = 0.3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FileWriteLock:
    """Another client of the SQLite file holding its write lock (``BEGIN IMMEDIATE``)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=0, isolation_level=None)
        self.held = False

    def take(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                self.held = True
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.0005)

    def release(self) -> None:
        if self.held:
            self.conn.execute("ROLLBACK")
            self.held = False

    def close(self) -> None:
        self.release()
        self.conn.close()


def _count(path: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn:
        return int(conn.execute(sql).fetchone()[0])


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill_9_while_answers_are_owed_then_every_answer_is_pushed_once(
    tmp_path: Path, fake_api: FakeWeChatApi
) -> None:
    path = tmp_path / "yxby.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YXBY_")}
    env |= {
        "YXBY_DATABASE_URL": f"sqlite:///{path}",
        "YXBY_DATA_DIR": str(tmp_path / "data"),
        "YXBY_WECHAT_TOKEN": TOKEN,
        "YXBY_WECHAT_APPID": APPID,
        "YXBY_WECHAT_SECRET": SECRET,
        "YXBY_WECHAT_API_BASE": fake_api.base_url,
        "YXBY_WECHAT_REPLY_BUDGET": str(SERVE_BUDGET),
    }
    yxby = Path(sys.executable).with_name("yxby")
    command = (
        [str(yxby)] if yxby.exists() else [sys.executable, "-c", "from bot.cli import main; main()"]
    )
    command += ["serve", "--port", str(port), "--log-level", "warning"]
    log = (tmp_path / "serve.log").open("ab")
    base = f"http://127.0.0.1:{port}"

    def serve() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text("utf-8")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            return False

        eventually(ready, timeout=40)  # /healthz also loads the knowledge base
        return proc

    def user(n: int) -> str:
        return f"{OPENID[:-3]}{n:03d}"

    def deliver(n: int) -> str:
        """WeChat's side: post message *n*, and again (3 times at most) while unanswered."""
        for _ in range(4):
            timestamp, nonce = str(int(time.time())), f"kill{n:05d}{time.monotonic_ns()}"
            params = {"signature": sign(TOKEN, timestamp, nonce), "timestamp": timestamp,
                      "nonce": nonce}  # fmt: skip
            body = message_xml(
                "text", created=1_700_000_000 + n, user=user(n), msg_id=8_000_000 + n,
                Content=HOTLINE_QUESTION,
            )  # fmt: skip
            answer = httpx.post(f"{base}/wechat", params=params, content=body, timeout=15)
            if answer.status_code == 200:
                return "success" if answer.text == "success" else "passive"
        return "unanswered"

    lock = FileWriteLock(path)
    first = serve()
    try:
        lock.take()  # the database is busy: no dialogue can finish
        with ThreadPoolExecutor(SERVE_MESSAGES) as pool:
            futures = [pool.submit(deliver, n) for n in range(SERVE_MESSAGES)]
            time.sleep(SERVE_BUDGET + 0.3)  # every answer misses its budget
            # moments of a busy database: owed answers are stored in them, dialogues
            # (slower to retry the lock) rarely get through
            while not all(f.done() for f in futures):
                lock.release()
                time.sleep(0.01)
                lock.take()
                time.sleep(0.05)
            outcomes = [f.result() for f in futures]
        succeeded = {user(n) for n, o in enumerate(outcomes) if o == "success"}
        passive = {user(n) for n, o in enumerate(outcomes) if o == "passive"}
        owed_at_kill = _count(path, "SELECT count(*) FROM deferred_message WHERE done_at IS NULL")
        pushed_before = len(fake_api.sent)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
        lock.close()

    second = serve()
    try:
        with contextlib.suppress(AssertionError):
            fake_api.wait_for_sent(SERVE_MESSAGES, timeout=20)
        time.sleep(1.5)  # a few outbox rounds: nothing is pushed twice
        owed_after = _count(path, "SELECT count(*) FROM deferred_message WHERE done_at IS NULL")
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=15)
        except subprocess.TimeoutExpired:
            second.kill()
        log.close()

    users = [m["touser"] for m in fake_api.sent]
    figures = (
        f"sent {SERVE_MESSAGES}, success {len(succeeded)}, answered directly {len(passive)}, "
        f"owed at kill {owed_at_kill}, "
        f"pushed before kill {pushed_before}, pushed in all {len(users)}, "
        f"duplicates {len(users) - len(set(users))}, owed after restart {owed_after}"
    )
    print(figures)
    assert "unanswered" not in outcomes, figures
    assert owed_at_kill >= 1, figures  # the crash really left answers owed
    # every "success" is pushed exactly once; a message answered directly is not pushed
    assert sorted(users) == sorted(succeeded), figures
    assert all("12345" in m["text"]["content"] for m in fake_api.sent), figures
    assert owed_after == 0, figures
