"""Notices to the enterprise about its ticket: 受理/签收, 进度, 办结 + 评价邀请, 超期致歉.

Each carries a ``notice`` (number, title, state, event, body, time, link) and its text ends
with the link to the ticket page, so every channel shows the same link.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from bot.app import App
from bot.notify import NOTICE_FIELDS, Notifier
from handoff.outbox import take_local
from tests.chatting import Chat, file_ticket
from tests.conftest import MovableClock

LINK = re.compile(r"查看详情与评价：(/t/\S+)$")


@pytest.fixture
def linked(app: App) -> App:
    """The app with links in its notices (until ``build_app`` passes them to the notifier)."""
    if app.notifier.links is None:
        app.notifier.links = app.links
    return app


def delivered(app: App, user: str = "user-1") -> list[dict[str, Any]]:
    """What the terminal user was pushed since last asked (payloads, marked sent)."""
    with app.db.begin() as session:
        return take_local(session, "terminal", user, app.clock())


def opened_by(app: App, payload: dict[str, Any]) -> tuple[str, int]:
    """The ticket and identity the payload's link opens (the text and the notice agree)."""
    found = LINK.search(payload["text"])
    assert found is not None, payload["text"]
    assert found.group(1) == payload["notice"]["link"]
    target = app.links.verify(found.group(1).removeprefix("/t/"))
    return target.number, target.identity_id


def filed(app: App, chat: Chat, staff: Callable[..., Chat]) -> tuple[str, Chat]:
    number = file_ticket(chat)
    officer = staff("王芳", app.tickets.get(number).department)
    officer.pushes()
    return number, officer


def test_accepting_tells_the_enterprise_who_took_it_with_the_link(
    linked: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    app = linked
    number, officer = filed(app, chat, staff)
    officer.send(f"签收 {number}")
    (payload,) = delivered(app)
    view = app.tickets.get(number)
    assert f"您的诉求 {number} 已由企业服务专员王芳（{view.department}）签收" in payload["text"]
    assert "办结时限：" in payload["text"]
    notice = payload["notice"]
    assert set(notice) == set(NOTICE_FIELDS)
    assert (notice["number"], notice["title"], notice["event"]) == (number, view.title, "受理")
    assert notice["state"] == "已签收" and notice["time"] == "2026-11-23 10:00"
    assert opened_by(app, payload) == (number, view.channel_identity_id)


def test_progress_notes_reach_the_enterprise(
    linked: App, chat: Chat, staff: Callable[..., Chat], clock: MovableClock
) -> None:
    app = linked
    number, officer = filed(app, chat, staff)
    officer.send(f"签收 {number}")
    delivered(app)
    clock.advance(days=1)
    view = app.tickets.progress(number, note="已约物业周三上门检修", actor="王芳")
    assert view.events[-1].kind == "progress"
    (payload,) = delivered(app)
    assert "有新进展" in payload["text"] and "已约物业周三上门检修" in payload["text"]
    assert payload["notice"]["event"] == "进度"
    assert payload["notice"]["body"] == "已约物业周三上门检修"
    assert payload["notice"]["time"] == "2026-11-24 10:00"
    assert opened_by(app, payload)[0] == number
    app.tickets.progress(number, note="材料已送审", actor="王芳")  # each note is its own push
    assert [p["notice"]["body"] for p in delivered(app)] == ["材料已送审"]


def test_the_result_carries_the_link_and_the_rating_buttons(
    linked: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    app = linked
    number, officer = filed(app, chat, staff)
    officer.send(f"签收 {number}")
    delivered(app)
    officer.send(f"办结 {number} 已协调物业修复路灯")
    (payload,) = delivered(app)
    assert payload["notice"]["event"] == "办结"
    assert payload["notice"]["body"] == "已协调物业修复路灯"
    assert [b["label"] for b in payload["buttons"]] == ["满意", "基本满意", "不满意"]
    assert opened_by(app, payload)[0] == number


def test_an_undelivered_accept_notice_gives_way_to_the_result(
    linked: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    app = linked
    number, officer = filed(app, chat, staff)
    officer.send(f"签收 {number}")
    officer.send(f"办结 {number} 已修复")
    (payload,) = delivered(app)  # one message: the result says all the 签收 notice would
    assert payload["notice"]["event"] == "办结"


def test_a_breached_done_clock_brings_one_apology_with_the_new_expectation(
    linked: App, chat: Chat, staff: Callable[..., Chat], clock: MovableClock
) -> None:
    app = linked
    number, officer = filed(app, chat, staff)
    officer.send(f"签收 {number}")
    delivered(app)
    clock.advance(days=10)  # Thu 12-03: the 办结 limit (Wed 12-02 24:00) has passed
    app.tickets.tick()
    (payload,) = delivered(app)
    assert f"很抱歉，您的诉求 {number} 未能在办结时限" in payload["text"]
    assert "预计2026年12月7日（周一）前向您反馈办理结果" in payload["text"]
    assert payload["notice"]["event"] == "超期"
    assert opened_by(app, payload)[0] == number
    app.tickets.tick()
    clock.advance(days=1)
    app.tickets.tick()
    assert delivered(app) == []  # once per clock


def test_the_handoff_timeout_ticket_is_a_notice_too(
    linked: App, chat: Chat, staff: Callable[..., Chat], clock: MovableClock
) -> None:
    app = linked
    staff("李娜", "政务办")
    chat.send("园区停车位不够用，货车经常没地方停")
    chat.send("转人工")
    clock.advance(minutes=6)
    assert app.live.expire() == 1
    (payload,) = delivered(app)
    assert "已为您登记诉求 YX-" in payload["text"]
    assert payload["notice"]["event"] == "受理"
    assert opened_by(app, payload)[0] == payload["notice"]["number"]


def test_without_links_notices_carry_none(app: App, chat: Chat, staff: Callable[..., Chat]) -> None:
    assert Notifier(app.replies, app.clock).links is None
    app.notifier.links = None
    number, officer = filed(app, chat, staff)
    officer.send(f"签收 {number}")
    (payload,) = delivered(app)
    assert "查看详情" not in payload["text"]
    assert payload["notice"]["link"] == "" and payload["notice"]["number"] == number


def test_staff_notices_carry_no_enterprise_notice(
    linked: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    app = linked
    number = file_ticket(chat)
    officer = staff("王芳", app.tickets.get(number).department)
    app.tickets.urge(number, actor="企业", note="请尽快")
    payloads = delivered(app, officer.user_key)
    assert payloads and all("notice" not in p for p in payloads)


def test_links_may_be_made_on_the_first_notice(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    made: list[int] = []

    def make() -> Any:
        made.append(1)
        return app.links

    app.notifier.links = make
    number, officer = filed(app, chat, staff)
    assert made == []
    officer.send(f"签收 {number}")
    (payload,) = delivered(app)
    assert opened_by(app, payload)[0] == number and made == [1]


def staff_id(app: App, name: str) -> int:
    """The id of the commissioner the ``staff`` fixture registered as *name*."""
    from handoff.registry import commissioner_of

    with app.db.sessions() as session:
        person = commissioner_of(session, "terminal", f"staff-{name}")
        assert person is not None
        return person.id


def test_a_reply_reaches_the_enterprise_and_names_who_wrote(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    number, _ = filed(app, chat, staff)
    person_id = staff_id(app, "王芳")
    view = app.tickets.reply(
        number, text="请问路灯在哪条路？", actor="王芳", commissioner_id=person_id
    )
    assert view.events[-1].kind == "reply" and view.events[-1].reason == "请问路灯在哪条路？"
    (payload,) = delivered(app)
    assert f"关于您的诉求 {number}" in payload["text"]
    assert f"企业服务专员王芳（{view.department}）" in payload["text"]
    assert "请问路灯在哪条路？" in payload["text"]


def test_invited_helpers_and_an_assigned_commissioner_are_told(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    number, officer = filed(app, chat, staff)
    department = app.tickets.get(number).department
    helper_dept = "财政局" if department != "财政局" else "工信局"
    helper = staff("钱七", helper_dept)
    app.tickets.add_helpers(number, departments=[helper_dept], actor="王芳", reason="涉及资金")
    (invite,) = helper.pushes()
    assert (
        "【协同请求】" in invite.text and number in invite.text and "理由：涉及资金" in invite.text
    )
    assert invite.ref == f"ticket:{number}"  # WeCom links it to the console's ticket page
    assert officer.pushes() == []  # the lead department is not told its own invitation

    colleague = staff("孙八", department)
    colleague.pushes()
    app.tickets.assign(number, commissioner=staff_id(app, "孙八"), actor="王局")
    (told,) = colleague.pushes()
    assert told.text == f"【指派】{number}（{app.tickets.get(number).title}）已由王局指派给您办理。"
