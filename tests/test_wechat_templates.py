"""WeChat template messages: ticket notices outside the 48-hour window.

A WeChat user files a ticket; the commissioner works on it in the console or chat; the
outbox worker delivers through the WeChat sender to the fake WeChat API: inside the window
a customer-service text, outside it the 工单进度 template message linking to the ticket
page — or, with no template configured, a hold as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from bot.app import App
from bot.channels.wechat import HOLD_REASON, WeChatAdapter, WeChatConfig, WeChatSender
from bot.channels.wechat.config import (
    TEMPLATE_NOTICE_ENV,
    load_wechat_templates,
    wechat_config_from_env,
)
from bot.delivery import OutboxWorker
from handoff.calendar import SHANGHAI
from handoff.models import OutboxMessage, OutboxStatus
from handoff.outbox import HoldForUser, PermanentFailure, RetryLater
from tests.chatting import Chat, file_ticket
from tests.conftest import MovableClock
from tests.fakes.wechat_api import FakeWeChatApi
from yxby import paths
from yxby.errors import ConfigError

T = TypeVar("T")
APPID = "wx0123456789abcdef"
SECRET = "yxby-test-secret"
OPENID = "oYxbyTemplateUser00000000001"
NOTICE_TEMPLATE = "TPL-notice-0001"
PUBLIC_URL = "https://yxby.example.gov.cn"
TEMPLATES = paths.PROJECT_ROOT / "config" / "wechat_templates.yaml"


@pytest.fixture
def fake_api() -> Iterator[FakeWeChatApi]:
    with FakeWeChatApi(appid=APPID, secret=SECRET) as api:
        yield api


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: a Playwright page test earlier in the session
    leaves an event loop marked running in the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def linked(app: App) -> App:
    """Notices carry full links (until ``build_app`` hands the links to the notifier)."""
    app.links.public_url = PUBLIC_URL
    if app.notifier.links is None:
        app.notifier.links = app.links
    return app


def make_sender(app: App, api: FakeWeChatApi, *, template: str | None) -> WeChatSender:
    templates = load_wechat_templates(TEMPLATES, template) if template else None
    config = WeChatConfig(
        token="t", appid=APPID, secret=SECRET, api_base=api.base_url, templates=templates
    )
    adapter = WeChatAdapter(app, config)
    return WeChatSender.for_config(adapter.client, app.inbox, adapter.continuations, config)


@pytest.fixture
def deliver(app: App, fake_api: FakeWeChatApi) -> Callable[..., Any]:
    """Run one outbox pass with the WeChat sender (``deliver(template=None)`` for none)."""

    def once(template: str | None = NOTICE_TEMPLATE) -> Any:
        sender = make_sender(app, fake_api, template=template)
        worker = OutboxWorker(app.db.sessions, {"wechat": sender}, app.clock)
        return run(worker.run_once())

    return once


def wechat_rows(app: App) -> list[tuple[str, OutboxStatus, str | None]]:
    with app.db.sessions() as session:
        stmt = select(OutboxMessage).where(OutboxMessage.channel == "wechat")
        rows = session.scalars(stmt.order_by(OutboxMessage.id))
        return [(r.kind, r.status, r.last_error) for r in rows]


def filed(app: App, staff: Callable[..., Chat]) -> tuple[str, Chat]:
    """A WeChat user files a ticket; its department's commissioner 签收 it."""
    linked(app)
    number = file_ticket(Chat(app, OPENID, channel="wechat"))
    officer = staff("王芳", app.tickets.get(number).department)
    assert "已签收" in officer.send(f"签收 {number}")
    return number, officer


def test_result_three_days_later_goes_out_as_a_template_message(
    app: App,
    clock: MovableClock,
    staff: Callable[..., Chat],
    fake_api: FakeWeChatApi,
    deliver: Callable[..., Any],
) -> None:
    number, officer = filed(app, staff)
    assert deliver().sent == 1  # 签收, inside the window: a customer-service text
    (accepted,) = fake_api.texts(OPENID)
    assert f"{number} 已由企业服务专员王芳" in accepted
    assert f"查看详情与评价：{PUBLIC_URL}/t/" in accepted
    assert fake_api.templates == []

    clock.advance(days=3)  # the user has not written since
    out = officer.send(f"办结 {number} 已协调物业于本周内完成路灯维修")
    assert out.startswith(f"已办结 {number}")
    report = deliver()
    assert (report.sent, report.held) == (1, 0)
    assert len(fake_api.texts(OPENID)) == 1  # no customer-service message outside 48 h
    (message,) = fake_api.templates
    view = app.tickets.get(number)
    assert message["touser"] == OPENID and message["template_id"] == NOTICE_TEMPLATE
    data = {k: v["value"] for k, v in message["data"].items()}
    assert data["first"] == "您的诉求已办结，请评价"
    assert data["keyword1"] == number
    assert data["keyword2"] == view.title
    assert data["keyword3"] == "已办结"
    assert data["keyword4"] == "已协调物业于本周内完成路灯维修"
    assert data["keyword5"] == clock.now.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    assert "评价" in data["remark"]
    target = app.links.verify(message["url"].removeprefix(f"{PUBLIC_URL}/t/"))
    assert (target.number, target.identity_id) == (number, view.channel_identity_id)
    assert [status for _, status, _ in wechat_rows(app)] == [OutboxStatus.SENT] * 2


def test_progress_and_overdue_apology_use_the_template_too(
    app: App,
    clock: MovableClock,
    staff: Callable[..., Chat],
    fake_api: FakeWeChatApi,
    deliver: Callable[..., Any],
) -> None:
    number, _ = filed(app, staff)
    deliver()
    clock.advance(days=3)
    app.tickets.progress(number, note="已联系物业，材料正在审核", actor="王芳")
    clock.advance(days=10)  # the 办结 clock (7 working days) is long past
    app.tickets.tick()
    assert deliver().sent == 2
    progress, apology = fake_api.templates
    assert progress["data"]["first"]["value"] == "您的诉求有新进展（进度）"
    assert progress["data"]["keyword4"]["value"] == "已联系物业，材料正在审核"
    assert apology["data"]["first"]["value"] == "很抱歉，您的诉求未能按时办结"
    assert "预计" in apology["data"]["keyword4"]["value"]
    assert all(m["url"].startswith(f"{PUBLIC_URL}/t/") for m in fake_api.templates)


def test_inside_48_hours_the_result_is_a_customer_service_message(
    app: App,
    clock: MovableClock,
    staff: Callable[..., Chat],
    fake_api: FakeWeChatApi,
    deliver: Callable[..., Any],
) -> None:
    number, officer = filed(app, staff)
    clock.advance(hours=47)
    officer.send(f"办结 {number} 已修复")
    assert deliver().sent == 1  # the 签收 notice still queued was withdrawn by the result
    (text,) = fake_api.texts(OPENID)
    assert f"您的诉求 {number} 已办结" in text and "已修复" in text
    assert f"查看详情与评价：{PUBLIC_URL}/t/" in text
    assert text.endswith("（回复：满意 / 基本满意 / 不满意）")
    assert fake_api.templates == []
    kinds = [(kind, status) for kind, status, _ in wechat_rows(app)]
    assert kinds == [
        ("ticket_accepted", OutboxStatus.CANCELLED),
        ("ticket_result", OutboxStatus.SENT),
    ]


def test_without_a_template_the_notice_is_held(
    app: App,
    clock: MovableClock,
    staff: Callable[..., Chat],
    fake_api: FakeWeChatApi,
    deliver: Callable[..., Any],
) -> None:
    number, officer = filed(app, staff)
    deliver(template=None)
    clock.advance(days=3)
    officer.send(f"办结 {number} 已修复")
    assert deliver(template=None).held == 1
    assert fake_api.templates == [] and fake_api.template_calls() == []
    assert wechat_rows(app)[-1] == ("ticket_result", OutboxStatus.HELD, HOLD_REASON)


def test_a_push_without_a_notice_is_held_outside_the_window(
    app: App, clock: MovableClock, fake_api: FakeWeChatApi
) -> None:
    linked(app)
    Chat(app, OPENID, channel="wechat").send("你好")
    clock.advance(days=3)
    sender = make_sender(app, fake_api, template=NOTICE_TEMPLATE)
    with pytest.raises(HoldForUser):
        run(sender.send(OPENID, {"text": "随便一条消息"}))
    assert fake_api.template_calls() == []


def test_window_refused_by_wechat_falls_back_to_the_template(
    app: App, staff: Callable[..., Chat], fake_api: FakeWeChatApi, deliver: Callable[..., Any]
) -> None:
    filed(app, staff)
    fake_api.outside_window()  # our clock says open, WeChat says 45015
    assert deliver().sent == 1
    assert fake_api.texts() == [] and len(fake_api.templates) == 1
    assert fake_api.templates[0]["data"]["first"]["value"] == "您的诉求有新进展（受理）"


def test_template_errors_map_to_retry_or_failure(
    app: App, clock: MovableClock, staff: Callable[..., Chat], fake_api: FakeWeChatApi
) -> None:
    filed(app, staff)
    clock.advance(days=3)
    sender = make_sender(app, fake_api, template=NOTICE_TEMPLATE)
    with app.db.sessions() as session:
        payload = dict(session.scalars(select(OutboxMessage.payload)).first() or {})
    assert "notice" in payload
    for code, expected in ((40037, RetryLater), (45009, RetryLater), (43004, PermanentFailure)):
        fake_api.fail_with(code)
        with pytest.raises(expected):
            run(sender.send(OPENID, payload))
    fake_api.expire_token_once()
    run(sender.send(OPENID, payload))
    assert len(fake_api.templates) == 1 and fake_api.token_requests == 2


# ----------------------------------------------------------------------------- configuration

ENV = {"YXBY_WECHAT_TOKEN": "t", "YXBY_WECHAT_APPID": APPID, "YXBY_WECHAT_SECRET": SECRET}


def test_template_id_from_the_environment_and_mapping_from_config() -> None:
    config = wechat_config_from_env(ENV | {TEMPLATE_NOTICE_ENV: NOTICE_TEMPLATE})
    assert config.templates is not None and config.templates.notice_id == NOTICE_TEMPLATE
    notice = {"event": "进度", "number": "YX-1", "title": "t", "state": "办理中", "body": "b"}
    chosen = config.templates.message(notice | {"time": "2026-11-26 10:00"})
    assert chosen is not None and chosen[0] == NOTICE_TEMPLATE
    plain = wechat_config_from_env(ENV)
    assert plain.templates is not None and plain.templates.message(notice) is None
    with pytest.raises(ConfigError, match=TEMPLATE_NOTICE_ENV):
        wechat_config_from_env(ENV | {TEMPLATE_NOTICE_ENV: "不是模板"})


def test_per_event_template_and_long_values_are_cut(tmp_path: Path) -> None:
    path = tmp_path / "wechat_templates.yaml"
    path.write_text(
        "max_chars: 20\nfields:\n  first: '{event}'\n  keyword1: '{body}'\n"
        "events:\n  办结:\n    template_id: TPL-result\n",
        encoding="utf-8",
    )
    templates = load_wechat_templates(path, None)
    assert templates.message({"event": "进度"}) is None  # no general template
    chosen = templates.message({"event": "办结", "body": "很长的办理结果" * 10})
    assert chosen is not None
    template_id, data = chosen
    assert template_id == "TPL-result" and data["first"]["value"] == "办结"
    assert len(data["keyword1"]["value"]) == 20 and data["keyword1"]["value"].endswith("…")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("fields:\n  first: '{who}'\n", 2, "未知的占位符 {who}"),
        ("fields:\n  first: x\nevents:\n  结案:\n    template_id: T\n", 4, "应为以下之一"),
        ("fields:\n  'key 1': x\n", 2, "不是模板字段名"),
        ("fields:\n  first: x\nevents:\n  办结:\n    template_id: 'a b'\n", 5, "模板 ID"),
        ("fields: {}\n", 1, "fields"),
    ],
)
def test_bad_template_config_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "wechat_templates.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_wechat_templates(path, None)
    assert caught.value.path == str(path) and caught.value.line == line
    assert message in str(caught.value)


def test_a_configured_template_needs_the_mapping_file(tmp_path: Path) -> None:
    assert wechat_config_from_env(ENV, config_dir=tmp_path).templates is None
    with pytest.raises(ConfigError, match="文件不存在"):
        wechat_config_from_env(ENV | {TEMPLATE_NOTICE_ENV: NOTICE_TEMPLATE}, config_dir=tmp_path)
