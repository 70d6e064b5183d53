"""The ``yxby`` command line.

Each command group lives in its own module and imports its heavy dependencies lazily, so
``yxby ask`` starts fast. Errors of the project (:class:`~yxby.errors.YxbyError`) are
printed as one clear line and exit non-zero; they never surface as tracebacks.
"""

from __future__ import annotations

import sys

import click

from bot.cli import chat, db, doctor, kb, route, serve, sla, tickets
from yxby.errors import YxbyError

__all__ = ["main"]


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except YxbyError as exc:
            click.echo(f"错误：{exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="yxby")
def main() -> None:
    """有需必应助手 — 企业服务知识库、诉求工单与渠道机器人。"""


for module in (kb, route, sla, db, tickets, doctor, chat, serve):
    module.register(main)
