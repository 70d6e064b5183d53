"""`yxby enterprises sync / syncs / coverage / assign / show` against a test database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from tests.conftest import make_uscc
from tests.test_register import FIRST, IND, SECOND, A, C, D, write_csv

Run = Callable[..., Result]


@pytest.fixture
def run(db_url: str) -> Run:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env={"YXBY_DATABASE_URL": db_url})

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + result.stderr
    return result


def test_sync_dry_run_then_apply_and_the_log(run: Run, tmp_path: Path) -> None:
    first = write_csv(tmp_path / "2026-10.csv", FIRST)
    out = ok(run("enterprises", "sync", str(first), "--dry-run")).output
    assert out.startswith("试运行（未写入）：共 11 行：新增 6，变更 0，迁出/注销 0，未变 0，拒绝 5")
    assert "拒绝 第 9 行" in out and "未知的行业「宇宙飞船殖民业」" in out
    assert f"新增 {A} 甲汽车零部件有限公司" in out
    missing = run("enterprises", "show", A)
    assert missing.exit_code == 1 and "企业库中没有" in missing.stderr  # the dry run wrote nothing

    ok(run("enterprises", "sync", str(first), "--by", "政务办王"))
    out = ok(run("enterprises", "sync", str(write_csv(tmp_path / "2026-11.csv", SECOND)))).output
    assert "新增 1，变更 1，迁出/注销 2，未变 3，拒绝 1" in out
    assert f"变更 {A} 甲汽车零部件有限公司（楼宇/园区：天保大厦 → 临港创新园）" in out

    log = json.loads(ok(run("enterprises", "syncs", "--json")).output)
    assert [(s["file"], s["dry_run"], s["left"]) for s in log] == [
        ("2026-11.csv", False, 2),
        ("2026-10.csv", False, 0),
        ("2026-10.csv", True, 0),
    ]
    detail = ok(run("enterprises", "syncs", "--id", str(log[1]["id"]))).output
    assert "政务办王" in detail and detail.count("  第 ") == 5

    shown = json.loads(ok(run("enterprises", "show", C, "--json")).output)
    assert (shown["status"], shown["zombie"]) == ("迁出", True)
    text = ok(run("enterprises", "show", A)).output
    assert "楼宇/园区：临港创新园" in text and "行业：汽车制造业（3611）" in text


def test_coverage_and_assign(run: Run, tmp_path: Path) -> None:
    ok(run("commissioners", "add", "王五", "--department", "社发局"))
    ok(run("enterprises", "sync", str(write_csv(tmp_path / "1.csv", FIRST))))
    out = ok(run("enterprises", "coverage", "--by", "grid")).output
    assert "存续企业 5 家：已包保 0，未包保 5（不计僵尸企业及已迁出/注销 1 家）" in out
    assert "海港二网格\t2\t0\t2\t0%" in out
    gaps = json.loads(ok(run("enterprises", "coverage", "--by", "grid", "--uncovered", "海港二网格",
                             "--json")).output)  # fmt: skip
    assert sorted(g["uscc"] for g in gaps) == sorted([D, IND])

    out = ok(run("enterprises", "assign", "--commissioner", "王五", "--filter", "网格=海港二网格",
                 "--dry-run")).output  # fmt: skip
    assert out.startswith("将分配 2 家企业给 王五（社发局）")
    out = ok(run("enterprises", "assign", "--commissioner", "王五", "--filter", "网格=海港二网格",
                 "--filter", "unassigned")).output  # fmt: skip
    assert out.startswith("已分配 2 家企业给 王五（社发局）")
    data = json.loads(ok(run("enterprises", "coverage", "--by", "grid", "--json")).output)
    assert {r["key"]: r["covered"] for r in data["rows"]}["海港二网格"] == 2

    bad = run("enterprises", "assign", "--commissioner", "无此人", "--filter", "grid=x")
    assert bad.exit_code == 1 and "未登记" in bad.stderr and "Traceback" not in bad.output
    bad = run("enterprises", "assign", "--commissioner", "王五", "--filter", "楼层")
    assert bad.exit_code == 1 and "无法理解的筛选条件" in bad.stderr


def test_sync_errors_are_one_chinese_line(run: Run, tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("名称,地址\n甲,乙\n", encoding="utf-8")
    bad = run("enterprises", "sync", str(tmp_path / "x.csv"))
    assert bad.exit_code == 1 and bad.stderr.startswith("错误：") and "缺少必需的列" in bad.stderr


def test_route_uses_what_the_register_knows(run: Run, tmp_path: Path) -> None:
    ok(run("enterprises", "sync", str(write_csv(tmp_path / "1.csv", FIRST))))
    individual = json.loads(ok(run("route", "--json", "--no-knowledge", "--enterprise", IND,
                                "有个事情想找政府帮忙")).output)  # fmt: skip
    # a 个体工商户 in a grid: 附件2第5项 comes before the grid
    assert individual["rule"] == "individual"
    by_building = json.loads(ok(run("route", "--json", "--no-knowledge", "--enterprise", C,
                                    "营业执照怎么变更")).output)  # fmt: skip
    assert (by_building["department"], by_building["rule"]) == ("天保控股", "park")
    recruited = json.loads(ok(run("route", "--json", "--no-knowledge", "--enterprise", A,
                                  "营业执照怎么变更")).output)  # fmt: skip
    assert (recruited["department"], recruited["rule"]) == ("投促局", "recruited")
    assert "招商落户" in recruited["reason"]
    G = make_uscc(30)
    grid_only = tmp_path / "grid.csv"
    grid_only.write_text(f"统一社会信用代码,企业名称,网格\n{G},辛公司,第九网格\n", encoding="utf-8")
    ok(run("enterprises", "sync", str(grid_only), "--partial"))
    by_grid = json.loads(ok(run("route", "--json", "--no-knowledge", "--enterprise", G,
                                "有个事情想找政府帮忙")).output)  # fmt: skip
    assert (by_grid["department"], by_grid["rule"]) == ("社发局", "grid")
    assert "第九网格" in by_grid["reason"]
