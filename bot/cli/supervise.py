"""`yxby supervise …`: 政务办's 督办, 回访 and the 联席会议 (issue 12).

* ``urges`` — the 督办 suggestions of the SLA tick; ``urges confirm ID…`` urges as suggested;
  ``urge NUMBER`` is 政务办's own 督办 (level suggested unless ``--level``);
* ``callbacks --from --to`` — the callback list; ``callback NUMBER`` records a phone callback;
* ``meeting propose|schedule|agenda|opinion|decide|minutes`` — the 联席会议.

Thin callers of :class:`handoff.supervision.Supervision` and the ticket service.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.cli.db import echo_json, local_time, opened_app
from bot.cli.sla import ChineseUsageError

if TYPE_CHECKING:
    from handoff.supervision import MeetingView, Supervision

__all__ = ["register", "supervise_group"]


def _day(value: str | None, what: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ChineseUsageError(f"{what}「{value}」不是有效日期（格式：2026-12-31）") from None


@contextmanager
def _supervision() -> Iterator[Supervision]:
    from handoff.supervision import Supervision, load_supervision_settings

    with opened_app() as app:
        settings = load_supervision_settings(app.settings.config_dir / "supervision.yaml")
        yield Supervision(app.tickets, settings)


_json_option = click.option("--json", "as_json", is_flag=True, help="输出 JSON。")
_actor_option = click.option("--actor", required=True, help="操作人姓名。")


@click.group("supervise")
def supervise_group() -> None:
    """政务办：督办/催办、回访调查与联席会议。"""


# ---------------------------------------------------------------------------- 督办


@supervise_group.group("urges", invoke_without_command=True)
@_json_option
@click.pass_context
def urges_group(ctx: click.Context, as_json: bool) -> None:
    """待确认的督办建议（由 yxby sla tick 为超期工单生成）；confirm 确认督办。"""
    if ctx.invoked_subcommand is not None:
        return
    with _supervision() as sup:
        found = sup.suggestions()
    if as_json:
        echo_json([s.to_dict() for s in found])
        return
    if not found:
        click.echo("没有待确认的督办建议。")
        return
    for s in found:
        click.echo(
            f"[{s.id}] {s.level.label}  {s.number}  {s.department}  "
            f"{s.clock_kind.label}时限 {local_time(s.due_at)} 到期，超期 {s.days_late} 个工作日  "
            f"{s.title}"
        )


@urges_group.command("confirm")
@click.argument("ids", nargs=-1, required=True, type=int)
@_actor_option
@click.option("--note", help="督办意见（默认按建议生成）。")
def confirm_command(ids: tuple[int, ...], actor: str, note: str | None) -> None:
    """按建议督办（可一次确认多条）：通知承办专员和部门负责人。"""
    with _supervision() as sup:
        for sid in ids:
            view = sup.confirm(sid, actor=actor, note=note)
            level = view.events[-1].data.get("level", "")
            click.echo(
                f"已督办 {view.number}（{_level_label(level)}），承办专员和部门负责人已收到通知"
            )


def _level_label(value: str) -> str:
    from handoff.models import UrgeLevel

    return UrgeLevel(value).label if value else "催办"


@supervise_group.command("urge")
@click.argument("number")
@_actor_option
@click.option("--level", help="督办等级：蓝、橙、红（默认按超期程度建议）。")
@click.option("--note", help="督办意见。")
def urge_command(number: str, actor: str, level: str | None, note: str | None) -> None:
    """政务办督办一个工单。"""
    with _supervision() as sup:
        view = sup.urge(number, actor=actor, level=level, note=note)
    level_value = view.events[-1].data.get("level", "")
    click.echo(
        f"已督办 {view.number}（{_level_label(level_value)}），承办专员和部门负责人已收到通知"
    )


# --------------------------------------------------------------------------- 回访


@supervise_group.command("callbacks")
@click.option("--from", "start", required=True, help="期间开始日期（含），如 2026-12-01。")
@click.option("--to", "end", required=True, help="期间结束日期（含）。")
@click.option("--percent", type=float, help="其余已结案工单的抽样比例（0–100，默认按配置）。")
@click.option("--seed", help="抽样种子（默认按配置；同一种子与期间结果相同）。")
@_json_option
def callbacks_command(
    start: str, end: str, percent: float | None, seed: str | None, as_json: bool
) -> None:
    """回访清单：期间内企业评价「不满意」的全部工单，及其余已结案工单的随机抽样。"""
    since, until = _day(start, "--from"), _day(end, "--to")
    assert since is not None and until is not None
    with _supervision() as sup:
        found = sup.callback_list(since, until, percent=percent, seed=seed)
    if as_json:
        echo_json([c.to_dict() for c in found])
        return
    if not found:
        click.echo("该期间没有需要回访的工单。")
        return
    for c in found:
        tried = f"  已拨打未接通 {c.attempts} 次" if c.attempts else ""
        who = c.enterprise or "（未登记企业）"
        click.echo(f"{c.number}  [{c.why}]  {c.department}  {who}  {c.title}{tried}")


@supervise_group.command("callback")
@click.argument("number")
@_actor_option
@click.option("--reached/--not-reached", default=True, help="是否接通（默认已接通）。")
@click.option("--reply", "on_reply", help="对答复的满意度：满意、基本满意、不满意。")
@click.option("--result", "on_result", help="对办理结果的满意度：满意、基本满意、不满意。")
@click.option("--note", help="回访记录。")
def callback_command(
    number: str,
    actor: str,
    reached: bool,
    on_reply: str | None,
    on_result: str | None,
    note: str | None,
) -> None:
    """记录政务办对一个工单的电话回访。"""
    with opened_app() as app:
        view = app.tickets.record_callback(
            number,
            reached=reached,
            actor=actor,
            reply_satisfaction=on_reply,
            result_satisfaction=on_result,
            note=note,
        )
    if reached:
        click.echo(f"已记录 {view.number} 的回访：答复{on_reply}，办理结果{on_result}")
    else:
        click.echo(f"已记录 {view.number} 的回访：未接通")


# ------------------------------------------------------------------------ 联席会议


@supervise_group.group("meeting")
def meeting_group() -> None:
    """联席会议：召集、议程、部门意见、会议决定与会议纪要。"""


def _print_meeting(meeting: MeetingView) -> None:
    click.echo(f"[{meeting.id}] {meeting.held_on}  {meeting.title}  {meeting.doc_number or ''}")
    if not meeting.items:
        click.echo("  （议程为空）")
    for n, item in enumerate(meeting.items, start=1):
        click.echo(f"  {n}. {item.number}  {item.title}  承办：{item.department}")
        click.echo(
            f"     提请理由：{item.reason}（{item.proposed_by}，{local_time(item.proposed_at)}）"
        )
        for dept in item.involved:
            said = item.opinions.get(dept)
            click.echo(f"     {dept}意见：{said['opinion'] if said else '（未提交）'}")
        if item.decided:
            helpers = "、".join(item.decided_helpers) or "无"
            click.echo(
                f"     决定：牵头 {item.lead_department}；协办 {helpers}；"
                f"时限 {local_time(item.deadline)}"
            )
        else:
            click.echo("     决定：（未决定）")


@meeting_group.command("schedule")
@click.option("--date", "held_on", required=True, help="会议日期，如 2026-12-10。")
@click.option("--title", help="会议名称（默认：优化营商环境工作联席会议（日期））。")
@click.option("--doc-number", help="纪要文号，如〔2026〕3号。")
@click.option("--attend", "attendance", multiple=True, help="出席人员（可多次给出）。")
def schedule_command(
    held_on: str, title: str | None, doc_number: str | None, attendance: tuple[str, ...]
) -> None:
    """召集联席会议：等待中的提请事项列入议程。"""
    day = _day(held_on, "--date")
    assert day is not None
    with _supervision() as sup:
        meeting = sup.schedule(day, title=title, doc_number=doc_number, attendance=attendance)
    click.echo(f"已召集联席会议 {meeting.id}：{meeting.title}，议程 {len(meeting.items)} 项")


@meeting_group.command("agenda")
@click.option("--meeting", "meeting_id", type=int, help="会议编号（默认：下一次会议）。")
@_json_option
def agenda_command(meeting_id: int | None, as_json: bool) -> None:
    """会议议程：提请事项、各部门意见与会议决定；以及等待召集会议的事项。"""
    with _supervision() as sup:
        meeting = sup.meeting(meeting_id)
        waiting = sup.waiting()
    if as_json:
        echo_json(
            {
                "meeting": meeting.to_dict() if meeting else None,
                "waiting": [i.to_dict() for i in waiting],
            }
        )
        return
    if meeting is None:
        click.echo("还没有召集联席会议（yxby supervise meeting schedule --date …）。")
    else:
        _print_meeting(meeting)
    if waiting:
        click.echo(f"等待召集会议的提请事项 {len(waiting)} 项：")
        for item in waiting:
            click.echo(f"  {item.number}  {item.title}  提请理由：{item.reason}")


@meeting_group.command("propose")
@click.argument("number")
@click.option("--reason", required=True, help="提请理由（承办单位会同有关部门研判的意见）。")
@_actor_option
def propose_command(number: str, reason: str, actor: str) -> None:
    """提请联席会议：工单列入下一次会议议程（尚未召集时等待召集）。"""
    with opened_app() as app:
        view = app.tickets.escalate(number, reason=reason, actor=actor)
    data = view.events[-1].data
    where = f"「{data['meeting']}」议程" if data.get("meeting") else "等待召集的联席会议议程"
    click.echo(f"已提请联席会议：{view.number} 列入{where}")


@meeting_group.command("opinion")
@click.argument("number")
@click.option("--department", required=True, help="提交意见的部门（承办或协办部门）。")
@click.option("--opinion", required=True, help="部门意见。")
@_actor_option
def opinion_command(number: str, department: str, opinion: str, actor: str) -> None:
    """记录承办或协办部门对提请事项的意见。"""
    with opened_app() as app:
        view = app.tickets.record_opinion(
            number, department=department, opinion=opinion, actor=actor
        )
    click.echo(f"已记录{department}对 {view.number} 的意见")


@meeting_group.command("decide")
@click.argument("number")
@click.option("--lead", "lead", required=True, help="牵头部门。")
@click.option("--helpers", default="", help="协办部门，用顿号或逗号分隔。")
@click.option("--deadline", required=True, help="完成时限（日期，当日 24:00）。")
@click.option("--decision", help="会议决定的内容。")
@_actor_option
def decide_command(
    number: str, lead: str, helpers: str, deadline: str, decision: str | None, actor: str
) -> None:
    """记录联席会议对一个提请事项的决定（牵头部门、协办部门、完成时限），新时限开始计时。"""
    import re

    day = _day(deadline, "--deadline")
    assert day is not None
    names = [n for n in re.split(r"[、,，\s]+", helpers) if n]
    with opened_app() as app:
        view = app.tickets.decide(
            number,
            lead_department=lead,
            helpers=names,
            deadline=day,
            decision=decision,
            actor=actor,
        )
    click.echo(
        f"已记录联席会议决定：{view.number} 由{view.escalation_lead_department}牵头，"
        f"时限 {local_time(view.escalation_deadline)}"
    )


@meeting_group.command("minutes")
@click.option("--meeting", "meeting_id", type=int, help="会议编号（默认：下一次会议）。")
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="输出的 Word 文件（.docx）。",
)
def minutes_command(meeting_id: int | None, output: Path) -> None:
    """导出会议纪要（Word，公文格式）。"""
    if output.suffix.lower() != ".docx":
        raise ChineseUsageError(f"会议纪要应保存为 .docx 文件，收到「{output.name}」")
    with _supervision() as sup:
        data = sup.minutes(meeting_id)
    tmp = output.with_name(output.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(output)
    click.echo(f"已导出会议纪要：{output}")


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
    group.add_command(supervise_group)
