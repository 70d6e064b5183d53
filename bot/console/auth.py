"""Console sign-in: the login and set-password pages, sign-out, sessions and CSRF.

Routes (:func:`auth_routes`): ``GET/POST /console/login`` (fields ``name``, ``password``,
optional ``department`` when names clash), ``POST /console/logout``,
``GET/POST /console/set-password/{code}``, and until the queue exists a placeholder
``/console/`` 工作台. The session cookie (``yxby_console``) holds a random token whose hash
is a :class:`~handoff.accounts.ConsoleSession` row; it is HttpOnly, SameSite=Lax, limited to
``/console``, and Secure when ``YXBY_CONSOLE_SECURE_COOKIES`` is set (behind HTTPS).

Every form carries a hidden ``csrf`` field (or an ``X-CSRF-Token`` header for scripts):
signed in, it is bound to the session (:attr:`Staff.csrf`); on the login and set-password
forms, to a random pre-session cookie. A state-changing request without the right token
gets the 403 page.

Other console routes get the signed-in person with :func:`signed_in` or the
:func:`require_staff` decorator (redirect to the login page when absent, CSRF checked on
every POST); both find the :class:`~bot.app.App` at ``request.app.state.app``, which
:func:`bot.server.create_asgi` sets.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot.console.pages import Pages
from handoff.accounts import (
    Accounts,
    AmbiguousName,
    LinkInvalid,
    PasswordPolicyError,
    SignInError,
    Staff,
    csrf_for,
)
from handoff.models import CommissionerRole

if TYPE_CHECKING:
    from bot.app import App

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "FORM_COOKIE",
    "SECURE_COOKIES_ENV",
    "SESSION_COOKIE",
    "accounts_for",
    "auth_routes",
    "check_csrf",
    "forbidden",
    "form_data",
    "require_staff",
    "signed_in",
]

SESSION_COOKIE = "yxby_console"
FORM_COOKIE = "yxby_console_form"
"""A random pre-session value the login and set-password forms' CSRF tokens are bound to."""
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SECURE_COOKIES_ENV = "YXBY_CONSOLE_SECURE_COOKIES"
LOGIN_PATH = "/console/login"
HOME_PATH = "/console/"
MAX_FORM_BYTES = 64 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

ROLE_HINTS = {
    CommissionerRole.COMMISSIONER: "办理本部门诉求及本部门参与协同的诉求",
    CommissionerRole.HEAD: "查看并指派本部门诉求",
    CommissionerRole.OVERSIGHT: "查看各部门诉求，可催办、提请联席会议",
    CommissionerRole.ADMIN: "管理专员账号（不查看诉求）",
    CommissionerRole.EDITOR: "维护知识库：对话记录、草稿、命中测试（不查看诉求）",
}


def accounts_for(app: App) -> Accounts:
    """The app's :class:`~handoff.accounts.Accounts` (built by ``build_app``)."""
    return app.accounts


def _app_of(request: Request) -> App:
    app: App | None = getattr(request.app.state, "app", None)
    if app is None:
        raise RuntimeError("console routes need request.app.state.app (see create_asgi)")
    return app


def _secure(app: App) -> bool:
    value = app.settings.env.get(SECURE_COOKIES_ENV, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


# ------------------------------------------------------------------------------ forms


async def form_data(request: Request) -> dict[str, str]:
    """The url-encoded form of *request* (read once, cached on the request; 64 KiB at most).

    Multipart bodies are not parsed (the console posts no files): they read as empty.
    """
    cached: dict[str, str] | None = getattr(request.state, "yxby_form", None)
    if cached is not None:
        return cached
    form: dict[str, str] = {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        body = await request.body()
        if len(body) <= MAX_FORM_BYTES:
            text = body.decode("utf-8", "replace")
            for key, value in parse_qsl(text, keep_blank_values=True):
                form.setdefault(key, value)
    request.state.yxby_form = form
    return form


async def check_csrf(request: Request, expected: str) -> bool:
    """Whether the request carries *expected* in the ``csrf`` field or ``X-CSRF-Token``."""
    given = request.headers.get(CSRF_HEADER) or (await form_data(request)).get(CSRF_FIELD, "")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _safe_next(target: str | None) -> str:
    if not target:
        return HOME_PATH
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/console") or "\\" in target:
        return HOME_PATH
    if target.startswith(LOGIN_PATH):
        return HOME_PATH
    return target


# -------------------------------------------------------------------------- sign-in state


def _staff_now(request: Request) -> Staff | None:
    cached: tuple[Staff | None] | None = getattr(request.state, "yxby_staff", None)
    if cached is not None:
        return cached[0]
    token = request.cookies.get(SESSION_COOKIE)
    staff = accounts_for(_app_of(request)).staff_for(token) if token else None
    request.state.yxby_staff = (staff,)
    return staff


def signed_in(request: Request) -> Staff | None:
    """The person signed in on *request*, or ``None`` (blocking: call it from a thread, or
    use :func:`require_staff` in ``async`` routes)."""
    return _staff_now(request)


def _to_login(request: Request, *, expired: bool) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    where = f"{LOGIN_PATH}?next={quote(target, safe='/')}"
    if expired:
        where += "&expired=1"
    response = RedirectResponse(where, status_code=303)
    if expired:
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def forbidden(
    message: str = "表单已过期或来源不明，请返回上一页刷新后重试。", pages: Pages | None = None
) -> Response:
    """The 403 page (a state-changing request without the right CSRF token)."""
    return (pages or Pages()).render(
        "auth_message.html", status=403, title="无法完成操作", message=message, back=HOME_PATH
    )


def require_staff(
    endpoint: Callable[[Request, Staff], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Decorate an ``async (request, staff)`` route: no session → the login page (303);
    a POST (any unsafe method) without the session's CSRF token → the 403 page."""

    async def route(request: Request) -> Response:
        staff = await run_in_threadpool(_staff_now, request)
        if staff is None:
            return _to_login(request, expired=SESSION_COOKIE in request.cookies)
        if request.method not in SAFE_METHODS and not await check_csrf(request, staff.csrf):
            return forbidden()
        return await endpoint(request, staff)

    route.__name__ = getattr(endpoint, "__name__", "route")
    route.__doc__ = endpoint.__doc__
    return route


# ---------------------------------------------------------------------------- routes


def auth_routes(app: App, pages: Pages | None = None, *, home: bool = True) -> list[BaseRoute]:
    """Sign-in, sign-out and set-password routes (and, with *home*, a placeholder 工作台 at
    ``/console/`` until the queue page replaces it: list the queue's routes first, or pass
    ``home=False``)."""
    pages = pages or Pages()

    def accounts() -> Accounts:
        return accounts_for(app)

    def form_secret(request: Request) -> tuple[str, bool]:
        existing = request.cookies.get(FORM_COOKIE)
        return (existing, False) if existing else (secrets.token_urlsafe(24), True)

    def with_form_cookie(response: Response, secret: str, new: bool) -> Response:
        if new:
            response.set_cookie(
                FORM_COOKIE,
                secret,
                path=COOKIE_PATH,
                httponly=True,
                samesite="lax",
                secure=_secure(app),
            )
        return response

    async def form_ok(request: Request) -> bool:
        secret = request.cookies.get(FORM_COOKIE)
        return bool(secret) and await check_csrf(request, csrf_for(secret or ""))

    def login_page(
        request: Request,
        *,
        status: int = 200,
        error: str | None = None,
        name: str = "",
        departments: tuple[str, ...] = (),
        department: str = "",
        next_url: str | None = None,
    ) -> Response:
        secret, new = form_secret(request)
        query = request.query_params
        notice = None
        if query.get("bye"):
            notice = "您已退出登录。"
        elif query.get("expired"):
            notice = "登录已过期或已在别处失效，请重新登录。"
        elif query.get("done") == "password":
            notice = "密码已设置，请用新密码登录。"
        response = pages.render(
            "login.html",
            status=status,
            csrf=csrf_for(secret),
            error=error,
            notice=None if error else notice,
            typed_name=name,
            departments=departments,
            department=department,
            next=_safe_next(next_url if next_url is not None else query.get("next")),
        )
        return with_form_cookie(response, secret, new)

    async def login(request: Request) -> Response:
        if request.method != "POST":
            if await run_in_threadpool(_staff_now, request) is not None:
                return RedirectResponse(_safe_next(request.query_params.get("next")), 303)
            return login_page(request)
        if not await form_ok(request):
            return forbidden("登录页面已过期，请返回登录页刷新后重新登录。", pages)
        form = await form_data(request)
        name = form.get("name", "").strip()
        department = form.get("department", "").strip()
        next_url = _safe_next(form.get("next"))
        if not name or not form.get("password"):
            return login_page(
                request, status=400, error="请输入姓名和密码。", name=name, next_url=next_url
            )
        try:
            result = await run_in_threadpool(
                accounts().sign_in,
                name,
                form.get("password", ""),
                department=department or None,
                ip=_ip(request),
                user_agent=request.headers.get("user-agent"),
            )
        except AmbiguousName as exc:
            return login_page(
                request,
                status=400,
                error=str(exc),
                name=name,
                departments=exc.departments,
                department=department,
                next_url=next_url,
            )
        except SignInError as exc:
            return login_page(request, status=401, error=str(exc), name=name, next_url=next_url)
        response = RedirectResponse(next_url, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            result.token,
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",
            secure=_secure(app),
        )
        return response

    async def logout(request: Request) -> Response:
        staff = await run_in_threadpool(_staff_now, request)
        if staff is None:
            response: Response = RedirectResponse(f"{LOGIN_PATH}?bye=1", status_code=303)
            response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
            return response
        if not await check_csrf(request, staff.csrf):
            return forbidden(pages=pages)
        await run_in_threadpool(
            accounts().sign_out, request.cookies.get(SESSION_COOKIE), ip=_ip(request)
        )
        response = RedirectResponse(f"{LOGIN_PATH}?bye=1", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response

    async def set_password(request: Request) -> Response:
        code = request.path_params["code"]
        secret, new = form_secret(request)

        def page(status: int, **context: Any) -> Response:
            context.setdefault("error", None)
            context.setdefault("person", None)
            response = pages.render(
                "set_password.html",
                status=status,
                csrf=csrf_for(secret),
                min_length=accounts().settings.password.min_length,
                **context,
            )
            return with_form_cookie(response, secret, new)

        try:
            person = await run_in_threadpool(accounts().link_owner, code)
        except LinkInvalid as exc:
            return page(410, dead=str(exc))
        if request.method != "POST":
            return page(200, person=person, dead=None)
        if not await form_ok(request):
            return forbidden("页面已过期，请重新打开设置密码链接后再提交。", pages)
        form = await form_data(request)
        password = form.get("password", "")
        if password != form.get("confirm", ""):
            return page(400, person=person, dead=None, error="两次输入的密码不一致，请重新输入。")
        try:
            await run_in_threadpool(accounts().use_link, code, password, ip=_ip(request))
        except PasswordPolicyError as exc:
            return page(400, person=person, dead=None, error=str(exc))
        except LinkInvalid as exc:
            return page(410, dead=str(exc))
        return RedirectResponse(f"{LOGIN_PATH}?done=password", status_code=303)

    @require_staff
    async def workbench(request: Request, staff: Staff) -> Response:
        """Placeholder 工作台 until the queue page exists."""
        return pages.render("auth_home.html", staff=staff, role_hint=ROLE_HINTS.get(staff.role, ""))

    async def bare(_: Request) -> Response:
        return RedirectResponse(HOME_PATH, status_code=307)

    routes: list[BaseRoute] = [
        Route(LOGIN_PATH, login, methods=["GET", "POST"], name="console_login"),
        Route("/console/logout", logout, methods=["POST"], name="console_logout"),
        Route(
            "/console/set-password/{code}",
            set_password,
            methods=["GET", "POST"],
            name="console_set_password",
        ),
    ]
    if home:
        routes += [
            Route(HOME_PATH, workbench, methods=["GET"], name="console_home"),
            Route("/console", bare, methods=["GET"]),
        ]
    return routes
