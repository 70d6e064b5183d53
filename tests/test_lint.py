"""`yxby kb lint`: every mistake, with file and line; exit 1 on errors, 0 on warnings only."""

import datetime as dt
import subprocess
import sys
from pathlib import Path

from knowledge.lint import Severity, lint
from routing import load_departments

GOOD = """\
- id: good-one
  title: 好条目
  questions: [营业执照怎么办理]
  answer: 向市场监管局申请。
  department: 市场监管局
  source: {document: 测试}
  updated: 2026-01-01
"""


def run_lint(tmp_path: Path, text: str, name: str = "entries.yaml") -> list[str]:
    (tmp_path / name).write_text(text, encoding="utf-8")
    issues = lint(tmp_path, departments=load_departments().alias_map(), today=dt.date(2026, 11, 26))
    return [str(i) for i in issues]


def test_clean_file_has_no_issues(tmp_path: Path) -> None:
    assert run_lint(tmp_path, GOOD) == []


def test_unknown_key_with_line(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD + "  answr: typo\n")
    assert len(out) == 1
    assert "entries.yaml:8: error:" in out[0] and "answr" in out[0]


def test_missing_required_key(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD.replace("  answer: 向市场监管局申请。\n", ""))
    assert any(":1: error:" in o and "'answer'" in o and "required" in o for o in out)


def test_duplicate_id_and_duplicate_question_across_files(tmp_path: Path) -> None:
    (tmp_path / "first.yaml").write_text(GOOD, encoding="utf-8")
    second = GOOD.replace("营业执照怎么办理", "营业执照怎么办理？")
    out = run_lint(tmp_path, second, name="second.yaml")
    assert any("second.yaml:1: error:" in o and "duplicate id 'good-one'" in o for o in out)
    assert any(
        "second.yaml:3: error:" in o and "also in entry 'good-one'" in o and "first.yaml:3" in o
        for o in out
    )


def test_unknown_department_is_error_alias_is_warning(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD.replace("department: 市场监管局", "department: 宇宙局"))
    assert any(":5: error:" in o and "unknown department '宇宙局'" in o for o in out)
    out = run_lint(tmp_path, GOOD.replace("department: 市场监管局", "department: 市场局"))
    assert any(":5: warning:" in o and "canonical name '市场监管局'" in o for o in out)


def test_expired_entry_is_a_warning(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD + "  expires: 2025-12-31\n")
    assert any(":8: warning:" in o and "expired" in o for o in out)


def test_empty_and_over_long_answers(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD.replace("向市场监管局申请。", '""'))
    assert any(":4: error:" in o and "empty answer" in o for o in out)
    long_answer = "办理" * 700  # 4200 bytes in UTF-8
    out = run_lint(tmp_path, GOOD.replace("向市场监管局申请。", long_answer))
    assert any(":4: warning:" in o and "4200 bytes" in o and "2048" in o for o in out)


def test_broken_yaml_with_line(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD + "- id: [unclosed\n")
    assert len(out) == 1 and "entries.yaml:9: error: broken YAML" in out[0]


def test_bad_id_and_bad_date(tmp_path: Path) -> None:
    text = GOOD.replace("id: good-one", "id: Bad Id!").replace("2026-01-01", "2026-13-01")
    out = run_lint(tmp_path, text)
    assert any(":1: error:" in o and "'id'" in o for o in out)
    assert any(":7: error:" in o and "'updated'" in o for o in out)


def test_severity_ordering(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(GOOD + "  expires: 2020-01-01\n", encoding="utf-8")
    issues = lint(tmp_path, today=dt.date(2026, 1, 1))
    assert [i.severity for i in issues] == [Severity.WARNING]


def yxby(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("yxby")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)


def test_cli_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(GOOD + "  expires: 2020-01-01\n", encoding="utf-8")
    warn = yxby("kb", "lint", str(tmp_path))
    assert warn.returncode == 0, warn.stderr
    assert "0 error(s), 1 warning(s)" in warn.stdout
    (tmp_path / "bad.yaml").write_text("- id: [\n", encoding="utf-8")
    bad = yxby("kb", "lint", str(tmp_path))
    assert bad.returncode == 1
    assert "bad.yaml:2: error: broken YAML" in bad.stderr or "bad.yaml:1: error" in bad.stderr


def test_shipped_knowledge_base_is_clean() -> None:
    result = yxby("kb", "lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 error(s)" in result.stdout
