"""`yxby serve`: the channel webhooks, health endpoint, outbox worker and SLA tick."""

from __future__ import annotations

import click

__all__ = ["register"]


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--telegram-polling", is_flag=True,
              help="Fetch Telegram updates by long polling (no public URL needed).")  # fmt: skip
def serve(host: str, port: int, telegram_polling: bool) -> None:
    """Run the server (configuration from YXBY_* environment variables)."""
    import uvicorn

    from bot.app import build
    from bot.channels.registry import adapters_from_env
    from bot.server import create_asgi

    app = build()
    try:
        adapters = adapters_from_env(app, telegram_polling=telegram_polling)
        asgi = create_asgi(app, adapters)
        uvicorn.run(asgi, host=host, port=port, log_level="info")
    finally:
        app.close()


def register(group: click.Group) -> None:
    """Add ``serve`` to *group*."""
    group.add_command(serve)
