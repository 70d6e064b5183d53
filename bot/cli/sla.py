"""`yxby sla …`: ticket time limits counted in working days.

``sla_group`` is the ``sla`` command group; other modules add commands to it with
``sla_group.add_command``. ``yxby sla due`` computes a deadline from a receipt time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, Any

import click

__all__ = ["MAX_WORKDAYS", "parse_moment", "register", "sla_group"]

MAX_WORKDAYS = 1000
"""The largest ``--workdays`` accepted (ten times any limit in the programme)."""

_FROM_FORMATS = (
    '"YYYY-MM-DD HH:MM[:SS]"、"YYYY-MM-DD" 或带时区的 ISO 8601（如 2026-09-29T10:00:00+08:00）'
)


class ChineseUsageError(click.UsageError):
    """A usage error shown as one Chinese line on stderr (exit status 2)."""

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``错误：…`` and where to find help, without click's English framing."""
        hint = ""
        if self.ctx is not None:
            hint = f"（{self.ctx.command_path} -h 查看用法）"
        click.echo(f"错误：{self.format_message()}{hint}", err=True, file=file)


def parse_moment(text: str) -> datetime:
    """Parse a receipt time; naive times are Asia/Shanghai. ``ValueError`` if unreadable."""
    from handoff.calendar import SHANGHAI

    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SHANGHAI)
    return moment


class _Moment(click.ParamType):
    name = "时间"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_moment(str(value))
        except ValueError:
            raise ChineseUsageError(f"无法识别的时间“{value}”，应为 {_FROM_FORMATS}", ctx) from None


class _Workdays(click.ParamType):
    name = "天数"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                raise ChineseUsageError(f"工作日数应为整数，收到“{value}”", ctx) from None
        if not 1 <= number <= MAX_WORKDAYS:
            raise ChineseUsageError(f"工作日数应在 1 到 {MAX_WORKDAYS} 之间，收到 {number}", ctx)
        return number


class _CalendarLogMuted(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextmanager
def _calendar_log_muted() -> Iterator[None]:
    """The command reports weekends-only years itself; keep the log line from doubling it."""
    logger = logging.getLogger("yxby.calendar")
    muted = _CalendarLogMuted()
    logger.addFilter(muted)
    try:
        yield
    finally:
        logger.removeFilter(muted)


@click.group("sla")
def sla_group() -> None:
    """工单时限：按工作日（法定节假日休息、调休上班，北京时间）计算截止时间。"""


@sla_group.command("due")
@click.option(
    "--from",
    "start",
    type=_Moment(),
    help=f"受理时间：{_FROM_FORMATS}；不带时区按北京时间。",
)
@click.option("--workdays", "n", type=_Workdays(), help="时限（工作日数），如 2 或 7。")
@click.option(
    "--json", "as_json", is_flag=True, help="输出 JSON（截止时间、计入的工作日、缺数据的年份）。"
)
@click.pass_context
def due_command(ctx: click.Context, start: datetime | None, n: int | None, as_json: bool) -> None:
    """受理日不计入，N 个工作日届满于第 N 个工作日 24:00（输出为 23:59:59）。"""
    if start is None:
        raise ChineseUsageError('缺少 --from（受理时间，如 "2026-09-29 10:00"）', ctx)
    if n is None:
        raise ChineseUsageError("缺少 --workdays（工作日数，如 7）", ctx)

    from handoff.calendar import load_calendar

    calendar = load_calendar()
    with _calendar_log_muted():
        result = calendar.due(start, n)
    if as_json:
        payload = {
            "due": result.at.isoformat(),
            "workdays_counted": [day.isoformat() for day in result.workdays],
            "fallback_years": list(result.fallback_years),
            "fell_back": result.fell_back,
        }
        click.echo(json.dumps(payload, ensure_ascii=False))
    else:
        click.echo(result.at.isoformat())
    for year in result.fallback_years:
        click.echo(f"注意：{calendar.coverage_note(year)}", err=True)


def register(group: click.Group) -> None:
    """Add the ``sla`` group to *group*."""
    group.add_command(sla_group)
