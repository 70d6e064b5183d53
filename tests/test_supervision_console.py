# ruff: noqa: F811 - the console fixtures are imported from tests.test_console_ticket
"""政务办's console pages for 督办, 回访 and the 联席会议, over real HTTP and in Chromium.

Screenshots ``docs/console/supervision*.png`` are written when ``YXBY_UPDATE_SCREENSHOTS``
is set.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from docx import Document

from bot.app import App
from handoff.models import ClockKind, CommissionerRole, TicketState
from handoff.tickets import TicketView
from tests.conftest import MovableClock
from tests.servers import LiveServer
from tests.test_console_auth import PASSWORD, SCREENSHOTS
from tests.test_console_ticket import Desk, audited, console, desk, live  # noqa: F401

R = CommissionerRole
S = TicketState
BASE = "/console/supervision"


def ticket(app: App, text: str = "办理营业执照变更需要哪些材料？", **kw: Any) -> TicketView:
    return app.tickets.create(
        text,
        department=kw.pop("department", "市场监管局"),
        rule="topic",
        reason="诉求涉及营业执照",
        actor="测试员",
        **kw,
    )


def in_progress(app: App, text: str) -> TicketView:
    view = ticket(app, text)
    app.tickets.accept(view.number, actor="张敏")
    return app.tickets.start(view.number, actor="张敏")


def post(who: Desk, path: str, **fields: str) -> httpx.Response:
    return who.http.post(path, data={"csrf": who.csrf, **fields})


def actions(app: App, number: str) -> list[str]:
    return audited(app, number)


def test_urge_suggestions_confirmed_in_one_click_reach_the_department(
    console: App, desk: Callable[..., Desk], clock: MovableClock
) -> None:
    view = ticket(console)
    clock.advance(days=10)  # contact due 11-25; 6 working days late on 12-03
    zhang = desk("张敏", "市场监管局")
    head = desk("王局", "市场监管局", role=R.HEAD)
    office = desk("李华", "政务办", role=R.OVERSIGHT)
    assert console.tickets.tick().urges_suggested == 1
    zhang.chat.pushes(), head.chat.pushes()  # the tick's overdue notices

    assert zhang.http.get(BASE).status_code == 403
    page = office.http.get(BASE)
    assert page.status_code == 200 and "红色督办" in page.text and view.number in page.text
    queue = zhang.http.get("/console/").text
    assert "红色督办 · 超期 6 个工作日" in queue

    (sid,) = [s.id for s in console_supervision(console).suggestions()]
    assert post(zhang, f"{BASE}/urges/{sid}").status_code == 403
    done = post(office, f"{BASE}/urges/{sid}")
    assert done.status_code == 303 and done.headers["location"] == f"{BASE}?done={view.number}"
    after = office.http.get(done.headers["location"]).text
    assert f"已督办 {view.number}" in after and "没有待确认的督办建议" in after
    event = console.tickets.get(view.number).events[-1]
    assert (event.kind, event.actor, event.data["level"]) == ("urge", "李华", "red")
    assert actions(console, view.number)[-1] == "supervision_urge"
    for person in (zhang, head):
        (push,) = person.chat.pushes()
        assert push.text.startswith(f"【红色督办】{view.number}")
    again = post(office, f"{BASE}/urges/{sid}")
    assert again.status_code == 400 and "已由李华" in again.text


def console_supervision(app: App) -> Any:
    from bot.console.supervision import supervision_of

    return supervision_of(app)


def test_the_callback_list_and_form(console: App, desk: Callable[..., Desk]) -> None:
    office = desk("李华", "政务办", role=R.OVERSIGHT)
    view = ticket(console)
    console.tickets.accept(view.number, actor="张敏")
    console.tickets.resolve(view.number, result="已答复", actor="张敏", start=True)
    console.tickets.send_feedback(view.number, actor="张敏")
    console.tickets.record_survey(view.number, result="不满意", actor="企业")
    page = office.http.get(f"{BASE}/callbacks")
    assert page.status_code == 200 and view.number in page.text and "不满意" in page.text
    bad = post(office, f"{BASE}/callbacks/{view.number}", reached="1", reply="满意")
    assert bad.status_code == 400 and "须记录对答复和对办理结果的满意度" in bad.text
    ok = post(office, f"{BASE}/callbacks/{view.number}", reached="1", reply="基本满意",
              result="不满意", note="希望再次核查")  # fmt: skip
    assert ok.status_code == 303
    shown = office.http.get(ok.headers["location"]).text
    assert f"已记录 {view.number} 的回访" in shown and "该期间没有需要回访的诉求" in shown
    event = console.tickets.get(view.number).events[-1]
    assert event.kind == "callback" and event.data["result_satisfaction"] == "不满意"
    assert "不是数字" in office.http.get(f"{BASE}/callbacks?percent=abc").text


def test_the_meeting_agenda_opinions_decision_and_minutes(
    console: App, desk: Callable[..., Desk], clock: MovableClock
) -> None:
    zhang = desk("张敏", "市场监管局")
    other = desk("赵六", "科技局")
    office = desk("李华", "政务办", role=R.OVERSIGHT)
    view = in_progress(console, "园区道路改造影响企业出入")
    console.tickets.escalate(view.number, actor="张敏", reason="涉及规建局与城环局")
    page = office.http.get(f"{BASE}/meeting").text
    assert "等待召集会议的提请事项（1）" in page and "涉及规建局与城环局" in page
    assert view.number not in other.http.get(f"{BASE}/meeting").text  # not involved
    held_on = (clock.now.date() + timedelta(days=3)).isoformat()
    made = post(office, f"{BASE}/meeting", held_on=held_on, doc_number="〔2026〕4号",
                attendance="政务办 李华、规建局 周九")  # fmt: skip
    assert made.status_code == 303
    shown = office.http.get(made.headers["location"]).text
    assert "已召集联席会议" in shown and "〔2026〕4号" in shown and view.number in shown
    mid = made.headers["location"].split("id=")[1].split("&")[0]

    said = post(zhang, f"{BASE}/meeting/items/{view.number}/opinion", opinion="建议规建局牵头")
    assert said.status_code == 303
    refused = post(other, f"{BASE}/meeting/items/{view.number}/opinion", opinion="x")
    assert refused.status_code == 400 and "找不到工单" in refused.text  # outside their scope
    assert post(zhang, f"{BASE}/meeting/items/{view.number}/decide").status_code == 400
    bad = post(office, f"{BASE}/meeting/items/{view.number}/decide", meeting=mid,
               lead_department="规建局", deadline="明天")  # fmt: skip
    assert bad.status_code == 400 and "不是有效日期" in bad.text
    deadline = date(2026, 12, 31).isoformat()
    decided = post(office, f"{BASE}/meeting/items/{view.number}/decide", meeting=mid,
                   lead_department="规建局", helpers="城环局", deadline=deadline,
                   decision="规建局牵头，年底前完成")  # fmt: skip
    assert decided.status_code == 303
    after = office.http.get(decided.headers["location"]).text
    assert "会议决定已记录" in after and "规建局牵头，年底前完成" in after
    current = console.tickets.get(view.number)
    clock_row = current.clock(ClockKind.ESCALATION)
    assert clock_row is not None and clock_row.department == "规建局"
    assert [a for a in actions(console, view.number) if a.startswith("supervision")] == [
        "supervision_opinion",
        "supervision_decide",
    ]
    docx = office.http.get(f"{BASE}/meeting/{mid}/minutes.docx")
    assert docx.status_code == 200 and "attachment" in docx.headers["content-disposition"]
    texts = [p.text for p in Document(io.BytesIO(docx.content)).paragraphs]
    assert "牵头部门：规建局" in texts and "协办部门：城环局" in texts
    assert zhang.http.get(f"{BASE}/meeting/{mid}/minutes.docx").status_code == 403


# ------------------------------------------------------------------------------ browser


def shoot(page: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    if os.environ.get("YXBY_UPDATE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / name)


def test_browser_confirms_an_urge_and_records_a_decision(
    browser: Any,
    live: LiveServer,
    console: App,
    desk: Callable[..., Desk],
    clock: MovableClock,
    tmp_path: Path,
) -> None:
    desk("张敏", "市场监管局")
    desk("李华", "政务办", role=R.OVERSIGHT)
    late = ticket(console, "保税仓库消防验收迟迟未安排")
    ticket(console, "跨境电商企业出口退税咨询", department="商务局")
    clock.advance(days=3)
    ticket(console, "园区路灯损坏")
    hard = in_progress(console, "保税仓库扩建用地指标需多部门协调")
    console.tickets.add_helpers(hard.number, departments=["规建局"], actor="张敏")
    console.tickets.escalate(hard.number, actor="张敏", reason="用地指标涉及规建局，需会议明确牵头")
    opinion = "建议由规建局牵头，本局配合办理证照"
    console.tickets.record_opinion(
        hard.number, department="市场监管局", opinion=opinion, actor="张敏"
    )
    unhappy = in_progress(console, "进口设备免税手续办理缓慢")
    console.tickets.resolve(unhappy.number, result="已告知办理流程", actor="张敏")
    console.tickets.send_feedback(unhappy.number, actor="张敏")
    console.tickets.record_survey(unhappy.number, result="不满意", actor="企业")
    clock.advance(days=7)
    console.tickets.tick()
    console_supervision(console).schedule(
        clock.now.date() + timedelta(days=2), doc_number="〔2026〕4号",
        attendance=["政务办 李华", "市场监管局 张敏", "规建局 周九"],
    )  # fmt: skip

    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")
    try:
        page = context.new_page()
        page.goto(f"{live.url}/console/login?next={BASE}")
        page.get_by_label("姓名").fill("李华")
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(f"**{BASE}")
        assert page.get_by_role("heading", name="督办建议").is_visible()
        rows = page.locator("table.sup-table tbody tr")
        assert rows.count() == 3
        first = rows.first
        assert "红色督办" in first.text_content() and late.number in first.text_content()
        shoot(page, tmp_path, "supervision.png")
        first.get_by_role("button", name="确认督办").click()
        page.wait_for_url(f"**?done={late.number}")
        assert f"已督办 {late.number}" in page.get_by_role("status").text_content()
        assert page.locator("table.sup-table tbody tr").count() == 2
        assert console.tickets.get(late.number).events[-1].data["level"] == "red"
        page.goto(f"{live.url}/console/")  # the queue shows each overdue ticket's level
        row = page.locator("tr", has_text=late.number)
        assert "红色督办 · 超期 6 个工作日" in row.text_content()
        shoot(page, tmp_path, "supervision-queue.png")
        page.goto(f"{live.url}{BASE}/callbacks?from=2026-11-01")
        card = page.locator(f"#cb-{unhappy.number}")
        assert "不满意" in card.text_content()
        card.get_by_label("对答复").select_option("基本满意")
        card.get_by_label("对办理结果").select_option("不满意")
        card.get_by_label("回访记录").fill("企业表示问题仍未解决，希望再次核查")
        shoot(page, tmp_path, "supervision-callbacks.png")
        card.get_by_role("button", name="记录回访").click()
        page.wait_for_url(f"**done={unhappy.number}*")
        assert f"已记录 {unhappy.number} 的回访" in page.get_by_role("status").text_content()
        page.goto(f"{live.url}{BASE}")

        page.get_by_role("link", name="联席会议", exact=True).first.click()
        page.wait_for_url(f"**{BASE}/meeting")
        item = page.locator(f"#item-{hard.number}")
        assert "建议由规建局牵头" in item.text_content()
        assert "尚未提交意见" in item.text_content()  # 规建局 has not answered
        item.get_by_label("牵头部门").select_option("规建局")
        item.get_by_label("协办部门").fill("市场监管局")
        item.get_by_label("完成时限").fill((clock.now.date() + timedelta(days=30)).isoformat())
        item.get_by_label("会议决定").fill("由规建局牵头调整用地指标，市场监管局同步办理证照变更")
        shoot(page, tmp_path, "supervision-meeting.png")
        item.get_by_role("button", name="记录决定").click()
        page.wait_for_url(f"**#item-{hard.number}")
        assert "会议决定已记录" in page.get_by_role("status").text_content()
        decided = page.locator(f"#item-{hard.number}")
        assert "已决定" in decided.text_content() and "牵头部门：规建局" in decided.text_content()
        assert console.tickets.get(hard.number).clock(ClockKind.ESCALATION) is not None
        shoot(page, tmp_path, "supervision-decided.png")
        with page.expect_download() as info:
            page.get_by_role("link", name="下载会议纪要（Word）").click()
        target = tmp_path / "minutes.docx"
        info.value.save_as(str(target))
        assert "牵头部门：规建局" in [p.text for p in Document(str(target)).paragraphs]
    finally:
        context.close()
