"""Regression tests for the faults a new user hit (one section per fault of the issue).

Each test drives the real engine with plain strings on SQLite, and on PostgreSQL when
``YXBY_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from bot.app import App
from bot.channels.terminal import TerminalChat
from bot.dialogue import TRANSITIONS, State
from handoff.conversations import DialogueTurn, LiveHandoff, LiveHandoffState, TurnOutcome
from handoff.models import (
    ClockKind,
    CommissionerRole,
    OutboxMessage,
    OutboxStatus,
    SlaClock,
    Ticket,
    TicketEvent,
    TicketState,
    TranscriptLine,
)
from handoff.sla import tick
from tests.chatting import Chat, count, file_ticket
from tests.conftest import MovableClock

# ------------------------------------------------------------------ the transition table


def test_no_state_may_go_anywhere() -> None:
    every = frozenset(State)
    assert set(TRANSITIONS) == every
    for source, targets in TRANSITIONS.items():
        assert targets < every, f"{source} may go anywhere"
    # a live chat is entered only from the wait, and left only to idle
    assert [s for s in State if State.WITH_PERSON in TRANSITIONS[s]] == [
        State.WAITING,
        State.WITH_PERSON,
    ]
    assert TRANSITIONS[State.WITH_PERSON] == {State.IDLE, State.WITH_PERSON}


# ---------------------------------------------- 1. a result from a chat meets its clock


def test_result_from_a_chat_meets_the_feedback_clock(
    app: App, chat: Chat, staff: Callable[..., Chat], clock: MovableClock
) -> None:
    number = file_ticket(chat)
    with app.db.begin() as session:
        department = session.scalars(select(Ticket.department)).one()
    officer = staff("王芳", department)
    officer.send(f"办结 {number} 已协调物业完成维修")
    with app.db.begin() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.state is TicketState.FEEDBACK_SENT
        feedback = [c for c in ticket.clocks if c.kind is ClockKind.FEEDBACK]
        assert len(feedback) == 1 and feedback[0].met_at is not None
    chat.last = chat.pushes()
    chat.tap("满意")
    report = tick(app.db.sessions, clock.advance(days=30), app.sla)
    assert report.breaches == 0
    with app.db.begin() as session:
        assert count(app, OutboxMessage, OutboxMessage.kind == "sla_overdue") == 0
        breached = session.scalars(select(SlaClock).where(SlaClock.breached_at.is_not(None)))
        assert list(breached) == []


# ------------------------------------------------ 2. the acting commissioner is recorded


def test_accept_and_resolve_from_a_chat_record_who_acted(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    first = file_ticket(chat)
    second = file_ticket(chat, "园区北侧道路井盖破损无人维修，运输车辆进出存在安全隐患")
    with app.db.begin() as session:
        departments = set(session.scalars(select(Ticket.department)))
    assert len(departments) == 1
    department = departments.pop()
    officer = staff("王芳", department)
    officer.send(f"签收 {first}")
    other = staff("赵强", department)
    other.send(f"办结 {second} 已联系交管部门修复")
    assert app.tickets.get(first).commissioner == "王芳"
    view = app.tickets.get(second)
    assert view.commissioner == "赵强"
    assert any(e.data.get("commissioner") == "赵强" for e in view.events)


# -------------------------------------- 3. a department with nobody bound is not silent


def test_new_ticket_reaches_the_head_when_the_department_has_no_commissioner(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    number = file_ticket(chat)
    department = app.tickets.get(number).department
    # nobody of the department was bound when it was filed: 政务办 hears of it
    overseer = staff("陈刚", "政务办", CommissionerRole.OVERSIGHT)
    head = staff("孙丽", department, CommissionerRole.HEAD)
    second = file_ticket(chat, "园区北侧道路井盖破损无人维修，运输车辆进出存在安全隐患")
    notices = head.pushes()
    assert any(second in n.text and "负责人" in n.text for n in notices)
    assert not any(second in n.text for n in overseer.pushes())
    assert number != second


def test_new_ticket_reaches_oversight_when_the_department_has_nobody(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    overseer = staff("陈刚", "政务办", CommissionerRole.OVERSIGHT)
    number = file_ticket(chat)
    department = app.tickets.get(number).department
    assert department != "政务办"
    notices = overseer.pushes()
    assert any(number in n.text and "政务办跟进" in n.text for n in notices)


# ------------------------------------------- 4. a request for a person expires anywhere


def test_a_waiting_request_expires_in_the_terminal_chat(
    app: App, staff: Callable[..., Chat], clock: MovableClock
) -> None:
    staff("李娜", "政务办")
    out = io.StringIO()
    term = TerminalChat(app, user_key="demo-enterprise", out=out)
    term.send("转人工")
    assert "正在为您联系" in out.getvalue()
    assert term.tick() == 0  # nothing yet
    clock.advance(minutes=app.dialogue_settings.handoff_wait_minutes + 1)
    assert term.tick() == 1  # the poller of an open chat files the ticket and prints it
    assert "暂时没有专员接入，已为您登记诉求 YX-" in out.getvalue()
    with app.db.begin() as session:
        handoff = session.scalars(select(LiveHandoff)).one()
        assert handoff.state is LiveHandoffState.EXPIRED and handoff.ticket_id is not None
    # the conversation is idle again: a question is answered, not "still waiting"
    replies = term.send("营业执照丢了怎么补办")
    assert "依据：" in replies[0].text


def test_a_waiting_request_expires_on_the_next_message_of_anyone(
    app: App, chat: Chat, staff: Callable[..., Chat], clock: MovableClock
) -> None:
    staff("李娜", "政务办")
    chat.send("转人工")
    clock.advance(minutes=app.dialogue_settings.handoff_wait_minutes + 1)
    Chat(app, "someone-else").send("你好")
    assert count(app, Ticket) == 1
    assert any("已为您登记诉求" in p.text for p in chat.pushes())


# ---------------------------------------------- 5. after 不满意: why, and who is told


def test_unsatisfied_asks_why_and_tells_the_commissioner(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    number = file_ticket(chat)
    officer = staff("王芳", app.tickets.get(number).department)
    officer.send(f"签收 {number}")
    officer.send(f"办结 {number} 已协调物业")
    officer.pushes()
    chat.last = chat.pushes()
    out = chat.tap("不满意")
    assert "已重新交办" in out and "哪里不满意" in out
    heard = officer.pushes()
    assert any("【重办】" in n.text and number in n.text for n in heard)
    assert "转告" in chat.send("物业只是看了一眼，路灯到现在还是不亮")
    told = officer.pushes()
    assert any(number in n.text and "路灯到现在还是不亮" in n.text for n in told)
    view = app.tickets.get(number)
    assert view.state is TicketState.NEW and view.reopen_count == 1
    assert view.surveys[-1].comment == "物业只是看了一眼，路灯到现在还是不亮"


def test_second_unsatisfied_really_reports_to_oversight(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    overseer = staff("陈刚", "政务办", CommissionerRole.OVERSIGHT)
    number = file_ticket(chat)
    officer = staff("王芳", app.tickets.get(number).department)
    for result in ("已协调物业", "已更换灯具"):
        officer.send(f"签收 {number}")
        officer.send(f"办结 {number} {result}")
        chat.last = chat.pushes()
        out = chat.tap("不满意")
    assert "报政务办" in out
    assert app.tickets.get(number).state is TicketState.CLOSED
    reports = [n for n in overseer.pushes() if "【不满意通报】" in n.text]
    assert len(reports) == 1 and number in reports[0].text and "王芳" in reports[0].text


# -------------------------------------------------------------- 6. filing a ticket


def _to_summary(chat: Chat) -> str:
    chat.send("提交诉求")
    chat.send("园区道路路灯损坏三个月无人维修，夜间运输车辆进出存在安全隐患")
    chat.send("天津示例物流有限公司")
    return chat.send("13800138000")


def test_the_summary_lets_the_user_correct_every_detail(app: App, chat: Chat) -> None:
    summary = _to_summary(chat)
    assert "请确认诉求信息" in summary
    labels = [b.label for r in chat.last for b in r.buttons]
    assert labels == ["确认提交", "补充说明", "修改企业", "修改电话", "取消"]
    # a new phone in the same message
    out = chat.send("修改电话 022-12345678")
    assert "请确认诉求信息" in out and "022-12345678" in out
    # an addition in the next message
    assert "补充" in chat.tap("补充说明")
    out = chat.send("北侧大门附近的三盏灯完全不亮")
    assert "北侧大门附近的三盏灯完全不亮" in out and "请确认诉求信息" in out
    # another enterprise; a bad phone keeps the draft
    out = chat.send("修改企业")
    assert "企业的名称" in out
    out = chat.send("天津另一家物流有限公司")
    assert "天津另一家物流有限公司" in out and "天津示例物流有限公司" not in out
    assert "不像有效的电话号码" in chat.send("修改电话 12345")
    out = chat.send("13900139000")
    assert "13900139000" in out and "请确认诉求信息" in out
    out = chat.send("修改诉求 园区北门路灯全部损坏，夜间货车进出有安全隐患，请尽快维修")
    assert "园区北门路灯全部损坏" in out and "三个月无人维修" not in out
    done = chat.tap("确认提交")
    assert "诉求已登记" in done
    with app.db.begin() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.description.startswith("园区北门路灯全部损坏")
        assert "13900139000" in ticket.description
        assert "天津另一家物流有限公司" in ticket.description


def test_new_ticket_does_not_reuse_a_mistyped_number_as_the_description(chat: Chat) -> None:
    out = chat.send("YX-2026112-00001")  # a mistyped ticket number: nothing matches it
    assert "是否为您登记诉求" in out
    out = chat.send("提交诉求")
    assert "请简要描述您的诉求" in out and "YX-2026112-00001" not in out
    out = chat.send("YX-2026-11-26")
    assert "看起来不是诉求内容" in out


def test_new_ticket_does_not_take_a_menu_word_as_the_description(chat: Chat) -> None:
    chat.send("提交诉求")
    for word in ("确认提交", "都不是", "YX-2026112-0001"):
        assert "看起来不是诉求内容" in chat.send(word), word
        chat.send("取消")  # three invalid answers would end the step
        chat.send("提交诉求")


def test_a_button_word_is_not_an_addition(app: App, chat: Chat) -> None:
    chat.send("营业执照丢了怎么补办")
    chat.tap("未解决")
    chat.tap("登记诉求")
    out = chat.send("确认提交")  # meant "just submit": no addition
    assert "统一社会信用代码" in out
    chat.send("天津示例物流有限公司")
    out = chat.send("13800138000")
    assert "补充说明" not in out.split("企业：")[0]


def test_a_short_question_is_kept_with_what_the_user_adds(app: App, chat: Chat) -> None:
    chat.send("路灯坏了")  # too short to be the description by itself
    out = chat.send("提交诉求")
    out = chat.send("园区北门三盏路灯已经坏了一个月，夜间货车进出很危险")
    if "企业" in out:
        out = chat.send("天津示例物流有限公司")
    if "联系电话" in out:
        chat.send("13800138000")
    chat.tap("确认提交")
    with app.db.begin() as session:
        description = session.scalars(select(Ticket.description)).one()
    assert "园区北门三盏路灯" in description


# ---------------------------------------------------------------------- 7. small talk


def test_greetings_and_thanks_get_a_short_reply_and_are_not_gaps(app: App, chat: Chat) -> None:
    for text in ("你好", "您好！", "谢谢", "好的", "在吗？"):
        out = chat.send(text)
        assert "企业服务知识库中暂时没有找到" not in out, text
        assert "是否为您登记诉求" not in out, text
        assert len(out) < 80, text
    with app.db.begin() as session:
        outcomes = set(session.scalars(select(DialogueTurn.outcome)))
    assert outcomes == {TurnOutcome.SMALLTALK}
    from handoff.reports import unanswered_turns  # the knowledge-gap report's query

    with app.db.begin() as session:
        assert unanswered_turns(session, app.clock() - timedelta(days=1)) == []


def test_thanks_never_means_file_a_ticket(app: App, chat: Chat) -> None:
    chat.send("明天会下雨吗")
    assert "是否为您登记诉求" in "\n".join(r.text for r in chat.last)
    out = chat.send("谢谢")
    assert "请简要描述" not in out and "统一社会信用代码" not in out
    assert count(app, Ticket) == 0


# ---------------------------------------------------------- 8. asking for a person


def test_complaints_and_transfer_requests_reach_a_person(
    app: App, staff: Callable[..., Chat]
) -> None:
    staff("李娜", "政务办")
    for text in ("你们办事效率太低了，我要投诉", "请帮我转接企业服务专员"):
        user = Chat(app, f"user-{len(text)}")
        assert "正在为您联系" in user.send(text), text


def test_nobody_contacted_me_urges_the_tickets_commissioner(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    number = file_ticket(chat)
    officer = staff("王芳", app.tickets.get(number).department)
    officer.send(f"签收 {number}")
    officer.pushes()
    out = chat.send("我提交的诉求三天了还没人联系我")
    assert f"已为您催办诉求 {number}" in out
    urges = [n for n in officer.pushes() if "【催办】" in n.text]
    assert len(urges) == 1 and number in urges[0].text
    assert any(e.kind == "urge" for e in app.tickets.get(number).events)


# ------------------------------------------------------------------------ 9. records


def test_transfer_notice_names_who_and_why(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    number = file_ticket(chat)
    source = app.tickets.get(number).department
    officer = staff("王芳", source)
    target = "商务局" if source != "商务局" else "科技局"
    receiver = staff("周涛", target)
    officer.send(f"转派 {number} {target} 属贸易业事项")
    notices = [n for n in receiver.pushes() if number in n.text]
    assert notices and "王芳" in notices[-1].text and "属贸易业事项" in notices[-1].text
    assert source in notices[-1].text


def test_transcript_shows_the_conversation_around_the_ticket(
    app: App, chat: Chat, staff: Callable[..., Chat], clock: MovableClock
) -> None:
    chat.send("社保怎么转移")  # an earlier, unrelated question
    clock.advance(hours=2)
    number = file_ticket(chat)
    clock.advance(minutes=5)
    chat.send("营业执照丢了怎么补办")  # after the ticket: still part of the conversation
    officer = staff("王芳", app.tickets.get(number).department)
    out = officer.send(f"对话 {number}")
    assert "园区道路路灯损坏" in out and "营业执照丢了怎么补办" in out
    assert "社保怎么转移" not in out


def test_button_taps_are_recorded_as_what_was_tapped(app: App, chat: Chat) -> None:
    _to_summary(chat)
    chat.tap("确认提交")
    with app.db.begin() as session:
        lines = list(session.scalars(select(TranscriptLine.text)))
        turns = list(session.scalars(select(DialogueTurn.text)))
    assert "确认提交" in lines and "确认提交" in turns
    assert not any(line.startswith("confirm:") for line in lines + turns)


def test_relayed_messages_carry_the_commissioners_name_and_department(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    officer = staff("李娜", "政务办")
    chat.send("转人工")
    officer.send("接入")
    chat.pushes()
    officer.send("您好，请问具体是什么问题？")
    relayed = chat.pushes()
    assert relayed[-1].text == "【李娜（政务办）】您好，请问具体是什么问题？"
    with app.db.begin() as session:
        lines = list(session.scalars(select(TranscriptLine.text)))
    assert "【李娜（政务办）】您好，请问具体是什么问题？" in lines  # as the enterprise saw it


def test_a_stale_request_is_not_delivered_to_a_commissioner_later(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    officer = staff("李娜", "政务办")
    chat.send("转人工")
    chat.send("取消")
    assert officer.pushes() == []  # the offer was withdrawn before anyone saw it
    with app.db.begin() as session:
        offer = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "handoff_offer")
        ).one()
        assert offer.status is OutboxStatus.CANCELLED
    # once taken, the other commissioners' offers are withdrawn too
    second = staff("周涛", "政务办")
    chat.send("转人工")
    assert "您已接入" in officer.send("接入")
    assert second.pushes() == []
    with app.db.begin() as session:
        events = list(session.scalars(select(TicketEvent)))
    assert events == []
