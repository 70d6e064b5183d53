"""Several server processes on one database: ``yxby serve --workers N`` and shared state.

Real ``yxby serve`` processes on PostgreSQL (each test gets its own schema), the fake WeChat
API on 127.0.0.1 counting token fetches and pushes. A MsgId retried to the other process is
answered once; the access token is fetched once for every process (database and Redis);
background jobs in two processes send every push once; SQLite refuses more than one worker.
Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from sqlalchemy import func, select

from bot.app import App, AppSettings, build_app, system_clock
from handoff.conversations import DeferredMessage, DialogueTurn
from handoff.models import OutboxMessage, OutboxStatus, SharedValue
from handoff.outbox import enqueue
from tests.conftest import MovableClock
from tests.fakes.wechat_api import FakeWeChatApi
from tests.servers import eventually

YXBY = str(Path(sys.executable).with_name("yxby"))
WECHAT_TOKEN = "yxby-wechat-token"
APPID = "wx0123456789abcdef"
APP_SECRET = "yxby-test-secret"
ACCOUNT = "gh_yxby00000001"
QUESTION = "企业可以打什么热线反映问题"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty PostgreSQL schema of its own (skipped without PostgreSQL)."""
    if not os.environ.get("YXBY_TEST_DATABASE_URL"):
        pytest.skip("YXBY_TEST_DATABASE_URL 未设置，跳过多进程 PostgreSQL 测试")
    url: str = request.getfixturevalue("_pg_schemas").create(migrate=True)
    return url


@pytest.fixture
def wechat_api() -> Iterator[FakeWeChatApi]:
    with FakeWeChatApi(appid=APPID, secret=APP_SECRET) as api:
        yield api


def serve_env(db_url: str, tmp_path: Path, api: FakeWeChatApi, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YXBY_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env |= {
        "YXBY_DATABASE_URL": db_url,
        "YXBY_DATA_DIR": str(tmp_path / "data"),
        "YXBY_WECHAT_TOKEN": WECHAT_TOKEN,
        "YXBY_WECHAT_APPID": APPID,
        "YXBY_WECHAT_SECRET": APP_SECRET,
        "YXBY_WECHAT_API_BASE": api.base_url,
    }
    env |= extra
    return env


class Served:
    """``yxby serve`` in a subprocess on a free port; stopped with SIGINT (bounded)."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [YXBY, "serve", "--port", str(self.port), *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def health(self) -> dict[str, Any] | None:
        assert self.process.poll() is None, self.log.read_text("utf-8")
        try:
            response = httpx.get(self.url + "/healthz", timeout=5)
        except httpx.TransportError:
            return None
        found: dict[str, Any] = response.json()
        return found if response.status_code == 200 else None

    def wait_ready(self, pids: int = 1) -> None:
        seen: set[int] = set()

        def ready() -> bool:
            found = self.health()
            if found is not None and found["channels"].get("wechat") == {"status": "ok"}:
                seen.add(int(found["pid"]))
            return len(seen) >= pids

        try:
            eventually(ready, timeout=120)
        except AssertionError:
            raise AssertionError(f"not ready: {self.log.read_text('utf-8')[-3000:]}") from None

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.log.read_text("utf-8")


def signed(now: float, nonce: str) -> dict[str, str]:
    timestamp = str(int(now))
    signature = hashlib.sha1("".join(sorted((WECHAT_TOKEN, timestamp, nonce))).encode())
    return {"signature": signature.hexdigest(), "timestamp": timestamp, "nonce": nonce}


def post_text(url: str, openid: str, content: str, msg_id: int) -> str | None:
    """Post a signed text message; the passive reply's content, ``None`` for ``success``."""
    params = signed(time.time(), f"n{msg_id}{uuid.uuid4().hex[:6]}") | {"openid": openid}
    body = (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )
    response = httpx.post(url + "/wechat", params=params, content=body.encode(), timeout=15)
    assert response.status_code == 200, response.text
    if response.text == "success":
        return None
    reply = {child.tag: child.text or "" for child in ElementTree.fromstring(response.text)}
    return reply["Content"]


def open_app(db_url: str) -> App:
    return build_app(AppSettings.from_env(database_url=db_url), system_clock)


def count(app: App, model: Any, *where: Any) -> int:
    with app.db.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def queue_pushes(app: App, users: list[str]) -> None:
    """Open each user's push window and queue one push to each."""
    for user in users:
        app.inbox.user_wrote("wechat", user)
    with app.db.begin() as session:
        for user in users:
            enqueue(
                session,
                "wechat",
                user,
                "test",
                {"text": f"通知 {user}"},
                f"t:{user}",
                now=app.clock(),
            )


# ------------------------------------------------------------------------ refusals


def test_sqlite_refuses_more_than_one_worker(tmp_path: Path, wechat_api: FakeWeChatApi) -> None:
    from handoff.db import make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'one.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    env = serve_env(url, tmp_path, wechat_api)
    done = subprocess.run(
        [YXBY, "serve", "--workers", "2", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "SQLite 数据库只支持单个服务进程" in done.stderr
    assert "PostgreSQL" in done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------------ one token


def test_two_workers_share_one_access_token_and_send_every_push_once(
    pg_url: str, tmp_path: Path, wechat_api: FakeWeChatApi
) -> None:
    app = open_app(pg_url)
    users = [f"oWorkerUser{i:04d}xxxxxxxxxxxxx" for i in range(40)]
    try:
        queue_pushes(app, users)  # waiting before the workers start: they race for them
        served = Served(
            serve_env(pg_url, tmp_path, wechat_api), tmp_path / "serve.log", "--workers", "2"
        )
        try:
            served.wait_ready(pids=2)  # both processes answer behind the one port
            wechat_api.wait_for_sent(len(users), timeout=60)
            time.sleep(1.5)  # a duplicate would arrive in the meantime
            assert sorted(m["touser"] for m in wechat_api.sent) == sorted(users)
            assert wechat_api.token_requests == 1
            assert count(app, OutboxMessage, OutboxMessage.status == OutboxStatus.SENT) == 40
            # the token is in the shared table, kept less long than WeChat's two hours
            with app.db.sessions() as s:
                row = s.scalars(
                    select(SharedValue).where(SharedValue.key.like("wechatpy:%access_token"))
                ).one()
            assert row.value == "TOKEN-1"
            left = row.expires_at - system_clock()
            assert timedelta(minutes=110) < left <= timedelta(minutes=115)
        finally:
            log = served.stop()
        assert served.process.returncode == 0, log
        assert "Traceback" not in log, log
    finally:
        app.close()


def test_with_redis_the_token_and_answers_live_in_redis(
    pg_url: str, tmp_path: Path, wechat_api: FakeWeChatApi
) -> None:
    redis = pytest.importorskip("redis")
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis 未在 127.0.0.1:6379 运行")
    prefix = f"yxby-test-{uuid.uuid4().hex[:8]}:"
    app = open_app(pg_url)
    users = [f"oRedisUser{i:04d}xxxxxxxxxxxxxx" for i in range(20)]
    env = serve_env(
        pg_url,
        tmp_path,
        wechat_api,
        YXBY_REDIS_URL="redis://127.0.0.1:6379/0",
        YXBY_REDIS_PREFIX=prefix,
    )
    try:
        queue_pushes(app, users)
        served = Served(env, tmp_path / "serve.log", "--workers", "2")
        try:
            served.wait_ready(pids=2)
            wechat_api.wait_for_sent(len(users), timeout=60)
            answer = post_text(served.url, "oRedisAsker0000000000000001", QUESTION, 71)
            assert answer is not None and "12345" in answer
            time.sleep(1.0)
            assert len(wechat_api.sent) == len(users)
            assert wechat_api.token_requests == 1
            token = client.get(f"{prefix}wechatpy:{APPID}_access_token")
            assert token == b"TOKEN-1"
            assert 6600 < client.ttl(f"{prefix}wechatpy:{APPID}_access_token") <= 6900
            assert client.exists(f"{prefix}wechat:answer:oRedisAsker0000000000000001:71")
            assert count(app, SharedValue) == 0  # nothing shared went to the database
        finally:
            log = served.stop()
        assert "Traceback" not in log, log
    finally:
        app.close()
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()


# ------------------------------------------------------------------------ one answer


@pytest.fixture
def two_servers(
    pg_url: str, tmp_path: Path, wechat_api: FakeWeChatApi
) -> Iterator[tuple[Served, Served]]:
    """Two single-process servers on one PostgreSQL schema (so a test picks the process)."""

    def start(name: str, **extra: str) -> Served:
        return Served(serve_env(pg_url, tmp_path, wechat_api, **extra), tmp_path / f"{name}.log")

    first, second = start("a"), start("b")
    try:
        first.wait_ready()
        second.wait_ready()
        yield first, second
    finally:
        logs = first.stop() + second.stop()
        assert "Traceback" not in logs, logs


def test_a_retry_to_the_other_process_gets_the_same_passive_answer(
    pg_url: str, two_servers: tuple[Served, Served], wechat_api: FakeWeChatApi
) -> None:
    first, second = two_servers
    user = "oRetryUser00000000000000001"
    answer = post_text(first.url, user, QUESTION, 501)
    assert answer is not None and "12345" in answer
    assert post_text(second.url, user, QUESTION, 501) == answer  # WeChat's retry, elsewhere
    # both at once, to either process: one turn, one answer
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda s: post_text(s.url, user, "社保卡怎么办理", 502),
                [first, second, first, second],
            )
        )
    assert len(set(answers)) == 1 and answers[0] is not None
    time.sleep(1.0)
    app = open_app(pg_url)
    try:
        assert count(app, DialogueTurn) == 2
        assert wechat_api.sent == []  # nothing pushed besides
    finally:
        app.close()


def test_an_answer_pushed_by_one_process_is_not_answered_again_by_the_other(
    pg_url: str, tmp_path: Path, wechat_api: FakeWeChatApi
) -> None:
    # the first process has a tiny reply budget: it acknowledges ("success") and pushes;
    # the second answers in time, passively — racing, only one of them may answer
    slow = serve_env(pg_url, tmp_path, wechat_api, YXBY_WECHAT_REPLY_BUDGET="0.001")
    first = Served(slow, tmp_path / "a.log")
    second = Served(serve_env(pg_url, tmp_path, wechat_api), tmp_path / "b.log")
    user = "oPushedUser0000000000000001"
    try:
        first.wait_ready()
        second.wait_ready()
        assert post_text(first.url, user, QUESTION, 601) is None
        sent = wechat_api.wait_for_sent(1, timeout=30)
        assert "12345" in sent[0]["text"]["content"]
        assert post_text(second.url, user, QUESTION, 601) is None  # the retry: no second answer
        # deliveries of one MsgId racing to both processes at once: one answer in all
        for msg_id in (602, 603, 604):
            before = len(wechat_api.sent)
            with ThreadPoolExecutor(4) as pool:
                answers = list(
                    pool.map(
                        post_text,
                        [s.url for s in (first, second, first, second)],
                        [user] * 4,
                        ["社保卡怎么办理"] * 4,
                        [msg_id] * 4,
                    )
                )
            passive = {a for a in answers if a is not None}
            assert len(passive) <= 1
            time.sleep(1.5)  # a push would be sent in the meantime
            pushed = len(wechat_api.sent) - before
            assert len(passive) + pushed == 1, (answers, wechat_api.texts(user))
        app = open_app(pg_url)
        try:
            assert count(app, DeferredMessage, DeferredMessage.done_at.is_(None)) == 0
            assert count(app, DialogueTurn) == 4
        finally:
            app.close()
    finally:
        logs = first.stop() + second.stop()
    assert "Traceback" not in logs, logs


# ------------------------------------------------------------------------ background jobs


def test_sla_tick_in_two_processes_notifies_each_breach_once(
    pg_url: str, tmp_path: Path, wechat_api: FakeWeChatApi
) -> None:
    from handoff.models import CommissionerRole
    from handoff.registry import add_commissioner

    head = "oDepartmentHead000000000001"
    past = MovableClock(system_clock() - timedelta(days=40))
    old = build_app(AppSettings.from_env(database_url=pg_url), past)
    app = open_app(pg_url)
    try:
        with old.db.begin() as session:
            add_commissioner(
                session,
                name="王局长",
                department="市场监管局",
                role=CommissionerRole.HEAD,
                bindings=[("wechat", head)],
                now=past(),
            )
        numbers = [
            old.tickets.create(
                f"办理营业执照变更 {i}",
                department="市场监管局",
                rule="topic",
                reason="测试",
                actor="测试员",
            ).number
            for i in range(6)
        ]
        app.inbox.user_wrote("wechat", head)  # the head's push window is open now
        env = serve_env(pg_url, tmp_path, wechat_api)
        # two processes start at once: both tick at start-up, over the same breached clocks
        first = Served(env, tmp_path / "a.log")
        second = Served(env, tmp_path / "b.log")
        try:
            first.wait_ready()
            second.wait_ready()
            eventually(lambda: len(wechat_api.texts(head)) >= 5, timeout=60)
            time.sleep(2.0)
            texts = wechat_api.texts(head)
            assert len(texts) == len(set(texts))  # no notice twice
            assert len(texts) <= 5  # WeChat's pushes per user message; the rest are held
            with app.db.sessions() as s:
                keys = s.scalars(
                    select(OutboxMessage.dedupe_key).where(OutboxMessage.recipient == head)
                ).all()
            assert all(any(n in t for n in numbers) for t in texts)
            assert len(keys) == len(set(keys)) >= len(numbers)
        finally:
            logs = first.stop() + second.stop()
        assert "sla tick failed" not in logs and "Traceback" not in logs, logs
    finally:
        old.close()
        app.close()
