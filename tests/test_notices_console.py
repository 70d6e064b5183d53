"""The notices pages and the binding panel of the 一企一档 page, over HTTP and in Chromium:
compose → preview → send → receipts (screenshot docs/console/notices.png), the export, who
may see them, and 生成核验码 / 确认绑定 on the enterprise's file."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from bot.app import App
from bot.server import ServerOptions, create_asgi
from handoff.accounts import Accounts
from handoff.models import ChannelIdentity, CommissionerRole, Enterprise, EnterpriseKind, Ticket
from handoff.registry import find_enterprise
from tests.chatting import Chat, file_ticket
from tests.conftest import START, make_uscc
from tests.servers import LiveServer
from tests.test_console_intake import CHEAP, PASSWORD, http_for, person, save_screenshot

PARK = "国际物流园"


@pytest.fixture
def console(app: App) -> App:
    """The app with a cheap password hash."""
    app.accounts = Accounts(app.db.sessions, app.clock, CHEAP)
    return app


@pytest.fixture
def live(console: App) -> Iterator[LiveServer]:
    asgi = create_asgi(console, [], ServerOptions(run_worker=False, run_tick=False))
    with LiveServer(asgi) as server:
        yield server


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    try:
        yield context.new_page()
    finally:
        context.close()


def enterprises(app: App, keeper_id: int | None = None) -> list[str]:
    """Three entities in the park (one zombie), one elsewhere; chats bound to two of them."""
    codes = []
    rows = [
        ("天津港保税区示例物流有限公司", PARK, "网格一", False),
        ("天津港保税区示例贸易有限公司", PARK, "网格二", False),
        ("天津港保税区停业示例有限公司", PARK, "网格二", True),
        ("天津临港示例制造有限公司", "临港产业园", "网格九", False),
    ]
    with app.db.begin() as s:
        for n, (name, building, grid, zombie) in enumerate(rows, start=1):
            code = make_uscc(300 + n)
            codes.append(code)
            s.add(
                Enterprise(
                    uscc=code, name=name, kind=EnterpriseKind.ENTERPRISE, industry="国际贸易",
                    tags=[], building=building, grid=grid, zombie=zombie,
                    commissioner_id=keeper_id, created_at=START, updated_at=START,
                )
            )  # fmt: skip
    Chat(app, "u-logistics").send(f"绑定 {codes[0]}")
    Chat(app, "u-trade").send(f"绑定 {codes[1]}")
    return codes


def test_compose_preview_send_and_receipts_over_http(console: App, live: LiveServer) -> None:
    signed = person(console, "周敏", "政务办", CommissionerRole.OVERSIGHT)
    enterprises(console)
    form = {
        "csrf": signed.staff.csrf, "kind": "政策解读", "title": "跨境电商扶持政策解读",
        "body": "区内跨境电商企业可申请物流费用补贴。", "link": "", "image_url": "",
        "industry": "", "kind_filter": "", "building": PARK, "grid": "", "commissioner_id": "",
        "department": "",
    }  # fmt: skip
    with http_for(live, signed) as http:
        assert "撰写通知" in http.get("/console/notices").text
        preview = http.post("/console/notices/new", data={**form, "step": "preview"})
        assert preview.status_code == 200
        assert re.search(r'id="preview-enterprises">2<', preview.text)  # not the zombie
        assert re.search(r'id="preview-reachable">2<', preview.text)
        bad = http.post("/console/notices/new", data={**form, "title": "", "step": "preview"})
        assert bad.status_code == 400 and "请填写通知标题" in bad.text
        with console.db.sessions() as s:  # a preview writes nothing
            assert s.scalar(select(Ticket.id)) is None
        sent = http.post("/console/notices/new", data={**form, "step": "send"})
        assert sent.status_code == 303
        target = sent.headers["location"]
        detail = http.get(target)
        assert "跨境电商扶持政策解读" in detail.text and "待发送" in detail.text
        assert "天津港保税区示例物流有限公司" in detail.text
        assert "天津港保税区停业示例有限公司" not in detail.text
        xlsx = http.get(f"{target}/receipts.xlsx")
        assert xlsx.status_code == 200
        sheet = load_workbook(io.BytesIO(xlsx.content)).active
        assert sheet is not None and sheet.max_row == 3
        csv_file = http.get(f"{target}/receipts.csv")
        assert csv_file.content.startswith("\ufeff".encode()) and "未核验" in csv_file.text
    clerk = person(console, "钱", "商务局")
    with http_for(live, clerk) as http:
        assert http.get("/console/notices").status_code == 403
        assert http.get(f"{target}/receipts.csv").status_code == 404
        assert "通知推送" not in http.get("/console/").text
    head = person(console, "孙", "商务局", CommissionerRole.HEAD)
    with http_for(live, head) as http:
        assert "通知推送" in http.get("/console/").text
        assert http.get(target).status_code == 404  # another department's notice


def test_code_and_confirmation_on_the_enterprise_page(console: App, live: LiveServer) -> None:
    keeper = person(console, "李娜", "商务局")
    codes = enterprises(console, keeper.staff.id)
    chat = Chat(console, "u-logistics")
    number = file_ticket(chat)
    with http_for(live, keeper) as http:
        page_html = http.get(f"/console/enterprises/{codes[0]}").text
        assert "企业账号绑定与核验" in page_html and "未核验" in page_html
        made = http.post(
            f"/console/enterprises/{codes[0]}/binding",
            data={"csrf": keeper.staff.csrf, "action": "code"},
        )
        assert made.status_code == 200
        code = re.search(r'id="binding-code">([A-Z0-9-]+)<', made.text)
        assert code is not None
        assert "核验成功" in Chat(console, "u-new").send(f"核验 {code.group(1)}")
        with console.db.sessions() as s:
            identity = s.scalars(
                select(ChannelIdentity).where(ChannelIdentity.user_key == "u-logistics")
            ).one()
        assert 'class="tag unverified"' in http.get(f"/console/tickets/{number}").text
        confirmed = http.post(
            f"/console/enterprises/{codes[0]}/binding",
            data={"csrf": keeper.staff.csrf, "action": "confirm", "identity": str(identity.id)},
        )
        assert confirmed.status_code == 303
        after = http.get(f"/console/enterprises/{codes[0]}").text
        assert "专员确认" in after and "核验码" in after
        assert 'class="tag unverified"' not in http.get(f"/console/tickets/{number}").text
        no_csrf = http.post(f"/console/enterprises/{codes[0]}/binding", data={"action": "code"})
        assert no_csrf.status_code == 403
    stranger = person(console, "王五", "财政局")
    with http_for(live, stranger) as http:
        refused = http.post(
            f"/console/enterprises/{codes[0]}/binding",
            data={"csrf": stranger.staff.csrf, "action": "code"},
        )
        assert refused.status_code == 403 and "只有" in refused.text


@pytest.fixture
def oversight(console: App) -> Any:
    return person(console, "周敏", "政务办", CommissionerRole.OVERSIGHT)


def test_browser_compose_preview_send_receipts(
    page: Any, live: LiveServer, console: App, oversight: Any, tmp_path: Path
) -> None:
    enterprises(console)
    page.goto(f"{live.url}/console/notices")
    page.get_by_label("姓名").fill("周敏")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{live.url}/console/notices")
    page.get_by_role("link", name="撰写通知").click()
    page.get_by_label("为企服务工作单").check()
    page.get_by_label("标题").fill("2027年第一季度为企服务工作单")
    page.get_by_label("正文").fill("请反映贵企业在生产经营中遇到的困难和需求，我们将逐条登记办理。")
    page.get_by_label("楼宇/园区").select_option(PARK)
    assert page.get_by_role("button", name=re.compile("确认发送")).count() == 0
    page.get_by_role("button", name="预览受众人数").click()
    page.wait_for_load_state()
    assert page.text_content("#preview-enterprises") == "2"
    assert page.get_by_label("标题").input_value() == "2027年第一季度为企服务工作单"  # kept
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    page.locator(".preview").scroll_into_view_if_needed()
    save_screenshot(page, tmp_path, "notices_compose.png")
    page.get_by_role("button", name="确认发送给 2 家企业").click()
    page.wait_for_url(re.compile(r".*/console/notices/\d+$"))
    assert "2027年第一季度为企服务工作单" in page.text_content("h1")
    assert page.locator('[data-count="pending"]').text_content() == "2"
    # an enterprise answers the work order in the chat, and the receipt shows it
    chat = Chat(console, "u-logistics")
    chat.pushes()
    chat.send("填写工单")
    chat.send("园区门口道路积水严重，需要尽快维修排水管道")
    chat.send("张三 13800138000")
    page.reload()
    assert page.locator('[data-count="answered"]').text_content() == "1"
    assert "园区门口道路积水严重" in page.text_content("table.receipts")
    save_screenshot(page, tmp_path, "notices.png")
    with console.db.sessions() as s:
        assert len(list(s.scalars(select(Ticket)))) == 1


@pytest.fixture
def keeper_page(browser: Any, live: LiveServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")
    try:
        yield context.new_page()
    finally:
        context.close()


def test_browser_binding_panel(
    keeper_page: Any, live: LiveServer, console: App, tmp_path: Path
) -> None:
    keeper = person(console, "李娜", "商务局")
    codes = enterprises(console, keeper.staff.id)
    Chat(console, "u-colleague").send(f"绑定 {codes[0]}")
    page = keeper_page
    page.goto(f"{live.url}/console/enterprises/{codes[0]}")
    page.get_by_label("姓名").fill("李娜")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{live.url}/console/enterprises/{codes[0]}")
    panel = page.locator(".binding-panel")
    assert panel.locator(".ntag.unverified").count() == 2
    panel.get_by_role("button", name="确认绑定").first.click()
    page.wait_for_url(f"{live.url}/console/enterprises/{codes[0]}")
    assert page.locator(".binding-panel .ntag.unverified").count() == 1
    page.locator(".binding-panel").scroll_into_view_if_needed()
    save_screenshot(page, tmp_path, "notices_binding.png")
    page.get_by_role("button", name="生成核验码").click()
    code = page.text_content("#binding-code")
    assert code is not None and re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", code)
    with console.db.sessions() as s:
        assert find_enterprise(s, codes[0]) is not None
