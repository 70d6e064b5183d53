"""WeChat channel configuration: :class:`WeChatConfig`, read from ``YXBY_WECHAT_*`` variables.

Also the channel-wide constants (API base, default custom menu) and the check that an
``EncodingAESKey`` is the 43-character key 微信公众平台 shows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from bot.types import Channel
from yxby.errors import ConfigError

__all__ = ["DEFAULT_API_BASE", "DEFAULT_MENU", "WeChatConfig", "wechat_config_from_env"]

CHANNEL = Channel.WECHAT.value
DEFAULT_API_BASE = "https://api.weixin.qq.com"
DEFAULT_MENU: Mapping[str, str] = {"FAQ": "菜单", "MY_TICKETS": "查询", "HUMAN": "转人工"}
"""Custom-menu ``CLICK`` keys and the dialogue command each one sends."""


@dataclass(frozen=True)
class WeChatConfig:
    """Everything the WeChat channel needs; secrets come from the environment."""

    token: str
    appid: str
    secret: str
    aes_key: str | None = None
    api_base: str = DEFAULT_API_BASE
    menu: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MENU))
    path: str = "/wechat"
    reply_budget: float = 3.5  # seconds for a passive reply; WeChat gives up after 5
    max_body_bytes: int = 64 * 1024
    http_timeout: float = 5.0  # per HTTP call; the outbox worker allows a send 30 s
    window: timedelta = timedelta(hours=48)
    pushes_per_message: int = 5
    continuation_ttl: timedelta = timedelta(hours=2)


def wechat_config_from_env(env: Mapping[str, str]) -> WeChatConfig:
    """Read ``YXBY_WECHAT_*`` from *env*; raises ``ConfigError`` naming the bad variable."""

    def required(name: str) -> str:
        value = env.get(name, "").strip()
        if not value:
            raise ConfigError("is missing (set it to the value shown in 微信公众平台)", key=name)
        return value

    token = required("YXBY_WECHAT_TOKEN")
    appid = required("YXBY_WECHAT_APPID")
    secret = required("YXBY_WECHAT_SECRET")
    aes_key = env.get("YXBY_WECHAT_AES_KEY", "").strip() or None
    if aes_key is not None:
        _check_aes_key(aes_key)
    menu: dict[str, str] = dict(DEFAULT_MENU)
    raw_menu = env.get("YXBY_WECHAT_MENU", "").strip()
    if raw_menu:
        try:
            parsed = json.loads(raw_menu)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"is not valid JSON: {exc}", key="YXBY_WECHAT_MENU") from exc
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in parsed.items()
        ):
            raise ConfigError(
                'expected a JSON object of menu key → command, e.g. {"FAQ": "菜单"}',
                key="YXBY_WECHAT_MENU",
            )
        menu = {k: v.strip() for k, v in parsed.items()}
    budget = 3.5
    raw_budget = env.get("YXBY_WECHAT_REPLY_BUDGET", "").strip()
    if raw_budget:
        try:
            budget = float(raw_budget)
        except ValueError:
            budget = -1.0
        if not 0 < budget < 5:
            raise ConfigError(
                "expected seconds between 0 and 5 (WeChat waits 5 s)",
                key="YXBY_WECHAT_REPLY_BUDGET",
            )
    return WeChatConfig(
        token=token,
        appid=appid,
        secret=secret,
        aes_key=aes_key,
        api_base=env.get("YXBY_WECHAT_API_BASE", "").strip() or DEFAULT_API_BASE,
        menu=menu,
        reply_budget=budget,
    )


def _check_aes_key(key: str) -> None:
    """Raise ``ConfigError`` unless *key* is a 43-character EncodingAESKey (32 bytes)."""
    import base64
    import binascii

    try:
        ok = len(key) == 43 and len(base64.b64decode(key + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            "expected the 43-character EncodingAESKey from 微信公众平台", key="YXBY_WECHAT_AES_KEY"
        )
