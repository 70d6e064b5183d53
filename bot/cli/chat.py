"""`yxby chat`: the bot in the terminal, as an enterprise user or as a commissioner."""

from __future__ import annotations

import getpass
import sys

import click

__all__ = ["register"]


@click.command("chat")
@click.option("--user", "user_key", default=None, help="Who you are (default: your login name).")
@click.option("--commissioner", default=None, help="Chat as this registered commissioner.")
@click.option(
    "--department", default=None, help="The commissioner's department, if the name is ambiguous."
)
@click.option("--no-greeting", is_flag=True, help="Do not print the welcome text.")
def chat(user_key: str | None, commissioner: str | None, department: str | None,
         no_greeting: bool) -> None:  # fmt: skip
    """Chat with the bot in this terminal (reads piped stdin too: one message per line)."""
    from bot.app import build_app
    from bot.channels.terminal import TerminalChat

    app = build_app()
    try:
        app.db  # noqa: B018 - refuse to start on a database that is not migrated
        prefix = "助手："
        if commissioner:
            from bot.staff import bind_terminal

            user_key = bind_terminal(app, commissioner, department)
            prefix = "系统："
        key = user_key or f"term-{getpass.getuser()}"
        interactive = sys.stdin.isatty()
        session = TerminalChat(app, user_key=key, out=sys.stdout, prefix=prefix)
        session.run(
            sys.stdin, interactive=interactive, greeting=not no_greeting and not commissioner
        )
    finally:
        app.close()


def register(group: click.Group) -> None:
    """Add ``chat`` to *group*."""
    group.add_command(chat)
