"""Verified 绑定: a claim is 未核验 until a commissioner's one-time code or confirmation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.app import App
from handoff import binding
from handoff.models import (
    ChannelIdentity,
    Commissioner,
    CommissionerRole,
    Enterprise,
    Survey,
    Ticket,
)
from handoff.registry import add_commissioner, find_enterprise
from tests.chatting import VALID_USCC, Chat, file_ticket, register_enterprise
from tests.conftest import MovableClock, make_uscc


def _keeper(app: App, uscc: str = VALID_USCC, **kw: object) -> Commissioner:
    """A 包保 commissioner for the enterprise *uscc*."""
    with app.db.begin() as s:
        person = add_commissioner(
            s, name=str(kw.get("name", "李娜")), department=str(kw.get("department", "商务局")),
            phone=str(kw.get("phone", "022-25601234")), departments=app.router.departments,
            role=kw.get("role", CommissionerRole.COMMISSIONER),  # type: ignore[arg-type]
        )  # fmt: skip
        person.duties = str(kw.get("duties", "外资外贸政策、展会补贴申报"))
        enterprise = find_enterprise(s, uscc)
        assert enterprise is not None
        enterprise.commissioner_id = person.id
        s.flush()
        s.expunge(person)
        return person


def _code(app: App, person: Commissioner, uscc: str = VALID_USCC, **kw: object) -> str:
    with app.db.begin() as s:
        enterprise = find_enterprise(s, uscc)
        assert enterprise is not None
        code, _ = binding.create_code(s, enterprise, person, now=app.clock(), **kw)  # type: ignore[arg-type]
        return code


def _identity(app: App, user_key: str = "user-1") -> ChannelIdentity:
    with app.db.begin() as s:
        identity = s.scalars(
            select(ChannelIdentity).where(ChannelIdentity.user_key == user_key)
        ).one()
        s.expunge(identity)
        return identity


def test_claim_is_unverified_and_its_ticket_is_marked(app: App, chat: Chat) -> None:
    register_enterprise(app)
    person = _keeper(app)
    out = chat.send(f"绑定 {VALID_USCC}")
    assert "已绑定企业：天津示例科技有限公司" in out and "尚未核验" in out
    # 亮身份 right after binding
    assert "李娜（商务局）" in out and "022-25601234" in out and "展会补贴" in out
    assert _identity(app).verified_at is None
    file_ticket(chat)
    with app.db.begin() as s:
        ticket = s.scalars(select(Ticket)).one()
        assert ticket.enterprise is not None and ticket.enterprise.uscc == VALID_USCC
        assert ticket.unverified is True
    # the code proves it: the identity is verified and its ticket loses the mark
    code = _code(app, person)
    out = chat.send(f"核验 {code.lower()}")
    assert "核验成功" in out and "天津示例科技有限公司" in out
    identity = _identity(app)
    assert identity.verified_at is not None and identity.verified_how == "code"
    assert identity.verified_by == "李娜（商务局）"
    with app.db.begin() as s:
        assert s.scalars(select(Ticket.unverified)).one() is False
    file_ticket(chat)
    with app.db.begin() as s:
        assert sorted(s.scalars(select(Ticket.unverified))) == [False, False]


def test_bind_with_code_in_one_message(app: App, chat: Chat) -> None:
    register_enterprise(app)
    code = _code(app, _keeper(app))
    assert "核验成功" in chat.send(f"绑定 {VALID_USCC} {code}")
    assert "已核验绑定" in chat.send(f"绑定 {VALID_USCC}")
    # the same message delivered again (a redelivery) is answered the same
    assert "核验成功" in chat.send(f"核验 {code}")


def test_wrong_expired_and_reused_codes(app: App, chat: Chat, clock: MovableClock) -> None:
    register_enterprise(app)
    person = _keeper(app)
    code = _code(app, person)
    chat.send(f"绑定 {VALID_USCC}")
    out = chat.send("核验 ABCD-EFGH-JKMN")
    assert "核验码不正确" in out and "还可尝试 4 次" in out
    # the code of another chat: spent
    other = Chat(app, "user-2")
    assert "核验成功" in other.send(f"核验 {code}")
    assert "已被使用" in chat.send(f"核验 {code}")
    # an expired one
    late = _code(app, person, valid_for=timedelta(hours=1))
    clock.advance(hours=2)
    assert "已过期" in chat.send(f"核验 {late}")
    assert _identity(app).verified_at is None


def test_attempts_are_limited(app: App, chat: Chat, clock: MovableClock) -> None:
    register_enterprise(app)
    code = _code(app, _keeper(app))
    replies = [chat.send(f"核验 WRNG-CODE-{n:04d}") for n in range(binding.MAX_FAILURES)]
    assert "还可尝试 4 次" in replies[0]
    assert "输错次数过多" in replies[-1]
    # even the right code is refused while locked
    assert "输错次数过多" in chat.send(f"核验 {code}")
    assert _identity(app).verified_at is None
    clock.advance(hours=1, minutes=1)
    assert "核验成功" in chat.send(f"核验 {code}")


def test_commissioner_confirms_in_the_console_service(app: App, chat: Chat) -> None:
    register_enterprise(app)
    person = _keeper(app)
    chat.send(f"绑定 {VALID_USCC}")
    identity = _identity(app)
    stranger = Commissioner(id=999, name="王五", department="财政局",
                            role=CommissionerRole.COMMISSIONER)  # fmt: skip
    with app.db.begin() as s:
        enterprise = find_enterprise(s, VALID_USCC)
        assert enterprise is not None
        with pytest.raises(binding.BindingError, match="只有"):
            binding.confirm(s, enterprise, identity.id, stranger, now=app.clock())
        binding.confirm(s, enterprise, identity.id, person, now=app.clock())
        views = binding.identities_of(s, enterprise.id)
        assert [(v.verified, v.how_label) for v in views] == [(True, "专员确认")]


def test_one_identity_one_enterprise_and_several_identities_per_enterprise(
    app: App, chat: Chat
) -> None:
    register_enterprise(app)
    register_enterprise(app, make_uscc(777), "天津另一家有限公司")
    code = _code(app, _keeper(app))
    chat.send(f"核验 {code}")
    # verified for one enterprise: a bare claim cannot move it
    out = chat.send(f"绑定 {make_uscc(777)}")
    assert "已核验绑定天津示例科技有限公司" in out
    assert _identity(app).verified_at is not None
    colleague = Chat(app, "user-2")
    assert "已绑定企业" in colleague.send(f"绑定 {VALID_USCC}")
    with app.db.begin() as s:
        enterprise = find_enterprise(s, VALID_USCC)
        assert enterprise is not None
        assert len(binding.identities_of(s, enterprise.id)) == 2


def test_unverified_ratings_are_flagged(app: App, chat: Chat, staff: Callable[..., Chat]) -> None:
    register_enterprise(app)
    chat.send(f"绑定 {VALID_USCC}")
    number = file_ticket(chat)
    with app.db.begin() as s:
        department = s.scalars(select(Ticket.department)).one()
    officer = staff("王芳", department)
    officer.send(f"办结 {number} 已修复")
    chat.pushes()
    chat.send("满意")
    with app.db.begin() as s:
        survey = s.scalars(select(Survey)).one()
        assert survey.unverified is True


def test_only_keepers_hand_out_codes(app: App) -> None:
    register_enterprise(app)
    _keeper(app)
    with app.db.begin() as s:
        enterprise = s.scalars(select(Enterprise)).one()
        head = Commissioner(id=998, name="赵", department="商务局", role=CommissionerRole.HEAD)
        other_head = Commissioner(id=997, name="钱", department="财政局",
                                  role=CommissionerRole.HEAD)  # fmt: skip
        assert binding.can_verify(head, enterprise)
        assert not binding.can_verify(other_head, enterprise)
        with pytest.raises(binding.BindingError):
            binding.create_code(s, enterprise, other_head, now=app.clock())
