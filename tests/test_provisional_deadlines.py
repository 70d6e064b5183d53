"""Deadlines counted over a year without a published holiday schedule are marked 暂定
wherever a person reads them: the enterprise's notices and ticket page, the console's
ticket page and the CLI (issue 15: "flag every deadline computed that way")."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.app import App
from bot.cli.tickets import _print_ticket
from bot.console.public import clock_lines, timeline
from bot.console.ticket import _clock_row
from bot.replies import PROVISIONAL_NOTE, format_due
from bot.server import ServerOptions, create_asgi
from handoff.calendar import SHANGHAI, load_calendar
from handoff.models import ClockKind, Commissioner
from handoff.queue import QueueService
from handoff.tickets import TicketService
from tests.chatting import Chat, file_ticket
from tests.conftest import MovableClock
from tests.servers import LiveServer
from tests.test_console_intake import SESSION_COOKIE, person, save_screenshot

YEAR_END = datetime(2026, 12, 28, 9, 0, tzinfo=SHANGHAI)  # 7 working days reach 2027
AUTUMN = datetime(2026, 11, 2, 9, 0, tzinfo=SHANGHAI)  # inside the published 2026


def test_format_due_marks_a_provisional_day() -> None:
    day = datetime(2027, 1, 5, 23, 59, tzinfo=SHANGHAI)
    assert format_due(day) == "2027年1月5日（周二）"
    assert format_due(day, provisional=True) == "2027年1月5日（周二，暂定）"


def test_a_year_end_ticket_reads_provisional_everywhere(
    app: App,
    chat: Chat,
    staff: Callable[..., Chat],
    clock: MovableClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock.set(YEAR_END)
    number = file_ticket(chat)
    # the chat's confirmation: the contact deadline is in 2026, the result's in 2027
    filed = "\n".join(r.render_plain() for r in chat.last)
    assert re.search(r"2026年12月\d+日（周.） 前与您联系", filed), filed
    assert re.search(r"2027年1月\d+日（周.，暂定） 前反馈", filed), filed
    view = app.tickets.get(number)
    done = view.clock(ClockKind.DONE)
    assert done is not None and done.calendar_fallback
    assert done.due_at.astimezone(SHANGHAI).year == 2027

    # the enterprise hears the deadline as provisional when its ticket is accepted
    staff("王芳", view.department).send(f"签收 {number}")
    accepted = " ".join(r.text for r in chat.pushes())
    assert "暂定" in accepted, accepted

    # its own ticket page and the console's clock rows say so
    lines = {line.label: line.provisional for line in clock_lines(view, clock.now)}
    assert lines["办结时限"]
    assert _clock_row(app, done, clock.now).provisional
    assert view.channel_identity_id is not None
    with LiveServer(create_asgi(app, [], ServerOptions(run_worker=False, run_tick=False))) as live:
        app.links.public_url = live.url
        page = httpx.get(app.links.url(number, view.channel_identity_id), timeout=10).text
    assert re.search(r'<abbr class="provisional" title="[^"]+">暂定</abbr>', page), page
    assert PROVISIONAL_NOTE in page

    # the commissioner's queue row
    with app.db.sessions() as session:
        officer = session.scalars(select(Commissioner).where(Commissioner.name == "王芳")).one()
    [row] = QueueService(app.db.sessions, app.calendar, app.clock).page(officer).rows
    assert row.countdown is not None and row.countdown.provisional

    # the chat's 查询
    status = chat.send(f"查询 {number}")
    assert "暂定" in status, status

    # the CLI too
    _print_ticket(app.tickets.get(number), clock.now, full=True)
    assert "（暂定）" in capsys.readouterr().out


def test_a_deadline_inside_a_published_year_is_not_marked(
    app: App, chat: Chat, staff: Callable[..., Chat], clock: MovableClock
) -> None:
    clock.set(AUTUMN)
    number = file_ticket(chat)
    view = app.tickets.get(number)
    staff("王芳", view.department).send(f"签收 {number}")
    assert "暂定" not in " ".join(r.text for r in chat.pushes())
    assert not any(line.provisional for line in clock_lines(view, clock.now))
    with app.db.sessions() as session:
        officer = session.scalars(select(Commissioner).where(Commissioner.name == "王芳")).one()
    [row] = QueueService(app.db.sessions, app.calendar, app.clock).page(officer).rows
    assert row.countdown is not None and not row.countdown.provisional


def test_the_console_shows_the_mark_with_its_reason(
    app: App,
    chat: Chat,
    staff: Callable[..., Chat],
    clock: MovableClock,
    browser: Any,
    tmp_path: Path,
) -> None:
    clock.set(YEAR_END)
    number = file_ticket(chat)
    department = app.tickets.get(number).department
    staff("王芳", department).send(f"签收 {number}")  # the next deadline is now 办结 (2027)
    me = person(app, "李强", department)
    with LiveServer(create_asgi(app, [], ServerOptions(run_worker=False, run_tick=False))) as live:
        context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
        context.add_cookies(
            [{"name": SESSION_COOKIE, "value": me.token, "url": f"{live.url}/console"}]
        )
        try:
            page = context.new_page()
            page.goto(f"{live.url}/console/")
            mark = page.locator("tr", has_text=number).locator("abbr.provisional")
            assert mark.inner_text() == "暂定"
            assert mark.get_attribute("title") == PROVISIONAL_NOTE
            save_screenshot(page, tmp_path, "queue-provisional.png")
            page.goto(f"{live.url}/console/tickets/{number}")
            assert page.locator("table.clocks-table abbr.provisional").count() >= 1
        finally:
            context.close()


PUBLISHED_2027 = """
    # test data only, not the real 2027 arrangement
    years:
      - year: 2027
        complete: true
        holidays: [{from: 2027-01-01, to: 2027-01-03}, {from: 2027-01-06, to: 2027-01-06}]
"""


def test_publishing_the_year_settles_the_deadline_once(
    app: App, chat: Chat, clock: MovableClock, tmp_path: Path
) -> None:
    clock.set(YEAR_END)
    number = file_ticket(chat)
    before = app.tickets.get(number).clock(ClockKind.DONE)
    assert before is not None and before.calendar_fallback
    assert app.tickets.settle_provisional() == []  # 2027 still unpublished: nothing to do

    # the operator adds the published schedule (here: a made-up extra holiday on 1月6日)
    holidays = tmp_path / "holidays.yaml"
    holidays.write_text(textwrap.dedent(PUBLISHED_2027), "utf-8")
    after_restart = TicketService(
        app.db.sessions,
        load_calendar(holidays),
        app.clock,
        settings=app.sla,
        departments=app.router.departments,
    )
    assert after_restart.settle_provisional() == [number]
    assert after_restart.settle_provisional() == []  # idempotent
    view = after_restart.get(number)
    done = view.clock(ClockKind.DONE)
    assert done is not None and not done.calendar_fallback
    assert done.due_at > before.due_at  # one more holiday: a working day later
    assert done.due_at.astimezone(SHANGHAI).date() == date(2027, 1, 8)
    [event] = [e for e in view.events if e.kind == "recalculate"]
    assert event.data["clocks"][0]["kind"] == "done"
    # the enterprise reads it on its page, and the mark is gone
    [entry] = [e for e in timeline(view) if e.title.startswith("时限已")]
    assert entry.text == "办结时限确定为 2027年1月8日"
    assert not any(line.provisional for line in clock_lines(view, clock.now))
