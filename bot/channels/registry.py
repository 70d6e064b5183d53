"""Which channel adapters run, decided from the environment (secrets never come from files)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping

from bot.app import App
from bot.server import ChannelAdapter

__all__ = ["adapters_from_env"]


def adapters_from_env(
    app: App, *, env: Mapping[str, str] | None = None, telegram_polling: bool = False
) -> list[ChannelAdapter]:
    """Adapters for every channel whose credentials are set in *env* (default ``os.environ``)."""
    environ = os.environ if env is None else env
    adapters: list[ChannelAdapter] = []
    if environ.get("YXBY_TELEGRAM_TOKEN"):
        telegram = importlib.import_module("bot.channels.telegram")
        adapters.append(telegram.telegram_adapter_from_env(app, environ, polling=telegram_polling))
    if environ.get("YXBY_WECHAT_TOKEN"):
        wechat = importlib.import_module("bot.channels.wechat")
        adapters.append(wechat.wechat_adapter_from_env(app, environ))
    if environ.get("YXBY_WECOM_CORPID"):  # 企业微信: notices to staff, no inbound messages
        wecom = importlib.import_module("bot.channels.wecom")
        adapters.append(wecom.wecom_adapter_from_env(environ, app.shared))
    return adapters
