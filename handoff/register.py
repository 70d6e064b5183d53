"""The living 名录库 (issue 14): sync from a 市场监管局 export, zombies, 包保 coverage.

:meth:`Register.sync` reads a CSV (UTF-8 or GB18030) or XLSX export as a stream (headers
from ``config/register.yaml`` plus those of ``yxby enterprises import``), checks every row
(统一社会信用代码 by ``stdnum``, 行业 as a GB/T 4754 code or name — an unknown industry is a
rejected row —, 登记状态, dates, 招商部门, duplicate codes) and reconciles the register in ONE
transaction: new entities, field-level changes, and entities that left (status 注销/吊销/迁出
in the file, or absent from a full export: marked with status and date, never deleted). The
zombie rules are re-evaluated for every row. Every run (dry runs too) is logged in
``register_sync`` with the file's SHA-256, counts and each rejected row; every change is kept
in ``register_change``. A dry run rolls everything back and logs only the run.

:meth:`Register.coverage` counts active entities (:func:`active_filter`) with and without a
包保 commissioner per department, 楼宇/园区 or 网格; :meth:`Register.assign` (re)assigns the
entities a filter selects, as one audit event with the count and each enterprise.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from pydantic import Field
from sqlalchemy import ColumnElement, Table, and_, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from handoff import audit
from handoff.calendar import SHANGHAI
from handoff.models import (
    Commissioner,
    Enterprise,
    EnterpriseKind,
    RegisterChange,
    RegisterRejection,
    RegisterSync,
    utcnow,
)
from handoff.registry import (
    _KIND_ALIASES,
    _TAG_SPLIT,
    COLUMNS,
    _commissioner_index,
    _resolve_commissioner,
    kind_from_uscc,
    normalise_uscc,
    validate_uscc,
)
from yxby.errors import DatabaseError, InputError
from yxby.paths import config_dir
from yxby.yamlconf import StrictModel, load_model

if TYPE_CHECKING:
    from routing import Router

__all__ = [
    "ACTIVE_STATUS",
    "GROUPINGS",
    "UNKNOWN_GROUP",
    "AssignFilter",
    "AssignResult",
    "Change",
    "Coverage",
    "CoverageRow",
    "Register",
    "RegisterConfig",
    "Rejected",
    "SyncReport",
    "active_filter",
    "load_register_config",
    "register_for",
]

ACTIVE_STATUS = "存续"
STATUSES = ("存续", "注销", "吊销", "迁出")
GROUPINGS = ("department", "building", "grid")
UNKNOWN_GROUP = "（未登记）"
CHANNEL_TAG = "渠道登记"  # provisional records filed from a chat (handoff.registry)

# fields a sync compares, with their Chinese labels (for diffs shown to people)
LABELS: dict[str, str] = {
    "name": "企业名称",
    "kind": "类型",
    "industry": "行业",
    "industry_code": "行业代码",
    "status": "登记状态",
    "status_changed_on": "状态变更日期",
    "registered_address": "住所",
    "legal_representative": "法定代表人",
    "established_on": "成立日期",
    "contact_name": "联系人",
    "contact_phone": "联系电话",
    "building": "楼宇/园区",
    "grid": "网格",
    "recruited_by": "招商部门",
    "annual_report_year": "最近年报年度",
    "tags": "标签",
    "commissioner_id": "包保专员",
    "zombie": "僵尸企业",
    "zombie_reason": "僵尸企业原因",
    "left_on": "迁出日期",
}
FIELDS = tuple(LABELS)
_LIMITS = {
    "name": 200,
    "industry": 100,
    "registered_address": 300,
    "legal_representative": 64,
    "contact_name": 64,
    "contact_phone": 32,
    "building": 100,
    "grid": 100,
}


def _table(model: type[Any]) -> Table:
    """The Core table of *model* (bulk inserts without the ORM's per-row work)."""
    return cast(Table, model.__table__)


def active_filter() -> ColumnElement[bool]:
    """SQL clause for the entities coverage and outreach count: 存续 and not a zombie."""
    return and_(Enterprise.status == ACTIVE_STATUS, Enterprise.zombie.is_(False))


def register_for(app: Any) -> Register:
    """The :class:`Register` of a ``bot.app.App`` (built on first use, kept on the app)."""
    found: Register | None = app.__dict__.get("_register")
    if found is None:
        found = Register(app.db.sessions, app.router, app.clock)
        app.__dict__["_register"] = found
    return found


# ------------------------------------------------------------------------------ config


class ZombieRules(StrictModel):
    """``zombie:`` of ``config/register.yaml``."""

    statuses: tuple[str, ...] = ("注销", "吊销", "迁出")
    status_reason: str = "登记状态为{status}"
    absent_reason: str = "不在{date}的名录库导出中，视为迁出"
    missed_annual_reports: int | None = Field(default=2, ge=1)
    annual_reason: str = "连续{missed}年未报送年报（最近年报年度：{year}）"
    never_reported_reason: str = "成立已满{missed}年未报送年报"


class RegisterConfig(StrictModel):
    """``config/register.yaml``: export headers, status names, zombie rules."""

    columns: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    statuses: dict[Literal["存续", "注销", "吊销", "迁出"], tuple[str, ...]] = Field(
        default_factory=dict
    )
    absent_status: Literal["注销", "吊销", "迁出"] = "迁出"
    zombie: ZombieRules = ZombieRules()
    batch_size: int = Field(default=2000, ge=1, le=50_000)
    preview_limit: int = Field(default=500, ge=0)


def load_register_config(path: Path | None = None) -> RegisterConfig:
    """Load ``config/register.yaml`` (or *path*); ``ConfigError`` names the bad key."""
    return load_model(path or config_dir() / "register.yaml", RegisterConfig)


# ------------------------------------------------------------------------------ report


@dataclass(frozen=True)
class Rejected:
    """A row a sync did not take: its number in the file, code, reason and raw cells."""

    row: int
    uscc: str
    reason: str
    raw: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"row": self.row, "uscc": self.uscc, "reason": self.reason, "raw": self.raw}


@dataclass(frozen=True)
class Change:
    """What a sync does to one enterprise: ``new``, ``changed`` or ``left``, and the fields
    that change (``field → (old, new)``, as text)."""

    kind: str
    uscc: str
    name: str
    fields: dict[str, tuple[str, str]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (field names in Chinese)."""
        return {
            "kind": self.kind,
            "uscc": self.uscc,
            "name": self.name,
            "fields": {LABELS.get(k, k): list(v) for k, v in self.fields.items()},
        }

    def describe(self) -> str:
        """One Chinese line: 变更 企业名称：旧 → 新；…"""
        label = {"new": "新增", "changed": "变更", "left": "迁出/注销"}.get(self.kind, self.kind)
        parts = [f"{LABELS.get(k, k)}：{old or '（空）'} → {new or '（空）'}" for k, (old, new) in
                 self.fields.items()]  # fmt: skip
        return f"{label} {self.uscc} {self.name}" + (f"（{'；'.join(parts)}）" if parts else "")


@dataclass
class SyncReport:
    """What a sync did (or, for a dry run, would do)."""

    sync_id: int
    file_name: str
    sha256: str
    dry_run: bool
    full: bool
    rows: int = 0
    new: int = 0
    changed: int = 0
    left: int = 0
    unchanged: int = 0
    zombies: int = 0
    seconds: float = 0.0
    rejected: list[Rejected] = field(default_factory=list)
    preview: list[Change] = field(default_factory=list)

    def summary(self) -> str:
        """One Chinese line."""
        mode = "试运行（未写入）：" if self.dry_run else ""
        return (
            f"{mode}共 {self.rows} 行：新增 {self.new}，变更 {self.changed}，"
            f"迁出/注销 {self.left}，未变 {self.unchanged}，拒绝 {len(self.rejected)}，"
            f"新标记僵尸企业 {self.zombies}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "sync_id": self.sync_id,
            "file": self.file_name,
            "sha256": self.sha256,
            "dry_run": self.dry_run,
            "full": self.full,
            "rows": self.rows,
            "new": self.new,
            "changed": self.changed,
            "left": self.left,
            "unchanged": self.unchanged,
            "zombies": self.zombies,
            "seconds": round(self.seconds, 3),
            "rejected": [r.to_dict() for r in self.rejected],
            "preview": [c.to_dict() for c in self.preview],
        }


@dataclass(frozen=True)
class CoverageRow:
    """Active entities of one department, 楼宇/园区 or 网格, with and without a commissioner."""

    key: str
    total: int
    covered: int

    @property
    def uncovered(self) -> int:
        """Entities without an (active) 包保 commissioner."""
        return self.total - self.covered

    @property
    def rate(self) -> float:
        """Share covered (1.0 for an empty group)."""
        return self.covered / self.total if self.total else 1.0


@dataclass(frozen=True)
class Coverage:
    """包保 coverage of the active register, grouped by department, building or grid."""

    by: str
    rows: tuple[CoverageRow, ...]
    excluded: int  # zombies and entities that left: not counted

    @property
    def total(self) -> int:
        """All active entities."""
        return sum(r.total for r in self.rows)

    @property
    def covered(self) -> int:
        """Active entities with a 包保 commissioner."""
        return sum(r.covered for r in self.rows)

    @property
    def uncovered(self) -> int:
        """Active entities without one."""
        return self.total - self.covered


@dataclass(frozen=True)
class AssignFilter:
    """Which active entities a bulk assignment takes (every given condition must hold)."""

    building: str | None = None
    grid: str | None = None
    recruited_by: str | None = None
    kind: str | None = None
    industry: str | None = None  # a GB/T 4754 code prefix (C, 36, 3611) or the stored name
    commissioner: str | None = None  # the current commissioner's name
    unassigned: bool = False
    uscc: tuple[str, ...] = ()

    KEYS: ClassVar[tuple[str, ...]] = (
        "building", "grid", "recruited_by", "kind", "industry", "commissioner", "unassigned",
        "uscc",
    )  # fmt: skip

    @classmethod
    def parse(cls, items: Sequence[str]) -> AssignFilter:
        """From ``key=value`` items (CLI ``--filter``); Chinese keys 楼宇/网格/招商部门 … too."""
        aliases = {
            "楼宇": "building", "园区": "building", "楼宇/园区": "building", "网格": "grid",
            "招商部门": "recruited_by", "招商": "recruited_by", "类型": "kind",
            "行业": "industry", "专员": "commissioner", "包保专员": "commissioner",
            "未包保": "unassigned", "统一社会信用代码": "uscc",
        }  # fmt: skip
        values: dict[str, Any] = {}
        for item in items:
            key, sep, value = item.partition("=")
            key = aliases.get(key.strip(), key.strip())
            if not sep and key == "unassigned":
                value = "1"
            if key not in cls.KEYS or (not sep and key != "unassigned"):
                known = "、".join(k for k in cls.KEYS)
                raise InputError(f"无法理解的筛选条件「{item}」（应为 键=值，键为 {known} 之一）")
            if key == "unassigned":
                values[key] = value.strip().lower() not in ("0", "false", "no", "否", "")
            elif key == "uscc":
                values[key] = tuple(normalise_uscc(v) for v in re.split(r"[,，\s]+", value) if v)
            else:
                values[key] = value.strip() or None
        return cls(**values)

    def is_empty(self) -> bool:
        """No condition at all (an assignment of the whole register is refused)."""
        return not any(getattr(self, k) for k in self.KEYS)

    def describe(self) -> dict[str, Any]:
        """The conditions given, JSON-ready."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k in self.KEYS if (v := getattr(self, k))
        }


@dataclass(frozen=True)
class AssignResult:
    """A bulk assignment: how many entities it took, to whom, and the audit event."""

    count: int
    unchanged: int
    commissioner: str
    department: str
    dry_run: bool
    sample: tuple[tuple[str, str], ...]  # (uscc, name) of the first entities


# ----------------------------------------------------------------------------- reading


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _hash_and_encoding(path: Path) -> tuple[str, str | None]:
    """SHA-256 of the file and, for text, the encoding it decodes with (streaming)."""
    digest = hashlib.sha256()
    decoder: codecs.IncrementalDecoder | None = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                if decoder is not None:
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError:
                        decoder = None
        if decoder is not None:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                decoder = None
    except OSError as exc:
        raise InputError(f"无法读取 {path}：{exc.strerror or exc}") from None
    return digest.hexdigest(), ("utf-8-sig" if decoder is not None else "gb18030")


def _csv_rows(path: Path, encoding: str) -> Iterator[list[str]]:
    try:
        with path.open(encoding=encoding, newline="") as handle:
            for row in csv.reader(handle):
                yield [c.strip() for c in row]
    except UnicodeDecodeError:
        raise InputError(f"无法读取 {path}：既不是 UTF-8 也不是 GB18030 编码的文本") from None
    except csv.Error as exc:
        raise InputError(f"{path} 不是有效的 CSV：{exc}") from None


def _xlsx_rows(path: Path) -> Iterator[list[str]]:
    from zipfile import BadZipFile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (OSError, BadZipFile, InvalidFileException, KeyError, ValueError) as exc:
        raise InputError(f"无法读取 Excel 文件 {path}：{exc}") from None
    try:
        if not book.worksheets:
            raise InputError(f"Excel 文件 {path} 没有工作表")
        for row in book.worksheets[0].iter_rows(values_only=True):
            yield [_cell(c) for c in row]
    finally:
        book.close()


def _open_rows(path: Path) -> tuple[str, Iterator[list[str]]]:
    if not path.is_file():
        raise InputError(f"找不到文件：{path}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        sha, encoding = _hash_and_encoding(path)
        return sha, _csv_rows(path, encoding or "utf-8-sig")
    if suffix in (".xlsx", ".xlsm"):
        sha, _ = _hash_and_encoding(path)
        return sha, _xlsx_rows(path)
    raise InputError(f"不支持的文件类型「{path.suffix}」：请使用 .csv 或 .xlsx")


def _header_key(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).casefold()


_DATE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(?:[ T].*)?$")


def _date(text: str, what: str) -> date:
    found = _DATE.match(text) or re.match(r"^(\d{4})(\d{2})(\d{2})$", text)
    try:
        if found:
            return date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
    except ValueError:
        pass
    raise InputError(f"{what}「{text}」不是有效日期（应为 2020-01-31 这样的日期）")


def _year(text: str, what: str) -> int:
    found = re.match(r"^(\d{4})\s*(?:年度?|年)?$", text)
    if not found or not 1949 <= int(found.group(1)) <= 2100:
        raise InputError(f"{what}「{text}」不是有效年份")
    return int(found.group(1))


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list):
        return "、".join(map(str, value))
    if isinstance(value, EnterpriseKind):
        return value.value
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


_LEGAL_FORMS = re.compile(r"公司|企业|合伙|独资|集体|分支|农民专业合作社|外商|法人")


def _kind_of(text: str) -> EnterpriseKind | None:
    """企业 or 个体工商户 from a 类型 cell; exports write the legal form (有限责任公司 …)."""
    kind = _KIND_ALIASES.get(text.replace(" ", ""))
    if kind is not None:
        return kind
    if "个体" in text:
        return EnterpriseKind.INDIVIDUAL
    return EnterpriseKind.ENTERPRISE if _LEGAL_FORMS.search(text) else None


# ------------------------------------------------------------------------------ service


class Register:
    """The 名录库 service: sync, coverage, bulk assignment, the sync log."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        router: Router,
        clock: Callable[[], datetime] = utcnow,
        config: RegisterConfig | None = None,
    ) -> None:
        self._sessions = sessions
        self.router = router
        self._clock = clock
        self.config = config or load_register_config()
        self._columns: dict[str, str] = {}
        for key, aliases in {**COLUMNS, **self.config.columns}.items():
            for alias in aliases:
                self._columns.setdefault(_header_key(alias), key)
        self._statuses: dict[str, str] = {
            _header_key(alias): status
            for status, aliases in self.config.statuses.items()
            for alias in (status, *aliases)
        }
        for status in STATUSES:
            self._statuses.setdefault(status, status)

    # ------------------------------------------------------------------ sync

    def sync(
        self,
        path: Path | str,
        *,
        dry_run: bool = False,
        by: str = "cli",
        full: bool = True,
        file_name: str | None = None,
    ) -> SyncReport:
        """Reconcile the register with the export at *path*; one transaction.

        ``InputError`` (nothing written) for an unreadable file or a header without
        统一社会信用代码 and 企业名称; ``DatabaseError`` (nothing written) if the database
        fails mid-way.
        """
        started = time.perf_counter()
        p = Path(path)
        sha, rows = _open_rows(p)
        header: list[str] | None = None
        for row in rows:
            if any(row):
                header = row
                break
        if header is None:
            raise InputError(f"{p} 是空文件，没有表头")
        columns = self._map_header(header, p)
        now = self._clock()
        report = SyncReport(
            sync_id=0, file_name=(file_name or p.name)[:255], sha256=sha, dry_run=dry_run,
            full=full,
        )  # fmt: skip
        try:
            with self._sessions() as session:
                transaction = session.begin()
                try:
                    log = RegisterSync(
                        at=now, by=by[:64], file_name=report.file_name, file_sha256=sha,
                        full=full, dry_run=dry_run,
                    )  # fmt: skip
                    session.add(log)
                    session.flush()
                    _Run(self, session, log.id, now, report, columns, header).run(rows)
                    report.seconds = time.perf_counter() - started
                    self._fill_log(log, report)
                    if dry_run:
                        transaction.rollback()
                    else:
                        self._add_rejections(session, log.id, report.rejected)
                        report.sync_id = log.id
                        transaction.commit()
                except BaseException:
                    transaction.rollback()
                    raise
            if dry_run:
                with self._sessions.begin() as session:
                    log = RegisterSync(
                        at=now, by=by[:64], file_name=report.file_name, file_sha256=sha,
                        full=full, dry_run=True,
                    )  # fmt: skip
                    self._fill_log(log, report)
                    session.add(log)
                    session.flush()
                    self._add_rejections(session, log.id, report.rejected)
                    report.sync_id = log.id
        except SQLAlchemyError as exc:
            raise DatabaseError(
                f"名录库同步失败，未写入任何数据：{exc.__class__.__name__}: {exc}"
            ) from exc
        return report

    def _map_header(self, header: Sequence[str], path: Path) -> dict[str, int]:
        found: dict[str, int] = {}
        for index, title in enumerate(header):
            key = self._columns.get(_header_key(title))
            if key is not None and key not in found:
                found[key] = index
        missing = [COLUMNS[k][0] for k in ("uscc", "name") if k not in found]
        if missing:
            raise InputError(
                f"{path.name} 的表头缺少必需的列：{'、'.join(missing)}"
                f"（表头为：{'、'.join(h for h in header if h) or '空'}）"
            )
        return found

    @staticmethod
    def _fill_log(log: RegisterSync, report: SyncReport) -> None:
        log.rows, log.new, log.changed, log.left = (
            report.rows, report.new, report.changed, report.left,
        )  # fmt: skip
        log.unchanged, log.rejected, log.zombies = (
            report.unchanged, len(report.rejected), report.zombies,
        )  # fmt: skip
        log.seconds = round(report.seconds, 3)

    def _add_rejections(self, session: Session, sync_id: int, rejected: list[Rejected]) -> None:
        size = self.config.batch_size
        for start in range(0, len(rejected), size):
            session.execute(
                insert(RegisterRejection),
                [
                    {"sync_id": sync_id, "row": r.row, "uscc": r.uscc[:64] or None,
                     "reason": r.reason, "raw": r.raw}
                    for r in rejected[start : start + size]
                ],
            )  # fmt: skip

    def status_of(self, text: str) -> str | None:
        """The canonical 登记状态 for an export's wording, or ``None``."""
        return self._statuses.get(_header_key(text))

    def zombie_reason(
        self,
        status: str,
        annual_year: int | None,
        established: date | None,
        today: date,
        *,
        annual_known: bool,
    ) -> str | None:
        """Why an entity is a 僵尸企业 under the config's rules, or ``None``."""
        rules = self.config.zombie
        if status in rules.statuses:
            return rules.status_reason.format(status=status)
        limit = rules.missed_annual_reports
        if limit is None:
            return None
        last_due = today.year - 1
        if annual_year is not None:
            missed = last_due - annual_year
            if missed >= limit:
                return rules.annual_reason.format(missed=missed, year=annual_year)
        elif annual_known and established is not None:
            due = last_due - established.year + 1
            if due >= limit:
                return rules.never_reported_reason.format(missed=due)
        return None

    # -------------------------------------------------------------- the log

    def syncs(self, limit: int = 50) -> list[RegisterSync]:
        """The sync log, newest first."""
        with self._sessions() as session:
            stmt = select(RegisterSync).order_by(RegisterSync.id.desc()).limit(limit)
            return list(session.scalars(stmt))

    def sync_detail(self, sync_id: int) -> tuple[RegisterSync, list[RegisterRejection]] | None:
        """One logged run and every row it rejected."""
        with self._sessions() as session:
            log = session.get(RegisterSync, sync_id)
            if log is None:
                return None
            stmt = (
                select(RegisterRejection)
                .where(RegisterRejection.sync_id == sync_id)
                .order_by(RegisterRejection.row)
            )
            return log, list(session.scalars(stmt))

    def history(self, enterprise_id: int) -> list[tuple[RegisterSync, RegisterChange]]:
        """What syncs changed on one enterprise, oldest first (for the 一企一档)."""
        with self._sessions() as session:
            stmt = (
                select(RegisterSync, RegisterChange)
                .join(RegisterChange, RegisterChange.sync_id == RegisterSync.id)
                .where(RegisterChange.enterprise_id == enterprise_id)
                .order_by(RegisterChange.id)
            )
            return [(s, c) for s, c in session.execute(stmt)]

    # ------------------------------------------------------------- coverage

    def coverage(self, by: str = "department") -> Coverage:
        """包保 coverage of active entities grouped *by* department, building or grid.

        An entity is covered when it has an active commissioner. Its department is that
        commissioner's; an uncovered entity counts for the department routing would send it
        to from what the register knows (招商部门, 楼宇/园区, 行业, 个体工商户, 网格).
        """
        if by not in GROUPINGS:
            raise InputError(f"未知的统计维度「{by}」（应为 department、building 或 grid）")
        covered = and_(Commissioner.id.is_not(None), Commissioner.active.is_(True))
        with self._sessions() as session:
            excluded = session.scalar(
                select(func.count()).select_from(Enterprise).where(~active_filter())
            )
            base = select(func.count(), func.count(Commissioner.id).filter(covered)).select_from(
                Enterprise
            )
            base = base.outerjoin(Commissioner, Commissioner.id == Enterprise.commissioner_id)
            base = base.where(active_filter())
            counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            if by in ("building", "grid"):
                column = getattr(Enterprise, by)
                stmt = base.add_columns(column).group_by(column)
                for total, ok, key in session.execute(stmt):
                    counts[key or UNKNOWN_GROUP][0] += total
                    counts[key or UNKNOWN_GROUP][1] += ok
            else:
                held = (
                    select(Commissioner.department, func.count())
                    .select_from(Enterprise)
                    .join(Commissioner, Commissioner.id == Enterprise.commissioner_id)
                    .where(active_filter(), Commissioner.active.is_(True))
                    .group_by(Commissioner.department)
                )
                for dept, total in session.execute(held):
                    counts[dept][0] += total
                    counts[dept][1] += total
                open_ = (
                    select(
                        Enterprise.kind, Enterprise.industry, Enterprise.recruited_by,
                        Enterprise.building, Enterprise.grid, func.count(),
                    )
                    .select_from(Enterprise)
                    .outerjoin(Commissioner, Commissioner.id == Enterprise.commissioner_id)
                    .where(active_filter(), or_(Commissioner.id.is_(None),
                                                Commissioner.active.is_(False)))
                    .group_by(Enterprise.kind, Enterprise.industry, Enterprise.recruited_by,
                              Enterprise.building, Enterprise.grid)
                )  # fmt: skip
                for kind, industry, recruited, building, grid, total in session.execute(open_):
                    dept = self.responsible_department(kind, industry, recruited, building, grid)
                    counts[dept][0] += total
        rows = tuple(
            CoverageRow(key, total, ok)
            for key, (total, ok) in sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[0]))
        )
        return Coverage(by=by, rows=rows, excluded=excluded or 0)

    def responsible_department(
        self,
        kind: EnterpriseKind | str | None,
        industry: str | None,
        recruited_by: str | None,
        building: str | None,
        grid: str | None,
    ) -> str:
        """Who serves an entity without a commissioner: routing on the register's facts."""
        from routing import RouteFacts

        kind_value = kind.value if isinstance(kind, EnterpriseKind) else kind
        facts = RouteFacts(
            enterprise_kind=kind_value if kind_value in ("企业", "个体工商户") else None,  # type: ignore[arg-type]
            enterprise_industry=industry,
            recruited_by=recruited_by,
            building=building,
            grid=grid,
        )
        return self.router.route(facts).department

    def uncovered(self, by: str, key: str, *, limit: int = 200) -> list[Enterprise]:
        """Active entities without a commissioner in one group of :meth:`coverage`."""
        if by not in GROUPINGS:
            raise InputError(f"未知的统计维度「{by}」（应为 department、building 或 grid）")
        with self._sessions() as session:
            stmt = (
                select(Enterprise)
                .outerjoin(Commissioner, Commissioner.id == Enterprise.commissioner_id)
                .where(active_filter(), or_(Commissioner.id.is_(None),
                                            Commissioner.active.is_(False)))
                .order_by(Enterprise.uscc)
            )  # fmt: skip
            if by in ("building", "grid"):
                column = getattr(Enterprise, by)
                stmt = stmt.where(column.is_(None) if key == UNKNOWN_GROUP else column == key)
                return list(session.scalars(stmt.limit(limit)))
            found: list[Enterprise] = []
            routed: dict[tuple[Any, ...], str] = {}
            for e in session.scalars(stmt).yield_per(1000):
                facts = (e.kind, e.industry, e.recruited_by, e.building, e.grid)
                dept = routed.get(facts)
                if dept is None:
                    dept = routed[facts] = self.responsible_department(*facts)
                if dept == key:
                    found.append(e)
                    if len(found) >= limit:
                        break
            return found

    # --------------------------------------------------------------- assign

    def _select(self, flt: AssignFilter) -> Any:
        stmt = select(Enterprise).where(active_filter())
        if flt.building:
            stmt = stmt.where(Enterprise.building == flt.building)
        if flt.grid:
            stmt = stmt.where(Enterprise.grid == flt.grid)
        if flt.recruited_by:
            found = self.router.departments.find(flt.recruited_by)
            stmt = stmt.where(
                Enterprise.recruited_by == (found.name if found else flt.recruited_by)
            )
        if flt.kind:
            kind = _KIND_ALIASES.get(flt.kind.replace(" ", ""))
            if kind is None:
                raise InputError(f"未知的类型「{flt.kind}」（应为 企业 或 个体工商户）")
            stmt = stmt.where(Enterprise.kind == kind)
        if flt.industry:
            code = flt.industry.strip().upper()
            if re.fullmatch(r"[A-T]|\d{2,4}", code):
                column = Enterprise.industry_code
                if len(code) == 1:
                    # a 门类 letter: the letter itself or any 大类 code of that 门类
                    divisions = self._divisions_of(code)
                    stmt = stmt.where(
                        or_(column == code, *(column.startswith(d) for d in divisions))
                    )
                else:
                    stmt = stmt.where(column.startswith(code))
            else:
                stmt = stmt.where(Enterprise.industry == flt.industry.strip())
        if flt.commissioner:
            stmt = stmt.join(Commissioner, Commissioner.id == Enterprise.commissioner_id).where(
                Commissioner.name == flt.commissioner
            )
        if flt.unassigned:
            stmt = stmt.outerjoin(
                Commissioner, Commissioner.id == Enterprise.commissioner_id
            ).where(or_(Enterprise.commissioner_id.is_(None), Commissioner.active.is_(False)))
        if flt.uscc:
            stmt = stmt.where(Enterprise.uscc.in_(flt.uscc))
        return stmt.order_by(Enterprise.uscc)

    def _divisions_of(self, letter: str) -> list[str]:
        table = self.router.industries
        return [
            f"{n:02d}"
            for n in range(1, 98)
            if (table._gb_codes.get(f"{n:02d}") or ("",))[0] == letter
        ]

    def count(self, flt: AssignFilter) -> int:
        """How many active entities *flt* selects."""
        with self._sessions() as session:
            sub = self._select(flt).subquery()
            return session.scalar(select(func.count()).select_from(sub)) or 0

    def assign(
        self,
        commissioner: str,
        flt: AssignFilter,
        *,
        department: str | None = None,
        person: audit._Person | None = None,
        by: str = "cli",
        ip: str | None = None,
        dry_run: bool = False,
    ) -> AssignResult:
        """Give the entities *flt* selects to *commissioner* (name, optionally its department).

        One audit event (``register_assign``) with the filter, the count and each enterprise
        with its previous commissioner; all or nothing. ``InputError`` for an unknown or
        ambiguous commissioner, a non-专员, or an empty filter.
        """
        if flt.is_empty():
            raise InputError("请至少给出一个筛选条件（如 楼宇=天保大厦、网格=…、unassigned）")
        with self._sessions() as session:
            transaction = session.begin()
            try:
                result = self._assign(session, commissioner, department, flt, person, by, ip,
                                      dry_run)  # fmt: skip
            except BaseException:
                transaction.rollback()
                raise
            if dry_run:
                transaction.rollback()
            else:
                transaction.commit()
            return result

    def _assign(
        self,
        session: Session,
        commissioner: str,
        department: str | None,
        flt: AssignFilter,
        person: audit._Person | None,
        by: str,
        ip: str | None,
        dry_run: bool,
    ) -> AssignResult:
        if True:
            index = _commissioner_index(session)

            def canonical(name: str) -> str | None:
                found = self.router.departments.find(name)
                return found.name if found else None

            cell = f"{commissioner}（{department}）" if department else commissioner
            target = _resolve_commissioner(cell, index, canonical)
            chosen = list(session.scalars(self._select(flt)))
            names = {c.id: c.name for c in session.scalars(select(Commissioner))}
            moved = [e for e in chosen if e.commissioner_id != target.id]
            at = self._clock()
            if not dry_run:
                for e in moved:
                    e.commissioner_id = target.id
                    e.updated_at = at
                if moved:
                    audit.record(
                        session,
                        "register_assign",
                        at=at,
                        person=person,
                        ip=ip,
                        by=by,
                        commissioner=target.name,
                        department=target.department,
                        filter=flt.describe(),
                        count=len(moved),
                        enterprises=[[e.uscc, names.get(e.commissioner_id or 0)] for e in moved],
                    )
            return AssignResult(
                count=len(moved),
                unchanged=len(chosen) - len(moved),
                commissioner=target.name,
                department=target.department,
                dry_run=dry_run,
                sample=tuple((e.uscc, e.name) for e in moved[:20]),
            )


# -------------------------------------------------------------------------- one run


@dataclass
class _Parsed:
    number: int
    uscc: str
    values: dict[str, Any]  # fields the file gives (column present and cell not empty)
    annual_known: bool


class _Run:
    """One sync: rows parsed, batched, compared with the database and written."""

    def __init__(
        self,
        register: Register,
        session: Session,
        sync_id: int,
        now: datetime,
        report: SyncReport,
        columns: dict[str, int],
        header: list[str],
    ) -> None:
        self.r = register
        self.s = session
        self.sync_id = sync_id
        self.now = now
        self.today = now.astimezone(SHANGHAI).date()
        self.report = report
        self.columns = columns
        self.header = header
        self.seen: dict[str, int] = {}  # uscc → row number
        self.index = _commissioner_index(session)
        self.industries: dict[str, Any] = {}  # cell → IndustryCode or error text
        self.kinds: dict[str, EnterpriseKind | None] = {}
        self.statuses: dict[str, str | None] = {}
        # compared fields: tags only when the file has them (they are JSON: costly to read)
        self.fields = tuple(f for f in FIELDS if f != "tags" or "tags" in columns)
        self.batch: list[_Parsed] = []

    def canonical(self, name: str) -> str | None:
        found = self.r.router.departments.find(name)
        return found.name if found else None

    # ---------------------------------------------------------------- parse

    def run(self, rows: Iterator[list[str]]) -> None:
        size = self.r.config.batch_size
        number = 1  # the header's row (blank rows above it are not counted here)
        for row in rows:
            number += 1
            if not any(row):
                continue
            self.report.rows += 1
            parsed = self.parse(number, row)
            if parsed is None:
                continue
            self.batch.append(parsed)
            if len(self.batch) >= size:
                self.flush()
        self.flush()
        if self.report.full:
            self.mark_absent()

    def raw(self, row: Sequence[str]) -> dict[str, str]:
        """The row's non-empty cells by header (40 cells of 200 characters at most)."""
        cells = [
            ((self.header[i] or f"第{i + 1}列"), v[:200])
            for i, v in enumerate(row[: len(self.header)])
            if v
        ]
        return dict(cells[:40])

    def parse(self, number: int, row: Sequence[str]) -> _Parsed | None:
        cols = self.columns

        width = len(row)
        cells = {key: row[pos] for key, pos in cols.items() if pos < width}
        get = cells.get
        raw_code = get("uscc", "")
        try:
            code = validate_uscc(raw_code)
            if code in self.seen:
                raise InputError(f"与第 {self.seen[code]} 行的统一社会信用代码重复")
            values = self.values(get, code)
        except InputError as exc:
            self.report.rejected.append(
                Rejected(number, normalise_uscc(raw_code), str(exc), self.raw(row))
            )
            return None
        self.seen[code] = number
        return _Parsed(number, code, values, "annual_report_year" in cols)

    def values(self, get: Callable[[str, str], str], code: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        name = get("name", "")
        if not name:
            raise InputError("企业名称为空")
        out["name"] = name[:200]
        kind_text = get("kind", "")
        if kind_text:
            if kind_text in self.kinds:
                kind = self.kinds[kind_text]
            else:
                kind = self.kinds[kind_text] = _kind_of(kind_text)
            if kind is None:
                raise InputError(f"未知的类型「{kind_text}」（应为 企业 或 个体工商户）")
            out["kind"] = kind
        industry = get("industry", "")
        if industry:
            found = self.industries.get(industry)
            if found is None:
                try:
                    found = self.r.router.industries.classify(industry)
                except ValueError as exc:
                    found = str(exc)
                self.industries[industry] = found
            if isinstance(found, str):
                raise InputError(found)
            out["industry"] = found.name[:100]
            out["industry_code"] = found.code
        status_text = get("status", "")
        if status_text:
            if status_text not in self.statuses:
                self.statuses[status_text] = self.r.status_of(status_text)
            status = self.statuses[status_text]
            if status is None:
                raise InputError(
                    f"未知的登记状态「{status_text}」（应为 {'、'.join(STATUSES)} 之一）"
                )
            out["status"] = status
        else:
            out["status"] = ACTIVE_STATUS  # listed in the export: present
        for key, what in (("established_on", "成立日期"), ("status_changed_on", "状态变更日期")):
            text = get(key, "")
            if text:
                out[key] = _date(text, what)
        year = get("annual_report_year", "")
        if year:
            out["annual_report_year"] = _year(year, "最近年报年度")
        for key in ("registered_address", "legal_representative", "contact_name",
                    "contact_phone", "building", "grid"):  # fmt: skip
            text = get(key, "")
            if text:
                out[key] = text[: _LIMITS[key]]
        recruited = get("recruited_by", "")
        if recruited:
            dept = self.r.router.recruiting_department(recruited)
            if dept is None:
                options = "、".join(self.r.router.service_means.recruiting_departments)
                raise InputError(f"「{recruited}」不是招商部门（附件2第2项：{options}）")
            out["recruited_by"] = dept
        tags = [t for t in _TAG_SPLIT.split(get("tags", "")) if t]
        if tags:
            out["tags"] = list(dict.fromkeys(tags))
        who = get("commissioner", "")
        if who:
            out["commissioner_id"] = _resolve_commissioner(who, self.index, self.canonical).id
        if "kind" not in out:
            out["kind_default"] = kind_from_uscc(code)
        return out

    # ---------------------------------------------------------------- write

    def target(self, p: _Parsed, old: dict[str, Any] | None) -> dict[str, Any]:
        """The full new state of the compared fields."""
        v = dict(p.values)
        default_kind = v.pop("kind_default", None)
        new: dict[str, Any] = dict(old) if old else dict.fromkeys(FIELDS)
        if old is None:
            new["tags"] = []
            new["kind"] = default_kind
            new["zombie"] = False
        new.update(v)
        status = new["status"] or ACTIVE_STATUS
        new["status"] = status
        was = old["status"] if old else None
        if status != (was or ACTIVE_STATUS) and "status_changed_on" not in v:
            new["status_changed_on"] = self.today
        if status == ACTIVE_STATUS:
            new["left_on"] = None
        reason = self.r.zombie_reason(
            status, new["annual_report_year"], new["established_on"], self.today,
            annual_known=p.annual_known,
        )  # fmt: skip
        new["zombie"] = reason is not None
        new["zombie_reason"] = reason
        return new

    def flush(self) -> None:
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        fields = self.fields
        cols = [getattr(Enterprise, f) for f in fields]
        stmt = select(Enterprise.id, Enterprise.uscc, *cols).where(
            Enterprise.uscc.in_([p.uscc for p in batch])
        )
        existing = {
            row[1]: (row[0], dict(zip(fields, row[2:], strict=True)))
            for row in self.s.connection().execute(stmt)
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        new_codes: list[str] = []
        report = self.report
        for p in batch:
            found = existing.get(p.uscc)
            if found is None:
                state = self.target(p, None)
                inserts.append(
                    {**state, "uscc": p.uscc, "created_at": self.now, "updated_at": self.now,
                     "synced_at": self.now}
                )  # fmt: skip
                new_codes.append(p.uscc)
                report.new += 1
                report.zombies += bool(state["zombie"])
                self.preview("new", p.uscc, state["name"], {})
                continue
            eid, old = found
            state = self.target(p, old)
            diff = {f: (old[f], state[f]) for f in fields if old[f] != state[f]}
            if not diff:
                report.unchanged += 1
                continue
            left = state["status"] != ACTIVE_STATUS and old["status"] == ACTIVE_STATUS
            kind = "left" if left else "changed"
            if left:
                report.left += 1
            else:
                report.changed += 1
            report.zombies += bool(state["zombie"] and not old["zombie"])
            updates.append(
                {"id": eid, **{f: state[f] for f in diff}, "updated_at": self.now,
                 "synced_at": self.now}
            )  # fmt: skip
            shown = self.shown_diff(diff)
            changes.append(
                {"sync_id": self.sync_id, "enterprise_id": eid, "kind": kind, "fields": shown}
            )
            self.preview(kind, p.uscc, state["name"], shown)
        if inserts:
            # Core executemany (no RETURNING: one statement, not one per few rows), then the
            # new ids by code in one query
            self.s.execute(insert(_table(Enterprise)), inserts)
            ids = self.s.execute(
                select(Enterprise.id).where(Enterprise.uscc.in_(new_codes))
            ).scalars()
            changes.extend(
                {"sync_id": self.sync_id, "enterprise_id": eid, "kind": "new", "fields": {}}
                for eid in ids
            )
        if updates:
            self.s.execute(update(Enterprise), updates)
        if changes:
            self.s.execute(insert(_table(RegisterChange)), changes)

    def shown_diff(self, diff: dict[str, tuple[Any, Any]]) -> dict[str, list[str]]:
        names: dict[int, str] = {}
        if "commissioner_id" in diff:
            ids = [i for i in diff["commissioner_id"] if i]
            names = {c.id: c.name for c in self.s.scalars(
                select(Commissioner).where(Commissioner.id.in_(ids)))}  # fmt: skip

        def text(key: str, value: Any) -> str:
            if key == "commissioner_id":
                return names.get(value, "") if value else ""
            return _shown(value)

        return {k: [text(k, a), text(k, b)] for k, (a, b) in diff.items()}

    def preview(self, kind: str, uscc: str, name: str, fields: dict[str, list[str]]) -> None:
        if len(self.report.preview) < self.r.config.preview_limit:
            self.report.preview.append(
                Change(kind, uscc, name, {k: (v[0], v[1]) for k, v in fields.items()})
            )

    def mark_absent(self) -> None:
        """Entities of a full export's register that the export does not list have left."""
        rules = self.r.config
        status = rules.absent_status
        reason = rules.zombie.absent_reason.format(date=self.today.isoformat())
        # one streamed pass keeps only the ids of those that left (memory stays bounded)
        scan = (
            select(Enterprise.id, Enterprise.uscc)
            .where(Enterprise.status == ACTIVE_STATUS)
            .execution_options(yield_per=10_000)
        )
        candidates = [
            eid for eid, code in self.s.connection().execute(scan) if code not in self.seen
        ]
        ids: list[int] = []
        for start in range(0, len(candidates), rules.batch_size):
            tagged = select(Enterprise.id, Enterprise.tags).where(
                Enterprise.id.in_(candidates[start : start + rules.batch_size])
            )
            ids.extend(
                eid for eid, tags in self.s.execute(tagged) if CHANNEL_TAG not in (tags or [])
            )
        size = rules.batch_size
        day = self.today
        for start in range(0, len(ids), size):
            part = list(
                self.s.execute(
                    select(
                        Enterprise.id, Enterprise.uscc, Enterprise.name, Enterprise.zombie,
                        Enterprise.zombie_reason,
                    ).where(Enterprise.id.in_(ids[start : start + size]))
                )
            )  # fmt: skip
            self.s.execute(
                update(Enterprise),
                [
                    {"id": eid, "status": status, "status_changed_on": day, "left_on": day,
                     "zombie": True, "zombie_reason": reason, "updated_at": self.now,
                     "synced_at": self.now}
                    for eid, *_ in part
                ],
            )  # fmt: skip
            changes = []
            for eid, code, name, zombie, old_reason in part:
                fields = {
                    "status": [ACTIVE_STATUS, status],
                    "status_changed_on": ["", day.isoformat()],
                    "left_on": ["", day.isoformat()],
                    "zombie": [_shown(zombie), "是"],
                    "zombie_reason": [old_reason or "", reason],
                }
                changes.append(
                    {"sync_id": self.sync_id, "enterprise_id": eid, "kind": "left",
                     "fields": fields}
                )  # fmt: skip
                self.preview("left", code, name, fields)
            self.s.execute(insert(_table(RegisterChange)), changes)
            self.report.left += len(part)
            self.report.zombies += sum(1 for g in part if not g[3])
