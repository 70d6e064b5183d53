"""``yxby kb log|entries|batch|draft …``: the editors' loop from a terminal, on the test
database and a copy of the knowledge directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.app import App
from bot.cli import main
from handoff.models import CommissionerRole
from handoff.registry import add_commissioner
from tests.chatting import Chat
from yxby import paths

QUESTION = "我是张伟，电话13812345678，保税仓库的货物能不能拿去展会展示"


@pytest.fixture
def kdir(tmp_path: Path) -> Path:
    target = tmp_path / "entries"
    shutil.copytree(paths.entries_dir(), target)
    return target


@pytest.fixture
def env(app: App, kdir: Path, tmp_path: Path) -> dict[str, str]:
    with app.db.begin() as session:
        add_commissioner(
            session,
            name="孙编辑",
            department="政务办",
            role=CommissionerRole.EDITOR,
            departments=app.router.departments,
        )
        add_commissioner(
            session,
            name="周专员",
            department="市场监管局",
            role=CommissionerRole.COMMISSIONER,
            departments=app.router.departments,
        )
    return {
        "YXBY_DATABASE_URL": app.db.engine.url.render_as_string(hide_password=False),
        "YXBY_KNOWLEDGE_DIR": str(kdir),
        "YXBY_DATA_DIR": str(tmp_path / "data"),
        "YXBY_KNOWLEDGE_WRITABLE": "",
    }


def yxby(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_log_draft_review_and_write_from_the_terminal(
    app: App, env: dict[str, str], kdir: Path
) -> None:
    import knowledge

    Chat(app, "oOpenIdAbcdef123456", channel="wechat").send(QUESTION)
    listed = yxby(env, "kb", "log", "--json")
    assert listed.exit_code == 0, listed.output
    payload = json.loads(listed.output)
    assert payload["total"] == 1
    line = payload["lines"][0]
    assert "张伟" not in listed.output and "13812345678" not in listed.output
    assert "oOpenIdAbcdef123456" not in listed.output and "保税仓库" in line["question"]
    text = yxby(env, "kb", "log", "--channel", "wechat")
    assert "共 1 条" in text.output and "分词：" in text.output

    refused = yxby(env, "kb", "draft", "entry", "--turn", str(line["id"]), "--by", "周专员")
    assert refused.exit_code == 1 and "不是在职的编辑或管理员" in refused.output
    made = yxby(env, "kb", "draft", "entry", "--turn", str(line["id"]), "--by", "孙编辑")
    assert made.exit_code == 0, made.output
    draft_id = made.output.split("草稿 ")[1].split("（")[0]
    shown = yxby(env, "kb", "draft", "show", draft_id)
    assert "答案为空" in shown.output and "有 1 个错误" in shown.output
    edited = yxby(
        env,
        "kb",
        "draft",
        "edit",
        draft_id,
        "--by",
        "孙编辑",
        "--set",
        "id=editor-bonded-exhibition",
        "--set",
        "title=保税货物出区展示",
        "--set",
        "questions=保税仓库的货物能不能拿去展会展示\\n保税货物可以出区参展吗",
        "--set",
        "answer=保税货物出区展示应向海关办理手续，具体以海关规定为准。",
        "--set",
        "department=商务局",
    )
    assert edited.exit_code == 0 and "检查通过" in edited.output, edited.output
    assert yxby(env, "kb", "draft", "review", draft_id, "--by", "孙编辑").exit_code == 0
    patch = yxby(env, "kb", "draft", "patch", draft_id)
    assert "+- id: editor-bonded-exhibition" in patch.output
    not_writable = yxby(env, "kb", "draft", "write", draft_id, "--by", "孙编辑")
    assert not_writable.exit_code == 1 and "YXBY_KNOWLEDGE_WRITABLE" in not_writable.output
    assert not (kdir / "editors.yaml").exists()
    written = yxby(
        {**env, "YXBY_KNOWLEDGE_WRITABLE": "1"}, "kb", "draft", "write", draft_id, "--by", "孙编辑"
    )
    assert written.exit_code == 0, written.output
    assert knowledge.load(kdir).get("editor-bonded-exhibition") is not None
    assert "已写入" in yxby(env, "kb", "drafts", "--all").output


def test_entries_and_batch(app: App, env: dict[str, str], tmp_path: Path) -> None:
    Chat(app, "u-1").send("企业年报怎么报")
    figures = yxby(env, "kb", "entries", "--json")
    assert figures.exit_code == 0
    top = app.kb.decide("企业年报怎么报").top
    assert top is not None
    assert any(
        f["entry_id"] == top.entry.id and f["answered"] == 1 for f in json.loads(figures.output)
    )
    listing = tmp_path / "list.csv"
    listing.write_text(
        f"问题,预期条目\n企业年报怎么报,{top.entry.id}\n潜水艇驾照怎么考,none\n"
        f"企业年报怎么报,{top.entry.id}-nope\n",
        encoding="utf-8",
    )
    report = yxby(env, "kb", "batch", str(listing))
    assert "共 3 个问题：通过 2" in report.output and "第 4 行 未通过" in report.output
    assert yxby(env, "kb", "batch", str(listing), "--fail-under", "0.9").exit_code == 1
    bad = tmp_path / "list.pdf"
    bad.write_bytes(b"x")
    failed = yxby(env, "kb", "batch", str(bad))
    assert failed.exit_code == 1 and "只支持 CSV 或 XLSX" in failed.output
