"""Console pages: the live conversation with an enterprise that asked for a person.

Routes:

* ``GET /console/live`` — the requests waiting for a person that one may take (one's
  department's; every department's for 政务办) and one's own chats;
* ``GET /console/live/{id}`` — one conversation: the enterprise, its question, the transcript
  so far, and (by state) 接入, the message box and 结束对话;
* ``POST /console/live/{id}/take`` — 接入 (:meth:`handoff.live.LiveHandoffs.take`);
* ``POST /console/live/{id}/send`` — field ``text``: one message to the enterprise
  (:meth:`~handoff.live.LiveHandoffs.relay_from_staff`); a script posting with
  ``Accept: application/json`` gets JSON back instead of a redirect;
* ``POST /console/live/{id}/end`` — 结束对话 (:meth:`~handoff.live.LiveHandoffs.end`);
* ``GET /console/live/{id}/events`` — Server-Sent Events: every new transcript line
  (``event: line``, ``id:`` the line's id, so a reconnect with ``Last-Event-ID`` resumes)
  and the chat's state (``event: state``) while it is waiting or active.

A request outside one's scope answers 404 on every URL (its existence is not revealed); a
POST without the session's CSRF token gets 403. Every take, send and end is an audit event.
The rules — who may take, write, end — are :mod:`handoff.live`'s; this module only shows them.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from bot.console.auth import form_data, require_staff
from bot.notify import who_is
from handoff import audit
from handoff.accounts import Staff
from handoff.calendar import SHANGHAI
from handoff.conversations import LiveHandoff, LiveHandoffState, transcript_lines
from handoff.live import NO_QUESTION, ChatNotHeld, TakeResult, can_see, holds
from handoff.models import ChannelIdentity, Commissioner, Direction, TranscriptLine

if TYPE_CHECKING:
    from bot.app import App
    from bot.console.pages import Pages

__all__ = [
    "CONTEXT_BEFORE",
    "MAX_TEXT",
    "POLL_SECONDS",
    "STREAM_SECONDS",
    "ChatView",
    "LineView",
    "enterprise_name",
    "line_view",
    "routes",
]

POLL_SECONDS = 0.5
"""How often an open event stream looks for new transcript lines."""
STREAM_SECONDS = 30.0
"""An event stream ends after this long; the browser reconnects (``Last-Event-ID``), and
the session is checked again."""
KEEPALIVE_SECONDS = 5.0
"""A comment is sent at least this often, so a stream whose reader is gone stops."""
LATE_COMMIT_SECONDS = 3.0
"""Lines are looked for again this long back: a transaction that took an earlier id may
commit after a later one (PostgreSQL sequences)."""
CONTEXT_BEFORE = timedelta(minutes=30)
"""How much of the conversation before the request the page shows, for context."""
MAX_TEXT = 2000
"""Longest message a commissioner may send at once (characters)."""
LINES_SHOWN = 300

STATE_LABELS = {
    LiveHandoffState.WAITING: "等待接入",
    LiveHandoffState.ACTIVE: "对话中",
    LiveHandoffState.ENDED: "已结束",
    LiveHandoffState.EXPIRED: "超时未接入，已转为诉求工单",
    LiveHandoffState.CANCELLED: "企业已取消",
}
CHANNEL_LABELS = {"wechat": "微信公众号", "telegram": "Telegram", "terminal": "终端"}
_CHANNEL_SHORT = {"wechat": "微信", "telegram": "Telegram", "terminal": "终端"}
OPEN = (LiveHandoffState.WAITING, LiveHandoffState.ACTIVE)
_STAFF_LINE = re.compile(r"^【([^】]+（[^）]+）)】(.*)$", re.DOTALL)
NOT_FOUND = "没有找到这个人工请求，或它不在您的办理范围内。"


# ------------------------------------------------------------------------ what is shown


def enterprise_name(identity: ChannelIdentity) -> str:
    """The enterprise's name, else ``微信用户0001`` (its channel and the end of its account)."""
    if identity.enterprise is not None:
        return who_is(identity)
    return f"{_CHANNEL_SHORT.get(identity.channel, identity.channel)}用户{identity.user_key[-4:]}"


@dataclass(frozen=True)
class LineView:
    """One transcript line as the console shows it."""

    id: int
    kind: str  # enterprise, staff or bot
    label: str
    text: str
    at: str  # local HH:MM


def line_view(line: TranscriptLine, enterprise: str) -> LineView:
    """*line* of the enterprise named *enterprise*: who wrote it and what it said."""
    at = line.at.astimezone(SHANGHAI).strftime("%H:%M")
    if line.direction is Direction.IN:
        return LineView(line.id, "enterprise", enterprise, line.text, at)
    staff = _STAFF_LINE.match(line.text)
    if staff is not None:
        return LineView(line.id, "staff", staff.group(1), staff.group(2), at)
    return LineView(line.id, "bot", "助手", line.text, at)


@dataclass(frozen=True)
class ChatView:
    """A request for a person as the console shows it to one commissioner."""

    id: int
    state: str
    state_label: str
    who: str
    channel: str
    uscc: str | None
    department: str
    question: str
    route_reason: str
    created_at: datetime
    expires_at: datetime
    taken_at: datetime | None
    ended_at: datetime | None
    holder: str | None
    mine: bool
    can_take: bool
    ticket_number: str | None

    @property
    def open(self) -> bool:
        """Waiting or active: the page listens for new lines."""
        return self.state in (LiveHandoffState.WAITING.value, LiveHandoffState.ACTIVE.value)


def chat_view(handoff: LiveHandoff, person: Commissioner, now: datetime) -> ChatView:
    """*handoff* as *person* sees it at *now*."""
    identity = handoff.identity
    state = handoff.state
    waiting = state is LiveHandoffState.WAITING and handoff.expires_at > now
    return ChatView(
        id=handoff.id,
        state=state.value,
        state_label=STATE_LABELS[state],
        who=enterprise_name(identity),
        channel=CHANNEL_LABELS.get(identity.channel, identity.channel),
        uscc=identity.enterprise.uscc if identity.enterprise is not None else None,
        department=handoff.department,
        question="" if handoff.question == NO_QUESTION else handoff.question,
        route_reason=handoff.route_reason,
        created_at=handoff.created_at,
        expires_at=handoff.expires_at,
        taken_at=handoff.taken_at,
        ended_at=handoff.ended_at,
        holder=handoff.commissioner.name if handoff.commissioner is not None else None,
        mine=holds(person, handoff),
        can_take=waiting,
        ticket_number=handoff.ticket.number if handoff.ticket is not None else None,
    )


def _lines(session: Session, handoff: LiveHandoff, *, after_id: int = 0) -> list[LineView]:
    rows = transcript_lines(
        session,
        handoff.channel_identity_id,
        since=handoff.created_at - CONTEXT_BEFORE,
        after_id=after_id,
        limit=LINES_SHOWN,
    )
    if handoff.ended_at is not None:
        rows = [r for r in rows if r.at <= handoff.ended_at]
    who = enterprise_name(handoff.identity)
    return [line_view(r, who) for r in rows]


@dataclass(frozen=True)
class _Poll:
    state: str
    holder: str | None
    mine: bool
    lines: list[LineView]


# ---------------------------------------------------------------------------- the routes


class _Gone(Exception):
    """The request does not exist for this person (answered 404)."""


def routes(app: App, pages: Pages) -> list[BaseRoute]:
    """The routes of the live conversation."""

    def load(session: Session, staff: Staff, handoff_id: int) -> tuple[Commissioner, LiveHandoff]:
        person = session.get(Commissioner, staff.id)
        handoff = app.live.get(session, handoff_id)
        if person is None or handoff is None or not can_see(person, handoff):
            raise _Gone
        return person, handoff

    def not_found() -> Response:
        return pages.render(
            "auth_message.html", status=404, title="未找到", message=NOT_FOUND, back="/console/live"
        )

    def ip_of(request: Request) -> str | None:
        return request.client.host if request.client else None

    def wants_json(request: Request) -> bool:
        return "application/json" in request.headers.get("accept", "")

    # -- pages

    def list_context(staff: Staff) -> dict[str, Any]:
        now = app.clock()
        with app.db.begin() as session:
            person = session.get(Commissioner, staff.id)
            if person is None:
                return {"waiting": [], "mine": []}
            waiting = [
                chat_view(h, person, now) for h in app.live.waiting_for(session, person, now)
            ]
            mine = [chat_view(h, person, now) for h in app.live.active_for(session, person)]
        return {"waiting": waiting, "mine": mine}

    @require_staff
    async def live_list(request: Request, staff: Staff) -> Response:
        """The waiting requests one may take, and one's own chats."""
        context = await run_in_threadpool(list_context, staff)
        return pages.render("live_list.html", staff=staff, **context)

    def page_context(staff: Staff, handoff_id: int) -> dict[str, Any]:
        with app.db.begin() as session:
            person, handoff = load(session, staff, handoff_id)
            lines = _lines(session, handoff)
            return {
                "chat": chat_view(handoff, person, app.clock()),
                "lines": lines,
                "last_id": lines[-1].id if lines else _last_id(session, handoff),
            }

    async def show(
        request: Request,
        staff: Staff,
        handoff_id: int,
        *,
        status: int = 200,
        notice: str | None = None,
        error: str | None = None,
        draft: str = "",
    ) -> Response:
        try:
            context = await run_in_threadpool(page_context, staff, handoff_id)
        except _Gone:
            return not_found()
        return pages.render(
            "live.html",
            status=status,
            staff=staff,
            notice=notice or _NOTICES.get(request.query_params.get("done", "")),
            error=error,
            draft=draft,
            max_text=MAX_TEXT,
            **context,
        )

    @require_staff
    async def live_page(request: Request, staff: Staff) -> Response:
        """One conversation."""
        return await show(request, staff, request.path_params["handoff_id"])

    # -- actions

    def do_take(staff: Staff, handoff_id: int, ip: str | None) -> tuple[TakeResult, str | None]:
        now = app.clock()
        with app.db.begin() as session:
            person, _ = load(session, staff, handoff_id)
            taken = app.live.take(session, person, handoff_id, now)
            handoff = taken.handoff
            holder = handoff.commissioner.name if handoff and handoff.commissioner else None
            audit.record(session, "live_take", at=now, person=person, ip=ip,
                         handoff=handoff_id, result=taken.result.value)  # fmt: skip
            return taken.result, holder

    @require_staff
    async def take(request: Request, staff: Staff) -> Response:
        """接入."""
        handoff_id = request.path_params["handoff_id"]
        try:
            result, holder = await run_in_threadpool(do_take, staff, handoff_id, ip_of(request))
        except _Gone:
            return not_found()
        if result in (TakeResult.TAKEN, TakeResult.ALREADY_YOURS):
            return RedirectResponse(f"/console/live/{handoff_id}?done=taken", status_code=303)
        if result is TakeResult.TAKEN_BY_OTHER:
            message = f"该对话已由{holder or '其他专员'}接入，无需重复接入。"
        elif result is TakeResult.CLOSED:
            message = "这个人工请求已经结束（企业已取消，或已超时转为诉求工单）。"
        else:
            return not_found()
        return await show(request, staff, handoff_id, status=409, error=message)

    def do_send(staff: Staff, handoff_id: int, text: str, ip: str | None) -> None:
        now = app.clock()
        with app.db.begin() as session:
            person, handoff = load(session, staff, handoff_id)
            app.live.relay_from_staff(session, handoff, text, by=person)
            audit.record(session, "live_send", at=now, person=person, ip=ip,
                         handoff=handoff_id, chars=len(text))  # fmt: skip

    @require_staff
    async def send(request: Request, staff: Staff) -> Response:
        """One message to the enterprise."""
        handoff_id = request.path_params["handoff_id"]
        text = (await form_data(request)).get("text", "").strip()
        error = None
        if not text:
            error = "请输入要发送的内容。"
        elif len(text) > MAX_TEXT:
            error = f"消息过长（{len(text)} 字），请控制在 {MAX_TEXT} 字以内，或分几条发送。"
        else:
            try:
                await run_in_threadpool(do_send, staff, handoff_id, text, ip_of(request))
            except _Gone:
                return not_found()
            except ChatNotHeld as exc:
                error = f"{exc}，消息未发送。"
        if wants_json(request):
            if error is None:
                return JSONResponse({"ok": True})
            return JSONResponse({"ok": False, "error": error}, status_code=409)
        if error is None:
            return RedirectResponse(f"/console/live/{handoff_id}#composer", status_code=303)
        return await show(request, staff, handoff_id, status=409, error=error, draft=text)

    def do_end(staff: Staff, handoff_id: int, ip: str | None) -> tuple[bool, LiveHandoffState]:
        now = app.clock()
        with app.db.begin() as session:
            person, handoff = load(session, staff, handoff_id)
            ended = app.live.end(session, handoff, now, by_staff=True, by=person)
            audit.record(session, "live_end", at=now, person=person, ip=ip,
                         handoff=handoff_id, ended=ended)  # fmt: skip
            return ended, handoff.state

    @require_staff
    async def end(request: Request, staff: Staff) -> Response:
        """结束对话."""
        handoff_id = request.path_params["handoff_id"]
        try:
            ended, state = await run_in_threadpool(do_end, staff, handoff_id, ip_of(request))
        except _Gone:
            return not_found()
        except ChatNotHeld as exc:
            return await show(request, staff, handoff_id, status=409, error=f"{exc}，无法结束。")
        if state is LiveHandoffState.WAITING:
            error = "该请求尚未接入，无需结束。"
            return await show(request, staff, handoff_id, status=409, error=error)
        done = "ended" if ended else "over"
        return RedirectResponse(f"/console/live/{handoff_id}?done={done}", status_code=303)

    # -- the event stream

    def poll(staff: Staff, handoff_id: int, floor: int) -> _Poll:
        with app.db.begin() as session:
            person, handoff = load(session, staff, handoff_id)
            holder = handoff.commissioner.name if handoff.commissioner is not None else None
            return _Poll(handoff.state.value, holder, holds(person, handoff),
                         _lines(session, handoff, after_id=floor))  # fmt: skip

    @require_staff
    async def events(request: Request, staff: Staff) -> Response:
        """New transcript lines and state changes, as Server-Sent Events."""
        handoff_id = request.path_params["handoff_id"]
        cursor = _int(request.headers.get("last-event-id")) or _int(
            request.query_params.get("after")
        )
        try:
            first = await run_in_threadpool(poll, staff, handoff_id, cursor)
        except _Gone:
            return not_found()

        async def stream() -> AsyncIterator[str]:
            yield f"retry: {int(POLL_SECONDS * 2000)}\n\n"
            started = last_sent = time.monotonic()
            seen: set[int] = set()
            floors: deque[tuple[float, int]] = deque([(started, cursor)])
            state: tuple[str, str | None, bool] | None = None
            current: _Poll | None = first
            while current is not None:
                now = time.monotonic()
                for line in current.lines:
                    if line.id > cursor and line.id not in seen:
                        seen.add(line.id)
                        yield _event("line", asdict(line), event_id=line.id)
                        last_sent = now
                top = max([cursor, *(line.id for line in current.lines)])
                floors.append((now, top))
                if (current.state, current.holder, current.mine) != state:
                    state = (current.state, current.holder, current.mine)
                    label = STATE_LABELS[LiveHandoffState(current.state)]
                    data = {"state": current.state, "label": label, "holder": current.holder,
                            "mine": current.mine}  # fmt: skip
                    yield _event("state", data)
                    last_sent = now
                if LiveHandoffState(current.state) not in OPEN or now - started > STREAM_SECONDS:
                    return
                if now - last_sent > KEEPALIVE_SECONDS:
                    yield ": keepalive\n\n"
                    last_sent = now
                if await request.is_disconnected():
                    return
                await asyncio.sleep(POLL_SECONDS)
                while len(floors) > 1 and floors[1][0] < time.monotonic() - LATE_COMMIT_SECONDS:
                    floors.popleft()
                try:
                    current = await run_in_threadpool(poll, staff, handoff_id, floors[0][1])
                except _Gone:
                    return

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return [
        Route("/console/live", live_list, methods=["GET"], name="console_live"),
        Route("/console/live/{handoff_id:int}", live_page, methods=["GET"]),
        Route("/console/live/{handoff_id:int}/take", take, methods=["POST"]),
        Route("/console/live/{handoff_id:int}/send", send, methods=["POST"]),
        Route("/console/live/{handoff_id:int}/end", end, methods=["POST"]),
        Route("/console/live/{handoff_id:int}/events", events, methods=["GET"]),
    ]


_NOTICES = {
    "taken": "您已接入对话。企业发来的消息会即时显示在下方。",
    "ended": "对话已结束，企业已收到通知。",
    "over": "这个对话已经结束。",
}


def _last_id(session: Session, handoff: LiveHandoff) -> int:
    rows = transcript_lines(session, handoff.channel_identity_id, limit=1)
    return rows[-1].id if rows else 0


def _int(value: str | None) -> int:
    return int(value) if value is not None and value.strip().isdigit() else 0


def _event(kind: str, data: dict[str, Any], *, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
