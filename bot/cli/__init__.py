"""The ``yxby`` command line.

Each command group lives in its own module and imports its heavy dependencies lazily, so
``yxby ask`` starts fast. Errors of the project (:class:`~yxby.errors.YxbyError`) and
unusable files or directories (``OSError``) are printed as one clear Chinese line and exit
1, wherever they are raised (option parsing, set-up or the command); they never surface as
tracebacks.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from bot.cli import (
    chat,
    db,
    doctor,
    kb,
    kb_editors,
    notices,
    outbox,
    prune,
    report,
    route,
    serve,
    sla,
    supervise,
    tickets,
)
from yxby.errors import YxbyError

__all__ = ["main"]


def _os_error(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    return f"无法访问{where}：{exc.strerror or exc}"


class _Group(click.Group):
    def main(self, args: Sequence[str] | None = None, *pargs: Any, **kwargs: Any) -> Any:
        try:
            return super().main(args, *pargs, **kwargs)
        except YxbyError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(_os_error(exc))


def _fail(message: str) -> NoReturn:
    click.echo(f"错误：{message}", err=True)
    sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="yxby")
def main() -> None:
    """有需必应助手 — 企业服务知识库、诉求工单与渠道机器人。"""


for module in (
    kb,
    kb_editors,
    route,
    sla,
    db,
    tickets,
    outbox,
    doctor,
    chat,
    serve,
    report,
    supervise,
    notices,
    prune,
):
    module.register(main)
