"""The editors' services: the 编辑 role, the masked conversation log and its filters, entry
figures on a known history, drafts (from a log line, a gap group, a resolved ticket) linted
and written as YAML or offered as a patch, and the batch hit test."""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import App
from bot.console.editors import editors_of
from handoff.conversations import DialogueTurn, TurnOutcome
from handoff.editors import (
    DraftError,
    EditorOnly,
    Editors,
    LogFilter,
    NotWritable,
    batch_hit_test,
    entry_yaml,
    hit_test,
    mask,
    read_batch,
)
from handoff.models import ChannelIdentity, Commissioner, CommissionerRole, KnowledgeDraftStatus
from handoff.registry import add_commissioner
from handoff.scope import can_edit_knowledge, can_see, visible_filter
from knowledge.lint import Severity, lint
from tests.chatting import VALID_USCC, Chat, register_enterprise
from tests.conftest import MovableClock
from yxby import paths

LICENCE = "营业执照经营范围变更"
ANNUAL = "企业年报怎么报"  # one of an entry's own questions: answered outright
PERSONAL = "我是张伟，电话13812345678，天津示例科技有限公司营业执照经营范围变更怎么办"
PERSONAL_BITS = ("张伟", "13812345678", "天津示例科技", VALID_USCC)


@pytest.fixture
def kdir(tmp_path: Path) -> Path:
    """A copy of the shipped knowledge directory the tests may write into."""
    target = tmp_path / "entries"
    shutil.copytree(paths.entries_dir(), target)
    return target


def _editors(app: App, kdir: Path, *, writable: bool = False) -> Editors:
    return replace(editors_of(app), knowledge_dir=kdir, writable=writable)


def _person(
    app: App, name: str, role: CommissionerRole, department: str = "政务办"
) -> Commissioner:
    with app.db.begin() as session:
        row = add_commissioner(
            session,
            name=name,
            department=department,
            role=role,
            departments=app.router.departments,
        )
        session.expunge(row)
        return row


def _link(app: App, chat: Chat, **values: object) -> None:
    with app.db.begin() as session:
        identity = session.scalars(
            select(ChannelIdentity).where(ChannelIdentity.user_key == chat.user_key)
        ).one()
        for key, value in values.items():
            setattr(identity, key, value)


# ------------------------------------------------------------------------------- masking


def test_mask_removes_names_phones_codes_and_company_names() -> None:
    text = (
        f"我是张伟，电话13812345678，座机022-25601234，信用代码{VALID_USCC}，"
        "天津港保税区示例贸易有限公司的营业执照怎么变更？联系人：刘洋，邮箱 li@example.com"
    )
    masked = mask(text)
    for secret in ("张伟", "13812345678", "25601234", VALID_USCC, "示例贸易", "刘洋", "li@"):
        assert secret not in masked
    assert "营业执照怎么变更" in masked and "〔电话〕" in masked and "〔信用代码〕" in masked
    assert mask("我叫赵磊，法定代表人是王小明") == "我叫〔姓名〕，法定代表人是〔姓名〕"
    assert mask("感谢刘洋专员，陈刚说下周可以办") == "感谢〔姓名〕专员，〔姓名〕说下周可以办"
    # questions about things keep their words (许可证 and 顾客 are tagged as names by jieba)
    for plain in (
        "怎么注册有限公司",
        "进口设备减免税怎么办理",
        "排污许可证到期怎么延续",
        "顾客投诉储值卡退不了钱怎么办",
        "法定代表人变更流程和材料",
        "联系人工要等多久",
        "在保税区开分公司要什么手续",
        "申请专利要多久能授权",
        "查询工单 YX-20261201-0001",
    ):
        assert mask(plain) == plain
    # a known enterprise is masked also by its short name
    assert mask("我们示例科技的社保", [("天津示例科技有限公司", "〔企业名称〕")]) == (
        "我们〔企业名称〕的社保"
    )


# ---------------------------------------------------------------------------------- role


def test_editors_see_no_ticket_and_use_the_editor_pages(app: App, make_ticket: object) -> None:
    editor = _person(app, "孙编辑", CommissionerRole.EDITOR, "市场监管局")
    admin = _person(app, "钱管理", CommissionerRole.ADMIN)
    clerk = _person(app, "周专员", CommissionerRole.COMMISSIONER, "市场监管局")
    view = app.tickets.create(
        "营业执照", department="市场监管局", rule="topic", reason="t", actor="测试"
    )
    with app.db.sessions() as session:
        from handoff.models import Ticket

        ticket = session.scalars(select(Ticket).where(Ticket.number == view.number)).one()
        _ = ticket.helpers
        assert not can_see(editor, ticket)  # even of their own department
        assert can_see(clerk, ticket)
        assert session.scalars(select(Ticket).where(visible_filter(editor))).all() == []
    assert can_edit_knowledge(editor) and can_edit_knowledge(admin)
    assert not can_edit_knowledge(clerk)
    with pytest.raises(EditorOnly):
        editors_of(app).draft_entry(clerk, question="x", by=clerk.name)


def test_cli_adds_an_editor(app: App) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    url = str(app.db.engine.url.render_as_string(hide_password=False))
    result = CliRunner().invoke(
        main,
        ["commissioners", "add", "孙编辑", "--department", "政务办", "--role", "编辑"],
        env={"YXBY_DATABASE_URL": url},
    )
    assert result.exit_code == 0, result.output
    assert "编辑" in result.output
    with app.db.sessions() as session:
        row = session.scalars(select(Commissioner).where(Commissioner.name == "孙编辑")).one()
        assert row.role is CommissionerRole.EDITOR


# ----------------------------------------------------------------------------------- log


def test_the_log_is_masked_and_filters(app: App, clock: MovableClock, kdir: Path) -> None:
    register_enterprise(app, name="天津示例科技有限公司")
    wechat = Chat(app, "oAbCdEfGh1234567890openid", channel="wechat")
    wechat.send("你好")
    with app.db.begin() as session:
        from handoff.registry import find_enterprise

        found = find_enterprise(session, VALID_USCC)
        assert found is not None
        identity = session.scalars(
            select(ChannelIdentity).where(ChannelIdentity.user_key == wechat.user_key)
        ).one()
        identity.enterprise_id, identity.display_name = found.id, "张伟"
    wechat.send(PERSONAL)
    clock.advance(days=2)
    terminal = Chat(app, "user-2")
    terminal.send("火星上怎么开公司分店")  # nothing answers
    editors = _editors(app, kdir)
    page = editors.log()
    assert page.total == 2
    newest, older = page.lines
    assert newest.channel == "terminal" and older.channel == "wechat"
    for line in page.lines:
        shown = " ".join(
            [line.question, *line.tokens, *(t for h in line.hits for t in h.matched_terms)]
        )
        for secret in (*PERSONAL_BITS, wechat.user_key):
            assert secret not in shown
    assert "营业执照" in older.question and older.hits
    assert older.hits[0].matched_terms and older.action in ("answer", "suggest")
    assert editors.log(LogFilter(channel="wechat")).total == 1
    assert editors.log(LogFilter(outcome="none")).lines[0].channel == "terminal"
    today = editors.today()
    assert editors.log(LogFilter(day_from=today)).total == 1
    assert editors.log(LogFilter(day_to=today - timedelta(days=1))).total == 1
    assert editors.log(LogFilter(entry_id=older.hits[0].entry_id)).total == 1
    assert editors.log(LogFilter(per_page=1, page=2)).lines[0].id == older.id
    with pytest.raises(Exception, match="未知的结果"):
        LogFilter(outcome="bogus")


def test_entry_figures_on_a_known_history(app: App, kdir: Path) -> None:
    decision = app.kb.decide(ANNUAL)
    assert decision.action == "answer" and decision.top is not None
    entry = decision.top.entry.id
    yes, no = Chat(app, "u-yes"), Chat(app, "u-no")
    yes.send(ANNUAL)
    yes.tap("已解决")
    no.send(ANNUAL)
    no.tap("未解决")
    Chat(app, "u-quiet").send(ANNUAL)
    figures = {f.entry_id: f for f in _editors(app, kdir).entry_figures()}
    mine = figures[entry]
    assert (mine.shown, mine.answered, mine.solved, mine.unsolved) == (3, 3, 1, 1)
    worst = _editors(app, kdir).entry_figures()[0]
    assert worst.failure_rate >= mine.failure_rate


# -------------------------------------------------------------------------------- drafts


def _turn_id(app: App, text: str) -> int:
    with app.db.sessions() as session:
        return session.scalars(
            select(DialogueTurn.id).where(DialogueTurn.text == text).order_by(DialogueTurn.id)
        ).all()[-1]


def test_a_wording_draft_is_linted_and_offered_as_a_patch_when_not_writable(
    app: App, kdir: Path, tmp_path: Path
) -> None:
    editor = _person(app, "孙编辑", CommissionerRole.EDITOR)
    chat = Chat(app, "u-1")
    question = "我是张伟，公司想改一下经营的范围，13812345678"
    chat.send(question)
    entry = app.kb.decide(LICENCE).top.entry.id  # type: ignore[union-attr]
    editors = _editors(app, kdir)
    draft_id = editors.draft_wording(editor, entry, turn_id=_turn_id(app, question), by="孙编辑")
    draft = editors.draft(draft_id)
    assert "张伟" not in draft.entry["question"] and "13812345678" not in draft.entry["question"]
    before = {p.name: p.read_bytes() for p in kdir.iterdir()}
    preview = editors.review(editor, draft_id, by="孙编辑")
    assert preview.ok and preview.patch.startswith("--- a/")
    with pytest.raises(NotWritable):
        editors.write(editor, draft_id, by="孙编辑")
    assert {p.name: p.read_bytes() for p in kdir.iterdir()} == before
    # the patch applies and gives exactly the previewed text
    work = tmp_path / "apply"
    shutil.copytree(kdir, work)
    patch = preview.patch.replace(f"a/{preview.relative}", f"a/{preview.path.name}").replace(
        f"b/{preview.relative}", f"b/{preview.path.name}"
    )
    subprocess.run(
        ["patch", "-p1", "-d", str(work)], input=patch.encode(), check=True, capture_output=True
    )
    assert (work / preview.path.name).read_text(encoding="utf-8") == preview.new_text


def test_a_new_entry_is_written_when_writable_and_the_yaml_loads_and_lints(
    app: App, kdir: Path
) -> None:
    import knowledge

    editor = _person(app, "孙编辑", CommissionerRole.EDITOR)
    Chat(app, "u-1").send("保税仓库的货物能不能拿去展会展示")
    editors = _editors(app, kdir, writable=True)
    draft_id = editors.draft_entry(
        editor, turn_id=_turn_id(app, "保税仓库的货物能不能拿去展会展示"), by="孙编辑"
    )
    empty = editors.preview(draft_id)
    assert not empty.ok and any("答案为空" in i.message for i in empty.errors)
    with pytest.raises(DraftError, match="不能通过审核"):
        editors.review(editor, draft_id, by="孙编辑")
    editors.update(
        editor,
        draft_id,
        {
            "id": "editor-bonded-exhibition",
            "title": "保税货物出区展示",
            "questions": "保税仓库的货物能不能拿去展会展示\n保税货物可以出区参展吗",
            "answer": "保税货物出区展示应向海关办理相关手续，具体以海关规定为准。",
            "department": "商务局",
            "keywords": "保税展示、出区展示",
            "tags": "待审核",
            "source_document": "企业服务常见问题（编辑起草，待审核）",
            "source_section": "",
            "source_url": "",
            "target_file": "editors.yaml",
        },
        by="孙编辑",
    )
    with pytest.raises(DraftError, match="需先通过审核"):
        editors.write(editor, draft_id, by="孙编辑")
    editors.review(editor, draft_id, by="孙编辑")
    untouched = {p.name: p.read_bytes() for p in kdir.iterdir()}
    written = editors.write(editor, draft_id, by="孙编辑")
    assert written.path == kdir / "editors.yaml"
    assert {p.name: p.read_bytes() for p in kdir.iterdir() if p.name != "editors.yaml"} == untouched
    loaded = knowledge.load(kdir)
    entry = loaded.get("editor-bonded-exhibition")
    assert entry is not None and "保税货物可以出区参展吗" in entry.questions
    found = lint(kdir, departments=app.router.departments.alias_map(), today=editors.today())
    mine = [i for i in found if i.path.endswith("editors.yaml") or "[editor-" in i.message]
    assert [i for i in mine if i.severity is Severity.ERROR] == []
    assert editors.draft(draft_id).status is KnowledgeDraftStatus.WRITTEN
    with pytest.raises(DraftError, match="已写入"):
        editors.update(editor, draft_id, {"title": "x"}, by="孙编辑")
    # a second draft appends to the same file and keeps the first entry byte for byte
    second = editors.draft_entry(editor, question="保税展示需要担保吗", by="孙编辑")
    editors.update(
        editor,
        second,
        {"id": "editor-bonded-guarantee", "answer": "按海关规定办理。", "department": "商务局"},
        by="孙编辑",
    )
    editors.review(editor, second, by="孙编辑")
    first_text = (kdir / "editors.yaml").read_text(encoding="utf-8")
    editors.write(editor, second, by="孙编辑")
    assert (kdir / "editors.yaml").read_text(encoding="utf-8").startswith(first_text)
    assert knowledge.load(kdir).get("editor-bonded-guarantee") is not None


def test_a_wording_written_into_an_existing_file_keeps_other_entries(app: App, kdir: Path) -> None:
    import knowledge

    editor = _person(app, "孙编辑", CommissionerRole.EDITOR)
    entry = app.kb.decide(LICENCE).top.entry  # type: ignore[union-attr]
    editors = _editors(app, kdir, writable=True)
    draft_id = editors.draft_wording(editor, entry.id, question="执照上的经营项目想改", by="孙编辑")
    editors.review(editor, draft_id, by="孙编辑")
    preview = editors.write(editor, draft_id, by="孙编辑")
    old, new = preview.old_text or "", preview.new_text
    assert len(new.splitlines()) == len(old.splitlines()) + 1
    assert [line for line in new.splitlines() if line not in old.splitlines()] == [
        "    - 执照上的经营项目想改"
    ]
    assert "执照上的经营项目想改" in knowledge.load(kdir).get(entry.id).questions  # type: ignore[union-attr]
    # a wording the entry or another entry already has is refused
    again = editors.draft_wording(editor, entry.id, question=entry.questions[0], by="孙编辑")
    assert any("已有问法" in i.message for i in editors.preview(again).errors)
    elsewhere = editors.draft_wording(editor, entry.id, question=ANNUAL, by="孙编辑")
    assert any("重复" in i.message for i in editors.preview(elsewhere).errors)
    with pytest.raises(DraftError, match="不能通过审核"):
        editors.review(editor, elsewhere, by="孙编辑")


def test_a_case_from_a_resolved_ticket_has_no_personal_data(
    app: App, kdir: Path, make_ticket: object
) -> None:
    editor = _person(app, "孙编辑", CommissionerRole.EDITOR)
    handler = _person(app, "周建国", CommissionerRole.COMMISSIONER, "市场监管局")
    register_enterprise(app, name="天津示例科技有限公司")
    view = app.tickets.create(
        f"联系人张伟，电话13812345678，信用代码{VALID_USCC}，想增加进出口经营范围",
        title="天津示例科技有限公司营业执照经营范围变更",
        department="市场监管局",
        rule="topic",
        reason="t",
        actor="张伟",
        enterprise_uscc=VALID_USCC,
    )
    for action, kwargs in (
        ("accept", {}),
        ("start", {}),
        (
            "resolve",
            {
                "result": "周建国已联系张伟（13812345678），指导天津示例科技"
                "通过政务服务网提交经营范围变更申请，当日办结。"
            },
        ),
    ):
        getattr(app.tickets, action)(view.number, actor=handler.name, **kwargs)
    editors = _editors(app, kdir)
    listed = editors.resolved_tickets()
    assert [t.number for t in listed] == [view.number]
    assert "张伟" not in listed[0].result and "13812345678" not in listed[0].result
    draft_id = editors.draft_case(editor, view.number, by="孙编辑")
    draft = editors.draft(draft_id)
    text = entry_yaml(draft.entry)
    for secret in (*PERSONAL_BITS, "周建国", "示例科技"):
        assert secret not in text, secret
    assert "经营范围变更" in draft.entry["answer"] and "服务案例" in draft.entry["tags"]
    assert draft.entry["department"] == "市场监管局"
    preview = editors.preview(draft_id)
    assert preview.ok, preview.errors
    assert editors.resolved_tickets()[0].draft_id == draft_id
    open_one = app.tickets.create(
        "未办结", department="市场监管局", rule="topic", reason="t", actor="测试"
    )
    with pytest.raises(DraftError, match="尚未办结"):
        editors.draft_case(editor, open_one.number, by="孙编辑")


def test_a_gap_group_becomes_a_new_entry_draft(app: App, kdir: Path) -> None:
    editor = _person(app, "孙编辑", CommissionerRole.EDITOR)
    for i, text in enumerate(("潜水艇驾照怎么考", "潜水艇驾照考试")):
        Chat(app, f"u-{i}").send(text)
    editors = _editors(app, kdir)
    groups = editors.gaps()
    assert groups and groups[0][0].count >= 2
    draft_id = editors.draft_entry(editor, gap=groups[0][0].terms, by="孙编辑")
    assert len(editors.draft(draft_id).entry["questions"]) >= 2
    with pytest.raises(DraftError, match="没有找到"):
        editors.draft_entry(editor, gap=("不存在的词",), by="孙编辑")


# ------------------------------------------------------------------------------ hit test


def test_hit_test_and_batch(app: App) -> None:
    one = hit_test(app.kb, LICENCE)
    assert one.tokens and one.hits and one.hits[0].matched_terms and one.reason
    expected = one.hits[0].entry_id
    csv_text = (
        f"问题,预期条目\n{LICENCE},{expected}\n火星上怎么开公司分店,none\n"
        f"{LICENCE},nothing-such\n,\n"
    )
    rows = read_batch("cases.csv", csv_text.encode("utf-8"))
    assert [r[0] for r in rows] == [2, 3, 4]
    report = batch_hit_test(app.kb, rows)
    verdicts = [r.verdict for r in report.rows]
    assert verdicts[1] == "pass" and verdicts[2] == "fail"
    assert verdicts[0] in ("pass", "suggested")
    assert report.rows[2].error and "nothing-such" in report.rows[2].error
    assert "共 3 个问题" in report.summary()

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["question", "expected"])
    sheet.append([LICENCE, expected])
    data = io.BytesIO()
    book.save(data)
    assert read_batch("list.xlsx", data.getvalue()) == [(2, LICENCE, expected)]
    with pytest.raises(Exception, match="只支持 CSV 或 XLSX"):
        read_batch("list.pdf", b"x")
    with pytest.raises(Exception, match="没有问题"):
        read_batch("empty.csv", "问题,预期条目\n".encode())


def test_outcome_labels_cover_the_question_outcomes() -> None:
    from handoff.editors import OUTCOME_LABELS

    for outcome in ("solved", "unsolved", "ticket", "none"):
        assert TurnOutcome(outcome).value in OUTCOME_LABELS
