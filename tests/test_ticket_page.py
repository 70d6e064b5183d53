"""The enterprise's ticket page, in a real browser: Chromium (Playwright) against the ASGI app
under uvicorn on 127.0.0.1, opened from the link a pushed notice carries.

Screenshots go to a temporary directory, or to ``YXBY_SCREENSHOT_DIR`` when set (the ones in
``docs/console/`` were made with ``YXBY_SCREENSHOT_DIR=docs/console``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.app import App
from bot.console.public import clock_lines, timeline
from bot.server import ServerOptions, create_asgi
from handoff.models import Ticket, TicketState
from tests.chatting import Chat, file_ticket
from tests.conftest import MovableClock
from tests.servers import LiveServer

LINK = re.compile(r"查看详情与评价：(\S+)")


@pytest.fixture
def server(app: App) -> Iterator[LiveServer]:
    """The app's pages served on 127.0.0.1; notices link to it."""
    options = ServerOptions(run_worker=False, run_tick=False)
    with LiveServer(create_asgi(app, [], options)) as live:
        app.links.public_url = live.url
        if app.notifier.links is None:  # until build_app hands the links to the notifier
            app.notifier.links = app.links
        yield live


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("YXBY_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def link_in(replies: list[Any]) -> str:
    for reply in replies:
        found = LINK.search(reply.text)
        if found:
            return found.group(1)
    raise AssertionError(f"no link in {[r.text for r in replies]}")


def resolved(app: App, chat: Chat, staff: Callable[..., Chat]) -> tuple[str, Chat, str]:
    """A ticket filed in the chat, 签收, a progress note, 办结 over three days; the link of
    the result notice."""
    clock: Any = app.clock  # the MovableClock of the ``clock`` fixture
    number = file_ticket(chat)
    officer = staff("王芳", app.tickets.get(number).department)
    clock.advance(hours=2, minutes=15)
    officer.send(f"签收 {number}")
    accepted = chat.pushes()
    assert any("已由企业服务专员王芳" in r.text for r in accepted)
    clock.advance(days=1)
    app.tickets.progress(number, note="已联系物业公司，约定本周内上门检修", actor="王芳")
    app.tickets.add_helpers(number, departments=["城环局"], actor="王芳", reason="内部协调")
    clock.advance(days=1, hours=4, minutes=30)
    officer.send(f"办结 {number} 已协调物业于本周内完成路灯维修，并加装两处照明")
    officer.pushes()
    return number, officer, link_in(chat.pushes())


def test_rating_unsatisfied_on_the_ticket_page_reopens_and_tells_the_commissioner(
    app: App,
    chat: Chat,
    staff: Callable[..., Chat],
    server: LiveServer,
    browser: Any,
    shots: Path,
) -> None:
    number, officer, link = resolved(app, chat, staff)
    assert link.startswith(f"{server.url}/t/")

    phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    response = phone.goto(link)
    assert response is not None and response.status == 200
    body = phone.locator("main")
    assert number in body.inner_text()
    assert phone.locator(".state").inner_text() == "已办结，待评价"
    assert "已协调物业于本周内完成路灯维修" in phone.locator(".result").inner_text()
    text = body.inner_text()
    assert "已联系物业公司，约定本周内上门检修" in text  # the progress note
    assert "企业服务专员 王芳" in text  # who 签收
    assert "联系时限" in text and "办结时限" in text and "已完成" in text
    assert "城环局" not in text and "内部协调" not in text  # internal: not shown
    assert phone.get_by_role("button", name="提交评价").is_visible()
    phone.screenshot(path=str(shots / "ticket-page-mobile.png"), full_page=True)

    wide = browser.new_page(viewport={"width": 1366, "height": 768})
    wide.goto(link)
    wide.screenshot(path=str(shots / "ticket-page.png"), full_page=True)
    wide.close()

    phone.get_by_label("不满意", exact=True).check()
    phone.get_by_label("意见或建议（选填）").fill("路灯修好两天又不亮了")
    phone.get_by_role("button", name="提交评价").click()
    phone.wait_for_load_state()
    confirmation = phone.locator(".notice").inner_text()
    assert "已重新交办" in confirmation and number in confirmation
    assert phone.get_by_role("button", name="提交评价").count() == 0  # no second form
    phone.screenshot(path=str(shots / "ticket-page-rated-mobile.png"), full_page=True)
    phone.close()

    view = app.tickets.get(number)
    assert view.state is TicketState.NEW and view.reopen_count == 1
    assert view.surveys[-1].result.value == "不满意"
    assert view.surveys[-1].comment == "路灯修好两天又不亮了"
    with app.db.sessions() as session:
        identity = session.scalars(select(Ticket.channel_identity_id)).one()
    assert view.events[-1].actor.startswith("terminal:") and identity is not None
    heard = [n.text for n in officer.pushes()]
    assert any("【重办】" in t and number in t for t in heard)
    assert any("路灯修好两天又不亮了" in t for t in heard)


def test_a_second_post_after_the_rating_changes_nothing(
    app: App, chat: Chat, staff: Callable[..., Chat], server: LiveServer
) -> None:
    number, _, link = resolved(app, chat, staff)
    with httpx.Client() as http:
        page = http.get(link).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        form = {"csrf": csrf.group(1), "round": "0", "result": "满意", "comment": "很及时"}
        first = http.post(f"{link}/rate", data=form)
        assert first.status_code == 200 and "感谢您的评价" in first.text
        events = len(app.tickets.get(number).events)
        again = http.post(f"{link}/rate", data=form | {"result": "不满意"})
        assert again.status_code == 409 and "该诉求已评价" in again.text
    view = app.tickets.get(number)
    assert view.state is TicketState.SURVEYED and len(view.events) == events
    assert [s.result.value for s in view.surveys] == ["满意"]


def test_forged_or_foreign_links_and_forms_are_refused(
    app: App, chat: Chat, staff: Callable[..., Chat], server: LiveServer, browser: Any
) -> None:
    number, _, link = resolved(app, chat, staff)
    token = link.rsplit("/", 1)[1]
    tampered = f"{server.url}/t/{token[:-2]}{'AA' if not token.endswith('AA') else 'BB'}"
    page = browser.new_page(viewport={"width": 390, "height": 844})
    response = page.goto(tampered)
    assert response is not None and response.status == 404
    assert "链接无效或已过期" in page.locator("h1").inner_text()
    page.close()

    view = app.tickets.get(number)
    assert view.channel_identity_id is not None
    with httpx.Client() as http:
        other = app.links.url(number, view.channel_identity_id + 1)  # signed, wrong person
        assert http.get(other).status_code == 404
        assert http.get(f"{server.url}/t/garbage").status_code == 404
        no_csrf = http.post(f"{link}/rate", data={"round": "0", "result": "满意"})
        assert no_csrf.status_code == 403
        bad_csrf = http.post(f"{link}/rate", data={"csrf": "x" * 32, "result": "满意"})
        assert bad_csrf.status_code == 403
        not_a_form = http.post(f"{link}/rate", json={"result": "满意"})
        assert not_a_form.status_code == 403
    assert app.tickets.get(number).state is TicketState.FEEDBACK_SENT


def test_an_expired_link_is_refused(
    app: App, chat: Chat, staff: Callable[..., Chat], server: LiveServer, clock: MovableClock
) -> None:
    _, _, link = resolved(app, chat, staff)
    clock.advance(days=31)
    response = httpx.get(link)
    assert response.status_code == 404 and "链接无效或已过期" in response.text


def test_clocks_and_timeline_as_the_enterprise_reads_them(
    app: App, chat: Chat, staff: Callable[..., Chat], clock: MovableClock
) -> None:
    number = file_ticket(chat)
    view = app.tickets.get(number)
    assert [(c.label, c.status) for c in clock_lines(view, clock.now)] == [
        ("联系时限", "进行中"),
        ("办结时限", "进行中"),
    ]
    clock.advance(days=5)
    late = [(c.label, c.status, c.tone) for c in clock_lines(view, clock.now)]
    assert late[0] == ("联系时限", "已超时", "late")
    staff("王芳", view.department).send(f"签收 {number}")
    app.tickets.transfer(number, to_department="政务办", reason="内部原因：人手不足", actor="王芳")
    entries = timeline(app.tickets.get(number))
    assert [e.title for e in entries] == ["转派", "已签收", "诉求已登记"]
    assert entries[0].text == "转由政务办办理"  # the department only, never the reason
    assert all("人手不足" not in e.text for e in entries)


def test_the_commissioners_reply_is_shown_to_the_enterprise() -> None:
    from datetime import UTC, datetime

    from bot.console.public import _entry
    from handoff.tickets import EventView

    event = EventView(datetime(2026, 11, 23, 2, tzinfo=UTC), "张敏", "reply", None, None,
                      "已联系物业，明天上午维修", {})  # fmt: skip
    entry = _entry(event, "规建局")
    assert entry is not None and "专员回复" in str(entry) and "明天上午维修" in str(entry)
    note = EventView(event.at, "张敏", "note", None, None, "企业负责人态度急躁", {})
    assert _entry(note, "规建局") is None  # internal notes never reach the enterprise
