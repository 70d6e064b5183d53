"""`yxby report …`: the assessment figures (issue 12).

``yxby report assess --period 2026-12 | --from D --to D [--department D]
[--format table|json|xlsx] [--output FILE] [--as-of T]`` prints (or writes) the figures of
:mod:`handoff.assessment`. The XLSX workbook (:func:`write_xlsx`, also served by the
console) is the 年度考核 paper: a summary sheet, one sheet per department with the tickets
behind each figure, the bot's figures and a sheet of definitions.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from bot.cli.db import local_time
from bot.cli.sla import ChineseUsageError, parse_moment

if TYPE_CHECKING:
    from handoff.assessment import Assessment, Period

__all__ = ["SUMMARY_COLUMNS", "register", "report_group", "table_text", "write_xlsx"]

SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (key, Chinese header, kind: int | rate | score | text)
    ("rank", "排名", "int"),
    ("department", "部门", "text"),
    ("score", "综合得分", "score"),
    ("created", "受理量", "int"),
    ("overdue_now", "当前超期", "int"),
    ("contact_on_time_rate", "按时签收率", "rate"),
    ("done_on_time_rate", "按时办结率", "rate"),
    ("resolved_rate", "办结率", "rate"),
    ("feedback_on_time_rate", "按时反馈率", "rate"),
    ("rated", "评价数", "int"),
    ("satisfaction_rate", "满意率", "rate"),
    ("unsatisfied", "不满意件数", "int"),
    ("reopened", "重办件数", "int"),
    ("reopen_rate", "重办率", "rate"),
    ("urged", "督办件次", "int"),
    ("callback_rate", "回访率", "rate"),
    ("callback_reply_rate", "回访答复满意率", "rate"),
    ("callback_result_rate", "回访结果满意率", "rate"),
    ("escalated", "提请联席会议", "int"),
    ("meeting_decided", "联席会议已决定", "int"),
    ("meeting_on_time_rate", "会议时限内完成率", "rate"),
    ("resolved_after_period", "期后办结", "int"),
)
TABLE_COLUMNS = (
    "rank",
    "department",
    "score",
    "created",
    "overdue_now",
    "contact_on_time_rate",
    "done_on_time_rate",
    "resolved_rate",
    "feedback_on_time_rate",
    "rated",
    "satisfaction_rate",
    "reopened",
)
ZONE = "全区"
FORMATS = ("table", "json", "xlsx")


def _cell_text(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "rate":
        return f"{value * 100:.1f}%"
    if kind == "score":
        return f"{value:.2f}"
    return str(value)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * max(0, width - _width(text))
    return gap + text if right else text + gap


def table_text(report: dict[str, Any]) -> str:
    """The report as an aligned text table (Chinese headers), zone last, then the bot."""
    columns = [c for c in SUMMARY_COLUMNS if c[0] in TABLE_COLUMNS]
    rows = [
        [_cell_text(r.get(key), kind) for key, _, kind in columns]
        for r in sorted(report["departments"], key=lambda r: (r["rank"] is None, r["rank"] or 0))
    ]
    zone = {**report["zone"], "department": ZONE, "rank": None, "score": None}
    rows.append(
        [_cell_text(zone.get(key), kind) if key != "rank" else "" for key, _, kind in columns]
    )
    header = [label for _, label, _ in columns]
    widths = [max(_width(x) for x in col) for col in zip(header, *rows, strict=True)]
    lines = []
    for cells in [header, *rows]:
        lines.append(
            "  ".join(
                _pad(text, w, right=key not in ("department",))
                for text, w, (key, _, _) in zip(cells, widths, columns, strict=True)
            ).rstrip()
        )
    period = report["period"]
    bot = report["bot"]
    head = f"考核期间：{period['from']} 至 {period['to']}（北京时间）"
    if not period["closed"]:
        head += f"，进行中，截至 {period['as_of'][:16].replace('T', ' ')}（UTC）"
    tail = (
        f"智能问答：提问 {bot['questions']} 次，即时解决 {bot['solved_instantly']} 次，"
        f"即时解决率 {_cell_text(bot['instant_resolution_rate'], 'rate')}，"
        f"转人工率 {_cell_text(bot['handoff_rate'], 'rate')}"
    )
    return "\n".join([head, *lines, tail])


# ------------------------------------------------------------------------------ XLSX


def write_xlsx(
    assessment: Assessment,
    period: Period,
    target: str | Path | IO[bytes],
    *,
    department: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Write the 年度考核 workbook of *period* to *target*; returns the report written."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    from handoff.assessment import FIGURES

    now = now or assessment.now()
    report = assessment.report(period, department=department, now=now)
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDE7F3")
    book = Workbook()

    def header(sheet: Any, labels: Sequence[str], row: int = 1) -> None:
        for col, label in enumerate(labels, start=1):
            cell = sheet.cell(row=row, column=col, value=label)
            cell.font = bold
            cell.fill = fill
            cell.alignment = Alignment(horizontal="center", vertical="center")
        sheet.freeze_panes = sheet.cell(row=row + 1, column=1)

    def fit(sheet: Any) -> None:
        widths: dict[int, int] = {}
        for row in sheet.iter_rows():
            for cell in row:
                if cell.value is None:
                    continue
                text = (
                    f"{cell.value * 100:.1f}%"
                    if cell.number_format == "0.0%" and isinstance(cell.value, float)
                    else str(cell.value)
                )
                longest = max(_width(line) for line in text.splitlines() or [""])
                widths[cell.column] = max(widths.get(cell.column, 0), longest)
        for col, width in widths.items():
            sheet.column_dimensions[get_column_letter(col)].width = min(max(width + 2, 6), 60)

    # summary
    summary = book.active
    summary.title = "考核汇总"
    header(summary, [label for _, label, _ in SUMMARY_COLUMNS])
    rows = sorted(report["departments"], key=lambda r: (r["rank"] is None, r["rank"] or 0))
    zone = {**report["zone"], "department": ZONE, "rank": None, "score": None}
    for r, data in enumerate([*rows, zone], start=2):
        for c, (key, _, kind) in enumerate(SUMMARY_COLUMNS, start=1):
            cell = summary.cell(row=r, column=c, value=data.get(key))
            if kind == "rate":
                cell.number_format = "0.0%"
            elif kind == "score":
                cell.number_format = "0.00"
            if data is zone:
                cell.font = bold
    note_row = len(rows) + 4
    summary.cell(
        row=note_row,
        column=1,
        value=f"考核期间：{period.first} 至 {period.last}（北京时间）；"
        f"生成时间：{now.isoformat(timespec='minutes')}；"
        "比率分母为 0 时留空（—）。各指标口径见「指标说明」。",
    )
    fit(summary)
    summary.column_dimensions["A"].width = 6

    # the bot
    bot = book.create_sheet("智能问答")
    header(bot, ["指标", "数值"])
    b = report["bot"]
    for r, (label, value, rate) in enumerate(
        [
            ("提问数", b["questions"], False),
            ("即时解决", b["solved_instantly"], False),
            ("即时解决率", b["instant_resolution_rate"], True),
            ("转人工（工单或人工）", b["handed_off"], False),
            ("转人工率", b["handoff_rate"], True),
        ],
        start=2,
    ):
        bot.cell(row=r, column=1, value=label)
        cell = bot.cell(row=r, column=2, value=value)
        if rate:
            cell.number_format = "0.0%"
    start = 9
    header(bot, ["最常被标为未解决的知识条目", "次数"], row=start)
    bot.freeze_panes = "A2"
    for r, entry in enumerate(b["unsolved_entries"], start=start + 1):
        bot.cell(row=r, column=1, value=entry["entry_id"])
        bot.cell(row=r, column=2, value=entry["unsolved"])
    fit(bot)

    # one sheet per department: the rows behind each figure
    wanted = {r["department"] for r in report["departments"]}
    behind: dict[str, list[tuple[Any, ...]]] = {d: [] for d in wanted}
    for key, figure in FIGURES.items():
        drill = assessment.drill(key, period, department=None, now=now)
        for role, label, items in (
            ("分母", figure.denominator_label, drill.denominator),
            ("分子", figure.numerator_label, drill.numerator),
        ):
            for item in items:
                if item.department in behind:
                    at = local_time(item.at, "")
                    behind[item.department].append(
                        (figure.label, role, label, item.number, item.title, at, item.note or "")
                    )
    for row in rows:
        name = row["department"]
        if not behind[name]:
            continue
        sheet = book.create_sheet(_sheet_name(name, book.sheetnames))
        header(sheet, ["指标", "分子/分母", "口径", "工单编号", "标题", "时间", "备注"])
        for r, values in enumerate(behind[name], start=2):
            for c, value in enumerate(values, start=1):
                sheet.cell(row=r, column=c, value=value)
        fit(sheet)

    # definitions
    definitions = book.create_sheet("指标说明")
    header(definitions, ["指标", "字段", "类别", "分母", "分子", "口径"])
    for r, d in enumerate(assessment.definitions(), start=2):
        for c, key in enumerate(
            ("label", "key", "kind", "denominator", "numerator", "definition"), start=1
        ):
            definitions.cell(row=r, column=c, value=d[key])
    weights = assessment.settings.weights.model_dump()
    r = len(FIGURES) + 3
    definitions.cell(row=r, column=1, value="综合得分").font = bold
    definitions.cell(
        row=r,
        column=6,
        value="各比率按权重加权平均后乘以 100（分母为 0 的比率不计，权重按比例放大）："
        + "，".join(f"{FIGURES[k].label} {w:g}" for k, w in weights.items())
        + "（config/assessment.yaml）。",
    )
    fit(definitions)
    definitions.column_dimensions["F"].width = 60
    for row in definitions.iter_rows(min_row=2):
        row[5].alignment = Alignment(wrap_text=True, vertical="top")

    book.save(target)
    return report


def _sheet_name(name: str, taken: Sequence[str]) -> str:
    base = "".join(c for c in name if c not in "[]:*?/\\")[:31] or "部门"
    candidate, n = base, 2
    while candidate in taken:
        candidate = f"{base[:28]}({n})"
        n += 1
    return candidate


# ------------------------------------------------------------------------------ command


@click.group("report")
def report_group() -> None:
    """报表：政务办的考核指标（按部门、全区，任意期间）。"""


@report_group.command("assess")
@click.option(
    "--period", help="考核期间：2026-12-01（日）、2026-12（月）、2026Q4（季度）或 2026（年）。"
)
@click.option("--from", "first", help="起始日期 YYYY-MM-DD（与 --to 一起使用，含当日）。")
@click.option("--to", "last", help="结束日期 YYYY-MM-DD（含当日）。")
@click.option("--department", help="只列出这个部门（排名仍按全部部门计算）。")
@click.option(
    "--format",
    "fmt",
    default="table",
    show_default=True,
    help="输出格式：table（表格）、json 或 xlsx（须同时给出 --output）。",
)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="写入文件。")
@click.option("--as-of", "as_of", help="按这一时刻的记录计算（默认现在；不带时区按北京时间）。")
@click.pass_context
def assess_command(
    ctx: click.Context,
    period: str | None,
    first: str | None,
    last: str | None,
    department: str | None,
    fmt: str,
    output: Path | None,
    as_of: str | None,
) -> None:
    """考核指标与部门排名：受理、签收、办结、反馈、满意、重办、督办、回访、联席会议、即时解决率。"""
    from bot.cli.db import opened_app
    from handoff.assessment import Assessment, parse_period

    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise ChineseUsageError(f"未知的输出格式「{fmt}」，应为 {'、'.join(FORMATS)} 之一", ctx)
    if fmt == "xlsx" and output is None:
        raise ChineseUsageError("xlsx 格式须用 --output 指定文件", ctx)
    wanted = parse_period(period, first=first, last=last)
    now = None
    if as_of is not None:
        try:
            now = parse_moment(as_of)
        except ValueError:
            raise ChineseUsageError(
                f"无法识别的时间“{as_of}”，应为 ISO 8601（如 2026-12-31 24:00 写作 2027-01-01）",
                ctx,
            ) from None
    with opened_app() as app:
        assessment = Assessment.of(app)
        if department is not None:
            department = assessment.department(department)
        if fmt == "xlsx":
            assert output is not None
            write_xlsx(assessment, wanted, output, department=department, now=now)
            click.echo(f"已写入 {output}")
            return
        report = assessment.report(wanted, department=department, now=now)
    text = json.dumps(report, ensure_ascii=False, indent=2) if fmt == "json" else table_text(report)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
        click.echo(f"已写入 {output}")
    else:
        click.echo(text)


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
    group.add_command(report_group)
