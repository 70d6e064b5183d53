"""The 企业微信 (WeCom) channel: notices to staff as application messages, from the outbox.

New tickets, waiting handoffs, co-handling requests, SLA reminders and breaches reach a
commissioner bound as ``("wecom", <UserID>)`` through the outbox like every other push. A
notice about a ticket is a text card that opens the ticket's console page; others are
text, and one about a waiting chat links to the console's queue. The synchronous wechatpy
client runs in a worker thread, never on the event loop. See ``docs/wecom.md``.

Modules: :mod:`.config` (settings from the environment), :mod:`.rendering` (payload →
message, byte limits), :mod:`.client` (API client), :mod:`.sender` (pushes, error codes)
and :mod:`.adapter` (the channel adapter).
"""

from bot.channels.wecom.adapter import WeComAdapter, wecom_adapter_from_env
from bot.channels.wecom.client import TokenFetchError, WeComApiClient
from bot.channels.wecom.config import (
    CHANNEL,
    DEFAULT_API_BASE,
    WeComConfig,
    wecom_config_from_env,
)
from bot.channels.wecom.rendering import TextCard, TextMessage, fit_lines, render
from bot.channels.wecom.sender import CHECK_CONFIG, WeComSender

__all__ = [
    "CHANNEL",
    "CHECK_CONFIG",
    "DEFAULT_API_BASE",
    "TextCard",
    "TextMessage",
    "TokenFetchError",
    "WeComAdapter",
    "WeComApiClient",
    "WeComConfig",
    "WeComSender",
    "fit_lines",
    "render",
    "wecom_adapter_from_env",
    "wecom_config_from_env",
]
