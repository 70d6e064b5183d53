"""The Telegram adapter: :class:`TelegramAdapter` — webhook, long polling, replies once each.

It builds the python-telegram-bot ``Application``, checks the webhook's secret header,
turns each ``Update`` into an :class:`~bot.types.Incoming`, runs the dialogue in a thread
and delivers the replies once per update through the outbox (directly when the chat has no
waiting pushes). Database work goes through ``app.inbox``, in worker threads.

Until :meth:`TelegramAdapter.startup` has succeeded (``getMe`` answered, the webhook or
polling set up) the adapter is not ready: the webhook answers 503 (Telegram delivers the
update again later) and pushes raise ``RetryLater`` (they wait in the outbox). A failed
start-up undoes what it did and raises ``ChannelUnavailable``; the server tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from telegram import BotCommand, CallbackQuery, Message, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    ChatMemberHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.app import App
from bot.channels.telegram.inbound import _kind_and_text, _label_of, invite_code, update_problem
from bot.channels.telegram.sender import TelegramSender, send_payload
from bot.channels.telegram.settings import TelegramSettings
from bot.delivery import Sender
from bot.server import ChannelUnavailable
from bot.types import (
    Channel,
    Incoming,
    MessageKind,
    Reply,
    reply_payload,
)
from handoff.outbox import LEASE_SECONDS, PermanentFailure, RetryLater
from yxby.errors import InputError
from yxby.redact import tag

__all__ = ["SECRET_HEADER", "TelegramAdapter", "telegram_adapter_from_env"]

log = logging.getLogger("yxby.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_WEBHOOK_BODY = 1_000_000
ALLOWED_UPDATES = ("message", "callback_query", "my_chat_member")
UPDATE_MEMORY = timedelta(days=2)  # Telegram gives up redelivering after a day
DIRECT_SEND_TIMEOUT = LEASE_SECONDS / 2  # a direct reply's outbox row is leased meanwhile
REQUEUE_DELAYS = (0.5, 2.0, 5.0)  # polling: seconds before each retry of a failed update
NOT_READY_RETRY = 5.0  # seconds a push waits while the bot is not connected

COMMANDS = (
    ("start", "开始与菜单"),
    ("help", "我能做什么"),
    ("status", "查询诉求办理进度"),
    ("human", "联系人工服务"),
    ("bind", "绑定企业：/bind 统一社会信用代码"),
    ("verify", "核验绑定：/verify 专员提供的核验码"),
    ("commissioner", "我的企业服务专员"),
    ("unsubscribe", "退订通知"),
    ("subscribe", "订阅通知"),
    ("cancel", "取消当前步骤"),
    ("end", "结束人工对话"),
)

# Tapping a button removes that message's keyboard, except on a commissioner's ticket
# notice: after 签收 the same notice still offers 转派 / 申请协同 / 办结.
_KEEP_KEYBOARD = ("transcript:", "accept:", "transfer:", "assist:", "resolve:")


class TelegramAdapter:
    """The Telegram channel of ``yxby serve`` (see the package docstring)."""

    name = Channel.TELEGRAM.value

    def __init__(self, app: App, settings: TelegramSettings) -> None:
        self.app = app
        self.settings = settings
        self.requeue_delays: tuple[float, ...] = REQUEUE_DELAYS
        self._failures: dict[int, int] = {}  # update_id → failed handlings (polling)
        self._requeues: set[asyncio.Task[None]] = set()
        self._ready = False  # startup() succeeded and shutdown() has not begun
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
        # before any filter looks inside it: an update missing what Telegram always sends
        self.application.add_handler(TypeHandler(Update, self._screen), group=-1)
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

    @property
    def ready(self) -> bool:
        """Connected: updates are handled and pushes sent."""
        return self._ready

    async def startup(self) -> None:
        """Connect (``getMe``), publish the command menu, then poll or set the webhook.

        Raises ``ChannelUnavailable`` (after undoing what was done) when Telegram cannot be
        reached or refuses; the server calls it again later.
        """
        try:
            await self._connect()
        except Exception as exc:
            with contextlib.suppress(Exception):  # cleaning up must not hide the cause
                await self._disconnect()
            if isinstance(exc, TelegramError):
                raise ChannelUnavailable(self._unavailable(exc)) from exc
            raise
        self._ready = True

    async def shutdown(self) -> None:
        """Stop polling and processing; close the HTTP clients (the webhook stays set)."""
        self._ready = False
        for task in list(self._requeues):
            task.cancel()
        await self._disconnect()

    def _unavailable(self, exc: TelegramError) -> str:
        if isinstance(exc, InvalidToken):  # PTB's message quotes the token itself
            return "Telegram 拒绝了机器人令牌，请检查 YXBY_TELEGRAM_TOKEN"
        what = "连接" if isinstance(exc, NetworkError) else "启动"
        reason = f"{type(exc).__name__}: {exc.message}".replace(self.settings.token, "***")
        return f"无法{what} Telegram（{self.settings.api_base}）：{reason}"

    async def _connect(self) -> None:
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

    async def _disconnect(self) -> None:
        updater = self.application.updater
        if updater is not None and updater.running:
            await updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()
        # a getMe that failed leaves the application uninitialised but the bot's HTTP
        # clients open: close them too (a no-op when already closed)
        await self.application.bot.shutdown()

    # -- webhook

    async def _webhook(self, request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "")
        expected = self.settings.webhook_secret or ""
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            return Response(status_code=403)
        if not self._ready:  # not connected yet: Telegram keeps the update and sends it again
            return Response(status_code=503, headers={"Retry-After": "5"})
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BODY:
            return Response(status_code=413)
        update = self._readable(body)
        if update is None:  # answering anything else would make Telegram send it forever
            return Response(status_code=200)
        await self.application.process_update(update)
        if not await asyncio.to_thread(self._is_done, update.update_id):
            # handling failed: Telegram redelivers, and the dialogue answers it the same way
            return Response(status_code=500)
        return Response(status_code=200)

    def _readable(self, body: bytes) -> Update | None:
        """The update in *body*, or ``None`` (logged once) when PTB cannot make sense of it.

        The log line names the update and what is wrong, never the content (a ``/link
        CODE`` is a secret).
        """
        update_id: object = None
        problem = ""
        try:
            data = json.loads(body)
            update_id = data.get("update_id") if isinstance(data, dict) else None
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                problem = "not an update (no integer update_id)"
            else:
                update = Update.de_json(data, self.application.bot)
        except json.JSONDecodeError as exc:
            problem = f"not JSON ({exc.msg} at {exc.pos})"
        except UnicodeDecodeError:
            problem = "not JSON (not UTF-8)"
        except Exception as exc:  # a wrong shape of any kind: acknowledged, never a 500
            problem = f"python-telegram-bot cannot read it ({type(exc).__name__})"
        if problem:
            shown = update_id if isinstance(update_id, int) else "(no id)"
            log.warning("telegram update %s ignored: %s", shown, problem)
            return None
        missing = update_problem(update)
        if missing is not None:
            log.warning("telegram update %s ignored: %s", update.update_id, missing)
            return None
        return update

    # -- update handling

    async def _screen(self, update: Update, _context: Any) -> None:
        # polling gets no webhook check: the same test, before the handlers look inside
        problem = update_problem(update)
        if problem is not None:
            log.warning("telegram update %s ignored: %s", update.update_id, problem)
            raise ApplicationHandlerStop

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
                log.info("reply to %s queued: %s", tag(chat_key), exc.reason)
                await asyncio.to_thread(self._retry, message_id, payload, exc.reason, exc.after)
                queued = True
            except TimeoutError:
                reason = f"发送超时（{DIRECT_SEND_TIMEOUT:g} 秒）"
                log.info("reply to %s queued: %s", tag(chat_key), reason)
                await asyncio.to_thread(self._retry, message_id, payload, reason, None)
                queued = True
            except PermanentFailure as exc:
                log.warning("reply to %s dropped: %s", tag(chat_key), exc.reason)
                await asyncio.to_thread(self._failed, message_id, exc.reason)
                return
            else:
                await asyncio.to_thread(self._sent, message_id)

    # -- sending (direct replies and outbox pushes)

    async def send(self, chat_key: str, payload: dict[str, Any]) -> None:
        """Send one payload; raise ``RetryLater`` / ``PermanentFailure`` as the outbox expects.

        See :func:`~bot.channels.telegram.sender.send_payload` (``parts_sent``). While the
        bot is not connected every push is ``RetryLater``: it waits in the outbox.
        """
        if not self._ready:
            raise RetryLater("Telegram 渠道尚未连接，连接后发送", after=NOT_READY_RETRY)
        await send_payload(self.application.bot, chat_key, payload, self._remember)

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


def telegram_adapter_from_env(
    app: App, env: Mapping[str, str], *, polling: bool = False
) -> TelegramAdapter:
    """The Telegram adapter configured by ``YXBY_TELEGRAM_*`` in *env*."""
    return TelegramAdapter(app, TelegramSettings.from_env(env, polling=polling))
