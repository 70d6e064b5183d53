"""The Telegram channel: python-telegram-bot 22 in front of the dialogue engine.

The adapter only translates. An ``Update`` (from ``POST /telegram/webhook`` — secret header
checked first — or from long polling) becomes an :class:`~bot.types.Incoming`; the dialogue
runs in a thread; its :class:`~bot.types.Reply` values go back as HTML messages (escaped
text, numbered choices, inline keyboards, split under 4,096 characters at sentence ends).
Pushes from the outbox go out through :class:`TelegramSender` on the same ``Bot``.

Nothing is answered twice and nothing is lost: each reply is first written to the outbox
under a key of its update — only the handler whose write went in sends it, directly when
the chat has no waiting pushes (the row leased meanwhile, then marked sent or left for the
worker's retry), so the same update handled twice at once is still answered once. An update
is recorded as done only after its replies were sent or queued; a redelivered update that
was done is only acknowledged, and in polling mode an update whose handling failed is put
back on the queue a few times (Telegram will not deliver it again). A message split in
parts records the parts already sent (``parts_sent``), so a retry sends only the rest.
``/start CODE`` and
``/link CODE`` redeem a commissioner invite (:mod:`handoff.invites`).

PTB's own retries stay out of the way: no rate limiter (``AIORateLimiter`` would retry
429s itself), explicit request timeouts, and every failed send is retried by the outbox
worker with backoff or Telegram's ``retry_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import json
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from telegram import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    Update,
)
from telegram.constants import ChatMemberStatus, ChatType, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.warnings import PTBDeprecationWarning

from bot.app import App
from bot.delivery import Sender
from bot.types import (
    Button,
    Channel,
    Incoming,
    MessageKind,
    Reply,
    reply_from_payload,
    reply_payload,
)
from handoff.outbox import LEASE_SECONDS, PermanentFailure, RetryLater
from yxby.errors import ConfigError, InputError

__all__ = [
    "DEFAULT_API_BASE",
    "MAX_CALLBACK_DATA",
    "MAX_MESSAGE_CHARS",
    "SECRET_HEADER",
    "Part",
    "TelegramAdapter",
    "TelegramSender",
    "TelegramSettings",
    "invite_code",
    "keyboard_rows",
    "render",
    "split_text",
    "telegram_adapter_from_env",
    "to_html",
]

log = logging.getLogger("yxby.telegram")

DEFAULT_API_BASE = "https://api.telegram.org"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_MESSAGE_CHARS = 4096
MAX_CALLBACK_DATA = 64
MAX_WEBHOOK_BODY = 1_000_000
ALLOWED_UPDATES = ("message", "callback_query", "my_chat_member")
UPDATE_MEMORY = timedelta(days=2)  # Telegram gives up redelivering after a day
DIRECT_SEND_TIMEOUT = LEASE_SECONDS / 2  # a direct reply's outbox row is leased meanwhile
REQUEUE_DELAYS = (0.5, 2.0, 5.0)  # polling: seconds before each retry of a failed update

COMMANDS = (
    ("start", "开始与菜单"),
    ("help", "我能做什么"),
    ("status", "查询诉求办理进度"),
    ("human", "联系人工服务"),
    ("bind", "绑定企业：/bind 统一社会信用代码"),
    ("cancel", "取消当前步骤"),
    ("end", "结束人工对话"),
)

# Tapping a button removes that message's keyboard, except on a commissioner's ticket
# notice: after 签收 the same notice still offers 转派 / 申请协同 / 办结.
_KEEP_KEYBOARD = ("transcript:", "accept:", "transfer:", "assist:", "resolve:")


# ----------------------------------------------------------------------------- settings


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


# ---------------------------------------------------------------------------- rendering


_HEADER = re.compile(r"【[^【】\n]{1,30}】")
_SENTENCE_END = re.compile(r"(?<=[。！？!?\n])")


def to_html(text: str) -> str:
    """*text* escaped for Telegram's HTML mode, with 【headings】 in bold."""
    escaped = html.escape(text, quote=False)
    return _HEADER.sub(lambda m: f"<b>{m.group(0)}</b>", escaped)


def _length(text: str) -> int:
    # Telegram counts UTF-16 code units
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """*text* in pieces whose HTML fits *limit*, cut after sentence ends (。！？ or a newline).

    A single sentence longer than the limit is cut where it must.
    """
    if _length(to_html(text)) <= limit:
        return [text] if text.strip() else []
    chunks: list[str] = []
    current = ""
    for piece in _SENTENCE_END.split(text):
        if _length(to_html(current + piece)) <= limit:
            current += piece
            continue
        if current:
            chunks.append(current)
        while _length(to_html(piece)) > limit:
            low, high = 1, len(piece)
            while low < high:  # the longest prefix that fits
                mid = (low + high + 1) // 2
                if _length(to_html(piece[:mid])) <= limit:
                    low = mid
                else:
                    high = mid - 1
            chunks.append(piece[:low])
            piece = piece[low:]
        current = piece
    if current:
        chunks.append(current)
    return [c.strip("\n") for c in chunks if c.strip()]


def keyboard_rows(reply: Reply) -> list[list[Button]]:
    """The inline keyboard of *reply*: its buttons, or one per numbered choice.

    Short labels share a row; a payload longer than Telegram's 64-byte ``callback_data`` is
    left out (the engine's payloads are short; the choice can still be typed).
    """
    buttons = reply.buttons or tuple(
        Button(str(i), f"cmd:{i}") for i in range(1, len(reply.choices) + 1)
    )
    rows: list[list[Button]] = []
    width = 0
    for button in buttons:
        size = len(button.payload.encode("utf-8"))
        if not 0 < size <= MAX_CALLBACK_DATA:
            log.warning("button %r left out: callback data of %d bytes", button.label, size)
            continue
        if rows and len(rows[-1]) < 5 and width + len(button.label) <= 12:
            rows[-1].append(button)
            width += len(button.label)
        else:
            rows.append([button])
            width = len(button.label)
    return rows


@dataclass(frozen=True)
class Part:
    """One Telegram message of a reply: HTML text and, on the last part, the keyboard."""

    html: str
    rows: tuple[tuple[Button, ...], ...] = ()

    def markup(self) -> InlineKeyboardMarkup | None:
        """The PTB keyboard, if any."""
        if not self.rows:
            return None
        return InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(b.label, callback_data=b.payload) for b in row]
                for row in self.rows
            ]
        )


def render(reply: Reply) -> list[Part]:
    """*reply* as Telegram messages (none when it has nothing to show)."""
    lines = [reply.text, *(f"{i}. {c}" for i, c in enumerate(reply.choices, 1))]
    text = "\n".join(line for line in lines if line)
    pieces = split_text(text)
    rows = tuple(tuple(row) for row in keyboard_rows(reply))
    if not pieces:
        return [Part(to_html("请选择："), rows)] if rows else []
    parts = [Part(to_html(p)) for p in pieces]
    parts[-1] = Part(parts[-1].html, rows)
    return parts


_LINK = re.compile(r"^/(start|link)(?:@\w+)?(?:\s+(.*))?$", re.DOTALL)
_BOT_SUFFIX = re.compile(r"^(/\w+)@\w+")


def invite_code(text: str) -> str | None:
    """The invite code of ``/start CODE`` or ``/link CODE`` (``""`` for a bare ``/link``)."""
    m = _LINK.match(text.strip())
    if m is None:
        return None
    command, argument = m.group(1), (m.group(2) or "").strip()
    if command == "link":
        return argument
    return argument or None


def _retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# ------------------------------------------------------------------------------ adapter


class TelegramAdapter:
    """The Telegram channel of ``yxby serve`` (see the module docstring)."""

    name = Channel.TELEGRAM.value

    def __init__(self, app: App, settings: TelegramSettings) -> None:
        self.app = app
        self.settings = settings
        self.requeue_delays: tuple[float, ...] = REQUEUE_DELAYS
        self._failures: dict[int, int] = {}  # update_id → failed handlings (polling)
        self._requeues: set[asyncio.Task[None]] = set()
        builder: Any = (
            ApplicationBuilder()
            .token(settings.token)
            .base_url(f"{settings.api_base}/bot")
            .base_file_url(f"{settings.api_base}/file/bot")
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .write_timeout(settings.write_timeout)
            .pool_timeout(settings.pool_timeout)
            .get_updates_connect_timeout(settings.connect_timeout)
            .get_updates_read_timeout(settings.read_timeout)
            .get_updates_pool_timeout(settings.pool_timeout)
            .job_queue(None)
        )
        if settings.mode == "webhook":
            builder = builder.updater(None)
        self.application: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        private = filters.ChatType.PRIVATE
        self.application.add_handler(
            MessageHandler(private & ~filters.UpdateType.EDITED, self._on_update)
        )
        self.application.add_handler(CallbackQueryHandler(self._on_update))
        self.application.add_handler(
            ChatMemberHandler(self._on_update, ChatMemberHandler.MY_CHAT_MEMBER)
        )
        self.application.add_handler(TypeHandler(Update, self._on_other))
        self.application.add_error_handler(self._on_error)

    # -- the ChannelAdapter protocol

    def routes(self) -> Sequence[BaseRoute]:
        """``POST /telegram/webhook`` in webhook mode; nothing when polling."""
        if self.settings.mode != "webhook":
            return []
        return [Route(self.settings.webhook_path, self._webhook, methods=["POST"])]

    def sender(self) -> Sender:
        """Pushes from the outbox, through the same bot."""
        return TelegramSender(self)

    async def startup(self) -> None:
        """Connect (``getMe``), publish the command menu, then poll or set the webhook."""
        await self.application.initialize()
        await asyncio.to_thread(self._prune)
        bot = self.application.bot
        try:
            await bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
        except TelegramError as exc:
            log.warning("could not publish the command menu: %s", exc)
        await self.application.start()
        if self.settings.mode == "polling":
            updater = self.application.updater
            assert updater is not None  # built with an updater in polling mode
            await updater.start_polling(
                timeout=timedelta(seconds=self.settings.poll_timeout),
                allowed_updates=list(ALLOWED_UPDATES),
                drop_pending_updates=False,
                bootstrap_retries=3,
            )
        elif self.settings.webhook_url:
            await bot.set_webhook(
                self.settings.webhook_url,
                secret_token=self.settings.webhook_secret,
                allowed_updates=list(ALLOWED_UPDATES),
            )
        log.info("telegram bot @%s ready (%s)", bot.username, self.settings.mode)

    async def shutdown(self) -> None:
        """Stop polling and processing; close the HTTP clients (the webhook stays set)."""
        for task in list(self._requeues):
            task.cancel()
        updater = self.application.updater
        if updater is not None and updater.running:
            await updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    # -- webhook

    async def _webhook(self, request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "")
        expected = self.settings.webhook_secret or ""
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            return Response(status_code=403)
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BODY:
            return Response(status_code=413)
        try:
            data = json.loads(body)
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                raise ValueError("not an update")
            update = Update.de_json(data, self.application.bot)
        except Exception as exc:  # whatever the payload, a bad one is a 400, not a crash
            log.warning("unreadable webhook update: %s", exc)
            return Response(status_code=400)
        await self.application.process_update(update)
        if not await asyncio.to_thread(self._is_done, update.update_id):
            # handling failed: Telegram redelivers, and the dialogue answers it the same way
            return Response(status_code=500)
        return Response(status_code=200)

    # -- update handling

    async def _on_update(self, update: Update, _context: Any) -> None:
        if await asyncio.to_thread(self._is_done, update.update_id):
            self._failures.pop(update.update_id, None)
            await self._answer_query(update.callback_query)
            return
        chat = update.effective_chat
        if chat is None or chat.type != ChatType.PRIVATE:
            await asyncio.to_thread(self._mark_done, update.update_id)
            return
        chat_key = str(chat.id)
        query = update.callback_query
        await self._answer_query(query)
        text = update.message.text if update.message and update.message.text else ""
        code = invite_code(text)
        replies: list[Reply]
        if code is not None:
            replies = [await asyncio.to_thread(self._redeem, code, chat_key)]
        else:
            incoming = await self._incoming(update, chat_key)
            replies = (
                []
                if incoming is None
                else await asyncio.to_thread(self.app.dialogue.handle, incoming)
            )
        await self._deliver(chat_key, replies, update.update_id)
        if query is not None and query.data and not query.data.startswith(_KEEP_KEYBOARD):
            with contextlib.suppress(TelegramError):  # cosmetic: a stale tap is handled anyway
                await query.edit_message_reply_markup(reply_markup=None)
        await asyncio.to_thread(self._mark_done, update.update_id)
        self._failures.pop(update.update_id, None)

    async def _on_other(self, update: Update, _context: Any) -> None:
        # edited messages, group chats, channel posts…: nothing to answer
        await asyncio.to_thread(self._mark_done, update.update_id)

    async def _on_error(self, update: object, context: Any) -> None:
        # the update's repr holds the message text (``/link CODE``): log its id only
        if not isinstance(update, Update):
            log.error("telegram handling failed", exc_info=context.error)
            return
        update_id = update.update_id
        log.error("telegram update %s failed", update_id, exc_info=context.error)
        if self.settings.mode != "polling":
            return  # the webhook answers 500 and Telegram delivers the update again
        try:
            done = await asyncio.to_thread(self._is_done, update_id)
        except Exception:
            done = False
        if done:
            self._failures.pop(update_id, None)
            return
        # PTB already confirmed the offset: Telegram will not send this update again
        tries = self._failures.get(update_id, 0)
        if tries >= len(self.requeue_delays):
            self._failures.pop(update_id, None)
            log.error("telegram update %s given up after %d attempts", update_id, tries + 1)
            return
        self._failures[update_id] = tries + 1
        task = asyncio.create_task(self._requeue(update, self.requeue_delays[tries]))
        self._requeues.add(task)
        task.add_done_callback(self._requeues.discard)

    async def _requeue(self, update: Update, delay: float) -> None:
        await asyncio.sleep(delay)
        log.info("telegram update %s handled again", update.update_id)
        await self.application.update_queue.put(update)

    @staticmethod
    async def _answer_query(query: CallbackQuery | None) -> None:
        if query is None:
            return
        try:
            await query.answer()
        except TelegramError as exc:  # too old, or Telegram unreachable: the tap still counts
            log.debug("callback query not answered: %s", exc)

    async def _incoming(self, update: Update, chat_key: str) -> Incoming | None:
        user = update.effective_user
        common: dict[str, Any] = {
            "channel": self.name,
            "user_key": chat_key,
            "msg_id": f"update:{update.update_id}",
            "display_name": user.full_name if user else None,
        }
        query = update.callback_query
        if query is not None:
            if not query.data:
                return None
            message = query.message
            label = _label_of(message, query.data) if isinstance(message, Message) else None
            ref = (
                await asyncio.to_thread(self._ref_of, chat_key, message.message_id)
                if message
                else None
            )
            return Incoming(
                text=label or query.data,
                kind=MessageKind.BUTTON,
                payload=query.data,
                reply_to=ref,
                **common,
            )
        member = update.my_chat_member
        if member is not None:
            if member.new_chat_member.status in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT):
                return Incoming(kind=MessageKind.UNSUBSCRIBE, at=member.date, **common)
            return None
        message = update.message
        if message is None:
            return None
        translated = _kind_and_text(message)
        if translated is None:
            return None
        kind, text = translated
        ref = None
        if message.reply_to_message is not None:
            ref = await asyncio.to_thread(
                self._ref_of, chat_key, message.reply_to_message.message_id
            )
        return Incoming(
            text=text,
            kind=kind,
            reply_to=ref,
            at=message.date,
            extra={"telegram_message_id": message.message_id},
            **common,
        )

    async def _deliver(self, chat_key: str, replies: Sequence[Reply], update_id: int) -> None:
        """Send *replies* now, or queue them behind the chat's waiting pushes — once per update.

        Each reply goes to the outbox first; a reply some other handling of the same update
        already wrote is left to it. One sent directly is leased while it is sent, then
        marked sent, or left for the worker to retry (after ``retry_after`` on a 429).
        """
        queued = await asyncio.to_thread(self._has_waiting, chat_key)
        for i, reply in enumerate(replies):
            payload = reply_payload(reply)
            key = f"telegram-reply:{self.settings.bot_id}:{update_id}:{i}"
            lease = None if queued else timedelta(seconds=LEASE_SECONDS)
            message_id = await asyncio.to_thread(self._enqueue, chat_key, payload, key, lease)
            if message_id is None or queued:
                continue  # already another handling's, or queued behind the waiting pushes
            try:
                await asyncio.wait_for(self.send(chat_key, payload), DIRECT_SEND_TIMEOUT)
            except RetryLater as exc:
                log.info("reply to %s queued: %s", chat_key, exc.reason)
                await asyncio.to_thread(self._retry, message_id, payload, exc.reason, exc.after)
                queued = True
            except TimeoutError:
                reason = f"发送超时（{DIRECT_SEND_TIMEOUT:g} 秒）"
                log.info("reply to %s queued: %s", chat_key, reason)
                await asyncio.to_thread(self._retry, message_id, payload, reason, None)
                queued = True
            except PermanentFailure as exc:
                log.warning("reply to %s dropped: %s", chat_key, exc.reason)
                await asyncio.to_thread(self._failed, message_id, exc.reason)
                return
            else:
                await asyncio.to_thread(self._sent, message_id)

    # -- sending (direct replies and outbox pushes)

    async def send(self, chat_key: str, payload: dict[str, Any]) -> None:
        """Send one payload; raise ``RetryLater`` / ``PermanentFailure`` as the outbox expects.

        When sending stops part-way, the parts of a long message already sent are counted
        in ``payload["parts_sent"]`` (updated in place as they go out; removed again once
        all went out) and skipped when the payload is sent again.
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
                message = await self._send_part(chat_id, part)
                sent.append(message.message_id)
                payload["parts_sent"] = done + len(sent)
            payload.pop("parts_sent", None)
        finally:
            ref = payload.get("ref")
            if ref and sent:
                await asyncio.to_thread(self._remember, chat_key, sent, str(ref))

    async def _send_part(self, chat_id: int, part: Part) -> Message:
        try:
            return await self.application.bot.send_message(
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
            raise RetryLater(
                f"Telegram 令牌无效，请检查 YXBY_TELEGRAM_TOKEN：{exc.message}"
            ) from exc
        except NetworkError as exc:  # timeouts, connection errors, 5xx
            raise RetryLater(f"Telegram 网络错误：{exc.message}") from exc
        except TelegramError as exc:
            raise RetryLater(f"Telegram 错误：{exc.message}") from exc

    # -- database work (run in threads)

    def _is_done(self, update_id: int) -> bool:
        return self.app.inbox.update_done(self.settings.bot_id, update_id)

    def _mark_done(self, update_id: int) -> None:
        self.app.inbox.mark_update(self.settings.bot_id, update_id)

    def _prune(self) -> None:
        self.app.inbox.prune_updates(UPDATE_MEMORY)

    def _ref_of(self, chat_key: str, message_id: int) -> str | None:
        return self.app.inbox.ref_of(chat_key, message_id)

    def _remember(self, chat_key: str, message_ids: list[int], ref: str) -> None:
        self.app.inbox.remember_ref(chat_key, message_ids, ref)

    def _has_waiting(self, chat_key: str) -> bool:
        return self.app.inbox.pending_for(self.name, chat_key)

    def _enqueue(
        self, chat_key: str, payload: dict[str, Any], key: str, lease: timedelta | None
    ) -> int | None:
        """Queue a reply (leased for *lease* when sent directly); ``None`` if queued before."""
        return self.app.inbox.queue_reply(self.name, chat_key, payload, key, lease=lease)

    def _sent(self, message_id: int) -> None:
        self.app.inbox.sent(message_id)

    def _retry(
        self, message_id: int, payload: dict[str, Any], reason: str, after: float | None
    ) -> None:
        self.app.inbox.retry(message_id, reason, after=after, payload=payload)

    def _failed(self, message_id: int, reason: str) -> None:
        self.app.inbox.failed(message_id, reason)

    def _redeem(self, code: str, chat_key: str) -> Reply:
        try:
            person = self.app.inbox.redeem_invite(code, self.name, chat_key)
            name, department, role = person.name, person.department, person.role
        except InputError as exc:
            return Reply(self.app.replies("staff_link_failed", reason=str(exc)))
        r = self.app.replies
        linked = r("staff_linked", name=name, department=department, role=role)
        return Reply(linked + "\n" + r("staff_unknown", name=name))


class TelegramSender:
    """The outbox :class:`~bot.delivery.Sender` of the Telegram channel."""

    def __init__(self, adapter: TelegramAdapter) -> None:
        self.adapter = adapter

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        """Deliver one outbox payload to the chat *recipient*."""
        await self.adapter.send(recipient, payload)


def _label_of(message: Message, data: str) -> str | None:
    markup = message.reply_markup
    if markup is None:
        return None
    for row in markup.inline_keyboard:
        for button in row:
            if button.callback_data == data:
                return button.text
    return None


def _kind_and_text(message: Message) -> tuple[MessageKind, str] | None:
    if message.text is not None:
        return MessageKind.TEXT, _BOT_SUFFIX.sub(r"\1", message.text)
    if message.contact is not None:  # a shared contact card answers "your phone number?"
        return MessageKind.TEXT, message.contact.phone_number
    caption = message.caption or ""
    if message.voice is not None or message.video_note is not None:
        return MessageKind.VOICE, ""
    if message.photo or message.sticker is not None:
        return MessageKind.IMAGE, caption
    if any(
        x is not None for x in (message.document, message.video, message.audio, message.animation)
    ):
        return MessageKind.FILE, caption
    if message.location is not None or message.venue is not None:
        return MessageKind.LOCATION, ""
    return None


def telegram_adapter_from_env(
    app: App, env: Mapping[str, str], *, polling: bool = False
) -> TelegramAdapter:
    """The Telegram adapter configured by ``YXBY_TELEGRAM_*`` in *env*."""
    return TelegramAdapter(app, TelegramSettings.from_env(env, polling=polling))
