"""Scenario tests: the dialogue engine driven with plain strings through every path.

Each test runs on SQLite, and on PostgreSQL when ``YXBY_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from bot.app import App, AppSettings, build_app
from bot.types import Incoming, MessageKind
from handoff.conversations import DialogueTurn, LiveHandoff, TurnOutcome
from handoff.models import (
    Commissioner,
    Enterprise,
    OutboxMessage,
    Ticket,
    TicketEvent,
    TicketState,
)
from knowledge import KnowledgeBase
from tests.chatting import VALID_USCC, Chat, count, file_ticket, register_enterprise
from tests.conftest import MovableClock, make_uscc

# ----------------------------------------------------------------------------- answers


def test_answer_names_source_and_department_then_solved(app: App, chat: Chat) -> None:
    out = chat.send("12345热线能反映企业的问题吗")
    assert "12345" in out
    assert "依据：" in out and "责任部门：" in out
    assert "是否解决了您的问题？" in out
    assert chat.tap("已解决").startswith("很高兴帮到您")
    assert count(app, DialogueTurn, DialogueTurn.outcome == TurnOutcome.SOLVED) == 1


def test_vague_question_gets_numbered_choices_and_a_number_picks_one(chat: Chat) -> None:
    out = chat.send("发票")
    assert "您是不是想问" in out and "1." in out and "都不是" in out
    choices = chat.last[0].choices
    picked = chat.send("1")
    assert "是否解决了您的问题？" in picked
    assert choices[0]  # the first title was answered
    assert "依据" in picked


def test_number_not_among_choices_keeps_the_choices(chat: Chat) -> None:
    chat.send("发票")
    assert "没有第 9 项" in chat.send("9")
    assert "是否解决了您的问题？" in chat.send("2")


def test_none_of_these_offers_a_ticket(chat: Chat) -> None:
    chat.send("发票")
    count_choices = len(chat.last[0].choices)
    assert "是否为您登记诉求" in chat.send(str(count_choices))


def test_bare_number_without_choices(chat: Chat) -> None:
    assert "没有待选择的选项" in chat.send("2")


def test_chit_chat_gets_no_policy_answer(chat: Chat) -> None:
    for text in ("明天会下雨吗", "给我讲个笑话", "比特币现在多少钱"):
        out = chat.send(text)
        assert "依据：" not in out, text


# ------------------------------------------------------------------------------ tickets


def test_unsolved_becomes_a_ticket_after_details(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    officer = staff("张敏", "市场监管局")
    chat.send("营业执照丢了怎么补办")
    assert "是否为您登记诉求" in chat.tap("未解决")
    out = chat.tap("登记诉求")
    # the answer did not settle it: the user is asked what is still missing
    assert "营业执照丢了怎么补办" in out and "补充" in out
    out = chat.send("原件在外地遗失，能否线上补办并邮寄")
    assert "统一社会信用代码" in out
    assert "不是有效的统一社会信用代码" in chat.send("91120116MA05L8XY3B")
    assert "企业全称" in chat.send("12345678")
    assert "联系电话" in chat.send("天津示例贸易有限公司")
    assert "不像有效的电话号码" in chat.send("12345")
    out = chat.send("138 0013 8000")
    assert "请确认诉求信息" in out and "13800138000" in out and "天津示例贸易有限公司" in out
    assert "承办部门：市场监管局" in out
    done = chat.tap("确认提交")
    assert "诉求已登记，编号 YX-" in done
    assert "承办部门：市场监管局" in done
    assert "前与您联系" in done and "前反馈办理结果" in done
    with app.db.begin() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.state is TicketState.NEW
        assert ticket.channel_identity is not None
        assert ticket.channel_identity.contact_phone == "13800138000"
        assert "天津示例贸易有限公司" in ticket.description
        # the ticket holds the question and what the user added (fault 6)
        assert ticket.description.startswith("营业执照丢了怎么补办\n补充说明：原件在外地遗失")
        assert ticket.route_rule == "knowledge"
        number = ticket.number
    # the commissioner of the department is told, with action buttons
    notices = officer.pushes()
    assert any(number in n.text and any(b.label == "签收" for b in n.buttons) for n in notices)


def test_short_question_asks_for_a_description_and_cancel_leaves(app: App, chat: Chat) -> None:
    chat.send("提交诉求")
    assert "至少 10 个字" in chat.last[0].text
    assert "补充" in chat.send("太慢了")
    assert chat.send("取消").startswith("已取消")
    assert count(app, Ticket) == 0
    assert chat.send("取消").startswith("当前没有进行中的操作")


def test_too_many_invalid_answers_leave_the_step(chat: Chat) -> None:
    # straight into filing: what the knowledge base makes of a question is not the point here
    chat.send("提交诉求")
    chat.send("我们的出口退税申请提交两个月了一直没有结果")
    chat.send("天津示例贸易有限公司")
    for _ in range(2):
        assert "不像有效的电话号码" in chat.send("不告诉你")
    assert "已退出本次登记" in chat.send("还是不告诉你")


def test_bound_enterprise_is_not_asked_again(app: App, chat: Chat) -> None:
    register_enterprise(app)
    assert "不是有效的统一社会信用代码" in chat.send("绑定 911201160000000000")
    assert "已绑定企业：天津示例科技有限公司" in chat.send(f"绑定 {VALID_USCC.lower()}")
    chat.send("提交诉求")
    out = chat.send("我们申报的高新技术企业认定材料被退回，想了解具体原因")
    assert "联系电话" in out  # enterprise already known: straight to the phone
    out = chat.send("022-12345678")
    assert "天津示例科技有限公司" in out and VALID_USCC in out
    assert "诉求已登记" in chat.tap("确认提交")
    with app.db.begin() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.enterprise is not None and ticket.enterprise.uscc == VALID_USCC


def test_registered_enterprise_found_by_its_exact_name(app: App, chat: Chat) -> None:
    register_enterprise(app)
    chat.send("提交诉求")
    chat.send("我们申报的高新技术企业认定材料被退回，想了解具体原因")
    out = chat.send("天津示例科技有限公司")
    assert "联系电话" in out
    out = chat.send("13800138000")
    assert VALID_USCC in out
    chat.tap("确认提交")
    with app.db.begin() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.enterprise is not None and ticket.enterprise.uscc == VALID_USCC


def test_bind_unknown_enterprise(chat: Chat) -> None:
    assert "暂未找到" in chat.send(f"绑定 {make_uscc(999)}")
    assert "请回复“绑定 统一社会信用代码”" in chat.send("绑定")


def test_progress_query_lists_own_tickets_only(app: App, chat: Chat) -> None:
    assert "还没有诉求记录" in chat.send("查询")
    number = file_ticket(chat)
    other = Chat(app, "user-2")
    assert "没有找到编号为" in other.send(number)
    listing = chat.send("进度")
    assert number in listing and "待签收" in listing
    detail = chat.send(number.lower())
    assert f"诉求 {number}（待签收）" in detail and "对接企业" in detail


# ---------------------------------------------------------------------- rating, reopen


def test_resolution_reaches_the_enterprise_and_rating_reopens_once(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    number = file_ticket(chat)
    with app.db.begin() as session:
        department = session.scalars(select(Ticket.department)).one()
    officer = staff("王芳", department)
    officer.pushes()
    assert "已签收" in officer.send(f"签收 {number}")
    out = officer.send(f"办结 {number} 已协调物业于本周内完成路灯维修")
    assert out.startswith(f"已办结 {number}")
    result = chat.pushes()
    assert len(result) == 1
    assert "已办结" in result[0].text and "路灯维修" in result[0].text
    assert [b.label for b in result[0].buttons] == ["满意", "基本满意", "不满意"]
    with app.db.begin() as session:
        assert session.scalars(select(Ticket.state)).one() is TicketState.FEEDBACK_SENT
    # 不满意 → 重办 with fresh clocks
    chat.last = result
    assert "已重新交办" in chat.tap("不满意")
    with app.db.begin() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.reopen_count == 1 and ticket.state is TicketState.NEW
    officer.send(f"签收 {number}")
    officer.send(f"办结 {number} 维修完成并加装了监控")
    chat.last = chat.pushes()
    assert "仍未让您满意" in chat.tap("不满意")
    with app.db.begin() as session:
        assert session.scalars(select(Ticket.state)).one() is TicketState.CLOSED


def test_satisfied_rating_with_comment(app: App, chat: Chat, staff: Callable[..., Chat]) -> None:
    number = file_ticket(chat)
    with app.db.begin() as session:
        department = session.scalars(select(Ticket.department)).one()
    officer = staff("赵强", department)
    officer.send(f"签收 {number}")
    officer.send(f"办结 {number} 已修复")
    chat.pushes()
    assert "感谢您的评价" in chat.send("满意")
    assert "您的意见已记录" in chat.send("处理很及时，点赞")
    with app.db.begin() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.state is TicketState.SURVEYED
        assert ticket.surveys[-1].comment == "处理很及时，点赞"
    assert "没有待评价的诉求" in chat.send("满意")


# ---------------------------------------------------------------------------- handoff


def test_live_handoff_relays_both_ways(app: App, chat: Chat, staff: Callable[..., Chat]) -> None:
    officer = staff("李娜", "政务办")
    second = staff("周涛", "政务办")
    assert "正在为您联系政务办" in chat.send("转人工")
    offers = officer.pushes()
    assert offers and offers[0].buttons[0].label == "接入"
    second_offer = second.pushes()[0]
    officer.last = offers
    assert "您已接入" in officer.tap("接入")
    second.last = [second_offer]
    assert "已由李娜接入" in second.tap("接入")
    joined = chat.pushes()
    assert any("李娜" in r.text for r in joined)
    assert chat.send("我们想咨询一下厂房租金补贴的事") == ""
    relayed = officer.pushes()
    assert any("厂房租金补贴" in r.text for r in relayed)
    assert officer.send("您好，请问贵公司入驻的是哪个园区？") == ""
    assert any("哪个园区" in r.text for r in chat.pushes())
    assert "已结束" in officer.send("/end")
    assert any("结束本次对话" in r.text for r in chat.pushes())
    assert "依据" in chat.send("12345热线能反映企业的问题吗")  # back with the bot


def test_handoff_without_reachable_staff_collects_a_ticket(chat: Chat) -> None:
    out = chat.send("我想和工作人员直接沟通")
    assert "当前没有可接入的企业服务专员" in out
    assert "请简要描述" in out


def test_waiting_for_a_person_can_be_cancelled(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    staff("李娜", "政务办")
    chat.send("人工客服")
    assert "已取消等待" in chat.send("取消")
    with app.db.begin() as session:
        assert session.scalars(select(LiveHandoff.state)).one().value == "cancelled"


# -------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "没有输入内容"),
        ("   ", "没有输入内容"),
        ("😀😀😀", "请用文字描述"),
        ("？？？！！！", "请用文字描述"),
        ("营" * 10_000, "太长"),
    ],
)
def test_bad_input_gets_a_specific_reply(chat: Chat, text: str, expected: str) -> None:
    assert expected in chat.send(text)


def test_mixed_language_is_handled(chat: Chat) -> None:
    out = chat.send("How do I 补办营业执照?")
    assert out  # a real reply, no exception
    assert "系统暂时出了点问题" not in out


def test_non_text_messages(chat: Chat) -> None:
    assert "文字" in chat.send("", kind=MessageKind.IMAGE)
    assert "没有识别出您的语音" in chat.send("", kind=MessageKind.VOICE)
    assert "12345" in chat.send("12345热线能反映企业的问题吗", kind=MessageKind.VOICE)
    assert "企业服务助手" in chat.send("", kind=MessageKind.SUBSCRIBE)


def test_help_and_menu(chat: Chat) -> None:
    assert "查询诉求办理进度" in chat.send("菜单")
    assert "查询诉求办理进度" in chat.send("帮助")


# ------------------------------------------------------------------ durability & dedupe


def test_redelivered_message_gets_the_same_reply_and_changes_nothing(app: App, chat: Chat) -> None:
    first = chat.send("营业执照丢了怎么补办", msg_id="m-1")
    again = chat.send("营业执照丢了怎么补办", msg_id="m-1")
    assert first == again
    assert count(app, DialogueTurn) == 1


def test_conversation_survives_a_restart(
    app: App, chat: Chat, db_url: str, clock: MovableClock, kb: KnowledgeBase
) -> None:
    chat.send("发票")
    restarted = build_app(AppSettings.from_env(database_url=db_url), clock, kb=kb)
    try:
        out = Chat(restarted, "user-1").send("1")
        assert "是否解决了您的问题？" in out
    finally:
        restarted.close()


def test_idle_conversation_resets_politely(chat: Chat, clock: MovableClock) -> None:
    chat.send("发票")
    clock.advance(hours=2)
    out = chat.send("1")
    assert "超时" in out
    assert "没有待选择的选项" in out


def test_every_turn_is_logged_with_tokens_hits_and_decision(app: App, chat: Chat) -> None:
    chat.send("营业执照丢了怎么补办")
    with app.db.begin() as session:
        turn = session.scalars(select(DialogueTurn)).one()
        assert turn.action == "answer" and turn.entry_id
        assert "营业执照" in turn.tokens
        assert turn.hits and {"id", "score", "coverage"} <= set(turn.hits[0])
        assert turn.outcome is TurnOutcome.ANSWERED


def test_engine_errors_become_a_friendly_reply(
    app: App, chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(app.dialogue, "_enterprise_turn", boom)
    assert "系统暂时出了点问题" in chat.send("你好")


def test_events_record_who_created_the_ticket(app: App, chat: Chat) -> None:
    file_ticket(chat)
    with app.db.begin() as session:
        event = session.scalars(select(TicketEvent)).first()
        assert event is not None and event.actor == "terminal:user-1"
    # no commissioner is registered: nobody is pushed a notice for the new ticket
    assert count(app, Commissioner) == 0
    assert count(app, OutboxMessage) == 0


def test_unanswered_request_for_a_person_becomes_a_ticket(
    app: App, chat: Chat, staff: Callable[..., Chat], clock: MovableClock
) -> None:
    officer = staff("李娜", "政务办")
    chat.send("园区停车位不够用，货车经常没地方停")
    chat.send("转人工")
    assert app.live.expire() == 0  # not yet
    clock.advance(minutes=6)
    assert app.live.expire() == 1
    assert app.live.expire() == 0  # idempotent
    note = chat.pushes()
    assert len(note) == 1 and "已为您登记诉求 YX-" in note[0].text and "前与您联系" in note[0].text
    with app.db.begin() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.department == "政务办" and ticket.channel_identity is not None
    officer.last = officer.pushes()
    assert any("YX-" in r.text for r in officer.last)  # the new-ticket notice
    # the conversation is back with the bot
    assert "依据" in chat.send("12345热线能反映企业的问题吗")


# ------------------------------------------------------------- review regressions


def _resolved_ticket(app: App, chat: Chat, staff: Callable[..., Chat]) -> tuple[str, Chat]:
    number = file_ticket(chat)
    with app.db.begin() as session:
        department = session.scalars(select(Ticket.department)).one()
    officer = staff("王芳", department)
    officer.send(f"办结 {number} 已修复")
    return number, officer


def test_binding_an_enterprise_reveals_no_one_elses_tickets(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    register_enterprise(app)
    chat.send(f"绑定 {VALID_USCC}")
    number, _ = _resolved_ticket(app, chat, staff)
    chat.pushes()
    mallory = Chat(app, "mallory")
    assert "已绑定" in mallory.send(f"绑定 {VALID_USCC}")
    assert number not in mallory.send("查询")
    assert "没有找到编号为" in mallory.send(number)
    assert "没有待评价" in mallory.send("不满意")
    assert "没有待评价" in mallory.send(f"rate:{number}:不满意", kind=MessageKind.BUTTON,
                                   payload=f"rate:{number}:不满意")  # fmt: skip
    with app.db.begin() as session:
        assert session.scalars(select(Ticket.state)).one() is TicketState.FEEDBACK_SENT


def test_commissioners_act_only_for_their_department(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    number = file_ticket(chat)
    with app.db.begin() as session:
        department = session.scalars(select(Ticket.department)).one()
    other_department = "商务局" if department != "商务局" else "工信局"
    outsider = staff("钱多", other_department)
    for text in (f"签收 {number}", f"办结 {number} 随便", f"转派 {number} 政务办 随便"):
        assert "无权处理" in outsider.send(text)
    with app.db.begin() as session:
        assert session.scalars(select(Ticket.state)).one() is TicketState.NEW
    staff("李娜", "政务办")
    chat.send("转人工")
    with app.db.begin() as session:
        handoff_id = session.scalars(select(LiveHandoff.id)).one()
    assert "无权处理" in outsider.send(f"take:{handoff_id}", kind=MessageKind.BUTTON,
                                   payload=f"take:{handoff_id}")  # fmt: skip


def test_rating_during_another_step_keeps_that_step(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    number, _ = _resolved_ticket(app, chat, staff)
    result = chat.pushes()
    chat.send("提交诉求")
    assert "请简要描述" in chat.last[0].text
    chat.last = result
    assert "感谢您的评价" in chat.tap("满意")
    assert "请提供贵企业" in chat.send("园区门口道路积水严重，请协调排水")
    with app.db.begin() as session:
        assert session.scalars(select(Ticket.state).where(Ticket.number == number)).one() is (
            TicketState.SURVEYED
        )


def test_requests_for_a_person_do_not_pile_up(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    officer = staff("李娜", "政务办")
    chat.send("转人工")
    assert "正在为您联系" in chat.send("转人工")
    assert count(app, LiveHandoff) == 1
    offer = officer.pushes()
    chat.send("/start")  # leaving the wait withdraws the request
    with app.db.begin() as session:
        assert session.scalars(select(LiveHandoff.state)).one().value == "cancelled"
    officer.last = offer
    assert "已经结束" in officer.tap("接入")
    chat.send("提交诉求")
    assert "请简要描述" in chat.last[0].text  # still filing, not connected to anyone


def test_first_messages_of_a_new_user_at_the_same_time(app: App) -> None:
    import threading

    replies: list[str] = []

    def send(text: str, msg_id: str) -> None:
        out = app.dialogue.handle(Incoming("terminal", "twins", text, msg_id=msg_id))
        replies.append(out[0].text)

    threads = [
        threading.Thread(target=send, args=("菜单", "a")),
        threading.Thread(target=send, args=("帮助", "b")),
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert len(replies) == 2
    assert all("系统暂时出了点问题" not in r for r in replies)


def test_long_texts_in_any_step_do_not_break(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    _resolved_ticket(app, chat, staff)
    chat.pushes()
    assert "感谢您的评价" in chat.send("满意")
    comment = "处理得很好。" * 90  # 540 characters: longer than a knowledge-base query
    assert "您的意见已记录" in chat.send(comment)


def test_parsing_edge_cases(app: App, chat: Chat) -> None:
    number = file_ticket(chat)
    assert f"诉求 {number}" in chat.send(f"查询{number}")
    chat.send("提交诉求")
    chat.send("我们申报的高新技术企业认定材料被退回，想了解具体原因")
    out = chat.send("天津港保税区海河智能装备制造有限公司")  # 18 characters, not a code
    assert "请确认诉求信息" in out and "企业：天津港保税区海河智能装备制造有限公司" in out
    assert "诉求已登记" in chat.send("提交诉求")  # at the confirmation: submit
    assert "没有待评价" in chat.send(f"rate:{number.lower()}:好", kind=MessageKind.BUTTON,
                                  payload=f"rate:{number.lower()}:好")  # fmt: skip


def test_user_ending_a_live_chat_is_told_so(chat: Chat, staff: Callable[..., Chat]) -> None:
    officer = staff("李娜", "政务办")
    chat.send("转人工")
    officer.last = officer.pushes()
    officer.tap("接入")
    assert "您已结束与专员的对话" in chat.send("结束")
    assert any("已结束对话" in r.text for r in officer.pushes())


def test_an_old_button_says_so(chat: Chat) -> None:
    chat.send("营业执照丢了怎么补办")
    old = chat.last
    chat.tap("已解决")
    chat.last = old
    assert "按钮对应的步骤已经结束" in chat.tap("未解决")


def test_commissioner_reads_the_conversation_behind_a_ticket(
    app: App, chat: Chat, staff: Callable[..., Chat]
) -> None:
    number = file_ticket(chat)
    with app.db.begin() as session:
        department = session.scalars(select(Ticket.department)).one()
    officer = staff("王芳", department)
    out = officer.send(f"对话 {number}")
    assert f"工单 {number} 的对话记录" in out
    assert "企业：园区道路路灯损坏" in out and "助手：诉求已登记" in out
    outsider = staff("钱多", "商务局" if department != "商务局" else "工信局")
    assert "无权处理" in outsider.send(f"对话 {number}")
    # new tickets carry a button for it
    second = file_ticket(chat)
    officer.last = [n for n in officer.pushes() if second in n.text]
    assert f"工单 {second} 的对话记录" in officer.tap("查看对话")


def test_a_chat_need_is_routed_with_what_the_register_knows(app: App, chat: Chat) -> None:
    """The chat's filing path passes the register's 招商部门 to routing (附件2 row 2)."""
    register_enterprise(app)
    with app.db.begin() as session:
        enterprise = session.scalars(select(Enterprise)).one()
        enterprise.recruited_by = "商务局"
    chat.send(f"绑定 {VALID_USCC}")
    file_ticket(chat)
    with app.db.begin() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert (ticket.department, ticket.route_rule) == ("商务局", "recruited")
        assert "招商落户" in ticket.route_reason
