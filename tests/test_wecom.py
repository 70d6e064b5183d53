"""The 企业微信 (WeCom) channel: staff notices as application messages, from the outbox.

The real wechatpy client and the real :class:`OutboxWorker` talk to a fake WeCom API on
127.0.0.1 (``tests/fakes/wecom_api.py``); nothing here can reach the internet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from bot.channels.wecom import (
    CHECK_CONFIG,
    DEFAULT_API_BASE,
    WeComAdapter,
    WeComApiClient,
    WeComConfig,
    WeComSender,
    fit_lines,
    wecom_adapter_from_env,
    wecom_config_from_env,
)
from bot.channels.wecom.rendering import (
    DESCRIPTION_LIMIT_BYTES,
    TEXT_LIMIT_BYTES,
    TITLE_LIMIT_BYTES,
)
from bot.delivery import OutboxWorker
from bot.server import ServerOptions, create_asgi
from bot.types import Button, Reply, reply_payload
from handoff.db import Database
from handoff.models import Commissioner, OutboxMessage, OutboxStatus
from handoff.outbox import PermanentFailure, RetryLater, SendTimedOut, enqueue
from tests.conftest import MovableClock
from tests.fakes.wecom_api import SEND_PATH, TOKEN_PATH, FakeWeComApi
from tests.servers import LiveServer
from yxby.errors import ConfigError

# wechatpy 1.8's message API calls its own deprecated ``_post``
pytestmark = pytest.mark.filterwarnings("ignore:`_post` method:DeprecationWarning")

CORP = "ww-test-corp"
SECRET = "wecom-test-secret"
AGENT = 1000002
CONSOLE = "https://yxby.example.gov.cn"
NUMBER = "YX-20261123-0001"


def nbytes(text: str) -> int:
    return len(text.encode())


@pytest.fixture
def fake() -> Iterator[FakeWeComApi]:
    with FakeWeComApi(CORP, SECRET, AGENT, users=("zhangmin", "lisi")) as api:
        yield api


def make_config(api: FakeWeComApi, **overrides: Any) -> WeComConfig:
    settings: dict[str, Any] = {
        "corp_id": CORP,
        "agent_id": AGENT,
        "secret": SECRET,
        "console_url": CONSOLE,
        "api_base": api.base_url,
        "http_timeout": 2.0,
    } | overrides
    return WeComConfig(**settings)


@pytest.fixture
def sender(fake: FakeWeComApi) -> WeComSender:
    return WeComAdapter(make_config(fake)).sender()


def new_ticket_reply(
    number: str = NUMBER, description: str = "办理营业执照变更需要哪些材料？"
) -> Reply:
    """A new-ticket notice as ``bot.notify.Notifier.created`` words it."""
    text = "\n".join(
        [
            f"【新诉求】{number}",
            "企业：天津测试科技有限公司",
            f"内容：{description}",
            "分派：市场监管局（诉求涉及营业执照）",
            "联系时限：2026-11-25 10:00；办结时限：2026-12-02 10:00",
        ]
    )
    buttons = (Button("签收", f"accept:{number}"), Button("转派", f"transfer:{number}"))
    return Reply(text, buttons=buttons, ref=f"ticket:{number}")


def queue(db: Database, clock: MovableClock, payload: dict[str, Any], key: str, **kw: Any) -> None:
    recipient = kw.get("recipient", "zhangmin")
    kind = kw.get("kind", "ticket_new")
    with db.begin() as session:
        enqueue(session, "wecom", recipient, kind, payload, key, now=clock())


def rows(db: Database) -> list[tuple[OutboxStatus, str | None]]:
    with db.sessions() as session:
        found = session.scalars(
            select(OutboxMessage).where(OutboxMessage.channel == "wecom").order_by(OutboxMessage.id)
        )
        return [(r.status, r.last_error) for r in found]


def worker(db: Database, clock: MovableClock, sender: WeComSender) -> OutboxWorker:
    return OutboxWorker(db.sessions, {"wecom": sender}, clock)


# ----------------------------------------------------------------------------- messages


def test_ticket_notice_is_a_text_card_with_the_ticket_link(
    db: Database, clock: MovableClock, fake: FakeWeComApi, sender: WeComSender
) -> None:
    queue(db, clock, reply_payload(new_ticket_reply()), "ticket_new:1")
    report = asyncio.run(worker(db, clock, sender).run_once())
    assert report.sent == 1
    (body,) = fake.sent
    assert (body["msgtype"], body["touser"], body["agentid"]) == ("textcard", "zhangmin", AGENT)
    assert body["textcard"] == {
        "title": f"【新诉求】{NUMBER}",
        "description": "企业：天津测试科技有限公司<br>内容：办理营业执照变更需要哪些材料？<br>"
        "分派：市场监管局（诉求涉及营业执照）<br>"
        "联系时限：2026-11-25 10:00；办结时限：2026-12-02 10:00",
        "url": f"{CONSOLE}/console/tickets/{NUMBER}",
        "btntxt": "查看",
    }
    assert "签收" not in body["textcard"]["description"]  # chat buttons are for chats
    assert rows(db) == [(OutboxStatus.SENT, None)]


def test_handoff_offer_is_text_with_the_console_link(
    db: Database, clock: MovableClock, fake: FakeWeComApi, sender: WeComSender
) -> None:
    offer = Reply(
        "【人工请求】测试企业1请求人工服务（市场监管局）。\n最近的问题：营业执照怎么变更",
        buttons=(Button("接入", "take:7"),),
        ref="handoff:7",
    )
    queue(db, clock, reply_payload(offer), "handoff_offer:7:1", kind="handoff_offer")
    assert asyncio.run(worker(db, clock, sender).run_once()).sent == 1
    assert fake.cards() == []
    assert fake.texts("zhangmin") == [
        "【人工请求】测试企业1请求人工服务（市场监管局）。\n最近的问题：营业执照怎么变更"
        f"\n\n在控制台接入：{CONSOLE}/console/"
    ]


def test_notice_without_a_ticket_or_handoff_is_plain_text(
    fake: FakeWeComApi, sender: WeComSender
) -> None:
    payload = reply_payload(Reply("请选择：", choices=("签收", "转派")))
    asyncio.run(sender.send("lisi", payload))
    assert fake.texts("lisi") == ["请选择：\n1. 签收\n2. 转派"]


def test_sla_notice_with_a_ticket_field_is_a_card(fake: FakeWeComApi, sender: WeComSender) -> None:
    payload = {
        "text": f"【即将超时】{NUMBER}\n联系时限：2026-11-25 10:00",
        "ticket": NUMBER,
        "clock": "contact",
    }
    asyncio.run(sender.send("zhangmin", payload))
    (card,) = fake.cards("zhangmin")
    assert card["title"] == f"【即将超时】{NUMBER}"
    assert card["url"] == f"{CONSOLE}/console/tickets/{NUMBER}"


def test_long_notice_is_cut_to_wecom_limits_keeping_short_lines(
    fake: FakeWeComApi, sender: WeComSender
) -> None:
    long_number = "YX-20261123-0002"
    reply = new_ticket_reply(long_number, description="<b>材料</b>&齐全" * 60)
    title_reply = Reply("【新诉求】" + "很长的标题" * 20 + "\n" + reply.text, ref=reply.ref)
    asyncio.run(sender.send("zhangmin", reply_payload(reply)))
    asyncio.run(sender.send("zhangmin", reply_payload(title_reply)))
    card, titled = fake.cards("zhangmin")
    assert nbytes(card["description"]) <= DESCRIPTION_LIMIT_BYTES
    lines = card["description"].split("<br>")
    assert lines[0] == "企业：天津测试科技有限公司"
    assert lines[1].startswith("内容：&lt;b&gt;材料&lt;/b&gt;&amp;齐全") and lines[1].endswith("…")
    assert "<b>" not in card["description"]  # the enterprise's text is never markup
    assert lines[-1] == "联系时限：2026-11-25 10:00；办结时限：2026-12-02 10:00"  # kept whole
    assert nbytes(titled["title"]) <= TITLE_LIMIT_BYTES and titled["title"].endswith("…")

    text = "\n".join(f"第{i}条：" + "进度说明" * 40 for i in range(20))
    asyncio.run(sender.send("zhangmin", reply_payload(Reply(text, ref="handoff:9"))))
    (content,) = fake.texts("zhangmin")
    assert nbytes(content) <= TEXT_LIMIT_BYTES
    assert content.endswith(f"\n\n在控制台接入：{CONSOLE}/console/")


def test_fit_lines_never_splits_a_character_or_an_entity() -> None:
    assert fit_lines(["短", "也短"], 100) == "短\n也短"
    cut = fit_lines(["短行", "很长的一行" * 10], 60)
    assert cut.startswith("短行\n很长") and cut.endswith("…") and 55 < nbytes(cut) <= 60
    escape = lambda s: s.replace("&", "&amp;")  # noqa: E731
    assert fit_lines(["&&&&&&&&"], 18, escape=escape) == "&amp;&amp;&amp;…"  # 18 bytes
    assert fit_lines(["&&&&&&&&"], 17, escape=escape) == "&amp;&amp;…"  # never "&am"
    # short lines are not cut to nothing: the last ones go instead
    assert fit_lines(["一", "二", "三"], 10) == "一\n二…"
    assert fit_lines(["一", "二", "三"], 7) == "一…"


# ----------------------------------------------------------------------------- tokens and errors


def test_token_is_fetched_once_and_refreshed_once_when_it_expires(
    fake: FakeWeComApi, sender: WeComSender
) -> None:
    asyncio.run(sender.send("zhangmin", reply_payload(Reply("第一条"))))
    asyncio.run(sender.send("zhangmin", reply_payload(Reply("第二条"))))
    assert fake.token_requests == 1

    fake.expire_token_once()
    asyncio.run(sender.send("zhangmin", reply_payload(Reply("第三条"))))
    assert fake.texts("zhangmin") == ["第一条", "第二条", "第三条"]
    assert fake.token_requests == 2
    answers = [c.answer["errcode"] for c in fake.send_calls()]
    assert answers == [0, 0, 42001, 0]
    assert fake.send_calls()[-1].query["access_token"] == "TOKEN-2"

    fake.fail_with(40014, "invalid access_token", times=2)  # a new token does not help
    with pytest.raises(RetryLater):
        asyncio.run(sender.send("zhangmin", reply_payload(Reply("第四条"))))
    assert fake.token_requests == 3  # one refresh, not a loop


def test_unknown_member_is_a_permanent_failure(
    db: Database, clock: MovableClock, fake: FakeWeComApi, sender: WeComSender
) -> None:
    queue(db, clock, reply_payload(new_ticket_reply()), "ticket_new:1", recipient="wangwu")
    report = asyncio.run(worker(db, clock, sender).run_once())
    assert report.failed == 1 and fake.sent == []
    ((status, reason),) = rows(db)
    assert status is OutboxStatus.FAILED
    assert reason is not None and "无效的企业微信成员" in reason and "81013" in reason

    fake.fail_with(60111, "userid not found")
    with pytest.raises(PermanentFailure):
        asyncio.run(sender.send("zhangmin", reply_payload(Reply("通知"))))
    with pytest.raises(PermanentFailure):  # "|" would address several members
        asyncio.run(sender.send("zhangmin|lisi", reply_payload(Reply("通知"))))
    assert len(fake.send_calls()) == 2


def test_member_reported_in_invaliduser_is_a_permanent_failure() -> None:
    with FakeWeComApi(CORP, SECRET, AGENT, users=("zhangmin",), lenient=True) as api:
        sender = WeComAdapter(make_config(api)).sender()
        with pytest.raises(PermanentFailure) as caught:
            asyncio.run(sender.send("wangwu", reply_payload(Reply("通知"))))
        assert "无效的企业微信成员" in caught.value.reason
        assert api.send_calls()[0].answer["invaliduser"] == "wangwu"


def test_network_error_is_retried_and_then_delivered(
    db: Database, clock: MovableClock, fake: FakeWeComApi, sender: WeComSender
) -> None:
    deliver = worker(db, clock, sender)
    queue(db, clock, reply_payload(new_ticket_reply()), "ticket_new:1")
    fake.drop_connections(1)
    report = asyncio.run(deliver.run_once())
    assert (report.sent, report.retried) == (0, 1)
    ((status, reason),) = rows(db)
    assert status is OutboxStatus.PENDING and reason is not None and "企业微信接口不可达" in reason
    clock.advance(minutes=10)
    assert asyncio.run(deliver.run_once()).sent == 1
    assert [c["url"] for c in fake.cards("zhangmin")] == [f"{CONSOLE}/console/tickets/{NUMBER}"]
    assert rows(db) == [(OutboxStatus.SENT, None)]
    fake.drop_connections(1)  # now with a token: the message itself meets the closed socket
    with pytest.raises(RetryLater) as caught:
        asyncio.run(sender.send("zhangmin", reply_payload(Reply("通知"))))
    assert caught.value.reason == "企业微信接口不可达：ConnectionError"


@pytest.mark.parametrize("code", [-1, 45009, 45033])
def test_busy_or_rate_limited_api_is_retried(
    code: int, fake: FakeWeComApi, sender: WeComSender
) -> None:
    fake.fail_with(code, "busy")
    with pytest.raises(RetryLater) as caught:
        asyncio.run(sender.send("zhangmin", reply_payload(Reply("通知"))))
    assert caught.value.after is None and str(code) in caught.value.reason
    asyncio.run(sender.send("zhangmin", reply_payload(Reply("通知"))))  # it passes later
    assert fake.texts() == ["通知"]


@pytest.mark.parametrize("code", [40013, 40056, 48002])
def test_configuration_refused_by_wecom_is_retried_later_with_a_hint(
    code: int, fake: FakeWeComApi, sender: WeComSender
) -> None:
    fake.fail_with(code, "config")
    with pytest.raises(RetryLater) as caught:
        asyncio.run(sender.send("zhangmin", reply_payload(Reply("通知"))))
    assert CHECK_CONFIG in caught.value.reason and caught.value.after == 600.0


def test_wrong_secret_or_agentid_says_to_check_the_configuration(fake: FakeWeComApi) -> None:
    wrong_secret = WeComAdapter(make_config(fake, secret="not-the-secret")).sender()
    with pytest.raises(RetryLater) as caught:
        asyncio.run(wrong_secret.send("zhangmin", reply_payload(Reply("通知"))))
    assert CHECK_CONFIG in caught.value.reason and "40001" in caught.value.reason
    assert caught.value.after == 600.0
    assert fake.token_requests == 1 and fake.send_calls() == []  # no refresh loop

    wrong_agent = WeComAdapter(make_config(fake, agent_id=42)).sender()
    with pytest.raises(RetryLater) as caught:
        asyncio.run(wrong_agent.send("zhangmin", reply_payload(Reply("通知"))))
    assert CHECK_CONFIG in caught.value.reason and "40056" in caught.value.reason


def test_slow_api_times_out_without_blocking_the_event_loop(fake: FakeWeComApi) -> None:
    sender = WeComAdapter(make_config(fake, http_timeout=0.5)).sender()
    fake.hold()

    async def scenario() -> None:
        task = asyncio.create_task(sender.send("zhangmin", reply_payload(Reply("慢"))))
        # the loop keeps running while the request hangs in a worker thread
        await asyncio.to_thread(fake.wait_for_calls, TOKEN_PATH, 1)
        assert not task.done()
        with pytest.raises(RetryLater) as caught:
            await asyncio.wait_for(task, timeout=5)
        assert "ReadTimeout" in caught.value.reason

    try:
        asyncio.run(scenario())
    finally:
        fake.release()
    assert fake.sent == [] and SEND_PATH not in fake.arrivals


def test_unanswered_message_is_maybe_sent_resent_once_then_failed(
    db: Database, clock: MovableClock, fake: FakeWeComApi
) -> None:
    sender = WeComAdapter(make_config(fake, http_timeout=0.3)).sender()
    asyncio.run(sender.send("zhangmin", reply_payload(Reply("先取得令牌"))))
    deliver = worker(db, clock, sender)
    queue(db, clock, reply_payload(new_ticket_reply()), "ticket_new:1")
    fake.hold()  # the token is known: the message itself goes unanswered
    try:
        assert asyncio.run(deliver.run_once()).retried == 1
        ((status, reason),) = rows(db)
        assert status is OutboxStatus.PENDING and reason is not None and "无应答" in reason
        clock.advance(minutes=10)
        assert asyncio.run(deliver.run_once()).failed == 1
    finally:
        fake.release()
    ((status, reason),) = rows(db)
    assert status is OutboxStatus.FAILED and reason is not None and "可能已送达" in reason
    with pytest.raises(SendTimedOut):
        fake.hold()
        try:
            asyncio.run(sender.send("zhangmin", reply_payload(Reply("慢"))))
        finally:
            fake.release()


# ----------------------------------------------------------------------------- end to end


def test_new_ticket_reaches_the_commissioner_in_wecom(
    app: App, make_commissioner: Callable[..., Commissioner], fake: FakeWeComApi
) -> None:
    make_commissioner("张敏", "市场监管局", bindings=(("wecom", "zhangmin"),))
    view = app.tickets.create(
        "办理营业执照变更需要哪些材料？",
        department="市场监管局",
        rule="topic",
        reason="诉求涉及营业执照",
        actor="测试员",
    )
    sender = WeComAdapter(make_config(fake)).sender()
    deliver = OutboxWorker(app.db.sessions, {"wecom": sender}, app.clock)
    assert asyncio.run(deliver.run_once()).sent == 1
    (card,) = fake.cards("zhangmin")
    assert card["title"] == f"【新诉求】{view.number}"
    assert "内容：办理营业执照变更需要哪些材料？" in card["description"].split("<br>")
    assert card["url"] == f"{CONSOLE}/console/tickets/{view.number}"
    assert view.number.startswith("YX-") and card["btntxt"] == "查看"


def test_adapter_serves_pushes_through_the_server(
    app: App, clock: MovableClock, fake: FakeWeComApi
) -> None:
    adapter = wecom_adapter_from_env(ENV | {"YXBY_WECOM_API_BASE": fake.base_url})
    assert adapter.name == "wecom" and list(adapter.routes()) == []
    api_base = adapter.client.API_BASE_URL
    assert api_base == f"{fake.base_url}/cgi-bin/"
    queue(app.db, clock, reply_payload(new_ticket_reply()), "ticket_new:1")
    options = ServerOptions(run_tick=False, worker_interval=0.05)
    with LiveServer(create_asgi(app, [adapter], options)):
        (body,) = fake.wait_for_sent(1)
    assert body["textcard"]["url"] == f"{CONSOLE}/console/tickets/{NUMBER}"


# ----------------------------------------------------------------------------- configuration


ENV = {
    "YXBY_WECOM_CORPID": CORP,
    "YXBY_WECOM_AGENTID": str(AGENT),
    "YXBY_WECOM_SECRET": SECRET,
    "YXBY_CONSOLE_URL": CONSOLE + "/",
}


def test_config_from_env() -> None:
    config = wecom_config_from_env(ENV)
    assert (config.corp_id, config.agent_id, config.secret) == (CORP, AGENT, SECRET)
    assert config.console_url == CONSOLE and config.api_base == DEFAULT_API_BASE
    assert SECRET not in repr(config)
    assert wecom_config_from_env(ENV | {"YXBY_CONSOLE_URL": CONSOLE + "/console/"}).console_url == (
        CONSOLE
    )
    timeout = wecom_config_from_env(ENV | {"YXBY_WECOM_HTTP_TIMEOUT": "2.5"}).http_timeout
    assert timeout == 2.5
    client = WeComApiClient(CORP, SECRET)
    assert client.API_BASE_URL == "https://qyapi.weixin.qq.com/cgi-bin/"


def test_the_server_runs_the_wecom_channel_when_configured(app: App) -> None:
    from bot.channels.registry import adapters_from_env

    (adapter,) = adapters_from_env(app, env=ENV)
    assert adapter.name == "wecom" and adapter.sender() is not None
    assert adapters_from_env(app, env={}) == []


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"YXBY_WECOM_CORPID": ""}, "YXBY_WECOM_CORPID"),
        ({"YXBY_WECOM_AGENTID": " "}, "YXBY_WECOM_AGENTID"),
        ({"YXBY_WECOM_AGENTID": "应用"}, "YXBY_WECOM_AGENTID"),
        ({"YXBY_WECOM_AGENTID": "-3"}, "YXBY_WECOM_AGENTID"),
        ({"YXBY_WECOM_SECRET": ""}, "YXBY_WECOM_SECRET"),
        ({"YXBY_WECOM_API_BASE": "qyapi.weixin.qq.com"}, "YXBY_WECOM_API_BASE"),
        ({"YXBY_CONSOLE_URL": ""}, "YXBY_CONSOLE_URL"),
        ({"YXBY_CONSOLE_URL": "ftp://console"}, "YXBY_CONSOLE_URL"),
        ({"YXBY_WECOM_HTTP_TIMEOUT": "60"}, "YXBY_WECOM_HTTP_TIMEOUT"),
    ],
)
def test_config_errors_name_the_variable_in_chinese(change: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        wecom_config_from_env(ENV | change)
    assert caught.value.key == key
    message = str(caught.value)
    assert message.startswith(f"「{key}」") and ("未设置" in message or "应为" in message)
