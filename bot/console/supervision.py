"""督办, 回访 callbacks and the 联席会议 (issue 12)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from bot.app import App
    from bot.console.pages import Pages

__all__ = ["routes"]


def routes(app: App, pages: Pages) -> list[BaseRoute]:
    """The pages of this module."""
    return []
