"""`yxby kb lint`: every mistake, with file and line; exit 1 on errors, 0 on warnings only."""

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


BROKEN = Path(__file__).parent / "data" / "kb_broken"
TODAY = dt.date(2026, 11, 26)


def test_clean_file_has_no_issues(tmp_path: Path) -> None:
    assert run_lint(tmp_path, GOOD) == []


def test_unknown_key_names_the_allowed_keys_in_chinese(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD + "  answr: typo\n")
    assert len(out) == 1
    assert (
        "entries.yaml:8: 错误：[good-one] 未知字段「answr」，允许的字段：id、title、questions"
        in out[0]
    )
    assert "、answer、department、" in out[0]


def test_missing_required_key(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD.replace("  answer: 向市场监管局申请。\n", ""))
    assert out == [f"{tmp_path / 'entries.yaml'}:1: 错误：[good-one] 缺少必填字段「answer」"]


def test_wrong_type_is_chinese(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD.replace("questions: [营业执照怎么办理]", "questions: 5"))
    assert any(":3: 错误：" in o and "「questions」应为列表，现为「5」" in o for o in out), out


def test_duplicate_id_and_duplicate_question_across_files(tmp_path: Path) -> None:
    (tmp_path / "first.yaml").write_text(GOOD, encoding="utf-8")
    second = GOOD.replace("营业执照怎么办理", "营业执照怎么办理？")
    out = run_lint(tmp_path, second, name="second.yaml")
    first_at = f"{tmp_path / 'first.yaml'}:1"
    assert any(
        "second.yaml:1: 错误：" in o and "条目编号「good-one」重复" in o and first_at in o
        for o in out
    ), out


def test_duplicate_question_across_files(tmp_path: Path) -> None:
    (tmp_path / "first.yaml").write_text(GOOD, encoding="utf-8")
    second = GOOD.replace("good-one", "good-two").replace("营业执照怎么办理", "营业执照怎么办理？")
    out = run_lint(tmp_path, second, name="second.yaml")
    assert any(
        "second.yaml:3: 错误：" in o and "与条目「good-one」重复" in o and "first.yaml:3" in o
        for o in out
    ), out


def test_unknown_department_lists_the_canonical_names(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD.replace("department: 市场监管局", "department: 宇宙局"))
    assert len(out) == 1
    assert ":5: 错误：[good-one] 未知部门「宇宙局」，可用的部门：政务办、" in out[0]
    names = out[0].split("可用的部门：", 1)[1].split("、")
    assert "市场监管局" in names and "市场局" not in names  # canonical names, not aliases
    out = run_lint(tmp_path, GOOD.replace("department: 市场监管局", "department: 市场局"))
    assert any(":5: 警告：" in o and "请写规范名称「市场监管局」" in o for o in out)


def test_expired_entry_is_a_warning(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD + "  expires: 2025-12-31\n")
    assert any(":8: 警告：" in o and "已于 2025-12-31 失效" in o for o in out)


def test_empty_and_over_long_answers(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD.replace("向市场监管局申请。", '""'))
    assert any(":4: 错误：" in o and "答案为空" in o for o in out)
    long_answer = "办理" * 700  # 4200 bytes in UTF-8
    out = run_lint(tmp_path, GOOD.replace("向市场监管局申请。", long_answer))
    assert any(":4: 警告：" in o and "4200 字节" in o and "2048" in o for o in out)


def test_broken_yaml_with_line(tmp_path: Path) -> None:
    out = run_lint(tmp_path, GOOD + "- id: [unclosed\n")
    assert len(out) == 1 and "entries.yaml:9: 错误：YAML 格式错误：" in out[0]


def test_bad_id_and_bad_date(tmp_path: Path) -> None:
    text = GOOD.replace("id: good-one", "id: Bad Id!").replace("2026-01-01", "2026-13-01")
    out = run_lint(tmp_path, text)
    assert any(":1: 错误：" in o and "「id」的取值有误：应为稳定的条目编号" in o for o in out), out
    assert any(":7: 错误：" in o and "「updated」应为日期" in o for o in out), out


def test_every_message_is_chinese() -> None:
    issues = lint(BROKEN, departments=load_departments().alias_map(), today=TODAY)
    for issue in issues:
        assert re.search(r"[\u3400-\u9fff]", issue.message), issue
        # ids, quoted names and the list of allowed keys are the editor's own words
        prose = re.sub(r"\[[^]]*\]|「[^」]*」|允许的字段：.*", "", issue.message)
        english = re.search(
            r"(?i)\b(error|expected|invalid|unknown|missing|required|duplicate|input)\b",
            prose,
        )
        assert english is None, issue


def test_every_mistake_of_every_file_in_one_run() -> None:
    issues = lint(BROKEN, departments=load_departments().alias_map(), today=TODAY)
    found = {(Path(i.path).name, i.line, i.severity): i.message for i in issues}
    assert set(found) == {
        ("a.yaml", 16, Severity.ERROR),  # unknown key
        ("a.yaml", 17, Severity.ERROR),  # missing answer
        ("a.yaml", 27, Severity.ERROR),  # unknown department
        ("b.yaml", 2, Severity.ERROR),  # duplicate id (of a.yaml:2)
        ("b.yaml", 11, Severity.ERROR),  # questions is not a list
        ("b.yaml", 15, Severity.ERROR),  # impossible date
        ("b.yaml", 19, Severity.ERROR),  # empty answer
        ("b.yaml", 30, Severity.WARNING),  # expired
        ("c.yaml", 4, Severity.ERROR),  # broken YAML
    }
    assert "a.yaml:2" in found[("b.yaml", 2, Severity.ERROR)]


def test_lint_needs_the_date() -> None:
    with pytest.raises(TypeError):
        lint(BROKEN)  # type: ignore[call-arg]


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
    assert "0 个错误，1 个警告" in warn.stdout
    (tmp_path / "bad.yaml").write_text("- id: [\n", encoding="utf-8")
    bad = yxby("kb", "lint", str(tmp_path))
    assert bad.returncode == 1
    assert "bad.yaml:2: 错误：YAML 格式错误" in bad.stderr or "bad.yaml:1: 错误" in bad.stderr


def test_cli_reports_the_broken_fixture_in_one_run() -> None:
    result = yxby("kb", "lint", "--today", "2026-11-26", str(BROKEN))
    assert result.returncode == 1
    assert result.stderr.count(": 错误：") == 8
    assert "8 个错误，1 个警告" in result.stdout
    assert "Traceback" not in result.stderr


def test_cli_missing_directory_is_one_chinese_line(tmp_path: Path) -> None:
    result = yxby("kb", "lint", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"错误：{tmp_path / 'nowhere'}: 知识库目录不存在"


def test_shipped_knowledge_base_is_clean() -> None:
    result = yxby("kb", "lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "：0 个错误" in result.stdout
