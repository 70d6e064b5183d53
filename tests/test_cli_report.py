"""`yxby report assess`: the JSON contract, the table, the XLSX workbook and bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from openpyxl import load_workbook

from bot.cli import main
from handoff.db import Database
from handoff.tickets import TicketService
from tests.conftest import MovableClock
from tests.test_assessment import A, B, History, build_history

CONTRACT = {
    "department",
    "created",
    "contact_on_time_rate",
    "done_on_time_rate",
    "resolved_rate",
    "feedback_on_time_rate",
    "rated",
    "satisfaction_rate",
    "reopened",
    "overdue_now",
    "score",
    "rank",
}
AS_OF = "2026-12-01 09:00"


@pytest.fixture
def run(db_url: str) -> Callable[..., Result]:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["report", "assess", *args], env={"YXBY_DATABASE_URL": db_url})

    return invoke


@pytest.fixture
def history(service: TicketService, clock: MovableClock, db: Database) -> History:
    return build_history(service, clock, db)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + result.stderr
    return result


def test_json_contract(history: History, run: Callable[..., Result]) -> None:
    data = json.loads(ok(run("--period", "2026-10", "--format", "json", "--as-of", AS_OF)).stdout)
    assert data["period"]["from"] == "2026-10-01" and data["period"]["to"] == "2026-10-31"
    assert {"zone", "departments", "bot"} <= set(data)
    for row in data["departments"]:
        assert set(row) >= CONTRACT
    b = next(r for r in data["departments"] if r["department"] == B)
    assert (b["created"], b["rank"], b["score"], b["overdue_now"]) == (1, 1, 71.67, 1)
    assert b["contact_on_time_rate"] == pytest.approx(2 / 3)
    assert b["resolved_rate"] == 1.0
    a = next(r for r in data["departments"] if r["department"] == A)
    assert a["resolved_rate"] is None  # no ticket received: null, not 0
    assert (a["rated"], a["satisfaction_rate"], a["reopened"]) == (2, 0.5, 1)
    assert data["bot"]["questions"] == 6
    assert data["bot"]["instant_resolution_rate"] == pytest.approx(1 / 3)
    assert data["bot"]["handoff_rate"] == pytest.approx(1 / 3)
    assert data["bot"]["solved_instantly"] == 2


def test_from_to_and_department(history: History, run: Callable[..., Result]) -> None:
    args = ("--from", "2026-09-01", "--to", "2026-09-30", "--department", A, "--format", "json")
    data = json.loads(ok(run(*args, "--as-of", AS_OF)).stdout)
    assert [r["department"] for r in data["departments"]] == [A]
    assert data["departments"][0]["contact_on_time_rate"] == 0.5
    assert data["zone"]["created"] == 4


def test_table(history: History, run: Callable[..., Result], tmp_path: Path) -> None:
    text = ok(run("--period", "2026-10", "--as-of", AS_OF)).stdout
    lines = text.splitlines()
    assert lines[0] == "考核期间：2026-10-01 至 2026-10-31（北京时间）"
    assert lines[1].split()[:4] == ["排名", "部门", "综合得分", "受理量"]
    assert lines[2].split()[:3] == ["1", B, "71.67"]
    assert "66.7%" in lines[2]
    zone = next(line for line in lines if line.startswith("全区") or " 全区 " in line)
    assert "75.0%" in zone  # zone 按时签收率 3/4
    assert lines[-1].startswith("智能问答：提问 6 次，即时解决 2 次，即时解决率 33.3%")
    out = tmp_path / "oct.txt"
    ok(run("--period", "2026-10", "--as-of", AS_OF, "--output", str(out)))
    assert out.read_text(encoding="utf-8") == text


def test_xlsx(history: History, run: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "assess.xlsx"
    result = ok(run("--period", "2026-10", "--format", "xlsx", "--output", str(out),
                    "--as-of", AS_OF))  # fmt: skip
    assert f"已写入 {out}" in result.stdout
    book = load_workbook(out)
    assert book.sheetnames[:2] == ["考核汇总", "智能问答"]
    assert {A, B, "指标说明"} <= set(book.sheetnames)
    summary = book["考核汇总"]
    assert summary.freeze_panes == "A2"
    headers = [c.value for c in summary[1]]
    assert headers[:6] == ["排名", "部门", "综合得分", "受理量", "当前超期", "按时签收率"]
    first = {h: c for h, c in zip(headers, summary[2], strict=True)}
    assert first["部门"].value == B and first["排名"].value == 1
    assert first["按时签收率"].value == pytest.approx(2 / 3)
    assert first["按时签收率"].number_format == "0.0%"
    assert first["综合得分"].value == 71.67
    widths = summary.column_dimensions
    assert widths["F"].width >= 12  # 按时签收率 fits
    zone_row = next(r for r in summary.iter_rows(min_row=2) if r[1].value == "全区")
    assert zone_row[headers.index("按时签收率")].value == 0.75
    # the tickets behind each of 商务局's figures
    sheet = book[B]
    assert [c.value for c in sheet[1]] == ["指标", "分子/分母", "口径", "工单编号", "标题", "时间",
                                           "备注"]  # fmt: skip
    contact = {
        (r[1].value, r[3].value) for r in sheet.iter_rows(min_row=2) if r[0].value == "按时签收率"
    }
    assert contact == {
        ("分母", history.t3), ("分母", history.t4), ("分母", history.t5),
        ("分子", history.t3), ("分子", history.t5),
    }  # fmt: skip
    bot = book["智能问答"]
    assert bot["A4"].value == "即时解决率" and bot["B4"].value == pytest.approx(1 / 3)
    assert bot["B4"].number_format == "0.0%"
    definitions = [r[0].value for r in book["指标说明"].iter_rows(min_row=2)]
    assert "按时办结率" in definitions and "综合得分" in definitions


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--period", "2026-13"), "无法识别的考核期间「2026-13」"),
        (("--from", "2026-12-31", "--to", "2026-12-01"), "起始日期 2026-12-31 晚于结束日期"),
        (("--from", "2026-12-01", "--to", "31/12"), "不是有效日期"),
        (("--period", "2026", "--department", "宇宙局"), "未知的部门「宇宙局」"),
        (("--period", "2026", "--format", "pdf"), "未知的输出格式「pdf」"),
        (("--period", "2026", "--format", "xlsx"), "xlsx 格式须用 --output 指定文件"),
        (("--period", "2026", "--as-of", "昨天"), "无法识别的时间"),
        ((), "请给出 --period"),
    ],
)
def test_bad_input(run: Callable[..., Result], args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.exit_code in (1, 2), result.output
    assert result.stderr.startswith("错误：")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
