"""`yxby doctor`: checks that configuration, knowledge base, calendar and database are sound.

A check is a :class:`Check`: a Chinese name and a callable that takes the
:class:`DoctorContext` and returns a :class:`CheckResult` (status and message) or raises.
``default_checks`` lists them in the order they run; add new checks there.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from handoff.calendar import WorkCalendar

__all__ = [
    "DAY",
    "TODAY_ENV",
    "Check",
    "CheckOutcome",
    "CheckResult",
    "DoctorContext",
    "Status",
    "current_day",
    "default_checks",
    "register",
    "run_checks",
]

TODAY_ENV = "YXBY_TODAY"
"""Environment variable that fixes "today" (YYYY-MM-DD), like the hidden ``--today``."""


class Status(enum.Enum):
    """Outcome of one check; ``FAIL`` makes ``yxby doctor`` exit 1, ``WARN`` only with --strict."""

    OK = "✓"
    WARN = "!"
    FAIL = "✗"


@dataclass(frozen=True)
class CheckResult:
    """What a check found."""

    status: Status
    message: str


@dataclass
class DoctorContext:
    """What checks share: the injected date and objects loaded once for several checks."""

    today: date
    _calendar: WorkCalendar | None = field(default=None, repr=False)
    _calendar_error: Exception | None = field(default=None, repr=False)

    def calendar(self) -> WorkCalendar:
        """The working-day calendar, loaded once; re-raises its load error for every caller."""
        if self._calendar_error is not None:
            raise self._calendar_error
        if self._calendar is None:
            from handoff.calendar import load_calendar

            try:
                self._calendar = load_calendar()
            except Exception as exc:
                self._calendar_error = exc
                raise
        return self._calendar


@dataclass(frozen=True)
class Check:
    """A named check; *run* returns a result or raises (an exception counts as a failure)."""

    name: str
    run: Callable[[DoctorContext], CheckResult]


@dataclass(frozen=True)
class CheckOutcome:
    """A check together with its result."""

    check: Check
    result: CheckResult

    def line(self) -> str:
        """The line ``yxby doctor`` prints for this check (a multi-line message is joined)."""
        message = "；".join(part.strip() for part in self.result.message.splitlines() if part)
        return f"{self.result.status.value} {self.check.name}：{message}"


def _departments(ctx: DoctorContext) -> CheckResult:
    from routing.departments import load_departments
    from yxby.paths import config_dir

    directory = load_departments()
    path = config_dir() / "departments.yaml"
    return CheckResult(Status.OK, f"{len(directory)} 个部门（{path}）")


def _holidays(ctx: DoctorContext) -> CheckResult:
    calendar = ctx.calendar()
    return CheckResult(Status.OK, f"已加载（{calendar.source}）")


def _coverage(offset: int) -> Callable[[DoctorContext], CheckResult]:
    def run(ctx: DoctorContext) -> CheckResult:
        year = ctx.today.year + offset
        calendar = ctx.calendar()
        status = Status.OK if calendar.is_published(year) else Status.WARN
        return CheckResult(status, calendar.coverage_note(year))

    return run


AHEAD_DAYS = 60
"""How far ahead the published 调休 schedule must reach, or ``yxby doctor`` fails."""


def _ahead(ctx: DoctorContext) -> CheckResult:
    calendar = ctx.calendar()
    years = calendar.unpublished_years(ctx.today, AHEAD_DAYS)
    if years:
        listed = "、".join(f"{y} 年" for y in years)
        return CheckResult(
            Status.FAIL,
            f"未来 {AHEAD_DAYS} 天涉及的{listed}放假安排尚未录入："
            "期限暂按法定节假日推算（不含调休），"
            "请按国务院办公厅通知在 config/holidays.yaml 录入该年安排（complete: true）",
        )
    return CheckResult(Status.OK, f"未来 {AHEAD_DAYS} 天的放假安排均已公布并录入")


def _settings(ctx: DoctorContext) -> CheckResult:
    """The settings files of the assessment, 督办, the register and retention load."""
    from handoff.assessment import load_assessment_settings
    from handoff.register import load_register_config
    from handoff.retention import load_retention
    from handoff.supervision import load_supervision_settings

    names = []
    for name, load in (
        ("assessment.yaml", load_assessment_settings),
        ("supervision.yaml", load_supervision_settings),
        ("register.yaml", load_register_config),
        ("retention.yaml", load_retention),
    ):
        load()  # a ConfigError names the file, line and key, and becomes this check's FAIL
        names.append(name)
    return CheckResult(Status.OK, "、".join(names) + " 均可加载")


def _routing(ctx: DoctorContext) -> CheckResult:
    from routing import load_router

    load_router()
    return CheckResult(Status.OK, "行业、服务手段与分派规则已加载")


def _replies(ctx: DoctorContext) -> CheckResult:
    from bot.replies import load_replies
    from bot.settings import load_dialogue_settings

    load_replies()
    load_dialogue_settings()
    return CheckResult(Status.OK, "回复文本与对话设置已加载")


def _knowledge(ctx: DoctorContext) -> CheckResult:
    from knowledge.lint import Severity, lint
    from routing.departments import load_departments
    from yxby.paths import entries_dir

    issues = lint(entries_dir(), departments=load_departments().alias_map(), today=ctx.today)
    errors = [i for i in issues if i.severity is Severity.ERROR]
    import knowledge

    kb = knowledge.load(today=ctx.today)
    if errors or kb.problems:
        first = errors[0] if errors else kb.problems[0]
        count = len(errors) or len(kb.problems)
        return CheckResult(
            Status.FAIL,
            f"{count} 个错误（有问题的条目未加载，{len(kb)} 条在用），请运行 yxby kb lint；"
            f"首个：{first}",
        )
    warn = f"，{len(issues)} 个警告（yxby kb lint）" if issues else ""
    return CheckResult(Status.WARN if issues else Status.OK, f"{len(kb)} 条在用{warn}")


def _database(ctx: DoctorContext) -> CheckResult:
    from handoff.db import check_schema, database_url, make_engine

    engine = make_engine()
    try:
        check_schema(engine)
        rendered = engine.url.render_as_string(hide_password=True)
    finally:
        engine.dispose()
    return CheckResult(Status.OK, f"已是最新版本（{rendered or database_url()}）")


def _commissioners(ctx: DoctorContext) -> CheckResult:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from handoff.db import check_schema, make_engine, read_only
    from handoff.models import Commissioner, CommissionerRole
    from routing.departments import load_departments

    names = [d.name for d in load_departments()]
    engine = make_engine()
    try:
        check_schema(engine)
        with Session(engine) as session:
            covered = set(
                read_only(session).scalars(
                    select(Commissioner.department)
                    .join(Commissioner.bindings)
                    .where(
                        Commissioner.active.is_(True),
                        Commissioner.role == CommissionerRole.COMMISSIONER,
                    )
                    .distinct()
                )
            )
    finally:
        engine.dispose()
    missing = [name for name in names if name not in covered]
    if missing:
        return CheckResult(
            Status.WARN,
            "警告：以下部门尚无绑定渠道的在岗专员，新诉求将发给部门负责人或政务办："
            + "、".join(missing),
        )
    return CheckResult(Status.OK, f"{len(names)} 个部门都有绑定渠道的在岗专员")


def default_checks() -> list[Check]:
    """Every check ``yxby doctor`` runs, in order."""
    return [
        Check("部门配置", _departments),
        Check("节假日配置", _holidays),
        Check("今年工作日历", _coverage(0)),
        Check("明年工作日历", _coverage(1)),
        Check(f"未来 {AHEAD_DAYS} 天工作日历", _ahead),
        Check("分派规则", _routing),
        Check("考核与名录配置", _settings),
        Check("回复文本", _replies),
        Check("知识库", _knowledge),
        Check("数据库", _database),
        Check("专员", _commissioners),
    ]


def run_checks(checks: list[Check], ctx: DoctorContext) -> list[CheckOutcome]:
    """Run every check; one that raises becomes a ``FAIL`` naming the error."""
    from yxby.errors import YxbyError

    outcomes = []
    for check in checks:
        try:
            result = check.run(ctx)
        except YxbyError as exc:
            result = CheckResult(Status.FAIL, str(exc))
        except Exception as exc:  # a doctor reports what broke instead of crashing
            result = CheckResult(Status.FAIL, f"{type(exc).__name__}: {exc}")
        outcomes.append(CheckOutcome(check, result))
    return outcomes


class _Day(click.ParamType):
    name = "日期"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"无法识别的日期“{value}”，应为 YYYY-MM-DD", param, ctx)


DAY = _Day()
"""The ``--today`` option type shared by the commands that take one."""


def current_day(value: date | None = None) -> date:
    """The CLI's "today": *value*, else ``YXBY_TODAY``, else the date in Asia/Shanghai.

    This is the one place the command line reads the wall clock; library functions get the
    date passed in.
    """
    import os

    from handoff.calendar import SHANGHAI
    from yxby.errors import ConfigError

    if value is not None:
        return value
    env = os.environ.get(TODAY_ENV, "").strip()
    if env:
        try:
            return date.fromisoformat(env)
        except ValueError:
            raise ConfigError(
                f"环境变量 {TODAY_ENV} 的日期“{env}”无法识别，应为 YYYY-MM-DD"
            ) from None
    return datetime.now(SHANGHAI).date()


@click.command("doctor")
@click.option("--today", type=DAY, envvar=TODAY_ENV, hidden=True)
@click.option("--strict", is_flag=True, help="有警告项时退出码也为 1。")
def doctor_command(today: date | None, strict: bool) -> None:
    """检查配置文件、工作日历（今明两年的节假日数据）、知识库、数据库与专员是否可用。

    有失败项时退出码为 1；只有警告时为 0，加 --strict 则为 1。
    """
    ctx = DoctorContext(today=current_day(today))
    outcomes = run_checks(default_checks(), ctx)
    for outcome in outcomes:
        click.echo(outcome.line())
    failed = any(o.result.status is Status.FAIL for o in outcomes)
    warned = any(o.result.status is Status.WARN for o in outcomes)
    if failed or (strict and warned):
        raise click.exceptions.Exit(1)


def register(group: click.Group) -> None:
    """Add ``doctor`` to *group*."""
    group.add_command(doctor_command)
