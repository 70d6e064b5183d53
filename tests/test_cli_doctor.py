"""Tests for `yxby doctor`: one line per check, warnings for uncovered years, exit status."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.cli.doctor import (
    TODAY_ENV,
    Check,
    CheckResult,
    DoctorContext,
    Status,
    default_checks,
    doctor_command,
    run_checks,
)
from handoff.db import make_engine, upgrade
from yxby.errors import ConfigError
from yxby.paths import PROJECT_ROOT


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config dir holding copies of the shipped files, and a migrated SQLite database."""
    for source in (PROJECT_ROOT / "config").glob("*.yaml"):
        shutil.copy(source, tmp_path / source.name)
    monkeypatch.setenv("YXBY_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv(TODAY_ENV, raising=False)
    url = f"sqlite:///{tmp_path / 'doctor.sqlite3'}"
    monkeypatch.setenv("YXBY_DATABASE_URL", url)
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return tmp_path


def doctor(*args: str) -> Result:
    return CliRunner().invoke(doctor_command, list(args))


def lines(result: Result) -> list[str]:
    return result.stdout.splitlines()


def staff_every_department(url: str, *, skip: tuple[str, ...] = ()) -> None:
    """An active, channel-bound commissioner in every department but *skip*."""
    from handoff.db import open_database
    from handoff.registry import add_commissioner
    from routing.departments import load_departments

    departments = load_departments()
    db = open_database(url)
    try:
        with db.begin() as session:
            for i, dept in enumerate(departments):
                if dept.name not in skip:
                    add_commissioner(
                        session,
                        name=f"专员{i}",
                        department=dept.name,
                        bindings=[("telegram", str(1000 + i))],
                        departments=departments,
                    )
    finally:
        db.dispose()


def test_all_good_in_a_year_chinesecalendar_covers(config: Path) -> None:
    staff_every_department(os.environ["YXBY_DATABASE_URL"])
    result = doctor("--today", "2025-06-01")
    assert result.exit_code == 0, result.output
    out = lines(result)
    assert len(out) == len(default_checks()) == 11
    assert all(line.startswith("✓ ") for line in out), out
    assert out[10].startswith("✓ 专员：")
    assert out[4] == "✓ 未来 60 天工作日历：未来 60 天的放假安排均已公布并录入"
    assert out[6].startswith("✓ 考核与名录配置：assessment.yaml、supervision.yaml")
    assert out[0].startswith("✓ 部门配置：")
    assert "2025 年按 chinesecalendar" in out[2]
    assert "2026 年按 chinesecalendar" in out[3]


def test_an_unpublished_next_year_far_away_is_a_warning_not_a_failure(config: Path) -> None:
    staff_every_department(os.environ["YXBY_DATABASE_URL"])
    result = doctor("--today", "2026-06-01")
    assert result.exit_code == 0, result.output
    out = lines(result)
    assert out[3].startswith("! 明年工作日历：2027 年放假安排尚未公布：暂按《全国年节及纪念日")
    assert out[4].startswith("✓ 未来 60 天工作日历")
    assert doctor("--today", "2026-06-01", "--strict").exit_code == 1


def test_an_unpublished_year_within_sixty_days_fails(config: Path) -> None:
    result = doctor("--today", "2026-12-01")
    assert result.exit_code == 1, result.output
    out = lines(result)
    assert out[4].startswith("✗ 未来 60 天工作日历：未来 60 天涉及的2027 年放假安排尚未录入")
    (config / "holidays.yaml").write_text(
        "years:\n  - year: 2027\n    complete: true\n    source: test\n"
        "    holidays: [2027-01-01]\n",
        encoding="utf-8",
    )
    assert lines(doctor("--today", "2026-12-01"))[4].startswith("✓ 未来 60 天工作日历")


def test_an_uncovered_year_is_counted_weekends_only(config: Path) -> None:
    result = doctor("--today", "2198-03-01")
    assert result.exit_code == 1, result.output
    out = lines(result)
    assert out[2] == (
        "! 今年工作日历：2198 年无法定节假日数据，按周末计算工作日；请在 config/holidays.yaml 补充"
    )
    assert out[3] == (
        "! 明年工作日历：2199 年无法定节假日数据，按周末计算工作日；请在 config/holidays.yaml 补充"
    )


def test_today_comes_from_the_environment(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TODAY_ENV, "2198-03-01")
    assert "2199 年无法定节假日数据" in doctor().stdout


def test_a_declared_year_is_covered(config: Path) -> None:
    (config / "holidays.yaml").write_text(
        "years:\n  - year: 2199\n    complete: true\n    holidays: [2199-01-01]\n",
        encoding="utf-8",
    )
    out = lines(doctor("--today", "2198-03-01"))
    assert out[2].startswith("! 今年工作日历：2198 年")
    assert out[3].startswith("✓ 明年工作日历：2199 年按")
    assert "完整安排" in out[3]


def test_a_broken_departments_file_fails(config: Path) -> None:
    (config / "departments.yaml").write_text(
        "departments:\n  - name: 政务办\n    kind: 职能部门\n", encoding="utf-8"
    )
    result = doctor("--today", "2025-06-01")
    assert result.exit_code == 1
    out = lines(result)
    assert out[0].startswith("✗ 部门配置：")
    assert "departments.yaml:2" in out[0]
    assert "缺少必填字段「departments.0.full_name」" in out[0]
    assert len(out) == len(default_checks())  # a multi-line error still makes one line
    assert out[1].startswith("✓ 节假日配置")


def test_a_broken_holidays_file_fails_and_the_calendar_checks_say_why(config: Path) -> None:
    (config / "holidays.yaml").write_text(
        "years:\n  - year: 2026\n    holidays: [2026-02-30]\n", encoding="utf-8"
    )
    result = doctor("--today", "2025-06-01")
    assert result.exit_code == 1
    out = lines(result)
    assert out[0].startswith("✓ 部门配置")
    for line in out[1:4]:  # the three checks that need the calendar
        assert line.startswith("✗ ")
        assert "holidays.yaml:3" in line
        assert "2026-02-30" in line


def test_a_bad_today_is_rejected(config: Path) -> None:
    result = doctor("--today", "2025-13-01")
    assert result.exit_code == 2
    assert "无法识别的日期" in result.stderr


def test_doctor_is_registered_on_the_main_command(config: Path) -> None:
    from bot.cli import main

    result = CliRunner().invoke(main, ["doctor", "--today", "2025-06-01"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("✓ 部门配置")


def test_run_checks_is_extensible_and_turns_exceptions_into_failures() -> None:
    def ok(ctx: DoctorContext) -> CheckResult:
        return CheckResult(Status.OK, f"今天是 {ctx.today}")

    def config_broken(ctx: DoctorContext) -> CheckResult:
        raise ConfigError("broken", path="x.yaml", line=3)

    def crashed(ctx: DoctorContext) -> CheckResult:
        raise RuntimeError("boom")

    outcomes = run_checks(
        [Check("甲", ok), Check("乙", config_broken), Check("丙", crashed)],
        DoctorContext(today=date(2026, 5, 1)),
    )
    assert [o.line() for o in outcomes] == [
        "✓ 甲：今天是 2026-05-01",
        "✗ 乙：x.yaml:3: broken",
        "✗ 丙：RuntimeError: boom",
    ]


def test_the_calendar_is_loaded_once_per_run(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import handoff.calendar

    calls: list[object] = []
    real = handoff.calendar.load_calendar

    def counting(path: Path | None = None) -> handoff.calendar.WorkCalendar:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(handoff.calendar, "load_calendar", counting)
    outcomes = run_checks(default_checks(), DoctorContext(today=date(2025, 6, 1)))
    assert all(o.result.status is not Status.FAIL for o in outcomes)
    assert len(calls) == 1


def test_departments_without_a_bound_commissioner_are_a_warning(config: Path) -> None:
    from handoff.db import open_database
    from handoff.registry import add_commissioner

    url = os.environ["YXBY_DATABASE_URL"]
    staff_every_department(url, skip=("工信局", "商务局", "财政局"))
    db = open_database(url)
    try:
        with db.begin() as session:  # neither counts: no binding, or a head not a commissioner
            add_commissioner(session, name="无渠道", department="工信局")
            add_commissioner(
                session, name="负责人", department="商务局", role="负责人",
                bindings=[("telegram", "42")],
            )  # fmt: skip
    finally:
        db.dispose()
    result = doctor("--today", "2025-06-01")
    assert result.exit_code == 0, result.output  # a warning does not fail by default
    assert lines(result)[10] == (
        "! 专员：警告：以下部门尚无绑定渠道的在岗专员，新诉求将发给部门负责人或政务办："
        "工信局、商务局、财政局"
    )


def test_strict_makes_a_warning_fail(config: Path) -> None:
    assert doctor("--today", "2025-06-01").exit_code == 0
    result = doctor("--today", "2025-06-01", "--strict")
    assert result.exit_code == 1
    assert any(line.startswith("! 专员：") for line in lines(result))
    staff_every_department(os.environ["YXBY_DATABASE_URL"])
    assert doctor("--today", "2025-06-01", "--strict").exit_code == 0


def test_a_broken_entry_fails_the_knowledge_check(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = tmp_path / "entries"
    shutil.copytree(PROJECT_ROOT / "knowledge" / "entries", entries)
    (entries / "zz-broken.yaml").write_text("- id: [\n", encoding="utf-8")
    monkeypatch.setenv("YXBY_KNOWLEDGE_DIR", str(entries))
    result = doctor("--today", "2025-06-01")
    assert result.exit_code == 1
    (line,) = [x for x in lines(result) if "知识库" in x]
    assert line.startswith("✗ 知识库：1 个错误（有问题的条目未加载，")
    assert "zz-broken.yaml:2: 错误：YAML 格式错误" in line
