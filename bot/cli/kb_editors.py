"""``yxby kb log|entries|cases|batch|drafts|draft …``: the editors' console pages, in a terminal.

Thin callers of :class:`handoff.editors.Editors` (the same services as
``/console/editors``). Commands that change a draft name the editor with ``--by NAME``: a
registered 编辑 or 管理员.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.cli.kb import kb_group

if TYPE_CHECKING:
    from bot.app import App
    from handoff.editors import DraftPreview, Editors
    from handoff.models import Commissioner

__all__ = ["register"]


def _dump(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


@contextmanager
def _editors() -> Iterator[tuple[App, Editors]]:
    from bot.cli.db import opened_app
    from bot.console.editors import editors_of

    with opened_app() as app:
        yield app, editors_of(app)


def _editor(app: App, name: str) -> Commissioner:
    """The registered 编辑 or 管理员 called *name* (``InputError`` otherwise)."""
    from sqlalchemy import select

    from handoff.models import Commissioner
    from handoff.scope import KNOWLEDGE_EDITORS
    from yxby.errors import InputError

    with app.db.sessions() as session:
        rows = session.scalars(
            select(Commissioner).where(Commissioner.name == name.strip(), Commissioner.active)
        ).all()
        editors = [r for r in rows if r.role in KNOWLEDGE_EDITORS]
        if not editors:
            raise InputError(
                f"「{name}」不是在职的编辑或管理员（yxby commissioners add --role 编辑）"
            )
        session.expunge(editors[0])
        return editors[0]


def _day(value: str | None) -> date | None:
    from yxby.errors import InputError

    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"日期应写作 2026-12-01，收到「{value}」") from None


# ------------------------------------------------------------------------------- log


@kb_group.command("log")
@click.option("--outcome", help="solved、unsolved、ticket、none、answered、suggested 或 handoff。")
@click.option("--entry", "entry_id", help="只看命中或答复了该条目的提问。")
@click.option("--from", "day_from", metavar="YYYY-MM-DD", help="起始日期（含）。")
@click.option("--to", "day_to", metavar="YYYY-MM-DD", help="结束日期（含）。")
@click.option("--channel", help="渠道：wechat、telegram、terminal …")
@click.option("--page", default=1, show_default=True, type=click.IntRange(1))
@click.option("--per-page", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True)
def kb_log(
    outcome: str | None,
    entry_id: str | None,
    day_from: str | None,
    day_to: str | None,
    channel: str | None,
    page: int,
    per_page: int,
    as_json: bool,
) -> None:
    """The conversation log: question → tokens → hits → decision → outcome (masked)."""
    from handoff.editors import LogFilter

    wanted = LogFilter(
        outcome=outcome,
        entry_id=entry_id,
        day_from=_day(day_from),
        day_to=_day(day_to),
        channel=channel,
        page=page,
        per_page=per_page,
    )
    with _editors() as (_, editors):
        found = editors.log(wanted)
    if as_json:
        click.echo(
            _dump(
                {
                    "total": found.total,
                    "page": found.page,
                    "pages": found.pages,
                    "lines": [
                        {
                            "id": line.id,
                            "at": line.at.isoformat(),
                            "channel": line.channel,
                            "question": line.question,
                            "tokens": list(line.tokens),
                            "action": line.action,
                            "entry_id": line.entry_id,
                            "outcome": line.outcome,
                            "ticket": line.ticket_number,
                            "hits": [
                                {
                                    "entry_id": h.entry_id,
                                    "score": h.score,
                                    "coverage": h.coverage,
                                    "matched_terms": list(h.matched_terms),
                                }
                                for h in line.hits
                            ],
                        }
                        for line in found.lines
                    ],
                }
            )
        )
        return
    click.echo(f"共 {found.total} 条，第 {found.page}/{found.pages} 页")
    for line in found.lines:
        from bot.cli.db import local_time

        click.echo(
            f"[{line.id}] {local_time(line.at)} {line.channel}  {line.outcome_label}"
            f"{'  工单 ' + line.ticket_number if line.ticket_number else ''}"
        )
        click.echo(f"    问：{line.question}")
        click.echo(f"    分词：{' / '.join(line.tokens) or '（无）'}")
        answered = f"（{line.entry_id}）" if line.entry_id else ""
        click.echo(f"    决定：{line.action_label}{answered}")
        for h in line.hits[:3]:
            click.echo(f"      {h.score:7.2f}  {h.entry_id}  命中：{'、'.join(h.matched_terms)}")


@kb_group.command("entries")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650))
@click.option("--top", default=30, show_default=True, type=click.IntRange(1, 5000))
@click.option("--json", "as_json", is_flag=True)
def kb_entries(days: int, top: int, as_json: bool) -> None:
    """Per-entry figures (shown, answered, 已解决/未解决, tickets), the worst first."""
    with _editors() as (app, editors):
        figures = editors.entry_figures(app.clock() - timedelta(days=days))[:top]
    if as_json:
        click.echo(
            _dump(
                [
                    {
                        "entry_id": f.entry_id,
                        "shown": f.shown,
                        "answered": f.answered,
                        "solved": f.solved,
                        "unsolved": f.unsolved,
                        "tickets": f.tickets,
                        "failure_rate": round(f.failure_rate, 3),
                    }
                    for f in figures
                ]
            )
        )
        return
    if not figures:
        click.echo(f"最近 {days} 天没有命中任何条目的提问。")
        return
    click.echo("出现  答复  已解决  未解决  转工单  未解决率  条目")
    for f in figures:
        click.echo(
            f"{f.shown:>4}  {f.answered:>4}  {f.solved:>6}  {f.unsolved:>6}  "
            f"{f.tickets:>6}  {f.failure_rate:>7.0%}  {f.entry_id} {f.title}"
        )


@kb_group.command("cases")
@click.option("--top", default=20, show_default=True, type=click.IntRange(1, 500))
def kb_cases(top: int) -> None:
    """Resolved tickets (masked) that can become a 服务案例 (yxby kb draft case NUMBER)."""
    with _editors() as (_, editors):
        rows = editors.resolved_tickets(limit=top)
    if not rows:
        click.echo("还没有已办结的诉求。")
    for t in rows:
        drafted = f"  已起草（草稿 {t.draft_id}）" if t.draft_id else ""
        click.echo(f"{t.number}  {t.department}  {t.title}{drafted}")
        click.echo(f"    结果：{t.result[:120]}")


@kb_group.command("batch")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--fail-under",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Exit 1 when the pass rate is below this.",
)
def kb_batch(file: Path, as_json: bool, fail_under: float) -> None:
    """Batch hit test: FILE (CSV/XLSX) has a question and the expected entry id per row."""
    from bot.cli.kb import _kb
    from handoff.editors import VERDICT_LABELS, batch_hit_test, read_batch

    rows = read_batch(file.name, file.read_bytes())
    report = batch_hit_test(_kb(), rows)
    if as_json:
        click.echo(
            _dump(
                {
                    "summary": dict(report.counts),
                    "rate": round(report.rate, 4),
                    "rows": [
                        {
                            "row": r.row,
                            "question": r.question,
                            "expected": r.expected,
                            "verdict": r.verdict,
                            "error": r.error,
                            "action": r.result.action if r.result else None,
                            "top": r.result.hits[0].entry_id
                            if r.result and r.result.hits
                            else None,
                        }
                        for r in report.rows
                    ],
                }
            )
        )
    else:
        for r in report.rows:
            if r.verdict == "pass":
                continue
            top = r.result.hits[0].entry_id if r.result and r.result.hits else "—"
            click.echo(
                f"✗ 第 {r.row} 行 {VERDICT_LABELS[r.verdict]}：{r.question}"
                f"（预期 {r.expected or '不应答复'}，第一名 {top}）"
                f"{'：' + r.error if r.error else ''}"
            )
        click.echo(report.summary())
    if report.rate < fail_under:
        raise click.exceptions.Exit(1)


# ------------------------------------------------------------------------------ drafts


@kb_group.command("drafts")
@click.option("--all", "every", is_flag=True, help="包括已写入和已放弃的草稿。")
def kb_drafts(every: bool) -> None:
    """List the knowledge drafts."""
    with _editors() as (_, editors):
        rows = editors.drafts(include_closed=every)
    if not rows:
        click.echo("没有草稿。")
    for d in rows:
        what = (
            f"「{d.entry.get('question')}」→ {d.target_entry_id}"
            if d.kind.value == "wording"
            else str(d.entry.get("title"))
        )
        click.echo(f"草稿 {d.id}  {d.kind.label}  {d.status.label}  {what}  （{d.created_by}）")


@kb_group.group("draft")
def draft_group() -> None:
    """Make, check, review and write knowledge drafts."""


def _print_preview(preview: DraftPreview) -> None:
    for issue in preview.issues:
        click.echo(f"{preview.relative}:{issue.line}: {issue.severity.label}：{issue.message}")
    click.echo(preview.patch, nl=False)
    click.echo("检查通过。" if preview.ok else f"有 {len(preview.errors)} 个错误。")


@draft_group.command("wording")
@click.argument("entry_id")
@click.option("--turn", "turn_id", type=int, help="对话记录编号（yxby kb log 方括号中的数字）。")
@click.option("--question", help="要补充的问法。")
@click.option("--by", "by", required=True, help="编辑姓名。")
def draft_wording(entry_id: str, turn_id: int | None, question: str | None, by: str) -> None:
    """Draft a new wording of ENTRY_ID from a log line or a question."""
    with _editors() as (app, editors):
        person = _editor(app, by)
        draft_id = editors.draft_wording(
            person, entry_id, turn_id=turn_id, question=question, by=person.name
        )
    click.echo(f"已起草：草稿 {draft_id}（yxby kb draft show {draft_id}）")


@draft_group.command("entry")
@click.option("--turn", "turn_id", type=int, help="对话记录编号。")
@click.option("--gap", help="未解决问题组的共同词，用顿号分隔（yxby kb gaps）。")
@click.option("--question", help="问题。")
@click.option("--by", "by", required=True, help="编辑姓名。")
def draft_entry(turn_id: int | None, gap: str | None, question: str | None, by: str) -> None:
    """Draft a new entry from a log line, a gap group or a question."""
    terms = [t for t in (gap or "").split("、") if t.strip()] or None
    with _editors() as (app, editors):
        person = _editor(app, by)
        draft_id = editors.draft_entry(
            person, turn_id=turn_id, gap=terms, question=question, by=person.name
        )
    click.echo(f"已起草：草稿 {draft_id}（yxby kb draft edit {draft_id} … 补全答案）")


@draft_group.command("case")
@click.argument("number")
@click.option("--by", "by", required=True, help="编辑姓名。")
def draft_case(number: str, by: str) -> None:
    """Draft a 服务案例 from the resolved ticket NUMBER (personal data removed)."""
    with _editors() as (app, editors):
        person = _editor(app, by)
        draft_id = editors.draft_case(person, number, by=person.name)
    click.echo(f"已起草：草稿 {draft_id}（yxby kb draft show {draft_id}）")


_FIELDS = (
    "id",
    "title",
    "questions",
    "answer",
    "department",
    "keywords",
    "tags",
    "source_document",
    "source_section",
    "source_url",
    "target_file",
    "question",
    "target_entry_id",
)


@draft_group.command("edit")
@click.argument("draft_id", type=int)
@click.option(
    "--set",
    "pairs",
    multiple=True,
    metavar="字段=值",
    help=f"可用字段：{'、'.join(_FIELDS)}；问法每行一个（用 \\n 分隔）。",
)
@click.option("--by", "by", required=True, help="编辑姓名。")
def draft_edit(draft_id: int, pairs: tuple[str, ...], by: str) -> None:
    """Change fields of a draft (it goes back to 草稿 until reviewed again)."""
    from yxby.errors import InputError

    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key.strip() not in _FIELDS:
            raise InputError(f"「{pair}」应写作 字段=值，字段为 {'、'.join(_FIELDS)} 之一")
        values[key.strip()] = value.replace("\\n", "\n")
    with _editors() as (app, editors):
        person = _editor(app, by)
        editors.update(person, draft_id, values, by=person.name)
        _print_preview(editors.preview(draft_id))


@draft_group.command("show")
@click.argument("draft_id", type=int)
def draft_show(draft_id: int) -> None:
    """Lint a draft and print the YAML patch it makes."""
    with _editors() as (_, editors):
        _print_preview(editors.preview(draft_id))


@draft_group.command("review")
@click.argument("draft_id", type=int)
@click.option("--by", "by", required=True, help="编辑姓名。")
def draft_review(draft_id: int, by: str) -> None:
    """Lint a draft and mark it 已审核 when it has no error."""
    with _editors() as (app, editors):
        person = _editor(app, by)
        editors.review(person, draft_id, by=person.name)
    click.echo(f"草稿 {draft_id} 已通过审核。")


@draft_group.command("patch")
@click.argument("draft_id", type=int)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="写入文件。")
def draft_patch(draft_id: int, output: Path | None) -> None:
    """The YAML patch of a draft (apply with git apply in the repository)."""
    with _editors() as (_, editors):
        preview = editors.preview(draft_id)
    if output is None:
        click.echo(preview.patch, nl=False)
    else:
        output.write_text(preview.patch, encoding="utf-8")
        click.echo(f"已写入 {output}")


@draft_group.command("write")
@click.argument("draft_id", type=int)
@click.option("--by", "by", required=True, help="编辑姓名。")
def draft_write(draft_id: int, by: str) -> None:
    """Write a reviewed draft into the knowledge directory (needs YXBY_KNOWLEDGE_WRITABLE)."""
    with _editors() as (app, editors):
        person = _editor(app, by)
        preview = editors.write(person, draft_id, by=person.name)
    click.echo(f"已写入 {preview.relative}；运行中的 yxby serve 会自动重新加载。")


@draft_group.command("discard")
@click.argument("draft_id", type=int)
@click.option("--by", "by", required=True, help="编辑姓名。")
def draft_discard(draft_id: int, by: str) -> None:
    """Drop a draft (kept as 已放弃)."""
    with _editors() as (app, editors):
        person = _editor(app, by)
        editors.discard(person, draft_id, by=person.name)
    click.echo(f"草稿 {draft_id} 已放弃。")


def register(group: click.Group) -> None:
    """The commands live in the ``kb`` group itself; make sure *group* has it."""
    if kb_group.name not in group.commands:
        group.add_command(kb_group)
