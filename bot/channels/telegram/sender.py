"""Sending to Telegram: payloads in parts, Telegram's errors mapped to outbox outcomes.

:func:`send_payload` sends a reply payload as its rendered parts, counting the parts sent;
:func:`send_part` raises ``RetryLater`` for rate limits (after ``retry_after``), network
errors and a rejected token, and ``PermanentFailure`` for blocked bots, migrated or missing
chats and rejected messages. :class:`TelegramSender` is the outbox worker's ``Sender``.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from telegram import Bot, LinkPreviewOptions, Message
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.warnings import PTBDeprecationWarning

from bot.channels.telegram.rendering import Part, render
from bot.types import reply_from_payload
from handoff.outbox import PermanentFailure, RetryLater, SendTimedOut

if TYPE_CHECKING:
    from bot.channels.telegram.adapter import TelegramAdapter

__all__ = ["TelegramSender", "send_part", "send_payload"]


async def send_payload(
    bot: Bot,
    chat_key: str,
    payload: dict[str, Any],
    remember: Callable[[str, list[int], str], None],
) -> None:
    """Send one outbox payload to the chat *chat_key*, part by part, through *bot*.

    Raises ``RetryLater`` / ``PermanentFailure`` as the outbox expects. When sending stops
    part-way, the parts of a long message already sent are counted in
    ``payload["parts_sent"]`` (updated in place as they go out; removed again once all went
    out) and skipped when the payload is sent again. The ids of the messages sent for a
    payload with a ``ref`` go to *remember* (run in a worker thread).
    """
    try:
        chat_id = int(chat_key)
    except ValueError:
        raise PermanentFailure(f"不是 Telegram 会话 ID：{chat_key!r}") from None
    parts = render(reply_from_payload(payload))
    done = payload.get("parts_sent")
    done = done if isinstance(done, int) and 0 <= done <= len(parts) else 0
    sent: list[int] = []
    try:
        for part in parts[done:]:
            message = await send_part(bot, chat_id, part)
            sent.append(message.message_id)
            payload["parts_sent"] = done + len(sent)
        payload.pop("parts_sent", None)
    finally:
        ref = payload.get("ref")
        if ref and sent:
            await asyncio.to_thread(remember, chat_key, sent, str(ref))


async def send_part(bot: Bot, chat_id: int, part: Part) -> Message:
    """Send *part* to *chat_id*; Telegram's errors raised as the outbox's outcomes."""
    try:
        return await bot.send_message(
            chat_id,
            part.html,
            parse_mode=ParseMode.HTML,
            reply_markup=part.markup(),
            link_preview_options=LinkPreviewOptions(is_disabled=True),
        )
    except RetryAfter as exc:
        seconds = _retry_seconds(exc)
        raise RetryLater(f"Telegram 限流（429），{seconds:g} 秒后重试", after=seconds) from exc
    except Forbidden as exc:
        raise PermanentFailure(f"用户已屏蔽机器人或不允许发送：{exc.message}") from exc
    except ChatMigrated as exc:
        raise PermanentFailure(f"会话已迁移至 {exc.new_chat_id}") from exc
    except BadRequest as exc:  # before NetworkError: BadRequest is a subclass of it
        if "chat not found" in exc.message.lower():
            raise PermanentFailure("会话不存在（chat not found）") from exc
        raise PermanentFailure(f"Telegram 拒绝了该消息：{exc.message}") from exc
    except InvalidToken as exc:
        raise RetryLater(f"Telegram 令牌无效，请检查 YXBY_TELEGRAM_TOKEN：{exc.message}") from exc
    except TimedOut as exc:
        if isinstance(exc.__cause__, httpx.ConnectTimeout | httpx.PoolTimeout):
            raise RetryLater(f"Telegram 连接超时：{exc.message}") from exc
        # the request went out and no answer came: it may have arrived (docs/delivery.md)
        raise SendTimedOut(f"Telegram 发送超时，可能已送达：{exc.message}") from exc
    except NetworkError as exc:  # connection errors, 5xx
        raise RetryLater(f"Telegram 网络错误：{exc.message}") from exc
    except TelegramError as exc:
        raise RetryLater(f"Telegram 错误：{exc.message}") from exc


def _retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramSender:
    """The outbox :class:`~bot.delivery.Sender` of the Telegram channel."""

    def __init__(self, adapter: TelegramAdapter) -> None:
        self.adapter = adapter

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        """Deliver one outbox payload to the chat *recipient*."""
        await self.adapter.send(recipient, payload)
