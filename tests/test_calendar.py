"""Tests for handoff.calendar: the 2026 arrangement, deadline counting, overrides, fallback."""

from __future__ import annotations

import logging
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import chinese_calendar
import pytest

from handoff.calendar import (
    SHANGHAI,
    DueDate,
    WorkCalendar,
    load_calendar,
    statutory_holidays,
)
from yxby.errors import ConfigError
from yxby.paths import PROJECT_ROOT

# The State Council's 2026 arrangement (国办发明电〔2025〕7号), as given in the brief.
HOLIDAYS_2026 = [
    ("元旦", date(2026, 1, 1), date(2026, 1, 3)),
    ("春节", date(2026, 2, 15), date(2026, 2, 23)),
    ("清明节", date(2026, 4, 4), date(2026, 4, 6)),
    ("劳动节", date(2026, 5, 1), date(2026, 5, 5)),
    ("端午节", date(2026, 6, 19), date(2026, 6, 21)),
    ("中秋节", date(2026, 9, 25), date(2026, 9, 27)),
    ("国庆节", date(2026, 10, 1), date(2026, 10, 7)),
]
MAKEUP_WORKDAYS_2026 = [
    date(2026, 1, 4),  # 周日
    date(2026, 2, 14),  # 周六
    date(2026, 2, 28),  # 周六
    date(2026, 5, 9),  # 周六
    date(2026, 9, 20),  # 周日
    date(2026, 10, 10),  # 周六
]


def _span(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _days(year: int) -> list[date]:
    return _span(date(year, 1, 1), date(year, 12, 31))


def at(text: str) -> datetime:
    """A Shanghai wall time from 'YYYY-MM-DD HH:MM[:SS]'."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def known_until_2026(day: date) -> bool:
    """chinesecalendar as of 1.11, whatever version is installed: no data after 2026."""
    if day.year > 2026:
        raise NotImplementedError(f"no data for {day.year}")
    return bool(chinese_calendar.is_workday(day))


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "holidays.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def cal() -> WorkCalendar:
    return WorkCalendar()


# ------------------------------------------------------------------ 2026 arrangement


def test_the_whole_of_2026_matches_the_state_council_notice(cal: WorkCalendar) -> None:
    off = {d for _, start, end in HOLIDAYS_2026 for d in _span(start, end)}
    on = set(MAKEUP_WORKDAYS_2026)
    wrong = [
        d
        for d in _days(2026)
        if cal.is_workday(d) != ((d.weekday() < 5 or d in on) and d not in off)
    ]
    assert wrong == []
    assert cal.coverage(2026) == "chinesecalendar"


@pytest.mark.parametrize(("name", "start", "end"), HOLIDAYS_2026)
def test_each_2026_holiday_is_off_and_its_neighbours_are_not_both_off(
    cal: WorkCalendar, name: str, start: date, end: date
) -> None:
    assert not any(cal.is_workday(d) for d in _span(start, end)), name
    # the days just outside the holiday include a working day on at least one side
    assert cal.is_workday(start - timedelta(days=1)) or cal.is_workday(end + timedelta(days=1))


@pytest.mark.parametrize("day", MAKEUP_WORKDAYS_2026)
def test_2026_makeup_days_are_weekend_workdays(cal: WorkCalendar, day: date) -> None:
    assert day.weekday() >= 5
    assert cal.is_workday(day)


def test_ordinary_weekend_and_weekday_in_2026(cal: WorkCalendar) -> None:
    assert not cal.is_workday(date(2026, 3, 7))  # Saturday
    assert cal.is_workday(date(2026, 3, 9))  # Monday


def test_is_workday_takes_an_aware_datetime_in_shanghai_time(cal: WorkCalendar) -> None:
    # 2026-09-30 20:00 UTC is already 10-01 in Shanghai (国庆)
    assert not cal.is_workday(datetime(2026, 9, 30, 20, tzinfo=UTC))
    assert cal.is_workday(datetime(2026, 9, 30, 10, tzinfo=UTC))


# -------------------------------------------------------------------------- counting


def test_seven_workdays_across_national_day(cal: WorkCalendar) -> None:
    result = cal.due(at("2026-09-29 10:00"), 7)
    assert result.at.isoformat() == "2026-10-14T23:59:59+08:00"
    assert result.workdays == (
        date(2026, 9, 30),
        date(2026, 10, 8),
        date(2026, 10, 9),
        date(2026, 10, 10),  # 调休 Saturday
        date(2026, 10, 12),
        date(2026, 10, 13),
        date(2026, 10, 14),
    )
    assert result.fallback_years == ()
    assert not result.fell_back


@pytest.mark.parametrize(
    ("received", "n", "due"),
    [
        ("2026-10-03 09:00", 1, "2026-10-08"),  # received on a holiday
        ("2026-10-03 09:00", 2, "2026-10-09"),
        ("2026-10-03 09:00", 3, "2026-10-10"),  # make-up Saturday counts
        ("2026-03-07 15:00", 1, "2026-03-09"),  # received on a Saturday
        ("2026-03-08 15:00", 1, "2026-03-09"),  # received on a Sunday
        ("2026-02-14 11:00", 1, "2026-02-24"),  # received on a make-up Saturday, then 春节
        ("2026-04-03 17:00", 1, "2026-04-07"),  # Friday before 清明
        ("2026-04-03 17:00", 2, "2026-04-08"),
        ("2026-09-29 23:59:59", 1, "2026-09-30"),  # received at the last second
        ("2026-09-30 00:00", 1, "2026-10-08"),  # one second later: the next receipt day
        ("2026-09-30 00:00", 2, "2026-10-09"),
        ("2026-12-30 10:00", 1, "2026-12-31"),
    ],
)
def test_due_examples(cal: WorkCalendar, received: str, n: int, due: str) -> None:
    result = cal.due(at(received), n)
    assert result.at == datetime.combine(date.fromisoformat(due), result.at.time(), SHANGHAI)
    assert result.at.time().isoformat() == "23:59:59"
    assert len(result.workdays) == n
    assert result.workdays[-1] == date.fromisoformat(due)


def test_receipt_day_is_taken_in_shanghai_time(cal: WorkCalendar) -> None:
    # 16:30 UTC on 09-29 is 00:30 on 09-30 in Shanghai: the receipt day is 09-30
    assert cal.due(datetime(2026, 9, 29, 16, 30, tzinfo=UTC), 1).workdays == (date(2026, 10, 8),)
    assert cal.due(datetime(2026, 9, 29, 15, 59, tzinfo=UTC), 1).workdays == (date(2026, 9, 30),)


def test_add_workdays_is_due_at(cal: WorkCalendar) -> None:
    start = at("2026-05-08 09:30")
    assert cal.add_workdays(start, 2) == cal.due(start, 2).at == at("2026-05-11 23:59:59")


def test_due_rejects_naive_start_and_non_positive_n(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.due(datetime(2026, 9, 29, 10), 7)
    with pytest.raises(ValueError, match="at least 1"):
        cal.due(at("2026-09-29 10:00"), 0)


def test_sub_workdays_keeps_the_wall_time(cal: WorkCalendar) -> None:
    assert cal.sub_workdays(at("2026-10-14 23:59:59"), 1) == at("2026-10-13 23:59:59")
    assert cal.sub_workdays(at("2026-10-08 10:00"), 1) == at("2026-09-30 10:00")
    assert cal.sub_workdays(at("2026-10-12 08:15"), 1) == at("2026-10-10 08:15")  # make-up day
    assert cal.sub_workdays(at("2026-10-14 23:59:59"), 7) == at("2026-09-29 23:59:59")
    assert cal.sub_workdays(at("2026-10-14 23:59:59"), 0) == at("2026-10-14 23:59:59")
    utc = datetime(2026, 10, 14, 15, 59, 59, tzinfo=UTC)  # 23:59:59 in Shanghai
    assert cal.sub_workdays(utc, 1) == at("2026-10-13 23:59:59")
    with pytest.raises(ValueError):
        cal.sub_workdays(datetime(2026, 10, 14), 1)


def test_workdays_between(cal: WorkCalendar) -> None:
    assert cal.workdays_between(at("2026-09-29 10:00"), at("2026-10-14 23:59:59")) == 7
    assert cal.workdays_between(at("2026-09-29 10:00"), at("2026-10-07 12:00")) == 1
    assert cal.workdays_between(at("2026-09-29 10:00"), at("2026-09-29 23:00")) == 0
    assert cal.workdays_between(at("2026-10-14 10:00"), at("2026-09-29 10:00")) == 0


def test_counting_round_trips_over_every_start_day_of_2026(cal: WorkCalendar) -> None:
    for day in _days(2026):
        start = datetime.combine(day, datetime.min.time(), SHANGHAI).replace(hour=9)
        last_workday = day
        while not cal.is_workday(last_workday):
            last_workday -= timedelta(days=1)
        for n in (1, 2, 7):
            result = cal.due(start, n)
            assert cal.workdays_between(start, result.at) == n
            assert all(cal.is_workday(d) for d in result.workdays)
            assert cal.sub_workdays(result.at, n).date() == last_workday


def test_per_year_decisions_are_cached() -> None:
    calls: list[date] = []

    def counting(day: date) -> bool:
        calls.append(day)
        return bool(chinese_calendar.is_workday(day))

    cal = WorkCalendar(base=counting)
    for day in _days(2026):
        cal.due(datetime.combine(day, datetime.min.time(), SHANGHAI), 30)
    cal.workdays_between(at("2026-01-01 00:00"), at("2026-12-31 00:00"))
    years = {d.year for d in calls}
    assert years <= {2026, 2027}
    assert len(calls) <= 1 + 365 + 1 + 365  # one probe and one pass per year


# -------------------------------------------------------------------------- fallback


def test_year_end_into_an_unpublished_year_uses_the_statutory_rule_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cal = WorkCalendar(base=known_until_2026)
    caplog.set_level(logging.WARNING, logger="yxby.calendar")

    result = cal.due(at("2026-12-30 10:00"), 3)
    again = cal.due(at("2026-12-31 10:00"), 3)
    cal.is_workday(date(2027, 3, 1))
    cal.sub_workdays(at("2027-01-08 12:00"), 3)

    # 2027-01-01 (元旦, a Friday) is a statutory holiday, not a working day
    assert result.workdays == (date(2026, 12, 31), date(2027, 1, 4), date(2027, 1, 5))
    assert result.at.isoformat() == "2027-01-05T23:59:59+08:00"
    assert result.statutory_years == (2027,)
    assert result.fallback_years == ()
    assert result.provisional and not result.fell_back
    assert again.statutory_years == (2027,)
    assert cal.provisional_years() == frozenset({2027})
    assert cal.fallback_years() == frozenset()
    assert cal.coverage(2027) == "statutory"
    assert not cal.is_published(2027)
    records = [r for r in caplog.records if r.name == "yxby.calendar"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert "2027 年放假安排尚未公布" in records[0].getMessage()


def test_a_year_beyond_the_lunar_tables_falls_back_to_weekends_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cal = WorkCalendar(base=known_until_2026)
    caplog.set_level(logging.WARNING, logger="yxby.calendar")
    result = cal.due(at("2199-12-30 10:00"), 1)  # a Monday
    assert result.workdays == (date(2199, 12, 31),)
    assert result.fallback_years == (2199,) and result.fell_back and result.provisional
    assert cal.fallback_years() == frozenset({2199})
    assert "2199 年无法定节假日数据" in caplog.records[0].getMessage()


STATUTORY_2027 = {
    "元旦": ["2027-01-01"],
    "春节": ["2027-02-05", "2027-02-06", "2027-02-07", "2027-02-08"],  # 除夕 to 初三
    "春节补假": ["2027-02-09", "2027-02-10"],  # 初一 and 初二 fall on Saturday and Sunday
    "清明节": ["2027-04-05"],
    "劳动节": ["2027-05-01", "2027-05-02"],
    "劳动节补假": ["2027-05-03", "2027-05-04"],
    "端午节": ["2027-06-09"],
    "中秋节": ["2027-09-15"],
    "国庆节": ["2027-10-01", "2027-10-02", "2027-10-03"],
    "国庆节补假": ["2027-10-04", "2027-10-05"],
}


def test_statutory_holidays_of_2027_follow_the_2024_revision() -> None:
    days = statutory_holidays(2027)
    expected = {date.fromisoformat(d): name for name, ds in STATUTORY_2027.items() for d in ds}
    assert days == expected
    assert sum(1 for name in days.values() if not name.endswith("补假")) == 13


@pytest.mark.parametrize("year", [2025, 2026])
def test_the_statutory_rule_agrees_with_the_published_schedule(year: int) -> None:
    """Every day the rule gives off was off in the published notice; the notice differs only
    by its 调休 swaps: longer breaks next to a festival and weekend days worked instead."""
    rule = WorkCalendar(base=lambda day: _raise_unknown(day))
    published = WorkCalendar(base=known_until_2026)
    assert rule.coverage(year) == "statutory"
    festivals = sorted(statutory_holidays(year))
    for day in festivals:
        assert not published.is_workday(day), f"{day} is off by the rule but was worked"
    disagreements = []
    for day in (date(year, 1, 1) + timedelta(days=n) for n in range(365)):
        if rule.is_workday(day) != published.is_workday(day):
            disagreements.append(day)
            nearest = min(abs((day - f).days) for f in festivals)
            assert nearest <= 10, f"{day}: a difference far from any festival"
    assert 10 <= len(disagreements) <= 30


def _raise_unknown(day: date) -> bool:
    raise NotImplementedError(f"no data for {day.year}")


def test_unpublished_years_in_the_next_sixty_days() -> None:
    cal = WorkCalendar(base=known_until_2026)
    assert cal.unpublished_years(date(2026, 10, 1), 60) == ()
    assert cal.unpublished_years(date(2026, 12, 1), 60) == (2027,)


def test_a_second_calendar_warns_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="yxby.calendar")
    for _ in range(2):
        WorkCalendar(base=known_until_2026).is_workday(date(2027, 1, 1))
    assert len([r for r in caplog.records if r.name == "yxby.calendar"]) == 2


def test_counting_inside_a_known_year_reports_no_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cal = WorkCalendar(base=known_until_2026)
    caplog.set_level(logging.WARNING, logger="yxby.calendar")
    assert cal.due(at("2026-12-28 10:00"), 3).fallback_years == ()
    assert cal.fallback_years() == frozenset()
    assert cal.coverage(2027) == "statutory"  # asking does not warn or record
    assert cal.provisional_years() == frozenset()
    assert caplog.records == []


def test_years_outside_chinesecalendar_never_raise(cal: WorkCalendar) -> None:
    assert cal.coverage(2003) == "fallback"  # before the 2024 revision: weekends only
    assert cal.coverage(2199) == "fallback"
    assert cal.is_workday(date(2199, 12, 31))  # a Tuesday
    assert not cal.is_workday(date(2199, 12, 28))  # a Saturday
    assert cal.due(at("2003-12-29 10:00"), 1).fallback_years == (2003,)
    assert cal.fallback_years() >= {2003, 2199}


def test_fallback_years_include_skipped_days() -> None:
    # received on Friday 2027-12-31 of an unknown year, counted into a known one
    def known_2028_only(day: date) -> bool:
        if day.year != 2028:
            raise NotImplementedError
        return day.weekday() < 5

    cal = WorkCalendar(base=known_2028_only)
    assert cal.due(at("2027-12-30 10:00"), 1).statutory_years == (2027,)
    assert cal.due(at("2027-12-31 10:00"), 1).statutory_years == ()


# ------------------------------------------------------------------------- overrides

OVERRIDE_2027 = """
    # test data only, not the real 2027 arrangement
    years:
      - year: 2027
        complete: true
        source: test
        holidays:
          - 2027-01-01
          - {from: 2027-02-08, to: 2027-02-12}
        workdays:
          - 2027-02-06
"""


def test_a_complete_override_year(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cal = load_calendar(write_yaml(tmp_path, OVERRIDE_2027))
    caplog.set_level(logging.WARNING, logger="yxby.calendar")
    assert cal.coverage(2027) == "override"
    assert not cal.is_workday(date(2027, 1, 1))
    assert cal.is_workday(date(2027, 2, 6))  # Saturday, make-up
    assert not any(cal.is_workday(d) for d in _span(date(2027, 2, 8), date(2027, 2, 12)))
    result = cal.due(at("2026-12-30 10:00"), 3)
    assert result.workdays == (date(2026, 12, 31), date(2027, 1, 4), date(2027, 1, 5))
    assert result.fallback_years == ()
    assert cal.due(at("2027-02-05 10:00"), 2).workdays == (date(2027, 2, 6), date(2027, 2, 15))
    assert cal.fallback_years() == frozenset()
    assert caplog.records == []


def test_a_complete_override_replaces_chinesecalendar(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "years:\n  - year: 2026\n    complete: true\n")
    cal = load_calendar(path)
    assert cal.coverage(2026) == "override"
    assert cal.is_workday(date(2026, 10, 1))  # 国庆 is no longer known: a Thursday
    assert not cal.is_workday(date(2026, 10, 10))


def test_a_correction_applies_on_top_of_chinesecalendar(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        """
        years:
          - year: 2026
            holidays: [2026-12-31]
            workdays: [2026-12-26]
        """,
    )
    cal = load_calendar(path)
    assert cal.coverage(2026) == "chinesecalendar"
    assert not cal.is_workday(date(2026, 12, 31))
    assert cal.is_workday(date(2026, 12, 26))
    assert not cal.is_workday(date(2026, 10, 1))  # chinesecalendar's data still applies
    assert cal.is_workday(date(2026, 10, 10))


def test_an_incomplete_entry_for_an_unknown_year_still_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_yaml(tmp_path, "years:\n  - year: 2199\n    holidays: [2199-12-31]\n")
    cal = load_calendar(path)
    caplog.set_level(logging.WARNING, logger="yxby.calendar")
    assert cal.coverage(2199) == "fallback"
    assert not cal.is_workday(date(2199, 12, 31))
    assert cal.is_workday(date(2199, 12, 30))
    assert cal.fallback_years() == frozenset({2199})
    assert "不完整" in caplog.records[0].getMessage()


def test_the_shipped_holidays_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YXBY_CONFIG_DIR", raising=False)
    cal = load_calendar()
    assert cal.source == str(PROJECT_ROOT / "config" / "holidays.yaml")
    assert cal.due(at("2026-09-29 10:00"), 7).at.isoformat() == "2026-10-14T23:59:59+08:00"


def test_load_calendar_reads_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_yaml(tmp_path, OVERRIDE_2027)
    monkeypatch.setenv("YXBY_CONFIG_DIR", str(tmp_path))
    assert load_calendar().coverage(2027) == "override"


# ------------------------------------------------------------------------ bad config


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        (
            """
            years:
              - year: 2027
                holidays:
                  - 2027-01-01
                  - next friday
            """,
            5,
            "years.0.holidays.1",
            "expected a date",
        ),
        (
            """
            years:
              - year: 2027
                workdays:
                  - {from: 2027-02-06}
            """,
            4,
            "years.0.workdays.0",
            "'from' and 'to'",
        ),
        (
            """
            years:
              - year: 2027
                holidays:
                  - {from: 2027-02-12, to: 2027-02-06}
            """,
            4,
            "years.0.holidays.0",
            "before it starts",
        ),
        (
            """
            years:
              - year: 2027
                holidays:
                  - 2026-12-31
            """,
            3,
            "years.0.holidays",
            "not in 2027",
        ),
        (
            """
            years:
              - year: 2027
                holidays: [2027-01-02]
                workdays: [2027-01-02]
            """,
            2,
            "years.0",
            "both as holiday and as workday",
        ),
        (
            """
            years:
              - year: 2027
              - year: 2027
            """,
            1,
            "years",
            "listed twice",
        ),
        (
            """
            years:
              - year: 2027
                holiday: [2027-01-01]
            """,
            3,
            "years.0.holiday",
            "未知字段",
        ),
        (
            """
            years:
              - year: 2027
                complete: maybe
            """,
            3,
            "years.0.complete",
            "应为 true 或 false",
        ),
    ],
)
def test_bad_config_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, words: str
) -> None:
    path = write_yaml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_calendar(path)
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert err.key == key
    assert words in str(err)


def test_an_impossible_date_names_its_line(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        """
        years:
          - year: 2027
            holidays:
              - 2027-02-30
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_calendar(path)
    assert info.value.path == str(path)
    assert info.value.line == 4
    assert "2027-02-30" in str(info.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="文件不存在"):
        load_calendar(tmp_path / "nope.yaml")


def test_due_date_is_a_frozen_value() -> None:
    result = DueDate(at=at("2026-10-14 23:59:59"), workdays=(), fallback_years=())
    with pytest.raises(AttributeError):
        result.at = at("2026-10-15 23:59:59")  # type: ignore[misc]
