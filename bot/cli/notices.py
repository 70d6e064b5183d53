"""`yxby notices …` and `yxby enterprises code`: outreach and verified binding (issue 14).

* ``yxby enterprises code USCC`` — a one-time 核验码 for binding a chat to the enterprise
  (shown once; the enterprise replies ``核验 <code>`` in the chat);
* ``yxby commissioners duties NAME TEXT`` — what a commissioner helps with (亮职责, shown on
  ``我的专员``);
* ``yxby notices send --as NAME …`` — write and queue a notice to a filtered audience
  (``--dry-run`` only counts it);
* ``yxby notices list`` — the notices and their receipt counts;
* ``yxby notices receipts ID`` — one notice's receipts (``--export FILE.csv|.xlsx``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click

__all__ = ["register"]


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
    from bot.cli.db import commissioners_group, enterprises_group

    enterprises_group.add_command(code_command)
    commissioners_group.add_command(duties_command)
    group.add_command(notices_group)


@click.command("code")
@click.argument("uscc")
@click.option("--hours", default=72, show_default=True, type=click.IntRange(1, 30 * 24),
              help="有效期（小时）。")  # fmt: skip
@click.option("--by", default="命令行", show_default=True, help="发放人（记入核验记录）。")
def code_command(uscc: str, hours: int, by: str) -> None:
    """为企业生成一次性绑定核验码：企业在对话中回复“核验 核验码”完成核验。"""
    from dataclasses import dataclass

    from bot.cli.db import opened_app
    from handoff.binding import create_code
    from handoff.calendar import SHANGHAI
    from handoff.registry import find_enterprise, validate_uscc
    from yxby.errors import InputError

    @dataclass(frozen=True)
    class _Operator:
        name: str
        department: str = ""

    wanted = validate_uscc(uscc)
    with opened_app() as app, app.db.begin() as s:
        enterprise = find_enterprise(s, wanted)
        if enterprise is None:
            raise InputError(f"企业库中没有统一社会信用代码为 {wanted} 的企业")
        code, row = create_code(
            s, enterprise, _Operator(by), now=app.clock(), valid_for=timedelta(hours=hours),
            check=False,
        )  # fmt: skip
        name, expires = enterprise.name, row.expires_at
    local = expires.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    click.echo(f"{name}（{wanted}）的绑定核验码：{code}")
    click.echo(f"有效期至 {local}，只能使用一次；请告知企业在对话中回复：核验 {code}")


@click.command("duties")
@click.argument("name")
@click.argument("duties")
@click.option("--department", default=None, help="所在部门（重名时必填）。")
def duties_command(name: str, duties: str, department: str | None) -> None:
    """登记专员的职责（亮职责）：企业回复“我的专员”时看到“可以帮您：…”。"""
    from bot.cli.db import opened_app
    from handoff.invites import find_commissioner
    from yxby.errors import InputError

    text = " ".join(duties.split())
    if not text:
        raise InputError("职责不能为空")
    if len(text) > 300:
        raise InputError(f"职责过长：{len(text)} 个字，最多 300 个字")
    with opened_app() as app, app.db.begin() as s:
        wanted = app.router.departments.canonical(department) if department else None
        person = find_commissioner(s, name, wanted)
        person.duties = text
        who = f"{person.name}（{person.department}）"
    click.echo(f"已登记{who}的职责：{text}")


@click.group("notices")
def notices_group() -> None:
    """向企业推送为企服务工作单、政策解读和工作动态，并查看回执。"""


@notices_group.command("send")
@click.option("--as", "author", required=True, help="发布人姓名（政务办或部门负责人）。")
@click.option("--author-department", default=None, help="发布人所在部门（重名时必填）。")
@click.option("--kind", required=True, help="为企服务工作单、政策解读 或 工作动态。")
@click.option("--title", required=True, help="标题（60 字以内）。")
@click.option("--body", default=None, help="正文。")
@click.option("--body-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="从 UTF-8 文本文件读取正文。")  # fmt: skip
@click.option("--link", default=None, help="链接（可选）。")
@click.option("--image", "image_url", default=None, help="图片地址（可选）。")
@click.option("--industry", default=None, help="受众：行业。")
@click.option("--type", "enterprise_kind", default=None, help="受众：企业 或 个体工商户。")
@click.option("--building", default=None, help="受众：楼宇/园区。")
@click.option("--grid", default=None, help="受众：网格。")
@click.option("--commissioner", default=None, help="受众：包保专员姓名。")
@click.option("--department", default=None, help="受众：包保专员所在部门。")
@click.option("--dry-run", is_flag=True, help="只统计受众，不发送。")
def send_command(
    author: str,
    author_department: str | None,
    kind: str,
    title: str,
    body: str | None,
    body_file: Path | None,
    link: str | None,
    image_url: str | None,
    industry: str | None,
    enterprise_kind: str | None,
    building: str | None,
    grid: str | None,
    commissioner: str | None,
    department: str | None,
    dry_run: bool,
) -> None:
    """撰写并发送通知：按条件选择受众，经企业绑定的对话渠道送达（每家企业一条回执）。"""
    from bot.cli.db import opened_app
    from handoff.invites import find_commissioner
    from handoff.notices import (
        Audience,
        NoticeLinks,
        count_audience,
        create_notice,
        send_notice,
    )
    from yxby.errors import InputError

    if body_file is not None:
        body = body_file.read_text(encoding="utf-8")
    if not body:
        raise InputError("请用 --body 或 --body-file 给出通知正文")
    with opened_app() as app:
        directory = app.router.departments

        def canonical(name: str | None) -> str | None:
            return directory.canonical(name) if name else None

        with app.db.sessions() as s:  # committed only when sent: a dry run leaves nothing
            person = find_commissioner(s, author, canonical(author_department))
            keeper = (
                find_commissioner(s, commissioner, canonical(department)).id
                if commissioner
                else None
            )
            audience = Audience.from_dict(
                {
                    "industry": industry, "kind": enterprise_kind, "building": building,
                    "grid": grid, "commissioner_id": keeper,
                    "department": None if commissioner else canonical(department),
                }
            )  # fmt: skip
            now = app.clock()
            notice = create_notice(
                s, person, kind=kind, title=title, body=body, link=link,
                image_url=image_url, audience=audience, now=now,
            )  # fmt: skip
            counted = count_audience(s, audience)
            label = audience.label(s)
            click.echo(
                f"受众（{label}）：{counted.enterprises} 家企业，其中 {counted.reachable} 家"
                f"可经对话送达（{counted.identities} 个对话账号）"
            )
            if dry_run:
                click.echo("（试运行，未发送）")
                return
            report = send_notice(
                s, notice.id, person, texts=app.replies,
                link_for=NoticeLinks(app.links).url, now=now,
            )  # fmt: skip
            s.commit()
    click.echo(
        f"已发送通知 {report.notice_id}：推送 {report.queued} 条，"
        f"{report.no_channel} 家无绑定渠道，{report.skipped} 个账号已退订或取消关注"
    )


@notices_group.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def list_command(limit: int) -> None:
    """列出通知及其回执统计（最新在前）。"""
    from bot.cli.db import opened_app
    from handoff.calendar import SHANGHAI
    from handoff.notices import list_notices, receipt_counts

    with opened_app() as app, app.db.sessions() as s:
        found = list_notices(s, limit=limit)
        if not found:
            click.echo("还没有通知")
            return
        for n in found:
            when = n.sent_at.astimezone(SHANGHAI).strftime("%m-%d %H:%M") if n.sent_at else "未发送"
            c = receipt_counts(s, n.id)
            click.echo(
                f"{n.id:>5}  {when}  【{n.kind}】{n.title}  {n.department}  "
                f"企业 {n.enterprises}｜送达 {c['sent']}｜暂存 {c['held']}｜失败 {c['failed']}"
                f"｜待发 {c['pending'] + c['retrying']}｜打开 {c['opened']}｜回复 {c['answered']}"
            )


@notices_group.command("receipts")
@click.argument("notice_id", type=int)
@click.option("--status", default=None, help="只看某一状态（sent、held、failed、pending …）。")
@click.option("--export", "target", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="导出全部回执到 .csv 或 .xlsx 文件。")  # fmt: skip
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
def receipts_command(notice_id: int, status: str | None, target: Path | None, limit: int) -> None:
    """查看一条通知的回执：每家企业、每个对话账号的送达、暂存、失败、打开与回复。"""
    from bot.cli.db import opened_app
    from handoff.notices import (
        RECEIPT_LABELS,
        export_csv,
        export_rows,
        export_xlsx,
        get_notice,
        receipt_counts,
        receipts,
    )
    from yxby.errors import InputError

    if status is not None and status not in RECEIPT_LABELS:
        raise InputError(f"未知的回执状态「{status}」，应为 {'、'.join(RECEIPT_LABELS)} 之一")
    with opened_app() as app, app.db.sessions() as s:
        notice = get_notice(s, notice_id)
        if target is not None:
            suffix = target.suffix.lower()
            if suffix not in (".csv", ".xlsx"):
                raise InputError("导出文件应以 .csv 或 .xlsx 结尾")
            rows = export_rows(s, notice.id)
            target.write_bytes(export_csv(rows) if suffix == ".csv" else export_xlsx(rows))
            click.echo(f"已导出 {len(rows) - 1} 条回执到 {target}")
            return
        counts = receipt_counts(s, notice.id)
        click.echo(f"【{notice.kind}】{notice.title}（{notice.enterprises} 家企业）")
        click.echo(
            "  ".join(f"{RECEIPT_LABELS[k]} {counts[k]}" for k in RECEIPT_LABELS if counts[k])
            + f"  已打开 {counts['opened']}  已回复 {counts['answered']}"
        )
        for r in receipts(s, notice.id, status=status, limit=limit):
            extra = f"：{r.reason}" if r.reason else ""
            click.echo(f"  {r.uscc} {r.enterprise}  {r.channel} {r.recipient}  {r.label}{extra}")
