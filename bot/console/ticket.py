"""The console's ticket page: ``GET /console/tickets/{number}`` and its actions.

The page shows the enterprise, where the need came from, who leads and who helps (with the
helpers' acknowledgement and opinion), the conversation around the ticket
(:func:`handoff.tickets.conversation_lines`, the same query as the chat's 对话 command),
every event and every clock with its working-day countdown.

Each action is ``POST /console/tickets/{number}/{action}`` — ``accept`` 签收, ``start``,
``progress`` 进度, ``reply`` 回复企业, ``transfer`` 转派, ``assist`` 协同, ``acknowledge``
协办确认, ``resolve`` 办结, ``feedback`` 反馈, ``close`` 结案, ``escalate`` 提请联席会议,
``urge`` 催办, ``assign`` 指派, ``note`` 内部备注 — a thin call of
:class:`~handoff.tickets.TicketService` with ``actor=staff.name, commissioner_id=staff.id``,
audited in the same transaction (:func:`handoff.audit.record`, action ``ticket_<action>``),
answered by a redirect to the page with a Chinese notice (``?done=<action>``).

What may be done is decided below the console: :func:`handoff.scope.allowed` (who) and
:func:`handoff.tickets.possible` (the ticket's state); only what both allow is shown, and a
POST of anything else is refused the same way. A ticket outside one's scope answers 404 for
the page and every action URL. Every form carries the ticket's version
(:attr:`~handoff.tickets.TicketView.version`): a form older than the ticket is refused with
「该诉求已被他人更新，请查看最新状态后再操作」 and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot.console.auth import forbidden, form_data, require_staff
from bot.console.public import clock_lines
from bot.events import EventRow, describe_event
from bot.replies import CannedReplies, CannedUse, load_canned_replies
from handoff import audit
from handoff.accounts import Staff
from handoff.models import Commissioner, Direction, Ticket
from handoff.scope import Act, NotAllowed, OutOfScope, allowed, visible_ticket
from handoff.tickets import (
    ClockView,
    StaleTicket,
    TicketView,
    conversation_lines,
    possible,
)
from yxby.errors import InputError, RoutingError, TicketError

if TYPE_CHECKING:
    from bot.app import App
    from bot.console.pages import Pages

__all__ = ["ACTIONS", "ClockRow", "TicketConsole", "routes"]

PUSH_WINDOW = timedelta(hours=48)
"""WeChat's customer-service window: outside it a reply waits until the user writes again."""
TEXT_LIMIT = 2000

_SOURCE_LABELS = {Direction.IN: "企业", Direction.OUT: "助手"}


# ------------------------------------------------------------------------------ actions


@dataclass(frozen=True)
class ActionSpec:
    """One action URL: the scope act it needs, the service call and its notices."""

    act: Act
    label: str
    done: str
    """The notice after it succeeded."""
    done_no_chat: str = ""
    """The notice when the ticket has no chat account (nothing was pushed), if different."""


ACTIONS: Mapping[str, ActionSpec] = {
    "accept": ActionSpec(Act.ACCEPT, "签收", "已签收，企业已收到签收通知。", "已签收。"),
    "start": ActionSpec(Act.START, "开始办理", "已开始办理。"),
    "progress": ActionSpec(
        Act.PROGRESS,
        "进度",
        "进度已记录，并已推送给企业。",
        "进度已记录（该诉求没有企业的对话账号，未推送，请电话告知企业）。",
    ),
    "reply": ActionSpec(Act.REPLY, "回复企业", "回复已发送给企业。"),
    "transfer": ActionSpec(Act.TRANSFER, "转派", "已转派，新承办部门已收到通知。"),
    "assist": ActionSpec(Act.ASSIST, "协同", "已邀请协办部门，其专员已收到通知。"),
    "acknowledge": ActionSpec(Act.ACKNOWLEDGE, "确认协办", "已确认协办，意见已记录。"),
    "resolve": ActionSpec(
        Act.RESOLVE,
        "办结",
        "已办结，办理结果已推送企业并邀请评价。",
        "已办结。该诉求没有企业的对话账号，请告知企业办理结果后点击「已反馈企业」。",
    ),
    "feedback": ActionSpec(Act.SEND_FEEDBACK, "已反馈企业", "已记录结果反馈。"),
    "close": ActionSpec(Act.CLOSE, "结案", "已结案。"),
    "escalate": ActionSpec(Act.ESCALATE, "提请联席会议", "已提请联席会议。"),
    "urge": ActionSpec(Act.URGE, "督办", "已督办，承办专员和部门负责人已收到通知。"),
    "assign": ActionSpec(Act.ASSIGN, "指派", "已指派，承办专员已收到通知。"),
    "note": ActionSpec(Act.NOTE, "内部备注", "内部备注已保存（仅控制台可见，不发送给任何人）。"),
}
"""Every action URL segment, in the order the page offers them."""


class FormError(TicketError):
    """The form itself is wrong (a missing field, a bad date): said in Chinese, nothing done."""


def _optional(form: Mapping[str, str], name: str, what: str) -> str | None:
    return _text(form, name, what, required=False) or None


def _text(form: Mapping[str, str], name: str, what: str, *, required: bool = True) -> str:
    value = form.get(name, "").strip()
    if required and not value:
        raise FormError(f"请填写{what}")
    if len(value) > TEXT_LIMIT:
        raise FormError(f"{what}最多 {TEXT_LIMIT} 字，请精简后再提交")
    return value


def _deadline(form: Mapping[str, str]) -> date:
    raw = form.get("deadline", "").strip()
    if not raw:
        raise FormError("请填写联席会议确定的完成时限")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise FormError(f"完成时限「{raw}」不是有效日期（格式：2026-12-31）") from None


def _call(
    app: App, action: str, number: str, form: Mapping[str, str], staff: Staff, session: Session
) -> dict[str, Any]:
    """Do *action* through the ticket service; return the audit detail."""
    t = app.tickets
    by: dict[str, Any] = {"actor": staff.name, "commissioner_id": staff.id, "session": session}
    reason: str | None
    note: str | None
    if action == "accept":
        t.accept(number, **by)
        return {}
    if action == "start":
        t.start(number, **by)
        return {}
    if action == "progress":
        note = _text(form, "text", "进度说明")
        t.progress(number, note=note, **by)
        return {"text": note}
    if action == "reply":
        text = _text(form, "text", "回复内容")
        t.reply(number, text=text, **by)
        return {"text": text}
    if action == "transfer":
        target = _text(form, "department", "目标部门")
        reason = _text(form, "reason", "转派理由")
        t.transfer(number, to_department=target, reason=reason, **by)
        return {"to_department": target, "reason": reason}
    if action == "assist":
        names = [k.partition(":")[2] for k in form if k.startswith("helper:")]
        if not names:
            raise FormError("请至少选择一个协办部门")
        reason = _optional(form, "reason", "协同理由")
        t.add_helpers(number, departments=names, reason=reason, **by)
        return {"departments": names, "reason": reason}
    if action == "acknowledge":
        opinion = _optional(form, "opinion", "协办意见")
        t.acknowledge_helper(number, department=staff.department, opinion=opinion, **by)
        return {"department": staff.department, "opinion": opinion}
    if action == "resolve":
        result = _text(form, "text", "办理结果")
        t.resolve(number, result=result, start=True, **by)
        return {"result": result}
    if action == "feedback":
        note = _optional(form, "text", "反馈方式")
        t.send_feedback(number, note=note, **by)
        return {"note": note}
    if action == "close":
        reason = _optional(form, "reason", "结案说明")
        t.close(number, actor=staff.name, reason=reason, session=session)
        return {"reason": reason}
    if action == "escalate":
        # 提请: on the next meeting's agenda; a lead and deadline the meeting already agreed
        # (专题研究 held outside the system) record its decision at once
        reason = _text(form, "reason", "提请理由")
        lead = _optional(form, "lead_department", "牵头部门")
        if lead is None and not form.get("deadline", "").strip():
            t.escalate(number, reason=reason, **by)
            return {"reason": reason}
        if lead is None:
            raise FormError("已填写完成时限：请同时选择联席会议确定的牵头部门")
        deadline = _deadline(form)
        t.escalate(number, lead_department=lead, deadline=deadline, reason=reason, **by)
        return {"lead_department": lead, "deadline": deadline.isoformat(), "reason": reason}
    if action == "urge":
        from bot.console.supervision import supervision_of

        note = _text(form, "text", "催办意见")
        level = _optional(form, "level", "督办等级")
        view = supervision_of(app).urge(
            number, actor=staff.name, note=note, level=level, session=session
        )
        return {"text": note, "level": view.events[-1].data.get("level")}
    if action == "assign":
        raw = form.get("commissioner", "").strip()
        if not raw.isdigit():
            raise FormError("请选择要指派的专员")
        reason = _optional(form, "reason", "指派说明")
        t.assign(number, commissioner=int(raw), reason=reason, **by)
        return {"commissioner_id": int(raw), "reason": reason}
    if action == "note":
        text = _text(form, "text", "备注内容")
        t.note(number, text=text, **by)
        return {"text": text}
    raise AssertionError(action)  # pragma: no cover - routes only match ACTIONS


# ------------------------------------------------------------------------------ what is shown


@dataclass(frozen=True)
class ClockRow:
    """One SLA clock with its status and working-day countdown."""

    label: str
    department: str
    started_at: datetime
    due_at: datetime
    status: str
    tone: str  # ok / soon / late / done / off (the CSS class)
    countdown: str
    met_at: datetime | None
    superseded_at: datetime | None
    provisional: bool = False
    """Counted over a year without a published holiday schedule (shown 暂定)."""


def _clock_row(app: App, clock: ClockView, now: datetime) -> ClockRow:
    def row(status: str, tone: str, countdown: str = "") -> ClockRow:
        return ClockRow(
            clock.kind.label,
            clock.department,
            clock.started_at,
            clock.due_at,
            status,
            tone,
            countdown,
            clock.met_at,
            clock.superseded_at,
            clock.calendar_fallback,
        )

    if clock.met_at is not None:
        if clock.met_at > clock.due_at:
            return row("超时完成", "late")
        return row("按时完成", "done")
    if not clock.active:
        breached = "（已超时）" if clock.breached_at is not None else ""
        return row(f"已停止{breached}", "off")
    left = _countdown(app, now, clock.due_at)
    if clock.due_at < now:
        return row("已超时", "late", left)
    soon = app.calendar.workdays_between(now, clock.due_at) <= 1
    return row("进行中", "soon" if soon else "ok", left)


def _countdown(app: App, now: datetime, due: datetime) -> str:
    """``剩 3 个工作日`` / ``今日 24:00 前`` / ``已超时 2 个工作日`` (working days, calendar)."""
    cal = app.calendar
    if due < now:
        late = cal.workdays_between(due, now)
        hours = int((now - due).total_seconds() // 3600)
        return f"已超时 {late} 个工作日" if late else f"已超时 {hours} 小时"
    days = cal.workdays_between(now, due)
    if days == 0:
        hours = int((due - now).total_seconds() // 3600)
        return f"剩不足 1 个工作日（{hours} 小时）"
    return f"剩 {days} 个工作日"


@dataclass(frozen=True)
class ChatInfo:
    """The ticket's chat account as staff see it."""

    channel: str
    who: str
    window_note: str


@dataclass
class PageData:
    """Everything the page shows, read in one transaction."""

    view: TicketView
    acts: frozenset[str]
    events: list[EventRow]
    clocks: list[ClockRow]
    promised: list[Any]
    conversation: list[dict[str, Any]]
    chat: ChatInfo | None
    colleagues: list[tuple[int, str]]
    my_helper: Any = None
    departments: list[str] = field(default_factory=list)


_CHANNEL_LABELS = {"wechat": "微信公众号", "telegram": "Telegram", "terminal": "终端"}


# ------------------------------------------------------------------------------ the page


class TicketConsole:
    """The ticket page and its action routes; built once per app by :func:`routes`."""

    def __init__(self, app: App, pages: Pages) -> None:
        self.app = app
        self.pages = pages

    @cached_property
    def canned(self) -> CannedReplies:
        """The canned replies of ``config/canned_replies.yaml`` (read on first use)."""
        return load_canned_replies(self.app.settings.config_dir / "canned_replies.yaml")

    # -- work (in a thread: the database is synchronous)

    def _read(self, staff: Staff, number: str) -> PageData:
        app = self.app
        now = app.clock()
        with app.db.sessions() as s:
            ticket = visible_ticket(s, staff, number)
            view = app.tickets.get(ticket.number, session=s)
            scope = {a.value for a in allowed(staff, ticket)}
            fits = {a.value for a in possible(view)}
            acts = {a for a in scope & fits}
            acts |= {"feedback"} if "send_feedback" in acts else set()
            conversation = [
                {"at": line.at, "who": _SOURCE_LABELS[line.direction], "text": line.text,
                 "side": line.direction.value}
                for line in conversation_lines(s, ticket)
            ]  # fmt: skip
            chat = None
            identity = ticket.channel_identity
            if identity is not None:
                note = ""
                if identity.channel == "wechat":
                    last = identity.last_inbound_at
                    if last is None or now - last > PUSH_WINDOW:
                        note = (
                            "企业超过 48 小时未在微信中发消息：回复将暂存，待企业再次发消息后送达；"
                            "签收、进度、办结通知以模板消息送达。"
                        )
                name = identity.enterprise.name if identity.enterprise else None
                who = name or identity.display_name or f"用户…{identity.user_key[-4:]}"
                chat = ChatInfo(_CHANNEL_LABELS.get(identity.channel, identity.channel), who, note)
            colleagues = [
                (p.id, p.name)
                for p in s.scalars(
                    select(Commissioner)
                    .where(
                        Commissioner.department == ticket.department,
                        Commissioner.active.is_(True),
                    )
                    .order_by(Commissioner.name, Commissioner.id)
                )
                if p.id != ticket.commissioner_id
            ]
        my_helper = next((h for h in view.helpers if h.department == staff.department), None)
        if my_helper is None or my_helper.acknowledged_at is not None:
            acts.discard("acknowledge")
        if not colleagues:
            acts.discard("assign")
        return PageData(
            view=view,
            acts=frozenset(acts),
            events=[describe_event(e) for e in reversed(view.events)],
            clocks=[_clock_row(app, c, now) for c in view.clocks],
            promised=clock_lines(view, now),
            conversation=conversation,
            chat=chat,
            colleagues=colleagues,
            my_helper=my_helper,
            departments=sorted(d.name for d in app.router.departments),
        )

    def _perform(
        self, staff: Staff, number: str, action: str, form: Mapping[str, str], ip: str | None
    ) -> str:
        """Do *action* in one transaction with its audit row; return the ticket number."""
        spec = ACTIONS[action]
        app = self.app
        with app.db.begin() as s:
            ticket = visible_ticket(s, staff, number)
            if spec.act.value not in {a.value for a in allowed(staff, ticket)}:
                raise NotAllowed(ticket.number, spec.act)
            found = ticket.number
            raw = form.get("version", "")
            version = int(raw) if raw.isdigit() else -1
            app.tickets.check_version(found, version, session=s)
            detail = _call(app, action, found, form, staff, s)
            audit.record(
                s,
                f"ticket_{action}",
                at=app.clock(),
                person=staff,
                ip=ip,
                ticket_number=found,
                **{k: v for k, v in detail.items() if v is not None},
            )
        return found

    # -- HTTP

    def _unverified(self, number: str) -> bool:
        """Whether the ticket came from a chat not verified for its enterprise (未核验)."""
        with self.app.db.sessions() as s:
            return bool(s.scalar(select(Ticket.unverified).where(Ticket.number == number)))

    def _page(
        self,
        staff: Staff,
        data: PageData,
        *,
        status: int = 200,
        notice: str = "",
        tone: str = "ok",
        form: Mapping[str, str] | None = None,
        failed: str = "",
    ) -> Response:
        canned = {
            use.value: [{"title": r.title, "text": r.text} for r in self.canned.for_use(use)]
            for use in CannedUse
        }
        return self.pages.render(
            "ticket_console.html",
            status=status,
            staff=staff,
            ticket=data.view,
            data=data,
            acts=data.acts,
            actions=ACTIONS,
            canned=canned,
            notice=notice,
            tone=tone,
            form=form or {},
            failed=failed,
            unverified=self._unverified(data.view.number),
            today=self.app.today().isoformat(),
            url=f"/console/tickets/{quote(data.view.number, safe='')}",
        )

    def _missing(self, number: str) -> Response:
        return self.pages.render(
            "auth_message.html",
            status=404,
            title="找不到该诉求",
            message=f"找不到诉求 {number[:40]}，或您无权查看。",
            back="/console/",
        )

    async def show(self, request: Request, staff: Staff) -> Response:
        """``GET /console/tickets/{number}`` (``?done=<action>`` adds that action's notice)."""
        number = request.path_params["number"]
        try:
            data = await run_in_threadpool(self._read, staff, number)
        except OutOfScope:
            return self._missing(number)
        notice = ""
        spec = ACTIONS.get(request.query_params.get("done", ""))
        if spec is not None:
            no_chat = data.view.channel_identity_id is None
            notice = spec.done_no_chat if no_chat and spec.done_no_chat else spec.done
        return self._page(staff, data, notice=notice)

    async def act(self, request: Request, staff: Staff) -> Response:
        """``POST /console/tickets/{number}/{action}``: 303 back to the page on success."""
        number = request.path_params["number"]
        action = request.path_params["action"]
        form = await form_data(request)
        ip = request.client.host if request.client else None
        try:
            if action not in ACTIONS:
                await run_in_threadpool(self._read, staff, number)  # 404 before anything else
                return self._missing(number)
            done = await run_in_threadpool(self._perform, staff, number, action, form, ip)
        except OutOfScope:
            return self._missing(number)
        except NotAllowed as exc:
            return forbidden(str(exc), self.pages)
        except StaleTicket as exc:
            return await self._again(staff, number, str(exc), 409, form, action, tone="warn")
        except (TicketError, RoutingError, InputError) as exc:
            code = 400 if isinstance(exc, FormError) else 409
            return await self._again(staff, number, str(exc), code, form, action)
        where = f"/console/tickets/{quote(done, safe='')}?done={action}"
        return RedirectResponse(where, status_code=303)

    async def _again(
        self,
        staff: Staff,
        number: str,
        message: str,
        status: int,
        form: Mapping[str, str],
        action: str,
        *,
        tone: str = "error",
    ) -> Response:
        """The page again, with *message* and (but for a stale form) what was typed."""
        try:
            data = await run_in_threadpool(self._read, staff, number)
        except OutOfScope:
            return self._missing(number)
        kept = {} if tone == "warn" else form
        return self._page(
            staff, data, status=status, notice=message, tone=tone, form=kept, failed=action
        )


def routes(app: App, pages: Pages) -> list[BaseRoute]:
    """``/console/tickets/{number}`` and ``/console/tickets/{number}/{action}``."""
    page = TicketConsole(app, pages)
    show: Callable[..., Any] = require_staff(page.show)
    act: Callable[..., Any] = require_staff(page.act)
    return [
        Route("/console/tickets/{number}", show, methods=["GET"]),
        Route("/console/tickets/{number}/{action}", act, methods=["POST"]),
    ]
