"""名录库 pages over real HTTP: upload → dry run → apply, the sync log with rejected rows,
coverage tables, bulk assignment, who may do what; and upload → dry run → apply in Chromium
(screenshot docs/console/register.png)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from bot.app import App
from handoff.audit import AuditEvent
from handoff.models import CommissionerRole, Enterprise, RegisterSync
from tests import test_console_intake as intake_tests
from tests.servers import LiveServer
from tests.test_console_intake import PASSWORD, http_for, person, save_screenshot
from tests.test_register import FIRST, IND, SECOND, A, C, D, write_csv

console = intake_tests.console
live = intake_tests.live
page = intake_tests.page


def upload(http: httpx.Client, csrf: str, path: Path, **extra: str) -> httpx.Response:
    with path.open("rb") as handle:
        return http.post(
            "/console/register/upload",
            data={"csrf": csrf, **extra},
            files={"file": (path.name, handle, "text/csv")},
        )


def apply_form(html: str) -> dict[str, str]:
    form = html.split('action="/console/register/apply"', 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))


def synced(console: App) -> list[RegisterSync]:
    with console.db.sessions() as session:
        return list(session.scalars(select(RegisterSync).order_by(RegisterSync.id)))


def test_upload_dry_run_then_apply(live: LiveServer, console: App, tmp_path: Path) -> None:
    wang = person(console, "王政", "政务办", CommissionerRole.OVERSIGHT)
    with http_for(live, wang) as http:
        first = upload(http, wang.staff.csrf, write_csv(tmp_path / "2026-10.csv", FIRST))
        assert first.status_code == 200, first.text[:500]
        html = first.text
        assert "试运行结果" in html and "确认同步" in html
        assert "未知的行业「宇宙飞船殖民业」" in html and "未知行业公司" in html  # raw values
        assert "<script>" not in html and "style=" not in html
        with console.db.sessions() as session:
            assert session.scalars(select(Enterprise)).first() is None  # nothing written
        form = apply_form(html)
        assert form["full"] == "1" and form["file_name"] == "2026-10.csv"
        done = http.post("/console/register/apply", data=form)
        assert done.status_code == 303
        assert re.search(r"/console/register/syncs/\d+\?applied=1$", done.headers["location"])
        shown = http.get(done.headers["location"])
        assert "已同步" in shown.text and "拒绝的行（5）" in shown.text

        second = upload(http, wang.staff.csrf, write_csv(tmp_path / "2026-11.csv", SECOND))
        assert "楼宇/园区：天保大厦 → 临港创新园" in second.text
        http.post("/console/register/apply", data=apply_form(second.text))
        log = http.get("/console/register").text
        assert log.count("试运行</span>") == 2 and "2026-11.csv" in log
    assert [(s.dry_run, s.left) for s in synced(console)] == [
        (True, 0), (False, 0), (True, 2), (False, 2),
    ]  # fmt: skip
    with console.db.sessions() as session:
        c = session.scalars(select(Enterprise).where(Enterprise.uscc == C)).one()
        assert (c.status, c.zombie) == ("迁出", True)


def test_upload_errors_and_the_csrf_token(live: LiveServer, console: App, tmp_path: Path) -> None:
    wang = person(console, "王政", "政务办", CommissionerRole.OVERSIGHT)
    path = write_csv(tmp_path / "x.csv", FIRST)
    with http_for(live, wang) as http:
        assert upload(http, "wrong", path).status_code == 403
        bad = tmp_path / "x.pdf"
        bad.write_bytes(b"%PDF")
        refused = upload(http, wang.staff.csrf, bad)
        assert refused.status_code == 400 and "不支持的文件类型" in refused.text
        header = tmp_path / "h.csv"
        header.write_text("名称,地址\n甲,乙\n", encoding="utf-8")
        refused = upload(http, wang.staff.csrf, header)
        assert refused.status_code == 400 and "缺少必需的列" in refused.text
        forged = http.post(
            "/console/register/apply",
            data={"csrf": wang.staff.csrf, "token": "../../etc/passwd", "full": "1"},
        )
        assert forged.status_code == 400 and "重新上传" in forged.text
    assert synced(console) == []


def test_who_may_see_the_register(live: LiveServer, console: App, tmp_path: Path) -> None:
    zhang = person(console, "张敏", "市场监管局")
    head = person(console, "刘洋", "社发局", CommissionerRole.HEAD)
    with http_for(live, zhang) as http:
        assert http.get("/console/register").status_code == 403
        assert http.get("/console/register/coverage").status_code == 403
        assert "名录库" not in http.get("/console/").text
    with http_for(live, head) as http:
        assert http.get("/console/register").headers["location"] == "/console/register/coverage"
        path = write_csv(tmp_path / "x.csv", FIRST)
        assert upload(http, head.staff.csrf, path).status_code == 403


def test_the_lead_office_nav_holds_one_link_per_section(live: LiveServer, console: App) -> None:
    """政务办 reaches every page, but the bar keeps one link per section (their own tabs
    lead on), so it fits at 1366 px."""
    wang = person(console, "王政", "政务办", CommissionerRole.OVERSIGHT)
    with http_for(live, wang) as http:
        home = http.get("/console/").text
        nav = re.search(r'<nav class="console-nav"[^>]*>(.*?)</nav>', home, re.S)
        assert nav is not None
        links = re.findall(r">([^<>]+)</a>", nav.group(1))
        sections = ["工作台", "登记诉求", "知识库", "考核统计", "督办回访", "名录库", "通知推送"]
        assert links == sections
        register = http.get("/console/register").text
        assert 'href="/console/register/coverage"' in register and "包保覆盖" in register
        urges = http.get("/console/supervision").text
        assert 'href="/console/supervision/callbacks"' in urges
        assert 'href="/console/supervision/meeting"' in urges


def test_coverage_and_bulk_assignment(live: LiveServer, console: App, tmp_path: Path) -> None:
    from handoff.register import register_for

    register_for(console).sync(write_csv(tmp_path / "1.csv", FIRST))
    wang = person(console, "王政", "政务办", CommissionerRole.OVERSIGHT)
    li = person(console, "李娜", "社发局")
    with http_for(live, wang) as http:
        page_ = http.get("/console/register/coverage?by=grid").text
        assert "共 5 家：已包保 0，未包保 <strong>5</strong>" in page_
        assert "海港二网格" in page_
        gaps = http.get("/console/register/coverage", params={"by": "grid", "key": "海港二网格"})
        assert D in gaps.text and IND in gaps.text and A not in gaps.text
        done = http.post(
            "/console/register/assign",
            data={"csrf": wang.staff.csrf, "by": "grid", "key": "海港二网格",
                  "commissioner": str(li.staff.id)},
        )  # fmt: skip
        assert done.status_code == 303 and done.headers["location"].endswith("assigned=2")
        assert "已分配 2 家企业" in http.get(done.headers["location"]).text
        missing = http.post(
            "/console/register/assign",
            data={"csrf": wang.staff.csrf, "by": "grid", "key": "海港二网格", "commissioner": ""},
        )
        assert missing.status_code == 400 and "请选择要分配的包保专员" in missing.text
        # entities without a building: the 「（未登记）」 group (B is left in it)
        rest = http.post(
            "/console/register/assign",
            data={"csrf": wang.staff.csrf, "by": "building", "key": "（未登记）",
                  "commissioner": str(li.staff.id)},
        )  # fmt: skip
        assert rest.headers["location"].endswith("assigned=1")
    with console.db.sessions() as session:
        events = list(
            session.scalars(select(AuditEvent).where(AuditEvent.action == "register_assign"))
        )
        assert [(e.actor, e.detail["count"]) for e in events] == [("王政", 2), ("王政", 1)]
    # a 负责人 sees their department's row only
    head = person(console, "刘洋", "天保控股", CommissionerRole.HEAD)
    with http_for(live, head) as http:
        html = http.get("/console/register/coverage?by=grid").text
        assert "天保控股" in html and "海港二网格" not in html and C in html


def test_browser_upload_dry_run_apply(
    page: Any, live: LiveServer, console: App, tmp_path: Path
) -> None:
    from handoff.register import register_for

    register_for(console).sync(write_csv(tmp_path / "2026-10.csv", FIRST), by="王政")
    person(console, "王政", "政务办", CommissionerRole.OVERSIGHT)
    export = write_csv(tmp_path / "2026-11.csv", SECOND)
    page.goto(f"{live.url}/console/register")
    page.get_by_label("姓名").fill("王政")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{live.url}/console/register")
    page.get_by_label("导出文件").set_input_files(str(export))
    page.get_by_role("button", name="上传并试运行").click()
    page.wait_for_load_state()
    assert "试运行结果" in page.text_content("h1")
    counts = page.text_content("ul.counts")
    assert "1 新增" in counts and "1 变更" in counts and "2 迁出/注销" in counts
    assert "天保大厦 → 临港创新园" in page.text_content("table.register-changes")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    save_screenshot(page, tmp_path, "register.png")
    page.get_by_role("button", name="确认同步").click()
    page.wait_for_url(re.compile(r".*/console/register/syncs/\d+\?applied=1$"))
    assert "已同步" in page.text_content("main")
    page.goto(f"{live.url}/console/register/coverage?by=grid")
    assert "海港二网格" in page.text_content("table.coverage")
    save_screenshot(page, tmp_path, "register_coverage.png")


def test_the_enterprise_file_shows_the_register(
    live: LiveServer, console: App, tmp_path: Path
) -> None:
    from handoff.register import register_for

    register_for(console).sync(write_csv(tmp_path / "1.csv", FIRST))
    register_for(console).sync(write_csv(tmp_path / "2.csv", SECOND))
    wang = person(console, "王政", "政务办", CommissionerRole.OVERSIGHT)
    with http_for(live, wang) as http:
        html = http.get(f"/console/enterprises/{A}").text
        assert "<dt>楼宇/园区</dt><dd>临港创新园</dd>" in html
        assert "<dt>网格</dt><dd>空港一网格</dd>" in html
        assert "<dt>招商部门</dt><dd>投促局</dd>" in html
        assert "<dt>行业代码</dt><dd>汽车制造业（3611）</dd>" in html
        left = http.get(f"/console/enterprises/{C}").text
        assert "<dt>登记状态</dt><dd>迁出（2026-11-23 起）</dd>" in left
        assert "不在2026-11-23的名录库导出中，视为迁出" in left


def test_a_console_intake_is_routed_by_the_register(
    live: LiveServer, console: App, tmp_path: Path
) -> None:
    from handoff.register import register_for
    from tests.test_console_intake import intake_form

    register_for(console).sync(write_csv(tmp_path / "1.csv", FIRST))
    li = person(console, "李娜", "市场监管局")
    with http_for(live, li) as http:
        checked = http.post(
            "/console/intake",
            data=intake_form(li, enterprise=C, description="营业执照变更", step="route"),
        )
        assert checked.status_code == 200
        assert re.search(r'class="suggested-department"[^>]*>天保控股<', checked.text)
        reason = "该企业位于天保大厦，由天保控股提供楼宇、园区精细化服务（附件2第4项）"
        assert reason in checked.text
