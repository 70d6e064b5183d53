"""Who is writing, read in one statement at the start of every turn (``first_look``):
the active commissioner bound to the chat account, and the account's identity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event, select

from handoff.conversations import first_look, identity_of
from handoff.db import Database
from handoff.models import ChannelIdentity, Commissioner
from handoff.registry import commissioner_of


def _statements(db: Database) -> tuple[list[str], Callable[[], None]]:
    seen: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        seen.append(statement.split()[0].upper())

    event.listen(db.engine, "before_cursor_execute", count)
    return seen, lambda: event.remove(db.engine, "before_cursor_execute", count)


def test_a_new_account_is_neither_staff_nor_known(db: Database) -> None:
    with db.begin() as s:
        assert first_look(s, "wechat", "oNewUser") == (None, None)


def test_a_known_account_comes_back_as_the_sessions_identity(db: Database) -> None:
    with db.begin() as s:
        written, created = identity_of(s, "wechat", "oKnown", display_name="王经理")
        assert created
        ident = written.id
    with db.begin() as s:
        seen, stop = _statements(db)
        try:
            staff, identity = first_look(s, "wechat", "oKnown")
        finally:
            stop()
        assert [w for w in seen if w != "BEGIN"] == ["SELECT"]  # one statement for both
        assert staff is None and identity is not None
        assert (identity.id, identity.display_name, identity.subscribed) == (ident, "王经理", True)
        # attached, clean, and what the ORM itself would hand out
        assert identity in s and not s.dirty
        assert s.get(ChannelIdentity, ident) is identity
        # passed on, it is not read again, and a change to it is written
        again, created = identity_of(s, "wechat", "oKnown", found=identity)
        assert again is identity and not created
        identity.display_name = "王总"
    with db.begin() as s:
        assert s.scalars(select(ChannelIdentity.display_name)).one() == "王总"


def test_an_identity_the_session_holds_is_not_replaced(db: Database) -> None:
    with db.begin() as s:
        held, _ = identity_of(s, "wechat", "oHeld")
        held.display_name = "未保存的改动"
        s.flush()
        _, identity = first_look(s, "wechat", "oHeld")
        assert identity is held


def test_staff_are_recognised_only_while_active(
    db: Database, make_commissioner: Callable[..., Commissioner]
) -> None:
    staff = make_commissioner("张三", "市场监管局", bindings=(("wechat", "oStaff"),))
    with db.begin() as s:
        found_staff, identity = first_look(s, "wechat", "oStaff")
        assert found_staff is not None and identity is None
        assert (found_staff.id, found_staff.name) == (staff.id, "张三")
        assert first_look(s, "telegram", "oStaff") == (None, None)  # another channel
        found = commissioner_of(s, "wechat", "oStaff")
        assert found is not None and found.name == "张三"
        s.get_one(Commissioner, staff.id).active = False
    with db.begin() as s:
        assert first_look(s, "wechat", "oStaff") == (None, None)
        assert commissioner_of(s, "wechat", "oStaff") is None
