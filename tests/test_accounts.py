"""Console accounts (passwords, lockout, sessions, links), the audit trail and the scope rules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from handoff import audit
from handoff.accounts import (
    AccountInactive,
    AccountLocked,
    Accounts,
    AmbiguousName,
    Argon2Settings,
    BadCredentials,
    ConsoleAccount,
    ConsoleSession,
    ConsoleSettings,
    LinkInvalid,
    PasswordPolicyError,
    Staff,
    csrf_for,
    hash_token,
    load_console_settings,
)
from handoff.audit import AuditAction, AuditEvent, AuditImmutable
from handoff.db import Database
from handoff.models import Commissioner, CommissionerRole, Ticket, TicketDepartment
from handoff.scope import (
    Act,
    NotAllowed,
    OutOfScope,
    Relation,
    can,
    can_manage_accounts,
    can_see,
    relation,
    require,
    visible_filter,
    visible_ticket,
)
from handoff.tickets import Action, TicketNotFound, TicketService, TicketView
from tests.conftest import MovableClock
from yxby import paths
from yxby.errors import ConfigError

PASSWORD = "gangkou-2026!"
CHEAP = ConsoleSettings(argon2=Argon2Settings(time_cost=1, memory_kib=64, parallelism=1))
"""The shipped rules with a cheap hash, so the tests run fast."""


@pytest.fixture
def accounts(db: Database, clock: MovableClock) -> Accounts:
    return Accounts(db.sessions, clock, CHEAP)


@pytest.fixture
def person(make_commissioner: Callable[..., Commissioner], accounts: Accounts) -> Commissioner:
    """张敏 of 市场监管局 with the password :data:`PASSWORD`."""
    someone = make_commissioner("张敏", "市场监管局")
    accounts.set_password(someone.id, PASSWORD)
    return someone


def events(db: Database, action: str | None = None) -> list[AuditEvent]:
    with db.sessions() as session:
        rows = audit.recent(session, action=action)
        session.expunge_all()
        return list(reversed(rows))


# ----------------------------------------------------------------------------- settings


def test_shipped_console_settings() -> None:
    settings = load_console_settings(paths.PROJECT_ROOT / "config" / "console.yaml")
    assert (settings.sign_in.max_failures, settings.sign_in.lock_minutes) == (5, 15)
    assert (settings.session.idle_minutes, settings.session.absolute_hours) == (30, 12)
    assert settings.password.min_length == 10


def test_a_bad_console_setting_names_its_key(tmp_path: Path) -> None:
    path = tmp_path / "console.yaml"
    path.write_text("sign_in:\n  max_failures: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_console_settings(path)
    assert "max_failures" in str(info.value)
    assert ":2" in str(info.value)


# ---------------------------------------------------------------------------- passwords


def test_password_is_stored_as_an_argon2id_hash(db: Database, person: Commissioner) -> None:
    with db.sessions() as session:
        account = session.get(ConsoleAccount, person.id)
        assert account is not None and account.password_hash is not None
        assert account.password_hash.startswith("$argon2id$")
        assert PASSWORD not in account.password_hash
    assert [e.actor for e in events(db, AuditAction.PASSWORD_SET)] == ["张敏"]


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1!", "至少需要 10 个字符"),
        ("1234567890123", "不能全是数字"),
        (" leading-space-pw", "首尾不能是空格"),
        ("aaaaaaaaaaaa", "同一个字符"),
        ("x" * 129 + "y", "不能超过 128 个字符"),
    ],
)
def test_password_policy_speaks_chinese(
    accounts: Accounts, person: Commissioner, password: str, message: str
) -> None:
    with pytest.raises(PasswordPolicyError, match=message):
        accounts.set_password(person.id, password)
    accounts.sign_in("张敏", PASSWORD)  # the old password still works


def test_a_good_password_passes_the_policy(accounts: Accounts) -> None:
    accounts.check_policy("港口服务2026好的")
    accounts.check_policy("correct horse battery")


# ------------------------------------------------------------------------------ sign-in


def test_sign_in_opens_a_session_stored_hashed(
    db: Database, accounts: Accounts, person: Commissioner
) -> None:
    result = accounts.sign_in("张敏", PASSWORD, ip="10.0.0.8", user_agent="Chromium")
    assert result.staff == Staff(
        id=person.id,
        name="张敏",
        department="市场监管局",
        role=CommissionerRole.COMMISSIONER,
        session_id=result.staff.session_id,
        csrf=csrf_for(result.token),
    )
    with db.sessions() as session:
        row = session.scalars(select(ConsoleSession)).one()
        assert row.token_hash == hash_token(result.token) != result.token
        assert (row.ip, row.user_agent) == ("10.0.0.8", "Chromium")
    assert accounts.staff_for(result.token) == result.staff
    signed = events(db, AuditAction.SIGN_IN)
    assert [(e.actor, e.ip, e.commissioner_id) for e in signed] == [("张敏", "10.0.0.8", person.id)]


def test_unknown_name_and_wrong_password_read_the_same(
    db: Database, accounts: Accounts, person: Commissioner
) -> None:
    with pytest.raises(BadCredentials) as wrong:
        accounts.sign_in("张敏", "not-the-password")
    with pytest.raises(BadCredentials) as unknown:
        accounts.sign_in("无此人", "not-the-password")
    assert str(wrong.value) == str(unknown.value)
    assert "姓名或密码不正确" in str(wrong.value)
    failed = events(db, AuditAction.SIGN_IN_FAILED)
    assert [(e.actor, e.detail["reason"]) for e in failed] == [
        ("张敏", "wrong_password"),
        (audit.ANONYMOUS, "unknown_name"),
    ]
    assert failed[1].detail["name"] == "无此人"


def test_no_password_yet_cannot_sign_in(
    accounts: Accounts, make_commissioner: Callable[..., Commissioner]
) -> None:
    make_commissioner("王芳", "商务局")
    with pytest.raises(BadCredentials):
        accounts.sign_in("王芳", "")


def test_five_failures_lock_the_account_for_fifteen_minutes(
    db: Database, accounts: Accounts, person: Commissioner, clock: MovableClock
) -> None:
    for _ in range(4):
        with pytest.raises(BadCredentials):
            accounts.sign_in("张敏", "wrong-password")
    with pytest.raises(AccountLocked) as fifth:
        accounts.sign_in("张敏", "wrong-password")
    assert fifth.value.just_locked
    assert fifth.value.until == clock() + timedelta(minutes=15)
    assert "账号已锁定" in str(fifth.value) and "10:15" in str(fifth.value)  # Shanghai time
    assert accounts.locked_until(person.id) == fifth.value.until

    clock.advance(minutes=14, seconds=59)
    with pytest.raises(AccountLocked) as right_password:  # even the right one, while locked
        accounts.sign_in("张敏", PASSWORD)
    assert not right_password.value.just_locked
    assert right_password.value.until == fifth.value.until

    clock.advance(seconds=1)
    assert accounts.locked_until(person.id) is None
    assert accounts.sign_in("张敏", PASSWORD).staff.id == person.id
    locked = events(db, AuditAction.LOCKED)
    assert len(locked) == 1 and locked[0].detail["minutes"] == 15


def test_a_success_resets_the_failure_count(accounts: Accounts, person: Commissioner) -> None:
    for _ in range(4):
        with pytest.raises(BadCredentials):
            accounts.sign_in("张敏", "wrong-password")
    accounts.sign_in("张敏", PASSWORD)
    for _ in range(4):
        with pytest.raises(BadCredentials):
            accounts.sign_in("张敏", "wrong-password")
    assert accounts.locked_until(person.id) is None


def test_failures_are_counted_per_account(
    accounts: Accounts, person: Commissioner, make_commissioner: Callable[..., Commissioner]
) -> None:
    other = make_commissioner("王芳", "商务局")
    accounts.set_password(other.id, PASSWORD)
    for _ in range(4):
        for name in ("张敏", "王芳"):
            with pytest.raises(BadCredentials):
                accounts.sign_in(name, "wrong-password")
    with pytest.raises(AccountLocked):
        accounts.sign_in("张敏", "wrong-password")
    assert accounts.locked_until(other.id) is None
    accounts.sign_in("王芳", PASSWORD)


def test_clashing_names_need_the_department(
    accounts: Accounts, person: Commissioner, make_commissioner: Callable[..., Commissioner]
) -> None:
    namesake = make_commissioner("张敏", "商务局")
    accounts.set_password(namesake.id, "another-password")
    with pytest.raises(AmbiguousName) as info:
        accounts.sign_in("张敏", PASSWORD)
    assert set(info.value.departments) == {"市场监管局", "商务局"}
    assert accounts.sign_in("张敏", PASSWORD, department="市场监管局").staff.id == person.id
    assert accounts.sign_in("张敏", "another-password", department="商务局").staff.id == namesake.id


def test_inactive_people_cannot_sign_in_and_their_sessions_end(
    db: Database, accounts: Accounts, person: Commissioner
) -> None:
    first = accounts.sign_in("张敏", PASSWORD)
    second = accounts.sign_in("张敏", PASSWORD)
    assert accounts.deactivate(person.id, by="管理员") == 2
    assert accounts.staff_for(first.token) is None
    assert accounts.staff_for(second.token) is None
    with pytest.raises(AccountInactive, match="已停用"):
        accounts.sign_in("张敏", PASSWORD)
    with pytest.raises(BadCredentials):  # a wrong password learns nothing about the state
        accounts.sign_in("张敏", "wrong-password")
    assert [e.detail["sessions_ended"] for e in events(db, AuditAction.DEACTIVATED)] == [2]


def test_a_session_of_a_person_deactivated_elsewhere_stops_working(
    db: Database, accounts: Accounts, person: Commissioner
) -> None:
    token = accounts.sign_in("张敏", PASSWORD).token
    with db.begin() as session:
        found = session.get(Commissioner, person.id)
        assert found is not None
        found.active = False
    assert accounts.staff_for(token) is None


# ---------------------------------------------------------------------------- sessions


def test_an_idle_session_ends_after_thirty_minutes(
    db: Database, accounts: Accounts, person: Commissioner, clock: MovableClock
) -> None:
    token = accounts.sign_in("张敏", PASSWORD).token
    clock.advance(minutes=29)
    assert accounts.staff_for(token) is not None  # use moves the idle clock on
    clock.advance(minutes=29)
    assert accounts.staff_for(token) is not None
    clock.advance(minutes=30)
    assert accounts.staff_for(token) is None
    with db.sessions() as session:
        row = session.scalars(select(ConsoleSession)).one()
        assert (row.end_reason, row.ended_at) == ("idle", clock())
    clock.advance(minutes=1)
    assert accounts.staff_for(token) is None


def test_a_busy_session_still_ends_after_twelve_hours(
    accounts: Accounts, person: Commissioner, clock: MovableClock
) -> None:
    token = accounts.sign_in("张敏", PASSWORD).token
    for _ in range(12 * 3 - 1):
        clock.advance(minutes=20)
        assert accounts.staff_for(token) is not None
    clock.advance(minutes=20)
    assert accounts.staff_for(token) is None


def test_sign_out_ends_only_that_session(
    db: Database, accounts: Accounts, person: Commissioner
) -> None:
    here = accounts.sign_in("张敏", PASSWORD).token
    there = accounts.sign_in("张敏", PASSWORD).token
    assert accounts.sign_out(here, ip="10.0.0.8")
    assert not accounts.sign_out(here)
    assert accounts.staff_for(here) is None
    assert accounts.staff_for(there) is not None
    assert [(e.actor, e.ip) for e in events(db, AuditAction.SIGN_OUT)] == [("张敏", "10.0.0.8")]


def test_revocation_ends_every_session_of_the_person(
    accounts: Accounts, person: Commissioner, make_commissioner: Callable[..., Commissioner]
) -> None:
    other = make_commissioner("王芳", "商务局")
    accounts.set_password(other.id, PASSWORD)
    mine = [accounts.sign_in("张敏", PASSWORD).token for _ in range(3)]
    theirs = accounts.sign_in("王芳", PASSWORD).token
    assert accounts.revoke_all(person.id, reason="lost_laptop") == 3
    assert [accounts.staff_for(t) for t in mine] == [None, None, None]
    assert accounts.staff_for(theirs) is not None
    assert accounts.open_sessions(person.id) == []


def test_a_new_password_ends_the_open_sessions(accounts: Accounts, person: Commissioner) -> None:
    token = accounts.sign_in("张敏", PASSWORD).token
    accounts.set_password(person.id, "a-brand-new-one")
    assert accounts.staff_for(token) is None
    with pytest.raises(BadCredentials):
        accounts.sign_in("张敏", PASSWORD)
    accounts.sign_in("张敏", "a-brand-new-one")


def test_a_forged_token_is_nobody(accounts: Accounts, person: Commissioner) -> None:
    accounts.sign_in("张敏", PASSWORD)
    assert accounts.staff_for("forged") is None
    assert accounts.staff_for("") is None
    assert accounts.staff_for(None) is None


# ----------------------------------------------------------------------- password links


def test_a_set_password_link_works_once(
    db: Database, accounts: Accounts, make_commissioner: Callable[..., Commissioner]
) -> None:
    newcomer = make_commissioner("王芳", "商务局")
    code = accounts.create_link(newcomer.id, by="李娜")
    assert accounts.link_owner(code).name == "王芳"
    with pytest.raises(PasswordPolicyError):
        accounts.use_link(code, "123")
    accounts.use_link(code, PASSWORD, ip="10.0.0.9")  # the failed try did not spend it
    accounts.sign_in("王芳", PASSWORD)
    with pytest.raises(LinkInvalid, match="已使用"):
        accounts.use_link(code, "yet-another-password")
    with pytest.raises(LinkInvalid, match="已使用"):
        accounts.link_owner(code)
    set_events = events(db, AuditAction.PASSWORD_SET)
    assert [(e.detail["via"], e.detail["by"], e.ip) for e in set_events] == [
        ("link", "李娜", "10.0.0.9")
    ]


def test_a_link_expires_and_a_newer_one_replaces_it(
    accounts: Accounts, make_commissioner: Callable[..., Commissioner], clock: MovableClock
) -> None:
    newcomer = make_commissioner("王芳", "商务局")
    old = accounts.create_link(newcomer.id)
    new = accounts.create_link(newcomer.id, valid_for=timedelta(hours=1))
    with pytest.raises(LinkInvalid, match="取代"):
        accounts.link_owner(old)
    clock.advance(hours=1)
    with pytest.raises(LinkInvalid, match="过期"):
        accounts.use_link(new, PASSWORD)
    with pytest.raises(LinkInvalid, match="无效"):
        accounts.link_owner("made-up")


def test_no_link_for_an_inactive_person(
    accounts: Accounts, make_commissioner: Callable[..., Commissioner]
) -> None:
    newcomer = make_commissioner("王芳", "商务局")
    code = accounts.create_link(newcomer.id)
    accounts.deactivate(newcomer.id)
    with pytest.raises(LinkInvalid, match="已停用"):
        accounts.use_link(code, PASSWORD)


# -------------------------------------------------------------------------------- audit


def test_audit_events_are_append_only(
    db: Database, accounts: Accounts, person: Commissioner
) -> None:
    accounts.sign_in("张敏", PASSWORD)
    with pytest.raises(AuditImmutable), db.begin() as session:
        row = session.scalars(select(AuditEvent)).first()
        assert row is not None
        row.actor = "someone else"
    with pytest.raises(AuditImmutable), db.begin() as session:
        row = session.scalars(select(AuditEvent)).first()
        session.delete(row)


# -------------------------------------------------------------------------------- scope


def _ticket(department: str, *, helpers: tuple[str, ...] = (), holder: int | None = None) -> Ticket:
    ticket = Ticket(number="YX-TEST", department=department, commissioner_id=holder)
    ticket.helpers = [TicketDepartment(department=d) for d in helpers]
    return ticket


def _staff(role: CommissionerRole, department: str = "市场监管局", id: int = 1) -> Staff:
    return Staff(id=id, name="某人", department=department, role=role)


R = CommissionerRole


def test_a_commissioner_handles_own_department_tickets() -> None:
    me = _staff(R.COMMISSIONER)
    ticket = _ticket("市场监管局")
    assert relation(me, ticket) is Relation.LEAD
    for act in (Act.VIEW, Act.ACCEPT, Act.PROGRESS, Act.REPLY, Act.TRANSFER, Act.RESOLVE):
        assert can(me, act, ticket), act
    assert can(me, Action.ESCALATE, ticket)  # a tickets.Action is accepted as well
    assert not can(me, Act.ASSIGN, ticket)
    assert not can(me, Act.URGE, ticket)


def test_a_commissioner_of_another_department_sees_nothing() -> None:
    ticket = _ticket("市场监管局")
    stranger = _staff(R.COMMISSIONER, "商务局")
    assert relation(stranger, ticket) is Relation.NONE
    assert not can_see(stranger, ticket)
    with pytest.raises(OutOfScope) as info:
        require(stranger, Act.ACCEPT, ticket)
    assert isinstance(info.value, TicketNotFound)
    assert str(info.value) == str(TicketNotFound("YX-TEST"))  # not revealed


def test_a_co_handling_department_reads_and_acknowledges_only() -> None:
    ticket = _ticket("市场监管局", helpers=("商务局",))
    helper = _staff(R.COMMISSIONER, "商务局")
    assert relation(helper, ticket) is Relation.HELPER
    assert can_see(helper, ticket)
    assert can(helper, Act.ACKNOWLEDGE, ticket) and can(helper, Act.NOTE, ticket)
    for act in (Act.ACCEPT, Act.RESOLVE, Act.TRANSFER, Act.REPLY):
        assert not can(helper, act, ticket), act
    with pytest.raises(NotAllowed, match="无权"):
        require(helper, Act.RESOLVE, ticket)


def test_the_holder_sees_the_ticket_whatever_the_department() -> None:
    ticket = _ticket("市场监管局", holder=7)
    assert can(_staff(R.COMMISSIONER, "招商局", id=7), Act.PROGRESS, ticket)


def test_a_head_may_also_assign() -> None:
    head = _staff(R.HEAD)
    assert can(head, Act.ASSIGN, _ticket("市场监管局"))
    assert not can_see(head, _ticket("商务局"))
    assert not can(head, Act.ASSIGN, _ticket("商务局", helpers=("市场监管局",)))


def test_oversight_reads_urges_and_escalates_every_ticket() -> None:
    overseer = _staff(R.OVERSIGHT, "政务办")
    ticket = _ticket("市场监管局")
    assert relation(overseer, ticket) is Relation.OVERSIGHT
    assert {a for a in Act if can(overseer, a, ticket)} == {
        Act.VIEW,
        Act.URGE,
        Act.ESCALATE,
        Act.DECIDE,
        Act.CALLBACK,
    }
    own = _ticket("政务办")  # 政务办 is also the 兜底 department: its own tickets it handles
    assert can(overseer, Act.ACCEPT, own) and can(overseer, Act.URGE, own)


def test_an_admin_manages_accounts_and_sees_no_ticket() -> None:
    admin = _staff(R.ADMIN, "政务办")
    assert can_manage_accounts(admin)
    assert not any(can_manage_accounts(_staff(r)) for r in R if r is not R.ADMIN)
    assert not can_see(admin, _ticket("政务办"))
    assert not can_see(admin, _ticket("市场监管局"))


@pytest.fixture
def tickets(
    make_ticket: Callable[..., TicketView], service: TicketService
) -> dict[str, TicketView]:
    own = make_ticket(department="市场监管局")
    helped = make_ticket("跨境电商出口退税咨询", department="商务局")
    helped = service.add_helpers(helped.number, departments=["市场监管局"], actor="王芳")
    other = make_ticket("高新技术企业认定", department="科技局")
    return {"own": own, "helped": helped, "other": other}


def _visible(db: Database, person: Staff) -> set[str]:
    with db.sessions() as session:
        stmt = select(Ticket.number).where(visible_filter(person))
        return set(session.scalars(stmt))


def test_the_queue_filter_matches_the_rules(db: Database, tickets: dict[str, TicketView]) -> None:
    numbers = {k: v.number for k, v in tickets.items()}
    market = _staff(R.COMMISSIONER, "市场监管局")
    assert _visible(db, market) == {numbers["own"], numbers["helped"]}
    assert _visible(db, _staff(R.HEAD, "商务局")) == {numbers["helped"]}
    assert _visible(db, _staff(R.OVERSIGHT, "政务办")) == set(numbers.values())
    assert _visible(db, _staff(R.ADMIN, "政务办")) == set()
    seen = _visible(db, market)
    with db.sessions() as session:  # the filter and the per-ticket rule agree
        for ticket in session.scalars(select(Ticket)):
            assert (ticket.number in seen) == can_see(market, ticket)


def test_visible_ticket_answers_not_found_outside_scope(
    db: Database, tickets: dict[str, TicketView]
) -> None:
    market = _staff(R.COMMISSIONER, "市场监管局")
    with db.sessions() as session:
        assert (
            visible_ticket(session, market, tickets["own"].number.lower()).department
            == "市场监管局"
        )
        assert visible_ticket(session, market, tickets["helped"].number).department == "商务局"
        with pytest.raises(OutOfScope) as hidden:
            visible_ticket(session, market, tickets["other"].number)
        with pytest.raises(OutOfScope) as missing:
            visible_ticket(session, market, "YX-20000101-0001")
    assert str(hidden.value) == f"找不到工单 {tickets['other'].number}"
    assert str(missing.value) == "找不到工单 YX-20000101-0001"
