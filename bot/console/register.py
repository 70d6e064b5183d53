"""The 名录库: sync log, upload + dry run + apply, 包保 coverage and bulk assignment (issue 14).

* ``GET /console/register`` — the sync log (dry runs too) and the upload form (政务办, 管理员).
* ``POST /console/register/upload`` — multipart: the export is kept under the data directory
  by its SHA-256 and synced as a dry run; the page shows what would change, every rejected row
  and an 「确认同步」 button.
* ``POST /console/register/apply`` — syncs the uploaded file (named by its hash) for real and
  redirects (303) to its log entry.
* ``GET /console/register/syncs/{id}`` — one run: counts, file hash, every rejected row.
* ``GET /console/register/coverage?by=department|building|grid&key=…`` — coverage tables and
  the uncovered entities of one group; 负责人 see their department's row only.
* ``POST /console/register/assign`` — bulk (re)assignment of a filter's entities to a
  commissioner (政务办, 管理员; a 负责人 within their department), one audit event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot.console.auth import forbidden, form_data, require_staff, signed_in
from handoff.accounts import Staff
from handoff.models import Commissioner, CommissionerRole
from handoff.register import (
    GROUPINGS,
    UNKNOWN_GROUP,
    AssignFilter,
    SyncReport,
    register_for,
)
from yxby import paths
from yxby.errors import YxbyError

if TYPE_CHECKING:
    from bot.app import App
    from bot.console.pages import Pages

__all__ = ["MAX_UPLOAD_BYTES", "routes"]

MAX_UPLOAD_BYTES = 200 * 2**20
UPLOAD_TTL_S = 24 * 3600
BASE = "/console/register"
_TOKEN = re.compile(r"^[0-9a-f]{64}\.(csv|xlsx|xlsm|txt)$")
_SUFFIXES = (".csv", ".xlsx", ".xlsm", ".txt")
BY_LABELS = {"department": "部门", "building": "楼宇/园区", "grid": "网格"}


def _manager(staff: Staff) -> bool:
    return staff.role in (CommissionerRole.OVERSIGHT, CommissionerRole.ADMIN)


def _viewer(staff: Staff) -> bool:
    return _manager(staff) or staff.role is CommissionerRole.HEAD


def _uploads() -> Path:
    """Where uploaded exports wait between the dry run and 确认同步 (a day at most)."""
    folder = paths.data_dir() / "register_uploads"
    folder.mkdir(parents=True, exist_ok=True)
    stale = time.time() - UPLOAD_TTL_S
    for old in folder.iterdir():
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < stale:
                old.unlink()
    return folder


def routes(app: App, pages: Pages) -> list[BaseRoute]:
    """The pages of this module."""
    register = register_for(app)

    def denied(staff: Staff, message: str = "只有政务办和管理员可以同步名录库。") -> Response:
        return pages.render(
            "auth_message.html", status=403, title="无权访问", message=message, back="/console/"
        )

    # ------------------------------------------------------------------ the log

    def overview(staff: Staff, *, error: str | None = None, status: int = 200) -> Response:
        return pages.render(
            "register.html",
            status=status,
            staff=staff,
            syncs=register.syncs(30),
            error=error,
            max_mib=MAX_UPLOAD_BYTES // 2**20,
        )

    @require_staff
    async def index(request: Request, staff: Staff) -> Response:
        if not _manager(staff):
            if staff.role is CommissionerRole.HEAD:
                return RedirectResponse(f"{BASE}/coverage", status_code=303)
            return denied(staff)
        return await asyncio.to_thread(overview, staff)

    @require_staff
    async def sync_page(request: Request, staff: Staff) -> Response:
        if not _manager(staff):
            return denied(staff)
        try:
            sync_id = int(request.path_params["sync_id"])
        except ValueError:
            sync_id = 0
        found = await asyncio.to_thread(register.sync_detail, sync_id)
        if found is None:
            return pages.render(
                "auth_message.html", status=404, title="找不到同步记录",
                message=f"没有编号为 {sync_id} 的同步记录。", back=BASE,
            )  # fmt: skip
        log, rejections = found
        return pages.render(
            "register_sync.html", staff=staff, log=log, rejections=rejections, report=None,
            token=None, applied=request.query_params.get("applied") == "1",
        )  # fmt: skip

    # ------------------------------------------------------ upload, dry run, apply

    def dry_run(staff: Staff, path: Path, name: str, full: bool) -> Response:
        try:
            report = register.sync(path, dry_run=True, by=staff.name, full=full, file_name=name)
        except YxbyError as exc:
            return overview(staff, error=str(exc), status=400)
        return _result(staff, report, path.name, name, full)

    def _result(staff: Staff, report: SyncReport, token: str, name: str, full: bool) -> Response:
        found = register.sync_detail(report.sync_id)
        assert found is not None
        log, rejections = found
        return pages.render(
            "register_sync.html", staff=staff, log=log, rejections=rejections, report=report,
            token=token, file_name=name, full=full, applied=False,
        )  # fmt: skip

    async def upload(request: Request) -> Response:
        # multipart: require_staff's CSRF check reads url-encoded forms only
        staff = await run_in_threadpool(signed_in, request)
        if staff is None:
            return RedirectResponse("/console/login", status_code=303)
        if not _manager(staff):
            return denied(staff)
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception:  # malformed multipart body
            return await asyncio.to_thread(
                overview, staff, error="上传的表单无法读取。", status=400
            )
        given = str(form.get("csrf") or "")
        if not staff.csrf or not hmac.compare_digest(given.encode(), staff.csrf.encode()):
            return forbidden(pages=pages)
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await asyncio.to_thread(
                overview, staff, error="请选择市场监管局导出的 CSV 或 XLSX 文件。", status=400
            )
        name = Path(upload.filename).name[:200]
        suffix = Path(name).suffix.lower()
        if suffix not in _SUFFIXES:
            return await asyncio.to_thread(
                overview, staff, status=400,
                error=f"不支持的文件类型「{suffix or name}」：请上传 .csv 或 .xlsx 文件。",
            )  # fmt: skip
        folder = await asyncio.to_thread(_uploads)
        digest = hashlib.sha256()
        size = 0
        with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as out:
            part = Path(out.name)
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    break
                digest.update(chunk)
                out.write(chunk)
        await upload.close()
        if size > MAX_UPLOAD_BYTES:
            part.unlink(missing_ok=True)
            return await asyncio.to_thread(
                overview, staff, status=400,
                error=f"文件超过 {MAX_UPLOAD_BYTES // 2**20} MB，请分批导出或用命令行同步。",
            )  # fmt: skip
        if size == 0:
            part.unlink(missing_ok=True)
            return await asyncio.to_thread(overview, staff, error="上传的文件是空的。", status=400)
        stored = folder / f"{digest.hexdigest()}{suffix}"
        part.replace(stored)
        full = form.get("partial") is None
        return await asyncio.to_thread(dry_run, staff, stored, name, full)

    def apply(staff: Staff, token: str, name: str, full: bool) -> Response:
        path = _uploads() / token
        if not _TOKEN.match(token) or not path.is_file():
            return overview(staff, error="找不到待同步的文件，请重新上传。", status=400)
        if hashlib.sha256(path.read_bytes()).hexdigest() != token.split(".")[0]:
            return overview(staff, error="待同步的文件已被改动，请重新上传。", status=400)
        try:
            report = register.sync(path, by=staff.name, full=full, file_name=name or token)
        except YxbyError as exc:
            return overview(staff, error=str(exc), status=400)
        path.unlink(missing_ok=True)
        return RedirectResponse(f"{BASE}/syncs/{report.sync_id}?applied=1", status_code=303)

    @require_staff
    async def apply_route(request: Request, staff: Staff) -> Response:
        if not _manager(staff):
            return denied(staff)
        data = await form_data(request)
        return await asyncio.to_thread(
            apply, staff, data.get("token", ""), data.get("file_name", "")[:200],
            data.get("full", "1") == "1",
        )  # fmt: skip

    # ---------------------------------------------------------- coverage, assign

    def commissioners(staff: Staff) -> list[Commissioner]:
        from sqlalchemy import select

        with app.db.sessions() as session:
            stmt = (
                select(Commissioner)
                .where(Commissioner.active.is_(True))
                .where(Commissioner.role.in_([CommissionerRole.COMMISSIONER,
                                              CommissionerRole.HEAD]))
                .order_by(Commissioner.department, Commissioner.name)
            )  # fmt: skip
            if not _manager(staff):
                stmt = stmt.where(Commissioner.department == staff.department)
            return list(session.scalars(stmt))

    def coverage_page(
        staff: Staff,
        by: str,
        key: str | None,
        *,
        notice: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        if not _manager(staff):
            by, key = "department", staff.department
        cover = register.coverage(by)
        rows = cover.rows
        if not _manager(staff):
            rows = tuple(r for r in rows if r.key == staff.department)
        gaps = register.uncovered(by, key) if key else []
        return pages.render(
            "register_coverage.html", status=status, staff=staff, cover=cover, rows=rows,
            by=by, by_labels=BY_LABELS, key=key, gaps=gaps, manager=_manager(staff),
            people=commissioners(staff), notice=notice, error=error,
        )  # fmt: skip

    @require_staff
    async def coverage(request: Request, staff: Staff) -> Response:
        if not _viewer(staff):
            return denied(staff, "只有政务办、管理员和部门负责人可以查看包保覆盖。")
        by = request.query_params.get("by", "department")
        if by not in GROUPINGS:
            by = "department"
        key = request.query_params.get("key") or None
        notice = request.query_params.get("assigned")
        text = f"已分配 {notice} 家企业。" if notice and notice.isdigit() else None
        return await asyncio.to_thread(coverage_page, staff, by, key, notice=text)

    def assign(staff: Staff, data: dict[str, str], ip: str | None) -> Response:
        by = data.get("by", "department")
        by = by if by in GROUPINGS else "department"
        key = data.get("key") or None
        try:
            person_id = int(data.get("commissioner", "0"))
        except ValueError:
            person_id = 0
        chosen = {p.id: p for p in commissioners(staff)}.get(person_id)
        if chosen is None:
            return coverage_page(staff, by, key, error="请选择要分配的包保专员。", status=400)
        if key is None:
            return coverage_page(staff, by, key, error="请先选择一个分组。", status=400)
        if not _manager(staff) and (by != "department" or key != staff.department):
            return denied(staff, "只能分配本部门的企业。")
        if by == "department" or key == UNKNOWN_GROUP:
            codes = tuple(e.uscc for e in register.uncovered(by, key, limit=10_000))
            flt = AssignFilter(uscc=codes, unassigned=True) if codes else None
        else:
            flt = AssignFilter(**{by: key}, unassigned=True)  # type: ignore[arg-type]
        if flt is None:
            return coverage_page(staff, by, key, notice="该组没有未包保的企业。")
        try:
            result = register.assign(
                chosen.name, flt, department=chosen.department, person=staff, by=staff.name,
                ip=ip,
            )  # fmt: skip
        except YxbyError as exc:
            return coverage_page(staff, by, key, error=str(exc), status=400)
        return RedirectResponse(f"{BASE}/coverage?by={by}&assigned={result.count}", status_code=303)

    @require_staff
    async def assign_route(request: Request, staff: Staff) -> Response:
        if not _viewer(staff):
            return denied(staff, "只有政务办、管理员和部门负责人可以分配包保专员。")
        data: dict[str, Any] = await form_data(request)
        ip = request.client.host if request.client else None
        return await asyncio.to_thread(assign, staff, data, ip)

    return [
        Route(BASE, index, methods=["GET"], name="console_register"),
        Route(f"{BASE}/upload", upload, methods=["POST"], name="console_register_upload"),
        Route(f"{BASE}/apply", apply_route, methods=["POST"], name="console_register_apply"),
        Route(
            f"{BASE}/syncs/{{sync_id}}", sync_page, methods=["GET"], name="console_register_sync"
        ),
        Route(f"{BASE}/coverage", coverage, methods=["GET"], name="console_register_coverage"),
        Route(f"{BASE}/assign", assign_route, methods=["POST"], name="console_register_assign"),
    ]
