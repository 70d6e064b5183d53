"""Enterprise registry (一企一档) and the commissioners who serve it.

:func:`import_file` reads a CSV (UTF-8 with or without BOM; GB18030 as Excel writes it is
accepted too) or an XLSX (first sheet) with a Chinese header row, validates every row
(统一社会信用代码 by ``stdnum.cn.uscc``), and writes all valid rows in one transaction.
Bad rows are reported with their row number and a Chinese reason; a fatal problem (an
unreadable file, a missing required column) raises :class:`~yxby.errors.InputError` and
writes nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from handoff.models import (
    ChannelIdentity,
    Commissioner,
    CommissionerBinding,
    CommissionerRole,
    Enterprise,
    EnterpriseKind,
    utcnow,
)
from yxby.errors import DatabaseError, InputError, RoutingError

if TYPE_CHECKING:
    from routing.departments import DepartmentDirectory

__all__ = [
    "COLUMNS",
    "ImportReport",
    "RejectedRow",
    "add_commissioner",
    "bind_identity",
    "commissioner_of",
    "find_by_name",
    "find_enterprise",
    "import_file",
    "kind_from_uscc",
    "list_commissioners",
    "normalise_uscc",
    "register_from_channel",
    "route_facts",
    "validate_uscc",
]

COLUMNS: dict[str, tuple[str, ...]] = {
    "uscc": (
        "统一社会信用代码",
        "社会信用代码",
        "信用代码",
        "统一代码",
        "注册号/统一社会信用代码",
        "USCC",
    ),
    "name": (
        "企业名称",
        "名称",
        "市场主体名称",
        "主体名称",
        "企业（个体工商户）名称",
        "个体工商户名称",
        "字号名称",
        "单位名称",
    ),
    "kind": ("类型", "主体类型", "市场主体类型", "企业类型", "类别"),
    "industry": ("行业", "所属行业", "行业类别", "行业分类", "国民经济行业"),
    "tags": ("标签", "企业标签", "服务标签"),
    "commissioner": ("包保专员", "企业服务专员", "服务专员", "专员", "包保人"),
}
"""Accepted header names per field (compared after removing spaces, any case)."""
REQUIRED = ("uscc", "name")

_KIND_ALIASES = {
    "企业": EnterpriseKind.ENTERPRISE,
    "公司": EnterpriseKind.ENTERPRISE,
    "法人企业": EnterpriseKind.ENTERPRISE,
    "个体工商户": EnterpriseKind.INDIVIDUAL,
    "个体户": EnterpriseKind.INDIVIDUAL,
    "个体": EnterpriseKind.INDIVIDUAL,
}
_TAG_SPLIT = re.compile(r"[,，、;；|/\s]+")
_COMMISSIONER_CELL = re.compile(r"^(?P<name>[^()（）]+?)\s*(?:[(（](?P<dept>[^()（）]+)[)）])?$")


# ------------------------------------------------------------------------------ USCC


def normalise_uscc(raw: object) -> str:
    """Upper-case, full-width folded, every space removed."""
    text = unicodedata.normalize("NFKC", str(raw if raw is not None else ""))
    return re.sub(r"\s+", "", text).upper()


_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100-2015, as stdnum.cn.uscc
_USCC_VALUE = {c: i for i, c in enumerate(_USCC_ALPHABET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_CLEAN = re.compile(r"^[0-9]{8}[0-9A-HJ-NPQRTUWXY]{10}$")


def _uscc_fast(code: str) -> bool:
    """Whether an already clean 18-character code has the right check character (the same
    computation as ``stdnum.cn.uscc``, without its per-call cleaning: syncs check 200,000)."""
    if not _USCC_CLEAN.match(code):
        return False
    total = sum(_USCC_VALUE[c] * w for c, w in zip(code, _USCC_WEIGHTS, strict=False))
    return code[-1] == _USCC_ALPHABET[(31 - total) % 31]


def validate_uscc(raw: object) -> str:
    """The normalised code, or ``InputError`` with a Chinese reason."""
    if isinstance(raw, str) and _uscc_fast(raw):
        return raw
    from stdnum.cn import uscc
    from stdnum.exceptions import (
        InvalidChecksum,
        InvalidComponent,
        InvalidFormat,
        InvalidLength,
    )

    code = normalise_uscc(raw)
    if not code:
        raise InputError("统一社会信用代码为空")
    try:
        return str(uscc.validate(code))
    except InvalidLength:
        raise InputError(f"统一社会信用代码应为 18 位，「{code}」为 {len(code)} 位") from None
    except InvalidChecksum:
        raise InputError(f"统一社会信用代码「{code}」校验位错误") from None
    except (InvalidFormat, InvalidComponent):
        raise InputError(
            f"统一社会信用代码「{code}」含有不允许的字符"
            "（只能是数字和除 I、O、Z、S、V 外的大写字母）"
        ) from None


def kind_from_uscc(code: str) -> EnterpriseKind:
    """Kind implied by the code (GB 32100: ``92`` = 个体工商户), for rows without one."""
    return EnterpriseKind.INDIVIDUAL if code.startswith("92") else EnterpriseKind.ENTERPRISE


# ---------------------------------------------------------------------------- report


@dataclass(frozen=True)
class RejectedRow:
    """A row that was not imported, with why."""

    row: int
    uscc: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"row": self.row, "uscc": self.uscc, "reason": self.reason}


@dataclass
class ImportReport:
    """What an import did: new and updated enterprises, and every rejected row."""

    path: str
    rows: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.path,
            "rows": self.rows,
            "imported": self.imported,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": [r.to_dict() for r in self.rejected],
        }

    def summary(self) -> str:
        """One Chinese line."""
        return (
            f"共 {self.rows} 行：新增 {self.imported}，更新 {self.updated}，"
            f"未变 {self.unchanged}，拒绝 {len(self.rejected)}"
        )


# ---------------------------------------------------------------------------- reading


def _read_rows(path: Path) -> list[list[str]]:
    """Every row of a CSV (UTF-8 or GB18030) or XLSX file: the 名录库 sync's reader."""
    from handoff.register import _open_rows

    return list(_open_rows(path)[1])


def _header_key(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).casefold()


def _map_header(header: Sequence[str], path: Path) -> dict[str, int]:
    lookup = {_header_key(alias): key for key, aliases in COLUMNS.items() for alias in aliases}
    found: dict[str, int] = {}
    for index, title in enumerate(header):
        key = lookup.get(_header_key(title))
        if key is not None and key not in found:
            found[key] = index
    missing = [COLUMNS[k][0] for k in REQUIRED if k not in found]
    if missing:
        raise InputError(
            f"{path} 的表头缺少必需的列：{'、'.join(missing)}"
            f"（表头为：{'、'.join(h for h in header if h) or '空'}）"
        )
    return found


# ---------------------------------------------------------------------- commissioners


def _commissioner_index(session: Session) -> dict[str, list[Commissioner]]:
    index: dict[str, list[Commissioner]] = {}
    for person in session.scalars(select(Commissioner).where(Commissioner.active.is_(True))):
        index.setdefault(person.name, []).append(person)
    return index


def _resolve_commissioner(
    cell: str,
    index: dict[str, list[Commissioner]],
    canonical: Callable[[str], str | None],
) -> Commissioner:
    match = _COMMISSIONER_CELL.match(cell)
    name = match.group("name").strip() if match else cell
    dept = match.group("dept") if match else None
    people = index.get(name, [])
    if dept:
        wanted = canonical(dept.strip())
        people = [p for p in people if p.department == wanted]
    if not people:
        raise InputError(f"包保专员「{cell}」未登记（请先用 yxby commissioners add 登记）")
    if len(people) > 1:
        depts = "、".join(p.department for p in people)
        raise InputError(f"包保专员「{cell}」有重名（{depts}），请写成「姓名（部门）」")
    return people[0]


# ---------------------------------------------------------------------------- import


@dataclass(frozen=True)
class _Row:
    number: int
    uscc: str
    name: str
    kind: EnterpriseKind
    industry: str | None
    tags: list[str]
    commissioner: Commissioner | None


def _parse_rows(
    rows: Sequence[Sequence[str]],
    columns: dict[str, int],
    index: dict[str, list[Commissioner]],
    canonical: Callable[[str], str | None],
    report: ImportReport,
) -> Iterator[_Row]:
    def get(row: Sequence[str], key: str) -> str:
        pos = columns.get(key)
        return row[pos].strip() if pos is not None and pos < len(row) else ""

    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=2):
        if not any(c.strip() for c in row):
            continue
        report.rows += 1
        raw = get(row, "uscc")
        try:
            code = validate_uscc(raw)
            if code in seen:
                raise InputError(f"与第 {seen[code]} 行的统一社会信用代码重复")
            name = get(row, "name")
            if not name:
                raise InputError("企业名称为空")
            kind_text = get(row, "kind")
            if kind_text:
                kind = _KIND_ALIASES.get(kind_text.replace(" ", ""))
                if kind is None:
                    raise InputError(f"未知的类型「{kind_text}」（应为 企业 或 个体工商户）")
            else:
                kind = kind_from_uscc(code)
            who = get(row, "commissioner")
            person = _resolve_commissioner(who, index, canonical) if who else None
        except InputError as exc:
            report.rejected.append(RejectedRow(number, normalise_uscc(raw), str(exc)))
            continue
        seen[code] = number
        tags = [t for t in _TAG_SPLIT.split(get(row, "tags")) if t]
        yield _Row(
            number=number,
            uscc=code,
            name=name[:200],
            kind=kind,
            industry=get(row, "industry")[:100] or None,
            tags=list(dict.fromkeys(tags)),
            commissioner=person,
        )


def _apply(session: Session, row: _Row, now: datetime, report: ImportReport) -> None:
    existing = find_enterprise(session, row.uscc)
    if existing is None:
        session.add(
            Enterprise(
                uscc=row.uscc,
                name=row.name,
                kind=row.kind,
                industry=row.industry,
                tags=row.tags,
                commissioner_id=row.commissioner.id if row.commissioner else None,
                created_at=now,
                updated_at=now,
            )
        )
        report.imported += 1
        return
    changes: dict[str, Any] = {
        "name": row.name,
        "kind": row.kind,
        "industry": row.industry,
        "tags": row.tags,
    }
    if row.commissioner is not None:  # an empty cell keeps the current assignment
        changes["commissioner_id"] = row.commissioner.id
    changed = False
    for attr, value in changes.items():
        if getattr(existing, attr) != value:
            setattr(existing, attr, value)
            changed = True
    if changed:
        existing.updated_at = now
        report.updated += 1
    else:
        report.unchanged += 1


def import_file(
    sessions: sessionmaker[Session],
    path: Path | str,
    *,
    departments: DepartmentDirectory | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Import enterprises from *path*; all valid rows in one transaction.

    Existing enterprises (same 统一社会信用代码) are updated; the report lists every
    rejected row. ``InputError`` on a fatal problem, with nothing written.
    """
    p = Path(path)
    rows = _read_rows(p)
    while rows and not any(c.strip() for c in rows[0]):
        rows.pop(0)
    if not rows:
        raise InputError(f"{p} 是空文件，没有表头")
    columns = _map_header(rows[0], p)
    if departments is None:
        from routing.departments import load_departments

        departments = load_departments()
    directory = departments

    def canonical(name: str) -> str | None:
        found = directory.find(name)
        return found.name if found else None

    report = ImportReport(path=str(p))
    at = now or utcnow()
    try:
        with sessions.begin() as session:
            index = _commissioner_index(session)
            for row in _parse_rows(rows[1:], columns, index, canonical, report):
                _apply(session, row, at, report)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"导入失败，未写入任何数据：{exc.__class__.__name__}: {exc}") from exc
    return report


# ---------------------------------------------------------------------------- lookups


def find_enterprise(session: Session, uscc: str) -> Enterprise | None:
    """The enterprise with this 统一社会信用代码 (any case or spacing), or ``None``."""
    code = normalise_uscc(uscc)
    return session.scalars(
        select(Enterprise)
        .options(selectinload(Enterprise.commissioner))
        .where(Enterprise.uscc == code)
    ).one_or_none()


def route_facts(session: Session, uscc: str) -> dict[str, str | None] | None:
    """Registry facts for routing, keyed like ``routing.RouteFacts``; ``None`` if unknown."""
    enterprise = find_enterprise(session, uscc)
    if enterprise is None:
        return None
    person = enterprise.commissioner
    if person is not None and not person.active:
        person = None
    return {
        "enterprise_kind": enterprise.kind.value,
        "enterprise_industry": enterprise.industry,
        "assigned_department": person.department if person else None,
        "assigned_commissioner": person.name if person else None,
        "recruited_by": enterprise.recruited_by,
        "building": enterprise.building,
        "grid": enterprise.grid,
    }


def find_by_name(session: Session, name: str) -> Enterprise | None:
    """The one enterprise registered under exactly *name* (``None`` if none or several)."""
    named = session.scalars(select(Enterprise).where(Enterprise.name == name.strip()).limit(2))
    rows = list(named)
    return rows[0] if len(rows) == 1 else None


def register_from_channel(
    session: Session, identity: ChannelIdentity, uscc: str, name: str | None, now: datetime
) -> Enterprise:
    """The enterprise a chat user names for a ticket, filed (一企一档) if the registry lacks it.

    An unknown code gets a provisional record tagged ``渠道登记`` (so the ticket has a home and
    the next import completes it); the identity is linked so the user is not asked again.
    """
    code = validate_uscc(uscc)
    enterprise = find_enterprise(session, code)
    if enterprise is None:
        enterprise = Enterprise(
            uscc=code,
            name=(name or "").strip() or f"未登记企业 {code}",
            kind=kind_from_uscc(code),
            industry=None,
            tags=["渠道登记"],
            created_at=now,
            updated_at=now,
        )
        session.add(enterprise)
        session.flush()
    from contextlib import suppress

    from handoff.binding import BindingError, link

    # a claim, 未核验 until proven (handoff.binding); an identity verified for another
    # enterprise keeps that binding, and the ticket is filed all the same
    with suppress(BindingError):
        link(identity, enterprise)
    return enterprise


def commissioner_of(session: Session, channel: str, user_key: str) -> Commissioner | None:
    """The active commissioner whose chat account this is, or ``None``."""
    from handoff.conversations import first_look

    return first_look(session, channel, user_key)[0]


def bind_identity(session: Session, identity: ChannelIdentity, uscc: str) -> Enterprise | None:
    """Link a chat user to a registered enterprise (``绑定``); ``None`` if it is not registered.

    The link is a claim, 未核验 until a code or the commissioner proves it
    (:mod:`handoff.binding`). Raises ``InputError`` for a malformed code, ``BindingError``
    when the identity is verified for another enterprise. Binding shows no tickets of other
    users: a chat sees only the tickets filed from it.
    """
    from handoff.binding import claim

    return claim(session, identity, uscc)


def add_commissioner(
    session: Session,
    *,
    name: str,
    department: str,
    role: CommissionerRole | str = CommissionerRole.COMMISSIONER,
    phone: str | None = None,
    bindings: Iterable[tuple[str, str]] = (),
    departments: DepartmentDirectory | None = None,
    now: datetime | None = None,
) -> Commissioner:
    """Register a commissioner (or head, or 政务办 overseer) with channel bindings."""
    if departments is None:
        from routing.departments import load_departments

        departments = load_departments()
    who = name.strip()
    if not who:
        raise InputError("专员姓名不能为空")
    try:
        dept = departments.canonical(department)
    except RoutingError as exc:
        raise InputError(str(exc)) from None
    try:
        kind = CommissionerRole(str(role).strip())
    except ValueError:
        options = "、".join(r.value for r in CommissionerRole)
        raise InputError(f"未知的角色「{role}」（应为 {options} 之一）") from None
    clash = session.scalars(
        select(Commissioner).where(Commissioner.name == who, Commissioner.department == dept)
    ).one_or_none()
    if clash is not None:
        raise InputError(f"{dept}已登记名为「{who}」的人员")
    at = now or utcnow()
    person = Commissioner(
        name=who,
        department=dept,
        role=kind,
        phone=(phone or "").strip() or None,
        active=True,
        created_at=at,
    )
    session.add(person)
    session.flush()
    for channel, user_key in bindings:
        taken = session.scalars(
            select(CommissionerBinding).where(
                CommissionerBinding.channel == channel, CommissionerBinding.user_key == user_key
            )
        ).one_or_none()
        if taken is not None:
            raise InputError(f"{channel} 账号 {user_key} 已绑定给其他人员")
        session.add(
            CommissionerBinding(
                commissioner_id=person.id, channel=channel, user_key=user_key, created_at=at
            )
        )
    session.flush()
    return person


def list_commissioners(session: Session, department: str | None = None) -> list[Commissioner]:
    """Commissioners (with bindings), by department then name."""
    stmt = (
        select(Commissioner)
        .options(selectinload(Commissioner.bindings))
        .order_by(Commissioner.department, Commissioner.name)
    )
    if department is not None:
        stmt = stmt.where(Commissioner.department == department)
    return list(session.scalars(stmt))
