"""Commissioners on local channels: binding a registered commissioner to the terminal."""

from __future__ import annotations

from sqlalchemy import select

from bot.app import App
from bot.types import Channel
from handoff.invites import find_commissioner
from handoff.models import CommissionerBinding

__all__ = ["bind_terminal"]


def bind_terminal(app: App, name: str, department: str | None = None) -> str:
    """The terminal user key of commissioner *name*, creating the binding on first use.

    The terminal is a local, trusted channel: whoever can run ``yxby`` on the server may act
    as a registered commissioner (remote channels need a one-time code instead).
    """
    with app.db.begin() as session:
        dept = app.router.departments.canonical(department) if department else None
        person = find_commissioner(session, name, dept)
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
