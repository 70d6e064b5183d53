"""一企一档: ``GET /console/enterprises/{uscc}`` — one enterprise's file in the console.

Registry data, the 包保 commissioner, the chats linked to it, every ticket the person may see
(the others are counted, not shown), the conversations newest first (``?page=N``), ratings
and internal notes; read by :func:`handoff.dossier.dossier`. An unknown code answers 404.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bot.console.auth import require_staff
from handoff.accounts import Staff
from handoff.dossier import Dossier, EnterpriseNotFound, dossier

if TYPE_CHECKING:
    from bot.app import App
    from bot.console.pages import Pages

__all__ = ["routes"]


def routes(app: App, pages: Pages) -> list[BaseRoute]:
    """``GET /console/enterprises/{uscc}``."""

    def read(staff: Staff, uscc: str, page: int) -> Dossier:
        with app.db.sessions() as session:
            return dossier(session, staff, uscc, page=page)

    @require_staff
    async def enterprise(request: Request, staff: Staff) -> Response:
        uscc = request.path_params["uscc"]
        try:
            page = int(request.query_params.get("page", "1"))
        except ValueError:
            page = 1
        try:
            found = await asyncio.to_thread(read, staff, uscc, page)
        except EnterpriseNotFound as exc:
            return pages.render(
                "auth_message.html",
                status=404,
                title="找不到企业",
                message=str(exc),
                back="/console/",
            )
        return pages.render("enterprise.html", staff=staff, d=found)

    return [
        Route("/console/enterprises/{uscc}", enterprise, methods=["GET"], name="console_enterprise")
    ]
