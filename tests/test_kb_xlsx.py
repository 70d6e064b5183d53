"""``yxby kb export --format xlsx`` and ``yxby kb import``: the spreadsheet round trip leaves
the YAML byte for byte unchanged; edits are validated like ``kb lint``, shown as a diff and
written only when every row is valid."""

from __future__ import annotations

import difflib
import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

import knowledge
from bot.cli import main as cli
from knowledge.schema import Entry
from knowledge.sheet import COLUMNS, entry_yaml, plan_import
from yxby.paths import PROJECT_ROOT

ENTRIES = PROJECT_ROOT / "knowledge" / "entries"
TODAY = date(2026, 11, 30)
HEADERS = [c[0] for c in COLUMNS]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*")
            if p.is_file()}  # fmt: skip


@pytest.fixture
def entries(tmp_path: Path) -> Path:
    target = tmp_path / "entries"
    shutil.copytree(ENTRIES, target)
    return target


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def export(entries: Path, tmp_path: Path) -> Path:
    sheet = tmp_path / "kb.xlsx"
    result = run("kb", "export", "--format", "xlsx", "--output", str(sheet), str(entries))
    assert result.exit_code == 0, result.output
    return sheet


def edit(sheet: Path, change: Any) -> None:
    wb = load_workbook(sheet)
    ws = wb.active
    assert ws is not None
    change(ws)
    wb.save(sheet)


def row_of(ws: Any, entry_id: str) -> int:
    ids = [c.value for c in ws["B"]]
    return ids.index(entry_id) + 1


def col(header: str) -> int:
    return HEADERS.index(header) + 1


def test_the_round_trip_leaves_every_yaml_byte_unchanged(entries: Path, tmp_path: Path) -> None:
    before = snapshot(entries)
    sheet = export(entries, tmp_path)
    wb = load_workbook(sheet)
    ws = wb.active
    assert ws is not None
    assert [c.value for c in ws[1]] == HEADERS
    assert ws.max_row - 1 == len(knowledge.load(entries))
    dry = run("kb", "import", "--dry-run", "--dir", str(entries), str(sheet))
    assert dry.exit_code == 0 and "修改 0 个" in dry.output and "新增 0 个" in dry.output
    real = run("kb", "import", "--dir", str(entries), str(sheet))
    assert real.exit_code == 0, real.output
    assert "已写入 0 个文件" in real.output
    assert snapshot(entries) == before


def test_one_row_per_entry_with_wordings_one_per_line(entries: Path, tmp_path: Path) -> None:
    sheet = export(entries, tmp_path)
    kb = knowledge.load(entries)
    ws = load_workbook(sheet).active
    assert ws is not None
    entry = kb.entries[0]
    r = row_of(ws, entry.id)
    assert ws.cell(r, col("问法（每行一个）")).value.split("\n") == list(entry.questions)
    assert ws.cell(r, col("答案")).value == entry.answer
    assert ws.cell(r, col("更新日期")).value == entry.updated.isoformat()


def test_an_edited_entry_changes_only_its_own_lines(entries: Path, tmp_path: Path) -> None:
    before = snapshot(entries)
    sheet = export(entries, tmp_path)
    target = knowledge.load(entries).get("sample-trademark-registration")
    assert target is not None

    def change(ws: Any) -> None:
        r = row_of(ws, target.id)
        ws.cell(r, col("标题")).value = "商标注册的申请"
        questions = ws.cell(r, col("问法（每行一个）"))
        questions.value += "\n公司商标怎么申请注册"

    edit(sheet, change)
    dry = run("kb", "import", "--dry-run", "--dir", str(entries), str(sheet))
    assert dry.exit_code == 0, dry.output
    assert "修改 [sample-trademark-registration]（sample-ip.yaml）：标题、问法" in dry.output
    assert "+  title: 商标注册的申请" in dry.output and "-  title: 商标注册申请" in dry.output
    assert snapshot(entries) == before  # a dry run writes nothing

    assert run("kb", "import", "--dir", str(entries), str(sheet)).exit_code == 0
    after = snapshot(entries)
    assert {k for k in after if after[k] != before.get(k)} == {"sample-ip.yaml"}
    old = before["sample-ip.yaml"].decode().splitlines()
    new = after["sample-ip.yaml"].decode().splitlines()
    assert new[0] == old[0]  # the file's comments stay
    changed = [ln for ln in difflib.ndiff(old, new) if ln[:1] in "+-"]
    assert changed == [
        "-   title: 商标注册申请",
        "+   title: 商标注册的申请",
        "+     - 公司商标怎么申请注册",
    ]
    kb = knowledge.load(entries)
    edited = kb.get(target.id)
    assert edited is not None and edited.title == "商标注册的申请"
    assert edited.questions[-1] == "公司商标怎么申请注册"
    assert edited.answer == target.answer and edited.source == target.source
    # and exporting again, then importing, changes nothing more
    again = snapshot(entries)
    sheet2 = export(entries, tmp_path / "second")
    assert run("kb", "import", "--dir", str(entries), str(sheet2)).exit_code == 0
    assert snapshot(entries) == again


def test_a_new_row_is_appended_to_the_named_file(entries: Path, tmp_path: Path) -> None:
    sheet = export(entries, tmp_path)

    def add(ws: Any) -> None:
        values = {
            "文件": "imported-new.yaml",
            "编号": "import-new-warehouse",
            "标题": "保税仓库设立咨询",
            "问法（每行一个）": "保税仓库怎么设立\n设立保税仓库要什么条件",
            "答案": "设立保税仓库应向主管海关提出申请，具体条件以海关总署的最新规定为准。",
            "责任部门": "自贸局",
            "关键词（每行一个）": "保税仓库\n设立",
            "来源文件": "企业服务常见问题",
            "更新日期": datetime(2026, 11, 30),  # Excel made it a date: still fine
        }
        ws.append([values.get(h) for h in HEADERS])

    edit(sheet, add)
    result = run("kb", "import", "--dir", str(entries), str(sheet))
    assert result.exit_code == 0, result.output
    assert "新增 [import-new-warehouse]（imported-new.yaml）" in result.output
    entry = knowledge.load(entries).get("import-new-warehouse")
    assert entry is not None and entry.questions == ("保税仓库怎么设立", "设立保税仓库要什么条件")
    assert entry.updated == date(2026, 11, 30) and entry.keywords == ("保税仓库", "设立")


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        ("更新日期", "2026/13/45", "第 {row} 行"),
        ("标题", "", "第 {row} 行"),
        ("问法（每行一个）", "", "第 {row} 行"),
        ("编号", "Bad Id!", "第 {row} 行"),
        ("责任部门", "不存在的部门", "未知部门「不存在的部门」"),
        ("来源网址", "ftp://example.org", "第 {row} 行"),
    ],
)
def test_a_bad_row_writes_nothing_and_says_where(
    entries: Path, tmp_path: Path, header: str, value: str, expected: str
) -> None:
    before = snapshot(entries)
    sheet = export(entries, tmp_path)
    rows: list[int] = []

    def change(ws: Any) -> None:
        good = row_of(ws, "sample-trademark-registration")
        ws.cell(good, col("标题")).value = "一个合法的修改"  # valid, but must not be written
        r = row_of(ws, "sample-trademark-renewal-change")
        rows.append(r)
        ws.cell(r, col(header)).value = value

    edit(sheet, change)
    result = run("kb", "import", "--dir", str(entries), str(sheet))
    assert result.exit_code == 1
    assert expected.format(row=rows[0]) in result.output
    assert "未写入任何文件" in result.output
    assert snapshot(entries) == before


def test_a_duplicate_question_across_entries_is_a_lint_error(entries: Path, tmp_path: Path) -> None:
    before = snapshot(entries)
    sheet = export(entries, tmp_path)
    kb = knowledge.load(entries)
    other = kb.get("sample-trademark-renewal-change")
    assert other is not None

    def change(ws: Any) -> None:
        r = row_of(ws, "sample-trademark-registration")
        ws.cell(r, col("问法（每行一个）")).value += "\n" + other.questions[0]

    edit(sheet, change)
    result = run("kb", "import", "--dir", str(entries), str(sheet))
    assert result.exit_code == 1 and "重复" in result.output
    assert str(entries / "sample-ip.yaml") in result.output  # the real path, not a temporary one
    assert snapshot(entries) == before


def test_a_repeated_id_in_the_sheet_and_an_unsafe_file_name_are_refused(
    entries: Path, tmp_path: Path
) -> None:
    sheet = export(entries, tmp_path)

    def change(ws: Any) -> None:
        ws.append([c.value for c in ws[2]])

    edit(sheet, change)
    plan = plan_import(entries, sheet, departments=None, today=TODAY)
    assert not plan.ok and "重复" in plan.errors[0]

    sheet = export(entries, tmp_path / "b")

    def escape(ws: Any) -> None:
        row = [c.value for c in ws[2]]
        row[0], row[1] = "../outside.yaml", "import-escape"
        row[3] = "一个全新的问法"
        ws.append(row)

    edit(sheet, escape)
    plan = plan_import(entries, sheet, departments=None, today=TODAY)
    assert not plan.ok and "文件" in plan.errors[0]
    assert not (entries.parent / "outside.yaml").exists()


def test_rows_missing_from_the_sheet_are_not_deleted(entries: Path, tmp_path: Path) -> None:
    before = snapshot(entries)
    sheet = export(entries, tmp_path)
    edit(sheet, lambda ws: ws.delete_rows(2))
    result = run("kb", "import", "--dir", str(entries), str(sheet))
    assert result.exit_code == 0 and "保持不变（导入不删除条目）" in result.output
    assert snapshot(entries) == before


def test_not_a_spreadsheet_is_a_clear_error(entries: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "kb.xlsx"
    bogus.write_text("not a spreadsheet", "utf-8")
    result = run("kb", "import", "--dir", str(entries), str(bogus))
    assert result.exit_code == 2 and "不是有效的 XLSX 文件" in result.output
    missing = run("kb", "import", "--dir", str(entries), str(tmp_path / "none.xlsx"))
    assert missing.exit_code == 2 and "文件不存在" in missing.output


@pytest.mark.parametrize(
    "answer",
    [
        "含有: 冒号 # 井号 和 'quotes' \"双引号\"",
        "第一行\n第二行\n\n  缩进的第四行",
        "- 以短横开头",
    ],
)
def test_entry_yaml_reads_back_exactly(tmp_path: Path, answer: str) -> None:
    entry = Entry.model_validate(
        {
            "id": "yaml-check",
            "title": "标题: 有冒号",
            "questions": ["问法 #1", "'引号'开头", "@特殊"],
            "answer": answer,
            "department": "海关",
            "keywords": ["a, b", "[括号]"],
            "tags": ["yes", "null", "123"],
            "source": {"document": "文件: 名", "url": "https://example.org/a?b=c&d=e"},
            "updated": "2026-11-30",
            "expires": "2027-01-01",
        }
    )
    (tmp_path / "one.yaml").write_text(entry_yaml(entry), "utf-8")
    (loaded,) = knowledge.load(tmp_path).entries
    assert loaded == entry
