"""`yxby commissioners add --role 管理员`, `set-password`, `invite --console`, `deactivate`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result

from bot.app import App, AppSettings, build_app
from bot.cli import main
from bot.console.auth import accounts_for
from handoff.accounts import AccountInactive, BadCredentials, LinkInvalid
from handoff.models import CommissionerRole

PASSWORD = "gangkou-2026!"
Run = Callable[..., Result]


@pytest.fixture
def run(db_url: str) -> Run:
    """Invoke ``yxby`` against the test database (``input`` is what stdin holds)."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(
            main, list(args), input=input, env={"YXBY_DATABASE_URL": db_url, **(env or {})}
        )

    return invoke


@pytest.fixture
def app(db_url: str) -> Iterator[App]:
    """The app on the same database, to check what the commands did."""
    application = build_app(AppSettings.from_env(database_url=db_url))
    try:
        yield application
    finally:
        application.close()


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + result.stderr
    return result


def fails(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("错误：")
    assert message in result.stderr
    assert "Traceback" not in result.output + result.stderr


@pytest.fixture
def zhang(run: Run) -> None:
    ok(run("commissioners", "add", "张敏", "--department", "市场监管局"))


def test_add_accepts_the_admin_role(run: Run) -> None:
    added = ok(run("commissioners", "add", "周静", "--department", "政务办", "--role", "管理员"))
    assert "已登记：周静（政务办，管理员）" in added.output
    assert "管理员" in ok(run("commissioners", "list")).output
    fails(
        run("commissioners", "add", "吴刚", "--department", "政务办", "--role", "主任"),
        "专员、负责人、政务办、管理员",
    )


def test_set_password_reads_one_line_of_stdin(run: Run, app: App, zhang: None) -> None:
    result = ok(run("commissioners", "set-password", "张敏", input=f"{PASSWORD}\n"))
    assert "已设置 张敏（市场监管局）的工作台密码" in result.output
    assert PASSWORD not in result.output
    signed = accounts_for(app).sign_in("张敏", PASSWORD)
    assert signed.staff.role is CommissionerRole.COMMISSIONER


def test_set_password_applies_the_policy(run: Run, app: App, zhang: None) -> None:
    fails(run("commissioners", "set-password", "张敏", input="1234567890\n"), "不能全是数字")
    fails(run("commissioners", "set-password", "张敏", input="short\n"), "至少需要 10 个字符")
    fails(run("commissioners", "set-password", "张敏", input=""), "没有从标准输入读到密码")
    with pytest.raises(BadCredentials):
        accounts_for(app).sign_in("张敏", "1234567890")


def test_set_password_ends_the_open_sessions(run: Run, app: App, zhang: None) -> None:
    ok(run("commissioners", "set-password", "张敏", input=f"{PASSWORD}\n"))
    token = accounts_for(app).sign_in("张敏", PASSWORD).token
    ok(run("commissioners", "set-password", "张敏", input="a-second-password\n"))
    assert accounts_for(app).staff_for(token) is None


def test_set_password_names_the_person_exactly(run: Run, zhang: None) -> None:
    fails(
        run("commissioners", "set-password", "无此人", input=f"{PASSWORD}\n"), "没有名为「无此人」"
    )
    ok(run("commissioners", "add", "张敏", "--department", "商务局"))
    fails(run("commissioners", "set-password", "张敏", input=f"{PASSWORD}\n"), "--department")
    ok(
        run(
            "commissioners", "set-password", "张敏", "--department", "商务局",
            input=f"{PASSWORD}\n",
        )
    )  # fmt: skip
    fails(
        run("commissioners", "set-password", "张敏", "--department", "火星局", input=PASSWORD),
        "火星局",
    )


def _link(output: str) -> tuple[str, str]:
    found = re.search(r"(\S+)/console/set-password/(\S+)", output)
    assert found, output
    return found.group(1), found.group(2)


def test_invite_console_prints_a_one_time_link(run: Run, app: App, zhang: None) -> None:
    result = ok(run("commissioners", "invite", "张敏", "--console"))
    assert "张敏（市场监管局）的一次性设置密码链接" in result.output
    base, code = _link(result.output)
    assert base == "http://127.0.0.1:8000"
    accounts = accounts_for(app)
    assert accounts.link_owner(code).name == "张敏"
    accounts.use_link(code, PASSWORD)
    accounts.sign_in("张敏", PASSWORD)
    with pytest.raises(LinkInvalid, match="已使用"):
        accounts.use_link(code, "another-password")


def test_invite_console_uses_the_public_url(run: Run, zhang: None) -> None:
    env = {"YXBY_PUBLIC_URL": "https://yxby.example.gov.cn/"}
    result = ok(run("commissioners", "invite", "张敏", "--console", env=env))
    assert _link(result.output)[0] == "https://yxby.example.gov.cn"


def test_a_new_console_invite_replaces_the_old_one(run: Run, app: App, zhang: None) -> None:
    _, first = _link(ok(run("commissioners", "invite", "张敏", "--console")).output)
    _, second = _link(ok(run("commissioners", "invite", "张敏", "--console")).output)
    with pytest.raises(LinkInvalid, match="取代"):
        accounts_for(app).link_owner(first)
    assert accounts_for(app).link_owner(second).name == "张敏"


def test_invite_without_console_is_still_the_telegram_code(run: Run, zhang: None) -> None:
    result = ok(run("commissioners", "invite", "张敏"))
    assert "一次性邀请码" in result.output and "/link " in result.output
    assert "/console/" not in result.output


def test_deactivate_ends_sessions_and_sign_in(run: Run, app: App, zhang: None) -> None:
    ok(run("commissioners", "set-password", "张敏", input=f"{PASSWORD}\n"))
    token = accounts_for(app).sign_in("张敏", PASSWORD).token
    result = ok(run("commissioners", "deactivate", "张敏"))
    assert "已停用 张敏（市场监管局），结束登录会话 1 个" in result.output
    assert accounts_for(app).staff_for(token) is None
    with pytest.raises(AccountInactive):
        accounts_for(app).sign_in("张敏", PASSWORD)
    assert "[停用]" in ok(run("commissioners", "list")).output
    fails(run("commissioners", "invite", "张敏", "--console"), "没有名为「张敏」的在岗人员")


def test_on_a_terminal_the_password_is_asked_twice_without_echo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import sys

    from bot.cli import db

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    asked: dict[str, object] = {}

    def prompt(text: str, **kwargs: object) -> str:
        asked.update(kwargs, text=text)
        return PASSWORD

    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(db.click, "prompt", prompt)
    assert db.read_password("张敏") == PASSWORD
    assert asked["hide_input"] is True
    assert asked["confirmation_prompt"]
    assert asked["text"] == "张敏的新密码"
