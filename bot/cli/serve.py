"""`yxby serve`: the channel webhooks, health endpoint, outbox worker and SLA tick."""

from __future__ import annotations

import click

__all__ = ["register"]


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--telegram-polling", is_flag=True,
              help="Fetch Telegram updates by long polling (no public URL needed).")  # fmt: skip
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--watch/--no-watch",
    default=True,
    show_default=True,
    envvar="YXBY_KB_WATCH",
    help="Reload the knowledge base when its files change (SIGHUP always reloads).",
)
def serve(host: str, port: int, telegram_polling: bool, log_level: str, watch: bool) -> None:
    """Run the server (configuration from YXBY_* environment variables).

    Telegram: YXBY_TELEGRAM_TOKEN, YXBY_TELEGRAM_WEBHOOK_SECRET, YXBY_TELEGRAM_MODE
    (webhook | polling), YXBY_TELEGRAM_API_BASE, YXBY_TELEGRAM_WEBHOOK_URL.

    The knowledge base follows its files: an edit under YXBY_KNOWLEDGE_DIR, the lexicon or
    config/knowledge.yaml is served within seconds, `kill -HUP <pid>` reloads at once, and a
    broken edit keeps the last good version serving (the error shows in /healthz).
    """
    import logging

    import uvicorn

    from bot.app import build_app
    from bot.channels.registry import adapters_from_env
    from bot.server import ServerOptions, create_asgi

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request URL at INFO, and Telegram's URLs carry the bot token
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = build_app()
    try:
        app.db  # noqa: B018 - refuse to start on a database that is not migrated
        adapters = adapters_from_env(app, telegram_polling=telegram_polling)
        if not adapters:
            click.echo("注意：未配置任何渠道（如 YXBY_TELEGRAM_TOKEN），只提供 /healthz", err=True)
        app.kb  # noqa: B018 - load (or fail on) the knowledge base before serving
        asgi = create_asgi(app, adapters, ServerOptions(watch_knowledge=watch))
        uvicorn.run(asgi, host=host, port=port, log_level=log_level, lifespan="on")
    finally:
        app.close()


def register(group: click.Group) -> None:
    """Add ``serve`` to *group*."""
    group.add_command(serve)
