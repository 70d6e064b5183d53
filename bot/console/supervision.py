"""督办, 回访 callbacks and the 联席会议 (issue 12): 政务办's console pages.

* ``GET /console/supervision`` — the urge suggestions of the SLA tick, reddest first, each
  with a one-click 「确认督办」 (``POST /console/supervision/urges/<id>``);
* ``GET /console/supervision/callbacks?from=&to=&percent=`` — the callback list (every 不满意
  and a sample of the rest), each row with the callback form
  (``POST /console/supervision/callbacks/<number>``);
* ``GET /console/supervision/meeting[?id=]`` — the next meeting's agenda with each
  department's opinion; forms to call a meeting, record an opinion and the decision
  (``POST …/meeting``, ``…/meeting/items/<number>/opinion``, ``…/decide``); the minutes
  (``GET /console/supervision/meeting/<id>/minutes.docx``).

The urge and callback pages are 政务办's (403 for anyone else). On the meeting page a
department's staff see the items their department is involved in and give its opinion.
Every change is one transaction with its audit row, through :class:`handoff.supervision.
Supervision` and the ticket service; a refused change comes back as the page with the
reason (400) and nothing written.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot.console.auth import form_data, require_staff
from handoff import audit
from handoff.accounts import Staff
from handoff.calendar import SHANGHAI
from handoff.models import CommissionerRole, SurveyResult
from handoff.scope import Act, NotAllowed, allowed, visible_ticket
from handoff.supervision import Supervision, load_supervision_settings
from yxby.errors import YxbyError

if TYPE_CHECKING:
    from bot.app import App
    from bot.console.pages import Pages

__all__ = ["BASE", "routes", "supervision_of"]

BASE = "/console/supervision"
TEXT_LIMIT = 2000
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def supervision_of(app: App) -> Supervision:
    """The app's supervision service (built on first use, kept on the app)."""
    found: Supervision | None = app.__dict__.get("_console_supervision")
    if found is None:
        settings = load_supervision_settings(app.settings.config_dir / "supervision.yaml")
        found = Supervision(app.tickets, settings)
        app.__dict__["_console_supervision"] = found
    return found


class FormError(YxbyError):
    """The form itself is wrong (a missing field, a bad date): nothing was done."""


def _text(form: Mapping[str, str], name: str, what: str, *, required: bool = True) -> str:
    value = form.get(name, "").strip()
    if required and not value:
        raise FormError(f"请填写{what}")
    if len(value) > TEXT_LIMIT:
        raise FormError(f"{what}最多 {TEXT_LIMIT} 字，请精简后再提交")
    return value


def _date(raw: str, what: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise FormError(f"{what}「{raw}」不是有效日期（格式：2026-12-31）") from None


def _oversees(staff: Staff) -> bool:
    return staff.role is CommissionerRole.OVERSIGHT


def routes(app: App, pages: Pages) -> list[BaseRoute]:
    """The supervision pages and their actions."""

    def sup() -> Supervision:
        return supervision_of(app)

    def today() -> date:
        return app.clock().astimezone(SHANGHAI).date()

    def render(name: str, staff: Staff, status: int = 200, **ctx: Any) -> Response:
        return pages.render(name, status=status, staff=staff, base=BASE, **ctx)

    def denied(staff: Staff) -> Response:
        return render(
            "supervision_denied.html",
            staff,
            403,
            message="督办与回访由政务办负责：您的账号无权查看此页面。",
        )

    # -- 督办

    def urges_page(staff: Staff, notice: str = "", tone: str = "ok", status: int = 200) -> Response:
        return render(
            "supervision.html",
            staff,
            status,
            tab="urges",
            suggestions=sup().suggestions(),
            auto=sup().settings.auto_confirm,
            levels=sup().settings.levels,
            notice=notice,
            tone=tone,
        )

    @require_staff
    async def urges(request: Request, staff: Staff) -> Response:
        """督办建议 with one-click confirm."""
        if not _oversees(staff):
            return denied(staff)
        done = request.query_params.get("done", "")
        notice = f"已督办 {done}，承办专员和部门负责人已收到通知。" if done else ""
        return await asyncio.to_thread(urges_page, staff, notice)

    def do_confirm(staff: Staff, sid: int, ip: str | None) -> str:
        with app.db.begin() as s:
            view = sup().confirm(sid, actor=staff.name, session=s)
            audit.record(
                s,
                "supervision_urge",
                at=app.clock(),
                person=staff,
                ip=ip,
                ticket_number=view.number,
                suggestion=sid,
                level=view.events[-1].data.get("level"),
            )
            return view.number

    @require_staff
    async def confirm(request: Request, staff: Staff) -> Response:
        """Confirm one suggestion: the urge is made and delivered."""
        if not _oversees(staff):
            return denied(staff)
        sid = int(request.path_params["sid"])
        try:
            number = await asyncio.to_thread(do_confirm, staff, sid, _ip(request))
        except YxbyError as exc:
            return await asyncio.to_thread(urges_page, staff, str(exc), "error", 400)
        return RedirectResponse(f"{BASE}?done={quote(number)}", status_code=303)

    # -- 回访

    def callbacks_page(
        staff: Staff,
        params: Mapping[str, str],
        notice: str = "",
        tone: str = "ok",
        status: int = 200,
        failed: str = "",
        form: Mapping[str, str] | None = None,
    ) -> Response:
        errors: list[str] = []
        first = today().replace(day=1)
        try:
            start = _date(params["from"], "开始日期") if params.get("from") else first
            end = _date(params["to"], "结束日期") if params.get("to") else today()
        except FormError as exc:
            errors.append(str(exc))
            start, end = first, today()
        percent: float | None = None
        raw = params.get("percent", "").strip()
        if raw:
            try:
                percent = float(raw)
            except ValueError:
                errors.append(f"抽样比例「{raw}」不是数字")
        try:
            found = sup().callback_list(start, end, percent=percent)
        except YxbyError as exc:
            errors.append(str(exc))
            found = sup().callback_list(start, end)
            percent = None
        shown = sup().settings.callbacks.sample_percent if percent is None else percent
        query = urlencode({"from": start.isoformat(), "to": end.isoformat(),
                           "percent": f"{shown:g}"})  # fmt: skip
        return render(
            "supervision_callbacks.html",
            staff,
            status,
            tab="callbacks",
            candidates=found,
            start=start,
            end=end,
            percent=shown,
            query=query,
            results=[r.value for r in SurveyResult],
            errors=errors,
            notice=notice,
            tone=tone,
            failed=failed,
            form=form or {},
        )

    @require_staff
    async def callbacks(request: Request, staff: Staff) -> Response:
        """The callback list with the callback form on each row."""
        if not _oversees(staff):
            return denied(staff)
        params = dict(request.query_params)
        done = params.pop("done", "")
        notice = f"已记录 {done} 的回访。" if done else ""
        return await asyncio.to_thread(callbacks_page, staff, params, notice)

    def do_callback(staff: Staff, number: str, form: Mapping[str, str], ip: str | None) -> str:
        reached = form.get("reached", "") == "1"
        note = _text(form, "note", "回访记录", required=False) or None
        on_reply = form.get("reply", "").strip() or None
        on_result = form.get("result", "").strip() or None
        with app.db.begin() as s:
            ticket = visible_ticket(s, staff, number)
            if Act.CALLBACK not in allowed(staff, ticket):
                raise NotAllowed(ticket.number, Act.CALLBACK)
            view = app.tickets.record_callback(
                ticket.number,
                reached=reached,
                actor=staff.name,
                reply_satisfaction=on_reply if reached else None,
                result_satisfaction=on_result if reached else None,
                note=note,
                caller_id=staff.id,
                session=s,
            )
            audit.record(s, "supervision_callback", at=app.clock(), person=staff, ip=ip,
                         ticket_number=view.number, reached=reached, reply=on_reply,
                         result=on_result)  # fmt: skip
            return view.number

    @require_staff
    async def callback(request: Request, staff: Staff) -> Response:
        """Record one phone callback."""
        if not _oversees(staff):
            return denied(staff)
        form = await form_data(request)
        number = request.path_params["number"]
        back = {k: form.get(k, "") for k in ("from", "to", "percent")}
        try:
            found = await asyncio.to_thread(do_callback, staff, number, form, _ip(request))
        except YxbyError as exc:
            return await asyncio.to_thread(
                callbacks_page, staff, back, str(exc), "error", 400, number, form
            )
        query = urlencode({**{k: v for k, v in back.items() if v}, "done": found})
        return RedirectResponse(f"{BASE}/callbacks?{query}", status_code=303)

    # -- 联席会议

    def meeting_page(
        staff: Staff,
        meeting_id: int | None,
        notice: str = "",
        tone: str = "ok",
        status: int = 200,
        failed: str = "",
        form: Mapping[str, str] | None = None,
    ) -> Response:
        service = sup()
        try:
            meeting = service.meeting(meeting_id)
        except YxbyError as exc:
            meeting, notice, tone, status = None, str(exc), "error", 404
        waiting = service.waiting()
        oversees = _oversees(staff)
        items = list(meeting.items) if meeting else []
        if not oversees:
            items = [i for i in items if staff.department in i.involved]
            waiting = [i for i in waiting if staff.department in i.involved]
        return render(
            "supervision_meeting.html",
            staff,
            status,
            tab="meeting",
            oversees=oversees,
            meeting=meeting,
            items=items,
            waiting=waiting,
            meetings=service.meetings() if oversees else [],
            departments=sorted(d.name for d in app.router.departments),
            min_deadline=(today() + timedelta(days=1)).isoformat(),
            next_week=(today() + timedelta(days=7)).isoformat(),
            today=today().isoformat(),
            notice=notice,
            tone=tone,
            failed=failed,
            form=form or {},
        )

    def _meeting_id(request: Request) -> int | None:
        raw = request.query_params.get("id", "") or ""
        return int(raw) if raw.isdigit() else None

    @require_staff
    async def meeting(request: Request, staff: Staff) -> Response:
        """The agenda, opinions and decisions of a meeting (the next one by default)."""
        if staff.role is CommissionerRole.ADMIN:
            return denied(staff)
        done = request.query_params.get("done", "")
        return await asyncio.to_thread(meeting_page, staff, _meeting_id(request), done)

    def do_schedule(staff: Staff, form: Mapping[str, str], ip: str | None) -> int:
        held_on = _date(_text(form, "held_on", "会议日期"), "会议日期")
        attendance = [p for p in re.split(r"[\n、，,]+", form.get("attendance", "")) if p.strip()]
        with app.db.begin() as s:
            made = sup().schedule(
                held_on,
                title=_text(form, "title", "会议名称", required=False) or None,
                doc_number=_text(form, "doc_number", "文号", required=False) or None,
                attendance=attendance,
                session=s,
            )
            audit.record(s, "supervision_meeting", at=app.clock(), person=staff, ip=ip,
                         meeting=made.id, held_on=held_on.isoformat())  # fmt: skip
            return made.id

    @require_staff
    async def schedule(request: Request, staff: Staff) -> Response:
        """Call a meeting; the waiting items go on its agenda."""
        if not _oversees(staff):
            return denied(staff)
        form = await form_data(request)
        try:
            mid = await asyncio.to_thread(do_schedule, staff, form, _ip(request))
        except YxbyError as exc:
            return await asyncio.to_thread(
                meeting_page, staff, None, str(exc), "error", 400, "schedule", form
            )
        done = quote("已召集联席会议，等待中的提请事项已列入议程。")
        return RedirectResponse(f"{BASE}/meeting?id={mid}&done={done}", status_code=303)

    def do_item(
        staff: Staff, number: str, action: str, form: Mapping[str, str], ip: str | None
    ) -> str:
        with app.db.begin() as s:
            ticket = visible_ticket(s, staff, number)
            act = Act.OPINION if action == "opinion" else Act.DECIDE
            if act not in allowed(staff, ticket):
                raise NotAllowed(ticket.number, act)
            found = ticket.number
            if action == "opinion":
                department = staff.department
                if _oversees(staff) and form.get("department", "").strip():
                    department = form["department"].strip()  # as the department gave it
                opinion = _text(form, "opinion", "部门意见")
                app.tickets.record_opinion(
                    found,
                    department=department,
                    opinion=opinion,
                    actor=staff.name,
                    commissioner_id=staff.id,
                    session=s,
                )
                detail: dict[str, Any] = {"department": department}
            else:
                lead = _text(form, "lead_department", "牵头部门")
                deadline = _date(_text(form, "deadline", "完成时限"), "完成时限")
                helpers = [h for h in re.split(r"[、，,\s]+", form.get("helpers", "")) if h]
                decision = _text(form, "decision", "会议决定", required=False) or None
                app.tickets.decide(
                    found,
                    lead_department=lead,
                    helpers=helpers,
                    deadline=deadline,
                    decision=decision,
                    actor=staff.name,
                    session=s,
                )
                detail = {"lead_department": lead, "helpers": helpers,
                          "deadline": deadline.isoformat()}  # fmt: skip
            audit.record(s, f"supervision_{action}", at=app.clock(), person=staff, ip=ip,
                         ticket_number=found, **detail)  # fmt: skip
            return found

    def item_action(action: str) -> Any:
        @require_staff
        async def endpoint(request: Request, staff: Staff) -> Response:
            if staff.role is CommissionerRole.ADMIN:
                return denied(staff)
            form = await form_data(request)
            number = request.path_params["number"]
            raw = form.get("meeting", "")
            mid = int(raw) if raw.isdigit() else None
            try:
                found = await asyncio.to_thread(do_item, staff, number, action, form, _ip(request))
            except YxbyError as exc:
                return await asyncio.to_thread(
                    meeting_page, staff, mid, str(exc), "error", 400, f"{action}:{number}", form
                )
            said = "部门意见已记录。" if action == "opinion" else "会议决定已记录，新时限开始计时。"
            target = f"{BASE}/meeting?" + urlencode(
                {**({"id": str(mid)} if mid else {}), "done": f"{found}：{said}"}
            )
            return RedirectResponse(target + f"#item-{found}", status_code=303)

        endpoint.__name__ = f"meeting_{action}"
        return endpoint

    @require_staff
    async def minutes(request: Request, staff: Staff) -> Response:
        """The minutes as a Word document."""
        if not _oversees(staff):
            return denied(staff)
        mid = int(request.path_params["mid"])
        try:
            data = await asyncio.to_thread(sup().minutes, mid)
            found = await asyncio.to_thread(sup().meeting, mid)
        except YxbyError as exc:
            return await asyncio.to_thread(meeting_page, staff, None, str(exc), "error", 404)
        assert found is not None
        name = quote(f"联席会议纪要-{found.held_on.isoformat()}.docx")
        return Response(
            data,
            media_type=DOCX,
            headers={
                "Content-Disposition": f'attachment; filename="minutes-{mid}.docx"; '
                f"filename*=UTF-8''{name}",
                "Cache-Control": "no-store",
            },
        )

    return [
        Route(BASE, urges, methods=["GET"], name="supervision_urges"),
        Route(BASE + "/urges/{sid:int}", confirm, methods=["POST"]),
        Route(BASE + "/callbacks", callbacks, methods=["GET"], name="supervision_callbacks"),
        Route(BASE + "/callbacks/{number}", callback, methods=["POST"]),
        Route(BASE + "/meeting", meeting, methods=["GET"], name="supervision_meeting"),
        Route(BASE + "/meeting", schedule, methods=["POST"]),
        Route(BASE + "/meeting/items/{number}/opinion", item_action("opinion"), methods=["POST"]),
        Route(BASE + "/meeting/items/{number}/decide", item_action("decide"), methods=["POST"]),
        Route(BASE + "/meeting/{mid:int}/minutes.docx", minutes, methods=["GET"]),
    ]


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None
