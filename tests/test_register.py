"""The living 名录库: sync of successive exports, dry runs, all-or-nothing, zombies, coverage,
bulk assignment (handoff.register)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from handoff.audit import AuditEvent
from handoff.db import Database
from handoff.models import (
    Commissioner,
    Enterprise,
    EnterpriseKind,
    RegisterChange,
    RegisterRejection,
    RegisterSync,
)
from handoff.register import AssignFilter, Register, active_filter
from routing import Router, load_router
from tests.conftest import MovableClock, make_uscc
from yxby.errors import DatabaseError, InputError

HEADER = [
    "统一社会信用代码", "企业名称", "类型", "行业", "登记状态", "住所", "法定代表人", "成立日期",
    "联系电话", "楼宇/园区", "网格", "招商部门", "最近年报年度",
]  # fmt: skip

A, B, C, D, E, F = (make_uscc(n) for n in (1, 2, 3, 4, 5, 6))
IND = make_uscc(7, "92")  # 个体工商户
BAD_CHECK = A[:-1] + ("0" if A[-1] != "0" else "1")


def row(code: str, name: str, **kw: str) -> list[str]:
    values = {
        "类型": "有限责任公司", "行业": "3611", "登记状态": "存续（在营、开业、在册）",
        "住所": "天津自贸试验区（天津港保税区）海滨二路1号", "法定代表人": "王五",
        "成立日期": "2019-05-06", "联系电话": "022-12345678", "楼宇/园区": "", "网格": "",
        "招商部门": "", "最近年报年度": "2025",
    }  # fmt: skip
    values.update(kw)
    return [code, name, *(values[h] for h in HEADER[2:])]


FIRST = [
    row(A, "甲汽车零部件有限公司",
        **{"楼宇/园区": "天保大厦", "网格": "空港一网格", "招商部门": "投促局"}),
    row(B, "乙商贸有限公司", **{"行业": "批发业", "网格": "空港一网格"}),
    row(C, "丙科技有限公司", **{"行业": "7310", "楼宇/园区": "天保大厦"}),
    row(D, "丁物流有限公司", **{"行业": "G", "网格": "海港二网格"}),
    row(E, "戊餐饮管理有限公司", **{"行业": "62", "最近年报年度": "2022"}),  # zombie: 2 missed
    row(IND, "己记小吃店", **{"类型": "个体工商户", "行业": "餐饮业", "网格": "海港二网格"}),
    # bad rows
    row(BAD_CHECK, "校验位错误公司"),
    row(make_uscc(20), "未知行业公司", **{"行业": "宇宙飞船殖民业"}),
    row(A, "重复代码公司"),
    row(make_uscc(21), "未知状态公司", **{"登记状态": "休眠"}),
    row(make_uscc(22), "非招商部门公司", **{"招商部门": "城环局"}),
]  # fmt: skip

SECOND = [
    row(A, "甲汽车零部件有限公司",
        **{"楼宇/园区": "临港创新园", "网格": "空港一网格", "招商部门": "投促局"}),
    row(B, "乙商贸有限公司", **{"行业": "批发业", "网格": "空港一网格", "登记状态": "注销"}),
    # C is not in the export: it left the zone
    row(D, "丁物流有限公司", **{"行业": "G", "网格": "海港二网格"}),
    row(E, "戊餐饮管理有限公司", **{"行业": "62", "最近年报年度": "2022"}),
    row(IND, "己记小吃店", **{"类型": "个体工商户", "行业": "餐饮业", "网格": "海港二网格"}),
    row(F, "庚新材料有限公司", **{"行业": "C2651"}),
    row("12345", "代码过短公司"),
]  # fmt: skip


def write_csv(path: Path, rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(header)
        out.writerows(rows)
    return path


@pytest.fixture(scope="module")
def router() -> Router:
    return load_router()


@pytest.fixture
def register(db: Database, router: Router, clock: MovableClock) -> Register:
    return Register(db.sessions, router, clock)


def enterprises(db: Database) -> dict[str, Enterprise]:
    with db.sessions() as session:
        return {e.uscc: e for e in session.scalars(select(Enterprise))}


def test_two_successive_exports(db: Database, register: Register, tmp_path: Path) -> None:
    first = register.sync(write_csv(tmp_path / "2026-10.csv", FIRST), by="政务办王")
    assert (first.rows, first.new, first.changed, first.left, first.unchanged) == (11, 6, 0, 0, 0)
    assert [(r.row, r.reason) for r in first.rejected] == [
        (8, f"统一社会信用代码「{BAD_CHECK}」校验位错误"),
        (9, "未知的行业「宇宙飞船殖民业」（应为国民经济行业分类代码或名称，或附件3的行业）"),
        (10, "与第 2 行的统一社会信用代码重复"),
        (11, "未知的登记状态「休眠」（应为 存续、注销、吊销、迁出 之一）"),
        (12, "「城环局」不是招商部门（附件2第2项：投促局、招商局、商务局、新经济促进局、"
         "科技创新局、海港管理局、新材料产业园发展局、海洋经济局、自贸局、临港口岸局、航空产业发展局、"
         "航空物流区管理局、市场监管局、政务办）"),
    ]  # fmt: skip
    assert first.rejected[1].raw["企业名称"] == "未知行业公司"
    assert first.zombies == 1
    found = enterprises(db)
    a = found[A]
    assert (a.industry, a.industry_code, a.kind, a.status) == (
        "汽车制造业", "3611", EnterpriseKind.ENTERPRISE, "存续",
    )  # fmt: skip
    assert (a.building, a.grid, a.recruited_by) == ("天保大厦", "空港一网格", "投促局")
    assert (a.legal_representative, a.established_on) == ("王五", date(2019, 5, 6))
    assert found[IND].kind is EnterpriseKind.INDIVIDUAL
    assert found[D].industry == "交通运输、仓储和邮政业" and found[D].industry_code == "G"
    assert found[E].zombie and found[E].zombie_reason == "连续3年未报送年报（最近年报年度：2022）"

    second = register.sync(write_csv(tmp_path / "2026-11.csv", SECOND), by="政务办王")
    assert (second.new, second.changed, second.left, second.unchanged) == (1, 1, 2, 3)
    assert [(r.row, r.uscc) for r in second.rejected] == [(8, "12345")]
    found = enterprises(db)
    assert found[A].building == "临港创新园"
    assert (found[B].status, found[B].status_changed_on, found[B].zombie) == (
        "注销", date(2026, 11, 23), True,
    )  # fmt: skip
    assert found[B].zombie_reason == "登记状态为注销"
    c = found[C]  # never deleted: marked
    assert (c.status, c.left_on, c.zombie) == ("迁出", date(2026, 11, 23), True)
    assert (found[F].industry, found[F].industry_code) == ("化学原料和化学制品制造业", "2651")

    with db.sessions() as session:
        logs = list(session.scalars(select(RegisterSync).order_by(RegisterSync.id)))
        counts = [(s.file_name, s.by, s.rows, s.new, s.changed, s.left, s.rejected) for s in logs]
        assert counts == [
            ("2026-10.csv", "政务办王", 11, 6, 0, 0, 5),
            ("2026-11.csv", "政务办王", 7, 1, 1, 2, 1),
        ]  # fmt: skip
        assert all(len(s.file_sha256) == 64 and not s.dry_run for s in logs)
        rejected = session.scalars(
            select(RegisterRejection).where(RegisterRejection.sync_id == logs[1].id)
        ).one()
        assert (rejected.row, rejected.raw["企业名称"]) == (8, "代码过短公司")
        assert "应为 18 位" in rejected.reason
        moved = session.scalars(
            select(RegisterChange).where(
                RegisterChange.sync_id == logs[1].id, RegisterChange.kind == "changed"
            )
        ).one()
        assert moved.fields == {"building": ["天保大厦", "临港创新园"]}
        kinds = session.execute(
            select(RegisterChange.kind, func.count())
            .where(RegisterChange.sync_id == logs[1].id)
            .group_by(RegisterChange.kind)
        ).all()
        assert dict(kinds) == {"new": 1, "changed": 1, "left": 2}
    history = register.history(found[C].id)
    assert [c.kind for _, c in history] == ["new", "left"]
    assert history[1][1].fields["status"] == ["存续", "迁出"]


def test_dry_run_writes_nothing_but_its_log(
    db: Database, register: Register, tmp_path: Path
) -> None:
    register.sync(write_csv(tmp_path / "first.csv", FIRST))
    before = {k: (e.building, e.status, e.updated_at) for k, e in enterprises(db).items()}
    report = register.sync(write_csv(tmp_path / "second.csv", SECOND), dry_run=True)
    assert report.dry_run and (report.new, report.changed, report.left) == (1, 1, 2)
    assert {c.kind for c in report.preview} == {"new", "changed", "left"}
    moved = next(c for c in report.preview if c.kind == "changed")
    assert moved.describe() == f"变更 {A} 甲汽车零部件有限公司（楼宇/园区：天保大厦 → 临港创新园）"
    after = {k: (e.building, e.status, e.updated_at) for k, e in enterprises(db).items()}
    assert after == before and F not in after
    with db.sessions() as session:
        log = session.get(RegisterSync, report.sync_id)
        assert log is not None and log.dry_run and log.left == 2
        assert (
            session.scalar(
                select(func.count())
                .select_from(RegisterChange)
                .where(RegisterChange.sync_id == report.sync_id)
            )
            == 0
        )
        assert (
            session.scalar(
                select(func.count())
                .select_from(RegisterRejection)
                .where(RegisterRejection.sync_id == report.sync_id)
            )
            == 1
        )


def test_a_failure_mid_way_writes_nothing(
    db: Database, router: Router, clock: MovableClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    register = Register(db.sessions, router, clock)
    register.config = register.config.model_copy(update={"batch_size": 2})
    register.sync(write_csv(tmp_path / "first.csv", FIRST))
    before = {k: (e.building, e.status) for k, e in enterprises(db).items()}

    from handoff import register as module

    calls = {"n": 0}
    real = module._Run.flush

    def failing(self: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # two batches written, then the database fails
            from sqlalchemy.exc import OperationalError

            raise OperationalError("UPDATE enterprise", {}, Exception("disk I/O error"))
        real(self)

    monkeypatch.setattr(module._Run, "flush", failing)
    with pytest.raises(DatabaseError, match="未写入任何数据"):
        register.sync(write_csv(tmp_path / "second.csv", SECOND))
    assert {k: (e.building, e.status) for k, e in enterprises(db).items()} == before
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RegisterSync)) == 1


def test_a_file_without_the_required_columns_is_refused(
    db: Database, register: Register, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "x.csv", [["a", "b"]], header=["名称", "地址"])
    with pytest.raises(InputError, match="缺少必需的列：统一社会信用代码"):
        register.sync(path)
    (tmp_path / "x.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(InputError, match="不支持的文件类型"):
        register.sync(tmp_path / "x.pdf")
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RegisterSync)) == 0


def test_xlsx_and_gb18030_exports_and_the_import_headers(
    db: Database, register: Register, tmp_path: Path
) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["统一社会信用代码", "企业名称", "经营状态", "行业", "成立日期"])
    sheet.append([A, "甲公司", "在业", "C36", date(2020, 1, 2)])
    book.save(tmp_path / "export.xlsx")
    report = register.sync(tmp_path / "export.xlsx")
    assert (report.new, report.rejected) == (1, [])
    assert enterprises(db)[A].established_on == date(2020, 1, 2)

    # the headers of `yxby enterprises import`, in GB18030 as Excel saves a CSV
    text = f"统一社会信用代码,企业名称,所属行业\r\n{A},甲公司,工业\r\n{B},乙公司,金融业\r\n"
    (tmp_path / "old.csv").write_bytes(text.encode("gb18030"))
    report = register.sync(tmp_path / "old.csv", full=False)
    assert (report.new, report.changed, report.left) == (1, 1, 0)
    assert enterprises(db)[A].industry == "工业"


def test_a_partial_export_marks_nobody_and_channel_records_stay(
    db: Database, register: Register, tmp_path: Path
) -> None:
    with db.begin() as session:
        session.add(
            Enterprise(uscc=F, name="渠道企业", kind=EnterpriseKind.ENTERPRISE, tags=["渠道登记"])
        )
    register.sync(write_csv(tmp_path / "first.csv", FIRST))
    report = register.sync(write_csv(tmp_path / "part.csv", FIRST[:1]), full=False)
    assert report.left == 0
    report = register.sync(write_csv(tmp_path / "full.csv", FIRST[:1]))
    assert report.left == 5
    assert enterprises(db)[F].status == "存续"  # provisional records are not the export's


def test_an_entity_that_comes_back_is_active_again(
    db: Database, register: Register, tmp_path: Path
) -> None:
    register.sync(write_csv(tmp_path / "1.csv", FIRST))
    register.sync(write_csv(tmp_path / "2.csv", SECOND))
    report = register.sync(write_csv(tmp_path / "3.csv", FIRST[:6]))
    c = enterprises(db)[C]
    assert (c.status, c.left_on, c.zombie, c.zombie_reason) == ("存续", None, False, None)
    assert report.changed >= 1


# ---------------------------------------------------------------------- coverage


def test_coverage_on_a_known_register(
    db: Database,
    register: Register,
    tmp_path: Path,
    make_commissioner: Callable[..., Commissioner],
) -> None:
    zhang = make_commissioner("张三", "投促局")
    li = make_commissioner("李四", "商务局")
    register.sync(write_csv(tmp_path / "1.csv", FIRST))
    with db.begin() as session:
        for code, person in ((A, zhang), (B, li), (E, li)):
            session.scalars(select(Enterprise).where(Enterprise.uscc == code)).one()\
                .commissioner_id = person.id  # fmt: skip
    # active: A B C D IND (E is a zombie)
    by_building = register.coverage("building")
    assert {(r.key, r.total, r.covered) for r in by_building.rows} == {
        ("天保大厦", 2, 1), ("（未登记）", 3, 1),
    }  # fmt: skip
    assert (by_building.total, by_building.covered, by_building.uncovered) == (5, 2, 3)
    assert by_building.excluded == 1
    by_grid = register.coverage("grid")
    assert {(r.key, r.total, r.covered) for r in by_grid.rows} == {
        ("空港一网格", 2, 2), ("海港二网格", 2, 0), ("（未登记）", 1, 0),
    }  # fmt: skip
    by_dept = register.coverage("department")
    # covered: the commissioner's department; uncovered: where routing would send them
    assert {(r.key, r.total, r.covered) for r in by_dept.rows} == {
        ("投促局", 1, 1),
        ("商务局", 1, 1),
        ("天保控股", 1, 0),  # C: 天保大厦 (附件2第4项)
        ("规建局", 1, 0),  # D: 运输业 (附件3第2项)
        ("市场监管局", 1, 0),  # IND: 个体工商户 (附件2第5项)
    }
    gaps = register.uncovered("grid", "海港二网格")
    assert [e.uscc for e in gaps] == sorted([D, IND])
    assert [e.uscc for e in register.uncovered("department", "天保控股")] == [C]


def test_bulk_assignment_by_filter_is_one_audit_event(
    db: Database,
    register: Register,
    tmp_path: Path,
    make_commissioner: Callable[..., Commissioner],
) -> None:
    make_commissioner("王五", "社发局")
    register.sync(write_csv(tmp_path / "1.csv", FIRST))
    flt = AssignFilter.parse(["网格=海港二网格", "unassigned"])
    assert register.count(flt) == 2
    preview = register.assign("王五", flt, dry_run=True)
    assert preview.count == 2 and all(e.commissioner_id is None for e in enterprises(db).values())
    result = register.assign("王五", flt, by="cli")
    assert (result.count, result.commissioner, result.department) == (2, "王五", "社发局")
    found = enterprises(db)
    assert {k for k, e in found.items() if e.commissioner_id} == {D, IND}
    with db.sessions() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "register_assign")
        ).one()
        assert event.detail["count"] == 2
        assert event.detail["filter"] == {"grid": "海港二网格", "unassigned": True}
        assert sorted(u for u, _ in event.detail["enterprises"]) == sorted([D, IND])
    # again: nothing left to take, no second event
    assert register.assign("王五", flt).count == 0
    with db.sessions() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "register_assign")
            )
            == 1
        )
    # zombies are never assigned: E (62, no annual report) is not counted, IND (餐饮业) is
    assert register.count(AssignFilter(industry="62")) == 1
    assert register.count(AssignFilter(industry="C")) == 1
    assert register.count(AssignFilter(industry="H")) == 1  # IND (餐饮业, 62)


def test_assignment_errors(
    db: Database, register: Register, make_commissioner: Callable[..., Commissioner]
) -> None:
    with pytest.raises(InputError, match="至少给出一个筛选条件"):
        register.assign("王五", AssignFilter())
    with pytest.raises(InputError, match="未登记"):
        register.assign("无此人", AssignFilter(grid="x"))
    with pytest.raises(InputError, match="无法理解的筛选条件"):
        AssignFilter.parse(["楼层=3"])


def test_active_filter_excludes_zombies_and_leavers(
    db: Database, register: Register, tmp_path: Path
) -> None:
    register.sync(write_csv(tmp_path / "1.csv", FIRST))
    register.sync(write_csv(tmp_path / "2.csv", SECOND))
    with db.sessions() as session:
        active = set(session.scalars(select(Enterprise.uscc).where(active_filter())))
    assert active == {A, D, IND, F}


def test_the_fast_credit_code_check_agrees_with_stdnum() -> None:
    import random

    from stdnum.cn import uscc

    from handoff.registry import _uscc_fast

    rng = random.Random(14)
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    for _ in range(20_000):
        body = "".join(rng.choice("0123456789") for _ in range(8)) + "".join(
            rng.choice(alphabet) for _ in range(9)
        )
        good = body + uscc.calc_check_digit(body)
        bad = body + rng.choice(alphabet)
        assert _uscc_fast(good) and uscc.is_valid(good)
        assert _uscc_fast(bad) == uscc.is_valid(bad)
    assert not _uscc_fast("91120116MA05K0XX0O")  # O is not in the alphabet
    assert not _uscc_fast("91120116ma05k0xx0e")  # not clean: the slow path decides
