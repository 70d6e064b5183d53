"""`make demo`: the bot in this terminal, on embedded SQLite, with a little demo data.

Creates (or upgrades) the demo database, registers a few commissioners and one enterprise
if they are not there yet, then opens the same chat the WeChat and Telegram bots run. Play
a commissioner in a second terminal with the command printed at start.
"""

from __future__ import annotations

import os
import sys

from sqlalchemy import select

from bot.app import build
from bot.channels.terminal import TerminalChat
from handoff.db import make_engine, upgrade
from handoff.models import Commissioner, Enterprise, EnterpriseKind
from handoff.registry import add_commissioner

__all__ = ["main"]

DEMO_STAFF = (
    ("李娜", "政务办", "专员"),
    ("张敏", "市场监管局", "专员"),
    ("王芳", "商务局", "专员"),
    ("刘洋", "科技局", "专员"),
    ("陈刚", "政务办", "政务办"),
)
DEMO_ENTERPRISE = ("91120116MA05XDEM0H", "天津港保税区示例科技有限公司")


def _seed() -> None:
    engine = make_engine()
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    app = build()
    try:
        with app.db.begin() as session:
            known = {(c.name, c.department) for c in session.scalars(select(Commissioner))}
            for name, department, role in DEMO_STAFF:
                if (name, department) not in known:
                    add_commissioner(
                        session, name=name, department=department, role=role,
                        bindings=[("terminal", f"demo-staff-{name}")],
                    )  # fmt: skip
            uscc, name = DEMO_ENTERPRISE
            if session.scalars(select(Enterprise).where(Enterprise.uscc == uscc)).first() is None:
                now = app.clock()
                session.add(
                    Enterprise(uscc=uscc, name=name, kind=EnterpriseKind.ENTERPRISE,
                               industry="科技创新业", tags=["楼宇园区"], created_at=now,
                               updated_at=now)
                )  # fmt: skip
    finally:
        app.close()


def main() -> None:
    """Set up the demo database and chat until end of input (or /quit)."""
    _seed()
    app = build()
    interactive = sys.stdin.isatty()
    if interactive:
        data = os.environ.get("YXBY_DATA_DIR", "")
        print("—— 有需必应助手 · 终端演示（嵌入式 SQLite）——")
        code = DEMO_ENTERPRISE[0]
        print(f"演示企业的统一社会信用代码：{code}（回复“绑定 {code}”）")
        print("在另一个终端扮演企业服务专员（接入人工、签收、办结）：")
        print(f"  YXBY_DATA_DIR={data} .venv/bin/yxby chat --commissioner 李娜")
        print("输入 /quit 退出。\n")
    try:
        TerminalChat(app, user_key="demo-enterprise", out=sys.stdout).run(
            sys.stdin, interactive=interactive
        )
    except KeyboardInterrupt:
        print()
    finally:
        app.close()


if __name__ == "__main__":
    main()
