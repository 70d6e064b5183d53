"""The Telegram channel end to end: the real python-telegram-bot ``Application`` inside the real
ASGI app (uvicorn on 127.0.0.1), talking to a fake Bot API server on 127.0.0.1.

Webhook updates are POSTed to the served app; polling updates come from the fake's
getUpdates. Runs on SQLite, and on PostgreSQL when ``YXBY_TEST_DATABASE_URL`` is set. Every
wait is bounded; time that matters (retry_after, backoff) is moved on the injected clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from sqlalchemy import func, select

from bot.app import App
from bot.channels.telegram import (
    MAX_MESSAGE_CHARS,
    SECRET_HEADER,
    TelegramAdapter,
    TelegramSettings,
    invite_code,
    keyboard_rows,
    render,
    split_text,
    to_html,
)
from bot.delivery import OutboxWorker
from bot.server import ChannelUnavailable, ServerOptions, create_asgi
from bot.types import Button, Incoming, Reply
from handoff.conversations import DialogueTurn, ProcessedMessage
from handoff.invites import create_invite, hash_code, redeem_invite
from handoff.models import (
    ChannelIdentity,
    Commissioner,
    CommissionerBinding,
    CommissionerInvite,
    OutboxMessage,
    OutboxStatus,
)
from handoff.outbox import PermanentFailure, RetryLater, SendTimedOut, enqueue
from handoff.registry import add_commissioner
from handoff.telegram_state import TelegramUpdate, update_done
from tests.conftest import MovableClock
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI
from yxby.errors import ConfigError, InputError

# PTB itself reads RetryAfter.retry_after while building the exception (a v22 transition)
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SECRET = "s3cret-webhook_token"
ENTERPRISE = 5001
OTHER_ENTERPRISE = 5002
STAFF = 7001


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll *predicate* until it is truthy; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ----------------------------------------------------------------------------- harness


class Served:
    """The ASGI app served by uvicorn in a thread on 127.0.0.1 (an ephemeral port)."""

    def __init__(self, asgi: Any) -> None:
        self.asgi = asgi
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(asgi, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.sock.getsockname()[1]}")

    def start(self) -> Served:
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), what="uvicorn")
        assert self.server.started, "the server did not start"
        return self

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
        assert not self.thread.is_alive(), "the server did not stop"

    @property
    def worker(self) -> OutboxWorker:
        worker: OutboxWorker = self.asgi.state.worker
        return worker

    def post(self, update: dict[str, Any], secret: str | None = SECRET) -> httpx.Response:
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        return self.http.post("/telegram/webhook", json=update, headers=headers, timeout=15)


def settings_for(api: FakeTelegramAPI, mode: str) -> TelegramSettings:
    env = {
        "YXBY_TELEGRAM_TOKEN": TOKEN,
        "YXBY_TELEGRAM_API_BASE": api.base_url,
        "YXBY_TELEGRAM_WEBHOOK_SECRET": SECRET,
        "YXBY_TELEGRAM_MODE": mode,
    }
    return dataclasses.replace(TelegramSettings.from_env(env), poll_timeout=2.0)


class Bot:
    """One running server with its Telegram adapter, and people chatting with it."""

    def __init__(self, app: App, api: FakeTelegramAPI, mode: str) -> None:
        self.app = app
        self.api = api
        self.mode = mode
        self.adapter = TelegramAdapter(app, settings_for(api, mode))
        options = ServerOptions(worker_interval=0.02, run_tick=False)
        self.served = Served(create_asgi(app, [self.adapter], options)).start()

    def deliver(self, update: dict[str, Any]) -> None:
        """Hand *update* to the bot the way the mode does, and wait until it is answered."""
        if self.mode == "webhook":
            assert self.served.post(update).status_code == 200
        else:
            self.api.push_update(update)
        wait_for(lambda: self.done(update["update_id"]), what=f"update {update['update_id']}")

    def done(self, update_id: int) -> bool:
        with self.app.db.sessions() as session:
            return update_done(session, TOKEN.partition(":")[0], update_id)

    def person(self, chat_id: int) -> Person:
        return Person(self, chat_id)

    def stop(self) -> None:
        self.served.stop()


class Person:
    """Someone in a private chat with the bot, seen through the fake Bot API."""

    def __init__(self, bot: Bot, chat_id: int) -> None:
        self.bot = bot
        self.api = bot.api
        self.chat_id = chat_id

    def inbox(self) -> list[dict[str, Any]]:
        return self.api.messages(self.chat_id)

    def say(self, text: str, *, reply_to: int | None = None) -> str:
        """Write *text*; the bot's direct answer (every message that arrived meanwhile)."""
        before = len(self.inbox())
        self.bot.deliver(self.api.user_message(self.chat_id, text, reply_to=reply_to))
        return "\n".join(m["text"] for m in self.inbox()[before:])

    def tap(self, label: str) -> str:
        """Tap the newest button labelled *label*."""
        for message in reversed(self.inbox()):
            for text, data in self.api.buttons(message):
                if text == label:
                    before = len(self.inbox())
                    update = self.api.button_tap(
                        self.chat_id, data, message_id=message["message_id"]
                    )
                    self.bot.deliver(update)
                    return "\n".join(m["text"] for m in self.inbox()[before:])
        raise AssertionError(f"no button {label!r} in chat {self.chat_id}")

    def receive(self, needle: str) -> dict[str, Any]:
        """Wait for a pushed message containing *needle*."""
        return wait_for(
            lambda: next((m for m in reversed(self.inbox()) if needle in m["text"]), None),
            what=f"{needle!r} in chat {self.chat_id}",
        )

    def count(self, needle: str) -> int:
        return sum(needle in m["text"] for m in self.inbox())


@pytest.fixture
def api() -> Iterator[FakeTelegramAPI]:
    with FakeTelegramAPI() as fake:
        yield fake


@pytest.fixture
def running(app: App, api: FakeTelegramAPI) -> Iterator[Callable[[str], Bot]]:
    started: list[Bot] = []

    def start(mode: str = "webhook") -> Bot:
        bot = Bot(app, api, mode)
        started.append(bot)
        return bot

    yield start
    for bot in started:
        bot.stop()


def invite(app: App, name: str, department: str) -> str:
    """Register a commissioner and return a fresh one-time code for them."""
    with app.db.begin() as session:
        person = add_commissioner(session, name=name, department=department)
        code, _ = create_invite(session, person, now=app.clock())
    return code


def answered(app: App, update: dict[str, Any]) -> list[str]:
    """What the dialogue answered *update* (as the chat shows it), from its stored replies."""
    with app.db.sessions() as session:
        replies = session.scalars(
            select(ProcessedMessage.replies).where(
                ProcessedMessage.msg_id == f"update:{update['update_id']}"
            )
        ).one()
    return [
        "\n".join([r["text"], *(f"{i}. {c}" for i, c in enumerate(r["choices"], 1))])
        for r in replies
    ]


def count(app: App, model: type, *where: Any) -> int:
    with app.db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# ------------------------------------------------------------------ the whole journey


@pytest.mark.parametrize("mode", ["webhook", "polling"])
def test_enterprise_and_commissioner_end_to_end(
    mode: str, app: App, api: FakeTelegramAPI, running: Callable[[str], Bot]
) -> None:
    bot = running(mode)
    firm = bot.person(ENTERPRISE)
    staff = bot.person(STAFF)

    # the commissioner links the account with a one-time code
    code = invite(app, "张敏", "市场监管局")
    assert "已绑定：张敏（市场监管局" in staff.say(f"/start {code}")
    assert "绑定未成功：该邀请码已被使用" in bot.person(7999).say(f"/link {code}")

    # welcome; a question answered with its source; "solved?" as buttons
    assert "企业服务助手" in firm.say("/start")
    answer = firm.say("营业执照丢了怎么补办")
    assert "营业执照" in answer and "依据：" in answer
    assert [b for b, _ in api.buttons(firm.inbox()[-1])] == ["已解决", "未解决"]
    assert "很高兴帮到您" in firm.tap("已解决")
    assert api.calls("answerCallbackQuery") and api.calls("editMessageReplyMarkup")

    # a vague question: numbered choices, picked with a button
    choices = firm.say("发票")
    assert "您是不是想问" in choices and "1. " in choices
    assert "是否解决了您的问题？" in firm.tap("1")

    # unsolved → ticket → the commissioner's notice with its buttons
    firm.say("营业执照丢了怎么补办")
    assert "是否为您登记诉求" in firm.tap("未解决")
    assert "补充" in firm.tap("登记诉求")
    assert "统一社会信用代码" in firm.tap("没有补充")
    firm.say("天津示例贸易有限公司")
    assert "请确认诉求信息" in firm.say("13800138000")
    created = firm.tap("确认提交")
    assert "诉求已登记，编号 YX-" in created
    number = created.split("编号 ")[1].split("。")[0].split()[0]
    notice = staff.receive(f"【新诉求】{number}")
    assert [b for b, _ in api.buttons(notice)] == ["查看对话", "签收", "转派", "申请协同", "办结"]
    assert f"已签收 {number}" in staff.tap("签收")
    firm.receive(f"您的诉求 {number} 已由企业服务专员张敏（市场监管局）签收")
    assert api.buttons(staff.inbox()[-2]), "the notice keeps 转派/协同/办结 after 签收"
    # that push is marked sent only after the API took it: a reply before then queues
    # behind it and arrives after say() returned
    wait_for(lambda: not app.inbox.pending_for("telegram", str(ENTERPRISE)), what="push sent")

    # live handoff: offered, taken, relayed both ways, ended
    firm.say("营业执照丢了怎么补办")
    assert "正在为您联系市场监管局" in firm.say("/human")
    staff.receive("【人工请求】")
    assert "您已接入" in staff.tap("接入")
    firm.receive("企业服务专员张敏（市场监管局）已接入")
    assert firm.say("补办执照大概需要几天？") == ""
    relayed = staff.receive("补办执照大概需要几天")
    assert staff.say("一般三个工作日，请带好公章。", reply_to=relayed["message_id"]) == ""
    firm.receive("一般三个工作日")
    assert "已结束" in staff.say("/end")
    firm.receive("专员已结束本次对话")

    # 办结 → the result and the rating buttons reach the enterprise; the rating counts
    assert "请回复：办结" in staff.tap("办结")
    assert f"已办结 {number}" in staff.say(f"办结 {number} 已为企业办理营业执照补领")
    result = firm.receive("已为企业办理营业执照补领")
    assert [b for b, _ in api.buttons(result)] == ["满意", "基本满意", "不满意"]
    assert "感谢您的评价" in firm.tap("满意")

    # every push arrived exactly once (direct replies are in the outbox too, all sent)
    with app.db.sessions() as session:
        rows = session.scalars(select(OutboxMessage)).all()
    assert rows and all(p.status is OutboxStatus.SENT for p in rows)
    pushes = [p for p in rows if p.kind != "reply"]
    assert pushes
    for push in pushes:
        texts = api.texts(int(push.recipient))
        assert texts.count(push.payload["text"]) == 1, push.payload["text"]
    if mode == "polling":
        assert api.calls("deleteWebhook") and api.calls("getUpdates")
    print(f"\n--- fake Bot API log ({mode}) ---\n{api.transcript()}")


def test_commissioner_handles_two_conversations_by_replying(
    app: App, api: FakeTelegramAPI, running: Callable[[str], Bot], clock: MovableClock
) -> None:
    bot = running("webhook")
    staff = bot.person(STAFF)
    first, second = bot.person(ENTERPRISE), bot.person(OTHER_ENTERPRISE)
    staff.say(f"/link {invite(app, '张敏', '市场监管局')}")
    for firm in (first, second):
        firm.say("营业执照丢了怎么补办")
        firm.say("转人工")
        staff.receive(f"telegram用户{firm.chat_id}请求人工服务")
        assert "您已接入" in staff.tap("接入")
        clock.advance(seconds=30)
    first.receive("已接入")
    second.receive("已接入")
    first.say("第一家企业的问题")
    second.say("第二家企业的问题")
    to_first = staff.receive("第一家企业的问题")
    staff.receive("第二家企业的问题")
    # the second conversation is the newest, but replying to the first's message answers it
    staff.say("这是给第一家的答复", reply_to=to_first["message_id"])
    first.receive("这是给第一家的答复")
    staff.say("没有引用时回复最近接入的对话")
    second.receive("没有引用时回复最近接入的对话")
    assert second.count("这是给第一家的答复") == 0
    assert first.count("没有引用时回复最近接入的对话") == 0


# ------------------------------------------------------------------ dedupe and security


def test_redelivered_update_is_answered_once(
    app: App, api: FakeTelegramAPI, running: Callable[[str], Bot]
) -> None:
    bot = running("webhook")
    update = api.user_message(ENTERPRISE, "营业执照丢了怎么补办")
    assert bot.served.post(update).status_code == 200
    assert bot.served.post(update).status_code == 200
    assert api.texts(ENTERPRISE) == answered(app, update)  # once each
    assert len(api.texts(ENTERPRISE)) == 2  # the answer and "solved?"
    assert count(app, DialogueTurn) == 1


def test_the_same_update_handled_twice_at_once_is_answered_once(
    app: App, api: FakeTelegramAPI, running: Callable[[str], Bot], monkeypatch: Any
) -> None:
    bot = running("webhook")
    handle = app.dialogue.handle
    both = threading.Barrier(2, timeout=10)

    def in_step(incoming: Incoming) -> list[Reply]:
        # both handlings are past the "done?" check (else the later one, started after the
        # first had committed, finds it done and never gets here: the barrier broke) …
        both.wait()
        replies = handle(incoming)
        both.wait()  # … and both have their replies before either answers
        return replies

    monkeypatch.setattr(app.dialogue, "handle", in_step)
    update = api.user_message(ENTERPRISE, "营业执照丢了怎么补办")
    codes: list[int] = []
    posts = [
        threading.Thread(target=lambda: codes.append(bot.served.post(update).status_code))
        for _ in range(2)
    ]
    for post in posts:
        post.start()
    for post in posts:
        post.join(timeout=20)
    assert codes == [200, 200]
    # a reply one delivery leaves to keep the order goes out with the worker's next pass
    start = bot.served.worker.passes
    wait_for(lambda: bot.served.worker.passes >= start + 3, what="worker passes")
    assert api.texts(ENTERPRISE) == answered(app, update)  # once each, nothing sent again
    assert len(api.texts(ENTERPRISE)) == 2
    assert count(app, OutboxMessage, OutboxMessage.status != OutboxStatus.SENT) == 0


def test_update_handled_but_not_answered_before_a_crash_is_answered_on_redelivery(
    app: App, api: FakeTelegramAPI, running: Callable[[str], Bot]
) -> None:
    update = api.user_message(ENTERPRISE, "营业执照丢了怎么补办")
    # the dialogue committed, then the process died before anything was sent
    msg_id = f"update:{update['update_id']}"
    app.dialogue.handle(
        Incoming("telegram", str(ENTERPRISE), "营业执照丢了怎么补办", msg_id=msg_id)
    )
    bot = running("webhook")
    assert bot.served.post(update).status_code == 200
    assert bot.served.post(update).status_code == 200
    assert api.texts(ENTERPRISE) == answered(app, update)
    assert len(api.texts(ENTERPRISE)) == 2
    assert count(app, DialogueTurn) == 1


def test_polling_redelivery_is_answered_once(
    app: App, api: FakeTelegramAPI, running: Callable[[str], Bot]
) -> None:
    bot = running("polling")
    firm = bot.person(ENTERPRISE)
    update = api.user_message(ENTERPRISE, "营业执照丢了怎么补办")
    bot.deliver(update)
    api.redeliver(update)
    firm.say("/help")  # handled after the redelivery (updates are processed in order)
    assert api.texts(ENTERPRISE)[:2] == answered(app, update)
    assert len(api.texts(ENTERPRISE)) == 3
    assert count(app, DialogueTurn) == 2


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x"])
def test_forged_webhook_is_refused_and_changes_nothing(
    secret: str | None, app: App, api: FakeTelegramAPI, running: Callable[[str], Bot]
) -> None:
    bot = running("webhook")
    response = bot.served.post(api.user_message(ENTERPRISE, "你好"), secret=secret)
    assert response.status_code == 403
    assert api.calls("sendMessage") == []
    for model in (ProcessedMessage, ChannelIdentity, DialogueTurn, TelegramUpdate):
        assert count(app, model) == 0


def _message(**fields: Any) -> dict[str, Any]:
    chat = {"id": ENTERPRISE, "type": "private", "first_name": "王经理"}
    return {"message_id": 1, "date": 1_700_000_000, "chat": chat, "text": "你好", **fields}


UNREADABLE: dict[str, bytes | dict[str, Any]] = {
    "junk": b"{not json",
    "not utf-8": b"\xff\xfe\x00",
    "a list": b"[1, 2]",
    "no update_id": {"no": "update"},
    "message is a string": {"update_id": 9001, "message": "你好"},
    "from is a string": {"update_id": 9002, "message": _message(**{"from": "me"})},
    "callback without chat_instance": {"update_id": 9003, "callback_query": {"id": "q"}},
    "message without chat": {
        "update_id": 9004,
        "message": {"message_id": 1, "date": 1, "text": "/link SECRET-CODE"},
    },
    "reply to a message without chat": {
        "update_id": 9005,
        "message": _message(reply_to_message={"message_id": 2, "date": 1}),
    },
    "chat member change without from": {
        "update_id": 9006,
        "my_chat_member": {"chat": _message()["chat"], "date": 1},
    },
}


@pytest.mark.parametrize("body", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_an_update_ptb_cannot_read_is_acknowledged_with_one_log_line(
    body: bytes | dict[str, Any],
    app: App,
    api: FakeTelegramAPI,
    running: Callable[[str], Bot],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = running("webhook")
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    caplog.clear()
    reply = bot.served.http.post(
        "/telegram/webhook", content=body, headers={SECRET_HEADER: SECRET}, timeout=15
    )
    assert reply.status_code == 200  # anything else and Telegram sends it again, forever
    [line] = [r for r in caplog.records if r.name.startswith("yxby")]
    assert line.levelname == "WARNING" and "ignored" in line.getMessage()
    assert "SECRET-CODE" not in caplog.text  # what it says is never logged
    assert api.calls("sendMessage") == []
    assert count(app, TelegramUpdate) == 0 and count(app, DialogueTurn) == 0
    forged = bot.served.http.post("/telegram/webhook", content=body, headers={SECRET_HEADER: "x"})
    assert forged.status_code == 403  # a wrong secret is still refused first
    bot.person(ENTERPRISE).say("/help")  # the next update is handled as usual
    assert len(api.texts(ENTERPRISE)) == 1


def test_polling_skips_an_update_missing_its_chat_and_goes_on(
    app: App, api: FakeTelegramAPI, running: Callable[[str], Bot], caplog: pytest.LogCaptureFixture
) -> None:
    bot = running("polling")
    api.push_update({"update_id": 1000, "message": {"message_id": 1, "date": 1, "text": "你好"}})
    bot.person(ENTERPRISE).say("/help")  # handled after the broken one
    assert len(api.texts(ENTERPRISE)) == 1
    ignored = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert [r.getMessage() for r in ignored] == [
        "telegram update 1000 ignored: update.message.chat missing"
    ]
    assert not bot.done(1000) and "Traceback" not in caplog.text


def test_group_chats_and_edits_are_acknowledged_and_ignored(
    app: App, api: FakeTelegramAPI, running: Callable[[str], Bot]
) -> None:
    bot = running("webhook")
    group = api.user_message(-100, "大家好")
    group["message"]["chat"] = {"id": -100, "type": "supergroup", "title": "某群"}
    edited = api.user_message(ENTERPRISE, "改过的话")
    edited["edited_message"] = edited.pop("message")
    for update in (group, edited):
        assert bot.served.post(update).status_code == 200
        assert bot.done(update["update_id"])
    assert api.calls("sendMessage") == []
    assert count(app, ChannelIdentity) == 0


def test_webhook_mode_registers_its_url_secret_and_commands(app: App, api: FakeTelegramAPI) -> None:
    url = "https://bot.example.org/telegram/webhook"
    adapter = TelegramAdapter(
        app, dataclasses.replace(settings_for(api, "webhook"), webhook_url=url)
    )

    async def main() -> None:
        await adapter.startup()
        await adapter.shutdown()

    asyncio.run(main())
    assert api.webhook == {"url": url, "secret_token": SECRET}
    assert [c["command"] for c in api.commands][:3] == ["start", "help", "status"]


# ------------------------------------------------------------- start-up while Telegram is away


def closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_start_up_with_telegram_unreachable_fails_cleanly_and_pushes_wait(app: App) -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    settings = TelegramSettings(token=TOKEN, api_base=base, webhook_secret=SECRET)
    adapter = TelegramAdapter(app, settings)
    payload: dict[str, Any] = {"text": "您好", "choices": [], "buttons": [], "ref": None}

    async def main() -> tuple[ChannelUnavailable, RetryLater]:
        with pytest.raises(ChannelUnavailable) as failed:
            await adapter.startup()
        assert not adapter.ready
        with pytest.raises(RetryLater) as later:
            await adapter.sender().send(str(ENTERPRISE), payload)
        await adapter.shutdown()
        return failed.value, later.value

    failed, later = run(main())
    assert failed.reason.startswith(f"无法连接 Telegram（{base}）：NetworkError")
    assert later.after == 5.0 and "尚未连接" in later.reason


def test_a_rejected_token_is_reported_without_the_token(app: App, api: FakeTelegramAPI) -> None:
    wrong = "987654321:WRONG-token_that-is-secret"
    adapter = TelegramAdapter(app, dataclasses.replace(settings_for(api, "webhook"), token=wrong))

    async def main() -> ChannelUnavailable:
        try:
            with pytest.raises(ChannelUnavailable) as failed:
                await adapter.startup()
        finally:
            await adapter.shutdown()
        return failed.value

    failed = run(main())
    assert failed.reason == "Telegram 拒绝了机器人令牌，请检查 YXBY_TELEGRAM_TOKEN"
    assert "WRONG" not in str(failed)


@pytest.mark.parametrize(
    ("mode", "method"), [("webhook", "getMe"), ("webhook", "setWebhook"), ("polling", "getMe")]
)
def test_a_start_up_that_failed_part_way_works_when_tried_again(
    mode: str, method: str, app: App, api: FakeTelegramAPI
) -> None:
    url = "https://bot.example.org/telegram/webhook"
    settings = dataclasses.replace(settings_for(api, mode), webhook_url=url)
    adapter = TelegramAdapter(app, settings)
    api.fail(500, times=1, methods=(method,))

    async def main() -> ChannelUnavailable:
        try:
            with pytest.raises(ChannelUnavailable) as failed:
                await adapter.startup()
            assert not adapter.ready and not adapter.application.running
            await adapter.startup()  # what the server does after the backoff
            assert adapter.ready and adapter.application.running
        finally:
            await adapter.shutdown()
        assert not adapter.ready
        return failed.value

    failed = run(main())
    assert "Internal Server Error" in failed.reason
    if mode == "webhook":
        assert api.webhook == {"url": url, "secret_token": SECRET}
    else:
        assert api.calls("getUpdates")


# ------------------------------------------------------------------- failing Bot API


def test_messages_survive_500s_and_429s_and_arrive_once_in_order(
    app: App, api: FakeTelegramAPI, running: Callable[[str], Bot], clock: MovableClock
) -> None:
    bot = running("webhook")
    firm = bot.person(ENTERPRISE)
    api.fail(500, times=2)
    api.fail(429, times=2, retry_after=30)
    update = api.user_message(ENTERPRISE, "营业执照丢了怎么补办")
    bot.deliver(update)  # Telegram answered 500: the replies wait in the outbox
    with app.db.sessions() as session:
        queued = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        assert [m.kind for m in queued] == ["reply", "reply"]
    worker = bot.served.worker

    def attempt(n: int) -> None:
        """Wait for the n-th sendMessage and for the worker to record its outcome."""
        wait_for(lambda: len(api.calls("sendMessage")) >= n, what=f"attempt {n}")
        start = worker.passes
        wait_for(lambda: worker.passes > start, what="the worker's pass")

    attempt(2)  # the worker's first try: 500 again, then backoff (about a second)
    clock.advance(seconds=2)
    attempt(3)  # 429, retry_after=30
    clock.advance(seconds=29)
    start = worker.passes
    wait_for(lambda: worker.passes >= start + 5, what="worker passes")
    assert len(api.calls("sendMessage")) == 3  # retry_after is honoured
    with app.db.sessions() as session:
        first = session.get(OutboxMessage, queued[0].id)
        assert first is not None and "429" in (first.last_error or "")
        assert first.next_attempt_at is not None and first.next_attempt_at > clock()
    clock.advance(seconds=2)
    attempt(4)  # 429 again
    clock.advance(seconds=31)
    wait_for(lambda: len(api.messages(ENTERPRISE)) == 2, what="delivery")
    # each reply once, in the dialogue's order
    assert api.texts(ENTERPRISE) == answered(app, update)
    assert [r.status for r in api.calls("sendMessage")] == [500, 500, 429, 429, 200, 200]
    start = worker.passes
    wait_for(lambda: worker.passes >= start + 3, what="worker passes")
    assert len(api.messages(ENTERPRISE)) == 2
    assert count(app, OutboxMessage, OutboxMessage.status != OutboxStatus.SENT) == 0
    # the chat goes on as usual: an answer is sent directly again
    firm.say("/help")
    assert len(api.messages(ENTERPRISE)) == 3
    print(f"\n--- fake Bot API log (500, then 429) ---\n{api.transcript()}")


def test_a_429_on_a_direct_reply_waits_retry_after(
    app: App, api: FakeTelegramAPI, running: Callable[[str], Bot], clock: MovableClock
) -> None:
    bot = running("webhook")
    api.fail(429, times=1, retry_after=30)
    update = api.user_message(ENTERPRISE, "营业执照丢了怎么补办")
    bot.deliver(update)
    with app.db.sessions() as session:
        first = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).first()
        assert first is not None and first.status is OutboxStatus.PENDING
        assert first.next_attempt_at == clock() + timedelta(seconds=30)
        assert "429" in (first.last_error or "")
    worker = bot.served.worker
    start = worker.passes
    wait_for(lambda: worker.passes >= start + 5, what="worker passes")
    assert [r.status for r in api.calls("sendMessage")] == [429]  # neither reply before 30 s
    clock.advance(seconds=30)
    wait_for(lambda: len(api.messages(ENTERPRISE)) == 2, what="delivery")
    assert api.texts(ENTERPRISE) == answered(app, update)


def test_polling_update_whose_handling_failed_is_handled_again(
    app: App, api: FakeTelegramAPI, running: Callable[[str], Bot], monkeypatch: Any
) -> None:
    bot = running("polling")
    bot.adapter.requeue_delays = (0.01, 0.01)
    handle = app.dialogue.handle
    calls: list[str] = []

    def flaky(incoming: Incoming) -> list[Reply]:
        calls.append(incoming.msg_id or "")
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return handle(incoming)

    monkeypatch.setattr(app.dialogue, "handle", flaky)
    update = api.user_message(ENTERPRISE, "营业执照丢了怎么补办")
    bot.deliver(update)  # PTB confirmed the offset; the adapter put the update back itself
    assert len(calls) == 2
    assert api.texts(ENTERPRISE) == answered(app, update)


def test_polling_gives_up_on_an_update_that_keeps_failing_and_never_logs_its_text(
    app: App,
    api: FakeTelegramAPI,
    running: Callable[[str], Bot],
    monkeypatch: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = running("polling")
    bot.adapter.requeue_delays = (0.01, 0.01)
    tries: list[str] = []

    def broken(code: str, chat_key: str) -> Reply:
        tries.append(code)
        raise RuntimeError("boom")

    monkeypatch.setattr(bot.adapter, "_redeem", broken)
    update = api.user_message(STAFF, "/link SECRET-CODE-XYZ")
    api.push_update(update)
    wait_for(lambda: "given up" in caplog.text, what="giving up")
    assert tries == ["SECRET-CODE-XYZ"] * 3  # the first handling and two more
    assert not bot.done(update["update_id"])
    assert f"telegram update {update['update_id']} failed" in caplog.text
    assert "SECRET-CODE-XYZ" not in caplog.text
    bot.person(ENTERPRISE).say("/help")  # later updates are still handled


def test_blocked_user_is_a_permanent_failure_kept_with_its_reason(
    app: App, api: FakeTelegramAPI, running: Callable[[str], Bot]
) -> None:
    bot = running("webhook")
    staff = bot.person(STAFF)
    staff.say(f"/link {invite(app, '张敏', '市场监管局')}")
    api.block(STAFF)
    firm = bot.person(ENTERPRISE)
    firm.say("营业执照丢了怎么补办")
    firm.say("转人工")

    def failed() -> list[OutboxMessage]:
        with app.db.sessions() as session:
            stmt = select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.FAILED)
            return list(session.scalars(stmt))

    [row] = wait_for(failed, what="failed push")
    assert row.recipient == str(STAFF) and "屏蔽" in (row.last_error or "")
    assert row.kind == "handoff_offer"


# ---------------------------------------------------------------------------- sending


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_adapter(app: App, api: FakeTelegramAPI, action: Callable[..., Any]) -> Any:
    adapter = TelegramAdapter(app, settings_for(api, "webhook"))
    await adapter.startup()
    try:
        return await action(adapter.sender())
    finally:
        await adapter.shutdown()


def test_sender_maps_telegram_errors_to_outbox_outcomes(app: App, api: FakeTelegramAPI) -> None:
    payload: dict[str, Any] = {"text": "您好", "choices": [], "buttons": [], "ref": None}

    async def attempt(sender: Any) -> list[object]:
        outcomes: list[object] = []
        for _ in range(4):
            try:
                await sender.send(str(ENTERPRISE), payload)
                outcomes.append("sent")
            except (RetryLater, PermanentFailure) as exc:
                outcomes.append(exc)
        api.forget_chat(404)
        for recipient in ("404", "not-a-chat"):
            try:
                await sender.send(recipient, payload)
            except PermanentFailure as exc:
                outcomes.append(exc)
        api.block(ENTERPRISE)
        try:
            await sender.send(str(ENTERPRISE), payload)
        except PermanentFailure as exc:
            outcomes.append(exc)
        return outcomes

    api.fail(429, times=1, retry_after=7)
    api.fail(500, times=1)
    api.fail(502, times=1)
    out = run(_with_adapter(app, api, attempt))
    assert isinstance(out[0], RetryLater) and out[0].after == 7.0
    assert isinstance(out[1], RetryLater) and out[1].after is None
    assert "Internal Server Error" in out[1].reason
    assert isinstance(out[2], RetryLater) and out[2].after is None
    assert out[3] == "sent"
    assert isinstance(out[4], PermanentFailure) and "chat not found" in out[4].reason
    assert isinstance(out[5], PermanentFailure)
    assert isinstance(out[6], PermanentFailure) and "屏蔽" in out[6].reason


def test_long_push_is_split_and_keeps_its_keyboard_and_reference(
    app: App, api: FakeTelegramAPI
) -> None:
    sentence = "企业开办可以通过网上办事大厅一次提交全部材料，审核通过后即可领取执照。"
    payload = {
        "text": sentence * 200 + "<script>&",
        "choices": [],
        "buttons": [{"label": "接入", "payload": "take:9"}],
        "ref": "handoff:9",
    }

    async def push(sender: Any) -> None:
        await sender.send(str(STAFF), payload)

    run(_with_adapter(app, api, push))
    sent = api.messages(STAFF)
    assert len(sent) >= 2  # the fake refuses anything over 4,096 characters
    assert all(m["text"].endswith("。") for m in sent[:-1])  # cut at sentence ends
    assert "".join(m["text"] for m in sent) == payload["text"]
    assert [api.buttons(m) for m in sent[:-1]] == [[]] * (len(sent) - 1)
    assert api.buttons(sent[-1]) == [("接入", "take:9")]
    from handoff.telegram_state import ref_of

    with app.db.sessions() as session:
        assert {ref_of(session, str(STAFF), m["message_id"]) for m in sent} == {"handoff:9"}


@pytest.mark.parametrize("status", [429, 502])
def test_long_push_interrupted_after_its_first_part_sends_only_the_rest(
    status: int, app: App, api: FakeTelegramAPI, clock: MovableClock
) -> None:
    sentence = "企业开办可以通过网上办事大厅一次提交全部材料，审核通过后即可领取执照。"
    payload = {"text": sentence * 200, "choices": [], "buttons": [], "ref": "handoff:9"}
    with app.db.begin() as session:
        enqueue(session, "telegram", str(STAFF), "t", payload, "long", now=clock())
    api.fail(status, times=1, retry_after=3, after=1)

    async def push(sender: Any) -> None:
        worker = OutboxWorker(app.db.sessions, {"telegram": sender}, clock)
        assert (await worker.run_once()).retried == 1
        with app.db.sessions() as session:
            row = session.scalars(select(OutboxMessage)).one()
            assert row.payload["parts_sent"] == 1
        clock.advance(seconds=5)
        assert (await worker.run_once()).sent == 1

    run(_with_adapter(app, api, push))
    sent = api.texts(STAFF)
    assert len(sent) >= 2 and len(set(sent)) == len(sent)  # no part twice
    assert "".join(sent) == payload["text"]
    assert [r.status for r in api.calls("sendMessage")] == [200, status] + [200] * (len(sent) - 1)
    from handoff.telegram_state import ref_of

    with app.db.sessions() as session:  # replies to either attempt's parts find the handoff
        message_ids = [m["message_id"] for m in api.messages(STAFF)]
        assert {ref_of(session, str(STAFF), m) for m in message_ids} == {"handoff:9"}


def test_sla_notice_payload_is_sent_as_text(app: App, api: FakeTelegramAPI) -> None:
    notice = {
        "text": "【超时通报】工单 YX-20261123-0001 的「对接企业」时限已到期未完成。",
        "ticket": "YX-20261123-0001",
        "clock": "contact",
        "due_at": "2026-11-25T16:00:00+00:00",
        "department": "市场监管局",
    }

    async def push(sender: Any) -> None:
        await sender.send(str(STAFF), notice)

    run(_with_adapter(app, api, push))
    [message] = api.messages(STAFF)
    assert message["text"] == notice["text"] and "reply_markup" not in message
    assert api.calls("sendMessage")[0].params["text"].startswith("<b>【超时通报】</b>工单")


# -------------------------------------------------------------------------- rendering


def test_html_is_escaped_and_headings_are_bold() -> None:
    assert to_html("a<b>&c") == "a&lt;b&gt;&amp;c"
    assert to_html("【新诉求】YX-1 <x>") == "<b>【新诉求】</b>YX-1 &lt;x&gt;"


def test_split_text_cuts_at_sentence_ends_under_the_limit() -> None:
    text = "第一句话。" * 10 + "\n" + "问题？" * 10
    pieces = split_text(text, limit=40)
    assert all(len(p) <= 40 for p in pieces)
    assert all(p.endswith(("。", "？")) for p in pieces)
    assert "".join(pieces).replace("\n", "") == text.replace("\n", "")
    assert split_text("短消息") == ["短消息"]
    assert split_text("   ") == []
    # one sentence longer than the limit is cut where it must; escaping counts
    long = split_text("&" * 100, limit=50)
    assert all(len(to_html(p)) <= 50 for p in long) and "".join(long) == "&" * 100
    assert max(len(to_html(p)) for p in split_text("字" * 9000)) <= MAX_MESSAGE_CHARS


def test_keyboard_rows_and_choices() -> None:
    reply = Reply("选一个", choices=("甲", "乙", "丙"))
    rows = keyboard_rows(reply)
    assert [[b.payload for b in row] for row in rows] == [["cmd:1", "cmd:2", "cmd:3"]]
    parts = render(reply)
    assert parts[0].html == "选一个\n1. 甲\n2. 乙\n3. 丙"
    staff = Reply("x", buttons=tuple(Button(label, f"{label}:YX") for label in ("签收", "转派")))
    assert len(keyboard_rows(staff)) == 1
    long = Reply("x", buttons=(Button("太长", "p" * 65), Button("YX-20261123-0001", "s")))
    assert [[b.label for b in row] for row in keyboard_rows(long)] == [["YX-20261123-0001"]]
    assert render(Reply("")) == []


def test_invite_code_parsing() -> None:
    assert invite_code("/start ABCD-EFGH-JKMN") == "ABCD-EFGH-JKMN"
    assert invite_code("/start@yxby_test_bot abcd") == "abcd"
    assert invite_code("/start") is None
    assert invite_code("/link") == ""
    assert invite_code("/link X") == "X"
    assert invite_code("/help") is None


def test_settings_from_the_environment() -> None:
    base = {"YXBY_TELEGRAM_TOKEN": TOKEN, "YXBY_TELEGRAM_WEBHOOK_SECRET": SECRET}
    settings = TelegramSettings.from_env(base)
    assert settings.mode == "webhook" and settings.api_base == "https://api.telegram.org"
    assert settings.bot_id == "123456789"
    assert TelegramSettings.from_env({"YXBY_TELEGRAM_TOKEN": TOKEN}, polling=True).mode == "polling"
    bad: list[tuple[dict[str, str], str]] = [
        ({}, "YXBY_TELEGRAM_TOKEN"),
        ({"YXBY_TELEGRAM_TOKEN": "nonsense"}, "格式不对"),
        ({"YXBY_TELEGRAM_TOKEN": TOKEN}, "YXBY_TELEGRAM_WEBHOOK_SECRET"),
        ({**base, "YXBY_TELEGRAM_MODE": "push"}, "YXBY_TELEGRAM_MODE"),
        ({**base, "YXBY_TELEGRAM_WEBHOOK_SECRET": "含中文"}, "YXBY_TELEGRAM_WEBHOOK_SECRET"),
        ({**base, "YXBY_TELEGRAM_API_BASE": "ftp://x"}, "YXBY_TELEGRAM_API_BASE"),
    ]
    for env, needle in bad:
        with pytest.raises(ConfigError, match=needle):
            TelegramSettings.from_env(env)


def test_registry_builds_the_adapter_from_the_environment(app: App, api: FakeTelegramAPI) -> None:
    from bot.channels.registry import adapters_from_env

    env = {"YXBY_TELEGRAM_TOKEN": TOKEN, "YXBY_TELEGRAM_API_BASE": api.base_url}
    [adapter] = adapters_from_env(app, env=env, telegram_polling=True)
    assert adapter.name == "telegram" and list(adapter.routes()) == []
    assert isinstance(adapter, TelegramAdapter) and adapter.settings.api_base == api.base_url


# ---------------------------------------------------------------------------- invites


def test_invite_is_hashed_expires_and_works_once(app: App, clock: MovableClock) -> None:
    with app.db.begin() as session:
        person = add_commissioner(session, name="李娜", department="政务办")
        code, row = create_invite(session, person, now=clock(), valid_for=timedelta(hours=1))
        assert row.code_hash == hash_code(code) and code not in row.code_hash
        stale, _ = create_invite(session, person, now=clock(), valid_for=timedelta(minutes=5))
    clock.advance(minutes=10)
    with app.db.begin() as session, pytest.raises(InputError, match="已过期"):
        redeem_invite(session, stale, channel="telegram", user_key="1", now=clock())
    with app.db.begin() as session, pytest.raises(InputError, match="无效"):
        redeem_invite(session, "WRONG-CODE", channel="telegram", user_key="1", now=clock())
    with app.db.begin() as session:
        typed = code.lower().replace("-", " ")
        assert redeem_invite(
            session, typed, channel="telegram", user_key="1", now=clock()
        ).name == ("李娜")
    with app.db.begin() as session:  # the same account again: a redelivery, same answer
        redeem_invite(session, code, channel="telegram", user_key="1", now=clock())
    with app.db.begin() as session, pytest.raises(InputError, match="已被使用"):
        redeem_invite(session, code, channel="telegram", user_key="2", now=clock())
    assert count(app, CommissionerBinding) == 1
    with app.db.sessions() as session:
        used = session.scalars(
            select(CommissionerInvite).where(CommissionerInvite.used_at.is_not(None))
        ).one()
        assert (used.used_channel, used.used_user_key) == ("telegram", "1")
    with app.db.begin() as session, pytest.raises(InputError, match="有效期"):
        again = session.get(Commissioner, person.id)
        assert again is not None
        create_invite(session, again, now=clock(), valid_for=timedelta(0))


def test_account_of_someone_else_cannot_take_an_invite(app: App, clock: MovableClock) -> None:
    with app.db.begin() as session:
        add_commissioner(session, name="赵强", department="商务局", bindings=[("telegram", "9")])
        other = add_commissioner(session, name="王芳", department="商务局")
        code, _ = create_invite(session, other, now=clock())
    with app.db.begin() as session, pytest.raises(InputError, match="已绑定给其他人员"):
        redeem_invite(session, code, channel="telegram", user_key="9", now=clock())


def test_cli_invite_prints_a_code_that_redeems(db_url: str, clock: MovableClock) -> None:
    from bot.cli import main
    from handoff.db import open_database

    env = {"YXBY_DATABASE_URL": db_url}
    runner = CliRunner()
    added = runner.invoke(main, ["commissioners", "add", "张敏", "--department", "市场局"], env=env)
    assert added.exit_code == 0, added.output
    result = runner.invoke(
        main, ["commissioners", "invite", "张敏", "--expires-hours", "2"], env=env
    )
    assert result.exit_code == 0, result.output
    code = next(w for w in result.output.split() if w.count("-") == 2 and len(w) == 14)
    assert f"/link {code}" in result.output
    missing = runner.invoke(main, ["commissioners", "invite", "无此人"], env=env)
    assert missing.exit_code == 1 and "没有名为「无此人」" in missing.output
    database = open_database(db_url)
    try:
        with database.begin() as session:
            invite_row = session.scalars(select(CommissionerInvite)).one()
            assert invite_row.code_hash == hash_code(code)
            lifetime = invite_row.expires_at - invite_row.created_at
            assert lifetime == timedelta(hours=2)
            person = redeem_invite(
                session, code, channel="telegram", user_key="42", now=invite_row.created_at
            )
            assert person.department == "市场监管局"
    finally:
        database.dispose()


@pytest.mark.parametrize(
    ("cause", "outcome"),
    [
        (httpx.ReadTimeout("read"), SendTimedOut),  # went out, no answer: maybe delivered
        (httpx.WriteTimeout("write"), SendTimedOut),
        (httpx.ConnectTimeout("connect"), RetryLater),  # never reached Telegram
        (httpx.PoolTimeout("pool"), RetryLater),
    ],
)
def test_a_timeout_is_maybe_sent_only_when_the_request_went_out(
    cause: Exception, outcome: type[Exception]
) -> None:
    from telegram.error import TimedOut

    from bot.channels.telegram.rendering import Part
    from bot.channels.telegram.sender import send_part

    class SlowBot:
        async def send_message(self, *args: Any, **kwargs: Any) -> Any:
            raise TimedOut("Timed out") from cause

    part = Part(html="结果")
    with pytest.raises(outcome) as info:
        asyncio.run(send_part(SlowBot(), 42, part))  # type: ignore[arg-type]
    assert type(info.value) is outcome
