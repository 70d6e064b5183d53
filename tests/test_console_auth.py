"""Console sign-in over real HTTP: the login form, cookies, CSRF, lockout, set-password links,
and the same in Chromium against the ASGI app under uvicorn."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette

from bot.app import App, AppSettings, build_app
from bot.console.auth import (
    FORM_COOKIE,
    SECURE_COOKIES_ENV,
    SESSION_COOKIE,
    accounts_for,
    auth_routes,
)
from bot.server import ServerOptions, create_asgi
from handoff import audit
from handoff.accounts import Accounts, Argon2Settings, ConsoleSettings
from handoff.audit import AuditAction
from handoff.models import CommissionerRole
from handoff.registry import add_commissioner
from tests.conftest import MovableClock
from tests.servers import LiveServer
from yxby import paths

if TYPE_CHECKING:
    from knowledge import KnowledgeBase

PASSWORD = "gangkou-2026!"
CHEAP = ConsoleSettings(argon2=Argon2Settings(time_cost=1, memory_kib=64, parallelism=1))
SCREENSHOTS = paths.PROJECT_ROOT / "docs" / "console"


def console_asgi(app: App) -> Starlette:
    """The real ASGI app of ``yxby serve`` (no channels, no background loops), with the
    sign-in routes added if ``bot.console.routes`` does not register them yet."""
    asgi = create_asgi(app, [], ServerOptions(run_worker=False, run_tick=False))
    if not any(getattr(r, "path", None) == "/console/login" for r in asgi.routes):
        asgi.router.routes.extend(auth_routes(app))
    return asgi


@pytest.fixture
def console(app: App) -> App:
    """The app with a cheap password hash (the shipped rules otherwise) and 张敏 registered."""
    app.accounts = Accounts(app.db.sessions, app.clock, CHEAP)  # type: ignore[attr-defined]
    register(app, "张敏", "市场监管局", password=PASSWORD)
    return app


def register(
    app: App,
    name: str,
    department: str,
    *,
    role: CommissionerRole = CommissionerRole.COMMISSIONER,
    password: str | None = None,
) -> int:
    with app.db.begin() as session:
        person = add_commissioner(
            session, name=name, department=department, role=role,
            departments=app.router.departments,
        )  # fmt: skip
        person_id = person.id
    if password is not None:
        accounts_for(app).set_password(person_id, password)
    return person_id


@pytest.fixture
def live(console: App) -> Iterator[LiveServer]:
    with LiveServer(console_asgi(console)) as server:
        yield server


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, follow_redirects=False) as http:
        yield http


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the form has no csrf field"
    return found.group(1)


def sign_in(http: httpx.Client, name: str = "张敏", password: str = PASSWORD, **extra: str) -> Any:
    page = http.get("/console/login")
    form = {"name": name, "password": password, "csrf": csrf_of(page.text), **extra}
    return http.post("/console/login", data=form)


def cookie_header(response: Any, name: str) -> str:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith(f"{name}="):
            return str(value)
    raise AssertionError(f"no {name} cookie set")


def audited(app: App, action: str) -> list[audit.AuditEvent]:
    with app.db.sessions() as session:
        rows = audit.recent(session, action=action)
        session.expunge_all()
        return rows


# ------------------------------------------------------------------------------- HTTP


def test_the_login_page_has_a_csrf_field_bound_to_a_form_cookie(client: httpx.Client) -> None:
    page = client.get("/console/login")
    assert page.status_code == 200
    assert "企业服务专员登录" in page.text
    assert 'name="name"' in page.text and 'name="password"' in page.text
    csrf_of(page.text)
    form_cookie = cookie_header(page, FORM_COOKIE).lower()
    assert "httponly" in form_cookie and "samesite=lax" in form_cookie
    assert "path=/console" in form_cookie
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script" not in page.text  # no inline script anywhere


def test_sign_in_sets_a_session_cookie_and_opens_the_workbench(
    client: httpx.Client, console: App
) -> None:
    response = sign_in(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/"
    cookie = cookie_header(response, SESSION_COOKIE).lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/console" in cookie
    assert "secure" not in cookie
    home = client.get("/console/")
    assert home.status_code == 200
    assert "工作台" in home.text and "张敏" in home.text and "市场监管局" in home.text
    assert client.get("/console/login").status_code == 303  # signed in already
    [event] = audited(console, AuditAction.SIGN_IN)
    assert (event.actor, event.ip) == ("张敏", "127.0.0.1")


def test_secure_cookies_when_configured(
    db_url: str, clock: MovableClock, kb: KnowledgeBase
) -> None:
    env = {SECURE_COOKIES_ENV: "1"}
    app = build_app(AppSettings.from_env(env, database_url=db_url), clock, kb=kb)
    try:
        app.accounts = Accounts(app.db.sessions, app.clock, CHEAP)  # type: ignore[attr-defined]
        register(app, "张敏", "市场监管局", password=PASSWORD)
        with (
            LiveServer(console_asgi(app)) as server,
            httpx.Client(base_url=server.url, follow_redirects=False) as http,
        ):
            page = http.get("/console/login")
            form_cookie = cookie_header(page, FORM_COOKIE)
            assert "secure" in form_cookie.lower()
            # a browser sends a Secure cookie over HTTPS only: here it is handed on by hand
            response = http.post(
                "/console/login",
                data={"name": "张敏", "password": PASSWORD, "csrf": csrf_of(page.text)},
                headers={"cookie": form_cookie.split(";")[0]},
            )
            assert response.status_code == 303
            assert "secure" in cookie_header(response, SESSION_COOKIE).lower()
    finally:
        app.close()


def test_signed_out_visitors_are_sent_to_the_login_page(client: httpx.Client) -> None:
    response = client.get("/console/")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=/console/"
    client.cookies.set(SESSION_COOKIE, "forged-or-expired", path="/console")
    stale = client.get("/console/")
    assert stale.headers["location"].endswith("&expired=1")
    assert "登录已过期" in client.get(stale.headers["location"]).text


def test_next_leads_back_inside_the_console_only(client: httpx.Client) -> None:
    inside = sign_in(client, next="/console/?state=new")
    assert inside.headers["location"] == "/console/?state=new"
    client.cookies.clear()
    for target in ("https://evil.example/console", "//evil.example/", "/healthz"):
        assert sign_in(client, next=target).headers["location"] == "/console/"
        client.cookies.clear()


def test_a_post_without_the_csrf_token_is_refused(client: httpx.Client, console: App) -> None:
    page = client.get("/console/login")
    bare = client.post("/console/login", data={"name": "张敏", "password": PASSWORD})
    assert bare.status_code == 403
    assert "表单" in bare.text or "页面已过期" in bare.text
    wrong = client.post(
        "/console/login", data={"name": "张敏", "password": PASSWORD, "csrf": "0" * 64}
    )
    assert wrong.status_code == 403
    assert audited(console, AuditAction.SIGN_IN) == []
    assert csrf_of(page.text)

    home = sign_in(client)
    assert home.status_code == 303
    refused = client.post("/console/logout", data={})
    assert refused.status_code == 403
    assert client.get("/console/").status_code == 200  # still signed in
    # the token of the login form is not the session's
    assert client.post("/console/logout", data={"csrf": csrf_of(page.text)}).status_code == 403


def test_sign_out_ends_the_session(client: httpx.Client, console: App) -> None:
    sign_in(client)
    token = client.cookies.get(SESSION_COOKIE)
    home = client.get("/console/")
    out = client.post("/console/logout", data={"csrf": csrf_of(home.text)})
    assert out.status_code == 303 and out.headers["location"] == "/console/login?bye=1"
    assert "您已退出登录" in client.get("/console/login?bye=1").text
    assert client.get("/console/").status_code == 303
    assert accounts_for(console).staff_for(token) is None
    [event] = audited(console, AuditAction.SIGN_OUT)
    assert event.actor == "张敏"


def test_wrong_passwords_lock_the_account(client: httpx.Client, console: App) -> None:
    for _ in range(4):
        wrong = sign_in(client, password="not-the-password")
        assert wrong.status_code == 401
        assert "姓名或密码不正确" in wrong.text
        assert 'value="张敏"' in wrong.text  # the name stays typed, the password does not
    fifth = sign_in(client, password="not-the-password")
    assert "账号已锁定" in fifth.text and "10:15" in fifth.text
    sixth = sign_in(client)  # the right password, still locked
    assert sixth.status_code == 401 and "账号已锁定" in sixth.text
    console.clock.advance(minutes=15)  # type: ignore[attr-defined]
    assert sign_in(client).status_code == 303


def test_clashing_names_ask_for_the_department(client: httpx.Client, console: App) -> None:
    register(console, "张敏", "商务局", password="another-password")
    first = sign_in(client)
    assert first.status_code == 400
    assert "请选择所在部门" in first.text
    assert '<option value="商务局"' in first.text and '<option value="市场监管局"' in first.text
    chosen = sign_in(client, password="another-password", department="商务局")
    assert chosen.status_code == 303
    assert "商务局" in client.get("/console/").text


def test_a_set_password_link_works_once(client: httpx.Client, console: App) -> None:
    person = register(console, "王芳", "商务局")
    code = accounts_for(console).create_link(person, by="管理员")
    url = f"/console/set-password/{code}"
    page = client.get(url)
    assert page.status_code == 200
    assert "王芳（商务局，专员）" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"  # the code never leaks onward
    csrf = csrf_of(page.text)
    mismatch = client.post(url, data={"csrf": csrf, "password": PASSWORD, "confirm": "x"})
    assert mismatch.status_code == 400 and "两次输入的密码不一致" in mismatch.text
    weak = client.post(url, data={"csrf": csrf, "password": "12345", "confirm": "12345"})
    assert weak.status_code == 400 and "至少需要 10 个字符" in weak.text
    assert client.post(url, data={"password": PASSWORD, "confirm": PASSWORD}).status_code == 403
    done = client.post(url, data={"csrf": csrf, "password": PASSWORD, "confirm": PASSWORD})
    assert done.status_code == 303 and done.headers["location"] == "/console/login?done=password"
    assert "密码已设置" in client.get(done.headers["location"]).text
    again = client.get(url)
    assert again.status_code == 410 and "已使用" in again.text
    assert sign_in(client, "王芳").status_code == 303


def test_an_unknown_link_says_so(client: httpx.Client) -> None:
    page = client.get("/console/set-password/made-up")
    assert page.status_code == 410 and "链接无效" in page.text


# ---------------------------------------------------------------------------- browser


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    try:
        yield context.new_page()
    finally:
        context.close()


def fill_login(page: Any, name: str, password: str) -> None:
    page.get_by_label("姓名").fill(name)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


def test_browser_sign_in_and_out(page: Any, live: LiveServer) -> None:
    page.goto(f"{live.url}/console/")
    assert page.url.startswith(f"{live.url}/console/login")
    fill_login(page, "张敏", PASSWORD)
    page.wait_for_url(f"{live.url}/console/")
    assert page.get_by_role("heading", name="工作台").is_visible()
    assert "张敏，您好" in page.text_content("main")
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url("**/console/login?bye=1")
    assert page.get_by_role("status").text_content() == "您已退出登录。"
    page.goto(f"{live.url}/console/")
    assert "/console/login" in page.url


def test_browser_wrong_password_then_lock(page: Any, live: LiveServer) -> None:
    page.goto(f"{live.url}/console/login")
    fill_login(page, "张敏", "not-the-password")
    alert = page.get_by_role("alert")
    assert "姓名或密码不正确" in alert.text_content()
    assert page.get_by_label("姓名").input_value() == "张敏"
    for _ in range(4):
        fill_login(page, "张敏", "not-the-password")
    fill_login(page, "张敏", "still-not-the-password")  # the sixth
    message = page.get_by_role("alert").text_content()
    assert "账号已锁定" in message and "后再试" in message


def test_browser_post_without_csrf_is_forbidden(page: Any, live: LiveServer) -> None:
    page.goto(f"{live.url}/console/login")
    fill_login(page, "张敏", PASSWORD)
    page.wait_for_url(f"{live.url}/console/")
    response = page.request.post(f"{live.url}/console/logout", form={"next": "/console/"})
    assert response.status == 403
    assert "无法完成操作" in response.text()
    page.reload()
    assert page.get_by_role("heading", name="工作台").is_visible()  # still signed in


def test_login_page_screenshot(page: Any, live: LiveServer, tmp_path: Path) -> None:
    """The login page at 1366×768: the form is in view, nothing overflows (saved to
    docs/console/login.png when ``YXBY_UPDATE_SCREENSHOTS`` is set)."""
    page.goto(f"{live.url}/console/login")
    card = page.locator("section.signin").bounding_box()
    assert card is not None
    assert card["x"] > 300 and card["x"] + card["width"] < 1366 - 300  # centred, narrow
    assert card["y"] + card["height"] < 768  # the whole form without scrolling
    button = page.get_by_role("button", name="登录").bounding_box()
    assert button is not None and button["width"] > 200
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    shot = tmp_path / "login.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 0
    if os.environ.get("YXBY_UPDATE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / "login.png")
