"""一企一档 over real HTTP: registry data, the 包保 commissioner, tickets within the person's
scope (others counted, not shown), conversations newest first and paged, ratings and notes;
404 for an unknown code; and the page in Chromium at 1366×768."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from handoff.models import (
    ChannelIdentity,
    Commissioner,
    CommissionerRole,
    Direction,
    Ticket,
    TranscriptLine,
)
from tests import test_console_intake as intake_tests
from tests.chatting import Chat
from tests.conftest import MovableClock, make_uscc
from tests.servers import LiveServer
from tests.test_console_intake import enterprise, http_for, link_chat, person, save_screenshot

console = intake_tests.console
live = intake_tests.live
page = intake_tests.page


@pytest.fixture
def file_of(console: App, clock: MovableClock) -> dict[str, Any]:
    """An enterprise with a 包保 commissioner, a chat, two tickets of two departments (each
    with a note; the first rated) and conversation lines, one of them filed under the
    second ticket."""
    zhang = person(console, "张敏", "市场监管局")
    uscc = enterprise(console, 11, "天津港保税区示例贸易有限公司", industry="批发和零售业",
                      commissioner=zhang.staff.id)  # fmt: skip
    with console.db.begin() as session:
        row = session.get(Commissioner, zhang.staff.id)
        assert row is not None
        row.phone = "022-25601234"
    chat = Chat(console, "wx-user-1")
    identity = link_chat(console, chat, uscc, display_name="王经理")
    tickets = console.tickets
    ours = tickets.create("营业执照经营范围变更需要哪些材料", department="市场监管局",
                          rule="topic", reason="诉求涉及营业执照", actor="测试",
                          enterprise_uscc=uscc, channel_identity_id=identity)  # fmt: skip
    for step in ("accept", "start"):
        getattr(tickets, step)(ours.number, actor="张敏")
    tickets.resolve(ours.number, result="已告知所需材料清单", actor="张敏")
    tickets.record_survey(ours.number, result="满意", actor="企业", comment="答复很及时")
    tickets.note(ours.number, text="企业负责人偏好电话沟通", actor="张敏")
    clock.advance(minutes=10)
    theirs = tickets.create("进口商品展示交易的保税政策咨询", department="商务局",
                            rule="industry", reason="批发和零售业由商务局主管", actor="测试",
                            enterprise_uscc=uscc)  # fmt: skip
    tickets.note(theirs.number, text="商务局内部：需与海关会商", actor="刘洋")
    with console.db.begin() as session:
        theirs_id = session.scalars(select(Ticket.id).where(Ticket.number == theirs.number)).one()
        session.add(TranscriptLine(channel_identity_id=identity, ticket_id=theirs_id,
                                   at=clock() + timedelta(minutes=1), direction=Direction.IN,
                                   text="保税展示的货物可以现场销售吗"))  # fmt: skip
    return {"uscc": uscc, "zhang": zhang, "ours": ours.number, "theirs": theirs.number}


def test_a_commissioner_sees_only_the_tickets_in_scope(live: LiveServer, file_of: dict) -> None:
    with http_for(live, file_of["zhang"]) as http:
        response = http.get(f"/console/enterprises/{file_of['uscc']}")
    assert response.status_code == 200
    html = response.text
    assert "天津港保税区示例贸易有限公司" in html and file_of["uscc"] in html
    assert "批发和零售业" in html and "重点企业" in html
    assert "张敏（市场监管局） · 022-25601234" in html
    assert "王经理" in html  # the linked chat
    assert f'href="/console/tickets/{file_of["ours"]}"' in html
    assert file_of["theirs"] not in html
    assert "另有 1 件诉求由其他部门办理" in html
    assert "满意" in html and "答复很及时" in html
    assert "企业负责人偏好电话沟通" in html
    assert "需与海关会商" not in html  # the other department's note
    assert "你好" in html  # the chat's own lines
    assert "保税展示的货物可以现场销售吗" not in html  # filed under the hidden ticket
    assert "另有 1 条对话属于您查看范围外的诉求" in html


def test_the_oversight_office_sees_every_ticket(
    live: LiveServer, console: App, file_of: dict
) -> None:
    overseer = person(console, "赵强", "政务办", CommissionerRole.OVERSIGHT)
    with http_for(live, overseer) as http:
        html = http.get(f"/console/enterprises/{file_of['uscc'].lower()}").text
    assert file_of["ours"] in html and file_of["theirs"] in html
    assert "不在您的查看范围内" not in html
    assert "需与海关会商" in html and "保税展示的货物可以现场销售吗" in html


def test_an_unknown_code_is_not_found(live: LiveServer, console: App) -> None:
    zhang = person(console, "张敏", "市场监管局")
    with http_for(live, zhang) as http:
        missing = http.get(f"/console/enterprises/{make_uscc(999)}")
        assert missing.status_code == 404 and "企业库中没有统一社会信用代码为" in missing.text
        assert http.get("/console/enterprises/not-a-code").status_code == 404
    with http_for(live) as anonymous:
        assert anonymous.get(f"/console/enterprises/{make_uscc(999)}").status_code == 303


def test_conversations_are_newest_first_and_paged(
    live: LiveServer, console: App, clock: MovableClock
) -> None:
    zhang = person(console, "张敏", "市场监管局")
    uscc = enterprise(console, 12, "天津示例物流有限公司")
    identity = link_chat(console, Chat(console, "tg-user"), uscc)
    with console.db.begin() as session:
        for i in range(40):
            at = clock() + timedelta(minutes=i)
            line = TranscriptLine(
                channel_identity_id=identity, direction=Direction.IN, at=at, text=f"第{i:02d}条消息"
            )
            session.add(line)
    with http_for(live, zhang) as http:
        first = http.get(f"/console/enterprises/{uscc}").text
        second = http.get(f"/console/enterprises/{uscc}?page=2").text
    assert "第39条消息" in first and "第10条消息" in first and "第09条消息" not in first
    assert first.index("第39条消息") < first.index("第38条消息")
    assert "第 1 / 2 页" in first and 'href="?page=2"' in first
    assert "第09条消息" in second and "第39条消息" not in second and "第 2 / 2 页" in second
    with console.db.sessions() as session:
        assert session.get(ChannelIdentity, identity) is not None


def test_browser_enterprise_file(
    page: Any, live: LiveServer, file_of: dict, tmp_path: Path
) -> None:
    page.context.add_cookies(
        [{"name": "yxby_console", "value": file_of["zhang"].token, "url": f"{live.url}/console"}]
    )
    page.goto(f"{live.url}/console/enterprises/{file_of['uscc']}")
    assert page.get_by_role("heading", name="天津港保税区示例贸易有限公司").is_visible()
    assert page.get_by_role("link", name=file_of["ours"]).is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    save_screenshot(page, tmp_path, "enterprise.png")
    page.get_by_role("link", name="为该企业登记诉求").click()
    page.wait_for_url("**/console/intake?enterprise=*")
    assert page.get_by_label("统一社会信用代码或企业名称").input_value() == file_of["uscc"]
