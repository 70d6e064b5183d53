"""Telegram channel settings: :class:`TelegramSettings`, read from ``YXBY_TELEGRAM_*``.

The bot token, API base, webhook or polling mode, the webhook's secret and URL, and the
HTTP timeouts; :meth:`TelegramSettings.from_env` raises ``ConfigError`` in Chinese naming
the variable that is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from yxby.errors import ConfigError

__all__ = ["DEFAULT_API_BASE", "Mode", "TelegramSettings"]

DEFAULT_API_BASE = "https://api.telegram.org"

Mode = Literal["webhook", "polling"]


@dataclass(frozen=True)
class TelegramSettings:
    """How the bot reaches Telegram (secrets come from the environment only)."""

    token: str
    api_base: str = DEFAULT_API_BASE
    mode: Mode = "webhook"
    webhook_secret: str | None = None
    webhook_url: str | None = None  # set with setWebhook at start-up when given
    webhook_path: str = "/telegram/webhook"
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    write_timeout: float = 10.0
    pool_timeout: float = 5.0
    poll_timeout: float = 10.0  # long-polling wait of getUpdates, seconds

    @property
    def bot_id(self) -> str:
        """The numeric id at the front of the token."""
        return self.token.partition(":")[0]

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, polling: bool = False) -> TelegramSettings:
        """Read ``YXBY_TELEGRAM_*``; *polling* overrides ``YXBY_TELEGRAM_MODE``."""
        token = env.get("YXBY_TELEGRAM_TOKEN", "").strip()
        if not token:
            raise ConfigError("环境变量 YXBY_TELEGRAM_TOKEN 未设置（Telegram 机器人令牌）")
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", token):
            raise ConfigError(
                "YXBY_TELEGRAM_TOKEN 格式不对：应形如 123456789:AAE…（向 @BotFather 获取）"
            )
        api_base = (env.get("YXBY_TELEGRAM_API_BASE", "").strip() or DEFAULT_API_BASE).rstrip("/")
        if not re.match(r"^https?://", api_base):
            raise ConfigError(
                f"YXBY_TELEGRAM_API_BASE 应以 http:// 或 https:// 开头，收到「{api_base}」"
            )
        raw_mode = "polling" if polling else env.get("YXBY_TELEGRAM_MODE", "").strip().lower()
        mode = raw_mode or "webhook"
        if mode not in ("webhook", "polling"):
            raise ConfigError(f"YXBY_TELEGRAM_MODE 应为 webhook 或 polling，收到「{raw_mode}」")
        secret = env.get("YXBY_TELEGRAM_WEBHOOK_SECRET", "").strip() or None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ConfigError("YXBY_TELEGRAM_WEBHOOK_SECRET 只能由 1–256 位字母、数字、_ 或 - 组成")
        if mode == "webhook" and secret is None:
            raise ConfigError(
                "webhook 模式需要设置 YXBY_TELEGRAM_WEBHOOK_SECRET；"
                "没有公网地址时可用 yxby serve --telegram-polling"
            )
        webhook_url = env.get("YXBY_TELEGRAM_WEBHOOK_URL", "").strip() or None
        if webhook_url is not None and not webhook_url.startswith("https://"):
            raise ConfigError("YXBY_TELEGRAM_WEBHOOK_URL 必须是 https:// 地址")
        return cls(
            token=token,
            api_base=api_base,
            mode="polling" if mode == "polling" else "webhook",
            webhook_secret=secret,
            webhook_url=webhook_url,
        )
