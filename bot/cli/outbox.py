"""`yxby outbox list|retry|cancel`: the pushes that did not go out, for operators.

A thin caller of ``handoff.outbox`` (:func:`~handoff.outbox.list_messages`,
:func:`~handoff.outbox.stuck`, :func:`~handoff.outbox.requeue`,
:func:`~handoff.outbox.cancel`); the app, its database, settings and clock come from
:func:`bot.cli.db.opened_app`. Recipients are shown masked (their last four characters).
"""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from bot.cli.db import opened_app
from bot.cli.sla import ChineseUsageError

if TYPE_CHECKING:
    from handoff.models import OutboxMessage

__all__ = ["STATUS_CHOICES", "outbox_group", "register"]

STATUS_CHOICES = ("pending", "held", "failed", "cancelled", "stuck")
"""What ``outbox list --status`` accepts; ``stuck`` is pending or held for too long."""

ACTOR = "命令行"
"""Who the CLI says requeued or cancelled a push (in ``last_error``)."""


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return "不到1分钟"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}天{hours}小时"
    if hours:
        return f"{hours}小时{mins}分"
    return f"{mins}分钟"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(width - _width(text), 0)


def _short(text: str, size: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= size else flat[:size] + "…"


def _row(message: OutboxMessage, now: datetime) -> dict[str, Any]:
    from handoff.outbox import mask_recipient

    return {
        "id": message.id,
        "channel": message.channel,
        "recipient": mask_recipient(message.recipient),
        "kind": message.kind,
        "status": message.status.value,
        "attempts": message.attempts,
        "timeouts": message.timeouts,
        "created_at": message.created_at.isoformat(),
        "age_seconds": int((now - message.created_at).total_seconds()),
        "next_attempt_at": message.next_attempt_at.isoformat() if message.next_attempt_at else None,
        "last_error": message.last_error,
    }


_HEADERS = ("编号", "渠道", "接收人", "类型", "状态", "尝试", "已等待", "最近错误")


def _print_table(rows: list[dict[str, Any]]) -> None:
    from handoff.models import OutboxStatus
    from handoff.outbox import channel_label, status_label

    cells = [
        (
            f"#{r['id']}",
            channel_label(r["channel"]),
            r["recipient"],
            r["kind"],
            status_label(OutboxStatus(r["status"])),
            str(r["attempts"]),
            _age(r["age_seconds"]),
            _short(r["last_error"] or "—"),
        )
        for r in rows
    ]
    widths = [max(_width(c[i]) for c in [_HEADERS, *cells]) for i in range(len(_HEADERS))]
    for line in [_HEADERS, *cells]:
        click.echo("  ".join(_pad(cell, w) for cell, w in zip(line, widths, strict=True)).rstrip())


@click.group("outbox")
def outbox_group() -> None:
    """推送队列：查看未送达的推送，重新发送或取消。"""


@outbox_group.command("list")
@click.option(
    "--status",
    type=click.Choice(STATUS_CHOICES),
    help="只看某种状态：pending 待发送、held 待用户留言、failed 失败、cancelled 已取消、"
    "stuck 积压（超过告警时限仍未送达）。默认：所有未送达的（待发送、待用户留言、失败）。",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="输出 JSON。")
def list_command(status: str | None, limit: int, as_json: bool) -> None:
    """列出推送（最新的在前；积压的按排队先后）。"""
    from handoff.db import read_only
    from handoff.models import OutboxStatus
    from handoff.outbox import list_messages, stuck

    with opened_app() as app, app.db.sessions() as session:
        read_only(session)
        now = app.clock()
        if status == "stuck":
            found = stuck(session, now, app.delivery, limit=limit)
        else:
            wanted = [OutboxStatus(status)] if status else None
            found = list_messages(session, wanted, limit=limit)
        rows = [_row(m, now) for m in found]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    elif not rows:
        click.echo("（没有符合条件的推送）")
    else:
        _print_table(rows)


def _parse_ids(values: tuple[str, ...]) -> list[int]:
    ids = []
    for value in values:
        text = value.strip().lstrip("#")
        if not text.isdigit() or int(text) < 1:
            raise ChineseUsageError(f"推送编号应为正整数（如 12 或 #12），收到“{value}”")
        ids.append(int(text))
    return ids


@outbox_group.command("retry")
@click.argument("values", nargs=-1, metavar="编号…")
@click.option("--failed", "all_failed", is_flag=True, help="重新发送所有失败的推送。")
def retry_command(values: tuple[str, ...], all_failed: bool) -> None:
    """把失败或待用户留言的推送重新放回队列，立即发送（尝试次数保留）。"""
    from handoff.outbox import requeue, requeue_failed

    ids = _parse_ids(values)
    if bool(ids) == all_failed:
        raise ChineseUsageError("请给出推送编号，或用 --failed 重发所有失败的推送（二者选一）")
    with opened_app() as app, app.db.begin() as session:
        now = app.clock()
        if all_failed:
            rows = requeue_failed(session, now, actor=ACTOR)
        else:
            rows = requeue(session, ids, now, actor=ACTOR)
        done = [row.id for row in rows]
    if not done:
        click.echo("没有失败的推送。")
    else:
        click.echo(f"已重新排队 {len(done)} 条：" + "、".join(f"#{i}" for i in done))


@outbox_group.command("cancel")
@click.argument("values", nargs=-1, metavar="编号…")
def cancel_command(values: tuple[str, ...]) -> None:
    """取消尚未送达的推送（不再发送）。"""
    from handoff.outbox import cancel

    ids = _parse_ids(values)
    if not ids:
        raise ChineseUsageError("请给出要取消的推送编号（如 yxby outbox cancel 12）")
    with opened_app() as app, app.db.begin() as session:
        rows = cancel(session, ids, app.clock(), actor=ACTOR)
        done = [row.id for row in rows]
    click.echo(f"已取消 {len(done)} 条：" + "、".join(f"#{i}" for i in done))


def register(group: click.Group) -> None:
    """Add the ``outbox`` group to *group*."""
    group.add_command(outbox_group)
