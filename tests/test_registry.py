"""Enterprise registry: USCC validation, CSV/XLSX import with bad rows, lookups."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

import handoff.registry as registry
from handoff.db import Database
from handoff.models import CommissionerRole, Enterprise, EnterpriseKind
from handoff.registry import (
    add_commissioner,
    find_enterprise,
    import_file,
    kind_from_uscc,
    normalise_uscc,
    route_facts,
    validate_uscc,
)
from yxby.errors import DatabaseError, InputError

DATA = Path(__file__).parent / "data" / "registry"


def make_uscc(seq: int, prefix: str = "91") -> str:
    """A valid 统一社会信用代码 (prefix ``92``: 个体工商户)."""
    from stdnum.cn import uscc

    body = f"{prefix}120116{seq:09d}"
    return body + uscc.calc_check_digit(body)


HEADER = ["统一社会信用代码", "企业名称", "类型", "行业", "标签", "包保专员"]
GOOD = make_uscc(1)
BAD_CHECKSUM = GOOD[:-1] + ("0" if GOOD[-1] != "0" else "1")


def enterprises(db: Database) -> dict[str, Enterprise]:
    with db.sessions() as session:
        return {e.uscc: e for e in session.scalars(select(Enterprise))}


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    path.write_text("\n".join(",".join(r) for r in rows) + "\n", encoding=encoding)
    return path


def write_xlsx(path: Path, rows: list[list[Any]]) -> Path:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    book.create_sheet("其他").append(["不读这张表"])
    book.save(path)
    return path


# ------------------------------------------------------------------------------- USCC


def test_uscc_is_normalised_and_validated() -> None:
    assert normalise_uscc(" 9112 0116 0000 0000 1x ") == "91120116000000001X"
    assert validate_uscc(GOOD.lower()) == GOOD
    assert validate_uscc(GOOD.replace("9", "９", 1)) == GOOD  # full-width digit


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("", "为空"),
        (GOOD[:-1], "应为 18 位"),
        (BAD_CHECKSUM, "校验位错误"),
        ("9112011600000000IO", "不允许的字符"),
    ],
)
def test_bad_uscc_has_a_chinese_reason(code: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        validate_uscc(code)


def test_kind_from_uscc() -> None:
    assert kind_from_uscc(make_uscc(1, "92")) is EnterpriseKind.INDIVIDUAL
    assert kind_from_uscc(make_uscc(1, "91")) is EnterpriseKind.ENTERPRISE


# ----------------------------------------------------------------------------- import


def test_csv_import_reports_every_bad_row(db: Database) -> None:
    report = import_file(db.sessions, DATA / "enterprises.csv")
    assert (report.rows, report.imported, report.updated) == (7, 3, 0)
    reasons = {r.row: r.reason for r in report.rejected}
    assert set(reasons) == {4, 5, 6, 7}
    assert "校验位错误" in reasons[4]
    assert reasons[5] == "企业名称为空"
    assert reasons[6] == "与第 2 行的统一社会信用代码重复"
    assert "未知的类型「合作社」" in reasons[7]
    stored = enterprises(db)
    assert len(stored) == 3
    firm = stored["91120116000000101N"]
    assert firm.kind is EnterpriseKind.ENTERPRISE
    assert firm.industry == "交通运输、仓储和邮政业"
    assert firm.tags == ["招商落户", "楼宇园区"]
    assert stored["92120116000000102N"].kind is EnterpriseKind.INDIVIDUAL  # lower case, spaces
    assert stored["911201160000001053"].kind is EnterpriseKind.ENTERPRISE  # inferred
    assert firm.created_at.tzinfo is not None


def test_csv_without_bom_and_in_gb18030(db: Database, tmp_path: Path) -> None:
    rows = [HEADER, [GOOD, "甲公司", "企业", "制造业", "", ""]]
    assert import_file(db.sessions, write_csv(tmp_path / "a.csv", rows)).imported == 1
    rows = [HEADER, [make_uscc(2), "乙公司", "企业", "批发业", "", ""]]
    assert import_file(db.sessions, write_csv(tmp_path / "b.csv", rows, "gb18030")).imported == 1
    assert {e.name for e in enterprises(db).values()} == {"甲公司", "乙公司"}


def test_xlsx_import_with_header_aliases(db: Database, tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "企业.xlsx",
        [
            ["市场主体名称", "社会信用代码", "主体类型", "所属行业"],
            ["丙公司", make_uscc(3), "公司", "软件和信息技术服务业"],
            ["丁商店", make_uscc(4, "92"), "个体户", None],
            [None, None, None, None],
            ["戊公司", BAD_CHECKSUM, "企业", "建筑业"],
            ["己公司", make_uscc(5), "社会团体", "其他"],
        ],
    )
    report = import_file(db.sessions, path)
    assert (report.imported, report.rows) == (2, 4)
    assert [(r.row, r.uscc) for r in report.rejected] == [(5, BAD_CHECKSUM), (6, make_uscc(5))]
    stored = enterprises(db)
    assert stored[make_uscc(4, "92")].kind is EnterpriseKind.INDIVIDUAL
    assert stored[make_uscc(4, "92")].industry is None
    assert stored[make_uscc(3)].industry == "软件和信息技术服务业"


def test_second_import_updates_and_counts_unchanged(db: Database, tmp_path: Path) -> None:
    first = [
        HEADER,
        [GOOD, "甲公司", "企业", "制造业", "", ""],
        [make_uscc(2), "乙", "", "", "", ""],
    ]
    import_file(db.sessions, write_csv(tmp_path / "a.csv", first))
    second = [HEADER, [GOOD, "甲公司（更名）", "企业", "制造业", "楼宇园区", ""]]
    second.append([make_uscc(2), "乙", "", "", "", ""])
    report = import_file(db.sessions, write_csv(tmp_path / "b.csv", second))
    assert (report.imported, report.updated, report.unchanged) == (0, 1, 1)
    firm = enterprises(db)[GOOD]
    assert firm.name == "甲公司（更名）" and firm.tags == ["楼宇园区"]


def test_commissioner_column(
    db: Database, tmp_path: Path, make_commissioner: Callable[..., Any]
) -> None:
    make_commissioner("张三", "商务局")
    make_commissioner("李四", "商务局")
    make_commissioner("李四", "投促局")
    rows = [
        HEADER,
        [make_uscc(1), "甲", "企业", "", "招商落户", "张三"],
        [make_uscc(2), "乙", "企业", "", "", "李四（投资促进局）"],
        [make_uscc(3), "丙", "企业", "", "", "李四"],
        [make_uscc(4), "丁", "企业", "", "", "王五"],
    ]
    report = import_file(db.sessions, write_csv(tmp_path / "a.csv", rows))
    assert report.imported == 2
    reasons = {r.row: r.reason for r in report.rejected}
    assert "有重名" in reasons[4]
    assert "未登记" in reasons[5]
    with db.sessions() as session:
        facts = route_facts(session, make_uscc(2))
        assert facts == {
            "enterprise_kind": "企业",
            "enterprise_industry": None,
            "assigned_department": "投促局",
            "assigned_commissioner": "李四",
            "recruited_by": None,
            "building": None,
            "grid": None,
        }
        assert route_facts(session, make_uscc(9)) is None
        found = find_enterprise(session, make_uscc(1).lower())
        assert found is not None and found.commissioner is not None
        assert found.commissioner.name == "张三"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", "企业名称,类型\n甲,企业\n", "缺少必需的列：统一社会信用代码"),
        ("a.csv", "", "空文件"),
        ("a.xlsx", "not a zip", "无法读取 Excel"),
        ("a.pdf", "x", "不支持的文件类型"),
        ("a.csv", b"\xff\xfe\x00\xd8bad", "无法读取"),
    ],
)
def test_fatal_problems_write_nothing(
    db: Database, tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        import_file(db.sessions, path)
    assert enterprises(db) == {}


def test_missing_file(db: Database, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="找不到文件"):
        import_file(db.sessions, tmp_path / "nope.csv")


def test_import_is_all_or_nothing(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [HEADER] + [[make_uscc(n), f"企业{n}", "企业", "", "", ""] for n in range(1, 6)]
    path = write_csv(tmp_path / "a.csv", rows)
    real = registry._apply
    calls = 0

    def failing(session: Any, row: Any, now: Any, report: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            session.flush()
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        real(session, row, now, report)

    monkeypatch.setattr(registry, "_apply", failing)
    with pytest.raises(DatabaseError, match="未写入任何数据"):
        import_file(db.sessions, path)
    assert enterprises(db) == {}
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Enterprise)) == 0


# ---------------------------------------------------------------------- commissioners


def test_add_commissioner_checks_department_role_and_bindings(db: Database) -> None:
    with db.begin() as session:
        person = add_commissioner(
            session,
            name="王局",
            department="市场局",
            role="负责人",
            bindings=[("telegram", "9")],
        )
        assert (person.department, person.role) == ("市场监管局", CommissionerRole.HEAD)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "王局", "department": "市场监督管理局"}, "已登记"),
        ({"name": "某人", "department": "火星局"}, "未知部门"),
        ({"name": "某人", "department": "政务办", "role": "处长"}, "未知的角色"),
        ({"name": "某人", "department": "政务办", "bindings": [("telegram", "9")]}, "已绑定"),
        ({"name": " ", "department": "政务办"}, "姓名不能为空"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message), db.begin() as session:
            add_commissioner(session, **kwargs)
    with db.sessions() as session:
        assert [p.name for p in registry.list_commissioners(session)] == ["王局"]
