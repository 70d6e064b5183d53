"""Tests for `yxby sla`: the due command, both output forms and bad input."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from bot.cli.sla import parse_moment, register, sla_group

OVERRIDE_2027 = """
    # test data only, not the real 2027 arrangement
    years:
      - year: 2027
        complete: true
        holidays: [{from: 2027-01-01, to: 2027-01-03}]
"""


@pytest.fixture(autouse=True)
def shipped_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YXBY_CONFIG_DIR", raising=False)


def run(*args: str) -> Result:
    return CliRunner().invoke(sla_group, ["due", *args])


def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    (tmp_path / "holidays.yaml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    monkeypatch.setenv("YXBY_CONFIG_DIR", str(tmp_path))


def test_due_prints_the_deadline() -> None:
    result = run("--from", "2026-09-29 10:00", "--workdays", "7")
    assert result.exit_code == 0, result.output
    assert result.stdout == "2026-10-14T23:59:59+08:00\n"
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("start", "due"),
    [
        ("2026-09-29", "2026-10-14T23:59:59+08:00"),
        ("2026-09-29 23:59:59", "2026-10-14T23:59:59+08:00"),
        ("2026-09-29T10:00:00+08:00", "2026-10-14T23:59:59+08:00"),
        ("2026-09-29T16:30:00Z", "2026-10-15T23:59:59+08:00"),  # 00:30 on 09-30 in Shanghai
        ("2026-09-29T18:00:00-05:00", "2026-10-15T23:59:59+08:00"),
    ],
)
def test_from_accepts_dates_times_and_offsets(start: str, due: str) -> None:
    result = run("--from", start, "--workdays", "7")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == due


def test_json_output() -> None:
    result = run("--from", "2026-09-29 10:00", "--workdays", "7", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "due": "2026-10-14T23:59:59+08:00",
        "workdays_counted": [
            "2026-09-30",
            "2026-10-08",
            "2026-10-09",
            "2026-10-10",
            "2026-10-12",
            "2026-10-13",
            "2026-10-14",
        ],
        "fallback_years": [],
        "fell_back": False,
    }


def test_json_reports_a_fallback_year_and_stderr_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="yxby.calendar")
    result = run("--from", "2199-12-30 10:00", "--workdays", "2", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["due"] == "2200-01-01T23:59:59+08:00"
    assert payload["workdays_counted"] == ["2199-12-31", "2200-01-01"]
    assert payload["fallback_years"] == [2199, 2200]
    assert payload["fell_back"] is True
    assert "2199 年无法定节假日数据" in result.stderr
    assert "2200 年无法定节假日数据" in result.stderr
    assert caplog.records == []  # the command says it itself, the log line is muted
    logging.getLogger("yxby.calendar").warning("still on")
    assert len(caplog.records) == 1  # ... only while the command runs


def test_an_override_year_from_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir(tmp_path, monkeypatch, OVERRIDE_2027)
    result = run("--from", "2026-12-30 10:00", "--workdays", "2", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["workdays_counted"] == ["2026-12-31", "2027-01-04"]
    assert payload["fell_back"] is False
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--from", "2026-13-01", "--workdays", "7"], "无法识别的时间“2026-13-01”"),
        (["--from", "tomorrow", "--workdays", "7"], "无法识别的时间"),
        (["--from", "2026/09/29 10:00", "--workdays", "7"], "无法识别的时间"),
        (["--from", "2026-09-29", "--workdays", "seven"], "工作日数应为整数"),
        (["--from", "2026-09-29", "--workdays", "0"], "应在 1 到 1000 之间"),
        (["--from", "2026-09-29", "--workdays", "-3"], "应在 1 到 1000 之间"),
        (["--from", "2026-09-29", "--workdays", "100000"], "应在 1 到 1000 之间"),
        (["--workdays", "7"], "缺少 --from"),
        (["--from", "2026-09-29"], "缺少 --workdays"),
    ],
)
def test_bad_input_is_a_chinese_error_with_exit_2(args: list[str], words: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("错误：")
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert "Error" not in result.stderr
    assert not isinstance(result.exception, (ValueError, TypeError))


def test_a_broken_holidays_file_is_reported_through_the_yxby_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.cli import main

    config_dir(tmp_path, monkeypatch, "years:\n  - year: 2027\n    holidays: [nope]\n")
    result = CliRunner().invoke(main, ["sla", "due", "--from", "2026-09-29", "--workdays", "7"])
    assert result.exit_code == 1
    assert result.stderr.startswith("错误：")
    assert "holidays.yaml:3" in result.stderr
    assert "years.0.holidays.0" in result.stderr


def test_yxby_sla_due_is_registered_on_the_main_command() -> None:
    from bot.cli import main

    result = CliRunner().invoke(
        main, ["sla", "due", "--from", "2026-09-29 10:00", "--workdays", "7"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "2026-10-14T23:59:59+08:00\n"


def test_register_adds_the_group_and_other_modules_can_extend_it() -> None:
    root = click.Group("root")
    register(root)
    assert root.commands["sla"] is sla_group
    assert "due" in sla_group.commands


def test_parse_moment_makes_naive_times_shanghai() -> None:
    assert parse_moment("2026-09-29 10:00").isoformat() == "2026-09-29T10:00:00+08:00"
    assert parse_moment(" 2026-09-29 ").isoformat() == "2026-09-29T00:00:00+08:00"
    with pytest.raises(ValueError):
        parse_moment("29/09/2026")
