"""Working-day calendar for ticket deadlines (Asia/Shanghai).

Working days are Monday to Friday, minus statutory holidays, plus the 调休 make-up
working days, as the State Council's annual notice sets them. The data comes from the
``chinesecalendar`` package; ``config/holidays.yaml`` adds years it does not know yet or
corrects years it does. A year known to neither is counted weekends-only: a warning is
logged once per year (logger ``yxby.calendar``) and the year is reported, never raised.

Deadlines follow the usual counting (民法典 art. 201): the day of receipt does not count,
and N working days end at 24:00 of the Nth working day after it, written 23:59:59.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import chinese_calendar
from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from yxby.paths import config_dir
from yxby.yamlconf import StrictModel, load_model

__all__ = [
    "END_OF_DAY",
    "SHANGHAI",
    "BaseCalendar",
    "Coverage",
    "DueDate",
    "HolidaysConfig",
    "WorkCalendar",
    "YearOverride",
    "load_calendar",
]

SHANGHAI = ZoneInfo("Asia/Shanghai")
END_OF_DAY = time(23, 59, 59)
"""How "24:00" of a day is written: the last second of the day."""

Coverage = Literal["chinesecalendar", "override", "fallback"]
BaseCalendar = Callable[[date], bool]
"""``is_workday(day)``; raises ``NotImplementedError`` for a year it has no data for."""

log = logging.getLogger("yxby.calendar")


# ---------------------------------------------------------------------------- config

_DATE_LITERAL = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")


def _as_date(value: object, what: str) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"{what}: expected a date without a time of day, got {value}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError as exc:
            if _DATE_LITERAL.fullmatch(value.strip()):
                raise ValueError(f"{what}: '{value.strip()}' is not a valid date ({exc})") from None
    raise ValueError(f"{what}: expected a date like 2027-01-01, got {value!r}")


def _parse_span(value: object) -> tuple[date, date]:
    """A single date, or an inclusive range written ``{from: <date>, to: <date>}``."""
    if isinstance(value, dict):
        if set(value) != {"from", "to"}:
            raise ValueError(
                f"a range needs exactly the keys 'from' and 'to', got {sorted(map(str, value))}"
            )
        start, end = _as_date(value["from"], "from"), _as_date(value["to"], "to")
        if end < start:
            raise ValueError(f"range ends ({end}) before it starts ({start})")
        return start, end
    day = _as_date(value, "date")
    return day, day


DaySpan = Annotated[tuple[date, date], BeforeValidator(_parse_span)]


def _expand(spans: tuple[tuple[date, date], ...]) -> Iterator[date]:
    for start, end in spans:
        day = start
        while day <= end:
            yield day
            day += timedelta(days=1)


class YearOverride(StrictModel):
    """One year's entries in ``holidays.yaml``."""

    year: int = Field(ge=1900, le=2200)
    complete: bool = False
    """True: these entries are the whole arrangement, chinesecalendar is not consulted."""
    source: str = ""
    holidays: tuple[DaySpan, ...] = ()
    workdays: tuple[DaySpan, ...] = ()

    @field_validator("holidays", "workdays")
    @classmethod
    def _inside_year(
        cls, spans: tuple[tuple[date, date], ...], info: ValidationInfo
    ) -> tuple[tuple[date, date], ...]:
        year = info.data.get("year")
        if year is not None:
            for day in _expand(spans):
                if day.year != year:
                    raise ValueError(f"{day} is not in {year}")
        return spans

    @model_validator(mode="after")
    def _no_day_both_ways(self) -> YearOverride:
        both = sorted(self.holiday_dates() & self.workday_dates())
        if both:
            listed = ", ".join(str(d) for d in both)
            raise ValueError(f"listed both as holiday and as workday: {listed}")
        return self

    def holiday_dates(self) -> frozenset[date]:
        """Every day off listed for the year."""
        return frozenset(_expand(self.holidays))

    def workday_dates(self) -> frozenset[date]:
        """Every make-up working day (调休上班) listed for the year."""
        return frozenset(_expand(self.workdays))


class HolidaysConfig(StrictModel):
    """The whole ``holidays.yaml``: per-year additions and corrections."""

    years: tuple[YearOverride, ...] = ()

    @field_validator("years")
    @classmethod
    def _unique_years(cls, years: tuple[YearOverride, ...]) -> tuple[YearOverride, ...]:
        seen: set[int] = set()
        for entry in years:
            if entry.year in seen:
                raise ValueError(f"year {entry.year} is listed twice")
            seen.add(entry.year)
        return years


# -------------------------------------------------------------------------- calendar


@dataclass(frozen=True)
class DueDate:
    """A deadline N working days after receipt, with the days that were counted."""

    at: datetime
    """Aware, Asia/Shanghai, 23:59:59 of the Nth working day."""
    workdays: tuple[date, ...]
    """The N working days counted, in order."""
    fallback_years: tuple[int, ...]
    """Years among the days counted or skipped that were counted weekends-only."""

    @property
    def fell_back(self) -> bool:
        """True if any day of the count came from a weekends-only year."""
        return bool(self.fallback_years)


@dataclass(frozen=True)
class _Year:
    coverage: Coverage
    special: dict[date, bool]
    """Days whose status differs from (or is pinned against) the Monday–Friday rule."""


def _days_of(year: int) -> Iterator[date]:
    day = date(year, 1, 1)
    while day.year == year:
        yield day
        day += timedelta(days=1)


def _local(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(SHANGHAI)


class WorkCalendar:
    """Decides working days and counts deadlines; per-year decisions are cached.

    *config* adds or corrects years (see ``config/holidays.yaml``); *base* is the
    underlying holiday data, ``chinese_calendar.is_workday`` unless a test injects one.
    Safe to share between threads.
    """

    def __init__(
        self,
        config: HolidaysConfig | None = None,
        *,
        source: str = "<memory>",
        base: BaseCalendar | None = None,
    ) -> None:
        self.source = source
        self._overrides = {entry.year: entry for entry in (config.years if config else ())}
        self._base: BaseCalendar = base or chinese_calendar.is_workday
        self._base_years: dict[int, bool] = {}
        self._years: dict[int, _Year] = {}
        self._fallback: set[int] = set()
        self._lock = threading.Lock()

    # -- coverage

    def _base_knows(self, year: int) -> bool:
        known = self._base_years.get(year)
        if known is None:
            try:
                self._base(date(year, 1, 1))
                known = True
            except NotImplementedError:
                known = False
            self._base_years[year] = known
        return known

    def coverage(self, year: int) -> Coverage:
        """Where *year*'s working days come from; does not log or record anything."""
        entry = self._overrides.get(year)
        if entry is not None and entry.complete:
            return "override"
        if self._base_knows(year):
            return "chinesecalendar"
        return "fallback"

    def coverage_note(self, year: int) -> str:
        """A Chinese sentence for operators saying how *year* is counted."""
        kind = self.coverage(year)
        if kind == "override":
            return f"{year} 年按 {self.source} 的完整安排计算工作日"
        if kind == "chinesecalendar":
            extra = "（含 holidays.yaml 的更正）" if year in self._overrides else ""
            return f"{year} 年按 chinesecalendar 数据计算工作日{extra}"
        if year in self._overrides:
            return (
                f"{year} 年法定节假日数据不完整（holidays.yaml 未标记 complete），"
                "未列出的日期按周末计算；请在 config/holidays.yaml 补充"
            )
        return f"{year} 年无法定节假日数据，按周末计算工作日；请在 config/holidays.yaml 补充"

    def fallback_years(self) -> frozenset[int]:
        """Years that have been counted weekends-only so far."""
        return frozenset(self._fallback)

    # -- per-day decisions

    def _year(self, year: int) -> _Year:
        info = self._years.get(year)
        if info is not None:
            return info
        with self._lock:
            info = self._years.get(year)
            if info is None:
                info = self._build(year)
                self._years[year] = info
                if info.coverage == "fallback":
                    self._fallback.add(year)
                    log.warning("%s", self.coverage_note(year))
        return info

    def _build(self, year: int) -> _Year:
        kind = self.coverage(year)
        special: dict[date, bool] = {}
        if kind == "chinesecalendar":
            for day in _days_of(year):
                worked = self._base(day)
                if worked != (day.weekday() < 5):
                    special[day] = worked
        entry = self._overrides.get(year)
        if entry is not None:
            special.update(dict.fromkeys(entry.holiday_dates(), False))
            special.update(dict.fromkeys(entry.workday_dates(), True))
        return _Year(kind, special)

    def is_workday(self, day: date) -> bool:
        """True if *day* is a working day in mainland China."""
        if isinstance(day, datetime):
            day = day.astimezone(SHANGHAI).date() if day.tzinfo else day.date()
        return self._year(day.year).special.get(day, day.weekday() < 5)

    # -- counting

    def due(self, start: datetime, n: int) -> DueDate:
        """The deadline *n* working days after *start* (aware); the start day does not count."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        day = _local(start, "start").date()
        counted: list[date] = []
        fallback: set[int] = set()
        while len(counted) < n:
            day += timedelta(days=1)
            info = self._year(day.year)
            if info.coverage == "fallback":
                fallback.add(day.year)
            if info.special.get(day, day.weekday() < 5):
                counted.append(day)
        return DueDate(
            at=datetime.combine(counted[-1], END_OF_DAY, tzinfo=SHANGHAI),
            workdays=tuple(counted),
            fallback_years=tuple(sorted(fallback)),
        )

    def add_workdays(self, start: datetime, n: int) -> datetime:
        """Same as ``due(start, n).at``."""
        return self.due(start, n).at

    def sub_workdays(self, at: datetime, n: int) -> datetime:
        """The same Shanghai wall time on the *n*-th working day before *at*'s date."""
        if n < 0:
            raise ValueError(f"n must not be negative, got {n}")
        local = _local(at, "at")
        day = local.date()
        found = 0
        while found < n:
            day -= timedelta(days=1)
            if self.is_workday(day):
                found += 1
        return datetime.combine(day, local.time(), tzinfo=SHANGHAI)

    def workdays_between(self, start: datetime, end: datetime) -> int:
        """Working days after *start*'s date up to and including *end*'s date (0 if none)."""
        day = _local(start, "start").date()
        last = _local(end, "end").date()
        count = 0
        while day < last:
            day += timedelta(days=1)
            if self.is_workday(day):
                count += 1
        return count


# --------------------------------------------------------------------------- loading


def load_calendar(path: Path | None = None) -> WorkCalendar:
    """A calendar using ``config/holidays.yaml`` (or *path*); ``ConfigError`` if it is bad."""
    p = path or config_dir() / "holidays.yaml"
    return WorkCalendar(load_model(p, HolidaysConfig), source=str(p))
