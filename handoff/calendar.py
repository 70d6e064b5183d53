"""Working-day calendar for ticket deadlines (Asia/Shanghai).

Working days are Monday to Friday, minus statutory holidays, plus the 调休 make-up
working days, as the State Council's annual notice sets them. The data comes from the
``chinesecalendar`` package; ``config/holidays.yaml`` adds years it does not know yet or
corrects years it does. A year from 2025 on that is known to neither (its notice is not
published yet) is counted by the statutory rule of 《全国年节及纪念日放假办法》 (2024
revision): its 13 days of holidays — lunar dates from ``lunar_python`` — plus weekends, with a
holiday falling on a weekend made up on the next working day (补假), but without the 调休
swaps no rule predicts. Deadlines counted that way are *provisional* (:attr:`DueDate.provisional`).
Earlier years known to neither are counted weekends-only. Either way a warning is logged
once per year (logger ``yxby.calendar``) and the year is reported, never raised.

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
    "statutory_holidays",
]

SHANGHAI = ZoneInfo("Asia/Shanghai")
END_OF_DAY = time(23, 59, 59)
"""How "24:00" of a day is written: the last second of the day."""

Coverage = Literal["chinesecalendar", "override", "statutory", "fallback"]
BaseCalendar = Callable[[date], bool]
"""``is_workday(day)``; raises ``NotImplementedError`` for a year it has no data for."""

log = logging.getLogger("yxby.calendar")

STATUTORY_SINCE = 2025
"""The first year of the 2024 revision of 《全国年节及纪念日放假办法》 (国务院令第 795 号)."""
STATUTORY_UNTIL = 2100
"""The last year for which the lunar calendar is computed."""
PUBLISHED: frozenset[Coverage] = frozenset({"chinesecalendar", "override"})
"""Coverages that come from a published State Council notice."""


def statutory_holidays(year: int) -> dict[date, str]:
    """The days off of 《全国年节及纪念日放假办法》 (2024 revision) in *year*, with names.

    Article 2: 元旦 1 day, 春节 4 days (除夕 and 正月初一至初三), 清明节 1 day (the solar term),
    劳动节 2 days (5月1日、2日), 端午节 1 day, 中秋节 1 day, 国庆节 3 days (10月1日至3日).
    Article 6: a holiday that falls on a Saturday or Sunday is made up (补假) on a working day;
    here the first weekday after the festival's days that is not itself a holiday. The State
    Council's yearly 调休 swaps are not predictable and are not guessed.
    """
    from lunar_python import Lunar, Solar

    def solar(lunar_month: int, lunar_day: int, lunar_year: int = year) -> date:
        s = Lunar.fromYmd(lunar_year, lunar_month, lunar_day).getSolar()
        return date(s.getYear(), s.getMonth(), s.getDay())

    spring = solar(1, 1)
    qingming = Lunar.fromSolar(Solar.fromYmd(year, 4, 15)).getJieQiTable()["清明"]
    festivals: list[tuple[str, list[date]]] = [
        ("元旦", [date(year, 1, 1)]),
        ("春节", [spring + timedelta(days=d) for d in range(-1, 3)]),
        ("清明节", [date(qingming.getYear(), qingming.getMonth(), qingming.getDay())]),
        ("劳动节", [date(year, 5, 1), date(year, 5, 2)]),
        ("端午节", [solar(5, 5)]),
        ("中秋节", [solar(8, 15)]),
        ("国庆节", [date(year, 10, d) for d in (1, 2, 3)]),
    ]
    days: dict[date, str] = {}
    for name, dates in festivals:
        days.update(dict.fromkeys(dates, name))
    for name, dates in festivals:
        owed = sum(1 for d in dates if d.weekday() >= 5)
        day = max(dates)
        while owed:
            day += timedelta(days=1)
            if day.weekday() < 5 and day not in days and day.year == year:
                days[day] = f"{name}补假"
                owed -= 1
            if day.year != year:
                break
    return days


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
    statutory_years: tuple[int, ...] = ()
    """Years among the days counted or skipped that were counted by the statutory rule."""

    @property
    def fell_back(self) -> bool:
        """True if any day of the count came from a weekends-only year."""
        return bool(self.fallback_years)

    @property
    def provisional(self) -> bool:
        """True if the count used a year whose 调休 schedule is not published yet."""
        return bool(self.fallback_years or self.statutory_years)


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
        if STATUTORY_SINCE <= year <= STATUTORY_UNTIL:
            return "statutory"
        return "fallback"

    def is_published(self, year: int) -> bool:
        """Whether *year*'s working days come from a published notice (not a rule)."""
        return self.coverage(year) in PUBLISHED

    def unpublished_years(self, start: date, days: int) -> tuple[int, ...]:
        """Years touched by the *days* days from *start* whose schedule is not published."""
        years = {(start + timedelta(days=n)).year for n in range(days + 1)}
        return tuple(sorted(y for y in years if not self.is_published(y)))

    def coverage_note(self, year: int) -> str:
        """A Chinese sentence for operators saying how *year* is counted."""
        kind = self.coverage(year)
        if kind == "override":
            return f"{year} 年按 {self.source} 的完整安排计算工作日"
        if kind == "chinesecalendar":
            extra = "（含 holidays.yaml 的更正）" if year in self._overrides else ""
            return f"{year} 年按 chinesecalendar 数据计算工作日{extra}"
        if kind == "statutory":
            extra = "及 holidays.yaml 所列日期" if year in self._overrides else ""
            return (
                f"{year} 年放假安排尚未公布：暂按《全国年节及纪念日放假办法》的法定节假日{extra}"
                "和周末推算工作日（不含调休），期限为暂定；公布后请在 config/holidays.yaml 录入"
            )
        if year in self._overrides:
            return (
                f"{year} 年法定节假日数据不完整（holidays.yaml 未标记 complete），"
                "未列出的日期按周末计算；请在 config/holidays.yaml 补充"
            )
        return f"{year} 年无法定节假日数据，按周末计算工作日；请在 config/holidays.yaml 补充"

    def fallback_years(self) -> frozenset[int]:
        """Years that have been counted weekends-only so far."""
        return frozenset(y for y in self._fallback if self.coverage(y) == "fallback")

    def provisional_years(self) -> frozenset[int]:
        """Years counted so far without a published schedule (statutory or weekends-only)."""
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
                if info.coverage in ("fallback", "statutory"):
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
        elif kind == "statutory":
            special.update(dict.fromkeys(statutory_holidays(year), False))
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
        statutory: set[int] = set()
        while len(counted) < n:
            day += timedelta(days=1)
            info = self._year(day.year)
            if info.coverage == "fallback":
                fallback.add(day.year)
            elif info.coverage == "statutory":
                statutory.add(day.year)
            if info.special.get(day, day.weekday() < 5):
                counted.append(day)
        return DueDate(
            at=datetime.combine(counted[-1], END_OF_DAY, tzinfo=SHANGHAI),
            workdays=tuple(counted),
            fallback_years=tuple(sorted(fallback)),
            statutory_years=tuple(sorted(statutory)),
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
