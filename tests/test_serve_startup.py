"""Channels start independently: ``yxby serve`` with the Telegram API unreachable still answers
WeChat, says in ``/healthz`` that Telegram is degraded, and Telegram catches up once its API
is back — the pushes queued meanwhile are delivered.

The served app runs under uvicorn on 127.0.0.1 with both adapters: Telegram pointed at a
port nothing listens on (later a fake Bot API starts there), WeChat at the fake WeChat API.
The last test runs the real ``yxby serve`` command in a subprocess. SQLite always,
PostgreSQL when ``YXBY_TEST_DATABASE_URL`` is set; every wait is bounded.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from sqlalchemy import select

from bot.app import App
from bot.channels.telegram import SECRET_HEADER, TelegramAdapter, TelegramSettings
from bot.channels.wechat import WeChatAdapter, WeChatConfig
from bot.server import ServerOptions, create_asgi
from handoff.models import OutboxMessage
from handoff.outbox import enqueue
from tests.conftest import MovableClock
from tests.fakes import telegram_api
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI
from tests.fakes.wechat_api import FakeWeChatApi
from tests.servers import LiveServer, eventually

YXBY = str(Path(sys.executable).with_name("yxby"))
SECRET = "s3cret-webhook_token"
WECHAT_TOKEN = "yxby-wechat-token"
APPID = "wx0123456789abcdef"
APP_SECRET = "yxby-test-secret"
ACCOUNT = "gh_yxby00000001"
OPENID = "oYxbyTestUser000000000000001"
CHAT = 5001
QUESTION = "企业可以打什么热线反映问题"


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def fake_telegram_on(port: int, monkeypatch: pytest.MonkeyPatch) -> FakeTelegramAPI:
    """The fake Bot API, listening on *port* (the fake itself always picks a free one)."""

    class OnPort(ThreadingHTTPServer):
        def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]):
            super().__init__((address[0], port), handler)

    monkeypatch.setattr(telegram_api, "ThreadingHTTPServer", OnPort)
    return FakeTelegramAPI().start()


def wechat_text(http: httpx.Client, now: float, content: str, msg_id: int) -> str:
    """Post a text message signed as WeChat signs it; the passive reply's content."""
    timestamp, nonce = str(int(now)), f"n{msg_id}"
    signature = hashlib.sha1("".join(sorted((WECHAT_TOKEN, timestamp, nonce))).encode())
    params = {
        "signature": signature.hexdigest(),
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": OPENID,
    }
    body = (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{OPENID}]]></FromUserName>"
        f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )
    response = http.post("/wechat", params=params, content=body.encode())
    assert response.status_code == 200, response.text
    assert response.text != "success", "expected a passive answer"
    reply = {child.tag: child.text or "" for child in ElementTree.fromstring(response.text)}
    assert reply["MsgType"] == "text" and reply["ToUserName"] == OPENID
    return reply["Content"]


def channels(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/healthz")
    assert response.status_code == 200, response.text  # degraded channels leave it 200
    body: dict[str, Any] = response.json()
    assert body["status"] == "ok"
    found: dict[str, Any] = body["channels"]
    return found


@pytest.fixture
def wechat_api() -> Iterator[FakeWeChatApi]:
    with FakeWeChatApi(appid=APPID, secret=APP_SECRET) as api:
        yield api


def test_wechat_answers_while_telegram_is_unreachable_and_telegram_catches_up(
    app: App, clock: MovableClock, wechat_api: FakeWeChatApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    telegram = TelegramAdapter(
        app, TelegramSettings(token=TOKEN, api_base=base, webhook_secret=SECRET)
    )
    config = WeChatConfig(
        token=WECHAT_TOKEN, appid=APPID, secret=APP_SECRET, api_base=wechat_api.base_url
    )
    wechat = WeChatAdapter(app, config)
    options = ServerOptions(
        run_tick=False, worker_interval=0.05, startup_retry_first=0.05, startup_retry_cap=0.2
    )
    asgi = create_asgi(app, [telegram, wechat], options)
    with LiveServer(asgi) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        # the server is up although Telegram is not: WeChat gets its passive answer
        answer = wechat_text(http, clock().timestamp(), QUESTION, msg_id=1)
        assert "12345" in answer
        health = channels(http)
        assert health["wechat"] == {"status": "ok"}
        degraded = health["telegram"]
        assert degraded["status"] == "degraded"
        assert degraded["detail"].startswith(f"无法连接 Telegram（{base}）：NetworkError")
        assert degraded["attempts"] >= 1

        # Telegram's webhook: a forged request is still refused, a real one is asked again
        update = {"update_id": 77, "message": {"message_id": 1, "date": 1, "text": "/help"}}
        update["message"]["chat"] = {"id": CHAT, "type": "private", "first_name": "王经理"}
        forged = http.post("/telegram/webhook", json=update, headers={SECRET_HEADER: "x"})
        assert forged.status_code == 403
        later = http.post("/telegram/webhook", json=update, headers={SECRET_HEADER: SECRET})
        assert later.status_code == 503

        # a push to a Telegram chat waits in the outbox, not failed
        with app.db.begin() as session:
            enqueue(
                session, "telegram", str(CHAT), "test", {"text": "工单已受理"}, "p1", now=clock()
            )

        def last_error() -> str:
            with app.db.sessions() as session:
                row = session.scalars(select(OutboxMessage)).one()
                assert row.status.value == "pending", row.status
                return row.last_error or ""

        eventually(lambda: "尚未连接" in last_error())

        # Telegram's API comes back: the channel connects, the push goes out
        api = fake_telegram_on(port, monkeypatch)
        try:
            eventually(lambda: channels(http)["telegram"] == {"status": "ok"}, timeout=10)
            assert api.calls("getMe")
            clock.advance(seconds=6)  # past the wait a push gets while not connected
            eventually(lambda: api.texts(CHAT) == ["工单已受理"], timeout=10)
            # the update Telegram delivers again is handled now
            again = http.post("/telegram/webhook", json=update, headers={SECRET_HEADER: SECRET})
            assert again.status_code == 200
            assert len(api.texts(CHAT)) == 2  # the push, then the answer to /help
            assert channels(http)["wechat"] == {"status": "ok"}
        finally:
            api.stop()


def test_yxby_serve_stays_up_and_serves_healthz_with_telegram_unreachable(
    db_url: str, tmp_path: Path, wechat_api: FakeWeChatApi
) -> None:
    port, telegram_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YXBY_")}
    env |= {
        "YXBY_DATABASE_URL": db_url,
        "YXBY_DATA_DIR": str(tmp_path / "data"),
        "YXBY_TELEGRAM_TOKEN": TOKEN,
        "YXBY_TELEGRAM_API_BASE": f"http://127.0.0.1:{telegram_port}",
        "YXBY_TELEGRAM_WEBHOOK_SECRET": SECRET,
        "YXBY_WECHAT_TOKEN": WECHAT_TOKEN,
        "YXBY_WECHAT_APPID": APPID,
        "YXBY_WECHAT_SECRET": APP_SECRET,
        "YXBY_WECHAT_API_BASE": wechat_api.base_url,
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [YXBY, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            def health() -> dict[str, Any] | None:
                assert process.poll() is None, log.read_text("utf-8")
                try:
                    return channels(http)
                except httpx.TransportError:
                    return None  # not listening yet

            eventually(health, timeout=60)
            # it keeps trying (1 s, then 2 s…) and keeps serving meanwhile
            eventually(lambda: (health() or {})["telegram"]["attempts"] >= 2, timeout=15)
            found = health()
            assert found is not None and found["wechat"] == {"status": "ok"}
            assert found["telegram"]["status"] == "degraded"
            assert "12345" in wechat_text(http, time.time(), QUESTION, msg_id=2)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0  # stops promptly, retries and all
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    text = log.read_text("utf-8")
    assert "channel telegram not started (attempt 1)" in text
    assert TOKEN not in text and TOKEN.partition(":")[2] not in text
