"""The queue (工作台): ordering by deadline, working-day countdowns and their colours, filters,
search, scope, waiting live-chat requests on top, the JSON feed, and the page in Chromium
(a new ticket appears without a reload)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import App
from bot.server import ServerOptions, create_asgi
from handoff.accounts import Accounts, Argon2Settings, ConsoleSettings
from handoff.calendar import SHANGHAI, WorkCalendar
from handoff.conversations import LiveHandoff, LiveHandoffState
from handoff.models import (
    ChannelIdentity,
    ClockKind,
    Commissioner,
    CommissionerRole,
    Enterprise,
    EnterpriseKind,
)
from handoff.queue import QueueFilter, QueueService, Urgency, countdown, working_seconds
from handoff.registry import add_commissioner
from handoff.tickets import TicketState, TicketView
from tests.conftest import MovableClock, make_uscc
from tests.servers import LiveServer, eventually
from yxby import paths

PASSWORD = "gangkou-2026!"
CHEAP = ConsoleSettings(argon2=Argon2Settings(time_cost=1, memory_kib=64, parallelism=1))
SCREENSHOTS = paths.PROJECT_ROOT / "docs" / "console"
SHOTS_ENV = "YXBY_UPDATE_SCREENSHOTS"


def at(day: int, hour: int = 10, minute: int = 0, month: int = 11) -> datetime:
    """A moment of late 2026 in Shanghai (2026-11-23 is a Monday)."""
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def console(app: App) -> App:
    app.accounts = Accounts(app.db.sessions, app.clock, CHEAP)
    return app


def person(
    app: App, name: str, department: str, role: CommissionerRole = CommissionerRole.COMMISSIONER
) -> Commissioner:
    with app.db.begin() as session:
        found = add_commissioner(
            session, name=name, department=department, role=role,
            departments=app.router.departments,
        )  # fmt: skip
        session.flush()
        session.expunge(found)
    return found


def enterprise(app: App, seq: int, name: str) -> str:
    uscc = make_uscc(seq)
    with app.db.begin() as session:
        session.add(
            Enterprise(
                uscc=uscc, name=name, kind=EnterpriseKind.ENTERPRISE, tags=[],
                created_at=app.clock(), updated_at=app.clock(),
            )
        )  # fmt: skip
    return uscc


def ticket(
    app: App,
    text: str = "办理营业执照变更需要哪些材料",
    *,
    department: str = "市场监管局",
    uscc: str | None = None,
    source: str | None = None,
    commissioner_id: int | None = None,
    state: TicketState = TicketState.NEW,
) -> TicketView:
    service = app.tickets
    view = service.create(
        text, department=department, rule="topic", reason="测试", actor="测试员",
        enterprise_uscc=uscc, source=source, commissioner_id=commissioner_id,
    )  # fmt: skip
    steps: dict[TicketState, list[tuple[str, dict[str, Any]]]] = {
        TicketState.NEW: [],
        TicketState.ACCEPTED: [("accept", {})],
        TicketState.IN_PROGRESS: [("accept", {}), ("start", {})],
        TicketState.RESOLVED: [("accept", {}), ("start", {}), ("resolve", {"result": "已办"})],
        TicketState.FEEDBACK_SENT: [
            ("accept", {}),
            ("start", {}),
            ("resolve", {"result": "已办"}),
            ("send_feedback", {}),
        ],
    }
    for action, kwargs in steps[state]:
        view = getattr(service, action)(view.number, actor="测试员", **kwargs)
    return view


def waiting_request(
    app: App, department: str = "市场监管局", question: str = "想咨询出口退税"
) -> int:
    now = app.clock()
    with app.db.begin() as session:
        identity = ChannelIdentity(
            channel="wechat", user_key=f"o-{now.timestamp()}-{department}",
            display_name="王经理", created_at=now,
        )  # fmt: skip
        session.add(identity)
        session.flush()
        handoff = LiveHandoff(
            channel_identity_id=identity.id, department=department, route_rule="topic",
            route_reason="测试", question=question, state=LiveHandoffState.WAITING,
            created_at=now, expires_at=now + timedelta(minutes=10),
        )  # fmt: skip
        session.add(handoff)
        session.flush()
        return handoff.id


def queue_of(app: App) -> QueueService:
    return QueueService(app.db.sessions, app.calendar, app.clock)


def numbers(app: App, who: Commissioner, **wanted: Any) -> list[str]:
    return [r.number for r in queue_of(app).page(who, QueueFilter(**wanted)).rows]


# ------------------------------------------------------------------------- countdowns


def test_working_seconds_skip_the_weekend(calendar: WorkCalendar) -> None:
    assert working_seconds(calendar, at(27, 22), at(30, 2)) == 4 * 3600  # Fri 22:00 → Mon 02:00
    assert working_seconds(calendar, at(30, 2), at(27, 22)) == -4 * 3600
    assert working_seconds(calendar, at(28, 9), at(29, 20)) == 0  # inside a weekend


def test_countdown_colours_at_the_boundaries_across_a_weekend(calendar: WorkCalendar) -> None:
    due = datetime(2026, 11, 30, 23, 59, 59, tzinfo=SHANGHAI)  # end of Monday
    fri = countdown(calendar, at(27, 23), ClockKind.CONTACT, due)
    assert (fri.urgency, fri.text) == (Urgency.OK, "剩 1 个工作日 1 小时")
    sat = countdown(calendar, at(28, 0), ClockKind.CONTACT, due)  # one working day left
    assert (sat.urgency, sat.text) == (Urgency.SOON, "剩 1 个工作日")
    sun = countdown(calendar, at(29, 18), ClockKind.CONTACT, due)
    assert (sun.urgency, sun.text) == (Urgency.SOON, "剩 1 个工作日")
    mon = countdown(calendar, at(30, 23, 30), ClockKind.CONTACT, due)
    assert (mon.urgency, mon.text) == (Urgency.SOON, "剩 30 分钟")
    late = countdown(calendar, datetime(2026, 12, 1, 2, 0, tzinfo=SHANGHAI), ClockKind.CONTACT, due)
    assert (late.urgency, late.text) == (Urgency.LATE, "已超时 2 小时")
    assert Urgency.LATE.label == "超时" and Urgency.SOON.label == "临期"


def test_a_ticket_turns_amber_then_red_as_the_clock_moves(
    console: App, clock: MovableClock
) -> None:
    me = person(console, "张敏", "市场监管局")
    clock.set(at(26))  # Thursday: contact due at the end of Monday 30th
    view = ticket(console)
    clock.set(at(27, 23))
    [row] = queue_of(console).page(me).rows
    assert (row.number, row.urgency, row.countdown and row.countdown.kind) == (
        view.number, Urgency.OK, ClockKind.CONTACT,
    )  # fmt: skip
    clock.set(at(28, 9))  # Saturday morning: only Monday is left
    [row] = queue_of(console).page(me).rows
    assert row.urgency is Urgency.SOON and row.countdown and row.countdown.text == "剩 1 个工作日"
    clock.set(datetime(2026, 12, 1, 9, 0, tzinfo=SHANGHAI))
    [row] = queue_of(console).page(me).rows
    assert row.urgency is Urgency.LATE and row.countdown and row.countdown.text == "已超时 9 小时"


# -------------------------------------------------------------------------- ordering


def test_open_tickets_first_nearest_deadline_first(console: App, clock: MovableClock) -> None:
    me = person(console, "张敏", "市场监管局")
    accepted = ticket(console, "一 已签收，办结时限 12月2日", state=TicketState.ACCEPTED)
    clock.advance(hours=1)
    first = ticket(console, "二 对接时限 11月25日")
    clock.advance(days=1)
    second = ticket(console, "三 对接时限 11月26日")
    done = ticket(console, "四 已反馈", state=TicketState.FEEDBACK_SENT)
    clock.advance(days=1)
    resolved = ticket(console, "五 已办结，反馈时限 11月27日", state=TicketState.RESOLVED)
    assert numbers(console, me) == [
        first.number, second.number, resolved.number, accepted.number, done.number,
    ]  # fmt: skip
    page = queue_of(console).page(me)
    assert page.total == 5 and page.rows[-1].countdown is None
    assert [r.countdown.kind for r in page.rows[:4] if r.countdown] == [
        ClockKind.CONTACT, ClockKind.CONTACT, ClockKind.FEEDBACK, ClockKind.DONE,
    ]  # fmt: skip


def test_paging(console: App, clock: MovableClock) -> None:
    me = person(console, "张敏", "市场监管局")
    made = []
    for i in range(5):
        made.append(ticket(console, f"诉求 {i}").number)
        clock.advance(minutes=10)
    one = queue_of(console).page(me, QueueFilter(page_size=2))
    three = queue_of(console).page(me, QueueFilter(page_size=2, page=3))
    assert (one.total, one.pages, [r.number for r in one.rows]) == (5, 3, made[:2])
    assert [r.number for r in three.rows] == made[4:]


# --------------------------------------------------------------------- filters, search


def test_each_filter_and_search(console: App, clock: MovableClock) -> None:
    me = person(console, "张敏", "市场监管局")
    uscc = enterprise(console, 7, "天津港远航物流有限公司")
    old = ticket(console, "冷库用电增容申请", uscc=uscc, source="phone")
    clock.advance(days=3)  # Thursday: the first ticket's contact clock ran out Wednesday
    mine = ticket(console, "营业执照地址变更", commissioner_id=me.id, state=TicketState.ACCEPTED)
    helped = ticket(console, "园区路灯维修", department="城环局", source="hotline_12345")
    console.tickets.add_helpers(helped.number, departments=["市场监管局"], actor="测试员")
    other = ticket(console, "出口退税咨询", department="商务局")

    assert set(numbers(console, me)) == {old.number, mine.number, helped.number}
    assert other.number not in numbers(console, me)
    assert numbers(console, me, states=(TicketState.ACCEPTED,)) == [mine.number]
    assert numbers(console, me, overdue=True) == [old.number]
    assert numbers(console, me, mine=True) == [mine.number]
    assert numbers(console, me, cohandling=True) == [helped.number]
    from handoff.models import TicketSource

    assert numbers(console, me, source=TicketSource.HOTLINE) == [helped.number]
    assert numbers(console, me, text=old.number.lower()) == [old.number]
    assert numbers(console, me, text="远航物流") == [old.number]
    assert numbers(console, me, text=uscc) == [old.number]
    assert numbers(console, me, text="路灯") == [helped.number]
    assert numbers(console, me, text="100%") == []
    assert numbers(console, me, text="出口退税") == []  # another department's, out of scope
    [row] = queue_of(console).page(me, QueueFilter(cohandling=True)).rows
    assert row.helping and row.department == "城环局"


def test_scope_other_department_hidden_oversight_sees_all(console: App) -> None:
    me = person(console, "张敏", "市场监管局")
    boss = person(console, "周静", "政务办", CommissionerRole.OVERSIGHT)
    admin = person(console, "管理", "政务办", CommissionerRole.ADMIN)
    ours = ticket(console)
    theirs = ticket(console, "出口退税咨询", department="商务局")
    assert numbers(console, me) == [ours.number]
    assert set(numbers(console, boss)) == {ours.number, theirs.number}
    assert numbers(console, admin) == []


def test_waiting_requests_for_my_department(console: App) -> None:
    me = person(console, "张敏", "市场监管局")
    boss = person(console, "周静", "政务办", CommissionerRole.OVERSIGHT)
    ours = waiting_request(console)
    theirs = waiting_request(console, "商务局")
    queue = queue_of(console)
    assert [w.id for w in queue.waiting(me)] == [ours]
    assert [w.id for w in queue.waiting(boss)] == [ours, theirs]
    assert queue.waiting(me)[0].who == "王经理"
    before = queue.version(me)
    with console.db.begin() as session:
        row = session.get(LiveHandoff, ours)
        assert row is not None
        row.state = LiveHandoffState.ACTIVE
    assert queue.waiting(me) == [] and queue.version(me).token != before.token


# ------------------------------------------------------------------------------ HTTP


@pytest.fixture
def server(console: App) -> Iterator[LiveServer]:
    asgi = create_asgi(console, [], ServerOptions(run_worker=False, run_tick=False))
    with LiveServer(asgi) as live:
        yield live


def signed_in(app: App, name: str, department: str, **kw: Any) -> tuple[Commissioner, str]:
    who = person(app, name, department, **kw)
    app.accounts.set_password(who.id, PASSWORD)
    return who, app.accounts.sign_in(name, PASSWORD, department=department).token


def http(server: LiveServer, token: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, follow_redirects=False)
    client.cookies.set("yxby_console", token, path="/console")
    return client


def test_the_page_lists_rows_waiting_on_top_and_filters(console: App, server: LiveServer) -> None:
    _, token = signed_in(console, "张敏", "市场监管局")
    uscc = enterprise(console, 8, "天津示例科技有限公司")
    t = ticket(console, "营业执照地址变更", uscc=uscc, source="phone")
    hidden = ticket(console, "出口退税咨询", department="商务局")
    handoff = waiting_request(console)
    with http(server, token) as client:
        page = client.get("/console/")
        assert page.status_code == 200
        html = page.text
        assert "工作台" in html and "张敏，您好" in html
        assert f'href="/console/tickets/{t.number}"' in html and hidden.number not in html
        assert "天津示例科技有限公司" in html and "电话" in html and "未指定" in html
        assert "待签收" in html and "剩 2 个工作日 14 小时" in html
        assert html.index(f"/console/live/{handoff}") < html.index(t.number)
        assert '<script src="/static/queue.js" defer>' in html and "<style" not in html
        assert t.number not in client.get("/console/?state=accepted").text
        assert t.number in client.get("/console/?state=待签收").text
        bad = client.get("/console/?state=nonsense&source=phone")
        assert "未知的工单状态" in bad.text and t.number in bad.text
        assert t.number not in client.get("/console/?source=visit").text
        assert t.number in client.get("/console/", params={"q": "示例科技"}).text
        assert client.get("/console").status_code == 307
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/console/queue.json").headers["location"].startswith("/console/login")


def test_the_feed_says_what_changed(console: App, server: LiveServer) -> None:
    _, token = signed_in(console, "张敏", "市场监管局")
    first = ticket(console)
    with http(server, token) as client:
        body = client.get("/console/queue.json").json()
        assert body["changed"] and first.number in body["html"]["rows"]
        version, top = body["version"], body["max_id"]
        quiet = client.get("/console/queue.json", params={"v": version, "max": top}).json()
        assert quiet == {"version": version, "max_id": top, "waiting": [], "changed": False}
        second = ticket(console, "新的诉求：厂房消防验收")
        handoff = waiting_request(console)
        news = client.get("/console/queue.json", params={"v": version, "max": top}).json()
        assert news["changed"] and news["new"] == 1 and news["waiting"] == [handoff]
        assert second.number in news["html"]["rows"] and "共 2 条诉求" in news["html"]["summary"]
        assert f"/console/live/{handoff}" in news["html"]["waiting"]
        only = client.get("/console/queue.json", params={"state": "accepted", "full": "1"}).json()
        assert "暂无诉求" not in only["html"]["rows"] and "没有符合条件" in only["html"]["rows"]


# --------------------------------------------------------------------------- browser


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    try:
        yield context.new_page()
    finally:
        context.close()


def start_signed_in(page: Any, server: LiveServer, token: str) -> None:
    page.context.add_cookies(
        [{"name": "yxby_console", "value": token, "url": f"{server.url}/console/"}]
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_browser_sees_a_new_ticket_and_a_waiting_request_without_reload(
    console: App, server: LiveServer, page: Any
) -> None:
    _, token = signed_in(console, "张敏", "市场监管局")
    first = ticket(console)
    start_signed_in(page, server, token)
    page.goto(f"{server.url}/console/")
    assert page.get_by_role("heading", name="工作台").is_visible()
    assert page.get_by_role("link", name=first.number).is_visible()
    page.evaluate("window.__same_page = true")
    page.get_by_role("button", name="开启声音提醒").click()
    assert page.get_by_role("button", name="声音提醒已开启").get_attribute("aria-pressed") == "true"
    assert page.get_attribute("#queue", "data-rang") == "1"  # a test tone on switching it on

    second = ticket(console, "新的诉求：厂房消防验收")
    handoff = waiting_request(console)
    page.get_by_role("link", name=second.number).wait_for(timeout=15_000)
    assert page.evaluate("window.__same_page") is True  # no reload happened
    assert "新增 1 条诉求" in page.get_by_role("status").first.text_content()
    live = page.get_by_role("link", name="接入对话")
    assert live.get_attribute("href") == f"/console/live/{handoff}"
    assert "等待接入" in page.title()
    eventually(lambda: page.get_attribute("#queue", "data-rang") == "2", timeout=5)
    row = page.locator(f'tr:has(a:text-is("{second.number}"))')
    assert "fresh" in (row.get_attribute("class") or "")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_queue_screenshot(
    console: App, server: LiveServer, page: Any, clock: MovableClock, tmp_path: Path
) -> None:
    """A realistic handful at 1366×768 (docs/console/queue.png when YXBY_UPDATE_SCREENSHOTS)."""
    me, _ = signed_in(console, "张敏", "市场监管局")
    names = [
        "天津港远航物流有限公司",
        "滨海新材料科技有限公司",
        "保税区恒信国际贸易有限公司",
        "津港冷链供应链管理有限公司",
        "海河智能装备制造有限公司",
        "天津示例餐饮店",
    ]
    uscc = [enterprise(console, 20 + i, n) for i, n in enumerate(names)]
    clock.set(at(18, 9, 30))
    late = ticket(console, "冷库用电增容申请长期未答复，影响进口冷链货物存储", uscc=uscc[3],
                  source="hotline_12345")  # fmt: skip
    clock.set(at(20, 15))
    ticket(console, "进口设备减免税政策咨询，需要专人对接", uscc=uscc[2], source="wechat",
           commissioner_id=me.id, state=TicketState.IN_PROGRESS)  # fmt: skip
    clock.set(at(23, 8, 40))
    ticket(console, "营业执照经营范围变更，增加医疗器械销售", uscc=uscc[1], source="phone")
    clock.set(at(23, 9, 20))
    helped = ticket(console, "园区道路路灯损坏，夜间运输车辆进出存在安全隐患", department="城环局",
                    uscc=uscc[0], source="portal")  # fmt: skip
    console.tickets.add_helpers(helped.number, departments=["市场监管局"], actor="李强")
    clock.set(at(16, 10))
    ticket(console, "食品经营许可证延续办理进度查询", uscc=uscc[5], source="visit",
           state=TicketState.RESOLVED)  # fmt: skip
    clock.set(at(25, 16, 50))  # Wednesday afternoon
    ticket(console, "申请高新技术企业认定的材料清单", uscc=uscc[4], source="shuangwan",
           commissioner_id=me.id, state=TicketState.ACCEPTED)  # fmt: skip
    clock.set(at(25, 17, 2))
    waiting_request(console, question="报关单修改后税款如何退还？想请专员直接说明")
    token = console.accounts.sign_in("张敏", PASSWORD, department="市场监管局").token
    start_signed_in(page, server, token)
    page.goto(f"{server.url}/console/")
    assert page.get_by_role("link", name=late.number).is_visible()
    assert page.locator("tr.u-late").count() >= 1 and page.locator("tr.u-soon").count() >= 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    shot = tmp_path / "queue.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 0
    if os.environ.get(SHOTS_ENV):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / "queue.png")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_queue_at_150_percent_zoom_and_by_keyboard(
    console: App, server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    _, token = signed_in(console, "张敏", "市场监管局")
    t = ticket(console)
    waiting_request(console)
    context = browser.new_context(
        viewport={"width": 911, "height": 512}, device_scale_factor=1.5, locale="zh-CN"
    )  # 1366×768 at 150 %
    try:
        page = context.new_page()
        start_signed_in(page, server, token)
        page.goto(f"{server.url}/console/")
        assert page.evaluate("document.documentElement.scrollWidth") <= 911
        page.screenshot(path=str(tmp_path / "queue-150.png"))
        page.keyboard.press("Tab")  # skip the brand: the first stops are the nav links
        for _ in range(12):
            if page.evaluate("document.activeElement.textContent") == "接入对话":
                break
            page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.getAttribute('href')").startswith(
            "/console/live/"
        )
        page.get_by_label("搜索").focus()
        page.keyboard.type(t.number)
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/console/?*q={t.number}*")
        assert page.get_by_role("link", name=t.number).is_visible()
    finally:
        context.close()
