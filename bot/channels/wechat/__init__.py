"""The WeChat Official Account channel: webhook, passive replies and customer-service pushes.

``GET /wechat`` answers WeChat's URL verification; ``POST /wechat`` takes messages in plain,
compatible and safe (AES) mode. Each request is checked before anything else happens: the
signature (403 when it does not verify), the body size, and the XML itself (no DTD, no
entities, well formed — 400 otherwise). wechatpy verifies, decrypts and parses; the
message becomes an :class:`~bot.types.Incoming` and the dialogue engine answers.

WeChat waits 5 seconds for a passive reply and retries the same message up to three times.
Each message is answered once: the dialogue de-duplicates by ``MsgId`` (``FromUserName`` +
``CreateTime`` for events), retries arriving while the first delivery is still being worked
on wait for the same result, and when the answer is not ready within the reply budget the
request gets ``success`` and the answer goes out as a customer-service message through the
outbox instead — then every retry also gets ``success``. Accepted means stored: ``success``
comes only once the message is stored as owed (else WeChat gets no answer and sends it
again), and owed answers a crash left behind are pushed, once, after the restart.

A passive text reply holds 2,048 bytes: a longer answer is cut, ends with a prompt to reply
"全文", and "全文" returns the rest.

Customer-service pushes (:class:`WeChatSender`, used by the outbox worker) follow WeChat's
rules: only within 48 hours of the user's last message and at most 5 per user message;
anything outside is held ("未送达，等待企业再次发消息") and released when the user writes
again. The synchronous wechatpy client runs in a worker thread, never on the event loop.

Modules: :mod:`.config` (settings from the environment), :mod:`.passive` (fitting passive
replies, "全文"), :mod:`.client` (API client, pushes), :mod:`.inbound` (XML, decryption,
translation) and :mod:`.adapter` (the webhook).
"""

from bot.channels.wechat.adapter import WeChatAdapter, wechat_adapter_from_env
from bot.channels.wechat.client import HOLD_REASON, WeChatApiClient, WeChatSender
from bot.channels.wechat.config import (
    DEFAULT_API_BASE,
    DEFAULT_MENU,
    WeChatConfig,
    wechat_config_from_env,
)
from bot.channels.wechat.passive import (
    FULL_TEXT_COMMAND,
    MORE_PROMPT,
    PASSIVE_LIMIT_BYTES,
    fit_passive,
)

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_MENU",
    "FULL_TEXT_COMMAND",
    "HOLD_REASON",
    "MORE_PROMPT",
    "PASSIVE_LIMIT_BYTES",
    "WeChatAdapter",
    "WeChatApiClient",
    "WeChatConfig",
    "WeChatSender",
    "fit_passive",
    "wechat_adapter_from_env",
    "wechat_config_from_env",
]
