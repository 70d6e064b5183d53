"""The Jinja2 environment, the static files and what every page shares."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from bot.replies import PROVISIONAL, PROVISIONAL_NOTE
from handoff.calendar import SHANGHAI

__all__ = ["STATIC_DIR", "TEMPLATE_DIR", "Pages", "static_route"]

HERE = Path(__file__).resolve().parent
TEMPLATE_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
WEEKDAYS = "一二三四五六日"


def _local(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return moment.astimezone(SHANGHAI).strftime(fmt) if moment is not None else "—"


def _day(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    local = moment.astimezone(SHANGHAI)
    return f"{local.month}月{local.day}日（周{WEEKDAYS[local.weekday()]}）"


class Pages:
    """Renders the templates of ``bot/console/templates`` (autoescaped, strict)."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATE_DIR),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["local"] = _local
        self.env.filters["day"] = _day
        self.env.globals["provisional"] = PROVISIONAL
        self.env.globals["provisional_note"] = PROVISIONAL_NOTE

    def render(self, name: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        """The page *name* with *context*, as a response (never cached: it shows live state)."""
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(
            html,
            status_code=status,
            headers={
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": (
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                    "script-src 'self'; frame-ancestors 'none'; form-action 'self'"
                ),
            },
        )


def static_route() -> Mount:
    """``/static/…``: the CSS, scripts and icons of every page, served by the product itself."""
    return Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static")
