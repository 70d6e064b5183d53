"""`make demo`: the bot in this terminal, on embedded SQLite, with a little demo data.

Creates (or upgrades) the demo database, registers the demo staff and one enterprise if they
are not there yet, prints a guide, then opens the same chat the WeChat and Telegram bots run
(this terminal is the enterprise, 终端 A). The guide has three parts:

* the demo staff: 演示专员 → 部门 → 角色, each with the exact command that opens a second
  terminal (终端 B) as that person;
* example questions per department. They are not claims written by hand: at start-up every
  example in :data:`EXAMPLES` is run through the app's own router and knowledge base
  (:func:`destinations`), and only those whose ticket or handoff can land nowhere but the
  printed department are shown;
* a short script for playing both sides (ask → 登记诉求 → 待办/签收/办结 → result and rating;
  转人工 → 接入).

How much is printed: with a terminal on stdin, all three parts. With piped stdin (scripts,
CI, ``make demo </dev/null``) the staff table and the examples, but not the script (nobody is
there to play it) — still useful in a log, and cheap. ``--no-guide`` prints none of it, for
scripts that want only the chat transcript.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from sqlalchemy import select

from bot.app import App, build_app
from bot.channels.terminal import TerminalChat
from handoff.db import make_engine, upgrade
from handoff.models import Commissioner, CommissionerRole, Enterprise, EnterpriseKind
from handoff.registry import add_commissioner, route_facts
from knowledge import Action
from routing import RouteFacts
from routing.router import EnterpriseKind as RouteKind
from yxby import paths
from yxby.errors import YxbyError

__all__ = [
    "DEMO_ENTERPRISE",
    "DEMO_STAFF",
    "EXAMPLES",
    "Example",
    "destinations",
    "main",
    "seed",
    "verified_examples",
]

DEMO_STAFF: tuple[tuple[str, str, CommissionerRole], ...] = (
    ("陈刚", "政务办", CommissionerRole.OVERSIGHT),
    ("李娜", "政务办", CommissionerRole.HEAD),
    ("张敏", "市场监管局", CommissionerRole.COMMISSIONER),
    ("王芳", "商务局", CommissionerRole.COMMISSIONER),
    ("刘洋", "科技局", CommissionerRole.COMMISSIONER),
    # 社保、劳动用工、人才: the zone's department for the 人社部门's matters is 社发局
    ("赵磊", "社发局", CommissionerRole.COMMISSIONER),
)
"""Name, department (canonical, ``config/departments.yaml``) and role of the demo staff."""

DEMO_ENTERPRISE = ("91120116MA05XDEM0H", "天津港保税区示例科技有限公司", "科技创新业")
"""USCC, name and registered industry of the demo enterprise."""

EXAMPLES: tuple[tuple[str, str], ...] = (
    ("市场监管局", "我们公司想变更注册地址，营业执照怎么变更"),
    ("市场监管局", "我们想注册一个商标，需要准备什么材料"),
    ("商务局", "公司要做对外贸易经营者备案，去哪里办"),
    ("商务局", "我们想发行单用途预付卡，需要备案吗"),
    ("科技局", "公司想申请高新技术企业认定，需要什么条件"),
    ("科技局", "科技型中小企业评价怎么申报"),
    ("社发局", "员工工伤认定怎么申请，需要哪些材料"),
    ("社发局", "公司有员工拖欠工资的劳动纠纷，想咨询劳动仲裁"),
    ("政务办", "希望管委会帮忙协调解决员工通勤班车"),
    ("政务办", "公司门口路灯坏了很久，晚上下班不安全"),
)
"""Candidate example questions: (department, question). Only verified ones are printed."""


@dataclass(frozen=True)
class Example:
    """A verified example: it lands in *department*; *note* says when it does not."""

    department: str
    question: str
    note: str = ""


# ----------------------------------------------------------------------------- data


def prepare_database() -> None:
    """Create or upgrade the database the environment points at."""
    engine = make_engine()
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def seed(app: App) -> None:
    """Register the demo staff (bound to the terminal) and the demo enterprise if missing.

    A demo person already registered keeps their row, but gets the role :data:`DEMO_STAFF`
    gives them now (older demo databases had 李娜 as a plain 专员).
    """
    with app.db.begin() as session:
        known = {(c.name, c.department): c for c in session.scalars(select(Commissioner))}
        for name, department, role in DEMO_STAFF:
            person = known.get((name, department))
            if person is None:
                add_commissioner(
                    session, name=name, department=department, role=role,
                    bindings=[("terminal", f"demo-staff-{name}")],
                    departments=app.router.departments, now=app.clock(),
                )  # fmt: skip
            elif person.role is not role:
                person.role = role
        uscc, name, industry = DEMO_ENTERPRISE
        if session.scalars(select(Enterprise).where(Enterprise.uscc == uscc)).first() is None:
            now = app.clock()
            session.add(
                Enterprise(uscc=uscc, name=name, kind=EnterpriseKind.ENTERPRISE,
                           industry=industry, tags=["楼宇园区"], created_at=now,
                           updated_at=now)
            )  # fmt: skip


# ----------------------------------------------------------------------------- examples


def destinations(app: App, text: str, registry: Mapping[str, str | None] | None = None) -> set[str]:
    """Every department a ticket or a 转人工 about *text* can be routed to, by the app.

    Whichever way the conversation goes: the knowledge base answers (then 未解决 → the
    answer's entry is a routing fact; the related titles shown with it are new questions),
    suggests entries (the user picks one, or 都不是), or finds nothing. *registry* holds the
    enterprise's facts (``handoff.registry.route_facts``) when the user files it for a
    registered enterprise. A superset of what really happens: the text alone is always
    tried too (the dialogue ignores programme-text entries as routing facts).
    """
    facts = RouteFacts(
        text=text,
        enterprise_kind=_kind((registry or {}).get("enterprise_kind")),
        enterprise_industry=(registry or {}).get("enterprise_industry"),
        assigned_department=(registry or {}).get("assigned_department"),
        assigned_commissioner=(registry or {}).get("assigned_commissioner"),
    )
    found = {app.router.route(facts).department}
    try:
        decision = app.kb.decide(text)
    except YxbyError:
        return found
    if decision.action is Action.ANSWER:
        hits = [decision.top] if decision.top is not None else []
    elif decision.action is Action.SUGGEST:
        hits = list(decision.suggestions)
    else:
        hits = []
    for hit in hits:
        matched = replace(
            facts, matched_entry_id=hit.entry.id, matched_department=hit.entry.department
        )
        found.add(app.router.route(matched).department)
    return found


def _kind(value: str | None) -> RouteKind | None:
    if value == EnterpriseKind.INDIVIDUAL.value:
        return "个体工商户"
    return "企业" if value == EnterpriseKind.ENTERPRISE.value else None


def verified_examples(app: App) -> list[Example]:
    """The :data:`EXAMPLES` that really land in their department, in order.

    An example must go to its department, and only there, when the enterprise is not in the
    registry; if filing it as the demo enterprise would send it elsewhere (its registered
    industry is a routing rule too), the example carries a note saying so. Questions shorter
    than the minimum description are left out (the bot would ask for more text, which could
    route differently).
    """
    with app.db.begin() as session:
        demo = route_facts(session, DEMO_ENTERPRISE[0])
    shortest = app.dialogue_settings.min_description_chars
    shown: list[Example] = []
    for department, question in EXAMPLES:
        if len(question.strip()) < shortest:
            continue
        dept = app.router.departments.canonical(department)
        if destinations(app, question) != {dept}:
            continue
        note = ""
        if demo is not None:
            elsewhere = destinations(app, question, demo) - {dept}
            if elsewhere:
                note = (
                    f"以演示企业身份提交会按其登记信息转{'、'.join(sorted(elsewhere))}，"
                    "登记时请填写其他企业名称"
                )
        shown.append(Example(dept, question, note))
    return shown


# ----------------------------------------------------------------------------- guide


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def _yxby_command() -> str:
    exe = Path(sys.executable).with_name("yxby")
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def _role_note(app: App, role: CommissionerRole) -> str:
    may = "督办，可办理各部门诉求" if role is CommissionerRole.OVERSIGHT else "办理本部门诉求"
    overdue = app.sla.overdue
    if role in (*overdue.department_roles, *overdue.oversight_roles):
        return f"{may}，超时时收到通知"
    return may


def staff_rows(app: App) -> list[tuple[str, str, str, str]]:
    """(演示专员, 部门, 角色, 终端 B 命令) for each demo person, as the database has them."""
    data = shlex.quote(str(paths.data_dir()))
    yxby = _yxby_command()
    names = {(n, d) for n, d, _ in DEMO_STAFF}
    with app.db.begin() as session:
        people = {
            (c.name, c.department): c
            for c in session.scalars(select(Commissioner))
            if (c.name, c.department) in names
        }
    rows = []
    for name, department, _ in DEMO_STAFF:
        person = people.get((name, department))
        if person is None:
            continue
        role = f"{person.role.value}（{_role_note(app, person.role)}）"
        if not person.active:
            role += "，已停用"
        command = f"YXBY_DATA_DIR={data} {yxby} chat --commissioner {name}"
        rows.append((name, department, role, command))
    return rows


def print_guide(app: App, out: TextIO, *, script: bool) -> None:
    """The staff table, the verified examples and (with *script*) how to play both sides."""
    uscc, name, industry = DEMO_ENTERPRISE
    w = out.write
    w("—— 有需必应助手 · 终端演示（嵌入式 SQLite）——\n")
    w(f"演示企业：{name}（{uscc}，登记行业：{industry}）；回复“绑定 {uscc}”以该企业身份提问。\n")
    if os.environ.get("YXBY_DATABASE_URL"):
        w("注意：本演示使用 YXBY_DATABASE_URL 指定的数据库，终端 B 需要同样的环境变量。\n")

    rows = staff_rows(app)
    w("\n演示人员（在另一个终端 B 扮演，命令照抄即可）：\n")
    header = ("演示专员", "部门", "角色")
    widths = [max(_width(r[i]) for r in [header, *rows]) for i in range(2)]
    w(f"  {_pad(header[0], widths[0])}  {_pad(header[1], widths[1])}  {header[2]}\n")
    for name, department, role, command in rows:
        w(f"  {_pad(name, widths[0])}  {_pad(department, widths[1])}  {role}\n")
        w(f"      终端 B：{command}\n")

    examples = verified_examples(app)
    w("\n示例问题（启动时已用本应用的路由规则和知识库逐条核对，诉求或转人工会到所列部门）：\n")
    width = max((_width(e.department) for e in examples), default=0)
    notes = list(dict.fromkeys(e.note for e in examples if e.note))
    for e in examples:
        mark = "＊" * (notes.index(e.note) + 1) if e.note else ""
        w(f"  {_pad(e.department, width)}  {e.question}{mark}\n")
    for i, note in enumerate(notes, 1):
        w(f"  {'＊' * i} {note}。\n")
    covered = {e.department for e in examples}
    missing = [d for d in dict.fromkeys(d for _, d, _ in DEMO_STAFF) if d not in covered]
    if missing:
        w(f"  （{'、'.join(missing)}的示例问题核对未通过，本次未列出）\n")

    if script:
        w("\n一个人扮演两方：\n")
        w("  1. 终端 A（本窗口，企业）：输入一个示例问题 → 回复“未解决” → “登记诉求”"
          "（没有答案时直接“登记诉求”）；问补充说明时回复“没有”，再填企业名称、电话 → "
          "“确认提交”，记下编号 YX-…\n")  # fmt: skip
        w("  2. 终端 B（专员）：运行该部门专员的命令，回复“待办”查看本部门诉求，"
          "“签收 编号”，再“办结 编号 办理结果”。\n")  # fmt: skip
        w("  3. 回到终端 A：几秒内收到【通知】办理结果和“满意 / 基本满意 / 不满意”按钮，"
          "回复其一即完成回访。\n")  # fmt: skip
        w("  4. 找人工：终端 A 问完问题后回复“转人工”，终端 B 收到【人工请求】后回复“接入”，"
          "双方直接对话，B 回复“/end”结束。\n")  # fmt: skip
        w("输入 /quit 退出。\n")
    w("\n")
    out.flush()


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    """Set up the demo database, print the guide and chat until end of input (or /quit)."""
    parser = argparse.ArgumentParser(
        prog="python -m bot.demo", description="有需必应助手终端演示（嵌入式 SQLite）"
    )
    parser.add_argument("--no-guide", action="store_true", help="do not print the guide")
    args = parser.parse_args(argv)
    prepare_database()
    app = build_app()
    try:
        seed(app)
        interactive = sys.stdin.isatty()
        if not args.no_guide:
            print_guide(app, sys.stdout, script=interactive)
        TerminalChat(app, user_key="demo-enterprise", out=sys.stdout).run(
            sys.stdin, interactive=interactive
        )
    except KeyboardInterrupt:
        print()
    finally:
        app.close()


if __name__ == "__main__":
    main()
