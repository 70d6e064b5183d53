"""The WeChat webhook: :class:`WeChatAdapter`, a :class:`bot.server.ChannelAdapter`.

It checks each request's signature (and its timestamp's age) first, reads the body within
its size limit, has :mod:`bot.channels.wechat.inbound` decrypt and translate it, and
answers every message once: deliveries of the same ``MsgId`` share one dialogue run, and
an answer not ready within the reply budget is answered ``success`` and goes out as a
customer-service push through the outbox. Database work goes through ``app.inbox``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from bot.app import App
from bot.channels.wechat.client import WeChatApiClient, WeChatSender
from bot.channels.wechat.config import (
    CHANNEL,
    WeChatConfig,
    _check_aes_key,
    wechat_config_from_env,
)
from bot.channels.wechat.inbound import (
    _BadRequest,
    _Forbidden,
    _Parsed,
    incoming_of,
    parse_body,
)
from bot.channels.wechat.passive import (
    FULL_TEXT_COMMAND,
    _cdata_safe,
    _Continuations,
    _render,
    fit_passive,
)
from bot.types import Engine, Incoming, MessageKind, Reply

__all__ = ["WeChatAdapter", "wechat_adapter_from_env"]

log = logging.getLogger("yxby.wechat")

SIGNATURE_MAX_AGE = 300
"""Seconds a signed request's timestamp may differ from now (replays of old URLs fail)."""
SUCCESS = "success"
"""WeChat's "received, no reply" answer (valid in every mode)."""


def wechat_adapter_from_env(app: App, env: Mapping[str, str]) -> WeChatAdapter:
    """The WeChat adapter configured from ``YXBY_WECHAT_*`` variables in *env*."""
    return WeChatAdapter(app, wechat_config_from_env(env))


class WeChatAdapter:
    """The WeChat Official Account channel (a :class:`bot.server.ChannelAdapter`)."""

    name = CHANNEL

    def __init__(
        self,
        app: App,
        config: WeChatConfig,
        *,
        engine: Engine | None = None,
        client: WeChatApiClient | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.engine: Engine = engine or app.dialogue
        self.crypto: WeChatCrypto | None = None
        if config.aes_key:
            _check_aes_key(config.aes_key)
            self.crypto = WeChatCrypto(config.token, config.aes_key, config.appid)
        self.client = client or WeChatApiClient(
            config.appid, config.secret, api_base=config.api_base, timeout=config.http_timeout
        )
        self.continuations = _Continuations(config.continuation_ttl, app.clock)
        self._sender = WeChatSender(
            self.client,
            app.inbox,
            self.continuations,
            window=config.window,
            per_message=config.pushes_per_message,
        )
        # msg_id → passive text sent, or None when answered by push ("success")
        self._answered: OrderedDict[str, str | None] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[list[Reply] | None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    # -- ChannelAdapter

    def routes(self) -> Sequence[BaseRoute]:
        """``GET`` (URL verification) and ``POST`` (messages) on the configured path."""
        return [
            Route(self.config.path, self._verify_url, methods=["GET"]),
            Route(self.config.path, self._receive, methods=["POST"]),
        ]

    def sender(self) -> WeChatSender:
        """Customer-service pushes for the outbox worker."""
        return self._sender

    async def startup(self) -> None:
        """Nothing to start: the access token is fetched on the first push."""

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Let answers still being computed reach the outbox, then close the API client."""
        if self._background:
            _, pending = await asyncio.wait(set(self._background), timeout=timeout)
            for task in pending:
                log.warning("an answer was still being computed at shutdown; it is lost")
                task.cancel()
        await asyncio.to_thread(self.client.close)

    # -- HTTP

    def _signed(self, request: Request) -> bool:
        q = request.query_params
        # The signature covers token, timestamp and nonce only, so a signed URL must not be
        # good forever: refuse timestamps away from now (WeChat signs each request afresh).
        try:
            stamp = int(q.get("timestamp", ""))
        except ValueError:
            return False
        if abs(self.app.clock().timestamp() - stamp) > SIGNATURE_MAX_AGE:
            return False
        try:
            check_signature(
                self.config.token,
                q.get("signature", ""),
                q.get("timestamp", ""),
                q.get("nonce", ""),
            )
        except InvalidSignatureException:
            return False
        return True

    async def _verify_url(self, request: Request) -> Response:
        if not self._signed(request):
            return PlainTextResponse("forbidden", status_code=403)
        return PlainTextResponse(request.query_params.get("echostr", ""))

    async def _receive(self, request: Request) -> Response:
        if not self._signed(request):
            log.warning("wechat: request with a bad signature from %s", _peer(request))
            return PlainTextResponse("forbidden", status_code=403)
        try:
            body = await self._read_body(request)
            parsed = parse_body(body, request.query_params, self.crypto)
            incoming = incoming_of(parsed, self.config.menu)
        except _Forbidden as exc:
            log.warning("wechat: rejected (%s) from %s", exc, _peer(request))
            return PlainTextResponse("forbidden", status_code=403)
        except _BadRequest as exc:
            log.warning("wechat: bad request (%s) from %s", exc, _peer(request))
            return PlainTextResponse("bad request", status_code=400)
        if incoming is None:
            return PlainTextResponse(SUCCESS)
        text = await self._answer(incoming)
        if not text:
            return PlainTextResponse(SUCCESS)
        return self._reply(request, parsed, text)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise _BadRequest(f"body of {declared} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _BadRequest(f"body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _reply(self, request: Request, parsed: _Parsed, text: str) -> Response:
        now = str(int(self.app.clock().timestamp()))
        xml = TextReply(message=parsed.message, content=_cdata_safe(text), time=int(now)).render()
        if parsed.encrypted and self.crypto is not None:
            nonce = request.query_params.get("nonce", "")
            xml = self.crypto.encrypt_message(xml, nonce, now)
        return Response(xml, media_type="application/xml")

    # -- answering once

    async def _answer(self, msg: Incoming) -> str | None:
        """The passive reply text for *msg*, or ``None`` to answer ``success``."""
        key = msg.msg_id or ""
        if key in self._answered:
            return self._answered[key]
        asked_rest = msg.text.strip().rstrip("。.!！") == FULL_TEXT_COMMAND
        if msg.kind in (MessageKind.TEXT, MessageKind.VOICE) and asked_rest:
            rest = self.continuations.take(msg.user_key)
            if rest is not None:
                head, more = fit_passive(rest)
                self.continuations.put(msg.user_key, more)
                self._remember(key, head)
                # the user wrote: that opens the push window like any other message
                await asyncio.to_thread(self._user_wrote, msg.user_key)
                return head
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(asyncio.to_thread(self._handle, msg))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        try:
            replies = await asyncio.wait_for(asyncio.shield(task), self.config.reply_budget)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if key not in self._answered:
                self._remember(key, None)
                self._spawn(self._deliver_later(msg, task))
            if isinstance(exc, asyncio.CancelledError):
                raise
            return None
        if key in self._answered:  # another delivery of this message fell back to a push
            return self._answered[key]
        if replies is None:
            self._remember(key, None)
            return None
        head, rest = fit_passive(_render(replies))
        self.continuations.put(msg.user_key, rest)
        self._remember(key, head)
        return head

    def _user_wrote(self, user: str) -> None:
        try:
            self.app.inbox.user_wrote(CHANNEL, user)
        except SQLAlchemyError:
            log.exception("wechat: cannot record that %s wrote", user)

    def _handle(self, msg: Incoming) -> list[Reply] | None:
        """Run the dialogue (in a worker thread); ``None`` when it was already pushed."""
        try:
            if self._pushed_before(msg):
                return None
        except SQLAlchemyError:
            log.exception("wechat: cannot check earlier pushes of %s", msg.msg_id)
        return list(self.engine.handle(msg))

    def _push_key(self, msg: Incoming) -> str:
        return f"wechat:reply:{msg.msg_id}"

    def _pushed_before(self, msg: Incoming) -> bool:
        return self.app.inbox.queued(self._push_key(msg))

    async def _deliver_later(self, msg: Incoming, task: asyncio.Task[list[Reply] | None]) -> None:
        try:
            replies = await task
        except Exception:
            log.exception("wechat: dialogue failed for deferred message %s", msg.msg_id)
            return
        if not replies:
            return
        try:
            await asyncio.to_thread(self._enqueue, msg, _render(replies))
        except SQLAlchemyError:
            log.exception("wechat: cannot queue the answer to %s", msg.msg_id)

    def _enqueue(self, msg: Incoming, text: str) -> None:
        payload: dict[str, Any] = {"text": text, "choices": [], "buttons": [], "ref": None}
        self.app.inbox.queue_reply(CHANNEL, msg.user_key, payload, self._push_key(msg))

    def _remember(self, key: str, text: str | None) -> None:
        self._answered[key] = text
        self._answered.move_to_end(key)
        while len(self._answered) > 2000:
            self._answered.popitem(last=False)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _peer(request: Request) -> str:
    return request.client.host if request.client else "?"
