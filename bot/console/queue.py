"""Console page: the queue (工作台, ``GET /console/``) and its feed (``GET /console/queue.json``).

The page lists the signed-in person's tickets (:class:`handoff.queue.QueueService`: scope,
filters, paging, working-day countdowns) with the live-chat requests waiting for them on
top. Filters are GET parameters, so links and the form work without JavaScript:
``state`` (value or Chinese label, repeatable), ``overdue=1``, ``mine=1``, ``cohandling=1``,
``source`` (value or label), ``q`` (number, enterprise name/USCC or text), ``page``.

``static/queue.js`` polls the feed every few seconds with the page's filters, its version
stamp (``v``) and the highest ticket id it shows (``max``). While nothing changed the feed
answers ``{"changed": false}``; otherwise it sends the re-rendered table rows, waiting
requests and summary (the same Jinja blocks as the page), how many tickets are new, and the
ids of the waiting requests, so the page updates in place and rings when a request appears.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot.console.auth import require_staff
from handoff.accounts import Staff
from handoff.models import ClockKind, Ticket, TicketSource, TicketState
from handoff.queue import QueueFilter, QueuePage, QueueService, QueueVersion
from handoff.supervision import level_for, load_supervision_settings
from handoff.tickets import OPEN_STATES

if TYPE_CHECKING:
    from bot.app import App
    from bot.console.pages import Pages

__all__ = ["FEED_PATH", "QUEUE_PATH", "parse_filter", "routes"]

QUEUE_PATH = "/console/"
FEED_PATH = "/console/queue.json"
POLL_SECONDS = 5
FILTER_KEYS = ("state", "overdue", "mine", "cohandling", "source", "q")
FLAGS = {"1", "on", "true", "yes"}


@dataclass(frozen=True)
class UrgeBadge:
    """The 督办 level a queue row shows: colour (``level``), its name and how late."""

    level: str
    label: str
    late: str


def parse_filter(params: QueryParams) -> tuple[QueueFilter, list[str]]:
    """The queue filter of the GET parameters, and a message for each value ignored."""
    errors: list[str] = []
    states: list[TicketState] = []
    for raw in params.getlist("state"):
        if not raw.strip():
            continue
        try:
            state = TicketState.parse(raw)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if state not in states:
            states.append(state)
    source = None
    if params.get("source", "").strip():
        try:
            source = TicketSource.parse(params["source"])
        except ValueError as exc:
            errors.append(str(exc))
    try:
        page = max(1, int(params.get("page", "1")))
    except ValueError:
        page = 1
    wanted = QueueFilter(
        states=tuple(states),
        overdue=params.get("overdue", "").lower() in FLAGS,
        mine=params.get("mine", "").lower() in FLAGS,
        cohandling=params.get("cohandling", "").lower() in FLAGS,
        source=source,
        text=params.get("q", "").strip()[:100],
        page=page,
    )
    return wanted, errors


def _query(wanted: QueueFilter, **change: Any) -> str:
    """The query string of *wanted* (with *change* applied), without empty values."""
    wanted = replace(wanted, **change)
    pairs: list[tuple[str, str]] = [("state", s.value) for s in wanted.states]
    for key in ("overdue", "mine", "cohandling"):
        if getattr(wanted, key):
            pairs.append((key, "1"))
    if wanted.source is not None:
        pairs.append(("source", wanted.source.value))
    if wanted.text:
        pairs.append(("q", wanted.text))
    if wanted.page > 1:
        pairs.append(("page", str(wanted.page)))
    return urlencode(pairs)


def routes(app: App, pages: Pages) -> list[BaseRoute]:
    """``GET /console/`` (the queue), ``GET /console`` (→ ``/console/``), the JSON feed."""
    queue = QueueService(app.db.sessions, app.calendar, app.clock)
    levels = load_supervision_settings(app.settings.config_dir / "supervision.yaml").levels

    def urge_levels(page: QueuePage) -> dict[int, UrgeBadge]:
        """督办 level of each overdue open row (the words go beside the colour)."""
        found: dict[int, UrgeBadge] = {}
        for row in page.rows:
            cd = row.countdown
            if cd is None or row.state not in OPEN_STATES or cd.kind is ClockKind.FEEDBACK:
                continue
            level = level_for(cd.due_at, page.now, app.calendar, levels)
            if level is not None:
                late = f"超期 {level[1]} 个工作日" if level[1] else "已超期"
                found[row.id] = UrgeBadge(level[0].value, level[0].label, late)
        return found

    def _unverified(ids: set[int]) -> set[int]:
        """The tickets among *ids* filed from a chat not verified for the enterprise."""
        if not ids:
            return set()
        with app.db.sessions() as s:
            stmt = select(Ticket.id).where(Ticket.id.in_(ids), Ticket.unverified.is_(True))
            return set(s.scalars(stmt))

    def context(
        staff: Staff, wanted: QueueFilter, errors: list[str], version: QueueVersion | None = None
    ) -> dict[str, Any]:
        page = queue.page(staff, wanted)
        waiting = queue.waiting(staff)
        version = version or queue.version(staff)
        filtered = _query(replace(wanted, page=1))
        return {
            "unverified": _unverified({t.id for t in page.rows}),
            "staff": staff,
            "page": page,
            "levels": urge_levels(page),
            "waiting": waiting,
            "wanted": wanted,
            "errors": errors,
            "states": list(TicketState),
            "sources": list(TicketSource),
            "version": version.token,
            "max_id": version.max_id,
            "filtered": bool(filtered),
            "feed": f"{FEED_PATH}?{_query(wanted)}",
            "poll_seconds": POLL_SECONDS,
            "prev_url": f"?{_query(wanted, page=page.page - 1)}" if page.page > 1 else None,
            "next_url": f"?{_query(wanted, page=page.page + 1)}"
            if page.page < page.pages
            else None,
        }

    @require_staff
    async def queue_page(request: Request, staff: Staff) -> Response:
        """工作台: waiting live chats, then the tickets nearest their deadline."""
        wanted, errors = parse_filter(request.query_params)
        ctx = await run_in_threadpool(context, staff, wanted, errors)
        return pages.render("queue.html", **ctx)

    def fragments(ctx: dict[str, Any]) -> dict[str, str]:
        template = pages.env.get_template("queue.html")
        rendered = template.new_context(ctx)
        return {
            name: "".join(template.blocks[name](rendered)).strip()
            for name in ("rows", "waiting", "summary")
        }

    def feed_body(staff: Staff, params: QueryParams) -> dict[str, Any]:
        version = queue.version(staff)
        known = params.get("v", "")
        body: dict[str, Any] = {
            "version": version.token,
            "max_id": version.max_id,
            "waiting": list(version.waiting),
            "changed": False,
        }
        if known == version.token and not params.get("full"):
            return body
        try:
            seen = int(params.get("max", ""))
        except ValueError:
            seen = version.max_id
        wanted, errors = parse_filter(params)
        ctx = context(staff, wanted, errors, version)
        body.update(
            changed=True,
            new=queue.new_since(staff, seen) if seen < version.max_id else 0,
            total=ctx["page"].total,
            html=fragments(ctx),
        )
        return body

    @require_staff
    async def queue_feed(request: Request, staff: Staff) -> Response:
        """What changed in the queue since the page's version stamp (JSON)."""
        body = await run_in_threadpool(feed_body, staff, request.query_params)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def bare(_: Request) -> Response:
        return RedirectResponse(QUEUE_PATH, status_code=307)

    return [
        Route(QUEUE_PATH, queue_page, methods=["GET"], name="console_home"),
        Route("/console", bare, methods=["GET"]),
        Route(FEED_PATH, queue_feed, methods=["GET"], name="console_queue_feed"),
    ]
