"""`yxby ask` and `yxby kb …`: the knowledge base from the command line."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot.cli.doctor import DAY, TODAY_ENV

if TYPE_CHECKING:
    from knowledge import Decision, KnowledgeBase

__all__ = ["print_decision", "register"]


def _kb(path: Path | None = None) -> KnowledgeBase:
    """The knowledge base as the server builds it, reusing the on-disk token cache."""
    from bot.cli.doctor import current_day
    from knowledge.cache import kb_cache_dir
    from knowledge.live import LiveKnowledge
    from yxby.paths import entries_dir

    day = current_day()
    return LiveKnowledge(path or entries_dir(), today=lambda: day, cache_dir=kb_cache_dir())


def _dump(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)


def print_decision(d: Decision, prefix: str = "") -> None:
    """Print a decision as readable Chinese text."""
    top = d.top
    if d.action == "answer" and top is not None:
        click.echo(prefix + top.entry.answer)
        click.echo(
            f"（来源：{top.entry.source.document}"
            f"{' ' + top.entry.source.section if top.entry.source.section else ''}；"
            f"责任部门：{top.entry.department}）"
        )
        if d.suggestions:
            click.echo("相关问题：" + "；".join(h.entry.title for h in d.suggestions))
    elif d.action == "suggest":
        click.echo(prefix + "您是不是想问：")
        for i, h in enumerate(d.suggestions, 1):
            click.echo(f"  {i}. {h.entry.title}")
    elif d.action == "handoff":
        click.echo(prefix + "好的，正在为您转接企业服务专员。")
    else:
        click.echo(prefix + "抱歉，知识库中暂时没有找到答案，可以为您转交企业服务专员处理。")


@click.command("ask")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.argument("text", nargs=-1, required=True)
def ask(text: tuple[str, ...], as_json: bool) -> None:
    """Ask the knowledge base a question, as the bot would."""
    from yxby.errors import InputError

    kb = _kb()
    query = " ".join(text)
    try:
        decision = kb.decide(query)
    except InputError as exc:
        if as_json:
            click.echo(_dump({"error": str(exc)}))
        raise click.exceptions.Exit(_input_error(str(exc))) from None
    if as_json:
        click.echo(_dump(decision.as_dict()))
    else:
        print_decision(decision)


def _input_error(message: str) -> int:
    click.echo(f"错误：{message}", err=True)
    return 2


@click.group("kb")
def kb_group() -> None:
    """Maintain the 企业服务知识库 (lint, hit-test, evaluate)."""


@kb_group.command("lint")
@click.option("--today", type=DAY, envvar=TODAY_ENV, hidden=True)
@click.argument("path", required=False, type=click.Path(path_type=Path))
def kb_lint(path: Path | None, today: date | None) -> None:
    """Check entries: schema, duplicates, departments, expiry, answer size, YAML.

    Every mistake of every file is reported in one run; exit 1 when there is an error.
    """
    from bot.cli.doctor import current_day
    from knowledge.lint import Severity, lint
    from routing import load_departments
    from yxby.paths import entries_dir

    target = path or entries_dir()
    issues = lint(target, departments=load_departments().alias_map(), today=current_day(today))
    for issue in issues:
        click.echo(str(issue), err=issue.severity is Severity.ERROR)
    errors = sum(1 for i in issues if i.severity is Severity.ERROR)
    warnings = len(issues) - errors
    click.echo(f"{target}：{errors} 个错误，{warnings} 个警告")
    if errors:
        raise click.exceptions.Exit(1)


@kb_group.command("test")
@click.option("--limit", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--json", "as_json", is_flag=True)
@click.argument("text", nargs=-1, required=True)
def kb_test(text: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Show the top hits for TEXT with scores and matched terms."""
    from yxby.errors import InputError

    kb = _kb()
    query = " ".join(text)
    try:
        decision = kb.decide(query, limit=limit)
    except InputError as exc:
        raise click.exceptions.Exit(_input_error(str(exc))) from None
    if as_json:
        payload: dict[str, Any] = decision.as_dict()
        payload["tokens"] = list(decision.tokens)
        payload["hits"] = [
            {
                **h.as_dict(),
                "coverage": round(h.coverage, 3),
                "matched_terms": list(h.matched_terms),
                "missing_term": h.missing_term or None,
                "missing_share": round(h.missing_share, 3),
            }
            for h in decision.hits
        ]
        click.echo(_dump(payload))
        return
    click.echo(f"分词：{' / '.join(decision.tokens) or '（无）'}")
    click.echo(f"决定：{decision.action.value}（{decision.reason}）")
    for rank, h in enumerate(decision.hits, 1):
        click.echo(
            f"{rank:>2}. {h.score:7.3f}  覆盖 {h.coverage:.2f}  {h.entry.id}  {h.entry.title}"
        )
        lacking = f"  缺少：{h.missing_term}（{h.missing_share:.0%}）" if h.missing_term else ""
        click.echo(f"      命中：{'、'.join(h.matched_terms)}{lacking}")


@kb_group.command("eval")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--fail-under",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Exit 1 when the pass rate is below this.",
)
def kb_eval(file: Path, fail_under: float) -> None:
    """Run the `ask:` cases of an evaluation file (format of shared/eval/dev.yaml)."""
    from knowledge.evaluate import evaluate_file

    kb = _kb()
    report = evaluate_file(kb, file)
    for failure in report.failures:
        click.echo(f"✗ {failure}")
    click.echo(f"通过 {report.passed}/{report.total}（{report.rate:.1%}）")
    if report.rate < fail_under:
        raise click.exceptions.Exit(1)


@kb_group.command("tune")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--top", default=5, show_default=True, type=click.IntRange(1, 50))
def kb_tune(file: Path, top: int) -> None:
    """Find answer/suggest thresholds on held-out questions (see knowledge.tuning)."""
    from knowledge.tuning import load_tuning_cases, prepare, score, sweep

    kb = _kb()
    cases = load_tuning_cases(file)
    prepared = prepare(kb, cases)
    tune, held_out = prepared[0::2], prepared[1::2]
    current = kb.settings.decision
    click.echo(f"{len(cases)} 个用例：调参 {len(tune)} 个，留出 {len(held_out)} 个")
    click.echo("当前设置（全部用例）：" + score(prepared, current).summary())
    best = sweep(tune, current)
    click.echo(f"调参集上最好的 {top} 组（留出集上的表现）：")
    for s in best[:top]:
        click.echo("  调参：" + s.summary())
        click.echo("  留出：" + score(held_out, s.settings).summary())


@kb_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["xlsx"]), default="xlsx", show_default=True)
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.argument("path", required=False, type=click.Path(path_type=Path))
def kb_export(fmt: str, output: Path, path: Path | None) -> None:
    """Write every entry to a spreadsheet: one row per entry, wordings one per line."""
    from knowledge.sheet import export_xlsx
    from yxby.errors import YxbyError
    from yxby.paths import entries_dir

    try:
        rows = export_xlsx(path or entries_dir(), output)
    except YxbyError as exc:
        raise click.exceptions.Exit(_input_error(str(exc))) from None
    click.echo(f"已导出 {rows} 个条目到 {output}")


@kb_group.command("import")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--today", type=DAY, envvar=TODAY_ENV, hidden=True)
@click.option("--dir", "path", type=click.Path(file_okay=False, path_type=Path),
              help="Knowledge directory (default: YXBY_KNOWLEDGE_DIR).")  # fmt: skip
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def kb_import(file: Path, dry_run: bool, today: date | None, path: Path | None) -> None:
    """Read a spreadsheet made by `kb export` back into the YAML entries.

    Every row is checked as `kb lint` checks the YAML; any error and nothing is written.
    Unchanged entries keep their YAML byte for byte; rows missing from the sheet are not
    deleted. Exit 1 on errors.
    """
    from bot.cli.doctor import current_day
    from knowledge.sheet import plan_import
    from routing import load_departments
    from yxby.errors import YxbyError
    from yxby.paths import entries_dir

    target = path or entries_dir()
    try:
        plan = plan_import(
            target, file, departments=load_departments().alias_map(), today=current_day(today)
        )
    except YxbyError as exc:
        raise click.exceptions.Exit(_input_error(str(exc))) from None
    for error in plan.errors:
        click.echo(f"错误：{error}", err=True)
    if not plan.ok:
        click.echo(f"{file}：{len(plan.errors)} 个错误，未写入任何文件", err=True)
        raise click.exceptions.Exit(1)
    for warning in plan.warnings:
        click.echo(f"警告：{warning}")
    for change in plan.changes:
        click.echo(str(change))
    if plan.missing:
        click.echo(
            f"表格中没有的 {len(plan.missing)} 个条目保持不变（导入不删除条目）："
            + "、".join(plan.missing[:10])
            + ("……" if len(plan.missing) > 10 else "")
        )
    summary = f"新增 {sum(c.kind == '新增' for c in plan.changes)} 个，"
    summary += f"修改 {sum(c.kind == '修改' for c in plan.changes)} 个，未变 {plan.unchanged} 个"
    if dry_run:
        diff = plan.diff()
        if diff:
            click.echo(diff, nl=False)
        click.echo(f"（试运行）{summary}；未写入任何文件")
        return
    try:
        written = plan.apply()
    except YxbyError as exc:
        raise click.exceptions.Exit(_input_error(str(exc))) from None
    click.echo(f"{summary}；已写入 {len(written)} 个文件")


@kb_group.command("gaps")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650))
@click.option("--top", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True)
def kb_gaps(days: int, top: int, as_json: bool) -> None:
    """The most frequent questions nothing answered, grouped under the words they share."""
    from datetime import timedelta

    from bot.cli.db import opened_app
    from handoff.db import read_only
    from handoff.reports import gap_groups, unanswered_turns

    with opened_app() as app:
        with app.db.sessions() as session:
            turns = unanswered_turns(read_only(session), app.clock() - timedelta(days=days))
        groups = gap_groups(turns, kb=app.kb)[:top]
    if as_json:
        click.echo(
            _dump(
                [
                    {"terms": list(g.terms), "count": g.count,
                     "questions": [{"text": q, "count": n} for q, n in g.questions.most_common()]}
                    for g in groups
                ]
            )
        )  # fmt: skip
        return
    if not groups:
        click.echo(f"最近 {days} 天没有未解决的问题。")
        return
    click.echo(f"最近 {days} 天未解决的问题（{len(turns)} 次），按共同词分组：")
    for g in groups:
        click.echo(f"{g.count:>4} 次  {'、'.join(g.terms)}")
        for text, n in g.questions.most_common(3):
            click.echo(f"        {n} × {text[:60]}")


def register(group: click.Group) -> None:
    """Add ``ask`` and ``kb`` to *group*."""
    group.add_command(ask)
    group.add_command(kb_group)
