"""The live conversation in the console over real HTTP (take, send, end, scope, CSRF, the
event stream), and end to end in Chromium with a WeChat user writing through ``/wechat``.

Each test runs on SQLite, and on PostgreSQL when ``YXBY_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.app import App
from bot.channels.wechat import WeChatAdapter
from bot.console.auth import SESSION_COOKIE
from bot.server import ServerOptions, create_asgi
from handoff import audit
from handoff.accounts import Accounts
from handoff.conversations import LiveHandoff, LiveHandoffState
from handoff.models import CommissionerBinding, CommissionerRole, Direction, TranscriptLine
from tests.chatting import Chat, count
from tests.conftest import MovableClock
from tests.fakes.wechat_api import FakeWeChatApi
from tests.servers import LiveServer, eventually
from tests.test_console_auth import CHEAP, PASSWORD, SCREENSHOTS, register
from tests.test_wechat import APPID, OPENID, SECRET, WeChatSide, make_config

QUESTION = "营业执照变更需要什么材料"


# ----------------------------------------------------------------------------- harness


@pytest.fixture
def console(app: App) -> App:
    """The app with cheap password hashes and console-only staff (no chat account at all):
    张敏 and 李娜 of 市场监管局, 王磊 of 商务局, 周静 of 政务办 (overseer)."""
    app.accounts = Accounts(app.db.sessions, app.clock, CHEAP)
    register(app, "张敏", "市场监管局", password=PASSWORD)
    register(app, "李娜", "市场监管局", password=PASSWORD)
    register(app, "王磊", "商务局", password=PASSWORD)
    register(app, "周静", "政务办", role=CommissionerRole.OVERSIGHT, password=PASSWORD)
    return app


@pytest.fixture
def server(console: App) -> Iterator[LiveServer]:
    asgi = create_asgi(console, [], ServerOptions(run_worker=False, run_tick=False))
    with LiveServer(asgi) as live:
        yield live


@pytest.fixture
def signed_in(console: App, server: LiveServer) -> Iterator[Callable[[str], Staffer]]:
    """``signed_in("张敏")``: an HTTP client with that person's session and form token."""
    with contextlib.ExitStack() as stack:

        def make(name: str) -> Staffer:
            result = console.accounts.sign_in(name, PASSWORD)
            http = stack.enter_context(
                httpx.Client(base_url=server.url, follow_redirects=False, timeout=10)
            )
            http.cookies.set(SESSION_COOKIE, result.token, path="/console")
            return Staffer(http, result.staff.csrf)

        yield make


class Staffer:
    """A signed-in console user over HTTP."""

    def __init__(self, http: httpx.Client, csrf: str) -> None:
        self.http = http
        self.csrf = csrf

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def post(self, path: str, **form: str) -> httpx.Response:
        return self.http.post(path, data={"csrf": self.csrf, **form})


@pytest.fixture
def enterprise(console: App) -> Chat:
    """An enterprise user on the terminal channel."""
    return Chat(console, "user-1")


def ask_for_person(chat: Chat) -> int:
    chat.send(QUESTION)
    assert "市场监管局的企业服务专员" in chat.send("转人工")
    with chat.app.db.sessions() as session:
        return session.scalars(select(LiveHandoff.id).order_by(LiveHandoff.id.desc())).first() or 0


def handoff_state(app: App, handoff_id: int) -> LiveHandoffState:
    with app.db.sessions() as session:
        handoff = session.get(LiveHandoff, handoff_id)
        assert handoff is not None
        return handoff.state


def texts(chat: Chat) -> list[str]:
    return [r.text for r in chat.pushes()]


def audited(app: App, action: str) -> list[audit.AuditEvent]:
    with app.db.sessions() as session:
        rows = audit.recent(session, action=action)
        session.expunge_all()
        return rows


# ------------------------------------------------------------------------------- HTTP


def test_a_department_reachable_only_in_the_console_gets_the_request(
    console: App, enterprise: Chat
) -> None:
    assert count(console, CommissionerBinding) == 0  # nobody has a chat account
    handoff_id = ask_for_person(enterprise)
    assert handoff_state(console, handoff_id) is LiveHandoffState.WAITING


def test_the_list_shows_requests_in_scope(
    signed_in: Callable[[str], Staffer], enterprise: Chat
) -> None:
    handoff_id = ask_for_person(enterprise)
    link = f'href="/console/live/{handoff_id}"'
    mine = signed_in("张敏").get("/console/live")
    assert mine.status_code == 200
    assert "等待接入的人工请求" in mine.text and link in mine.text
    assert "营业执照变更" in mine.text  # the question
    assert link in signed_in("周静").get("/console/live").text  # 政务办 sees every department
    other = signed_in("王磊").get("/console/live")
    assert other.status_code == 200 and link not in other.text
    assert "目前没有等待接入的请求" in other.text


def test_take_send_and_end_reach_the_enterprise_as_in_the_chat(
    console: App, signed_in: Callable[[str], Staffer], enterprise: Chat
) -> None:
    handoff_id = ask_for_person(enterprise)
    zhang = signed_in("张敏")
    early = zhang.post(f"/console/live/{handoff_id}/end")
    assert early.status_code == 409 and "该请求尚未接入" in early.text
    page = zhang.get(f"/console/live/{handoff_id}")
    assert page.status_code == 200
    assert "营业执照变更需要什么材料" in page.text and "接入</button>" in page.text
    assert 'name="text"' not in page.text  # no message box before 接入

    taken = zhang.post(f"/console/live/{handoff_id}/take")
    assert taken.status_code == 303
    assert taken.headers["location"] == f"/console/live/{handoff_id}?done=taken"
    assert handoff_state(console, handoff_id) is LiveHandoffState.ACTIVE
    assert "企业服务专员张敏（市场监管局）已接入，您可以直接和专员沟通。" in texts(enterprise)
    page = zhang.get(taken.headers["location"])
    assert "您已接入对话" in page.text and 'name="text"' in page.text
    assert "结束对话" in page.text

    sent = zhang.post(f"/console/live/{handoff_id}/send", text="您好，请问变更的是哪一项登记事项？")
    assert sent.status_code == 303
    assert texts(enterprise) == ["【张敏（市场监管局）】您好，请问变更的是哪一项登记事项？"]

    assert enterprise.send("法定代表人变更") == ""  # relayed, the bot stays quiet
    with console.db.sessions() as session:
        lines = session.scalars(
            select(TranscriptLine.text).where(TranscriptLine.direction == Direction.IN)
        ).all()
    assert lines.count("法定代表人变更") == 1  # recorded once, though nobody has a chat account
    html = zhang.get(f"/console/live/{handoff_id}").text
    assert "法定代表人变更" in html
    staff_line = re.search(r'class="line line-staff".*?</li>', html, re.DOTALL)
    assert staff_line is not None  # shown as the commissioner's own line, named
    assert "张敏（市场监管局）" in staff_line.group(0)
    assert "】您好，请问变更的是哪一项登记事项？" not in staff_line.group(0)

    ended = zhang.post(f"/console/live/{handoff_id}/end")
    assert ended.status_code == 303 and ended.headers["location"].endswith("?done=ended")
    assert handoff_state(console, handoff_id) is LiveHandoffState.ENDED
    assert texts(enterprise) == ["专员已结束本次对话。如还有问题，可以继续向我提问。"]
    html = zhang.get(ended.headers["location"]).text
    assert "对话已结束" in html and 'name="text"' not in html
    again = zhang.post(f"/console/live/{handoff_id}/end")  # a second click changes nothing
    assert again.headers["location"].endswith("?done=over")
    late = zhang.post(f"/console/live/{handoff_id}/send", text="还在吗")
    assert late.status_code == 409 and "不在进行中" in late.text
    assert texts(enterprise) == []

    for action in ("live_take", "live_send", "live_end"):
        rows = audited(console, action)
        assert rows and rows[-1].actor == "张敏" and rows[-1].detail["handoff"] == handoff_id
    assert audited(console, "live_take")[0].detail["result"] == "taken"


def test_a_script_sends_with_the_header_token_and_gets_json(
    signed_in: Callable[[str], Staffer], enterprise: Chat
) -> None:
    handoff_id = ask_for_person(enterprise)
    zhang = signed_in("张敏")
    zhang.post(f"/console/live/{handoff_id}/take")
    enterprise.pushes()
    url = f"/console/live/{handoff_id}/send"
    headers = {"x-csrf-token": zhang.csrf, "accept": "application/json"}
    ok = zhang.http.post(url, data={"text": "请提供营业执照副本"}, headers=headers)
    assert ok.status_code == 200 and ok.json() == {"ok": True}
    empty = zhang.http.post(url, data={"text": "  "}, headers=headers)
    assert empty.status_code == 409 and empty.json()["error"] == "请输入要发送的内容。"
    too_long = zhang.http.post(url, data={"text": "长" * 2001}, headers=headers)
    assert "消息过长" in too_long.json()["error"]
    assert texts(enterprise) == ["【张敏（市场监管局）】请提供营业执照副本"]


def test_another_departments_request_is_404_on_every_url(
    console: App, signed_in: Callable[[str], Staffer], enterprise: Chat
) -> None:
    handoff_id = ask_for_person(enterprise)
    wang = signed_in("王磊")
    base = f"/console/live/{handoff_id}"
    for path in (base, f"{base}/events"):
        response = wang.get(path)
        assert response.status_code == 404 and "没有找到这个人工请求" in response.text
    for action in ("take", "send", "end"):
        response = wang.post(f"{base}/{action}", text="你好")
        assert response.status_code == 404
    assert wang.get("/console/live/999999").status_code == 404  # the same as a missing one
    assert handoff_state(console, handoff_id) is LiveHandoffState.WAITING
    assert audited(console, "live_take") == []


def test_posts_without_the_csrf_token_are_refused(
    console: App, signed_in: Callable[[str], Staffer], enterprise: Chat
) -> None:
    handoff_id = ask_for_person(enterprise)
    zhang = signed_in("张敏")
    for action in ("take", "send", "end"):
        response = zhang.http.post(f"/console/live/{handoff_id}/{action}", data={"text": "x"})
        assert response.status_code == 403 and "无法完成操作" in response.text
    forged = zhang.http.post(
        f"/console/live/{handoff_id}/take", data={"csrf": "0" * 64}, headers={"x-csrf-token": ""}
    )
    assert forged.status_code == 403
    assert handoff_state(console, handoff_id) is LiveHandoffState.WAITING


def test_a_chat_taken_by_a_colleague_says_who_has_it(
    console: App, signed_in: Callable[[str], Staffer], enterprise: Chat
) -> None:
    handoff_id = ask_for_person(enterprise)
    li, zhang = signed_in("李娜"), signed_in("张敏")
    assert li.post(f"/console/live/{handoff_id}/take").status_code == 303
    late = zhang.post(f"/console/live/{handoff_id}/take")
    assert late.status_code == 409
    assert "该对话已由李娜接入，无需重复接入。" in late.text
    assert "该对话由李娜接入，您只能查看。" in late.text and 'name="text"' not in late.text
    sent = zhang.post(f"/console/live/{handoff_id}/send", text="我来处理")
    assert sent.status_code == 409 and "该对话已由李娜接入，消息未发送。" in sent.text
    ended = zhang.post(f"/console/live/{handoff_id}/end")
    assert (
        ended.status_code == 409 and handoff_state(console, handoff_id) is LiveHandoffState.ACTIVE
    )
    assert not any("我来处理" in t for t in texts(enterprise))
    assert audited(console, "live_take")[0].detail["result"] == "taken_by_other"


def read_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse a Server-Sent Events body as it arrives."""
    event: dict[str, Any] = {}
    for raw in response.iter_lines():
        if raw == "":
            if "event" in event:
                yield event
            event = {}
        elif raw.startswith(":"):
            continue
        else:
            key, _, value = raw.partition(": ")
            event[key] = json.loads(value) if key == "data" else value


def test_the_event_stream_delivers_the_enterprises_messages(
    signed_in: Callable[[str], Staffer], enterprise: Chat
) -> None:
    handoff_id = ask_for_person(enterprise)
    zhang = signed_in("张敏")
    zhang.post(f"/console/live/{handoff_id}/take")
    page = zhang.get(f"/console/live/{handoff_id}").text
    found = re.search(r'data-last-id="(\d+)"', page)
    assert found
    last = found.group(1)
    url = f"/console/live/{handoff_id}/events"
    with zhang.http.stream("GET", url, params={"after": last}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response)
        state = next(events)
        assert state["event"] == "state"
        assert state["data"] == {"state": "active", "label": "对话中", "holder": "张敏",
                                 "mine": True}  # fmt: skip
        enterprise.send("我们的注册地址也要变更")
        line = next(events)
        assert line["event"] == "line" and line["data"]["kind"] == "enterprise"
        assert line["data"]["text"] == "我们的注册地址也要变更"
        assert int(line["id"]) > int(last)
        seen = line["id"]
    # a reconnect resumes after the last line it saw
    zhang.post(f"/console/live/{handoff_id}/send", text="好的，地址变更一并办理")
    headers = {"last-event-id": seen}
    with zhang.http.stream("GET", url, params={"after": last}, headers=headers) as response:
        events = read_events(response)
        first = next(events)
        assert first["event"] == "line" and first["data"]["kind"] == "staff"
        assert first["data"]["label"] == "张敏（市场监管局）"
        assert first["data"]["text"] == "好的，地址变更一并办理"
        assert next(events)["event"] == "state"
        enterprise.send("结束")  # the enterprise ends the chat: the stream says so and stops
        rest = list(events)
    assert [e["event"] for e in rest][-1] == "state"
    assert rest[-1]["data"]["state"] == "ended"


# ---------------------------------------------------------------------------- browser


@pytest.fixture
def wechat_console(
    console: App, clock: MovableClock
) -> Iterator[tuple[LiveServer, WeChatSide, FakeWeChatApi]]:
    """The real app with the WeChat channel (fake WeChat API) and the console."""
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(FakeWeChatApi(appid=APPID, secret=SECRET))
        adapter = WeChatAdapter(console, make_config(api))
        options = ServerOptions(run_tick=False, worker_interval=0.05)
        live = stack.enter_context(LiveServer(create_asgi(console, [adapter], options)))
        http = stack.enter_context(httpx.Client(base_url=live.url, timeout=10))
        yield live, WeChatSide(http, make_config(api).token, clock), api


def wechat_texts(api: FakeWeChatApi) -> list[str]:
    return api.texts(OPENID)


def wait_for_text(api: FakeWeChatApi, expected: str) -> None:
    eventually(lambda: expected in wechat_texts(api), timeout=10)


def wait_for_part(api: FakeWeChatApi, part: str) -> None:
    """Wait until a message the user received contains *part* (notices carry a link too)."""
    eventually(lambda: any(part in text for text in wechat_texts(api)), timeout=10)


def test_browser_live_chat_with_a_wechat_user(
    browser: Any,
    console: App,
    wechat_console: tuple[LiveServer, WeChatSide, FakeWeChatApi],
    clock: MovableClock,
    tmp_path: Path,
) -> None:
    live, wechat, api = wechat_console
    wechat.text(QUESTION)
    assert "正在为您联系市场监管局的企业服务专员" in (wechat.text("转人工") or "")

    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    try:
        page = context.new_page()
        page.goto(f"{live.url}/console/live")
        assert "/console/login" in page.url
        page.get_by_label("姓名").fill("张敏")
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(f"{live.url}/console/live")
        assert page.get_by_role("heading", name="等待接入的人工请求").is_visible()
        assert "营业执照变更需要什么材料" in page.text_content("main")
        page.get_by_role("button", name="接入").click()
        page.wait_for_url(re.compile(r"/console/live/\d+\?done=taken$"))
        assert page.get_by_role("status").first.text_content() == (
            "您已接入对话。企业发来的消息会即时显示在下方。"
        )
        wait_for_text(api, "企业服务专员张敏（市场监管局）已接入，您可以直接和专员沟通。")
        page.evaluate("window.stillHere = true")  # gone if the page reloads

        box = page.get_by_label("发给企业的消息")
        transcript = page.locator("#transcript")
        exchange = [
            ("您好，我是市场监管局的张敏。请问贵公司要变更哪一项登记事项？", False),
            ("我们要变更法定代表人，新的法定代表人需要本人到场吗？", True),
            ("不需要本人到场，可在市场主体登记全程电子化平台在线办理。", False),
            ("好的，需要准备哪些材料？", True),
            ("股东会决议、新任法定代表人的身份证明和任职文件。", False),
            ("明白了，谢谢！", True),
        ]
        for text, from_enterprise in exchange:
            clock.advance(minutes=1)
            if from_enterprise:
                assert wechat.text(text) is None  # relayed: WeChat gets "success"
                line = transcript.locator(".line-enterprise .line-text", has_text=text)
                line.wait_for(timeout=5000)  # arrives by the event stream, no reload
            else:
                box.fill(text)
                page.get_by_role("button", name="发送").click()
                transcript.locator(".line-staff .line-text", has_text=text).wait_for(timeout=5000)
                wait_for_text(api, f"【张敏（市场监管局）】{text}")
                assert box.input_value() == ""
        assert page.evaluate("window.stillHere") is True
        assert transcript.locator(".line-enterprise").count() >= 3
        names = transcript.locator(".line-enterprise .line-who").all_text_contents()
        assert set(names) == {f"微信用户{OPENID[-4:]}"}

        assert page.evaluate("document.documentElement.scrollWidth") <= 1366
        shot = tmp_path / "live.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 0
        if os.environ.get("YXBY_UPDATE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, SCREENSHOTS / "live.png")

        page.get_by_role("button", name="结束对话").click()
        page.wait_for_url(re.compile(r"\?done=ended$"))
        assert "对话已结束，企业已收到通知。" in page.text_content("main")
        assert page.get_by_label("发给企业的消息").count() == 0
        wait_for_text(api, "专员已结束本次对话。如还有问题，可以继续向我提问。")

        # the same user files the need as a ticket; the commissioner works it in the
        # browser (签收, 进度, 办结) and the enterprise rates it from WeChat: the closed loop
        wechat.text("提交诉求")
        wechat.text("我们要变更营业执照上的法定代表人，想请专员协助核对线上提交的材料是否齐全")
        wechat.text("天津示例贸易有限公司")
        wechat.text("13800138000")
        created = wechat.text("确认提交") or ""
        assert "诉求已登记，编号 YX-" in created, created
        number = re.search(r"YX-\d{8}-\d{4}", created).group(0)  # type: ignore[union-attr]
        page.goto(f"{live.url}/console/tickets/{number}")
        page.get_by_role("button", name="签收").click()
        page.wait_for_url("**?done=accept")
        wait_for_part(api, f"您的诉求 {number} 已由企业服务专员张敏（市场监管局）签收")
        page.locator("#act-progress > summary").click()
        page.locator("#progress-text").fill("材料已收到，正在核对，明天上午反馈")
        page.get_by_role("button", name="发送进度").click()
        page.wait_for_url("**?done=progress")
        wait_for_part(api, "材料已收到，正在核对，明天上午反馈")
        page.locator("#act-resolve > summary").click()
        page.locator("#resolve-text").fill("材料齐全，已指导企业在线提交变更登记")
        page.get_by_role("button", name="办结", exact=True).click()
        page.wait_for_url("**?done=resolve")
        wait_for_part(api, "材料齐全，已指导企业在线提交变更登记")
        assert "感谢您的评价" in (wechat.text("满意") or "")
        view = console.tickets.get(number)
        assert view.state.value == "surveyed" and view.surveys[-1].result.value == "满意"
        assert view.commissioner == "张敏"
    finally:
        context.close()
