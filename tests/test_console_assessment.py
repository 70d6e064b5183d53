"""The 考核统计 dashboard: scope by role, drill-down to tickets, XLSX download, browser."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook

from bot.app import App
from bot.server import ServerOptions, create_asgi
from handoff.accounts import Accounts
from handoff.models import CommissionerRole
from handoff.registry import add_commissioner
from tests.conftest import MovableClock
from tests.servers import LiveServer
from tests.test_assessment import A, B, History, build_history
from tests.test_console_queue import CHEAP, PASSWORD, SCREENSHOTS, SHOTS_ENV

OCT = "from=2026-10-01&to=2026-10-31"


@pytest.fixture
def console(app: App) -> App:
    app.accounts = Accounts(app.db.sessions, app.clock, CHEAP)
    return app


@pytest.fixture
def history(console: App, clock: MovableClock) -> History:
    return build_history(console.tickets, clock, console.db)


@pytest.fixture
def server(console: App) -> Iterator[LiveServer]:
    asgi = create_asgi(console, [], ServerOptions(run_worker=False, run_tick=False))
    with LiveServer(asgi) as live:
        yield live


def sign_in(app: App, name: str, department: str, role: CommissionerRole) -> str:
    with app.db.begin() as session:
        person = add_commissioner(
            session, name=name, department=department, role=role,
            departments=app.router.departments,
        )  # fmt: skip
        session.flush()
        pid = person.id
    app.accounts.set_password(pid, PASSWORD)
    return app.accounts.sign_in(name, PASSWORD, department=department).token


def http(server: LiveServer, token: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, follow_redirects=False)
    client.cookies.set("yxby_console", token, path="/console")
    return client


def test_roles_and_scope(console: App, history: History, server: LiveServer) -> None:
    overseer = http(server, sign_in(console, "周督", "政务办", CommissionerRole.OVERSIGHT))
    page = overseer.get(f"/console/assessment?{OCT}")
    assert page.status_code == 200
    assert "部门综合得分排名" in page.text and "1. 商务局" in page.text
    assert 'href="/console/assessment"' in page.text  # the nav link
    drill = overseer.get(
        f"/console/assessment/drill?{OCT}&figure=contact_on_time_rate&department={B}"
    )
    assert drill.status_code == 200
    for number in (history.t3, history.t4, history.t5):
        assert f'href="/console/tickets/{number}"' in drill.text
    assert "66.7%" in drill.text and "= 2 / 3" in drill.text

    head = http(server, sign_in(console, "吴长", A, CommissionerRole.HEAD))
    mine = head.get(f"/console/assessment?{OCT}")
    assert mine.status_code == 200 and f"考核统计 · {A}" in mine.text
    assert "部门综合得分排名" not in mine.text
    assert f'<th scope="row">{B}</th>' not in mine.text
    refused = head.get(f"/console/assessment/drill?{OCT}&figure=created&department={B}")
    assert refused.status_code == 404 and f"您只能查看{A}的考核明细" in refused.text
    own = head.get(f"/console/assessment/drill?{OCT}&figure=reopen_rate")
    assert own.status_code == 200 and history.t2 in own.text
    assert head.get(f"/console/assessment.xlsx?{OCT}").status_code == 403

    clerk = http(server, sign_in(console, "郑员", A, CommissionerRole.COMMISSIONER))
    assert clerk.get(f"/console/assessment?{OCT}").status_code == 403
    assert 'href="/console/assessment"' not in clerk.get("/console/").text

    bad = overseer.get("/console/assessment/drill?figure=nope")
    assert bad.status_code == 404 and "未知的考核指标" in bad.text
    odd = overseer.get("/console/assessment?period=2026-13")
    assert odd.status_code == 200 and "无法识别的考核期间「2026-13」" in odd.text

    xlsx = overseer.get(f"/console/assessment.xlsx?{OCT}")
    assert xlsx.status_code == 200
    book = load_workbook(io.BytesIO(xlsx.content))
    assert book["考核汇总"]["B2"].value == B

    questions = overseer.get(f"/console/assessment/bot?{OCT}&outcome=handoff")
    assert questions.status_code == 200 and f"/console/tickets/{history.t5}" in questions.text


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_browser_drills_down_from_a_figure_to_its_tickets(
    console: App, history: History, server: LiveServer, page: Any, tmp_path: Path
) -> None:
    token = sign_in(console, "周督", "政务办", CommissionerRole.OVERSIGHT)
    page.context.add_cookies(
        [{"name": "yxby_console", "value": token, "url": f"{server.url}/console/"}]
    )
    page.goto(f"{server.url}/console/assessment?{OCT}")
    assert page.get_by_role("heading", name="考核统计").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    shot = tmp_path / "assessment.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get(SHOTS_ENV):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / "assessment.png")

    # the overdue bar of 商务局 → its one overdue ticket → the ticket page
    page.locator("#overdue-title + svg a").first.click()
    page.get_by_role("heading", name=f"当前超期件数 · {B}").wait_for()
    page.get_by_role("link", name=history.t4).click()
    page.wait_for_url(f"**/console/tickets/{history.t4}")

    # a cell of the table: 商务局's 按时签收率 (2 of 3) → numerator and denominator
    page.goto(f"{server.url}/console/assessment?{OCT}")
    row = page.locator("tr", has=page.locator(f'th:text-is("{B}")'))
    row.get_by_role("link", name="66.7%").click()
    page.get_by_role("heading", name=f"按时签收率 · {B}").wait_for()
    numerator = page.locator("section", has=page.locator("#numerator"))
    denominator = page.locator("section", has=page.locator("#denominator"))
    assert sorted(numerator.locator("tbody a").all_text_contents()) == sorted(
        [history.t3, history.t5]
    )
    assert sorted(denominator.locator("tbody a").all_text_contents()) == sorted(
        [history.t3, history.t4, history.t5]
    )
    shot = tmp_path / "assessment-drill.png"
    page.screenshot(path=str(shot))
    if os.environ.get(SHOTS_ENV):
        shutil.copyfile(shot, SCREENSHOTS / "assessment-drill.png")
    denominator.get_by_role("link", name=history.t3).click()
    page.wait_for_url(f"**/console/tickets/{history.t3}")
