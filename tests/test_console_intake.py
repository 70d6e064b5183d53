"""登记诉求 over real HTTP: a need from the phone, 12345 … filed as a routed ticket with the
chat's clocks, its enterprise told the number through its chat (or the page saying to phone
it), the form kept with its errors; and in Chromium: sign in, record a phone intake, land on
the ticket."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.app import App
from bot.console.auth import SESSION_COOKIE
from bot.server import ServerOptions, create_asgi
from handoff import audit
from handoff.accounts import Accounts, Argon2Settings, ConsoleSettings, SignedIn
from handoff.intake import INTAKE_ACTION, PROVISIONAL_TAG
from handoff.models import (
    ChannelIdentity,
    ClockKind,
    CommissionerRole,
    Enterprise,
    EnterpriseKind,
    Ticket,
    TicketSource,
)
from handoff.registry import add_commissioner, find_enterprise
from tests.chatting import Chat, count
from tests.conftest import MovableClock, make_uscc
from tests.servers import LiveServer
from yxby import paths

PASSWORD = "gangkou-2026!"
CHEAP = ConsoleSettings(argon2=Argon2Settings(time_cost=1, memory_kib=64, parallelism=1))
SCREENSHOTS = paths.PROJECT_ROOT / "docs" / "console"
NUMBER = re.compile(r"/console/tickets/(YX-\d{8}-\d{4})$")
LICENCE_NEED = "我公司想变更营业执照的经营范围，需要准备哪些材料，多久能办好？"


# ----------------------------------------------------------------------------- helpers


def person(
    app: App,
    name: str,
    department: str,
    role: CommissionerRole = CommissionerRole.COMMISSIONER,
) -> SignedIn:
    """Register *name* with a console password and sign them in."""
    with app.db.begin() as session:
        row = add_commissioner(
            session, name=name, department=department, role=role,
            departments=app.router.departments,
        )  # fmt: skip
        person_id = row.id
    app.accounts.set_password(person_id, PASSWORD)
    return app.accounts.sign_in(name, PASSWORD, department=department)


def http_for(live: LiveServer, signed: SignedIn | None = None) -> httpx.Client:
    """A client of *live* (signed in as *signed* when given); redirects not followed."""
    http = httpx.Client(base_url=live.url, follow_redirects=False)
    if signed is not None:
        http.cookies.set(SESSION_COOKIE, signed.token, domain="127.0.0.1", path="/console")
    return http


def enterprise(
    app: App, seq: int, name: str, *, industry: str | None = None, commissioner: int | None = None
) -> str:
    """Register an enterprise; returns its USCC."""
    code = make_uscc(seq)
    with app.db.begin() as session:
        session.add(
            Enterprise(
                uscc=code, name=name, kind=EnterpriseKind.ENTERPRISE,
                industry=industry, tags=["重点企业"], commissioner_id=commissioner,
                created_at=app.clock(), updated_at=app.clock(),
            )
        )  # fmt: skip
    return code


def link_chat(app: App, chat: Chat, uscc: str, **values: Any) -> int:
    """Say hello from *chat* (so it has an identity) and link it to the enterprise *uscc*."""
    chat.send("你好")
    chat.pushes()
    with app.db.begin() as session:
        identity = session.scalars(
            select(ChannelIdentity).where(
                ChannelIdentity.channel == chat.channel, ChannelIdentity.user_key == chat.user_key
            )
        ).one()
        found = find_enterprise(session, uscc)
        assert found is not None
        identity.enterprise_id = found.id
        for key, value in values.items():
            setattr(identity, key, value)
        return identity.id


def intake_form(signed: SignedIn, **fields: str) -> dict[str, str]:
    form = {
        "csrf": signed.staff.csrf,
        "source": TicketSource.PHONE.value,
        "enterprise": "",
        "enterprise_name": "",
        "phone": "13800138000",
        "description": LICENCE_NEED,
        "department": "",
        "reason": "",
        "step": "file",
    }
    form.update(fields)
    return form


def filed_number(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:2000]
    found = NUMBER.search(response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


def ticket_row(app: App, number: str) -> Ticket:
    with app.db.sessions() as session:
        row = session.scalars(select(Ticket).where(Ticket.number == number)).one()
        _ = (row.clocks, row.events, row.enterprise)
        session.expunge_all()
        return row


# ----------------------------------------------------------------------------- fixtures


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
def zhang(console: App) -> SignedIn:
    return person(console, "张敏", "市场监管局")


@pytest.fixture
def client(live: LiveServer, zhang: SignedIn) -> Iterator[httpx.Client]:
    with http_for(live, zhang) as http:
        yield http


# ----------------------------------------------------------------------------- HTTP


def test_the_form_offers_the_sources_and_no_inline_script(client: httpx.Client) -> None:
    page = client.get("/console/intake")
    assert page.status_code == 200
    for label in ("电话", "12345转办", "双万双服", "主任信箱", "门户网站", "走访来访"):
        assert f">{label}</option>" in page.text
    assert "微信公众号</option>" not in page.text  # chats file their own tickets
    assert "<script>" not in page.text and "style=" not in page.text
    assert "判断承办部门" in page.text and 'name="csrf"' in page.text


def test_a_phone_intake_is_routed_like_a_chat_ticket_and_says_to_phone_the_number(
    client: httpx.Client, console: App, zhang: SignedIn, clock: MovableClock
) -> None:
    uscc = enterprise(console, 1, "天津港保税区示例贸易有限公司", industry="批发和零售业")
    response = client.post("/console/intake", data=intake_form(zhang, enterprise=uscc))
    number = filed_number(response)
    ticket = ticket_row(console, number)
    assert ticket.source is TicketSource.PHONE
    assert ticket.enterprise is not None and ticket.enterprise.uscc == uscc
    assert ticket.channel_identity_id is None
    # the same routing as the chat: the need (营业执照) decides, whatever the industry
    expected = console.router.route_text(LICENCE_NEED)
    assert ticket.department == "市场监管局"
    assert ticket.route_rule in {"knowledge", "topic"} and ticket.route_reason
    assert expected.department == ticket.department
    assert "13800138000" in ticket.description
    # the same clocks as any ticket created at this moment
    reference = console.tickets.create(
        "对照工单", department=ticket.department, rule="topic", reason="对照", actor="测试"
    )
    due = {c.kind: c.due_at for c in ticket.clocks}
    assert due[ClockKind.CONTACT] == reference.clock(ClockKind.CONTACT).due_at  # type: ignore[union-attr]
    assert due[ClockKind.DONE] == reference.clock(ClockKind.DONE).due_at  # type: ignore[union-attr]
    assert ticket.events[0].actor == "张敏"
    # audited, and the page says to tell the number by phone
    with console.db.sessions() as session:
        (event,) = audit.recent(session, action=INTAKE_ACTION)
        assert event.ticket_number == number and event.actor == "张敏"
        assert event.detail["told"] == "phone" and event.detail["source"] == "phone"
    page = client.get("/console/intake")
    assert "企业无对话渠道，请电话告知编号" in page.text and number in page.text


def test_an_enterprise_with_a_chat_gets_the_ticket_and_hears_its_number(
    client: httpx.Client, console: App, zhang: SignedIn, clock: MovableClock
) -> None:
    uscc = enterprise(console, 2, "天津示例物流有限公司", industry="交通运输、仓储和邮政业")
    older = Chat(console, "old-user")
    newer = Chat(console, "new-user")
    link_chat(console, older, uscc)
    clock.advance(minutes=5)
    newer_id = link_chat(console, newer, uscc)
    clock.advance(minutes=5)
    signed = zhang
    form = intake_form(
        signed,
        enterprise="天津示例物流有限公司",
        source=TicketSource.HOTLINE.label,
        phone="022-12345678",
        description="园区道路路灯损坏三个月无人维修，夜间运输车辆进出存在安全隐患",
    )
    preview = client.post("/console/intake", data={**form, "step": "route"})
    assert preview.status_code == 200
    assert "已关联终端对话对话" in preview.text or "已关联终端对话" in preview.text
    number = filed_number(client.post("/console/intake", data=form))
    ticket = ticket_row(console, number)
    assert ticket.source is TicketSource.HOTLINE
    assert ticket.channel_identity_id == newer_id  # the most recently active chat
    (pushed,) = newer.pushes()
    assert number in pushed.text and "12345转办" in pushed.text
    assert ticket.department in pushed.text
    assert older.pushes() == []
    # the chat now knows the ticket as its own
    assert number in newer.send("查询")
    with console.db.sessions() as session:
        (event,) = audit.recent(session, action=INTAKE_ACTION)
        assert event.detail["told"] == "chat"
    assert "已通过对话告知企业编号" in client.get("/console/intake").text


def test_an_unknown_code_with_a_name_files_the_enterprise(
    client: httpx.Client, console: App, zhang: SignedIn
) -> None:
    code = make_uscc(777)
    signed = zhang
    missing = client.post("/console/intake", data=intake_form(signed, enterprise=code))
    assert missing.status_code == 400
    assert "企业库中没有这个统一社会信用代码，请填写企业名称" in missing.text
    number = filed_number(
        client.post(
            "/console/intake",
            data=intake_form(
                signed,
                enterprise=code,
                enterprise_name="天津新设示例有限公司",
                source=TicketSource.VISIT.value,
            ),
        )
    )
    ticket = ticket_row(console, number)
    assert ticket.source is TicketSource.VISIT
    assert ticket.enterprise is not None
    assert ticket.enterprise.name == "天津新设示例有限公司"
    assert ticket.enterprise.tags == [PROVISIONAL_TAG]


def test_errors_are_shown_next_to_their_fields_and_nothing_is_lost(
    client: httpx.Client, console: App, zhang: SignedIn
) -> None:
    signed = zhang
    form = intake_form(signed, enterprise="91120116ABCDEFGHIJ", phone="12345",
                       description="太短", source="shuangwan")  # fmt: skip
    response = client.post("/console/intake", data=form)
    assert response.status_code == 400
    html = response.text
    assert 'id="err-enterprise"' in html
    assert "校验位错误" in html or "不允许的字符" in html
    assert 'id="err-phone"' in html and "不是有效的电话号码" in html
    assert 'id="err-description"' in html and "至少 5 个字" in html
    assert 'value="91120116ABCDEFGHIJ"' in html and 'value="12345"' in html
    assert ">太短</textarea>" in html
    assert '<option value="shuangwan" selected>' in html
    assert count(console, Ticket) == 0
    unknown = client.post("/console/intake", data=intake_form(signed, enterprise="没有这家公司"))
    assert unknown.status_code == 400 and "企业库中没有名称为「没有这家公司」的企业" in unknown.text


def test_choosing_another_department_needs_a_reason_and_is_recorded_as_manual(
    client: httpx.Client, console: App, zhang: SignedIn
) -> None:
    uscc = enterprise(console, 3, "天津示例制造有限公司")
    signed = zhang
    form = intake_form(signed, enterprise=uscc, department="商务局")
    refused = client.post("/console/intake", data=form)
    assert refused.status_code == 400 and "改派到其他部门时，请写明理由" in refused.text
    assert '<option value="商务局" selected>' in refused.text
    number = filed_number(
        client.post(
            "/console/intake", data={**form, "reason": "企业同时申请外贸资质，由商务局牵头"}
        )
    )
    ticket = ticket_row(console, number)
    assert ticket.department == "商务局" and ticket.route_rule == "manual"
    assert (
        "企业同时申请外贸资质" in ticket.route_reason
        and "系统建议市场监管局" in ticket.route_reason
    )
    # choosing the suggested department is no override
    same = filed_number(
        client.post(
            "/console/intake",
            data=intake_form(signed, enterprise=uscc, department="市场监督管理局"),
        )
    )
    assert ticket_row(console, same).route_rule != "manual"


def test_the_route_step_shows_the_suggestion_without_filing(
    client: httpx.Client, console: App, zhang: SignedIn
) -> None:
    uscc = enterprise(console, 4, "天津示例科技有限公司")
    signed = zhang
    page = client.post("/console/intake", data=intake_form(signed, enterprise=uscc, step="route"))
    assert page.status_code == 200
    assert "承办部门建议" in page.text and "市场监管局" in page.text
    assert "该企业没有关联的对话渠道：登记后请电话告知企业诉求编号（13800138000）" in page.text
    assert f'href="/console/enterprises/{uscc}"' in page.text
    assert count(console, Ticket) == 0


def test_an_admin_may_not_record_and_a_post_needs_the_csrf_token(
    live: LiveServer, console: App, zhang: SignedIn
) -> None:
    admin = person(console, "周静", "政务办", CommissionerRole.ADMIN)
    with http_for(live, admin) as http:
        assert http.get("/console/intake").status_code == 403
        posted = http.post("/console/intake", data=intake_form(admin, enterprise=make_uscc(5)))
        assert posted.status_code == 403
    with http_for(live, zhang) as http:
        form = intake_form(zhang, enterprise=make_uscc(5), enterprise_name="某公司")
        del form["csrf"]
        assert http.post("/console/intake", data=form).status_code == 403
    with http_for(live) as anonymous:
        assert anonymous.get("/console/intake").status_code == 303
    assert count(console, Ticket) == 0


def test_a_12345_operator_account_records_for_any_department(
    live: LiveServer, console: App
) -> None:
    operator = person(console, "王接线", "政务办")
    uscc = enterprise(console, 6, "天津示例餐饮有限公司")
    with http_for(live, operator) as http:
        form = intake_form(operator, enterprise=uscc, source=TicketSource.HOTLINE.value)
        number = filed_number(http.post("/console/intake", data=form))
    assert ticket_row(console, number).department == "市场监管局"


# ---------------------------------------------------------------------------- browser


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    try:
        yield context.new_page()
    finally:
        context.close()


def save_screenshot(page: Any, tmp_path: Path, name: str) -> None:
    """Shoot the page (to docs/console/*name* when ``YXBY_UPDATE_SCREENSHOTS`` is set)."""
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 0
    if os.environ.get("YXBY_UPDATE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / name)


def test_browser_records_a_phone_intake_and_lands_on_the_ticket(
    page: Any, live: LiveServer, console: App, tmp_path: Path
) -> None:
    person(console, "李娜", "市场监管局")
    uscc = enterprise(console, 8, "天津港保税区示例贸易有限公司", industry="批发和零售业")
    page.goto(f"{live.url}/console/intake")
    page.get_by_label("姓名").fill("李娜")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{live.url}/console/intake")
    page.get_by_label("诉求来源").select_option(label="电话")
    page.get_by_label("统一社会信用代码或企业名称").fill(uscc)
    page.get_by_label("联系电话").fill("138 0013 8000")
    page.get_by_label("诉求内容").fill(LICENCE_NEED)
    page.get_by_role("button", name="判断承办部门").click()
    page.wait_for_load_state()
    suggestion = page.locator(".suggested-department")
    assert suggestion.text_content() == "市场监管局"
    assert "请电话告知企业诉求编号" in page.text_content("aside")
    assert page.get_by_label("诉求内容").input_value() == LICENCE_NEED  # kept
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    save_screenshot(page, tmp_path, "intake.png")
    page.get_by_role("button", name="登记诉求").click()
    page.wait_for_url(re.compile(r".*/console/tickets/YX-\d{8}-\d{4}$"))
    number = page.url.rsplit("/", 1)[1]
    ticket = ticket_row(console, number)
    assert ticket.source is TicketSource.PHONE and ticket.department == "市场监管局"
