"""The command line: `yxby db`, `enterprises`, `commissioners`, `tickets` and `sla tick`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from handoff.db import head_revision
from handoff.models import EnterpriseKind
from handoff.tickets import TicketView

DATA = Path(__file__).parent / "data" / "registry"


@pytest.fixture
def run(db_url: str) -> Callable[..., Result]:
    """Invoke ``yxby`` against the test database."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env={"YXBY_DATABASE_URL": db_url})

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + result.stderr
    return result


def fails(result: Result, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert result.stderr.startswith("错误：")
    assert "Traceback" not in result.output + result.stderr


# -------------------------------------------------------------------------------- db


def test_db_upgrade_and_current_from_any_directory(
    empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    env = {"YXBY_DATABASE_URL": empty_db_url}
    head = head_revision()
    assert (
        f"未初始化（程序需要 {head}" in ok(runner.invoke(main, ["db", "current"], env=env)).output
    )
    assert f"未初始化 → {head}" in ok(runner.invoke(main, ["db", "upgrade"], env=env)).output
    assert f"已是最新版本 {head}" in ok(runner.invoke(main, ["db", "upgrade"], env=env)).output
    assert f"{head}（最新）" in ok(runner.invoke(main, ["db", "current"], env=env)).output


def test_commands_refuse_an_unmigrated_database(empty_db_url: str) -> None:
    runner = CliRunner()
    env = {"YXBY_DATABASE_URL": empty_db_url}
    for args in (["tickets", "list"], ["sla", "tick"], ["enterprises", "show", "x"]):
        result = runner.invoke(main, args, env=env)
        fails(result, 1, "数据库尚未初始化或版本过旧，请先运行 yxby db upgrade")


# ---------------------------------------------------------------------------- tickets


def test_ticket_lifecycle(run: Callable[..., Result]) -> None:
    created = json.loads(
        ok(
            run(
                "tickets",
                "create",
                "企业开办后如何申领发票？",
                "--department",
                "市场局",
                "--actor",
                "张三",
                "--json",
            )
        ).output
    )
    number = created["number"]
    assert created["department"] == "市场监管局"
    assert created["route_rule"] == "manual"
    assert created["route_reason"] == "由张三在命令行指定"
    for args in (
        ["accept", number],
        ["start", number],
        ["resolve", number, "--result", "已电话指导"],
        ["feedback", number],
        ["survey", number, "--result", "满意", "--comment", "很及时"],
        ["close", number],
    ):
        assert number in ok(run("tickets", *args, "--actor", "张三")).output
    shown = json.loads(ok(run("tickets", "show", number, "--json")).output)
    assert shown["state"] == "closed"
    assert [e["kind"] for e in shown["events"]] == [
        "create",
        "accept",
        "start",
        "resolve",
        "send_feedback",
        "record_survey",
        "close",
    ]
    assert {c["kind"] for c in shown["clocks"]} == {"contact", "done", "feedback"}
    assert shown["surveys"][0]["comment"] == "很及时"
    text = ok(run("tickets", "show", number)).output
    assert f"工单 {number}  【已关闭】" in text
    assert "结果：已电话指导" in text
    assert "对接企业（市场监管局）" in text
    listed = json.loads(ok(run("tickets", "list", "--state", "closed", "--json")).output)
    assert [t["number"] for t in listed] == [number]
    assert "没有符合条件的工单" in ok(run("tickets", "list", "--state", "new")).output


def test_create_without_department_uses_the_router(
    run: Callable[..., Result], make_enterprise: Callable[..., Any]
) -> None:
    out = ok(run("tickets", "create", "营业执照经营范围怎么变更", "--actor", "机器人")).output
    assert "承办：市场监管局" in out
    firm = make_enterprise(kind=EnterpriseKind.INDIVIDUAL)
    data = json.loads(
        ok(
            run(
                "tickets",
                "create",
                "想咨询一下有什么扶持",
                "--enterprise",
                firm.uscc,
                "--actor",
                "机器人",
                "--json",
            )
        ).output
    )
    assert data["enterprise_uscc"] == firm.uscc
    assert data["route_rule"] != "manual"
    assert data["route_reason"]
    fails(
        run("tickets", "create", "x", "--enterprise", "911201160000000011", "--actor", "a"),
        1,
        "企业库中没有",
    )


def test_side_roads(run: Callable[..., Result], make_ticket: Callable[..., TicketView]) -> None:
    number = make_ticket().number
    ok(run("tickets", "accept", number, "--actor", "张三"))
    ok(run("tickets", "start", number, "--actor", "张三"))
    out = ok(run("tickets", "assist", number, "--departments", "工信局，商务局", "--actor", "张三"))
    assert "协办部门：工信局、商务局" in out.output
    ok(run("tickets", "ack", number, "--department", "商务局", "--actor", "周"))
    ok(
        run(
            "tickets",
            "escalate",
            number,
            "--lead",
            "发改局",
            "--deadline",
            "2099-12-31",
            "--actor",
            "政务办",
            "--reason",
            "多部门",
        )
    )
    shown = json.loads(ok(run("tickets", "show", number, "--json")).output)
    assert shown["state"] == "escalated"
    assert shown["escalation_lead_department"] == "发改局"
    assert shown["escalation_deadline"] == "2099-12-31T23:59:59+08:00"
    assert [h["acknowledged_by"] for h in shown["helpers"]] == [None, "周"]
    text = ok(run("tickets", "show", number)).output
    assert "协办：工信局、商务局" in text
    assert "牵头 发改局" in text

    other = make_ticket().number
    out = ok(
        run(
            "tickets",
            "transfer",
            other,
            "--to",
            "工信局",
            "--reason",
            "职责不符",
            "--actor",
            "张三",
        )
    )
    assert "已转派至工信局" in out.output
    assert "市场监管局 → 工信局" in ok(run("tickets", "show", other)).output


def test_reopen_via_cli(run: Callable[..., Result], make_ticket: Callable[..., TicketView]) -> None:
    from handoff.models import TicketState

    number = make_ticket(state=TicketState.FEEDBACK_SENT).number
    ok(run("tickets", "survey", number, "--result", "不满意", "--actor", "回访员"))
    data = json.loads(ok(run("tickets", "reopen", number, "--actor", "政务办", "--json")).output)
    assert (data["state"], data["reopen_count"]) == ("new", 1)


def test_errors_are_one_chinese_line(
    run: Callable[..., Result], make_ticket: Callable[..., TicketView]
) -> None:
    number = make_ticket().number
    fails(run("tickets", "show", "YX-20990101-0001"), 1, "找不到工单 YX-20990101-0001")
    fails(
        run("tickets", "resolve", number, "--result", "x", "--actor", "a"),
        1,
        "不能从「待签收」变为「已办结」",
    )
    fails(run("tickets", "accept", number), 2, "缺少 --actor")
    fails(run("tickets", "resolve", number, "--actor", "a"), 2, "缺少 --result")
    fails(run("tickets", "transfer", number, "--to", "工信局", "--actor", "a"), 2, "缺少 --reason")
    fails(run("tickets", "create", "x", "--department", "火星局", "--actor", "a"), 1, "未知部门")
    fails(run("tickets", "list", "--state", "lost"), 1, "未知的工单状态")
    fails(run("tickets", "list", "--now", "昨天"), 2, "无法识别的时间")
    ok(run("tickets", "accept", number, "--actor", "a"))
    ok(run("tickets", "start", number, "--actor", "a"))
    fails(
        run(
            "tickets", "escalate", number, "--lead", "发改局", "--deadline", "下周", "--actor", "a"
        ),
        2,
        "无法识别的时限",
    )
    ok(run("tickets", "resolve", number, "--result", "x", "--actor", "a"))
    ok(run("tickets", "feedback", number, "--actor", "a"))
    fails(run("tickets", "survey", number, "--result", "还行", "--actor", "a"), 1, "回访结果应为")


def test_list_by_chinese_state_label(
    run: Callable[..., Result], make_ticket: Callable[..., TicketView]
) -> None:
    from handoff.models import TicketState

    fresh = make_ticket().number
    accepted = make_ticket(state=TicketState.ACCEPTED).number
    listed = json.loads(ok(run("tickets", "list", "--state", "待签收", "--json")).output)
    assert [t["number"] for t in listed] == [fresh]
    out = ok(run("tickets", "list", "--state", "已签收")).output
    assert accepted in out and fresh not in out
    fails(run("tickets", "list", "--state", "丢了"), 1, "待签收(new)")


def test_list_help_shows_the_chinese_state_labels(run: Callable[..., Result]) -> None:
    out = ok(run("tickets", "list", "-h")).output
    assert "待签收 new" in out
    assert "已关闭 closed" in out


def test_an_illegal_transition_is_one_chinese_line_with_exit_1(
    run: Callable[..., Result], make_ticket: Callable[..., TicketView]
) -> None:
    from handoff.models import TicketState

    number = make_ticket(state=TicketState.CLOSED).number
    result = run("tickets", "reopen", number, "--actor", "政务办")
    fails(result, 1, f"工单 {number} 不能从「已关闭」变为「待签收」（重办）")
    assert result.stderr.count("\n") == 1
    assert result.output == result.stderr  # nothing on stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["start"], "开始办理"),
        (["feedback", "--note", "电话"], "已反馈"),
        (["ack", "--department", "工信局"], "协办已确认"),
    ],
)
def test_action_commands_answer_in_one_line(
    run: Callable[..., Result],
    make_ticket: Callable[..., TicketView],
    args: list[str],
    words: str,
) -> None:
    from handoff.models import TicketState

    state = {"start": TicketState.ACCEPTED, "feedback": TicketState.RESOLVED}
    number = make_ticket(state=state.get(args[0], TicketState.IN_PROGRESS)).number
    if args[0] == "ack":
        ok(run("tickets", "assist", number, "--departments", "工信局", "--actor", "张三"))
    out = ok(run("tickets", args[0], number, *args[1:], "--actor", "张三")).output
    assert out.startswith(f"工单 {number} {words}（当前：")
    assert out.count("\n") == 1


def test_every_action_command_calls_a_service_method() -> None:
    from bot.cli.tickets import ACTIONS, tickets_group
    from handoff.tickets import TicketService

    for action in ACTIONS:
        assert callable(getattr(TicketService, action.method)), action.name
        assert tickets_group.commands[action.name].help == action.help


def test_ticket_commands_do_not_load_the_knowledge_base(
    run: Callable[..., Result],
    make_ticket: Callable[..., TicketView],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.app import App

    def refuse(self: App) -> None:
        raise AssertionError("the knowledge base was loaded")

    monkeypatch.setattr(App, "kb", property(refuse))
    number = make_ticket().number
    ok(run("tickets", "list"))
    ok(run("tickets", "show", number))
    ok(run("tickets", "accept", number, "--actor", "张三"))
    ok(run("sla", "tick", "--now", "2026-11-26 08:00"))
    ok(run("commissioners", "list"))


def test_list_overdue_at_a_given_time(
    run: Callable[..., Result], make_ticket: Callable[..., TicketView]
) -> None:
    number = make_ticket().number  # created 2026-11-23 10:00, contact due 11-25 24:00
    assert (
        "没有符合条件"
        in ok(run("tickets", "list", "--overdue", "--now", "2026-11-25 20:00")).output
    )
    out = ok(run("tickets", "list", "--overdue", "--now", "2026-11-26 00:00:01")).output
    assert number in out
    assert "对接企业截止 2026-11-25 23:59" in out


# -------------------------------------------------------------------------- sla tick


def test_sla_tick_twice_queues_nothing_new(
    run: Callable[..., Result],
    make_ticket: Callable[..., TicketView],
    make_commissioner: Callable[..., Any],
) -> None:
    make_commissioner("王局", "市场监管局", role="负责人", bindings=(("telegram", "201"),))
    make_ticket()
    first = json.loads(ok(run("sla", "tick", "--now", "2026-11-26 08:00", "--json")).output)
    assert first == {
        "now": "2026-11-26T08:00:00+08:00",
        "reminders": 0,
        "breaches": 1,
        "notices": 1,
        "unaddressed": 0,
        "urges_suggested": 1,  # the overdue ticket gets a 蓝色督办 suggestion for 政务办
        "urges_confirmed": 0,
    }
    again = ok(run("sla", "tick", "--now", "2026-11-26 08:00"))
    assert again.output.strip() == "提醒 0 条；新超时 0 个；超时通报 0 条"
    fails(run("sla", "tick", "--now", "tomorrow"), 2, "无法识别的时间")


def test_sla_tick_warns_when_nobody_can_be_told(
    run: Callable[..., Result], make_ticket: Callable[..., TicketView]
) -> None:
    make_ticket()
    result = ok(run("sla", "tick", "--now", "2026-11-26T08:00:00+08:00"))
    assert "新超时 1 个" in result.output
    assert "找不到可通知的人员" in result.stderr


# ------------------------------------------------------------------ registry commands


def test_enterprises_import_and_show(run: Callable[..., Result]) -> None:
    out = ok(run("enterprises", "import", str(DATA / "enterprises.csv"))).output
    assert out.splitlines()[0] == "共 7 行：新增 3，更新 0，未变 0，拒绝 4"
    assert "第 4 行（911201160000001010）：统一社会信用代码「911201160000001010」校验位错误" in out
    assert "第 5 行（91120116000000103W）：企业名称为空" in out
    again = json.loads(
        ok(run("enterprises", "import", str(DATA / "enterprises.csv"), "--json")).output
    )
    assert (again["imported"], again["unchanged"], len(again["rejected"])) == (0, 3, 4)
    shown = ok(run("enterprises", "show", "92120116000000102n")).output
    assert "示例便利店（92120116000000102N）" in shown
    assert "类型：个体工商户" in shown
    data = json.loads(ok(run("enterprises", "show", "91120116000000101N", "--json")).output)
    assert data["tags"] == ["招商落户", "楼宇园区"]
    fails(run("enterprises", "show", "91120116000000999X"), 1, "企业库中没有")


def test_enterprises_import_fatal_error_exits_1(run: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("公司,行业\n甲,制造业\n", encoding="utf-8")
    fails(run("enterprises", "import", str(path)), 1, "缺少必需的列：统一社会信用代码、企业名称")
    fails(run("enterprises", "import", str(tmp_path / "none.xlsx")), 1, "找不到文件")


def test_commissioners_add_and_list(run: Callable[..., Result]) -> None:
    out = ok(
        run(
            "commissioners",
            "add",
            "张三",
            "--department",
            "市场局",
            "--bind",
            "telegram:101",
            "--bind",
            "wechat:oX",
        )
    )
    assert out.output.strip() == "已登记：张三（市场监管局，专员）"
    ok(run("commissioners", "add", "钱主任", "--department", "政务办", "--role", "政务办"))
    rows = json.loads(ok(run("commissioners", "list", "--json")).output)
    assert sorted((r["name"], r["role"], tuple(r["bindings"])) for r in rows) == [
        ("张三", "专员", ("telegram:101", "wechat:oX")),
        ("钱主任", "政务办", ()),
    ]
    assert "张三" not in ok(run("commissioners", "list", "--department", "政务办")).output
    fails(
        run("commissioners", "add", "李四", "--department", "政务办", "--bind", "telegram"),
        1,
        "--bind 应写成",
    )
    fails(
        run("commissioners", "add", "李四", "--department", "政务办", "--role", "处长"),
        1,
        "未知的角色",
    )
