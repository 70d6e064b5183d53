"""`yxby db prune`: apply the retention policy of ``config/retention.yaml``."""

from __future__ import annotations

import click

__all__ = ["register"]

_LABELS = {
    "processed_messages_deleted": "删除过期的消息编号",
    "deferred_messages_deleted": "删除已送达的待答消息",
    "dialogue_turns_masked": "脱敏对话记录",
    "dialogue_turns_deleted": "删除超出保留期的对话记录",
    "transcript_lines_masked": "脱敏会话原文",
    "transcript_lines_deleted": "删除无关工单的会话原文",
}


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="只统计将删除或脱敏的记录，不修改数据库。")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON。")
def prune_command(dry_run: bool, as_json: bool) -> None:
    """按 config/retention.yaml 删除不再需要的记录、对过期的个人信息脱敏（建议每日运行）。"""
    from bot.cli.db import echo_json, opened_app
    from handoff.retention import load_retention, prune

    policy = load_retention()
    with opened_app() as app:
        report = prune(app.db, policy, app.clock(), dry_run=dry_run)
    if as_json:
        echo_json(report.as_dict())
        return
    head = "（试运行，未修改数据库）" if dry_run else ""
    click.echo(f"保留策略：{head}")
    for key, label in _LABELS.items():
        click.echo(f"  {label}：{getattr(report, key)} 条")


def register(group: click.Group) -> None:
    """Add ``db prune`` to the ``db`` group (*group* is the root command)."""
    from bot.cli.db import db_group

    db_group.add_command(prune_command)
