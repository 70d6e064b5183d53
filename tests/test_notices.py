"""Notices to enterprises: audience, delivery over WeChat and Telegram, holds, receipts,
opening, unsubscribing, and a 为企服务工作单 answered in the chat becoming tickets."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import select
from telegram import Bot

from bot.app import App
from bot.channels.telegram.sender import send_payload
from bot.channels.wechat import WeChatAdapter, WeChatConfig, WeChatSender
from bot.channels.wechat.config import load_wechat_templates
from bot.delivery import OutboxWorker
from handoff.models import (
    ChannelIdentity,
    Commissioner,
    CommissionerRole,
    Enterprise,
    EnterpriseKind,
    OutboxMessage,
    Ticket,
    TicketSource,
)
from handoff.notices import (
    Audience,
    NoticeError,
    NoticeLinks,
    NoticeReceipt,
    count_audience,
    create_notice,
    export_csv,
    export_rows,
    export_xlsx,
    receipt_counts,
    receipts,
    send_notice,
)
from handoff.registry import add_commissioner
from tests.chatting import Chat
from tests.conftest import START, MovableClock, make_uscc
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI
from tests.fakes.wechat_api import FakeWeChatApi
from yxby import paths

T = TypeVar("T")
APPID = "wx0123456789abcdef"
SECRET = "yxby-test-secret"
TEMPLATES = paths.PROJECT_ROOT / "config" / "wechat_templates.yaml"
PARK = "国际物流园"
IN_WINDOW = "oNoticeUserInWindow000000001"
OUTSIDE = "oNoticeUserOutside0000000002"
TG_CHAT = 5001


def run(coro: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def wechat_api() -> Iterator[FakeWeChatApi]:
    with FakeWeChatApi(appid=APPID, secret=SECRET) as api:
        yield api


@pytest.fixture
def telegram_api() -> Iterator[FakeTelegramAPI]:
    with FakeTelegramAPI() as api:
        yield api


class TelegramDirect:
    """The Telegram channel's send path (``send_payload``) on a bot pointed at the fake."""

    def __init__(self, api: FakeTelegramAPI) -> None:
        self.api = api

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        async with Bot(TOKEN, base_url=f"{self.api.base_url}/bot") as bot:
            await send_payload(bot, recipient, payload, lambda *_: None)


def deliver(
    app: App, wechat: FakeWeChatApi, telegram: FakeTelegramAPI, *, template: str | None = None
) -> Any:
    templates = load_wechat_templates(TEMPLATES, template) if template else None
    config = WeChatConfig(
        token="t", appid=APPID, secret=SECRET, api_base=wechat.base_url, templates=templates
    )
    adapter = WeChatAdapter(app, config)
    sender = WeChatSender.for_config(adapter.client, app.inbox, adapter.continuations, config)
    senders = {"wechat": sender, "telegram": TelegramDirect(telegram)}
    return run(OutboxWorker(app.db.sessions, senders, app.clock).run_once())


def oversight(app: App) -> Commissioner:
    with app.db.begin() as s:
        person = add_commissioner(
            s, name="周敏", department="政务办", role=CommissionerRole.OVERSIGHT,
            departments=app.router.departments,
        )  # fmt: skip
        s.expunge(person)
        return person


def enterprise(
    app: App, seq: int, *, building: str | None = PARK, grid: str | None = "网格一", **kw: Any
) -> str:
    uscc = make_uscc(seq)
    with app.db.begin() as s:
        s.add(
            Enterprise(
                uscc=uscc, name=kw.pop("name", f"天津通知测试{seq}有限公司"),
                kind=EnterpriseKind.ENTERPRISE, industry=kw.pop("industry", "国际贸易"),
                tags=[], building=building, grid=grid, created_at=START, updated_at=START, **kw,
            )
        )  # fmt: skip
    return uscc


def bound(app: App, user_key: str, uscc: str, channel: str) -> Chat:
    chat = Chat(app, user_key, channel=channel)
    assert "已绑定企业" in chat.send(f"绑定 {uscc}")
    return chat


def send(app: App, person: Commissioner, audience: Audience, **kw: Any) -> int:
    with app.db.begin() as s:
        notice = create_notice(
            s, person, kind=kw.pop("kind", "政策解读"),
            title=kw.pop("title", "跨境电商扶持政策解读"),
            body=kw.pop("body", "自2027年1月起，区内跨境电商企业可申请物流费用补贴。"),
            audience=audience, now=app.clock(), **kw,
        )  # fmt: skip
        send_notice(
            s, notice.id, person, texts=app.replies, link_for=NoticeLinks(app.links).url,
            now=app.clock(),
        )  # fmt: skip
        return notice.id


def states(app: App, notice_id: int) -> dict[str, str]:
    with app.db.sessions() as s:
        return {f"{r.channel}:{r.recipient}": r.status for r in receipts(s, notice_id)}


def test_a_notice_reaches_a_filtered_audience_over_wechat_and_telegram(
    app: App, clock: MovableClock, wechat_api: FakeWeChatApi, telegram_api: FakeTelegramAPI
) -> None:
    person = oversight(app)
    e1, e2 = enterprise(app, 1), enterprise(app, 2, grid="网格二")
    other = enterprise(app, 3, building="临港产业园")
    zombie = enterprise(app, 4, zombie=True, zombie_reason="连续两年未年报")
    gone = enterprise(app, 5, status="注销")
    bound(app, OUTSIDE, e2, "wechat")
    bound(app, str(TG_CHAT), e1, "telegram")
    bound(app, "oElsewhere", other, "wechat")
    bound(app, "oZombie", zombie, "wechat")
    bound(app, "oGone", gone, "wechat")
    clock.advance(hours=49)  # OUTSIDE has not written for two days: outside the window
    inside = bound(app, IN_WINDOW, e1, "wechat")

    audience = Audience(building=PARK)
    with app.db.sessions() as s:
        preview = count_audience(s, audience)
    assert (preview.enterprises, preview.reachable, preview.identities) == (2, 2, 3)
    assert count_audience_of(app, Audience(building=PARK, grid="网格二")).enterprises == 1

    notice_id = send(app, person, audience)
    with app.db.sessions() as s:
        keys = set(
            s.scalars(select(OutboxMessage.recipient).where(OutboxMessage.kind == "outreach"))
        )
    assert keys == {IN_WINDOW, OUTSIDE, str(TG_CHAT)}  # not the zombie, deregistered or elsewhere

    report = deliver(app, wechat_api, telegram_api)
    assert (report.sent, report.held) == (2, 1)
    (text,) = wechat_api.texts(IN_WINDOW)
    assert text.startswith("【政策解读】跨境电商扶持政策解读") and "物流费用补贴" in text
    assert "/n/" in text and "退订通知" in text
    (tg,) = telegram_api.texts(TG_CHAT)
    assert "跨境电商扶持政策解读" in tg
    assert wechat_api.texts(OUTSIDE) == []
    assert states(app, notice_id) == {
        f"微信:{mask(IN_WINDOW)}": "sent",
        f"微信:{mask(OUTSIDE)}": "held",
        f"Telegram:{mask(str(TG_CHAT))}": "sent",
    }
    # no alert about the held notice, however long it waits
    clock.advance(hours=3)
    assert deliver(app, wechat_api, telegram_api).alerts == 0

    # the held one goes out as soon as the enterprise writes
    Chat(app, OUTSIDE, channel="wechat").send("你好")
    assert deliver(app, wechat_api, telegram_api).sent == 1
    (late,) = wechat_api.texts(OUTSIDE)
    assert "跨境电商扶持政策解读" in late
    with app.db.sessions() as s:
        counts = receipt_counts(s, notice_id)
    assert (counts["sent"], counts["held"], counts["opened"]) == (3, 0, 0)
    inside.send("谢谢")


def count_audience_of(app: App, audience: Audience) -> Any:
    with app.db.sessions() as s:
        return count_audience(s, audience)


def mask(recipient: str) -> str:
    from handoff.outbox import mask_recipient

    return mask_recipient(recipient)


def test_outside_the_window_a_configured_template_goes_out(
    app: App, clock: MovableClock, wechat_api: FakeWeChatApi, telegram_api: FakeTelegramAPI
) -> None:
    person = oversight(app)
    uscc = enterprise(app, 1)
    bound(app, OUTSIDE, uscc, "wechat")
    clock.advance(hours=72)
    app.links.public_url = "https://yxby.example.gov.cn"
    notice_id = send(app, person, Audience(), kind="工作动态", title="保税区优化营商环境大会召开")
    assert deliver(app, wechat_api, telegram_api, template="TPL-notice-0001").sent == 1
    (message,) = wechat_api.templates
    assert message["template_id"] == "TPL-notice-0001"
    assert message["data"]["first"]["value"] == "【工作动态】保税区优化营商环境大会召开"
    assert message["data"]["keyword1"]["value"] == "政务办"
    assert message["url"].startswith("https://yxby.example.gov.cn/n/")
    assert states(app, notice_id) == {f"微信:{mask(OUTSIDE)}": "sent"}


def test_opening_the_link_is_recorded(app: App, clock: MovableClock) -> None:
    import httpx

    from bot.server import ServerOptions, create_asgi
    from tests.servers import LiveServer

    person = oversight(app)
    uscc = enterprise(app, 1)
    chat = bound(app, "u-open", uscc, "terminal")
    notice_id = send(app, person, Audience(), link="https://www.tjftz.gov.cn/policy/1")
    (pushed,) = chat.pushes()
    path = pushed.text.split("查看详情：")[1].split("\n")[0]
    assert path.startswith("/n/")
    first = app.clock()
    asgi = create_asgi(app, [], ServerOptions(run_tick=False))
    with LiveServer(asgi) as server, httpx.Client(base_url=server.url) as client:
        page = client.get(path)
        assert page.status_code == 200
        assert (
            "跨境电商扶持政策解读" in page.text and "https://www.tjftz.gov.cn/policy/1" in page.text
        )
        clock.advance(minutes=5)
        client.get(path)
        assert client.get(path[:-3] + "xyz").status_code == 404
    with app.db.sessions() as s:
        (row,) = receipts(s, notice_id)
        assert row.opened_at == first  # the first opening, not the later ones
        assert receipt_counts(s, notice_id)["opened"] == 1


def test_unsubscribed_chats_get_no_notices_but_still_their_ticket_messages(
    app: App, staff: Callable[..., Chat]
) -> None:
    person = oversight(app)
    uscc = enterprise(app, 1)
    chat = bound(app, "u-off", uscc, "terminal")
    assert "已退订通知" in chat.send("退订通知")
    assert "您已退订通知" in chat.send("退订通知")
    notice_id = send(app, person, Audience())
    assert chat.pushes() == []
    assert list(states(app, notice_id).values()) == ["notices_off"]
    # their own ticket's messages keep coming
    from tests.chatting import file_ticket

    number = file_ticket(chat)
    officer = staff("王芳", app.tickets.get(number).department)
    officer.send(f"签收 {number}")
    assert any(number in r.text for r in chat.pushes())
    assert "已恢复接收通知" in chat.send("订阅通知")
    send(app, person, Audience(), title="第二期政策解读")
    assert any("第二期政策解读" in r.text for r in chat.pushes())


def test_a_work_order_answer_becomes_routed_tickets(app: App) -> None:
    person = oversight(app)
    uscc = enterprise(app, 1)
    chat = bound(app, "u-wo", uscc, "terminal")
    assert "目前没有发给您的为企服务工作单" in chat.send("填写工单")
    notice_id = send(
        app, person, Audience(), kind="为企服务工作单", title="2027年第一季度为企服务工作单",
        body="请反映贵企业在经营中遇到的困难和需求。",
    )  # fmt: skip
    (pushed,) = chat.pushes()
    assert "回复“填写工单”" in pushed.text
    assert [b.payload for b in pushed.buttons] == [f"cmd:填写工单 {notice_id}"]
    assert "请描述贵企业当前的需求或困难" in chat.send(f"填写工单 {notice_id}")
    assert "没能看出需求内容" in chat.send("嗯嗯")
    out = chat.send(
        "1. 希望了解研发费用加计扣除怎么申报\n2. 园区门口道路积水严重，需要尽快维修排水管道"
    )
    assert "联系人姓名和电话" in out
    assert "请同时写上联系人姓名" in chat.send("张三")
    done = chat.send("联系人：张三，13800138000")
    assert "登记为 2 件诉求" in done
    with app.db.sessions() as s:
        tickets = list(s.scalars(select(Ticket).order_by(Ticket.id)))
        assert len(tickets) == 2
        assert all(t.source is TicketSource.TERMINAL for t in tickets)
        assert all(t.enterprise is not None and t.enterprise.uscc == uscc for t in tickets)
        assert all(t.unverified for t in tickets)  # the chat only claimed the enterprise
        assert "联系人：张三，联系电话：13800138000" in tickets[0].description
        assert tickets[0].title.startswith("希望了解研发费用加计扣除")
        receipt = s.scalars(select(NoticeReceipt)).one()
        assert receipt.tickets == [t.number for t in tickets]
        assert "联系人：张三 13800138000" in (receipt.answer or "")
        identity = s.scalars(
            select(ChannelIdentity).where(ChannelIdentity.user_key == "u-wo")
        ).one()
        assert identity.contact_phone == "13800138000"
    for t in tickets:
        assert t.number in done and t.department in done


def test_no_needs_is_recorded_without_tickets(app: App) -> None:
    person = oversight(app)
    chat = bound(app, "u-none", enterprise(app, 1), "terminal")
    send(app, person, Audience(), kind="为企服务工作单", title="工作单")
    chat.pushes()
    chat.send("填写工单")
    assert "暂无需求" in chat.send("暂无需求")
    with app.db.sessions() as s:
        assert s.scalars(select(NoticeReceipt.answer)).one() == "无需求"
        assert s.scalars(select(Ticket)).first() is None


def test_receipts_export_and_who_may_send(app: App) -> None:
    person = oversight(app)
    e1 = enterprise(app, 1, name="天津甲有限公司")
    enterprise(app, 2, name="天津乙有限公司")  # no chat at all
    bound(app, "u-x", e1, "terminal")
    notice_id = send(app, person, Audience())
    with app.db.sessions() as s:
        rows = export_rows(s, notice_id)
    assert rows[0][:6] == ["统一社会信用代码", "企业名称", "渠道", "账号", "核验", "状态"]
    body = {r[1]: r for r in rows[1:]}
    assert body["天津甲有限公司"][4:6] == ["未核验", "待发送"]
    assert body["天津乙有限公司"][5] == "无绑定渠道"
    parsed = list(csv.reader(io.StringIO(export_csv(rows).decode("utf-8-sig"))))
    assert parsed == rows
    sheet = load_workbook(io.BytesIO(export_xlsx(rows))).active
    assert sheet is not None and sheet.cell(2, 2).value in ("天津甲有限公司", "天津乙有限公司")
    clerk = Commissioner(id=500, name="钱", department="商务局", role=CommissionerRole.COMMISSIONER)
    with app.db.begin() as s, pytest.raises(NoticeError, match="只有政务办和部门负责人"):
        create_notice(s, clerk, kind="政策解读", title="x", body="y", audience=Audience(),
                      now=app.clock())  # fmt: skip
    with app.db.begin() as s, pytest.raises(NoticeError, match="已发送过"):
        send_notice(s, notice_id, person, texts=app.replies, link_for=None, now=app.clock())
    with app.db.begin() as s, pytest.raises(NoticeError, match="网址"):
        create_notice(s, person, kind="政策解读", title="x", body="y", audience=Audience(),
                      link="javascript:alert(1)", now=app.clock())  # fmt: skip


def test_cli_code_send_list_and_receipts(
    app: App, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, db_url: str
) -> None:
    from bot.cli import main

    person = oversight(app)
    uscc = enterprise(app, 1)
    monkeypatch.setenv("YXBY_DATABASE_URL", db_url)
    monkeypatch.setenv("YXBY_LINK_SECRET", "a-test-secret-of-enough-length")
    runner = CliRunner()
    out = runner.invoke(main, ["enterprises", "code", uscc])
    assert out.exit_code == 0, out.output
    code = out.output.split("核验码：")[1].split()[0]
    chat = Chat(app, "u-cli", channel="terminal")
    assert "核验成功" in chat.send(f"核验 {code}")
    args = ["notices", "send", "--as", person.name, "--kind", "政策解读", "--title", "CLI 通知",
            "--body", "正文", "--building", PARK]  # fmt: skip
    dry = runner.invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "1 家企业" in dry.output and "试运行" in dry.output
    with app.db.sessions() as s:
        assert s.scalars(select(NoticeReceipt)).first() is None
    sent = runner.invoke(main, args)
    assert sent.exit_code == 0, sent.output
    assert "推送 1 条" in sent.output
    listed = runner.invoke(main, ["notices", "list"])
    assert "【政策解读】CLI 通知" in listed.output
    notice_id = listed.output.split()[0]
    shown = runner.invoke(main, ["notices", "receipts", notice_id])
    assert uscc in shown.output and "待发送" in shown.output
    target = tmp_path / "r.csv"
    exported = runner.invoke(main, ["notices", "receipts", notice_id, "--export", str(target)])
    assert exported.exit_code == 0 and "已导出 1 条" in exported.output
    assert "已核验" in target.read_text(encoding="utf-8-sig")
    bad = runner.invoke(main, ["notices", "send", "--as", "无此人", "--kind", "政策解读",
                               "--title", "t", "--body", "b"])  # fmt: skip
    assert bad.exit_code == 1 and "没有名为「无此人」" in bad.output
