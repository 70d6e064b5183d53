"""The editors' pages over real HTTP and in Chromium: only 编辑 and 管理员 get in, the log is
masked, the batch hit test takes an upload, a draft made from a log line is reviewed and then
downloaded as a patch (not writable) or written into the knowledge directory (writable)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.console.editors import editors_of
from handoff.accounts import SignedIn
from handoff.editors import mask
from handoff.models import CommissionerRole, KnowledgeDraftStatus
from tests import test_console_intake as intake_tests
from tests.chatting import Chat
from tests.servers import LiveServer
from tests.test_console_intake import PASSWORD, http_for, person, save_screenshot
from yxby import paths

console = intake_tests.console
live = intake_tests.live
page = intake_tests.page
QUESTION = "我是张伟，电话13812345678，保税仓库的货物能不能拿去展会展示"


@pytest.fixture
def kdir(tmp_path: Path) -> Path:
    target = tmp_path / "entries"
    shutil.copytree(paths.entries_dir(), target)
    return target


@pytest.fixture
def editor(console: App) -> SignedIn:
    mask("张伟")  # load the name tagger before the server's first page (slow on a busy host)
    return person(console, "孙丽", "政务办", CommissionerRole.EDITOR)


def _asked(app: App, *questions: str) -> None:
    for i, text in enumerate(questions):
        Chat(app, f"oOpenId{i:04d}abcdef", channel="wechat").send(text)


def _use(app: App, kdir: Path, *, writable: bool) -> None:
    app.__dict__["editors"] = replace(editors_of(app), knowledge_dir=kdir, writable=writable)


def test_only_editors_and_admins_get_in(console: App, live: LiveServer, editor: SignedIn) -> None:
    clerk = person(console, "张敏", "市场监管局")
    admin = person(console, "钱进", "政务办", CommissionerRole.ADMIN)
    with http_for(live, clerk) as http:
        assert http.get("/console/editors/log").status_code == 403
        assert "知识库编辑" not in http.get("/console/kb").text
    for who in (editor, admin):
        with http_for(live, who) as http:
            response = http.get("/console/editors/log")
            assert response.status_code == 200
            assert 'href="/console/editors/log"' in response.text
    with http_for(live) as anonymous:
        assert anonymous.get("/console/editors/log").status_code == 303


def test_the_log_page_is_masked_and_pages_have_no_inline_script(
    console: App, live: LiveServer, editor: SignedIn, kdir: Path
) -> None:
    _use(console, kdir, writable=False)
    _asked(console, QUESTION)
    with http_for(live, editor) as http:
        for path in ("log", "entries", "gaps", "tickets", "drafts", "test?q=企业年报怎么报"):
            response = http.get(f"/console/editors/{path}")
            assert response.status_code == 200, path
            assert "<script>" not in response.text and "style=" not in response.text
        text = http.get("/console/editors/log").text
        assert "保税仓库的货物" in text
        for secret in ("张伟", "13812345678", "oOpenId0000abcdef"):
            assert secret not in text
        assert "〔姓名〕" in text and "〔电话〕" in text
        assert "YXBY_KNOWLEDGE_WRITABLE" in text
        bad = http.get("/console/editors/log", params={"from": "昨天"})
        assert "日期应写作" in bad.text


def test_batch_upload_needs_the_form_token_and_reports_each_row(
    console: App, live: LiveServer, editor: SignedIn
) -> None:
    answer = console.kb.decide("企业年报怎么报").top
    assert answer is not None
    body = f"问题,预期条目\n企业年报怎么报,{answer.entry.id}\n潜水艇驾照怎么考,none\n"
    files = {"file": ("list.csv", body.encode("utf-8"), "text/csv")}
    with http_for(live, editor) as http:
        refused = http.post("/console/editors/test/batch", files=files)
        assert refused.status_code == 403
        done = http.post(
            "/console/editors/test/batch", files=files, data={"csrf": editor.staff.csrf}
        )
        assert done.status_code == 200, done.text[:500]
        assert "共 2 个问题：通过 2" in done.text
        wrong = http.post(
            "/console/editors/test/batch",
            files={"file": ("list.pdf", b"x", "application/pdf")},
            data={"csrf": editor.staff.csrf},
        )
        assert wrong.status_code == 400 and "只支持 CSV 或 XLSX" in wrong.text


def test_a_draft_patch_downloads_and_writing_is_refused_when_not_writable(
    console: App, live: LiveServer, editor: SignedIn, kdir: Path
) -> None:
    _use(console, kdir, writable=False)
    entry = console.kb.decide("企业年报怎么报").top.entry.id  # type: ignore[union-attr]
    with http_for(live, editor) as http:
        made = http.post(
            "/console/editors/drafts",
            data={"csrf": editor.staff.csrf, "kind": "wording", "entry_id": entry,
                  "question": "年报每年几月份报"},
        )  # fmt: skip
        assert made.status_code == 303
        where = made.headers["location"]
        form = {"csrf": editor.staff.csrf, "action": "review", "target_entry_id": entry,
                "question": "年报每年几月份报"}  # fmt: skip
        reviewed = http.post(where, data=form)
        assert reviewed.status_code == 303
        shown = http.get(reviewed.headers["location"])
        assert "已通过审核" in shown.text and "写入知识库</button>" not in shown.text
        patch = http.get(f"{where}/patch")
        assert patch.status_code == 200 and "attachment" in patch.headers["content-disposition"]
        assert "+    - 年报每年几月份报" in patch.text
        refused = http.post(where, data={"csrf": editor.staff.csrf, "action": "write"})
        assert refused.status_code == 400 and "YXBY_KNOWLEDGE_WRITABLE" in refused.text


def test_browser_log_to_draft_to_written_yaml(
    page: Any, live: LiveServer, console: App, editor: SignedIn, kdir: Path, tmp_path: Path
) -> None:
    import knowledge

    _use(console, kdir, writable=True)
    _asked(console, QUESTION, "企业年报怎么报", "潜水艇驾照怎么考")
    page.goto(f"{live.url}/console/editors/log")
    page.get_by_label("姓名").fill("孙丽")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{live.url}/console/editors/log")
    line = page.locator("li.log-line", has_text="保税仓库的货物")
    assert "张伟" not in line.inner_text() and "13812345678" not in line.inner_text()
    line.scroll_into_view_if_needed()
    wording = line.get_by_label("补充问法的条目编号")
    assert wording.input_value()  # the top hit's id, offered with the others as a list
    assert line.get_by_role("button", name="补充为该条目的问法").is_visible()
    save_screenshot(page, tmp_path, "editors-log.png")
    line.get_by_role("button", name="起草新条目").click()
    page.wait_for_url(f"{live.url}/console/editors/drafts/*")
    assert "〔姓名〕" in page.get_by_label("问法（每行一个）").input_value()
    page.get_by_label("条目编号").fill("editor-bonded-exhibition")
    page.get_by_label("标题").fill("保税货物出区展示")
    page.get_by_label("问法（每行一个）").fill(
        "保税仓库的货物能不能拿去展会展示\n保税货物可以出区参展吗"
    )
    page.get_by_label("承办部门").fill("商务局")
    page.get_by_role("button", name="检查并审核通过").click()
    assert "答案为空" in page.get_by_role("alert").first.inner_text()
    page.get_by_label("答案").fill("保税货物出区展示应向海关办理相关手续，具体以海关规定为准。")
    page.get_by_role("button", name="检查并审核通过").click()
    page.wait_for_url("**?done=reviewed")
    assert page.get_by_role("button", name="写入知识库").is_enabled()
    assert "+  title: 保税货物出区展示" in page.locator("pre.patch").inner_text()
    save_screenshot(page, tmp_path, "editors-draft.png")
    with page.expect_download() as download:
        page.get_by_role("link", name="下载 YAML 补丁").click()
    assert "editor-bonded-exhibition" in Path(download.value.path()).read_text(encoding="utf-8")
    page.get_by_role("button", name="写入知识库").click()
    page.wait_for_url("**?done=written")
    assert "已写入知识库" in page.get_by_role("status").inner_text()
    written = knowledge.load(kdir).get("editor-bonded-exhibition")
    assert written is not None and "保税货物可以出区参展吗" in written.questions
    draft_id = int(page.url.split("/drafts/")[1].split("?")[0])
    assert editors_of(console).draft(draft_id).status is KnowledgeDraftStatus.WRITTEN
    page.get_by_role("link", name="命中测试").click()
    page.get_by_label("要测试的问题", exact=True).fill("企业年报怎么报")
    page.get_by_role("button", name="测试", exact=True).click()
    page.wait_for_url("**/console/editors/test?q=*")
    assert "直接答复" in page.locator("#result-title + p + p").inner_text()
    save_screenshot(page, tmp_path, "editors-test.png")
    page.get_by_role("link", name="条目表现").click()
    page.wait_for_url(f"{live.url}/console/editors/entries")
    save_screenshot(page, tmp_path, "editors-entries.png")


@pytest.fixture
def reloading(
    db_url: str, clock: Any, kdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[App]:
    """The app serving a live knowledge base over *kdir* (writable), with a cheap hash."""
    from bot.app import AppSettings, build_app
    from handoff.accounts import Accounts

    monkeypatch.setenv("YXBY_DATA_DIR", str(tmp_path / "data"))
    app = build_app(AppSettings.from_env(database_url=db_url, knowledge_dir=kdir), clock)
    app.accounts = Accounts(app.db.sessions, app.clock, intake_tests.CHEAP)
    _use(app, kdir, writable=True)
    try:
        yield app
    finally:
        app.close()


def test_a_written_draft_answers_after_the_reload_and_a_broken_file_shows_in_the_banner(
    reloading: App, kdir: Path
) -> None:
    from bot.server import ServerOptions, create_asgi

    signed = person(reloading, "孙丽", "政务办", CommissionerRole.EDITOR)
    asgi = create_asgi(reloading, [], ServerOptions(run_worker=False, run_tick=False))
    with LiveServer(asgi) as server, http_for(server, signed) as http:
        http.timeout = 60
        csrf = signed.staff.csrf
        new = {"csrf": csrf, "kind": "entry", "question": "保税货物可以出区参展吗"}
        made = http.post("/console/editors/drafts", data=new)
        where = made.headers["location"]
        fields = {"csrf": csrf, "id": "editor-bonded-exhibition", "title": "保税货物出区展示",
                  "questions": "保税货物可以出区参展吗\n保税仓库货物能拿去展会展示吗",
                  "answer": "保税货物出区展示应向海关办理手续，具体以海关规定为准。",
                  "department": "商务局", "target_file": "editors.yaml"}  # fmt: skip
        assert http.post(where, data={**fields, "action": "review"}).status_code == 303
        assert http.post(where, data={"csrf": csrf, "action": "write"}).status_code == 303
        tested = http.get("/console/editors/test", params={"q": "保税货物可以出区参展吗"})
        assert "editor-bonded-exhibition" in tested.text
        assert reloading.kb.decide("保税货物可以出区参展吗").top.entry.id == (  # type: ignore[union-attr]
            "editor-bonded-exhibition"
        )
        assert "重新加载知识库" in tested.text and "知识库在用" in tested.text
        broken = kdir / "broken.yaml"
        broken.write_text("- id: [\n", encoding="utf-8")
        back = http.post(
            "/console/editors/reload", data={"csrf": csrf, "back": "/console/editors/log"}
        )
        assert back.status_code == 303
        shown = http.get("/console/editors/log").text
        assert "知识库最近一次加载失败" in shown and "broken.yaml" in shown
        assert reloading.kb.get("editor-bonded-exhibition") is not None  # still serving
        broken.unlink()
        http.post("/console/editors/reload", data={"csrf": csrf})
        assert "知识库最近一次加载失败" not in http.get("/console/editors/log").text
