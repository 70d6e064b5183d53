"""The WeChat webhook: :class:`WeChatAdapter`, a :class:`bot.server.ChannelAdapter`.

It checks each request's signature (and its timestamp's age) first, reads the body within
its size limit, has :mod:`bot.channels.wechat.inbound` decrypt and translate it, and
answers every message once: deliveries of the same ``MsgId`` share one dialogue run, and
an answer not ready within the reply budget goes out as a customer-service push through
the outbox instead.

Accepted means stored: such a message is answered ``success`` only once it is stored as
owed (``app.inbox.defer``). If that cannot be done in time (the database is down or
locked) the request gets no answer within WeChat's 5 seconds, so WeChat sends it again. The
answer is queued and the row closed in one transaction; rows a crash left open are
completed at start-up and then periodically (:meth:`WeChatAdapter.recover`). Database work
goes through ``app.inbox``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
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
    incoming_of_record,
    parse_body,
    record_of,
)
from bot.channels.wechat.passive import (
    FULL_TEXT_COMMAND,
    _cdata_safe,
    _Continuations,
    _render,
    fit_passive,
)
from bot.types import Engine, Incoming, MessageKind, Reply
from handoff.shared_state import DatabaseState
from yxby.redact import tag

__all__ = ["WeChatAdapter", "wechat_adapter_from_env"]

log = logging.getLogger("yxby.wechat")

SIGNATURE_MAX_AGE = 300
"""Seconds a signed request's timestamp may differ from now (replays of old URLs fail)."""
SUCCESS = "success"
"""WeChat's "received, no reply" answer (valid in every mode)."""
WECHAT_WAIT = 5.0
"""Seconds WeChat waits for an answer before it drops the request and sends it again."""
ACCEPT_WITHIN = 4.5
"""Seconds after arrival by which a deferred message must be stored to be answered ``success``."""
COMMIT_MARGIN = 0.05
"""Seconds before ``accept_within`` by which the store must be ready to commit: a store that
commits after its waiter gave up would be pushed to a user who was told nothing was stored."""
RECOVER_EVERY = 30.0
"""Seconds between passes over owed answers a stopped process left open."""
RECOVER_BATCH = 20
RECOVER_LEASE = timedelta(minutes=2)
"""How long a claimed owed answer is left to its claimer before another process may take it."""
ANSWER_TTL = 3600.0
"""Seconds every process remembers how a MsgId was answered (WeChat retries within 15 s)."""


class _NotAccepted(Exception):
    """The message could not be stored in time: WeChat must not hear ``success``."""


class _AnsweredElsewhere(Exception):
    """Another process answered this MsgId passively: it is neither stored nor pushed."""


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
        accept_within: float = ACCEPT_WITHIN,
        silent_until: float = WECHAT_WAIT + 0.5,
        recover_every: float = RECOVER_EVERY,
    ) -> None:
        self.app = app
        self.accept_within = accept_within
        """Seconds after arrival to store a deferred message; later, no ``success``."""
        self.silent_until = silent_until
        """Seconds after arrival before a message that was not stored gets its 503 (by then
        WeChat has given up on the request and sends it again)."""
        self.recover_every = recover_every
        self.config = config
        self.engine: Engine = engine or app.dialogue
        self.crypto: WeChatCrypto | None = None
        if config.aes_key:
            _check_aes_key(config.aes_key)
            self.crypto = WeChatCrypto(config.token, config.aes_key, config.appid)
        self.shared = app.shared
        self.client = client or WeChatApiClient(
            config.appid,
            config.secret,
            api_base=config.api_base,
            timeout=config.http_timeout,
            shared=self.shared,
        )
        self.continuations = _Continuations(config.continuation_ttl, app.clock, shared=self.shared)
        self._sender = WeChatSender.for_config(self.client, app.inbox, self.continuations, config)
        # msg_id → passive text sent, or None when answered by push ("success")
        self._answered: OrderedDict[str, str | None] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[list[Reply] | None]] = {}
        self._storing: dict[str, asyncio.Task[bool]] = {}  # msg_id → storing it as owed
        self._owed: set[str] = set()  # msg_ids this process is answering by push now
        # msg_ids this process is storing or stored as owed: their owed row is its own, so a
        # dialogue run that starts after the row was written (its worker thread was busy
        # for the whole reply budget) must still compute the answer, not leave it to others
        self._mine: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._recovery: asyncio.Task[None] | None = None
        # Storing a message as owed must not queue behind dialogue runs, which hold the
        # shared worker threads for as long as a busy database makes them wait.
        self._store_threads = ThreadPoolExecutor(4, thread_name_prefix="wechat-store")

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
        """Start completing owed answers (now, then every ``recover_every`` seconds).

        The access token is fetched on the first push. Calling it again does nothing more.
        """
        if self._recovery is None or self._recovery.done():
            self._stop.clear()
            self._recovery = asyncio.create_task(self._recover_loop())

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Stop recovery, let answers being computed reach the outbox, close the client.

        An answer still not queued after *timeout* stays stored as owed: the next start
        completes it.
        """
        self._stop.set()
        waiting: set[asyncio.Task[Any]] = set(self._background)
        if self._recovery is not None:
            waiting.add(self._recovery)
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=timeout)
            for task in pending:
                log.warning("wechat: an owed answer is unfinished at shutdown; next start sends it")
                task.cancel()
        self._store_threads.shutdown(wait=False)
        await asyncio.to_thread(self.client.close)

    async def recover(self) -> int:
        """Complete owed answers that nobody is working on; how many were queued.

        Each row is claimed under a lease, its message is run through the engine again —
        whose ``msg_id`` de-duplication gives back the stored replies when the first attempt
        got that far — and the answer is queued under the same outbox key, so it is pushed
        once however often this runs, in however many processes.
        """
        done = 0
        while not self._stop.is_set():
            busy = self._owed | set(self._storing) | set(self._inflight)
            claimed = await asyncio.to_thread(
                self.app.inbox.claim_deferred,
                CHANNEL,
                older_than=timedelta(seconds=self.config.reply_budget),
                lease=RECOVER_LEASE,
                limit=RECOVER_BATCH,
                exclude=sorted(busy),
            )
            for work in claimed:
                if self._stop.is_set():
                    break
                msg = incoming_of_record(work.message)
                try:
                    await asyncio.to_thread(self._complete, msg, self.engine.handle(msg))
                    done += 1
                    log.info("wechat: owed answer to %s completed (attempt %d)",
                             msg.msg_id, work.attempts)  # fmt: skip
                except SQLAlchemyError:  # the lease runs out and the next pass tries again
                    log.exception("wechat: cannot complete the owed answer to %s", msg.msg_id)
            if len(claimed) < RECOVER_BATCH:
                break
        return done

    async def _recover_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.recover()
            except Exception:  # the database may be down: try again on the next pass
                log.exception("wechat: cannot look for owed answers")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.recover_every)

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
        arrived = time.monotonic()
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
        try:
            text = await self._answer(incoming, arrived)
        except _NotAccepted:
            # No "success" for a message that is not stored: WeChat sends a request again
            # when it gets no answer in 5 s (an error answer would only show the user
            # "该公众号暂时无法提供服务"), so stay silent until it has given up on this one.
            await asyncio.sleep(max(0.0, arrived + self.silent_until - time.monotonic()))
            return PlainTextResponse("not stored, send again", status_code=503)
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

    async def _answer(self, msg: Incoming, arrived: float) -> str | None:
        """The passive reply text for *msg*, or ``None`` to answer ``success``.

        Raises :class:`_NotAccepted` when the answer must be pushed later but the message
        could not be stored by ``arrived + accept_within`` (monotonic seconds).
        """
        key = msg.msg_id or ""
        if key in self._answered:
            return self._answered[key]
        received = self.app.clock()
        asked_rest = msg.text.strip().rstrip("。.!！") == FULL_TEXT_COMMAND
        if msg.kind in (MessageKind.TEXT, MessageKind.VOICE) and asked_rest:
            # a retried "全文" another process answered gets the same part
            answered = await asyncio.to_thread(self._answered_elsewhere, key)
            if answered is not None:
                return answered[0]
            rest = await asyncio.to_thread(self.continuations.take, msg.user_key)
            if rest is not None:
                head, more = fit_passive(rest)
                text = await asyncio.to_thread(self._settle, key, head, msg.user_key, more)
                # the user wrote: that opens the push window like any other message
                await asyncio.to_thread(self._user_wrote, msg.user_key)
                return text
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(asyncio.to_thread(self._handle, msg))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        try:
            replies = await asyncio.wait_for(asyncio.shield(task), self.config.reply_budget)
        except TimeoutError:
            if await self._stored(msg, task, arrived, received):
                return None
            raise _NotAccepted from None
        if key in self._storing or self._answered.get(key, "") is None:
            # another delivery of this message is being (or was) stored to be pushed
            stored = await self._stored(msg, task, arrived, received)
            if stored:
                return None
            if stored is None:
                raise _NotAccepted
        if key in self._answered:
            return self._answered[key]
        if replies is None:
            return await asyncio.to_thread(self._settle, key, None)
        head, rest = fit_passive(_render(replies))
        return await asyncio.to_thread(self._settle, key, head, msg.user_key, rest)

    # -- how a MsgId is answered, once for every process

    @staticmethod
    def _answer_key(key: str) -> str:
        return f"wechat:answer:{key}"

    def _settle(
        self, key: str, text: str | None, user: str | None = None, rest: str = ""
    ) -> str | None:
        """Record that *key* is answered with *text* (``None``: ``success``, pushed) unless
        another process recorded its answer first; the answer that counts.

        Only the winner's rest of a long answer is kept for "全文" (atomically with it).
        """
        also: dict[str, tuple[str, float] | None] = {}
        if user is not None:
            ttl = self.continuations.ttl.total_seconds()
            also[self.continuations.key(user)] = (rest, ttl) if rest else None
        won, first = self.shared.settle(
            self._answer_key(key), json.dumps({"text": text}), ANSWER_TTL, also=also
        )
        answer = text if won or first is None else _decoded(first)
        self._remember(key, answer)
        return answer

    def _answered_elsewhere(self, key: str) -> tuple[str | None] | None:
        """``(answer,)`` when some process recorded how *key* was answered, else ``None``."""
        found = self.shared.get(self._answer_key(key))
        if found is None:
            return None
        answer = _decoded(found)
        self._remember(key, answer)
        return (answer,)

    async def _stored(
        self,
        msg: Incoming,
        task: asyncio.Task[list[Reply] | None],
        arrived: float,
        received: datetime,
    ) -> bool | None:
        """Store *msg* as owed (once for all its deliveries) and push its answer when ready.

        True when stored, False when storing failed, ``None`` when it is not done by
        ``arrived + accept_within`` (it may still succeed: then the push follows).
        """
        key = msg.msg_id or ""
        if key and self._answered.get(key, "") is None:
            return True
        storing = self._storing.get(key)
        if storing is None:
            self._mine.add(key)  # before the row can exist: see _handle
            deadline = arrived + self.accept_within - COMMIT_MARGIN
            storing = asyncio.create_task(self._store(msg, task, received, deadline))
            self._storing[key] = storing
            storing.add_done_callback(lambda _: self._storing.pop(key, None))
        left = arrived + self.accept_within - time.monotonic()
        try:
            return await asyncio.wait_for(asyncio.shield(storing), max(0.0, left))
        except TimeoutError:
            return None

    async def _store(
        self,
        msg: Incoming,
        task: asyncio.Task[list[Reply] | None],
        received: datetime,
        deadline: float,
    ) -> bool:
        """Store *msg* unless that cannot be committed by *deadline* (monotonic seconds,
        counted when the write starts: a write waiting for a thread spends its own time)."""
        key = msg.msg_id or ""
        answer = self._answer_key(key)
        pushed = json.dumps({"text": None})

        def settle(session: Session | None = None) -> None:
            # say "pushed" for every process; a retry another process answered passively
            # meanwhile keeps its answer, and nothing is stored or pushed
            if session is not None and isinstance(self.shared, DatabaseState):
                won, first = self.shared.settle_in(session, answer, pushed, ANSWER_TTL)
            else:
                won, first = self.shared.settle(answer, pushed, ANSWER_TTL)
            if not won and first is not None and _decoded(first) is not None:
                raise _AnsweredElsewhere

        def write() -> bool:
            in_db = isinstance(self.shared, DatabaseState)  # one transaction with the row
            within = deadline - time.monotonic()
            if within <= 0:
                raise TimeoutError("no time left to store")
            try:
                if not in_db:
                    settle()
                try:
                    self.app.inbox.defer(
                        CHANNEL, key, msg.user_key, record_of(msg),
                        received_at=received, within=within, also=settle if in_db else None,
                    )  # fmt: skip
                except _AnsweredElsewhere:
                    raise
                except BaseException:
                    if not in_db:  # not stored: not "pushed" either
                        self.shared.delete(answer)
                    raise
            except _AnsweredElsewhere:
                return False
            return True

        try:
            mine = await asyncio.get_running_loop().run_in_executor(self._store_threads, write)
        except Exception as exc:
            self._mine.discard(key)
            log.warning("wechat: cannot store %s to answer it later (%s); WeChat will send it "
                        "again", key, type(exc).__name__)  # fmt: skip
            return False
        self._remember(key, None)
        if mine:
            self._spawn(self._deliver_later(msg, task))
        else:
            self._mine.discard(key)
        return True

    def _user_wrote(self, user: str) -> None:
        try:
            self.app.inbox.user_wrote(CHANNEL, user)
        except SQLAlchemyError:
            log.exception("wechat: cannot record that %s wrote", tag(user))

    def _handle(self, msg: Incoming) -> list[Reply] | None:
        """Run the dialogue (in a worker thread); ``None`` when it is answered by push
        by someone else (an owed row this process wrote itself is this run's to answer)."""
        key = msg.msg_id or ""
        try:
            later = self.app.inbox.answered_later(CHANNEL, key, self._push_key(msg))
            # looked at only after the read: the key is in _mine before its row can exist
            if later and key not in self._mine:
                return None
        except SQLAlchemyError:
            log.exception("wechat: cannot check earlier pushes of %s", msg.msg_id)
        return list(self.engine.handle(msg))

    def _push_key(self, msg: Incoming) -> str:
        return f"wechat:reply:{msg.msg_id}"

    async def _deliver_later(self, msg: Incoming, task: asyncio.Task[list[Reply] | None]) -> None:
        key = msg.msg_id or ""
        self._owed.add(key)
        try:
            replies = await task
            if replies is None:  # answered by push before: whoever owes it completes it
                return
            await asyncio.to_thread(self._complete, msg, replies)
        except Exception:  # the row stays owed: recovery completes it
            log.exception("wechat: the owed answer to %s is left for recovery", key)
        finally:
            self._owed.discard(key)
            self._mine.discard(key)

    def _complete(self, msg: Incoming, replies: Sequence[Reply]) -> None:
        """Queue the owed answer (if there is anything to say) and close its row."""
        text = _render(replies)
        payload: dict[str, Any] | None = None
        if text:
            payload = {"text": text, "choices": [], "buttons": [], "ref": None}
        self.app.inbox.complete_deferred(
            CHANNEL, msg.msg_id or "", msg.user_key, payload, self._push_key(msg)
        )

    def _remember(self, key: str, text: str | None) -> None:
        self._answered[key] = text
        self._answered.move_to_end(key)
        while len(self._answered) > 2000:
            self._answered.popitem(last=False)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _decoded(value: str) -> str | None:
    try:
        text = json.loads(value).get("text")
    except (ValueError, AttributeError):
        return None
    return text if isinstance(text, str) else None


def _peer(request: Request) -> str:
    return request.client.host if request.client else "?"
