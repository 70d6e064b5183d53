"""`yxby tickets …` (list, show and every state change) and `yxby sla tick`.

Every command gets its ticket service, database, router and clock from
:func:`bot.cli.db.opened_app` (``build_app``); none reads the wall clock or a config file
itself. The state changes are declared once each in :data:`ACTIONS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import click

from bot.cli.db import echo_json, local_time, opened_app
from bot.cli.sla import ChineseUsageError, parse_moment, sla_group

if TYPE_CHECKING:
    from bot.app import App
    from handoff.tickets import TicketView

__all__ = ["ACTIONS", "ActionCommand", "ActionOption", "register", "tickets_group"]


def _due(clock: Any) -> str:
    """The deadline as the CLI shows it, marked when counted without a published schedule."""
    from bot.replies import PROVISIONAL

    return local_time(clock.due_at) + (f"（{PROVISIONAL}）" if clock.calendar_fallback else "")


def _clock_status(clock: Any, now: datetime) -> str:
    if clock.met_at is not None:
        late = "（超时）" if clock.late else ""
        return f"已完成 {local_time(clock.met_at)}{late}"
    if not clock.active:
        return f"已作废 {local_time(clock.superseded_at)}"
    if clock.breached_at is not None or clock.due_at < now:
        return "已超时"
    return "进行中"


def _print_ticket(view: TicketView, now: datetime, *, full: bool) -> None:
    click.echo(f"工单 {view.number}  【{view.state.label}】")
    click.echo(f"标题：{view.title}")
    if full and view.description != view.title:
        click.echo(f"内容：{view.description}")
    if view.enterprise_uscc:
        click.echo(f"企业：{view.enterprise_name}（{view.enterprise_uscc}）")
    click.echo(f"承办：{view.department}（规则 {view.route_rule}：{view.route_reason}）")
    click.echo(f"专员：{view.commissioner or '未指定'}")
    if view.helpers:
        parts = [
            f"{h.department}（已确认 {local_time(h.acknowledged_at)}）"
            if h.acknowledged_at
            else f"{h.department}（待确认）"
            for h in view.helpers
        ]
        click.echo(f"协办：{'、'.join(parts)}")
    if view.escalation_lead_department:
        click.echo(
            f"联席会议：牵头 {view.escalation_lead_department}，"
            f"时限 {local_time(view.escalation_deadline)}"
        )
    if view.reopen_count:
        click.echo(f"重办：{view.reopen_count} 次")
    if view.result:
        click.echo(f"结果：{view.result}")
    for survey in view.surveys:
        remark = f"（{survey.comment}）" if survey.comment else ""
        click.echo(f"回访：{survey.result.value}{remark}  {local_time(survey.at)}")
    if not full:
        return
    click.echo("时限：")
    for clock in view.clocks:
        click.echo(
            f"  {clock.kind.label}（{clock.department}）  截止 {_due(clock)}  "
            f"{_clock_status(clock, now)}"
        )
    click.echo("记录：")
    from bot.events import describe_event

    for event in view.events:
        row = describe_event(event)  # worded as the console words it
        extra = "".join(f"  {part}" for part in (row.change, row.detail) if part)
        click.echo(f"  {local_time(event.at)}  {event.actor}  {row.title}{extra}")


def _moment(text: str, ctx: click.Context) -> datetime:
    try:
        return parse_moment(text)
    except ValueError:
        raise ChineseUsageError(
            f"无法识别的时间“{text}”，应为 ISO 8601（如 2026-11-26 09:00）", ctx
        ) from None


def _done(view: TicketView, as_json: bool, what: str) -> None:
    if as_json:
        echo_json(view.to_dict())
    else:
        click.echo(f"工单 {view.number} {what}（当前：{view.state.label}）")


def _need(value: str | None, option: str, ctx: click.Context) -> str:
    if value is None or not value.strip():
        raise ChineseUsageError(f"缺少 {option}", ctx)
    return value


# ---------------------------------------------------------------------------- group


@click.group("tickets")
def tickets_group() -> None:
    """诉求工单：查看与办理（签收、办结、反馈、回访、转派、协同、联席会议、重办）。"""


def _actor_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--actor", help="操作人姓名（必填，写入工单记录）。")(func)


def _json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="输出 JSON。")(func)


def _state_help() -> str:
    from handoff.models import TicketState

    # a space inside each pair lets click wrap between words, never inside one
    pairs = "、".join(f"{s.label} {s.value}" for s in TicketState)
    return f"按状态筛选，中文名或英文值均可：{pairs}。"


class _StateOption(click.Option):
    """``--state``, whose help lists the states: built when help is shown, so that
    importing the CLI (every ``yxby ask``) does not load the models."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = _state_help()
        return super().get_help_record(ctx)


@tickets_group.command("list")
@click.option("--state", cls=_StateOption, help="按状态筛选。")
@click.option("--department", help="按承办（牵头）部门筛选。")
@click.option("--overdue", is_flag=True, help="只看已超时仍未完成的工单。")
@click.option("--now", "now_text", help="判断超时所用的时间（默认当前时间；不带时区按北京时间）。")
@click.option("--limit", type=click.IntRange(min=1), help="最多显示条数。")
@_json_option
@click.pass_context
def list_command(
    ctx: click.Context,
    state: str | None,
    department: str | None,
    overdue: bool,
    now_text: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """列出工单（最新的在前）。"""
    now = _moment(now_text, ctx) if now_text else None
    with opened_app() as app:
        views = app.tickets.list(
            state=state, department=department, overdue=overdue, now=now, limit=limit
        )
    if as_json:
        echo_json([v.to_dict() for v in views])
        return
    if not views:
        click.echo("（没有符合条件的工单）")
        return
    for view in views:
        nxt = view.next_due()
        due = f"{nxt.kind.label}截止 {_due(nxt)}" if nxt else "—"
        click.echo(
            f"{view.number}  {view.state.label:<6}  {view.department:<8}  {due}  {view.title}"
        )


@tickets_group.command("show")
@click.argument("number")
@_json_option
def show_command(number: str, as_json: bool) -> None:
    """查看一张工单：时限与全部记录。"""
    with opened_app() as app:
        view = app.tickets.get(number)
        now = app.clock()
    if as_json:
        echo_json(view.to_dict())
    else:
        _print_ticket(view, now, full=True)


@tickets_group.command("create")
@click.argument("text")
@click.option("--department", help="承办部门；不给则按分派规则自动决定。")
@click.option("--enterprise", "uscc", help="企业统一社会信用代码（须已在企业库中）。")
@click.option("--title", help="标题（默认取诉求内容的第一行）。")
@_actor_option
@_json_option
@click.pass_context
def create_command(
    ctx: click.Context,
    text: str,
    department: str | None,
    uscc: str | None,
    title: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """新建工单。"""
    from handoff.tickets import MANUAL_RULE

    who = _need(actor, "--actor（操作人）", ctx)
    with opened_app() as app:
        if department:
            rule, reason = MANUAL_RULE, f"由{who.strip()}在命令行指定"
        else:
            department, rule, reason = _route(app, text, uscc)
        view = app.tickets.create(
            text,
            department=department,
            rule=rule,
            reason=reason,
            actor=who,
            title=title,
            enterprise_uscc=uscc,
        )
    if as_json:
        echo_json(view.to_dict())
        return
    click.echo(f"已创建工单 {view.number}，承办：{view.department}（{view.route_reason}）")
    for clock in view.running_clocks():
        click.echo(f"  {clock.kind.label}截止：{_due(clock)}")


def _route(app: App, text: str, uscc: str | None) -> tuple[str, str, str]:
    """Department, rule and reason from the router (with registry facts for *uscc*)."""
    from routing import RouteFacts

    facts: dict[str, Any] = {}
    if uscc:
        from handoff.db import read_only
        from handoff.registry import route_facts
        from yxby.errors import InputError

        with app.db.sessions() as session:
            found = route_facts(read_only(session), uscc)
        if found is None:
            raise InputError(f"企业库中没有统一社会信用代码为 {uscc} 的企业")
        facts = found
    decision = app.router.route(RouteFacts(text, **facts))
    return decision.department, str(decision.rule.value), decision.reason


# ----------------------------------------------------------------- state changes


def _deadline(value: str, ctx: click.Context) -> datetime | date:
    text = value.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return parse_moment(text)
    except ValueError:
        raise ChineseUsageError(
            f"无法识别的时限“{value}”，应为日期（如 2026-12-31）或时间（如 2026-12-31 18:00）", ctx
        ) from None


def _names(value: str, ctx: click.Context) -> list[str]:
    return [n for n in re.split(r"[,，、\s]+", value) if n]


@dataclass(frozen=True)
class ActionOption:
    """One option of a state-change command, passed to the service as keyword *name*."""

    flag: str
    name: str
    help: str
    missing: str | None = None
    """``缺少 …`` text when the option is required (exit 2 when it is not given)."""
    convert: Callable[[str, click.Context], Any] | None = None


@dataclass(frozen=True)
class ActionCommand:
    """``yxby tickets NAME NUMBER [options] --actor 姓名 [--json]``: one service call."""

    name: str
    help: str
    method: str
    """The :class:`~handoff.tickets.TicketService` method it calls."""
    done: str | Callable[[TicketView, Mapping[str, Any]], str]
    """What the one-line answer says was done (from the view and the given options)."""
    options: tuple[ActionOption, ...] = ()

    def command(self) -> click.Command:
        """The click command: check options in order, then the actor, call, answer."""

        def callback(number: str, actor: str | None, as_json: bool, **given: Any) -> None:
            ctx = click.get_current_context()
            args: dict[str, Any] = {}
            for option in self.options:
                value = given[option.name]
                if option.missing is not None:
                    value = _need(value, option.missing, ctx)
                if value is not None and option.convert is not None:
                    value = option.convert(value, ctx)
                args[option.name] = value
            who = _need(actor, "--actor（操作人）", ctx)
            with opened_app() as app:
                view = getattr(app.tickets, self.method)(number, actor=who, **args)
            what = self.done if isinstance(self.done, str) else self.done(view, given)
            _done(view, as_json, what)

        params: list[click.Parameter] = [click.Argument(["number"])]
        params += [click.Option([o.flag, o.name], help=o.help) for o in self.options]
        params += [
            click.Option(["--actor"], help="操作人姓名（必填，写入工单记录）。"),
            click.Option(["--json", "as_json"], is_flag=True, help="输出 JSON。"),
        ]
        return click.Command(self.name, callback=callback, params=params, help=self.help)


def _opt(flag: str, name: str, help: str, missing: str | None = None, **kw: Any) -> ActionOption:
    return ActionOption(flag, name, help, missing, **kw)


ACTIONS: tuple[ActionCommand, ...] = (
    ActionCommand(
        "accept",
        "签收（已与企业对接）。",
        "accept",
        "已签收",
        (
            _opt(
                "--commissioner",
                "commissioner",
                "签收的专员（须为承办部门的在岗专员），同时指定为本工单专员。",
            ),
        ),
    ),
    ActionCommand("start", "开始办理（联席会议后继续办理也用此命令）。", "start", "开始办理"),
    ActionCommand(
        "resolve",
        "办结，记录办理结果。",
        "resolve",
        "已办结",
        (_opt("--result", "result", "办理结果（必填）。", "--result（办理结果）"),),
    ),
    ActionCommand(
        "feedback",
        "已向企业反馈办理结果。",
        "send_feedback",
        "已反馈",
        (_opt("--note", "note", "反馈方式或备注。"),),
    ),
    ActionCommand(
        "survey",
        "记录满意度回访结果。",
        "record_survey",
        lambda view, given: f"已记录回访：{given['result'].strip()}",
        (
            _opt(
                "--result",
                "result",
                "满意、基本满意 或 不满意（必填）。",
                "--result（满意、基本满意 或 不满意）",
            ),
            _opt("--comment", "comment", "企业意见。"),
        ),
    ),
    ActionCommand(
        "close",
        "关闭工单。",
        "close",
        "已关闭",
        (_opt("--reason", "reason", "说明（如企业未回应回访）。"),),
    ),
    ActionCommand(
        "escalate",
        "提请优化营商环境工作联席会议。",
        "escalate",
        "已提请联席会议",
        (
            _opt(
                "--lead",
                "lead_department",
                "联席会议明确的牵头部门（必填）。",
                "--lead（牵头部门）",
            ),
            _opt(
                "--deadline",
                "deadline",
                "联席会议明确的完成时限：日期（当日 24:00）或时间（必填）。",
                "--deadline（完成时限）",
                convert=_deadline,
            ),
            _opt("--reason", "reason", "提请理由。"),
        ),
    ),
    ActionCommand(
        "transfer",
        "转派/退单到另一部门（对接时限重新计算）。",
        "transfer",
        lambda view, given: f"已转派至{view.department}",
        (
            _opt("--to", "to_department", "转派到的部门（必填）。", "--to（部门）"),
            _opt("--reason", "reason", "转派/退单理由（必填）。", "--reason（理由）"),
        ),
    ),
    ActionCommand(
        "assist",
        "增加协办部门（协同办理）。",
        "add_helpers",
        lambda view, given: f"协办部门：{'、'.join(h.department for h in view.helpers)}",
        (
            _opt(
                "--departments",
                "departments",
                "协办部门，逗号分隔（必填）。",
                "--departments",
                convert=_names,
            ),
            _opt("--reason", "reason", "说明。"),
        ),
    ),
    ActionCommand(
        "ack",
        "协办部门确认接收。",
        "acknowledge_helper",
        "协办已确认",
        (_opt("--department", "department", "确认协办的部门（必填）。", "--department（部门）"),),
    ),
    ActionCommand(
        "reopen",
        "企业不满意时重办（限一次，时限重新计算）。",
        "reopen",
        "已重办",
        (_opt("--reason", "reason", "重办理由。"),),
    ),
)
"""Every state-change command, declared once: name, help, options, service method."""

for _action in ACTIONS:
    tickets_group.add_command(_action.command())


# ------------------------------------------------------------------------- sla tick


@click.command("tick")
@click.option("--now", "now_text", help="以此时间运行（默认当前时间；不带时区按北京时间）。")
@_json_option
@click.pass_context
def tick_command(ctx: click.Context, now_text: str | None, as_json: bool) -> None:
    """检查全部时限：到期前提醒、标记超时并通报负责人和政务办（可重复运行）。"""
    at = _moment(now_text, ctx) if now_text else None
    with opened_app() as app:
        now = at or app.clock()
        report = app.tickets.tick(now)
    if as_json:
        echo_json({"now": now.isoformat(), **report.to_dict()})
        return
    click.echo(
        f"提醒 {report.reminders} 条；新超时 {report.breaches} 个；超时通报 {report.notices} 条"
    )
    if report.unaddressed:
        click.echo(
            f"注意：有 {report.unaddressed} 个时限找不到可通知的人员，"
            "请用 yxby commissioners add 登记专员、负责人和政务办人员",
            err=True,
        )


def register(group: click.Group) -> None:
    """Add ``tickets`` to *group* and ``tick`` to ``sla``."""
    group.add_command(tickets_group)
    sla_group.add_command(tick_command)
