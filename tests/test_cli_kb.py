"""`yxby ask` and `yxby kb test/eval` through the real console script."""

import json
import subprocess
import sys
from pathlib import Path

YXBY = str(Path(sys.executable).with_name("yxby"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([YXBY, *args], capture_output=True, text=True, timeout=60)


def test_ask_json_answer() -> None:
    r = run("ask", "--json", "12345热线能反映企业的问题吗")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["action"] == "answer"
    assert "12345" in out["answer"]
    assert out["entry_id"] and out["title"] and out["department"]
    assert out["score"] > 0 and out["matched_terms"]
    assert isinstance(out["suggestions"], list)


def test_ask_json_handoff_and_none() -> None:
    assert json.loads(run("ask", "--json", "转人工").stdout)["action"] == "handoff"
    out = json.loads(run("ask", "--json", "明天会下雨吗").stdout)
    assert out["action"] == "none"
    assert out["answer"] is None and out["entry_id"] is None


def test_ask_empty_and_oversized_input_errors_without_traceback() -> None:
    for text in ("   ", "税" * 5000):
        r = run("ask", "--json", text)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr
        assert "错误" in r.stderr
        assert "error" in json.loads(r.stdout)
    r = run("ask")
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_ask_plain_text_names_source_and_department() -> None:
    r = run("ask", "办结以后几天内反馈结果")
    assert r.returncode == 0
    assert "2个工作日" in r.stdout and "责任部门" in r.stdout and "来源" in r.stdout


def test_kb_test_shows_scores_and_matched_terms() -> None:
    r = run("kb", "test", "个体工商户的服务由哪个部门负责")
    assert r.returncode == 0, r.stderr
    assert "分词" in r.stdout and "命中" in r.stdout and "决定：answer" in r.stdout
    data = json.loads(run("kb", "test", "--json", "个体工商户找谁").stdout)
    assert data["hits"][0]["matched_terms"] and "coverage" in data["hits"][0]


def test_kb_eval_reports_failures_and_rate(tmp_path: Path) -> None:
    f = tmp_path / "eval.yaml"
    f.write_text(
        "ask:\n"
        '  - {text: "12345热线能反映企业的问题吗", action: answer, must: ["12345"]}\n'
        '  - {text: "12345热线能反映企业的问题吗", action: answer, must: ["不存在的字样"]}\n'
        '  - {text: "给我讲个笑话", action: not_answer}\n',
        encoding="utf-8",
    )
    r = run("kb", "eval", str(f))
    assert r.returncode == 0
    assert "通过 2/3" in r.stdout and "不存在的字样" in r.stdout
    assert run("kb", "eval", "--fail-under", "0.9", str(f)).returncode == 1


def test_kb_eval_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "eval.yaml"
    f.write_text("ask:\n  - {text: 问题, action: maybe}\n", encoding="utf-8")
    r = run("kb", "eval", str(f))
    assert r.returncode == 1
    assert "eval.yaml:2" in r.stderr and "action" in r.stderr and "Traceback" not in r.stderr


def test_kb_tune_reports_tuning_and_held_out_figures(tmp_path: Path) -> None:
    f = tmp_path / "tune.yaml"
    f.write_text(
        "cases:\n"
        '  - {text: "营业执照遗失了要怎么补", expect: answer, entry: sample-license-replacement}\n'
        '  - {text: "执照丢了咋补办", expect: answer, entry: sample-license-replacement}\n'
        '  - {text: "今天天气怎么样", expect: not_answer}\n'
        '  - {text: "帮我订张机票", expect: none}\n',
        encoding="utf-8",
    )
    r = run("kb", "tune", "--top", "1", str(f))
    assert r.returncode == 0, r.stderr
    assert "4 个用例：调参 2 个，留出 2 个" in r.stdout
    assert "调参：answer_confidence=" in r.stdout and "留出：" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text('cases:\n  - {text: "问题", expect: answer}\n', encoding="utf-8")
    r = run("kb", "tune", str(bad))
    assert r.returncode == 1 and "needs 'entry'" in r.stderr
