"""`yxby db`, `yxby enterprises` and `yxby commissioners`: schema and registry data.

:func:`opened_app` is how every command that works on the data gets the application
(``bot.app.build_app``: database, config, clock); ``db upgrade``/``db current`` only need
the database address, since the schema they handle may not exist yet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from bot.app import App

__all__ = [
    "commissioners_group",
    "deactivate_command",
    "echo_json",
    "invite_command",
    "local_time",
    "opened_app",
    "read_password",
    "register",
    "set_password_command",
]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def echo_json(data: Any) -> None:
    """Print *data* as the commands' ``--json`` output (UTF-8 Chinese, indented)."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def local_time(moment: datetime | None, empty: str = "—") -> str:
    """*moment* as ``YYYY-MM-DD HH:MM`` in Shanghai time; *empty* when there is none."""
    if moment is None:
        return empty
    from handoff.calendar import SHANGHAI

    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


@contextmanager
def opened_app() -> Iterator[App]:
    """The app built from the ``YXBY_*`` environment on a migrated database; closed after.

    The knowledge base is not loaded (it is built on first use, and no command here uses it).
    """
    from bot.app import build_app

    app = build_app()
    try:
        yield app
    finally:
        app.close()


def _engine() -> Engine:
    """An engine on the configured database (which may not have a schema yet)."""
    from bot.app import AppSettings
    from handoff.db import make_engine

    return make_engine(AppSettings.from_env().database_url)


# ------------------------------------------------------------------------------- db


@click.group("db")
def db_group() -> None:
    """数据库：建表、升级与版本查看（SQLite 或 YXBY_DATABASE_URL 指定的 PostgreSQL）。"""


@db_group.command("upgrade")
def upgrade_command() -> None:
    """创建或升级数据库结构到最新版本。"""
    from handoff.db import upgrade

    engine = _engine()
    try:
        before = _current(engine)
        after = upgrade(engine)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    if before == after:
        click.echo(f"数据库已是最新版本 {after}（{where}）")
    else:
        click.echo(f"数据库已升级：{before or '未初始化'} → {after}（{where}）")


def _current(engine: Any) -> str | None:
    from handoff.db import current_revision

    return current_revision(engine)


@db_group.command("current")
def current_command() -> None:
    """显示数据库当前版本与程序需要的版本。"""
    from handoff.db import head_revision

    engine = _engine()
    try:
        current = _current(engine)
    finally:
        engine.dispose()
    head = head_revision()
    where = engine.url.render_as_string(hide_password=True)
    if current == head:
        click.echo(f"{current}（最新）  {where}")
    else:
        click.echo(f"{current or '未初始化'}（程序需要 {head}，请运行 yxby db upgrade）  {where}")


# ----------------------------------------------------------------------- enterprises


@click.group("enterprises")
def enterprises_group() -> None:
    """企业库（一企一档、名录库）：导入、同步、包保覆盖与分配、查询。"""


@enterprises_group.command("sync")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="只显示将发生的变化，不写入。")
@click.option("--partial", is_flag=True, help="部分导出：文件中没有的企业不标记为迁出。")
@click.option("--by", "by", default="命令行", show_default=True, help="记入同步日志的操作人。")
@click.option("--show", "show", default=20, show_default=True, help="列出的变化条数。")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON 报告。")
def sync_command(
    file: Path, dry_run: bool, partial: bool, by: str, show: int, as_json: bool
) -> None:
    """按市场监管局导出（CSV/XLSX）同步名录库：新增、变更、迁出/注销，一次事务。

    表头如：统一社会信用代码、企业名称、类型、行业（国民经济行业代码或名称）、登记状态/经营状态、
    住所、法定代表人、成立日期、联系电话、楼宇/园区、网格、招商部门、最近年报年度
    （config/register.yaml 列出全部别名）；yxby enterprises import 的表头同样可用。
    """
    from handoff.register import register_for

    with opened_app() as app:
        report = register_for(app).sync(file, dry_run=dry_run, by=by, full=not partial)
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(report.summary())
    click.echo(f"同步记录 #{report.sync_id}，文件 SHA-256 {report.sha256}")
    for rejected in report.rejected:
        code = f"（{rejected.uscc}）" if rejected.uscc else ""
        click.echo(f"  拒绝 第 {rejected.row} 行{code}：{rejected.reason}")
    changes = report.new + report.changed + report.left
    for change in report.preview[: max(show, 0)]:
        click.echo(f"  {change.describe()}")
    if changes > max(show, 0):
        click.echo(f"  ……共 {changes} 项变化（--show N 列出更多）")


@enterprises_group.command("syncs")
@click.option("--id", "sync_id", type=int, default=None, help="查看一次同步及其拒绝的行。")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="输出 JSON。")
def syncs_command(sync_id: int | None, limit: int, as_json: bool) -> None:
    """名录库同步日志（含试运行）：时间、操作人、文件、哈希、各项计数、拒绝的行。"""
    from handoff.register import register_for
    from yxby.errors import InputError

    with opened_app() as app:
        register = register_for(app)
        if sync_id is None:
            listed = [_sync_dict(s) for s in register.syncs(limit)]
            if as_json:
                echo_json(listed)
                return
            if not listed:
                click.echo("尚无同步记录。")
            for d in listed:
                mode = "试运行 " if d["dry_run"] else ""
                click.echo(
                    f"#{d['id']} {d['at']} {d['by']} {mode}{d['file']}：共 {d['rows']} 行，"
                    f"新增 {d['new']}，变更 {d['changed']}，迁出/注销 {d['left']}，"
                    f"未变 {d['unchanged']}，拒绝 {d['rejected']}"
                )
            return
        found = register.sync_detail(sync_id)
        if found is None:
            raise InputError(f"没有编号为 {sync_id} 的同步记录")
        log, rejections = found
        data: dict[str, Any] = _sync_dict(log)
        data["rejections"] = [
            {"row": r.row, "uscc": r.uscc, "reason": r.reason, "raw": r.raw} for r in rejections
        ]
    if as_json:
        echo_json(data)
        return
    click.echo(
        f"#{data['id']} {data['at']} {data['by']} {data['file']}（SHA-256 {data['sha256']}）"
    )
    click.echo(
        f"共 {data['rows']} 行：新增 {data['new']}，变更 {data['changed']}，"
        f"迁出/注销 {data['left']}，未变 {data['unchanged']}，拒绝 {data['rejected']}"
        + ("（试运行，未写入）" if data["dry_run"] else "")
    )
    for r in data["rejections"]:
        click.echo(f"  第 {r['row']} 行（{r['uscc'] or '无代码'}）：{r['reason']}")


def _sync_dict(log: Any) -> dict[str, Any]:
    from handoff.calendar import SHANGHAI

    return {
        "id": log.id,
        "at": log.at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"),
        "by": log.by,
        "file": log.file_name,
        "sha256": log.file_sha256,
        "full": log.full,
        "dry_run": log.dry_run,
        "rows": log.rows,
        "new": log.new,
        "changed": log.changed,
        "left": log.left,
        "unchanged": log.unchanged,
        "rejected": log.rejected,
        "zombies": log.zombies,
        "seconds": log.seconds,
    }


@enterprises_group.command("coverage")
@click.option(
    "--by",
    "by",
    type=click.Choice(["department", "building", "grid"]),
    default="department",
    show_default=True,
    help="按部门、楼宇/园区或网格统计。",
)
@click.option("--uncovered", "key", default=None, help="列出该组中未包保的企业。")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON。")
def coverage_command(by: str, key: str | None, as_json: bool) -> None:
    """包保覆盖：存续且非僵尸的企业中，有/无包保专员的数量（全覆盖、无遗漏）。"""
    from handoff.register import register_for

    with opened_app() as app:
        register = register_for(app)
        if key is not None:
            gaps = register.uncovered(by, key)
            gap_rows = [
                {"uscc": e.uscc, "name": e.name, "building": e.building, "grid": e.grid}
                for e in gaps
            ]
            if as_json:
                echo_json(gap_rows)
                return
            click.echo(
                f"{key}：未包保企业 {len(gap_rows)} 家"
                + ("（最多列出 200 家）" if len(gap_rows) >= 200 else "")
            )
            for g in gap_rows:
                click.echo(f"  {g['uscc']} {g['name']}")
            return
        cover = register.coverage(by)
    data: dict[str, Any] = {
        "by": by,
        "total": cover.total,
        "covered": cover.covered,
        "uncovered": cover.uncovered,
        "excluded": cover.excluded,
        "rows": [
            {"key": r.key, "total": r.total, "covered": r.covered, "uncovered": r.uncovered}
            for r in cover.rows
        ],
    }
    if as_json:
        echo_json(data)
        return
    title = {"department": "部门", "building": "楼宇/园区", "grid": "网格"}[by]
    click.echo(
        f"存续企业 {cover.total} 家：已包保 {cover.covered}，未包保 {cover.uncovered}"
        f"（不计僵尸企业及已迁出/注销 {cover.excluded} 家）"
    )
    click.echo(f"{title}\t企业数\t已包保\t未包保\t覆盖率")
    for r in cover.rows:
        click.echo(f"{r.key}\t{r.total}\t{r.covered}\t{r.uncovered}\t{r.rate:.0%}")


@enterprises_group.command("assign")
@click.option("--commissioner", "name", required=True, help="包保专员姓名。")
@click.option("--department", default=None, help="专员所在部门（重名时必填）。")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    required=True,
    help="筛选条件 键=值，可重复：building/楼宇、grid/网格、recruited_by/招商部门、kind/类型、"
    "industry/行业（代码前缀或名称）、commissioner/专员（现包保专员）、unassigned/未包保、uscc。",
)
@click.option("--dry-run", is_flag=True, help="只统计将分配的企业，不写入。")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON。")
def assign_command(
    name: str, department: str | None, filters: tuple[str, ...], dry_run: bool, as_json: bool
) -> None:
    """按条件批量（重新）分配包保专员；记入审计日志（一次一条，含每家企业）。"""
    from handoff.register import AssignFilter, register_for

    flt = AssignFilter.parse(filters)
    with opened_app() as app:
        result = register_for(app).assign(
            name, flt, department=department, by="命令行", dry_run=dry_run
        )
    if as_json:
        echo_json(
            {
                "count": result.count,
                "unchanged": result.unchanged,
                "commissioner": result.commissioner,
                "department": result.department,
                "dry_run": result.dry_run,
                "sample": [list(s) for s in result.sample],
            }
        )
        return
    verb = "将分配" if dry_run else "已分配"
    click.echo(
        f"{verb} {result.count} 家企业给 {result.commissioner}（{result.department}）"
        f"，另有 {result.unchanged} 家已由其包保"
    )
    for code, ename in result.sample:
        click.echo(f"  {code} {ename}")
    if result.count > len(result.sample):
        click.echo(f"  ……共 {result.count} 家")


@enterprises_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="输出 JSON 报告。")
def import_command(file: Path, as_json: bool) -> None:
    """从 CSV 或 XLSX 导入企业（表头：统一社会信用代码、企业名称、类型、行业、标签、包保专员）。"""
    from handoff.registry import import_file

    with opened_app() as app:
        report = import_file(
            app.db.sessions, file, departments=app.router.departments, now=app.clock()
        )
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(report.summary())
    for rejected in report.rejected:
        code = f"（{rejected.uscc}）" if rejected.uscc else ""
        click.echo(f"  第 {rejected.row} 行{code}：{rejected.reason}")


@enterprises_group.command("show")
@click.argument("uscc")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON。")
def show_enterprise_command(uscc: str, as_json: bool) -> None:
    """查看一家企业的登记信息。"""
    from handoff.db import read_only
    from handoff.registry import find_enterprise
    from yxby.errors import InputError

    with opened_app() as app, app.db.sessions() as session:
        found = find_enterprise(read_only(session), uscc)
        if found is None:
            raise InputError(f"企业库中没有统一社会信用代码为 {uscc} 的企业")
        data: dict[str, Any] = {
            "uscc": found.uscc,
            "name": found.name,
            "kind": found.kind.value,
            "industry": found.industry,
            "tags": list(found.tags or []),
            "commissioner": found.commissioner.name if found.commissioner else None,
            "commissioner_department": (
                found.commissioner.department if found.commissioner else None
            ),
            "industry_code": found.industry_code,
            "status": found.status,
            "status_changed_on": _iso(found.status_changed_on),
            "zombie": found.zombie,
            "zombie_reason": found.zombie_reason,
            "building": found.building,
            "grid": found.grid,
            "recruited_by": found.recruited_by,
            "registered_address": found.registered_address,
            "legal_representative": found.legal_representative,
            "established_on": _iso(found.established_on),
            "contact_name": found.contact_name,
            "contact_phone": found.contact_phone,
            "annual_report_year": found.annual_report_year,
        }
    if as_json:
        echo_json(data)
        return
    click.echo(f"{data['name']}（{data['uscc']}）")
    code = f"（{data['industry_code']}）" if data["industry_code"] else ""
    click.echo(f"类型：{data['kind']}  行业：{data['industry'] or '未登记'}{code}")
    since = f"（{data['status_changed_on']} 起）" if data["status_changed_on"] else ""
    click.echo(f"登记状态：{data['status']}{since}")
    if data["zombie"]:
        click.echo(f"僵尸企业：{data['zombie_reason']}")
    for label, key in (("楼宇/园区", "building"), ("网格", "grid"), ("招商部门", "recruited_by"),
                       ("住所", "registered_address"), ("法定代表人", "legal_representative"),
                       ("联系电话", "contact_phone")):  # fmt: skip
        if data[key]:
            click.echo(f"{label}：{data[key]}")
    click.echo(f"标签：{'、'.join(data['tags']) or '无'}")
    person = data["commissioner"]
    assigned = f"{person}（{data['commissioner_department']}）" if person else "未指定"
    click.echo(f"包保专员：{assigned}")


# --------------------------------------------------------------------- commissioners


@click.group("commissioners")
def commissioners_group() -> None:
    """企业服务专员、部门负责人、政务办人员与管理员：登记、查看、工作台密码。"""


@commissioners_group.command("add")
@click.argument("name")
@click.option("--department", required=True, help="所在部门（规范名或别名）。")
@click.option(
    "--role",
    default="专员",
    show_default=True,
    help=(
        "角色：专员、负责人、政务办、管理员 或 编辑（超时通报发给负责人和政务办；"
        "管理员只管理账号；编辑维护知识库，不查看诉求）。"
    ),
)
@click.option("--phone", help="联系电话。")
@click.option(
    "--bind",
    "bindings",
    multiple=True,
    metavar="渠道:账号",
    help="绑定的渠道账号，如 telegram:123456（可重复）。",
)
def add_commissioner_command(
    name: str, department: str, role: str, phone: str | None, bindings: tuple[str, ...]
) -> None:
    """登记一名人员。"""
    from handoff.registry import add_commissioner
    from yxby.errors import InputError

    pairs = []
    for item in bindings:
        channel, sep, key = item.partition(":")
        if not sep or not channel.strip() or not key.strip():
            raise InputError(f"--bind 应写成 渠道:账号（如 telegram:123456），收到「{item}」")
        pairs.append((channel.strip(), key.strip()))
    with opened_app() as app, app.db.begin() as session:
        person = add_commissioner(
            session,
            name=name,
            department=department,
            role=role,
            phone=phone,
            bindings=pairs,
            departments=app.router.departments,
            now=app.clock(),
        )
        click.echo(f"已登记：{person.name}（{person.department}，{person.role.value}）")


@commissioners_group.command("list")
@click.option("--department", help="只看某部门。")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON。")
def list_commissioners_command(department: str | None, as_json: bool) -> None:
    """列出已登记人员。"""
    from handoff.db import read_only
    from handoff.registry import list_commissioners

    with opened_app() as app, app.db.sessions() as session:
        # an unknown name raises RoutingError: the CLI prints it and exits 1
        dept = app.router.departments.canonical(department) if department else None
        rows: list[dict[str, Any]] = [
            {
                "name": p.name,
                "department": p.department,
                "role": p.role.value,
                "phone": p.phone,
                "active": p.active,
                "bindings": [f"{b.channel}:{b.user_key}" for b in p.bindings],
            }
            for p in list_commissioners(read_only(session), dept)
        ]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("（无）")
    for row in rows:
        status = "" if row["active"] else "  [停用]"
        bound = "、".join(row["bindings"]) or "未绑定渠道"
        click.echo(f"{row['department']}  {row['name']}  {row['role']}  {bound}{status}")


def read_password(name: str) -> str:
    """The new password: prompted twice without echo on a terminal, else one line of stdin."""
    import sys

    from yxby.errors import InputError

    stdin = sys.stdin
    if stdin.isatty():
        value: str = click.prompt(
            f"{name}的新密码", hide_input=True, confirmation_prompt="请再次输入", err=True
        )
        return value
    line = stdin.readline()
    if not line:
        raise InputError("没有从标准输入读到密码（请输入一行密码，或在终端中运行以交互输入）")
    return line.rstrip("\r\n")


def _person(app: App, session: Any, name: str, department: str | None) -> Any:
    from handoff.invites import find_commissioner

    # an unknown department raises RoutingError: the CLI prints it and exits 1
    dept = app.router.departments.canonical(department) if department else None
    return find_commissioner(session, name, dept)


@commissioners_group.command("set-password")
@click.argument("name")
@click.option("--department", help="所在部门（同名人员在多个部门时必填）。")
def set_password_command(name: str, department: str | None) -> None:
    """设置工作台登录密码（从标准输入读取；在终端中输入时不回显）。原有登录会话全部失效。"""
    from bot.console.auth import accounts_for

    with opened_app() as app:
        with app.db.sessions() as session:
            person = _person(app, session, name, department)
            person_id, who, where = person.id, person.name, person.department
        password = read_password(who)
        accounts_for(app).set_password(person_id, password, by="命令行")
    click.echo(f"已设置 {who}（{where}）的工作台密码；原有登录会话已全部失效。")


def _console_base(app: App) -> str:
    return (app.settings.public_url or "http://127.0.0.1:8000").rstrip("/")


@commissioners_group.command("invite")
@click.argument("name")
@click.option("--department", help="所在部门（同名人员在多个部门时必填）。")
@click.option(
    "--console",
    "console",
    is_flag=True,
    help="生成一次性的工作台设置密码链接（而不是 Telegram 绑定邀请码）。",
)
@click.option(
    "--expires-hours",
    type=click.IntRange(1, 30 * 24),
    default=72,
    show_default=True,
    help="有效小时数。",
)
def invite_command(name: str, department: str | None, console: bool, expires_hours: int) -> None:
    """为人员生成一次性邀请：Telegram 绑定邀请码，或（--console）工作台设置密码链接。"""
    from datetime import timedelta

    from handoff.calendar import SHANGHAI
    from handoff.invites import create_invite

    with opened_app() as app:
        if console:
            from bot.console.auth import accounts_for

            with app.db.sessions() as session:
                person = _person(app, session, name, department)
                person_id, who, where = person.id, person.name, person.department
            accounts = accounts_for(app)
            code = accounts.create_link(
                person_id, by="命令行", valid_for=timedelta(hours=expires_hours)
            )
            until = app.clock() + timedelta(hours=expires_hours)
            click.echo(f"{who}（{where}）的一次性设置密码链接：")
            click.echo(f"  {_console_base(app)}/console/set-password/{code}")
            click.echo(
                f"有效期至 {until.astimezone(SHANGHAI):%Y-%m-%d %H:%M}（北京时间），仅可使用一次；"
                "请通过可信渠道发给本人，本人打开后设置密码即可登录工作台。"
            )
            return
        with app.db.begin() as session:
            person = _person(app, session, name, department)
            invite_code, invite = create_invite(
                session, person, now=app.clock(), valid_for=timedelta(hours=expires_hours)
            )
            who, where, expires = person.name, person.department, invite.expires_at
    click.echo(f"{who}（{where}）的一次性邀请码：")
    click.echo(f"  {invite_code}")
    click.echo(
        f"有效期至 {expires.astimezone(SHANGHAI):%Y-%m-%d %H:%M}（北京时间），仅可使用一次。"
    )
    click.echo(f"请本人在 Telegram 中向机器人发送：/link {invite_code}")


@commissioners_group.command("deactivate")
@click.argument("name")
@click.option("--department", help="所在部门（同名人员在多个部门时必填）。")
def deactivate_command(name: str, department: str | None) -> None:
    """停用一名人员：不能再登录工作台，已登录的会话立即失效。"""
    from bot.console.auth import accounts_for

    with opened_app() as app:
        with app.db.sessions() as session:
            person = _person(app, session, name, department)
            person_id, who, where = person.id, person.name, person.department
        ended = accounts_for(app).deactivate(person_id, by="命令行")
    click.echo(f"已停用 {who}（{where}），结束登录会话 {ended} 个。")


def register(group: click.Group) -> None:
    """Add the ``db``, ``enterprises`` and ``commissioners`` groups to *group*."""
    group.add_command(db_group)
    group.add_command(enterprises_group)
    group.add_command(commissioners_group)
