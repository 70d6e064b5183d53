"""Commissioners on local channels: binding a registered commissioner to the terminal."""

from __future__ import annotations

from sqlalchemy import select

from bot.app import App
from bot.types import Channel
from handoff.models import Commissioner, CommissionerBinding
from yxby.errors import InputError

__all__ = ["bind_terminal"]


def bind_terminal(app: App, name: str, department: str | None = None) -> str:
    """The terminal user key of commissioner *name*, creating the binding on first use.

    The terminal is a local, trusted channel: whoever can run ``yxby`` on the server may act
    as a registered commissioner (remote channels need a one-time code instead).
    """
    with app.db.begin() as session:
        stmt = select(Commissioner).where(Commissioner.name == name.strip(), Commissioner.active)
        if department:
            stmt = stmt.where(
                Commissioner.department == app.router.departments.canonical(department)
            )
        people = list(session.scalars(stmt))
        if not people:
            raise InputError(f"没有名为「{name}」的在岗专员，请先用 yxby commissioners add 登记")
        if len(people) > 1:
            depts = "、".join(p.department for p in people)
            raise InputError(f"「{name}」在多个部门（{depts}），请用 --department 指明")
        person = people[0]
        exists = session.scalars(
            select(CommissionerBinding)
            .where(
                CommissionerBinding.channel == Channel.TERMINAL.value,
                CommissionerBinding.commissioner_id == person.id,
            )
            .order_by(CommissionerBinding.id)
        ).first()
        if exists is not None:
            return exists.user_key
        key = f"staff-{person.id}"
        session.add(
            CommissionerBinding(
                commissioner_id=person.id, channel=Channel.TERMINAL.value, user_key=key,
                created_at=app.clock(),
            )
        )  # fmt: skip
        return key
