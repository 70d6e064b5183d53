"""The web pages of the product, served by ``yxby serve``: nothing else in ``bot/`` renders HTML.

Server-rendered Chinese pages (Jinja2) with little JavaScript; every asset is served from
``bot/console/static`` (government intranets have no CDN). Pages are thin callers of the
same ``handoff/`` services as the chat and the CLI: they hold no business rule of their own.

* :mod:`~bot.console.pages` — the template environment and shared page helpers;
* :mod:`~bot.console.public` — pages reached by a signed link, without signing in (the
  enterprise's ticket page).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from bot.console.pages import STATIC_DIR, TEMPLATE_DIR, Pages, static_route

if TYPE_CHECKING:
    from bot.app import App

__all__ = ["STATIC_DIR", "TEMPLATE_DIR", "Pages", "routes", "static_route"]


def routes(app: App) -> list[BaseRoute]:
    """Every page route of the product (mounted by :func:`bot.server.create_asgi`)."""
    from bot.console import (
        assessment,
        editors,
        enterprise,
        intake,
        knowledge,
        live,
        notices,
        queue,
        register,
        supervision,
        ticket,
    )
    from bot.console.auth import auth_routes
    from bot.console.public import public_routes

    pages = Pages()
    signed_in = [
        *queue.routes(app, pages),
        *ticket.routes(app, pages),
        *live.routes(app, pages),
        *intake.routes(app, pages),
        *enterprise.routes(app, pages),
        *knowledge.routes(app, pages),
        *assessment.routes(app, pages),
        *supervision.routes(app, pages),
        *editors.routes(app, pages),
        *register.routes(app, pages),
        *notices.routes(app, pages),
    ]
    home = not any(getattr(r, "path", None) == "/console/" for r in signed_in)
    return [static_route(), *public_routes(app, pages), *signed_in,
            *auth_routes(app, pages, home=home)]  # fmt: skip
