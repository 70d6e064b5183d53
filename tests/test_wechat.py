"""The WeChat channel end to end: the real ASGI app under uvicorn on 127.0.0.1, requests signed
(and encrypted) the way WeChat's servers do it, replies parsed back; pushes go to a fake
WeChat API server. WeChat's own published sample message and keys are in tests/data/wechat.

Each test runs on SQLite, and on PostgreSQL when ``YXBY_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from sqlalchemy import func, select
from wechatpy.crypto import WeChatCrypto

from bot.app import App
from bot.channels.wechat import (
    DEFAULT_MENU,
    HOLD_REASON,
    MORE_PROMPT,
    PASSIVE_LIMIT_BYTES,
    WeChatAdapter,
    WeChatApiClient,
    WeChatConfig,
    fit_passive,
    wechat_config_from_env,
)
from bot.delivery import OutboxWorker
from bot.server import ServerOptions, create_asgi
from bot.types import Button, Incoming, Reply, reply_payload
from handoff.conversations import DeferredMessage, DialogueTurn, ProcessedMessage
from handoff.models import ChannelIdentity, OutboxMessage, OutboxStatus, Ticket
from handoff.outbox import HoldForUser, PermanentFailure, RetryLater, enqueue
from tests.conftest import MovableClock
from tests.fakes.wechat_api import FakeWeChatApi
from tests.servers import LiveServer, eventually
from yxby.errors import ConfigError

DATA = Path(__file__).parent / "data" / "wechat"
TOKEN = "yxby-wechat-token"
APPID = "wx0123456789abcdef"
SECRET = "yxby-test-secret"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
ACCOUNT = "gh_yxby00000001"
OPENID = "oYxbyTestUser000000000000001"
HOTLINE_QUESTION = "企业可以打什么热线反映问题"


# ----------------------------------------------------------------------------- WeChat's side


def sign(*parts: str) -> str:
    """WeChat's signature: SHA-1 over the sorted parts, concatenated."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def message_xml(
    msg_type: str,
    *,
    created: int,
    user: str = OPENID,
    msg_id: int | None = None,
    **fields: str,
) -> str:
    """A message as WeChat posts it (CDATA for text fields)."""
    parts = [
        f"<ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>",
        f"<FromUserName><![CDATA[{user}]]></FromUserName>",
        f"<CreateTime>{created}</CreateTime>",
        f"<MsgType><![CDATA[{msg_type}]]></MsgType>",
        *(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()),
    ]
    if msg_id is not None:
        parts.append(f"<MsgId>{msg_id}</MsgId>")
    return "<xml>" + "".join(parts) + "</xml>"


def parse_reply(xml: str) -> dict[str, str]:
    root = ElementTree.fromstring(xml)
    return {child.tag: child.text or "" for child in root}


@dataclass
class WeChatSide:
    """Plays WeChat's servers: signs or encrypts messages and reads the replies back."""

    http: httpx.Client
    token: str
    clock: MovableClock
    crypto: WeChatCrypto | None = None
    path: str = "/wechat"
    _seq: int = 0

    def next_id(self) -> int:
        self._seq += 1
        return 7_000_000_000_000_000_000 + self._seq

    def now(self) -> int:
        return int(self.clock().timestamp())

    def signed_params(self, nonce: str | None = None) -> dict[str, str]:
        self._seq += 1
        timestamp, nonce = str(self.now()), nonce or f"{self._seq:09d}"
        return {
            "signature": sign(self.token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": OPENID,
        }

    def post(self, body: bytes | str, *, encrypt: bool | None = None) -> httpx.Response:
        """POST *body* (a plain message) signed, encrypted first in safe mode."""
        params = self.signed_params()
        if encrypt is None:
            encrypt = self.crypto is not None
        if encrypt:
            assert self.crypto is not None
            text = body.decode() if isinstance(body, bytes) else body
            sealed = parse_reply(
                self.crypto.encrypt_message(text, params["nonce"], params["timestamp"])
            )
            params |= {"encrypt_type": "aes", "msg_signature": sealed["MsgSignature"]}
            body = (
                f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
                f"<Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt></xml>"
            )
        return self.http.post(self.path, params=params, content=body)

    def reply_of(self, response: httpx.Response) -> dict[str, str] | None:
        """The passive reply (decrypted and its signature checked), ``None`` for success."""
        assert response.status_code == 200, response.text
        if response.text == "success":
            return None
        fields = parse_reply(response.text)
        if "Encrypt" in fields:
            assert self.crypto is not None
            plain = self.crypto.decrypt_message(
                response.text, fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"]
            )
            fields = parse_reply(plain)
        return fields

    def send(self, xml: str) -> str | None:
        """Post *xml*; the reply's text, ``None`` for ``success``."""
        reply = self.reply_of(self.post(xml))
        if reply is None:
            return None
        assert reply["MsgType"] == "text"
        assert reply["ToUserName"] == OPENID and reply["FromUserName"] == ACCOUNT
        assert len(reply["Content"].encode()) <= PASSIVE_LIMIT_BYTES
        return reply["Content"]

    def text(self, content: str, *, msg_id: int | None = None) -> str | None:
        xml = message_xml(
            "text", created=self.now(), msg_id=msg_id or self.next_id(), Content=content
        )
        return self.send(xml)


# ----------------------------------------------------------------------------- harness


@dataclass
class Harness:
    app: App
    adapter: WeChatAdapter
    wechat: WeChatSide
    api: FakeWeChatApi
    http: httpx.Client


@pytest.fixture
def fake_api() -> Iterator[FakeWeChatApi]:
    with FakeWeChatApi(appid=APPID, secret=SECRET) as api:
        yield api


def make_config(api: FakeWeChatApi, **overrides: Any) -> WeChatConfig:
    settings: dict[str, Any] = {
        "token": TOKEN,
        "appid": APPID,
        "secret": SECRET,
        "api_base": api.base_url,
    } | overrides
    return WeChatConfig(**settings)


@pytest.fixture
def serve(
    app: App, clock: MovableClock, fake_api: FakeWeChatApi
) -> Iterator[Callable[..., Harness]]:
    """Start the ASGI app with a WeChat adapter: ``serve(aes_key=…, engine=…)``."""
    with contextlib.ExitStack() as stack:

        def make(*, engine: Any = None, **overrides: Any) -> Harness:
            config = make_config(fake_api, **overrides)
            adapter = WeChatAdapter(app, config, engine=engine)
            options = ServerOptions(run_tick=False, worker_interval=0.05)
            server = stack.enter_context(LiveServer(create_asgi(app, [adapter], options)))
            http = stack.enter_context(httpx.Client(base_url=server.url, timeout=10))
            crypto = None
            if config.aes_key:
                crypto = WeChatCrypto(config.token, config.aes_key, config.appid)
            return Harness(
                app, adapter, WeChatSide(http, config.token, clock, crypto), fake_api, http
            )

        yield make


def count(app: App, model: type, *where: Any) -> int:
    with app.db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def nothing_stored(app: App) -> bool:
    return all(count(app, m) == 0 for m in (ChannelIdentity, ProcessedMessage, DialogueTurn))


def identity(app: App, user: str = OPENID) -> ChannelIdentity:
    with app.db.sessions() as session:
        return session.scalars(
            select(ChannelIdentity).where(
                ChannelIdentity.channel == "wechat", ChannelIdentity.user_key == user
            )
        ).one()


def user_writes(app: App, text: str = "你好", msg_id: str | None = None) -> None:
    """The user sends a message (straight to the dialogue): their 48-hour window opens."""
    key = msg_id or f"direct-{time.monotonic_ns()}"
    app.dialogue.handle(Incoming("wechat", OPENID, text, msg_id=key))


def queue_push(app: App, reply: Reply, key: str) -> None:
    with app.db.sessions.begin() as session:
        enqueue(session, "wechat", OPENID, "test", reply_payload(reply), key, now=app.clock())


def outbox_rows(app: App) -> list[tuple[OutboxStatus, str | None]]:
    with app.db.sessions() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [(r.status, r.last_error) for r in rows]


class ScriptedEngine:
    """An engine that answers from a script and counts its calls (no database)."""

    def __init__(self, answer: Callable[[Incoming], Sequence[Reply]]) -> None:
        self.answer = answer
        self.calls: list[Incoming] = []

    def handle(self, message: Incoming) -> Sequence[Reply]:
        self.calls.append(message)
        return self.answer(message)


class GatedEngine:
    """The real dialogue, but each call waits until the test opens the gate."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.calls = 0

    def handle(self, message: Incoming) -> Sequence[Reply]:
        self.calls += 1
        assert self.gate.wait(timeout=10), "gate never opened"
        return self.inner.handle(message)


def stored_answer(app: App, user: str, text: str, msg_id: str) -> str:
    """What the dialogue answered to *msg_id* (a redelivery replays the stored replies)."""
    scoped = f"{user}:{msg_id}"  # the adapter scopes MsgIds to their sender
    replayed = app.dialogue.handle(Incoming("wechat", user, text, msg_id=scoped))
    return "\n\n".join(r.render_plain() for r in replayed)


def official(clock: MovableClock) -> dict[str, str]:
    """WeChat's published sample; the clock moves to its timestamp (signatures expire)."""
    data: dict[str, str] = json.loads((DATA / "official_sample.json").read_text("utf-8"))
    clock.set(datetime.fromtimestamp(int(data["timestamp"]), UTC))
    return data


# ----------------------------------------------------------------------------- verification


def test_url_verification_with_the_official_sample(
    serve: Callable[..., Harness], clock: MovableClock
) -> None:
    sample = official(clock)
    h = serve(token=sample["token"], appid=sample["appid"], aes_key=sample["encoding_aes_key"])
    params = {k: sample[k] for k in ("signature", "timestamp", "nonce")}
    ok = h.http.get("/wechat", params=params | {"echostr": "5837397520665436492"})
    assert ok.status_code == 200 and ok.text == "5837397520665436492"
    forged = params | {"nonce": "1320562133", "echostr": "x"}
    assert h.http.get("/wechat", params=forged).status_code == 403
    assert h.http.get("/wechat", params={"echostr": "x"}).status_code == 403


def test_official_encrypted_sample_is_answered_encrypted(
    serve: Callable[..., Harness], app: App, clock: MovableClock
) -> None:
    sample = official(clock)
    h = serve(token=sample["token"], appid=sample["appid"], aes_key=sample["encoding_aes_key"])
    body = (DATA / "official_sample_request.xml").read_bytes()
    params = {k: sample[k] for k in ("signature", "timestamp", "nonce", "msg_signature")}
    params |= {"encrypt_type": "aes", "openid": sample["from_user"]}

    for bad in ({"msg_signature": "0" * 40}, {"signature": "0" * 40}):
        assert h.http.post("/wechat", params=params | bad, content=body).status_code == 403
    assert nothing_stored(app)

    response = h.http.post("/wechat", params=params, content=body)
    assert response.status_code == 200
    outer = parse_reply(response.text)
    assert set(outer) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert outer["Nonce"] == sample["nonce"]
    crypto = WeChatCrypto(sample["token"], sample["encoding_aes_key"], sample["appid"])
    reply = parse_reply(
        crypto.decrypt_message(
            response.text, outer["MsgSignature"], outer["TimeStamp"], outer["Nonce"]
        )
    )
    assert reply["ToUserName"] == sample["from_user"]
    assert reply["FromUserName"] == sample["to_user"]
    assert reply["MsgType"] == "text"
    # the reply is exactly what the dialogue answered (and stored) for that MsgId
    expected = stored_answer(app, sample["from_user"], sample["content"], sample["msg_id"])
    assert reply["Content"] == expected
    scoped = f"{sample['from_user']}:{sample['msg_id']}"
    assert count(app, ProcessedMessage, ProcessedMessage.msg_id == scoped) == 1
    assert count(app, ProcessedMessage) == 1  # the replay above found the stored answer


def test_official_sample_in_compatible_mode_without_a_key(
    serve: Callable[..., Harness], app: App, clock: MovableClock
) -> None:
    sample = official(clock)
    h = serve(token=sample["token"], appid=sample["appid"])
    params = {k: sample[k] for k in ("signature", "timestamp", "nonce", "msg_signature")}
    params["encrypt_type"] = "aes"
    body = (DATA / "official_sample_request.xml").read_bytes()
    reply = h.wechat.reply_of(h.http.post("/wechat", params=params, content=body))
    assert reply is not None and "Encrypt" not in reply  # plain fields used, plain reply
    assert reply["ToUserName"] == sample["from_user"] and reply["Content"]
    # a safe-mode body (Encrypt only) cannot be read without the key
    only_encrypted = (
        b"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA["
        + body.split(b"<Encrypt><![CDATA[")[1]
    )
    assert h.http.post("/wechat", params=params, content=only_encrypted).status_code == 400


# ----------------------------------------------------------------------------- messages


def test_plain_mode_text_gets_a_passive_answer(
    serve: Callable[..., Harness], app: App, clock: MovableClock
) -> None:
    h = serve()
    reply = h.wechat.reply_of(
        h.wechat.post(
            message_xml("text", created=h.wechat.now(), msg_id=1, Content=HOTLINE_QUESTION)
        )
    )
    assert reply is not None
    assert reply["ToUserName"] == OPENID and reply["FromUserName"] == ACCOUNT
    assert reply["CreateTime"] == str(int(clock().timestamp()))
    assert "12345" in reply["Content"]
    assert reply["Content"] == stored_answer(app, OPENID, HOTLINE_QUESTION, "1")
    assert "（回复：" in reply["Content"]  # buttons written out for typing


def test_safe_mode_round_trip_with_the_official_algorithm(
    serve: Callable[..., Harness], app: App
) -> None:
    h = serve(aes_key=AES_KEY)
    response = h.wechat.post(
        message_xml("text", created=h.wechat.now(), msg_id=11, Content=HOTLINE_QUESTION)
    )
    assert "<Encrypt>" in response.text and HOTLINE_QUESTION not in response.text
    reply = h.wechat.reply_of(response)
    assert reply is not None and "12345" in reply["Content"]
    # with a key configured, an unencrypted message is refused
    plain = message_xml("text", created=h.wechat.now(), msg_id=12, Content="你好")
    assert h.wechat.post(plain, encrypt=False).status_code == 403
    assert count(app, ProcessedMessage) == 1


def test_retries_of_one_msgid_get_one_answer_and_one_ticket(
    serve: Callable[..., Harness], app: App
) -> None:
    h = serve()
    assert h.wechat.text("提交诉求")
    h.wechat.text("园区道路路灯损坏三个月无人维修，夜间运输车辆进出存在安全隐患")
    h.wechat.text("天津示例物流有限公司")
    assert "确认提交" in (h.wechat.text("13800138000") or "")
    confirm = message_xml("text", created=h.wechat.now(), msg_id=424242, Content="确认提交")
    with ThreadPoolExecutor(3) as pool:  # three deliveries at once …
        answers = list(pool.map(h.wechat.send, [confirm] * 3))
    answers.append(h.wechat.send(confirm))  # … and a late one
    assert answers[0] is not None and "诉求已登记" in answers[0]
    assert answers == [answers[0]] * 4
    assert count(app, Ticket) == 1
    assert count(app, ProcessedMessage, ProcessedMessage.msg_id == f"{OPENID}:424242") == 1


def test_forged_signature_is_refused_and_changes_nothing(
    serve: Callable[..., Harness], app: App
) -> None:
    h = serve()
    body = message_xml("text", created=h.wechat.now(), msg_id=5, Content=HOTLINE_QUESTION)
    params = h.wechat.signed_params()
    for forged in (
        params | {"signature": sign("not-the-token", params["timestamp"], params["nonce"])},
        params | {"timestamp": str(int(params["timestamp"]) + 1)},
        {"timestamp": params["timestamp"], "nonce": params["nonce"]},
    ):
        assert h.http.post("/wechat", params=forged, content=body).status_code == 403
    assert nothing_stored(app)


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "ha">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + "]><xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>1"
    "</CreateTime><MsgType>text</MsgType><Content>&j;</Content><MsgId>1</MsgId></xml>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "<xml><FromUserName>u</FromUserName><MsgType>text</MsgType><Content>&x;</Content></xml>"
)


@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        "<xml><MsgType>text</MsgType><Content>unclosed</xml",
        "not xml at all",
        "<foo><MsgType>text</MsgType></foo>",
        "<xml><MsgType>text</MsgType><Content>no sender</Content></xml>",
        "<xml>" + "<Content>x</Content>" * 6000 + "</xml>",  # 120 KB
    ],
    ids=[
        "billion-laughs",
        "external-entity",
        "malformed",
        "not-xml",
        "wrong-root",
        "no-sender",
        "oversized",
    ],
)
def test_unsafe_malformed_or_oversized_bodies_are_refused_quickly(
    serve: Callable[..., Harness], app: App, body: str
) -> None:
    h = serve()
    started = time.monotonic()
    assert h.wechat.post(body).status_code == 400
    assert time.monotonic() - started < 1.0
    assert nothing_stored(app)


def test_oversized_streamed_body_and_encrypted_bomb_are_refused(
    serve: Callable[..., Harness], app: App
) -> None:
    h = serve(aes_key=AES_KEY)
    chunks = (b"<xml>" + b"x" * 8192 for _ in range(20))  # chunked, no Content-Length
    assert (
        h.http.post("/wechat", params=h.wechat.signed_params(), content=chunks).status_code == 400
    )
    assert h.wechat.post(BILLION_LAUGHS, encrypt=True).status_code == 400  # bomb inside AES
    assert nothing_stored(app)


def test_voice_uses_the_recognised_text_or_asks_for_text(
    serve: Callable[..., Harness], app: App
) -> None:
    h = serve()
    w = h.wechat
    heard = w.send(
        message_xml(
            "voice",
            created=w.now(),
            msg_id=21,
            MediaId="m1",
            Format="amr",
            Recognition=HOTLINE_QUESTION + "。",
        )
    )
    assert heard is not None and "12345" in heard
    assert heard == stored_answer(app, OPENID, HOTLINE_QUESTION + "。", "21")
    silent = w.send(message_xml("voice", created=w.now(), msg_id=22, MediaId="m2", Format="amr"))
    assert silent == app.replies("voice_unrecognised")


def test_images_files_and_locations_get_a_note_that_text_works_best(
    serve: Callable[..., Harness], app: App
) -> None:
    h = serve()
    w = h.wechat
    note = app.replies("no_text")
    assert (
        w.send(
            message_xml("image", created=w.now(), msg_id=31, PicUrl="http://x/p.jpg", MediaId="m")
        )
        == note
    )
    assert (
        w.send(
            message_xml(
                "location",
                created=w.now(),
                msg_id=32,
                Location_X="39.0",
                Location_Y="117.7",
                Scale="15",
                Label="天津港保税区",
            )
        )
        == note
    )
    assert w.send(message_xml("file", created=w.now(), msg_id=33, Title="材料.pdf")) == note


def test_subscribe_welcomes_and_unsubscribe_stops_pushes(
    serve: Callable[..., Harness], app: App
) -> None:
    h = serve()
    w = h.wechat
    subscribe = message_xml("event", created=w.now(), Event="subscribe", EventKey="")
    welcome = w.send(subscribe)
    assert welcome == app.replies("welcome") + "\n\n" + app.replies("menu")
    assert w.send(subscribe) == welcome  # the retried event: same answer, handled once
    assert count(app, ProcessedMessage) == 1
    unsubscribe = message_xml("event", created=w.now() + 1, Event="unsubscribe", EventKey="")
    assert w.send(unsubscribe) is None
    assert identity(app).subscribed is False
    with pytest.raises(PermanentFailure):
        asyncio.run(h.adapter.sender().send(OPENID, reply_payload(Reply("办理结果"))))
    assert h.api.send_calls() == []


def test_menu_clicks_send_their_commands(serve: Callable[..., Harness], app: App) -> None:
    h = serve(menu={**DEFAULT_MENU, "NEWS": "菜单"})
    w = h.wechat

    def click(key: str, offset: int) -> str | None:
        return w.send(message_xml("event", created=w.now() + offset, Event="CLICK", EventKey=key))

    assert click("MY_TICKETS", 1) == app.replies("status_none")
    assert click("FAQ", 2) == app.replies("menu")
    assert click("NEWS", 3) == app.replies("menu")
    assert click("UNKNOWN_KEY", 4) == app.replies("menu")
    human = click("HUMAN", 5)
    assert human is not None and "专员" in human
    assert (
        w.send(
            message_xml("event", created=w.now() + 6, Event="VIEW", EventKey="https://example.com")
        )
        is None
    )


def test_long_answers_are_cut_and_full_text_returns_the_rest(
    serve: Callable[..., Harness],
) -> None:
    lines = [f"第{i}条：" + "企业服务政策说明" * 12 for i in range(1, 31)]
    long_text = "\n".join(lines)
    assert len(long_text.encode()) > 2 * PASSIVE_LIMIT_BYTES
    engine = ScriptedEngine(
        lambda m: [Reply("没有可继续的内容")] if m.text == "全文" else [Reply(long_text)]
    )
    h = serve(engine=engine)
    w = h.wechat
    first = w.text("政策有哪些")
    assert first is not None and first.endswith(MORE_PROMPT)
    parts = [first]
    again_id = w.next_id()
    second = w.text("全文", msg_id=again_id)
    assert second is not None
    assert w.text("全文", msg_id=again_id) == second  # a retried "全文": same part
    parts.append(second)
    while parts[-1].endswith(MORE_PROMPT):
        parts.append(w.text("全文") or "")
        assert len(parts) < 10
    shown = "\n".join(p.removesuffix(MORE_PROMPT).rstrip() for p in parts)
    assert shown == long_text
    assert len(engine.calls) == 1  # "全文" was answered by the adapter
    assert w.text("全文") == "没有可继续的内容"  # nothing left: the engine answers


def test_markup_in_messages_and_answers_is_just_text(serve: Callable[..., Harness]) -> None:
    engine = ScriptedEngine(lambda m: [Reply(f"您说：{m.text}]]><Evil/>\x01")])
    h = serve(engine=engine)
    said = "<!DOCTYPE html><!ENTITY x 'y'> &amp;"
    assert h.wechat.text(said) == f"您说：{said}]]><Evil/>"


def test_fit_passive_limits() -> None:
    exact = "政" * (PASSIVE_LIMIT_BYTES // 3) + "ab"
    assert len(exact.encode()) == PASSIVE_LIMIT_BYTES
    assert fit_passive(exact) == (exact, "")
    head, rest = fit_passive(exact + "c")
    assert len(head.encode()) <= PASSIVE_LIMIT_BYTES and head.endswith(MORE_PROMPT)
    assert head.removesuffix("\n" + MORE_PROMPT) + rest == exact + "c"
    text = "甲" * 400 + "\n" + "乙" * 400
    head, rest = fit_passive(text)
    assert head == "甲" * 400 + "\n" + MORE_PROMPT and rest == "乙" * 400


# ----------------------------------------------------------------------------- slow path


def test_slow_answer_falls_back_to_success_and_one_push(
    serve: Callable[..., Harness], app: App
) -> None:
    engine = GatedEngine(app.dialogue)
    h = serve(engine=engine, reply_budget=0.3)
    w = h.wechat
    message = message_xml("text", created=w.now(), msg_id=888, Content=HOTLINE_QUESTION)
    started = time.monotonic()
    assert w.send(message) is None  # "success" within the budget
    assert 0.3 <= time.monotonic() - started < 3
    assert w.send(message) is None  # WeChat's retry while the answer is still being made
    engine.gate.set()
    sent = h.api.wait_for_sent(1)
    assert sent[0]["touser"] == OPENID and "12345" in sent[0]["text"]["content"]
    assert w.send(message) is None  # a late retry: still no second answer
    assert engine.calls == 1
    # stored as owed before "success", closed when its push was queued
    eventually(lambda: app.inbox.owed("wechat") == 0)
    assert count(app, DeferredMessage, DeferredMessage.msg_id == f"{OPENID}:888") == 1

    # a restarted server (empty memory) answers the same MsgId with success too
    again = serve(engine=app.dialogue)
    assert again.wechat.send(message) is None
    assert count(app, OutboxMessage) == 1 and count(app, Ticket) == 0
    assert len(h.api.sent) == 1


# ----------------------------------------------------------------------------- pushes


def test_push_refreshes_an_expired_token_once(app: App, fake_api: FakeWeChatApi) -> None:
    adapter = WeChatAdapter(app, make_config(fake_api))
    sender = adapter.sender()
    user_writes(app)
    asyncio.run(sender.send(OPENID, reply_payload(Reply("第一条"))))
    fake_api.expire_token_once()
    asyncio.run(
        sender.send(OPENID, reply_payload(Reply("第二条", buttons=(Button("满意", "rate:1"),))))
    )
    assert fake_api.texts(OPENID) == ["第一条", "第二条\n（回复：满意）"]
    assert fake_api.token_requests == 2
    assert [c.answer.get("errcode") for c in fake_api.send_calls()] == [0, 42001, 0]
    assert fake_api.send_calls()[-1].query["access_token"] == "TOKEN-2"

    fake_api.fail_with(40001, "invalid credential", times=2)  # refreshing does not help
    with pytest.raises(RetryLater):
        asyncio.run(sender.send(OPENID, reply_payload(Reply("第三条"))))
    assert fake_api.token_requests == 3  # one refresh, not a loop


def test_push_error_codes_map_to_retry_hold_or_failure(app: App, fake_api: FakeWeChatApi) -> None:
    sender = WeChatAdapter(app, make_config(fake_api)).sender()
    user_writes(app)
    payload = reply_payload(Reply("通知"))
    for code, expected in (
        (45015, HoldForUser),
        (45047, HoldForUser),
        (43004, PermanentFailure),
        (45009, RetryLater),
        (-1, RetryLater),
        (45002, PermanentFailure),
    ):
        fake_api.fail_with(code)
        with pytest.raises(expected) as caught:
            asyncio.run(sender.send(OPENID, payload))
        if expected is HoldForUser:
            assert caught.value.reason == HOLD_REASON
    assert fake_api.texts() == []


def test_window_error_holds_the_push_until_the_user_writes(
    serve: Callable[..., Harness], app: App
) -> None:
    h = serve()
    assert h.wechat.text("你好") is not None
    h.api.outside_window()
    rates = tuple(Button(label, f"rate:T1:{label}") for label in ("满意", "基本满意", "不满意"))
    queue_push(app, Reply("您的诉求已办结。", buttons=rates), "result:T1")
    eventually(lambda: outbox_rows(app) == [(OutboxStatus.HELD, HOLD_REASON)])
    assert h.api.sent == []
    h.wechat.text("还在吗")  # the user writes again: the held push goes out
    sent = h.api.wait_for_sent(1)
    assert sent[0]["text"]["content"] == "您的诉求已办结。\n（回复：满意 / 基本满意 / 不满意）"
    eventually(lambda: outbox_rows(app) == [(OutboxStatus.SENT, None)])


def test_outside_48_hours_is_held_without_calling_wechat(
    app: App, clock: MovableClock, fake_api: FakeWeChatApi
) -> None:
    sender = WeChatAdapter(app, make_config(fake_api)).sender()
    user_writes(app)
    clock.advance(hours=47, minutes=59)
    asyncio.run(sender.send(OPENID, reply_payload(Reply("两天内"))))
    clock.advance(minutes=2)
    with pytest.raises(HoldForUser) as caught:
        asyncio.run(sender.send(OPENID, reply_payload(Reply("一周后的结果"))))
    assert caught.value.reason == HOLD_REASON
    assert fake_api.texts() == ["两天内"] and len(fake_api.send_calls()) == 1


def test_at_most_five_pushes_per_user_message(
    app: App, clock: MovableClock, fake_api: FakeWeChatApi
) -> None:
    adapter = WeChatAdapter(app, make_config(fake_api))
    worker = OutboxWorker(app.db.sessions, {"wechat": adapter.sender()}, app.clock)
    user_writes(app)
    for i in range(6):
        queue_push(app, Reply(f"消息{i}"), f"burst:{i}")
    report = asyncio.run(worker.run_once())
    assert (report.sent, report.held) == (5, 1)
    assert fake_api.texts() == [f"消息{i}" for i in range(5)]
    clock.advance(minutes=5)
    user_writes(app, "收到")
    assert asyncio.run(worker.run_once()).sent == 1
    assert fake_api.texts()[-1] == "消息5"


def test_long_push_is_cut_and_full_text_brings_the_rest(
    serve: Callable[..., Harness], app: App
) -> None:
    h = serve()
    h.wechat.text("你好")
    long_text = "\n".join(f"第{i}项办理结果说明：" + "材料齐全" * 20 for i in range(30))
    queue_push(app, Reply(long_text), "long:1")
    pushed = h.api.wait_for_sent(1)[0]["text"]["content"]
    assert pushed.endswith(MORE_PROMPT) and len(pushed.encode()) <= PASSIVE_LIMIT_BYTES
    eventually(lambda: outbox_rows(app) == [(OutboxStatus.SENT, None)])  # the user has it
    rest = h.wechat.text("全文")
    assert rest is not None and rest.removesuffix(MORE_PROMPT).strip()
    assert rest.split("\n")[0] in long_text


def test_slow_api_times_out_without_blocking_the_event_loop(
    app: App, fake_api: FakeWeChatApi
) -> None:
    sender = WeChatAdapter(app, make_config(fake_api, http_timeout=0.5)).sender()
    user_writes(app)
    fake_api.hold()

    async def scenario() -> None:
        task = asyncio.create_task(sender.send(OPENID, reply_payload(Reply("慢"))))
        # the loop keeps running while the request hangs in a worker thread
        await asyncio.to_thread(fake_api.wait_for_calls, "/cgi-bin/token", 1)
        assert not task.done()
        with pytest.raises(RetryLater):
            await asyncio.wait_for(task, timeout=5)

    try:
        asyncio.run(scenario())
    finally:
        fake_api.release()
    assert fake_api.texts() == []


def test_a_send_that_times_out_is_maybe_sent_not_retried_blindly(
    app: App, fake_api: FakeWeChatApi
) -> None:
    from handoff.outbox import SendTimedOut

    sender = WeChatAdapter(app, make_config(fake_api, http_timeout=0.5)).sender()
    user_writes(app)
    asyncio.run(sender.send(OPENID, reply_payload(Reply("先取得令牌"))))
    fake_api.hold()  # WeChat takes the next message but answers too late
    try:
        with pytest.raises(SendTimedOut):
            asyncio.run(sender.send(OPENID, reply_payload(Reply("慢"))))
    finally:
        fake_api.release()
    eventually(lambda: "慢" in fake_api.texts())  # it did arrive: resending would duplicate it


# ----------------------------------------------------------------------------- configuration


ENV = {"YXBY_WECHAT_TOKEN": TOKEN, "YXBY_WECHAT_APPID": APPID, "YXBY_WECHAT_SECRET": SECRET}


def test_config_from_env_and_its_errors() -> None:
    config = wechat_config_from_env(ENV | {"YXBY_WECHAT_MENU": '{"NEWS": "菜单"}'})
    assert config.menu == {"NEWS": "菜单"} and config.aes_key is None
    assert wechat_config_from_env(ENV).menu == DEFAULT_MENU
    client = WeChatApiClient(APPID, SECRET, api_base=config.api_base)
    assert client.API_BASE_URL == "https://api.weixin.qq.com/cgi-bin/"
    for bad, key in (
        ({"YXBY_WECHAT_APPID": ""}, "YXBY_WECHAT_APPID"),
        ({"YXBY_WECHAT_AES_KEY": "too-short"}, "YXBY_WECHAT_AES_KEY"),
        ({"YXBY_WECHAT_MENU": "{FAQ: 菜单}"}, "YXBY_WECHAT_MENU"),
        ({"YXBY_WECHAT_MENU": '["菜单"]'}, "YXBY_WECHAT_MENU"),
        ({"YXBY_WECHAT_REPLY_BUDGET": "6"}, "YXBY_WECHAT_REPLY_BUDGET"),
    ):
        with pytest.raises(ConfigError) as caught:
            wechat_config_from_env(ENV | bad)
        assert caught.value.key == key


def test_registry_builds_the_adapter_from_the_environment(
    app: App, fake_api: FakeWeChatApi
) -> None:
    from bot.channels.registry import adapters_from_env

    env = ENV | {"YXBY_WECHAT_AES_KEY": AES_KEY, "YXBY_WECHAT_API_BASE": fake_api.base_url}
    (adapter,) = adapters_from_env(app, env=env)
    assert isinstance(adapter, WeChatAdapter) and adapter.name == "wechat"
    assert adapter.crypto is not None
    assert fake_api.base_url + "/cgi-bin/" == adapter.client.API_BASE_URL
    assert [r.path for r in adapter.routes()] == ["/wechat", "/wechat"]  # type: ignore[attr-defined]
