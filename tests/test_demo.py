"""`make demo` (``python -m bot.demo``): the guide it prints and the examples it promises."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import demo
from bot.app import App, AppSettings, build_app
from handoff.db import make_engine, upgrade
from handoff.registry import route_facts


def run_demo(data_dir: Path, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YXBY_DATA_DIR": str(data_dir)}
    env.pop("YXBY_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "bot.demo", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app on a fresh SQLite database holding the demo data."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.sqlite3'}"
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    app = build_app(AppSettings(database_url=url))
    try:
        demo.seed(app)
        yield app
    finally:
        app.close()


def test_every_example_routes_to_its_department(demo_app: App) -> None:
    canonical = demo_app.router.departments.canonical
    for department, question in demo.EXAMPLES:
        assert canonical(department) == department, department
        decision = demo_app.router.route_text(question)
        assert decision.department == department, (question, decision)
        # whichever way the conversation goes (answer, suggestions, nothing found)
        assert demo.destinations(demo_app, question) == {department}, question
    shown = demo.verified_examples(demo_app)
    assert [(e.department, e.question) for e in shown] == list(demo.EXAMPLES)


def test_examples_filed_as_the_demo_enterprise(demo_app: App) -> None:
    with demo_app.db.begin() as session:
        facts = route_facts(session, demo.DEMO_ENTERPRISE[0])
    assert facts is not None
    for example in demo.verified_examples(demo_app):
        where = demo.destinations(demo_app, example.question, facts)
        if example.note:
            assert where != {example.department}
            assert all(d in example.note for d in where - {example.department})
        else:
            assert where == {example.department}, example


def test_demo_staff_cover_the_departments_with_their_roles(demo_app: App) -> None:
    rows = demo.staff_rows(demo_app)
    got = {(name, dept, role.split("（")[0]) for name, dept, role, _ in rows}
    assert got == {(n, d, r.value) for n, d, r in demo.DEMO_STAFF}
    departments = {d for _, d, _ in got}
    assert {"政务办", "市场监管局", "商务局", "科技局", "社发局"} <= departments
    assert ("政务办", "政务办") in {(d, r) for _, d, r in got}
    assert ("政务办", "负责人") in {(d, r) for _, d, r in got}
    for name, dept, _, command in rows:
        assert demo_app.router.departments.canonical(dept) == dept
        assert command.endswith(f"yxby chat --commissioner {name}")
    # every department with demo staff has an example question
    assert departments <= {e.department for e in demo.verified_examples(demo_app)}


def test_piped_demo_prints_staff_and_verified_examples(tmp_path: Path, demo_app: App) -> None:
    r = run_demo(tmp_path, "你好\n/quit\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Traceback" not in r.stderr
    assert "演示专员" in out and "部门" in out and "角色" in out
    for name, department, role in demo.DEMO_STAFF:
        assert re.search(rf"{name}\s+{department}\s+{role.value}", out), (name, out)
        assert f"YXBY_DATA_DIR={tmp_path} " in out
        assert f"yxby chat --commissioner {name}\n" in out
    # each printed example routes where the line says (checked again, outside the demo)
    section = out.split("示例问题", 1)[1].split("\n\n", 1)[0]
    printed = re.findall(r"^  ([^＊\s]\S*)\s+(\S+?)＊*$", section, re.MULTILINE)
    assert printed, section
    for department, question in printed:
        assert demo_app.router.route_text(question).department == department, question
    assert {d for d, _ in printed} >= {d for _, d, _ in demo.DEMO_STAFF}
    assert "一个人扮演两方" not in out  # the script is for a terminal
    assert "助手：" in out  # and then the chat ran


def test_demo_without_guide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("YXBY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("YXBY_DATABASE_URL", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    demo.main(["--no-guide"])
    out = capsys.readouterr().out
    assert "演示专员" not in out and "助手：" in out


def test_guide_for_a_terminal_has_the_script(demo_app: App) -> None:
    out = io.StringIO()
    demo.print_guide(demo_app, out, script=True)
    text = out.getvalue()
    for word in ("未解决", "登记诉求", "待办", "签收 编号", "办结 编号", "满意", "转人工", "接入"):
        assert word in text, word
