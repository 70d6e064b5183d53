"""政务办's dashboard: the assessment figures, charts and drill-down (issue 12).

* ``GET /console/assessment`` — the dashboard of a period (``period=2026-10`` | ``2026Q4`` |
  ``2026`` | a day, or ``from``/``to``; default: this month): headline figures, departments
  ranked by score, monthly trends of 按时签收率/按时办结率/满意率, overdue by department,
  the bot's 即时解决率 by month, and the table of every figure. Every number and every bar
  or point links to the tickets behind it.
* ``GET /console/assessment/drill?figure=…&department=…`` — the rows behind one figure
  (its denominator and numerator), each ticket linking to ``/console/tickets/<number>``.
* ``GET /console/assessment/bot?outcome=solved|handoff`` — the bot's questions behind its
  figures.
* ``GET /console/assessment.xlsx`` — the workbook of ``yxby report assess --format xlsx``.

Who: 政务办 sees every department; a department's 负责人 sees the zone's totals and their
own department (figures, rank, and in the drill-down only tickets
:func:`handoff.scope.visible_filter` lets them see); anyone else gets 403.

Charts are SVG drawn on the server (see ``docs/assessment.md`` for why): no script, nothing
inline for the CSP to refuse, and every bar is a plain link.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bot.console.auth import require_staff
from handoff.accounts import Staff
from handoff.assessment import (
    FIGURES,
    Assessment,
    AssessmentError,
    Period,
    parse_period,
    rate_text,
)
from handoff.calendar import SHANGHAI
from handoff.models import CommissionerRole
from handoff.scope import visible_filter

if TYPE_CHECKING:
    from bot.app import App
    from bot.console.pages import Pages

__all__ = ["DASHBOARD_PATH", "routes"]

DASHBOARD_PATH = "/console/assessment"
DRILL_PATH = "/console/assessment/drill"
BOT_PATH = "/console/assessment/bot"
XLSX_PATH = "/console/assessment.xlsx"
ROLES = (CommissionerRole.OVERSIGHT, CommissionerRole.HEAD)
TREND_MONTHS = 6
DRILL_LIMIT = 1000
TABLE_FIGURES = (
    "created",
    "overdue_now",
    "contact_on_time_rate",
    "done_on_time_rate",
    "resolved_rate",
    "feedback_on_time_rate",
    "satisfaction_rate",
    "reopen_rate",
    "urged",
    "callback_rate",
    "escalated",
    "resolved_after_period",
)
TREND_SERIES = (
    ("contact_on_time_rate", "按时签收率", "s1"),
    ("done_on_time_rate", "按时办结率", "s2"),
    ("satisfaction_rate", "满意率", "s3"),
)


# ------------------------------------------------------------------------------ charts


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: label, value text, geometry, link."""

    label: str
    text: str
    y: float
    width: float
    href: str
    tone: str = ""


@dataclass(frozen=True)
class Point:
    """One point of a line chart."""

    x: float
    y: float
    text: str
    href: str


@dataclass(frozen=True)
class Line:
    """One series of a line chart."""

    name: str
    css: str
    points: list[Point]

    @property
    def path(self) -> str:
        """The SVG ``points`` of the polyline (gaps where a month had no data are joined)."""
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


BAR_ROW = 26
BAR_LEFT = 150
BAR_SPAN = 300
LINE_W, LINE_H, LINE_LEFT, LINE_TOP = 460, 200, 40, 12


def bars(items: list[tuple[str, float | None, str, str, str]]) -> list[Bar]:
    """Bars for (label, value, text, href, tone), widest = the largest value."""
    top = max((v for _, v, _, _, _ in items if v), default=0) or 1
    return [
        Bar(label, text, i * BAR_ROW, max(2.0, BAR_SPAN * (value or 0) / top), href, tone)
        for i, (label, value, text, href, tone) in enumerate(items)
    ]


def lines(
    months: list[str], series: list[tuple[str, str, list[tuple[float | None, str]]]]
) -> list[Line]:
    """Line series over *months*; values are rates 0–1 (``None``: no point)."""
    step = (LINE_W - LINE_LEFT - 10) / max(1, len(months) - 1)
    out = []
    for name, css, values in series:
        points = [
            Point(
                LINE_LEFT + i * step if len(months) > 1 else LINE_LEFT + (LINE_W - LINE_LEFT) / 2,
                LINE_TOP + (1 - value) * LINE_H,
                rate_text(value),
                href,
            )
            for i, (value, href) in enumerate(values)
            if value is not None
        ]
        out.append(Line(name, css, points))
    return out


def month_x(months: list[str]) -> list[tuple[float, str]]:
    """The x position and label of every month on the line charts."""
    step = (LINE_W - LINE_LEFT - 10) / max(1, len(months) - 1)
    if len(months) == 1:
        return [(LINE_LEFT + (LINE_W - LINE_LEFT) / 2, months[0][5:] + "月")]
    return [(LINE_LEFT + i * step, m[5:].lstrip("0") + "月") for i, m in enumerate(months)]


# ------------------------------------------------------------------------------ pages


def _trend_period(period: Period) -> Period:
    """The months the trend charts show: the period's when it spans several, else the
    :data:`TREND_MONTHS` months up to the period's end."""
    if len(period.months()) > 1:
        return period
    year, month = period.last.year, period.last.month - (TREND_MONTHS - 1)
    while month < 1:
        year, month = year - 1, month + 12
    return Period(date(year, month, 1), period.last)


def routes(app: App, pages: Pages) -> list[BaseRoute]:
    """The dashboard, the drill-down, the bot's questions and the XLSX download."""
    assessment: Assessment | None = None

    def service() -> Assessment:
        nonlocal assessment
        if assessment is None:
            assessment = Assessment.of(app)
        return assessment

    def allowed(staff: Staff) -> bool:
        return staff.role in ROLES

    def refuse(staff: Staff) -> Response:
        return pages.render(
            "auth_message.html",
            status=403,
            title="无权查看",
            message="考核统计仅向政务办和部门负责人开放。",
            back="/console/",
        )

    def period_of(request: Request) -> tuple[Period, str | None]:
        params = request.query_params
        text = params.get("period", "").strip() or None
        first = params.get("from", "").strip() or None
        last = params.get("to", "").strip() or None
        if text is None and first is None and last is None:
            today = app.clock().astimezone(SHANGHAI).date()
            text = f"{today.year}-{today.month:02d}"
        try:
            return parse_period(text, first=first, last=last), None
        except AssessmentError as exc:
            today = app.clock().astimezone(SHANGHAI).date()
            return parse_period(f"{today.year}-{today.month:02d}"), str(exc)

    def query(period: Period, **extra: str | None) -> str:
        pairs = [("from", period.first.isoformat()), ("to", period.last.isoformat())]
        pairs += [(k, v) for k, v in extra.items() if v]
        return urlencode(pairs)

    def drill_href(period: Period, figure: str, department: str | None) -> str:
        return f"{DRILL_PATH}?{query(period, figure=figure, department=department)}"

    def dashboard(staff: Staff, period: Period, error: str | None) -> dict[str, Any]:
        svc = service()
        now = app.clock()
        report = svc.report(period, now=now)
        own = staff.department if staff.role is CommissionerRole.HEAD else None
        rows = report["departments"]
        if own is not None:
            rows = [r for r in rows if r["department"] == own]
        ranked = sorted(
            (r for r in rows if r["rank"] is not None), key=lambda r: (r["rank"], r["department"])
        )
        active = [r for r in rows if r["rank"] is not None or r["created"] or r["overdue_now"]]
        table_rows = sorted(active, key=lambda r: (r["rank"] is None, r["rank"] or 0))
        focus = next(iter(rows), None) if own is not None else None
        head = focus if focus is not None else report["zone"]
        trend_period = _trend_period(period)
        trend = svc.trend(trend_period, department=own, now=now)
        months = [m["month"] for m in trend]

        def month_period(m: dict[str, Any]) -> Period:
            return Period(date.fromisoformat(m["from"]), date.fromisoformat(m["to"]))

        trend_lines = lines(
            months,
            [
                (
                    label,
                    css,
                    [(m[key], drill_href(month_period(m), key, own)) for m in trend],
                )
                for key, label, css in TREND_SERIES
            ],
        )
        bot_line = lines(
            months,
            [
                (
                    "即时解决率",
                    "s4",
                    [
                        (m["instant_resolution_rate"], f"{BOT_PATH}?{query(month_period(m))}")
                        for m in trend
                    ],
                )
            ],
        )
        score_bars = bars(
            [
                (
                    f"{r['rank']}. {r['department']}",
                    r["score"],
                    f"{r['score']:.1f}",
                    f"#dept-{i}",
                    "",
                )
                for i, r in enumerate(ranked)
            ]
        )
        overdue = sorted(
            (r for r in rows if r["overdue_now"]),
            key=lambda r: (-r["overdue_now"], r["department"]),
        )
        overdue_bars = bars(
            [
                (
                    r["department"],
                    r["overdue_now"],
                    f"{r['overdue_now']} 件",
                    drill_href(period, "overdue_now", r["department"]),
                    "late",
                )
                for r in overdue
            ]
        )
        cards = [
            ("created", "受理量", str(head["created"]), drill_href(period, "created", own)),
            (
                "contact_on_time_rate",
                "按时签收率",
                rate_text(head["contact_on_time_rate"]),
                drill_href(period, "contact_on_time_rate", own),
            ),
            (
                "done_on_time_rate",
                "按时办结率",
                rate_text(head["done_on_time_rate"]),
                drill_href(period, "done_on_time_rate", own),
            ),
            (
                "satisfaction_rate",
                "满意率",
                rate_text(head["satisfaction_rate"]),
                drill_href(period, "satisfaction_rate", own),
            ),
            (
                "overdue_now",
                "当前超期",
                f"{head['overdue_now']} 件",
                drill_href(period, "overdue_now", own),
            ),
            (
                "instant",
                "智能问答即时解决率",
                rate_text(report["bot"]["instant_resolution_rate"]),
                f"{BOT_PATH}?{query(period, outcome='solved')}",
            ),
        ]
        return {
            "staff": staff,
            "period": period,
            "report": report,
            "error": error,
            "own": own,
            "cards": cards,
            "score_bars": score_bars,
            "overdue_bars": overdue_bars,
            "bar_row": BAR_ROW,
            "bar_left": BAR_LEFT,
            "bar_span": BAR_SPAN,
            "trend_lines": trend_lines,
            "bot_line": bot_line,
            "months": month_x(months),
            "line": {"w": LINE_W, "h": LINE_H, "left": LINE_LEFT, "top": LINE_TOP},
            "ticks": [(LINE_TOP + (1 - t) * LINE_H, f"{int(t * 100)}%") for t in (0, 0.5, 1)],
            "table_rows": table_rows,
            "table_figures": [(k, FIGURES[k]) for k in TABLE_FIGURES],
            "drill": lambda figure, department=None: drill_href(period, figure, department),
            "rate_text": rate_text,
            "xlsx": f"{XLSX_PATH}?{query(period)}",
            "oversight": own is None,
            "period_value": period.label,
            "from_value": period.first.isoformat(),
            "to_value": period.last.isoformat(),
            "prev": query(_shift(period, -1)),
            "next": query(_shift(period, 1)),
        }

    @require_staff
    async def dashboard_page(request: Request, staff: Staff) -> Response:
        """考核统计: the dashboard of a period."""
        if not allowed(staff):
            return refuse(staff)
        period, error = period_of(request)
        ctx = await run_in_threadpool(dashboard, staff, period, error)
        return pages.render("assessment.html", **ctx)

    def drill(staff: Staff, request: Request) -> tuple[int, dict[str, Any]]:
        svc = service()
        period, error = period_of(request)
        params = request.query_params
        own = staff.department if staff.role is CommissionerRole.HEAD else None
        department = params.get("department", "").strip() or None
        status = 200
        try:
            figure = svc.figure(params.get("figure", ""))
            if department is not None:
                department = svc.department(department)
        except AssessmentError as exc:
            return 404, {"staff": staff, "error": str(exc), "back": DASHBOARD_PATH}
        if own is not None and department not in (None, own):
            return 404, {
                "staff": staff,
                "error": f"您只能查看{own}的考核明细",
                "back": DASHBOARD_PATH,
            }
        if own is not None:
            department = own
        result = svc.drill(
            figure.key,
            period,
            department=department,
            visible=None if own is None else visible_filter(staff),
            limit=DRILL_LIMIT,
        )
        report_row = _figure_row(svc.report(period, department=department), department)
        counts = report_row.get(f"{figure.key}_counts")
        return status, {
            "staff": staff,
            "error": error,
            "figure": figure,
            "department": department,
            "period": period,
            "drill": result,
            "value": report_row.get(figure.key),
            "counts": counts,
            "rate_text": rate_text,
            "back": f"{DASHBOARD_PATH}?{query(period)}",
            "limit": DRILL_LIMIT,
        }

    @require_staff
    async def drill_page(request: Request, staff: Staff) -> Response:
        """The tickets behind one figure."""
        if not allowed(staff):
            return refuse(staff)
        status, ctx = await run_in_threadpool(drill, staff, request)
        if status != 200:
            return pages.render(
                "auth_message.html",
                status=status,
                title="无法显示明细",
                message=ctx["error"],
                back=ctx["back"],
            )
        return pages.render("assessment_drill.html", **ctx)

    @require_staff
    async def bot_page(request: Request, staff: Staff) -> Response:
        """The bot's questions behind 即时解决率 / 转人工率."""
        if not allowed(staff):
            return refuse(staff)
        period, error = period_of(request)
        outcome = request.query_params.get("outcome", "").strip() or None
        if outcome not in (None, "solved", "handoff"):
            outcome = None

        def load() -> dict[str, Any]:
            svc = service()
            return {
                "staff": staff,
                "period": period,
                "error": error,
                "outcome": outcome,
                "bot": svc.bot(period),
                "questions": svc.bot_questions(period, outcome=outcome),
                "rate_text": rate_text,
                "back": f"{DASHBOARD_PATH}?{query(period)}",
                "base": f"{BOT_PATH}?{query(period)}",
            }

        return pages.render("assessment_bot.html", **(await run_in_threadpool(load)))

    @require_staff
    async def xlsx_download(request: Request, staff: Staff) -> Response:
        """The 年度考核 workbook of the period (政务办 only: it lists every department)."""
        if staff.role is not CommissionerRole.OVERSIGHT:
            return refuse(staff)
        period, _ = period_of(request)

        def build() -> bytes:
            from bot.cli.report import write_xlsx

            buffer = io.BytesIO()
            write_xlsx(service(), period, buffer)
            return buffer.getvalue()

        data = await run_in_threadpool(build)
        name = f"assessment-{period.first.isoformat()}-{period.last.isoformat()}.xlsx"
        return Response(
            data,
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
            },
        )

    return [
        Route(DASHBOARD_PATH, dashboard_page, methods=["GET"]),
        Route(DRILL_PATH, drill_page, methods=["GET"]),
        Route(BOT_PATH, bot_page, methods=["GET"]),
        Route(XLSX_PATH, xlsx_download, methods=["GET"]),
    ]


def _figure_row(report: dict[str, Any], department: str | None) -> dict[str, Any]:
    if department is None:
        return dict(report["zone"])
    return next((r for r in report["departments"] if r["department"] == department), {})


def _shift(period: Period, months: int) -> Period:
    """The period of the same shape *months* months before/after (a month, a quarter,
    a year, or any span moved by its own length)."""
    spans = len(period.months())
    whole = period.first.day == 1 and (period.last + timedelta(days=1)).day == 1
    if whole:
        step = spans * months
        year, month = period.first.year, period.first.month + step
        while month < 1:
            year, month = year - 1, month + 12
        while month > 12:
            year, month = year + 1, month - 12
        first = date(year, month, 1)
        end_month = month + spans
        end_year = year + (end_month - 1) // 12
        end_month = (end_month - 1) % 12 + 1
        last = date(end_year, end_month, 1) - timedelta(days=1)
        return Period(first, last)
    length = (period.last - period.first).days + 1
    delta = timedelta(days=length * months)
    return Period(period.first + delta, period.last + delta)
