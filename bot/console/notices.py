"""Notices and 为企服务工作单 sent out to enterprises, with receipts (issue 14); and the
verified 绑定 of an enterprise's chat accounts on its 一企一档 page.

* ``GET /console/notices`` — the notices the person may see (政务办: all; 负责人: their
  department's), newest first;
* ``GET|POST /console/notices/new`` — compose: kind, title, text, link, image, the audience
  filter; ``step=preview`` counts the audience (enterprises, how many a chat reaches),
  ``step=send`` writes and queues the notice in one transaction and redirects (303) to
* ``GET /console/notices/{id}`` — its receipts: counts per state, and one row per enterprise
  and chat (``?status=`` filters), exportable as ``.csv`` and ``.xlsx``;
* ``GET /n/{token}`` — the notice as the enterprise opens it from the message (no sign-in:
  the signed link is the permission); the first opening is recorded on its receipt;
* ``POST /console/enterprises/{uscc}/binding`` — 生成核验码 / 确认绑定 / 解除绑定 for the
  chats of an enterprise, shown on the 一企一档 page by ``enterprise_binding.html``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot.console.auth import form_data, require_staff
from handoff import binding
from handoff.accounts import Staff
from handoff.models import EnterpriseKind
from handoff.notices import (
    RECEIPT_LABELS,
    Audience,
    AudienceCount,
    NoticeError,
    NoticeKind,
    NoticeLinks,
    audience_options,
    can_compose,
    count_audience,
    create_notice,
    export_csv,
    export_rows,
    export_xlsx,
    get_notice,
    list_notices,
    mark_opened,
    receipt_counts,
    receipts,
    send_notice,
)
from handoff.registry import find_enterprise
from yxby.errors import YxbyError

if TYPE_CHECKING:
    from bot.app import App
    from bot.console.pages import Pages

__all__ = ["BindingPanel", "routes"]

RECEIPT_PAGE = 500
FIELDS = ("kind", "title", "body", "link", "image_url")
AUDIENCE_FIELDS = ("industry", "kind_filter", "building", "grid", "commissioner_id", "department")


@dataclass(frozen=True)
class BindingPanel:
    """What ``enterprise_binding.html`` shows on the 一企一档 page."""

    uscc: str
    identities: list[binding.IdentityView]
    may_verify: bool


def _audience(form: dict[str, str]) -> Audience:
    data: dict[str, Any] = {k: form.get(k, "") for k in AUDIENCE_FIELDS}
    data["kind"] = data.pop("kind_filter")
    return Audience.from_dict(data)


def routes(app: App, pages: Pages) -> list[BaseRoute]:
    """The pages of this module."""

    def links() -> NoticeLinks:
        return NoticeLinks(app.links)

    # ------------------------------------------------------------------ 一企一档 panel

    def panel(uscc: str, staff: Staff) -> BindingPanel | None:
        with app.db.sessions() as s:
            enterprise = find_enterprise(s, uscc)
            if enterprise is None:
                return None
            return BindingPanel(
                enterprise.uscc,
                binding.identities_of(s, enterprise.id),
                binding.can_verify(staff, enterprise),
            )

    pages.env.globals["enterprise_binding"] = panel

    def binding_action(staff: Staff, uscc: str, form: dict[str, str]) -> dict[str, Any]:
        action = form.get("action", "")
        now = app.clock()
        with app.db.begin() as s:
            enterprise = find_enterprise(s, uscc)
            if enterprise is None:
                raise binding.BindingError(f"企业库中没有统一社会信用代码为 {uscc} 的企业")
            result: dict[str, Any] = {"name": enterprise.name, "uscc": enterprise.uscc}
            if action == "code":
                code, row = binding.create_code(s, enterprise, staff, now=now)
                result.update(code=code, expires_at=row.expires_at)
                return result
            try:
                identity_id = int(form.get("identity", ""))
            except ValueError:
                raise binding.BindingError("请选择要核验的对话账号") from None
            if action == "confirm":
                binding.confirm(s, enterprise, identity_id, staff, now=now)
                result["done"] = "已确认该对话账号代表本企业（已核验）"
            elif action == "revoke":
                binding.revoke(s, enterprise, identity_id, staff)
                result["done"] = "已解除该对话账号与本企业的绑定"
            else:
                raise binding.BindingError("未知的操作")
            return result

    @require_staff
    async def enterprise_binding(request: Request, staff: Staff) -> Response:
        uscc = request.path_params["uscc"]
        form = await form_data(request)
        try:
            result = await asyncio.to_thread(binding_action, staff, uscc, form)
        except YxbyError as exc:
            return pages.render(
                "auth_message.html",
                status=403 if "只有" in str(exc) else 400,
                title="操作未完成",
                message=str(exc),
                back=f"/console/enterprises/{uscc}",
            )
        if "code" not in result:
            return RedirectResponse(f"/console/enterprises/{result['uscc']}", status_code=303)
        return pages.render("notices_code.html", staff=staff, r=result)

    # ------------------------------------------------------------------ notices

    def denied(staff: Staff) -> Response:
        return pages.render(
            "auth_message.html",
            status=403,
            title="无权访问",
            message="只有政务办和部门负责人可以发布和查看通知。",
            back="/console/",
        )

    def notice_list(staff: Staff) -> Response:
        with app.db.sessions() as s:
            found = list_notices(s, staff)
            rows = [(n, receipt_counts(s, n.id) if n.sent_at else None) for n in found]
        return pages.render("notices.html", staff=staff, rows=rows)

    @require_staff
    async def index(request: Request, staff: Staff) -> Response:
        if not can_compose(staff):
            return denied(staff)
        return await asyncio.to_thread(notice_list, staff)

    def compose_page(
        staff: Staff,
        form: dict[str, str],
        *,
        preview: AudienceCount | None = None,
        audience_label: str = "",
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        with app.db.sessions() as s:
            options = audience_options(s)
        return pages.render(
            "notices_compose.html",
            status=status,
            staff=staff,
            form=form,
            kinds=[k.value for k in NoticeKind],
            enterprise_kinds=[k.value for k in EnterpriseKind],
            options=options,
            preview=preview,
            audience_label=audience_label,
            error=error,
        )

    def preview_or_send(staff: Staff, form: dict[str, str]) -> Response:
        try:
            audience = _audience(form)
        except NoticeError as exc:
            return compose_page(staff, form, error=str(exc), status=400)
        now = app.clock()
        if form.get("step") != "send":
            try:
                with app.db.sessions() as s:  # validated like a real one, never committed
                    create_notice(
                        s, staff, kind=form.get("kind", ""), title=form.get("title", ""),
                        body=form.get("body", ""), link=form.get("link"),
                        image_url=form.get("image_url"), audience=audience, now=now,
                    )  # fmt: skip
                    counted = count_audience(s, audience)
                    label = audience.label(s)
            except NoticeError as exc:
                return compose_page(staff, form, error=str(exc), status=400)
            return compose_page(staff, form, preview=counted, audience_label=label)
        try:
            with app.db.begin() as s:
                notice = create_notice(
                    s, staff, kind=form.get("kind", ""), title=form.get("title", ""),
                    body=form.get("body", ""), link=form.get("link"),
                    image_url=form.get("image_url"), audience=audience, now=now,
                )  # fmt: skip
                send_notice(s, notice.id, staff, texts=app.replies, link_for=links().url, now=now)
                notice_id = notice.id
        except NoticeError as exc:
            return compose_page(staff, form, error=str(exc), status=400)
        return RedirectResponse(f"/console/notices/{notice_id}", status_code=303)

    @require_staff
    async def compose(request: Request, staff: Staff) -> Response:
        if not can_compose(staff):
            return denied(staff)
        if request.method != "POST":
            return await asyncio.to_thread(compose_page, staff, {"kind": NoticeKind.POLICY.value})
        form = dict(await form_data(request))
        return await asyncio.to_thread(preview_or_send, staff, form)

    def detail_page(staff: Staff, notice_id: int, status: str | None) -> Response:
        with app.db.sessions() as s:
            try:
                notice = get_notice(s, notice_id, staff)
            except NoticeError as exc:
                return pages.render(
                    "auth_message.html", status=404, title="找不到通知", message=str(exc),
                    back="/console/notices",
                )  # fmt: skip
            counts = receipt_counts(s, notice.id)
            shown = receipts(s, notice.id, status=status or None, limit=RECEIPT_PAGE)
            label = Audience.from_dict(notice.audience).label(s)
        return pages.render(
            "notices_detail.html",
            staff=staff,
            notice=notice,
            counts=counts,
            labels=RECEIPT_LABELS,
            rows=shown,
            current=status or "",
            limit=RECEIPT_PAGE,
            audience_label=label,
        )

    def _id(request: Request) -> int | None:
        try:
            return int(request.path_params["notice_id"])
        except ValueError:
            return None

    @require_staff
    async def detail(request: Request, staff: Staff) -> Response:
        if not can_compose(staff):
            return denied(staff)
        notice_id = _id(request)
        if notice_id is None:
            return Response("Not Found", status_code=404)
        wanted = request.query_params.get("status", "")
        status = wanted if wanted in RECEIPT_LABELS else None
        return await asyncio.to_thread(detail_page, staff, notice_id, status)

    def export(staff: Staff, notice_id: int, fmt: str) -> Response:
        with app.db.sessions() as s:
            try:
                notice = get_notice(s, notice_id, staff)
            except NoticeError:
                return Response("Not Found", status_code=404)
            rows = export_rows(s, notice.id)
        name = f"notice-{notice_id}-receipts.{fmt}"
        if fmt == "csv":
            body, media = export_csv(rows), "text/csv; charset=utf-8"
        else:
            body = export_xlsx(rows)
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return Response(
            body,
            media_type=media,
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
            },
        )

    @require_staff
    async def export_route(request: Request, staff: Staff) -> Response:
        notice_id = _id(request)
        fmt = request.path_params["fmt"]
        if not can_compose(staff) or notice_id is None or fmt not in ("csv", "xlsx"):
            return Response("Not Found", status_code=404)
        return await asyncio.to_thread(export, staff, notice_id, fmt)

    # ------------------------------------------------------------------ the enterprise's view

    def opened(token: str) -> Response:
        try:
            notice_id, identity_id = links().verify(token)
            with app.db.begin() as s:
                notice = mark_opened(s, notice_id, identity_id, app.clock())
                s.flush()
                s.expunge(notice)
        except YxbyError as exc:
            return pages.render("notices_public.html", status=404, notice=None, error=str(exc))
        return pages.render("notices_public.html", notice=notice, error=None)

    async def public(request: Request) -> Response:
        return await asyncio.to_thread(opened, request.path_params["token"])

    return [
        Route("/console/notices", index, methods=["GET"], name="console_notices"),
        Route("/console/notices/new", compose, methods=["GET", "POST"], name="notice_new"),
        Route("/console/notices/{notice_id}", detail, methods=["GET"], name="notice_detail"),
        Route(
            "/console/notices/{notice_id}/receipts.{fmt}",
            export_route,
            methods=["GET"],
            name="notice_export",
        ),
        Route("/n/{token}", public, methods=["GET"], name="notice_public"),
        Route(
            "/console/enterprises/{uscc}/binding",
            enterprise_binding,
            methods=["POST"],
            name="enterprise_binding",
        ),
    ]
