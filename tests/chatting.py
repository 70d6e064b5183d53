"""Talking to the dialogue engine in tests: a user that remembers its last buttons, and
small helpers shared by the scenario tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from bot.app import App
from bot.types import Incoming, MessageKind, Reply, reply_from_payload
from handoff.models import Enterprise
from tests.conftest import make_uscc

__all__ = ["VALID_USCC", "Chat", "count", "file_ticket", "register_enterprise"]

VALID_USCC = make_uscc(4242)


class Chat:
    """One user talking to the engine; remembers the last buttons like a real client."""

    def __init__(self, app: App, user_key: str, channel: str = "terminal") -> None:
        self.app = app
        self.user_key = user_key
        self.channel = channel
        self.last: list[Reply] = []

    def send(self, text: str, **kw: object) -> str:
        msg = Incoming(self.channel, self.user_key, text, **kw)  # type: ignore[arg-type]
        self.last = self.app.dialogue.handle(msg)
        return "\n".join(r.render_plain() for r in self.last)

    def tap(self, label: str) -> str:
        for reply in self.last:
            for button in reply.buttons:
                if button.label == label:
                    return self.send(label, kind=MessageKind.BUTTON, payload=button.payload)
        raise AssertionError(f"no button {label!r} in {self.last}")

    def pushes(self) -> list[Reply]:
        """Pending outbox messages for this user, marked sent (what the channel would deliver)."""
        from handoff.outbox import take_local

        with self.app.db.begin() as session:
            payloads = take_local(session, self.channel, self.user_key, self.app.clock())
        return [reply_from_payload(p) for p in payloads]


def count(app: App, model: type, *where: Any) -> int:
    with app.db.begin() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def register_enterprise(
    app: App, uscc: str = VALID_USCC, name: str = "天津示例科技有限公司"
) -> None:
    from handoff.models import EnterpriseKind

    with app.db.begin() as session:
        session.add(
            Enterprise(
                uscc=uscc, name=name, kind=EnterpriseKind.ENTERPRISE, industry="科技创新业",
                tags=[], created_at=app.clock(), updated_at=app.clock(),
            )
        )  # fmt: skip


def file_ticket(
    chat: Chat, description: str = "园区道路路灯损坏三个月无人维修，夜间运输车辆进出存在安全隐患"
) -> str:
    """File a ticket, answering only what the bot asks (it remembers the phone)."""
    out = chat.send("提交诉求")
    out = chat.send(description)
    if "企业" in out and "统一社会信用代码" in out:
        out = chat.send("天津示例物流有限公司")
    if "联系电话" in out:
        chat.send("13800138000")
    done = chat.tap("确认提交")
    return done.split("编号 ")[1].split("。")[0]
