"""亮身份: ``我的专员`` (a command, the WeChat menu key and a Telegram command) shows the
enterprise its commissioner's name, department, office phone and what they help with."""

from __future__ import annotations

import pytest

from bot.app import App
from bot.channels.telegram.adapter import COMMANDS
from bot.channels.wechat import DEFAULT_MENU
from bot.channels.wechat.inbound import incoming_of, parse_body
from handoff.binding import create_code
from handoff.models import CommissionerRole
from handoff.registry import add_commissioner, find_enterprise
from tests.chatting import VALID_USCC, Chat, register_enterprise
from tests.test_wechat import OPENID, message_xml


def assign(app: App, *, phone: str | None = "022-25601234", duties: str | None = None) -> None:
    with app.db.begin() as s:
        person = add_commissioner(
            s, name="李娜", department="商务局", role=CommissionerRole.COMMISSIONER,
            phone=phone, departments=app.router.departments,
        )  # fmt: skip
        person.duties = duties
        enterprise = find_enterprise(s, VALID_USCC)
        assert enterprise is not None
        enterprise.commissioner_id = person.id


def test_unbound_and_unassigned(app: App, chat: Chat) -> None:
    assert "您还没有绑定企业" in chat.send("我的专员")
    register_enterprise(app)
    chat.send(f"绑定 {VALID_USCC}")
    out = chat.send("我的专员")
    assert "暂未分配包保专员" in out and "政务办统筹分派" in out


def test_card_shows_name_department_phone_and_duties(app: App, chat: Chat) -> None:
    register_enterprise(app)
    assign(app, duties="外资外贸政策咨询、展会补贴申报、进出口许可协调")
    chat.send(f"绑定 {VALID_USCC}")
    out = chat.send("我的专员")
    assert "天津示例科技有限公司的企业服务专员：李娜（商务局）" in out
    assert "办公电话：022-25601234" in out
    assert "可以帮您：外资外贸政策咨询、展会补贴申报、进出口许可协调" in out
    assert "尚未核验" in out
    with app.db.begin() as s:
        enterprise = find_enterprise(s, VALID_USCC)
        assert enterprise is not None
        code, _ = create_code(s, enterprise, enterprise.commissioner, now=app.clock())
    verified = chat.send(f"核验 {code}")
    assert "核验成功" in verified and "李娜（商务局）" in verified
    assert "尚未核验" not in chat.send("/commissioner")


def test_defaults_when_phone_and_duties_are_missing(app: App, chat: Chat) -> None:
    register_enterprise(app)
    assign(app, phone=None, duties=None)
    chat.send(f"绑定 {VALID_USCC}")
    out = chat.send("我的服务专员")
    assert "办公电话：" + app.replies("my_commissioner_no_phone") in out
    assert "可以帮您：" + app.replies("my_commissioner_duties_default") in out


def test_the_wechat_menu_key_and_the_telegram_command(app: App) -> None:
    register_enterprise(app)
    assign(app)
    assert DEFAULT_MENU["MY_COMMISSIONER"] == "我的专员"
    assert "commissioner" in dict(COMMANDS)
    wechat = Chat(app, OPENID, channel="wechat")
    wechat.send(f"绑定 {VALID_USCC}")
    body = message_xml("event", created=1_800_000_000, Event="CLICK", EventKey="MY_COMMISSIONER")
    incoming = incoming_of(parse_body(body.encode(), {}, None), DEFAULT_MENU)
    assert incoming is not None
    (reply,) = app.dialogue.handle(incoming)
    assert "李娜（商务局）" in reply.text and "022-25601234" in reply.text


def test_duties_are_set_from_the_cli(
    app: App, chat: Chat, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    register_enterprise(app)
    assign(app)
    monkeypatch.setenv("YXBY_DATABASE_URL", db_url)
    out = CliRunner().invoke(main, ["commissioners", "duties", "李娜", "跨境电商政策、外贸补贴"])
    assert out.exit_code == 0, out.output
    assert "已登记李娜（商务局）的职责" in out.output
    chat.send(f"绑定 {VALID_USCC}")
    assert "可以帮您：跨境电商政策、外贸补贴" in chat.send("我的专员")
    empty = CliRunner().invoke(main, ["commissioners", "duties", "李娜", "  "])
    assert empty.exit_code == 1 and "职责不能为空" in empty.output
