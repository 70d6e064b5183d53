"""The editors' pages: conversation log, entry figures, gaps, drafts and the hit test (issue 13).

For 编辑 and 管理员 (others get 403). Thin callers of :class:`handoff.editors.Editors`:

* ``/console/editors/log`` — questions → tokens → hits → decision → outcome, masked, filtered
  by outcome, entry, dates and channel; each line offers "add as a wording" / "new entry";
* ``/console/editors/entries`` — per-entry figures, the worst first;
* ``/console/editors/gaps`` — the gap groups of ``yxby kb gaps``, each a "new entry" draft;
* ``/console/editors/tickets`` — resolved tickets (masked) → "draft a 服务案例";
* ``/console/editors/drafts[/{id}]`` — edit, lint, review, then write (only with
  ``YXBY_KNOWLEDGE_WRITABLE``) or download the YAML patch (``/patch``);
* ``/console/editors/test`` — the hit test and the batch hit test (CSV/XLSX upload);
* ``/console/editors/reload`` — reload the knowledge base (when the live holder exists).
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot.console.auth import forbidden, require_staff
from handoff.accounts import Staff
from handoff.editors import (
    OUTCOME_LABELS,
    VERDICT_LABELS,
    BatchReport,
    DraftError,
    Editors,
    HitTest,
    LogFilter,
    batch_hit_test,
    hit_test,
    read_batch,
    writable_from,
)
from handoff.models import KnowledgeDraftKind
from handoff.scope import can_edit_knowledge
from yxby.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from bot.app import App
    from bot.console.pages import Pages
    from knowledge.live import LiveKnowledge

__all__ = ["editors_of", "live_knowledge", "routes"]

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
BASE = "/console/editors"


def live_knowledge(app: App) -> LiveKnowledge | None:
    """The reloading knowledge base (``.reload()``, ``.status``), or ``None`` for a fixed one."""
    return app.live_kb


def editors_of(app: App) -> Editors:
    """The app's :class:`Editors` (built once; the writable setting is read at start)."""
    found = app.__dict__.get("editors")
    if found is None:
        found = Editors(
            app.db.sessions,
            kb=lambda: app.kb,
            knowledge_dir=app.settings.knowledge_dir,
            clock=app.clock,
            departments=app.router.departments.alias_map(),
            writable=writable_from(app.settings.env),
        )
        app.__dict__["editors"] = found
    return found


def _day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"日期应写作 2026-12-01，收到「{text}」") from None


def _int(text: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(text or default)))
    except ValueError:
        return default


def routes(app: App, pages: Pages) -> list[BaseRoute]:
    """The pages of this module."""

    def editors() -> Editors:
        return editors_of(app)

    def status() -> dict[str, Any]:
        holder = live_knowledge(app)
        info: dict[str, Any] = {"live": holder is not None, "writable": editors().writable,
                                "error": None, "text": None}  # fmt: skip
        if holder is not None:
            state = holder.status
            if not state.ok:
                info["error"] = state.error
            loaded = pages.env.filters["local"](state.loaded_at)
            info["text"] = f"知识库在用 {state.entries} 条，{loaded} 加载"
        return info

    def render(name: str, staff: Staff, tab: str, *, code: int = 200, **context: Any) -> Response:
        return pages.render(name, status=code, staff=staff, tab=tab, kb_status=status(), **context)

    def editor_only(
        endpoint: Callable[[Request, Staff], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request, staff: Staff) -> Response:
            if not can_edit_knowledge(staff):
                return forbidden("只有编辑和管理员可以使用知识库编辑页面。", pages)
            return await endpoint(request, staff)

        route.__name__ = endpoint.__name__
        return require_staff(route)

    async def form(request: Request) -> dict[str, str]:
        from bot.console.auth import form_data

        return await form_data(request)

    # ---------------------------------------------------------------- log

    @editor_only
    async def home(request: Request, staff: Staff) -> Response:
        return RedirectResponse(f"{BASE}/log", status_code=303)

    @editor_only
    async def log_page(request: Request, staff: Staff) -> Response:
        q = request.query_params
        error = None
        try:
            wanted = LogFilter(
                outcome=q.get("outcome") or None,
                entry_id=(q.get("entry") or "").strip() or None,
                day_from=_day(q.get("from")),
                day_to=_day(q.get("to")),
                channel=q.get("channel") or None,
                page=_int(q.get("page"), 1, 1, 10**6),
            )
        except InputError as exc:
            error, wanted = str(exc), LogFilter()
        found = await asyncio.to_thread(editors().log, wanted)
        channels = await asyncio.to_thread(editors().channels)
        return render(
            "editors_log.html",
            staff,
            "log",
            log=found,
            error=error,
            outcomes=OUTCOME_LABELS,
            channels=channels,
            q=q,
        )

    # ------------------------------------------------------------ figures

    @editor_only
    async def entries_page(request: Request, staff: Staff) -> Response:
        days = _int(request.query_params.get("days"), 30, 1, 3650)
        since = app.clock() - timedelta(days=days)
        figures = await asyncio.to_thread(editors().entry_figures, since)
        return render("editors_entries.html", staff, "entries", figures=figures, days=days)

    @editor_only
    async def gaps_page(request: Request, staff: Staff) -> Response:
        days = _int(request.query_params.get("days"), 30, 1, 3650)
        groups = await asyncio.to_thread(editors().gaps, days)
        return render("editors_gaps.html", staff, "gaps", groups=groups[:50], days=days)

    @editor_only
    async def tickets_page(request: Request, staff: Staff) -> Response:
        rows = await asyncio.to_thread(editors().resolved_tickets)
        return render("editors_tickets.html", staff, "tickets", tickets=rows)

    # ------------------------------------------------------------- drafts

    @editor_only
    async def drafts_page(request: Request, staff: Staff) -> Response:
        every = request.query_params.get("all") == "1"
        rows = await asyncio.to_thread(lambda: editors().drafts(include_closed=every))
        return render(
            "editors_drafts.html",
            staff,
            "drafts",
            drafts=rows,
            every=every,
            kinds=KnowledgeDraftKind,
        )

    @editor_only
    async def create_draft(request: Request, staff: Staff) -> Response:
        values = await form(request)
        kind = values.get("kind", "")
        turn = values.get("turn_id", "").strip()
        turn_id = int(turn) if turn.isdigit() else None

        def make() -> int:
            e = editors()
            if kind == "wording":
                entry_id = values.get("entry_id", "").strip()
                if not entry_id:
                    raise DraftError("请填写要补充问法的条目编号")
                return e.draft_wording(
                    staff, entry_id, turn_id=turn_id, question=values.get("question"), by=staff.name
                )
            if kind == "entry":
                gap = [t for t in values.get("gap", "").split("、") if t.strip()]
                return e.draft_entry(
                    staff,
                    turn_id=turn_id,
                    gap=gap or None,
                    question=values.get("question"),
                    by=staff.name,
                )
            if kind == "case":
                return e.draft_case(staff, values.get("number", ""), by=staff.name)
            raise DraftError("未知的草稿类型")

        try:
            draft_id = await asyncio.to_thread(make)
        except InputError as exc:
            rows = await asyncio.to_thread(editors().drafts)
            return render(
                "editors_drafts.html",
                staff,
                "drafts",
                code=400,
                drafts=rows,
                every=False,
                kinds=KnowledgeDraftKind,
                error=str(exc),
            )
        return RedirectResponse(f"{BASE}/drafts/{draft_id}", status_code=303)

    async def _draft_view(
        staff: Staff,
        draft_id: int,
        *,
        code: int = 200,
        error: str | None = None,
        notice: str | None = None,
        values: dict[str, str] | None = None,
    ) -> Response:
        def load() -> tuple[Any, Any, str | None]:
            row = editors().draft(draft_id)
            try:
                return row, editors().preview(draft_id), None
            except InputError as exc:
                return row, None, str(exc)

        try:
            row, preview, problem = await asyncio.to_thread(load)
        except DraftError as exc:
            return pages.render(
                "auth_message.html",
                status=404,
                title="没有这份草稿",
                message=str(exc),
                back=f"{BASE}/drafts",
            )
        return render(
            "editors_draft.html",
            staff,
            "drafts",
            code=code,
            draft=row,
            preview=preview,
            problem=problem,
            error=error,
            notice=notice,
            values=values,
        )

    @editor_only
    async def draft_page(request: Request, staff: Staff) -> Response:
        draft_id = int(request.path_params["draft_id"])
        notice = {
            "written": "已写入知识库。",
            "reviewed": "已通过审核。",
            "saved": "已保存。",
            "discarded": "已放弃这份草稿。",
            "reloaded": "已重新加载知识库。",
        }.get(request.query_params.get("done", ""))
        return await _draft_view(staff, draft_id, notice=notice)

    @editor_only
    async def draft_action(request: Request, staff: Staff) -> Response:
        draft_id = int(request.path_params["draft_id"])
        values = await form(request)
        action = values.get("action", "save")
        fields = {k: v for k, v in values.items() if k not in ("csrf", "action")}

        def run() -> str:
            e = editors()
            if action in ("save", "review"):
                e.update(staff, draft_id, fields, by=staff.name)
            if action == "review":
                e.review(staff, draft_id, by=staff.name)
                return "reviewed"
            if action == "write":
                e.write(staff, draft_id, by=staff.name)
                holder = live_knowledge(app)
                if holder is not None:
                    holder.reload()
                return "written"
            if action == "discard":
                e.discard(staff, draft_id, by=staff.name)
                return "discarded"
            return "saved"

        try:
            done = await asyncio.to_thread(run)
        except InputError as exc:
            keep = fields if action in ("save", "review") else None
            return await _draft_view(staff, draft_id, code=400, error=str(exc), values=keep)
        return RedirectResponse(f"{BASE}/drafts/{draft_id}?done={done}", status_code=303)

    @editor_only
    async def draft_patch(request: Request, staff: Staff) -> Response:
        draft_id = int(request.path_params["draft_id"])
        try:
            preview = await asyncio.to_thread(editors().preview, draft_id)
        except InputError as exc:
            return pages.render(
                "auth_message.html",
                status=400,
                title="无法生成补丁",
                message=str(exc),
                back=f"{BASE}/drafts/{draft_id}",
            )
        header = f"# 知识库草稿 {draft_id}：在仓库根目录运行 git apply 或 patch -p1 应用本补丁\n"
        return Response(
            header + preview.patch,
            media_type="text/x-diff; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="knowledge-draft-{draft_id}.patch"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    # ------------------------------------------------------------ hit test

    @editor_only
    async def test_page(request: Request, staff: Staff) -> Response:
        question = request.query_params.get("q", "").strip()
        result: HitTest | None = None
        error = None
        if question:
            try:
                result = await asyncio.to_thread(hit_test, app.kb, question, 10)
            except InputError as exc:
                error = str(exc)
        return render(
            "editors_test.html",
            staff,
            "test",
            q=question,
            result=result,
            error=error,
            report=None,
            verdicts=VERDICT_LABELS,
        )

    async def batch_upload(request: Request) -> Response:
        """Read the multipart upload first, so the CSRF check sees its ``csrf`` field."""
        upload: tuple[str, bytes] | None = None
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fields: dict[str, str] = {}
        if kind == "multipart/form-data":
            try:
                parsed = await request.form(max_files=1, max_fields=5)
            except Exception:  # a malformed body: no fields, the CSRF check fails
                parsed = None
            if parsed is not None:
                for key, value in parsed.multi_items():
                    if isinstance(value, str):
                        fields.setdefault(key, value)
                    elif key == "file" and upload is None:
                        data = await value.read(MAX_UPLOAD_BYTES + 1)
                        upload = (value.filename or "", data)
        request.state.yxby_form = fields
        request.state.yxby_upload = upload
        return await batch_run(request)

    @editor_only
    async def batch_run(request: Request, staff: Staff) -> Response:
        upload: tuple[str, bytes] | None = getattr(request.state, "yxby_upload", None)
        report: BatchReport | None = None
        error = None
        if upload is None or not upload[1]:
            error = "请选择要上传的 CSV 或 XLSX 文件"
        elif len(upload[1]) > MAX_UPLOAD_BYTES:
            error = "文件超过 2 MB，请分批上传"
        else:
            name, data = upload
            try:
                rows = await asyncio.to_thread(read_batch, name, data)
                report = await asyncio.to_thread(batch_hit_test, app.kb, rows)
            except InputError as exc:
                error = str(exc)
        return render(
            "editors_test.html",
            staff,
            "test",
            code=400 if error else 200,
            q="",
            result=None,
            error=error,
            report=report,
            verdicts=VERDICT_LABELS,
        )

    # -------------------------------------------------------------- reload

    @editor_only
    async def reload(request: Request, staff: Staff) -> Response:
        holder = live_knowledge(app)
        back = (await form(request)).get("back", f"{BASE}/log")
        if not back.startswith(BASE):
            back = f"{BASE}/log"
        if holder is None:
            return pages.render(
                "auth_message.html",
                status=409,
                title="无法重新加载",
                message="本服务器未启用知识库热加载，请重启 yxby serve。",
                back=back,
            )
        await asyncio.to_thread(holder.reload)
        return RedirectResponse(back, status_code=303)

    return [
        Route(BASE, home, methods=["GET"], name="editors_home"),
        Route(f"{BASE}/log", log_page, methods=["GET"], name="editors_log"),
        Route(f"{BASE}/entries", entries_page, methods=["GET"], name="editors_entries"),
        Route(f"{BASE}/gaps", gaps_page, methods=["GET"], name="editors_gaps"),
        Route(f"{BASE}/tickets", tickets_page, methods=["GET"], name="editors_tickets"),
        Route(f"{BASE}/drafts", drafts_page, methods=["GET"], name="editors_drafts"),
        Route(f"{BASE}/drafts", create_draft, methods=["POST"], name="editors_draft_new"),
        Route(f"{BASE}/drafts/{{draft_id:int}}", draft_page, methods=["GET"]),
        Route(f"{BASE}/drafts/{{draft_id:int}}", draft_action, methods=["POST"]),
        Route(f"{BASE}/drafts/{{draft_id:int}}/patch", draft_patch, methods=["GET"]),
        Route(f"{BASE}/test", test_page, methods=["GET"], name="editors_test"),
        Route(f"{BASE}/test/batch", batch_upload, methods=["POST"], name="editors_batch"),
        Route(f"{BASE}/reload", reload, methods=["POST"], name="editors_reload"),
    ]
