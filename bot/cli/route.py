"""`yxby route`: which department handles a need, the rule that decided it, and why."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from bot.app import App

__all__ = ["knowledge_match", "register"]


def knowledge_match(app: App, text: str) -> tuple[str | None, str | None]:
    """Rule 2 input: ``(entry id, department)`` of the entry that confidently answers *text*.

    Only an ``answer`` decision counts, and never an entry tagged ``programme`` (entries about
    how the programme works do not say who owns a need). ``(None, None)`` otherwise.
    """
    decision = app.kb.decide(text)
    top = decision.top
    if decision.action != "answer" or top is None or "programme" in top.entry.tags:
        return None, None
    return top.entry.id, top.entry.department


def enterprise_facts(app: App, uscc: str) -> dict[str, Any]:
    """Registry facts (kind, industry, assigned commissioner) of the enterprise *uscc*."""
    from handoff.db import read_only
    from handoff.registry import route_facts, validate_uscc
    from yxby.errors import InputError

    code = validate_uscc(uscc)
    with app.db.sessions() as session:
        facts = route_facts(read_only(session), code)
    if facts is None:
        raise InputError(f"企业库中没有统一社会信用代码为 {code} 的企业")
    return dict(facts)


@click.command("route")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON：department、rule、reason。")
@click.option("--no-knowledge", is_flag=True, help="不查知识库（跳过第2条规则）。")
@click.option("--enterprise", "uscc", default=None, help="企业的统一社会信用代码（查企业库）。")
@click.argument("text", nargs=-1)
@click.pass_context
def route(
    ctx: click.Context, as_json: bool, no_knowledge: bool, uscc: str | None, text: tuple[str, ...]
) -> None:
    """判断诉求 TEXT 由哪个部门办理，并说明依据。"""
    words = " ".join(text).strip()
    if not words:
        click.echo(
            "错误：请提供诉求文本，例如：yxby route 我们经营一家宾馆，想了解扶持政策", err=True
        )
        ctx.exit(2)

    from bot.app import build_app
    from routing.router import RouteFacts

    app = build_app()  # the database is opened only for --enterprise
    try:
        facts = enterprise_facts(app, uscc) if uscc else {}
        entry_id, department = (None, None) if no_knowledge else knowledge_match(app, words)
    finally:
        app.close()
    decision = app.router.route(
        RouteFacts(text=words, matched_entry_id=entry_id, matched_department=department, **facts)
    )
    if as_json:
        click.echo(json.dumps(decision.as_dict(), ensure_ascii=False))
    else:
        click.echo(f"{decision.department}（{decision.rule.label}）：{decision.reason}")


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
    group.add_command(route)
