"""`yxby supervise …`: urges, callbacks and the 联席会议 from the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from docx import Document

from bot.cli import main
from handoff.tickets import TicketService, TicketState, TicketView

S = TicketState


@pytest.fixture
def run(db_url: str) -> Callable[..., Result]:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env={"YXBY_DATABASE_URL": db_url})

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + result.stderr
    return result


def fails(result: Result, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    assert message in result.stderr and result.stderr.startswith("错误：")
    assert "Traceback" not in result.output + result.stderr


def test_urges_are_listed_and_confirmed(
    run: Callable[..., Result], make_ticket: Callable[..., TicketView], service: TicketService
) -> None:
    view = make_ticket()
    assert ok(run("supervise", "urges")).output.strip() == "没有待确认的督办建议。"
    ok(run("sla", "tick", "--now", "2026-12-01 09:00"))
    (found,) = json.loads(ok(run("supervise", "urges", "--json")).output)
    assert (found["number"], found["level"], found["days_late"]) == (view.number, "orange", 4)
    text = ok(run("supervise", "urges")).output
    assert f"[{found['id']}] 橙色督办  {view.number}" in text and "超期 4 个工作日" in text
    fails(run("supervise", "urges", "confirm", "999", "--actor", "李华"), 1, "没有编号为 999")
    out = ok(run("supervise", "urges", "confirm", str(found["id"]), "--actor", "李华")).output
    assert f"已督办 {view.number}（橙色督办）" in out
    event = service.get(view.number).events[-1]
    assert (event.kind, event.actor, event.data["level"]) == ("urge", "李华", "orange")
    out = ok(run("supervise", "urge", view.number, "--actor", "李华", "--level", "红")).output
    assert "红色督办" in out
    fails(run("supervise", "urge", view.number, "--actor", "李华", "--level", "紫"), 1, "督办等级")


def test_callbacks_list_and_record(
    run: Callable[..., Result], make_ticket: Callable[..., TicketView], service: TicketService
) -> None:
    unhappy = make_ticket("不满意的诉求", state=S.FEEDBACK_SENT)
    service.record_survey(unhappy.number, result="不满意", actor="企业")
    closed = make_ticket("已结案的诉求", state=S.CLOSED)
    args = ("supervise", "callbacks", "--from", "2026-11-23", "--to", "2026-11-23")
    listed = json.loads(ok(run(*args, "--percent", "100", "--json")).output)
    assert [(c["number"], c["why"]) for c in listed] == [
        (unhappy.number, "不满意"),
        (closed.number, "抽样"),
    ]
    assert f"{unhappy.number}  [不满意]" in ok(run(*args, "--percent", "0")).output
    fails(run("supervise", "callbacks", "--from", "明天", "--to", "2026-11-23"), 2, "不是有效日期")
    out = ok(run("supervise", "callback", unhappy.number, "--actor", "李华", "--not-reached"))
    assert "未接通" in out.output
    out = ok(run("supervise", "callback", unhappy.number, "--actor", "李华",
                 "--reply", "基本满意", "--result", "不满意", "--note", "进度慢"))  # fmt: skip
    assert "答复基本满意，办理结果不满意" in out.output
    fails(run("supervise", "callback", closed.number, "--actor", "李华"), 1, "须记录")
    remaining = json.loads(ok(run(*args, "--percent", "100", "--json")).output)
    assert [c["number"] for c in remaining] == [closed.number]


def test_the_meeting_from_agenda_to_minutes(
    run: Callable[..., Result],
    make_ticket: Callable[..., TicketView],
    service: TicketService,
    tmp_path: Path,
) -> None:
    view = make_ticket("园区道路改造影响企业出入", state=S.IN_PROGRESS)
    out = ok(run("supervise", "meeting", "propose", view.number, "--reason",
                 "涉及规建局与城环局", "--actor", "张敏"))  # fmt: skip
    assert "列入等待召集的联席会议议程" in out.output
    assert service.get(view.number).state is S.ESCALATED
    assert "等待召集会议的提请事项 1 项" in ok(run("supervise", "meeting", "agenda")).output
    held_on = (date.today() + timedelta(days=7)).isoformat()
    out = ok(run("supervise", "meeting", "schedule", "--date", held_on, "--doc-number",
                 "〔2026〕5号", "--attend", "政务办 李华", "--attend", "规建局 周九"))  # fmt: skip
    assert "议程 1 项" in out.output
    ok(run("supervise", "meeting", "opinion", view.number, "--department", "市场监管局",
           "--opinion", "建议规建局牵头", "--actor", "张敏"))  # fmt: skip
    fails(run("supervise", "meeting", "opinion", view.number, "--department", "科技局",
              "--opinion", "x", "--actor", "x"), 1, "不是工单")  # fmt: skip
    out = ok(run("supervise", "meeting", "decide", view.number, "--lead", "规建局",
                 "--helpers", "城环局、市场监管局", "--deadline", "2099-12-31",
                 "--decision", "规建局牵头限期完成", "--actor", "李华"))  # fmt: skip
    assert "由规建局牵头" in out.output and "2099-12-31 23:59" in out.output
    agenda = json.loads(ok(run("supervise", "meeting", "agenda", "--json")).output)
    (item,) = agenda["meeting"]["items"]
    assert item["lead_department"] == "规建局"
    assert item["decided_helpers"] == ["城环局", "市场监管局"]
    assert item["opinions"]["市场监管局"]["opinion"] == "建议规建局牵头"
    text = ok(run("supervise", "meeting", "agenda")).output
    assert "决定：牵头 规建局；协办 城环局、市场监管局" in text
    target = tmp_path / "纪要.docx"
    fails(run("supervise", "meeting", "minutes", "--output", str(tmp_path / "x.pdf")), 2, ".docx")
    ok(run("supervise", "meeting", "minutes", "--output", str(target)))
    texts = [p.text for p in Document(str(target)).paragraphs]
    assert "〔2026〕5号" in texts and "牵头部门：规建局" in texts
    assert "完成时限：2099年12月31日前" in texts
