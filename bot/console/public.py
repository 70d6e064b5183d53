"""Pages reached by a signed link, without signing in: the enterprise's ticket page.

``GET /t/{token}`` shows one ticket as the enterprise sees it — its state, the clocks it was
promised, what the department told it — and, while the result awaits a rating, the rating
form; ``POST /t/{token}/rate`` records the rating through
:meth:`handoff.tickets.TicketService.rate`, the same path the chat takes. The link
(:mod:`handoff.links`) is the only credential: it opens the ticket it was made for, and only
while that ticket belongs to the chat account it was made for. The form carries a token
derived (HMAC) from the link, so another site cannot post a rating with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bot.console.pages import Pages
from handoff.calendar import SHANGHAI
from handoff.links import link_secret
from handoff.models import ChannelIdentity, ClockKind, SurveyResult, TicketState
from handoff.tickets import (
    ClockView,
    EventView,
    IllegalTransition,
    TicketNotFound,
    TicketView,
)
from yxby import paths
from yxby.errors import InputError

if TYPE_CHECKING:
    from bot.app import App

__all__ = [
    "STATE_LABELS",
    "ClockLine",
    "TicketPage",
    "TimelineEntry",
    "clock_lines",
    "public_routes",
    "timeline",
]

FORM_LIMIT = 8 * 1024
"""Largest rating form accepted (bytes): three fields, a comment of at most 1,000 characters."""
COMMENT_LIMIT = 1000
INVALID = "链接无效或已过期"


# ----------------------------------------------------------------------------- what is shown

STATE_LABELS = {
    TicketState.NEW: "待签收",
    TicketState.ACCEPTED: "已签收",
    TicketState.IN_PROGRESS: "办理中",
    TicketState.ESCALATED: "已提请联席会议",
    TicketState.RESOLVED: "已办结",
    TicketState.FEEDBACK_SENT: "已办结，待评价",
    TicketState.SURVEYED: "已评价",
    TicketState.CLOSED: "已结案",
}
"""A ticket's state as the enterprise reads it (``已反馈`` is the department's word)."""


@dataclass(frozen=True)
class ClockLine:
    """One deadline as the enterprise reads it."""

    label: str
    status: str  # 已完成 / 进行中 / 已超时
    tone: str  # ok / warn / late (the CSS class)
    due_at: datetime
    met_at: datetime | None
    provisional: bool = False
    """Counted over a year without a published holiday schedule (shown 暂定)."""


def _clock_line(label: str, clock: ClockView, now: datetime) -> ClockLine:
    def line(status: str, tone: str, met_at: datetime | None = None) -> ClockLine:
        return ClockLine(label, status, tone, clock.due_at, met_at, clock.calendar_fallback)

    if clock.met_at is not None:
        return line("已完成", "late" if clock.met_at > clock.due_at else "ok", clock.met_at)
    if clock.breached_at is not None or clock.due_at < now:
        return line("已超时", "late")
    return line("进行中", "warn")


PROMISED = {
    ClockKind.CONTACT: "联系时限",
    ClockKind.DONE: "办结时限",
    ClockKind.ESCALATION: "联席会议限期",
}
"""The deadlines an enterprise was promised, by the names it reads them under."""


def clock_lines(view: TicketView, now: datetime) -> list[ClockLine]:
    """联系时限 and 办结时限 (the meeting's deadline once escalated) — what was promised."""
    lines = []
    contact = view.clock(ClockKind.CONTACT)
    if contact is not None:
        lines.append(_clock_line(PROMISED[ClockKind.CONTACT], contact, now))
    done = view.clock(ClockKind.ESCALATION) or view.clock(ClockKind.DONE)
    if done is not None:
        label = PROMISED[done.kind]
        lines.append(_clock_line(label, done, now))
    return lines


@dataclass(frozen=True)
class TimelineEntry:
    """One thing the department did or said, as told to the enterprise."""

    at: datetime
    title: str
    text: str = ""


def _cn_day(value: Any) -> str:
    """``2026年12月20日`` of an ISO time in the event data ("" when missing)."""
    try:
        moment = datetime.fromisoformat(str(value)).astimezone(SHANGHAI)
    except ValueError:
        return ""
    return f"{moment.year}年{moment.month}月{moment.day}日"


def _entry(event: EventView, department: str) -> TimelineEntry | None:
    data: Mapping[str, Any] = event.data
    kind = event.kind
    if kind == "create":
        return TimelineEntry(
            event.at, "诉求已登记", f"承办部门：{data.get('department', department)}"
        )
    if kind == "accept":
        who = data.get("commissioner")
        return TimelineEntry(event.at, "已签收", f"企业服务专员 {who}" if who else "")
    if kind == "start":
        return TimelineEntry(event.at, "开始办理")
    if kind == "progress":
        return TimelineEntry(event.at, "办理进度", event.reason or "")
    if kind == "reply":  # what the commissioner wrote to the enterprise
        return TimelineEntry(event.at, "专员回复", event.reason or "")
    if kind == "transfer":
        return TimelineEntry(event.at, "转派", f"转由{data.get('to_department', '')}办理")
    if kind == "escalate":
        lead = data.get("lead_department", "")
        said = f"牵头部门：{lead}" if lead else "列入优化营商环境工作联席会议专题研究"
        return TimelineEntry(event.at, "已提请联席会议", said)
    if kind == "recalculate":  # a provisional deadline settled by the published schedule
        labels = {kind.value: label for kind, label in PROMISED.items()}
        settled = [
            f"{labels[c['kind']]}确定为 {_cn_day(c.get('to'))}"
            for c in data.get("clocks", [])
            if c.get("kind") in labels
        ]
        if not settled:
            return None
        return TimelineEntry(event.at, "时限已按正式放假安排确定", "，".join(settled))
    if kind == "decide":
        lead = data.get("lead_department", "")
        due = _cn_day(data.get("deadline"))
        return TimelineEntry(event.at, "联席会议已明确办理", f"牵头部门：{lead}，限期 {due}")
    if kind == "resolve":
        return TimelineEntry(event.at, "已办结", f"办理结果：{data.get('result', '')}")
    if kind == "record_survey":
        return TimelineEntry(event.at, "您的评价", str(data.get("result", "")))
    if kind == "reopen":
        return TimelineEntry(event.at, "重新办理", "您评价不满意，诉求已重新交办")
    if kind == "close":
        return TimelineEntry(event.at, "已结案")
    # 协同, 协办确认, 反馈记录, 催办, 回访意见 and anything new: internal, not shown
    return None


def timeline(view: TicketView) -> list[TimelineEntry]:
    """What the enterprise may read of the event trail, newest first (no internal notes:
    the reasons of internal steps, helper departments and staff-only data stay out)."""
    entries = [e for e in (_entry(ev, view.department) for ev in view.events) if e is not None]
    return entries[::-1]


# ----------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class _Opened:
    view: TicketView
    identity: ChannelIdentity


class TicketPage:
    """The routes and their work; built once per app by :func:`public_routes`."""

    def __init__(self, app: App, pages: Pages) -> None:
        self.app = app
        self.pages = pages

    @cached_property
    def _form_key(self) -> bytes:
        secret = link_secret(self.app.settings.env, paths.data_dir)
        return hmac.new(secret, b"yxby ticket-page form", hashlib.sha256).digest()

    def form_token(self, token: str) -> str:
        """The anti-forgery value the rating form of *token*'s page carries."""
        return hmac.new(self._form_key, token.encode(), hashlib.sha256).hexdigest()[:32]

    # -- work (in a thread: the database is synchronous)

    def _open(self, token: str) -> _Opened | None:
        """The ticket *token* opens, or ``None`` (bad, expired, or no longer that user's)."""
        try:
            target = self.app.links.verify(token)
            view = self.app.tickets.get(target.number)
        except (InputError, TicketNotFound):
            return None
        if view.channel_identity_id != target.identity_id:
            return None
        with self.app.db.sessions() as session:
            identity = session.scalars(
                select(ChannelIdentity).where(ChannelIdentity.id == target.identity_id)
            ).one_or_none()
            if identity is None:
                return None
            session.expunge(identity)
        return _Opened(view, identity)

    def _rate(
        self, opened: _Opened, verdict: SurveyResult, comment: str
    ) -> tuple[TicketView, str] | None:
        """Record the rating; ``None`` when the ticket no longer awaits one."""
        identity = opened.identity
        actor = f"{identity.channel}:{identity.user_key}"  # as the chat records the user
        try:
            rating = self.app.tickets.rate(
                opened.view.number, result=verdict, actor=actor, comment=comment or None
            )
        except IllegalTransition:
            return None
        view = rating.view
        if rating.closed:
            message = self.app.replies("rate_closed_after_reopen", number=view.number)
        elif rating.reopened:
            contact = view.clock(ClockKind.CONTACT)
            due = _day(contact.due_at) if contact else "—"
            message = self.app.replies("rate_reopened", number=view.number, contact_due=due)
        else:
            message = "感谢您的评价，已记录。" + ("您的意见已转告承办部门。" if comment else "")
        return view, message

    # -- HTTP

    def _render(
        self,
        token: str,
        view: TicketView,
        *,
        status: int = 200,
        notice: str = "",
        tone: str = "ok",
        error: str = "",
        form: Mapping[str, str] | None = None,
    ) -> Response:
        now = self.app.clock()
        return self.pages.render(
            "ticket.html",
            status=status,
            ticket=view,
            state_label=STATE_LABELS.get(view.state, view.state.label),
            clocks=clock_lines(view, now),
            timeline=timeline(view),
            awaiting=view.state is TicketState.FEEDBACK_SENT,
            choices=[r.value for r in SurveyResult],
            token=token,
            csrf=self.form_token(token),
            notice=notice,
            tone=tone,
            error=error,
            form=form or {},
            comment_limit=COMMENT_LIMIT,
        )

    def _invalid(self) -> Response:
        return self.pages.render(
            "ticket_invalid.html",
            status=404,
            heading=INVALID,
            detail=(
                "请使用消息中的完整链接；链接有效期为 30 天，过期后可在对话中回复诉求编号查询进度。"
            ),
        )

    async def show(self, request: Request) -> Response:
        """``GET /t/{token}``."""
        token = request.path_params["token"]
        opened = await asyncio.to_thread(self._open, token)
        if opened is None:
            return self._invalid()
        return self._render(token, opened.view)

    async def rate(self, request: Request) -> Response:
        """``POST /t/{token}/rate``: 满意 / 基本满意 / 不满意 and an optional comment."""
        token = request.path_params["token"]
        opened = await asyncio.to_thread(self._open, token)
        if opened is None:
            return self._invalid()
        form = await _form(request)
        if form is None or not hmac.compare_digest(form.get("csrf", ""), self.form_token(token)):
            return self.pages.render(
                "ticket_invalid.html",
                status=403,
                heading="表单已失效",
                detail="请重新打开消息中的链接后再提交评价。",
            )
        view = opened.view
        if view.state is not TicketState.FEEDBACK_SENT or form.get("round") != str(
            view.reopen_count
        ):
            return self._render(token, view, status=409, notice="该诉求已评价", tone="info")
        comment = form.get("comment", "").strip()
        try:
            verdict = SurveyResult.parse(form.get("result", ""))
        except ValueError:
            return self._render(token, view, status=400, error="请选择一项评价", form=form)
        if len(comment) > COMMENT_LIMIT:
            error = f"意见最多 {COMMENT_LIMIT} 字，请精简后再提交"
            return self._render(token, view, status=400, error=error, form=form)
        done = await asyncio.to_thread(self._rate, opened, verdict, comment)
        if done is None:
            latest = await asyncio.to_thread(self.app.tickets.get, view.number)
            return self._render(token, latest, status=409, notice="该诉求已评价", tone="info")
        view, message = done
        tone = "ok" if view.state is TicketState.SURVEYED else "info"
        return self._render(token, view, notice=message, tone=tone)


def _day(moment: datetime) -> str:
    from bot.replies import format_due

    return format_due(moment)


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form (first value of each field); ``None`` when it is not one."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return None
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in fields.items() if v}


def public_routes(app: App, pages: Pages) -> list[BaseRoute]:
    """``/t/{token}`` and ``/t/{token}/rate``."""
    page = TicketPage(app, pages)
    return [
        Route("/t/{token}", page.show, methods=["GET"]),
        Route("/t/{token}/rate", page.rate, methods=["POST"]),
    ]
