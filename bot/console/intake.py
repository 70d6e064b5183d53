"""登记诉求: a need that arrived by phone, 12345, 双万双服, 主任信箱, 门户网站 or a visit,
recorded by a signed-in person (any role but 管理员) and filed as an ordinary ticket.

``GET /console/intake`` (``?enterprise=<USCC>&source=<value>`` prefill it) shows the form and
the person's latest intakes (with how each
enterprise heard its number). ``POST /console/intake`` with ``step=route`` checks the form and
shows the routing suggestion (``判断承办部门``); with ``step=file`` it files the ticket through
:class:`handoff.intake.Intake` and redirects (303) to ``/console/tickets/<number>``. A form
with errors comes back (400) with every value kept and each message next to its field.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot.console.auth import form_data, require_staff
from handoff.accounts import Staff
from handoff.intake import INTAKE_SOURCES, Checked, Intake, IntakeForm, IntakeInvalid
from handoff.models import TicketSource
from handoff.scope import NO_TICKETS
from yxby.errors import YxbyError

if TYPE_CHECKING:
    from bot.app import App
    from bot.console.pages import Pages

__all__ = ["PATH", "intake_service", "routes"]

PATH = "/console/intake"


def intake_service(app: App) -> Intake:
    """The app's intake service (built on first use, kept on the app)."""
    found: Intake | None = app.__dict__.get("_console_intake")
    if found is None:
        found = Intake(
            app.db.sessions, app.tickets, app.router, lambda: app.kb, app.notifier, app.clock
        )
        app.__dict__["_console_intake"] = found
    return found


def routes(app: App, pages: Pages) -> list[BaseRoute]:
    """``GET/POST /console/intake``."""

    def page(
        staff: Staff,
        form: IntakeForm,
        *,
        checked: Checked | None = None,
        status: int = 200,
        error: str | None = None,
    ) -> Response:
        recent = intake_service(app).recent(staff.id)
        return pages.render(
            "intake.html",
            status=status,
            staff=staff,
            form=form,
            checked=checked,
            errors=checked.errors if checked is not None else {},
            error=error,
            sources=[(s.value, s.label) for s in INTAKE_SOURCES],
            departments=[d.name for d in app.router.departments],
            recent=recent,
            source_labels={s.value: s.label for s in TicketSource},
        )

    def denied(staff: Staff) -> Response:
        return pages.render(
            "intake.html",
            status=403,
            staff=staff,
            form=IntakeForm(),
            checked=None,
            errors={},
            error="管理员账号只管理人员账号，不能登记诉求。",
            sources=[],
            departments=[],
            recent=[],
            source_labels={},
        )

    @require_staff
    async def intake(request: Request, staff: Staff) -> Response:
        if staff.role in NO_TICKETS:
            return await asyncio.to_thread(denied, staff)
        if request.method != "POST":
            query = request.query_params
            form = IntakeForm(
                source=query.get("source", "") or IntakeForm.source,
                enterprise=query.get("enterprise", "").strip()[:100],
            )
            return await asyncio.to_thread(page, staff, form)
        data: dict[str, Any] = await form_data(request)
        form = IntakeForm.of(data)
        service = intake_service(app)
        if data.get("step") != "file":
            checked = await asyncio.to_thread(service.check, form)
            return await asyncio.to_thread(
                page, staff, form, checked=checked, status=200 if checked.ok else 400
            )
        ip = request.client.host if request.client else None
        try:
            filed = await asyncio.to_thread(service.file, form, person=staff, ip=ip)
        except IntakeInvalid as exc:
            return await asyncio.to_thread(page, staff, form, checked=exc.checked, status=400)
        except YxbyError as exc:
            return await asyncio.to_thread(page, staff, form, status=400, error=str(exc))
        return RedirectResponse(f"/console/tickets/{filed.ticket.number}", status_code=303)

    return [Route(PATH, intake, methods=["GET", "POST"], name="console_intake")]
