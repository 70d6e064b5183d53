"""`yxby route`: output formats, the knowledge rule's input, and the empty-text error."""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from bot.cli import route as route_cli

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture
def cli() -> click.Group:
    group = click.Group("yxby")
    route_cli.register(group)
    return group


def run(cli: click.Group, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["route", *args])
    return result.exit_code, result.stdout, result.stderr


def test_registered_on_the_yxby_group() -> None:
    from bot.cli import main

    assert "route" in main.commands


def test_json_output(cli: click.Group) -> None:
    code, out, _ = run(cli, "--json", "--no-knowledge", "我们经营一家宾馆，想了解行业主管部门")
    assert code == 0
    assert json.loads(out) == {
        "department": "商务局",
        "rule": "industry",
        "reason": "文本提及“宾馆”，属住宿餐饮业（附件3第5项“贸易业、住宿餐饮业”），由商务局主管",
    }
    assert "宾馆" in out  # ensure_ascii=False: Chinese stays readable


def test_readable_line(cli: click.Group) -> None:
    code, out, _ = run(cli, "--no-knowledge", "营业执照怎么变更")
    assert code == 0
    assert (
        out == "市场监管局（事项规则）：诉求涉及“营业执照”，属市场主体登记事项，由市场监管局办理\n"
    )


def test_words_are_joined(cli: click.Group) -> None:
    code, out, _ = run(cli, "--json", "--no-knowledge", "我是", "个体户")
    assert code == 0
    assert json.loads(out)["rule"] == "individual"


@pytest.mark.parametrize("args", [(), ("",), ("   ",), ("--json", "")])
def test_empty_text_is_a_chinese_error_with_exit_code_2(
    cli: click.Group, args: tuple[str, ...]
) -> None:
    result = CliRunner().invoke(cli, ["route", *args])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("错误：请提供诉求文本")
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_knowledge_match_feeds_rule_2(cli: click.Group, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake(app: object, text: str) -> tuple[str | None, str | None]:
        seen.append(text)
        return "company-setup", "市场局"

    monkeypatch.setattr(route_cli, "knowledge_match", fake)
    code, out, _ = run(cli, "--json", "我们经营一家宾馆")
    assert code == 0
    assert seen == ["我们经营一家宾馆"]
    data = json.loads(out)
    assert (data["department"], data["rule"]) == ("市场监管局", "knowledge")
    assert "company-setup" in data["reason"]


def test_no_knowledge_skips_the_knowledge_base(
    cli: click.Group, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(app: object, text: str) -> tuple[str | None, str | None]:
        raise AssertionError("knowledge base consulted")

    monkeypatch.setattr(route_cli, "knowledge_match", fail)
    code, _, _ = run(cli, "--no-knowledge", "我们经营一家宾馆")
    assert code == 0


# ----------------------------------------------------------- knowledge_match contract


@dataclass
class _Entry:
    id: str
    department: str
    tags: tuple[str, ...] = ()


@dataclass
class _Hit:
    entry: _Entry


@dataclass
class _Decision:
    action: str
    hits: list[_Hit] = field(default_factory=list)

    @property
    def top(self) -> _Hit | None:
        return self.hits[0] if self.hits else None


def _app_deciding(decision: _Decision) -> Any:
    """An app whose knowledge base always makes *decision*."""

    class _Base:
        def decide(self, text: str) -> _Decision:
            return decision

    return types.SimpleNamespace(kb=_Base())


def test_confident_answer_gives_entry_and_department() -> None:
    app = _app_deciding(_Decision("answer", [_Hit(_Entry("tax-1", "财政局"))]))
    assert route_cli.knowledge_match(app, "税") == ("tax-1", "财政局")


@pytest.mark.parametrize(
    "decision",
    [
        _Decision("answer", [_Hit(_Entry("seed-how", "政务办", ("programme",)))]),
        _Decision("suggest", [_Hit(_Entry("tax-1", "财政局"))]),
        _Decision("none"),
        _Decision("handoff"),
    ],
)
def test_no_department_unless_a_confident_answer_about_a_need(decision: _Decision) -> None:
    assert route_cli.knowledge_match(_app_deciding(decision), "随便问问") == (None, None)


def test_route_with_a_registered_enterprise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.cli import main
    from handoff.db import make_engine, open_database, upgrade
    from handoff.models import Enterprise, EnterpriseKind
    from tests.conftest import make_uscc

    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    monkeypatch.setenv("YXBY_DATABASE_URL", url)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    code = make_uscc(77, "92")
    db = open_database(url)
    with db.begin() as session:
        session.add(
            Enterprise(
                uscc=code, name="示例理发店", kind=EnterpriseKind.INDIVIDUAL, industry=None,
                tags=[], created_at=START, updated_at=START,
            )
        )  # fmt: skip
    db.dispose()
    runner = CliRunner()
    out = runner.invoke(main, ["route", "--json", "--enterprise", code, "有个事情想找政府帮忙"])
    assert out.exit_code == 0, out.output
    assert '"department": "市场监管局"' in out.output and '"rule": "individual"' in out.output
    missing = runner.invoke(main, ["route", "--enterprise", make_uscc(78), "帮忙"])
    assert missing.exit_code == 1 and "企业库中没有" in missing.output
    bad = runner.invoke(main, ["route", "--enterprise", "123", "帮忙"])
    assert bad.exit_code == 1 and "统一社会信用代码" in bad.output
