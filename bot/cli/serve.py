"""`yxby serve`: the channel webhooks, health endpoint, outbox worker and SLA tick.

``--workers N`` runs N processes behind the one port (uvicorn's worker processes, each
building the app from the environment, see :func:`bot.server.asgi_from_env`). They share
the database — PostgreSQL only: SQLite allows one writer, so more than one worker is
refused — and, with ``YXBY_REDIS_URL``, Redis for shared values. ``/metrics`` then sums
every worker's counters (Prometheus multiprocess mode, files in a private directory).
"""

from __future__ import annotations

import click

from yxby.errors import ConfigError

__all__ = ["register"]

SQLITE_ONE_WORKER = (
    "SQLite 数据库只支持单个服务进程：--workers 大于 1 时请使用 PostgreSQL"
    "（设置 YXBY_DATABASE_URL=postgresql+psycopg://…）"
)
POLLING_ONE_WORKER = (
    "Telegram 长轮询只能由一个进程进行：--workers 大于 1 时请使用 webhook 模式"
    "（YXBY_TELEGRAM_MODE=webhook）"
)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes behind the port (more than 1 needs PostgreSQL).")  # fmt: skip
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
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per log line.",
)
def serve(
    host: str,
    port: int,
    workers: int,
    telegram_polling: bool,
    log_level: str,
    log_format: str,
    watch: bool,
) -> None:
    """Run the server (configuration from YXBY_* environment variables).

    Telegram: YXBY_TELEGRAM_TOKEN, YXBY_TELEGRAM_WEBHOOK_SECRET, YXBY_TELEGRAM_MODE
    (webhook | polling), YXBY_TELEGRAM_API_BASE, YXBY_TELEGRAM_WEBHOOK_URL.
    Shared values of several workers: YXBY_REDIS_URL (else the database).

    The knowledge base follows its files: an edit under YXBY_KNOWLEDGE_DIR, the lexicon or
    config/knowledge.yaml is served within seconds, `kill -HUP <pid>` reloads at once, and a
    broken edit keeps the last good version serving (the error shows in /healthz).
    """
    from bot.server import threads_from_env

    threads_from_env()  # a bad YXBY_THREADS is refused here, not in every worker
    if workers > 1:
        _serve_workers(host, port, workers, telegram_polling, log_level, log_format, watch)
        return
    import uvicorn

    from bot.app import build_app
    from bot.channels.registry import adapters_from_env
    from bot.logs import configure_logging
    from bot.server import ServerOptions, create_asgi
    from bot.transport import HTTP_PROTOCOL
    from yxby.redact import uvicorn_log_config

    # secrets and personal data are masked in every line, at every level (yxby.redact)
    if log_format == "json":
        configure_logging(log_level, "json")
        log_config: dict[str, object] | None = None
    else:
        configure_logging(log_level, "text", uvicorn=False)
        log_config = uvicorn_log_config(log_level)
    app = build_app()
    try:
        app.db  # noqa: B018 - refuse to start on a database that is not migrated
        adapters = adapters_from_env(app, telegram_polling=telegram_polling)
        if not adapters:
            click.echo("注意：未配置任何渠道（如 YXBY_TELEGRAM_TOKEN），只提供 /healthz", err=True)
        app.kb  # noqa: B018 - load (or fail on) the knowledge base before serving
        asgi = create_asgi(app, adapters, ServerOptions(watch_knowledge=watch))
        uvicorn.run(
            asgi,
            host=host,
            port=port,
            log_level=log_level,
            lifespan="on",
            log_config=log_config,
            http=HTTP_PROTOCOL,
        )
    finally:
        app.close()


def _serve_workers(
    host: str,
    port: int,
    workers: int,
    polling: bool,
    log_level: str,
    log_format: str,
    watch: bool = True,
) -> None:
    """N uvicorn worker processes, after checking what only one process may do."""
    import json
    import os
    import shutil
    import tempfile

    import uvicorn
    from sqlalchemy.engine import make_url

    from bot.app import build_app
    from bot.channels.registry import adapters_from_env
    from bot.logs import configure_logging
    from bot.metrics import MULTIPROC_ENV
    from bot.server import SERVE_OPTIONS_ENV
    from bot.transport import HTTP_PROTOCOL

    configure_logging(log_level, log_format)
    app = build_app()
    try:
        if make_url(str(app.db.engine.url)).get_backend_name() == "sqlite":
            raise ConfigError(SQLITE_ONE_WORKER)
        mode = os.environ.get("YXBY_TELEGRAM_MODE", "").strip().lower()
        if os.environ.get("YXBY_TELEGRAM_TOKEN") and (polling or mode == "polling"):
            raise ConfigError(POLLING_ONE_WORKER)
        if not adapters_from_env(app):  # also checks every channel's settings once, here
            click.echo("注意：未配置任何渠道（如 YXBY_TELEGRAM_TOKEN），只提供 /healthz", err=True)
    finally:
        app.close()
    metrics_dir = tempfile.mkdtemp(prefix="yxby-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir  # before any worker counts anything
    os.environ[SERVE_OPTIONS_ENV] = json.dumps(
        {
            "telegram_polling": polling,
            "log_level": log_level,
            "log_format": log_format,
            "watch_knowledge": watch,
        }
    )
    try:
        uvicorn.run(
            "bot.server:asgi_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            log_config=None,
            lifespan="on",
            http=HTTP_PROTOCOL,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop(MULTIPROC_ENV, None)  # it named the directory just removed
        os.environ.pop(SERVE_OPTIONS_ENV, None)


def register(group: click.Group) -> None:
    """Add ``serve`` to *group*."""
    group.add_command(serve)
